"""Stopping training cleanly on Ctrl-C (SIGINT) and SIGTERM.

Python turns SIGINT into ``KeyboardInterrupt`` at whatever bytecode runs when the signal
is checked. Training frees NDArrays all the time, and when that bytecode is inside
``NDArrayBase.__del__`` the exception is printed as "ignored" and the Ctrl-C is lost
(measured: 5 runs in 15). SIGTERM, which cluster schedulers and preemptible machines send
before SIGKILL, kills the process without a checkpoint. So training never relies on an
exception raised by the signal: :class:`StopSignals` installs handlers that only record
the signal, and the loop asks :meth:`StopSignals.check` between iterations and between
evaluation batches, which raises :class:`StopRequested` at a point where the last
finished iteration can be checkpointed.

Presses, as a user sees them: the first signal asks for a stop after the current
iteration (or evaluation batch); a second one is ignored, so a checkpoint being written
is never cut short; a third exits at once, without a checkpoint.
"""
import os
import signal
import threading

from .errors import GankdError

__all__ = ['StopSignals', 'StopRequested', 'exit_code', 'signal_name', 'ignore_stop_signals',
           'HANDLED_SIGNALS']

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum):
    """The shell's exit code for a process ended by ``signum``: 130 for SIGINT, 143 for
    SIGTERM."""
    return 128 + int(signum)


def signal_name(signum):
    return signal.Signals(signum).name


def ignore_stop_signals():
    """Ignore SIGINT and SIGTERM in this process (data-loader workers: the main process
    decides when to stop, and a worker traceback would only hide its message)."""
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class StopRequested(GankdError):
    """Raised by :meth:`StopSignals.check` once a stop signal has arrived."""

    def __init__(self, signum):
        super(StopRequested, self).__init__('{} received'.format(signal_name(signum)))
        self.signum = signum


class StopSignals(object):
    """A context in which SIGINT and SIGTERM only request a stop.

    On entry the handlers are installed (in the main thread only: Python delivers
    signals there, and elsewhere the context does nothing); on exit the previous ones
    are restored, so a library caller of :func:`gankd.train.loop.fit` is not left with them.

    While :attr:`child` holds a running ``subprocess.Popen``, every signal is passed on to
    it instead (and the first one still recorded).

    Parameters
    ----------
    announce : callable or None
        Called with a message when a signal arrives (default: written to stderr). It runs
        inside the signal handler, so it must not take locks the main thread may hold:
        the default writes with ``os.write``.

    Examples
    --------
    >>> with StopSignals() as stop:          # doctest: +SKIP
    ...     for batch in loader:
    ...         stop.check()                 # raises StopRequested after a Ctrl-C
    ...         train_step(batch)
    """

    def __init__(self, announce=None):
        self._announce = announce or (lambda msg: os.write(2, (msg + '\n').encode()))
        self._previous = {}
        self.signum = None
        self.count = 0
        self.child = None

    @property
    def requested(self):
        """Whether a stop signal has arrived."""
        return self.signum is not None

    def check(self):
        """Raise :class:`StopRequested` if a stop signal has arrived."""
        if self.signum is not None:
            raise StopRequested(self.signum)

    def _handle(self, signum, frame):
        self.count += 1
        if self.child is not None and self.child.poll() is None:
            # A training subprocess (a grid's cell, in its own session so that a terminal's
            # Ctrl-C reaches it only through here) gets each signal once, and counts and
            # announces them itself.
            self.child.send_signal(signum)
            self.signum = self.signum or signum
            return
        if self.count == 1:
            self.signum = signum
            self._announce('{} received: stopping after the current iteration and saving a '
                           'checkpoint'.format(signal_name(signum)))
        elif self.count == 2:
            self._announce('{} received again: still stopping; the checkpoint is written '
                           'first (once more exits at once, without it)'.format(
                               signal_name(signum)))
        else:
            self._announce('{} received a third time: exiting now, without a checkpoint'
                           .format(signal_name(signum)))
            os._exit(exit_code(self.signum))

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            # None: the previous handler was not installed from Python; the default is
            # the closest Python can put back.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}
        return False
