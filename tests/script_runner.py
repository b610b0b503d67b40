"""The scripts of ``scripts/`` run as real processes, forked from one that has already
imported MXNet.

Importing MXNet costs about 3.5 s of CPU (it registers its operators), and the suite
runs a script about a hundred times. A fork server imports MXNet and GluonCV once; every
run is a fork of it: a process of its own, with its own argv, environment, working
directory, stdout, stderr and exit code, running the script as ``python -u script.py``
would (``runpy``, ``__name__ == '__main__'``, the script's folder first on
``sys.path``). Nothing of gankd is imported before the fork, so a script that misses an
import fails here as it would for a user. A run whose environment changes what MXNet
reads when it is imported (``MXNET_*``, ``OMP_*``, ...) gets a fresh interpreter instead.

Run as ``python -u script_runner.py SOCKET`` it is the server; the suite uses
:func:`run`.
"""
import atexit
import json
import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

__all__ = ['run']

#: Environment variables read when MXNet (or its OpenMP, BLAS or parameter server) is
#: imported or first used: a run that changes one cannot use the warm server.
IMPORT_TIME_ENV = ('MXNET_', 'OMP_', 'KMP_', 'DMLC_', 'PS_', 'OPENBLAS', 'MKL_', 'LD_',
                   'PYTHON', 'CUDA')


def _serve(path):
    import mxnet  # noqa: F401  imported once, before any fork: the point of the server
    import gluoncv  # noqa: F401
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    while True:
        conn, _ = server.accept()
        with conn.makefile('rb') as lines:
            request = json.loads(lines.readline())
        if request is None:
            return
        pid = os.fork()
        if pid == 0:
            server.close()
            conn.close()
            _child(request)  # runs the script; its exit ends this process
        conn.sendall(json.dumps({'pid': pid}).encode() + b'\n')
        _, status = os.waitpid(pid, 0)
        try:
            conn.sendall(json.dumps({'returncode': os.waitstatus_to_exitcode(status)})
                         .encode() + b'\n')
        except OSError:  # the client gave up (timeout) and closed its end
            pass
        conn.close()


def _child(request):
    """Become ``python -u SCRIPT ARGS``: ``sys.exit`` from the script unwinds to the
    interpreter's top level, which exits as usual; an exception is printed as there."""
    os.chdir(request['cwd'])
    os.environ.clear()
    os.environ.update(request['env'])
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, request['stdout']), (2, request['stderr'])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    sys.argv = [request['script']] + request['args']
    sys.path[0] = os.path.dirname(request['script'])
    try:
        runpy.run_path(request['script'], run_name='__main__')
    except Exception as err:
        # What the interpreter's top level prints, without this file's and runpy's frames.
        tb = err.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != request['script']:
            tb = tb.tb_next
        traceback.print_exception(type(err), err, tb)
        sys.exit(1)
    sys.exit(0)


class _Server(object):
    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix='gankd-scripts-')
        self.path = os.path.join(self.folder, 'server.sock')
        self.env = dict(os.environ, PYTHONUNBUFFERED='1')
        self.proc = subprocess.Popen([sys.executable, '-u', os.path.abspath(__file__),
                                      self.path], stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.time() + 120
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError('the script server did not start')
            time.sleep(0.05)

    def serves(self, env):
        """Whether a run with ``env`` may be a fork of this server."""
        if self.proc.poll() is not None:
            return False
        keys = set(env) | set(self.env)
        return not any(env.get(k) != self.env.get(k) for k in keys
                       if k.startswith(IMPORT_TIME_ENV))

    def run(self, cmd, env, cwd, timeout):
        out = tempfile.mkstemp(dir=self.folder, suffix='.out')[1]
        err = tempfile.mkstemp(dir=self.folder, suffix='.err')[1]
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            conn.sendall(json.dumps({'script': cmd[1], 'args': cmd[2:], 'env': env,
                                     'cwd': cwd, 'stdout': out, 'stderr': err})
                         .encode() + b'\n')
            lines = conn.makefile('rb')
            pid = json.loads(lines.readline())['pid']
            conn.settimeout(timeout)
            try:
                returncode = json.loads(lines.readline())['returncode']
            except socket.timeout:
                os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(cmd, timeout, _read(out), _read(err))
        finally:
            conn.close()
        result = subprocess.CompletedProcess(cmd, returncode, _read(out), _read(err))
        os.unlink(out)
        os.unlink(err)
        return result

    def close(self):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(self.path)
                conn.sendall(b'null\n')
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def _read(path):
    with open(path, errors='replace') as f:
        return f.read()


_server = None


def run(cmd, env, cwd=None, timeout=300):
    """``subprocess.run(cmd, env=env, cwd=cwd, timeout=timeout, capture_output=True,
    text=True)`` for ``cmd = [sys.executable, script, *args]``, forked from the warm
    server when it can be."""
    global _server
    if _server is None:
        _server = _Server()
        atexit.register(_server.close)
    cwd = os.path.abspath(str(cwd or os.getcwd()))
    if not _server.serves(env):
        return subprocess.run(cmd, env=env, cwd=cwd, timeout=timeout, capture_output=True,
                              text=True)
    return _server.run(cmd, env, cwd, timeout)


if __name__ == '__main__':
    _serve(sys.argv[1])
