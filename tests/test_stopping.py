"""SIGINT and SIGTERM stop training cleanly: a checkpoint of the last finished iteration,
exit code 130 or 143, and ``--resume auto`` ending bit for bit like an uninterrupted run.
Signals are real (sent with ``os.kill``), to real processes or to this one."""
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd
from mxnet.gluon.data import Dataset

from conftest import DATA_SHAPE, ROOT, STUDENT, TEACHER, run_script
import gankd.train.loop as engine
from gankd.train.run import build_plain_run
from gankd.train.checkpoint import find_checkpoints, verify_checkpoint
from gankd.cli import seed_everything
from gankd.data.voc import read_classes, voc_datasets
from gankd.detectors.ssd.transforms import train_loader, val_loader
from gankd.train.loop import TrainConfig, TrainingInterrupted, fit
from gankd.detectors.ssd.model import build_ssd, ssd_config

# 16 training images in batches of 6: 2 batches an epoch.
GANKD = ['--teacher', TEACHER, '--student', STUDENT, '--data-shape', DATA_SHAPE,
         '--batch-size', 6, '--log-interval', 1, '--gan-epochs', 2, '--lr', 0.01]


def _wait_for(path, text, proc, after=0, timeout=120):
    """Wait until ``text`` is in the file at ``path`` (past its first ``after`` bytes)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and text in open(path).read()[after:]:
            return
        if proc.poll() is not None:
            raise AssertionError('exited with {} before {!r} appeared'.format(
                proc.returncode, text))
        time.sleep(0.1)
    raise AssertionError('{!r} did not appear in {}'.format(text, path))


def _popen(script, args):
    """The script in a process group of its own, as a terminal runs a command."""
    cmd = [sys.executable, str(ROOT / 'scripts' / script)] + [str(a) for a in args]
    # A shell starts background jobs with SIGINT ignored and children inherit that: give
    # the script the default dispositions, as a terminal's Ctrl-C finds them.
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED='1'), start_new_session=True,
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT,
                                                                       signal.SIGTERM)])


def _assert_same_params(got_file, expected_file):
    got, expected = mx.nd.load(got_file), mx.nd.load(expected_file)
    assert got.keys() == expected.keys()
    for k in expected:
        np.testing.assert_array_equal(got[k].asnumpy(), expected[k].asnumpy(), err_msg=k)


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_stops_training_and_resume_ends_bit_exact(tmp_path, voc_root, teacher_params,
                                                         signum):
    """The signal goes to the whole process group, as a terminal's Ctrl-C does: the
    training and its two loader processes (-j 2). Only the training reacts."""
    name = signal.Signals(signum).name
    prefix = str(tmp_path / 'stopped')
    common = GANKD + ['--teacher-params', teacher_params, '--dataset-root', voc_root,
                      '--save-prefix', prefix]
    proc = _popen('train_gankd_ssd.py', common + ['-j', 2, '--epochs', 200])
    try:
        _wait_for(prefix + '_train.log', '[Epoch 1][Batch 0]', proc)
        os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err
    assert 'Traceback' not in err and 'KeyboardInterrupt' not in err, err
    assert 'stopped by {}'.format(name) in err and '--resume auto' in err
    log = open(prefix + '_train.log').read()
    line = [l for l in log.splitlines() if l.startswith('Interrupted by {} at epoch'.format(
        name))]
    assert len(line) == 1, log[-2000:]
    epoch = int(line[0].split(' at epoch ')[1].split(',')[0])
    iteration = int(line[0].split(', iteration ')[1].split(';')[0])
    newest = find_checkpoints(prefix)[-1]
    assert newest in line[0] and verify_checkpoint(newest)['iteration'] == iteration
    assert epoch >= 1 and iteration >= 3  # epoch 0 was 2 iterations, epoch 1 began

    epochs = epoch + 2
    done = run_script('train_gankd_ssd.py', *common, '-j', 0, '--epochs', epochs,
                      '--resume', 'auto')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'Resumed from {}'.format(newest) in done.stderr
    assert [json.loads(l)['epoch'] for l in open(prefix + '_history.jsonl')] == \
        list(range(epochs))
    straight = str(tmp_path / 'straight')
    ref = run_script('train_gankd_ssd.py', *GANKD, '--teacher-params', teacher_params,
                     '--dataset-root', voc_root, '--save-prefix', straight, '-j', 0,
                     '--epochs', epochs)
    assert ref.returncode == 0, ref.stderr[-3000:]
    _assert_same_params(prefix + '_last.params', straight + '_last.params')


def _plain_run():
    seed_everything(5)
    train_set, val_set, classes = voc_datasets(_plain_run.root)
    run = build_plain_run(STUDENT, DATA_SHAPE, classes, [mx.cpu()], lr=0.01,
                          optimizer='adam')
    return run, train_set, val_set


class _SignalOnRead(Dataset):
    """A dataset that sends this process ``signum`` when item ``index`` is read."""

    def __init__(self, dataset, index, signum):
        self._dataset, self._index, self._signum = dataset, index, signum

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, idx):
        if idx == self._index:
            os.kill(os.getpid(), self._signum)
        return self._dataset[idx]


def _fit(prefix, epochs, val_set=None, resume=''):
    run, train_set, default_val = _plain_run()
    loader = run.family.train_loader(train_set, run, DATA_SHAPE, 6,
                          augment='light', seed=5)
    cfg = TrainConfig(epochs=epochs, lr=0.01, log_interval=0, save_prefix=prefix,
                      checkpoint_interval=1, keep_checkpoints=50, seed=5, resume=resume)
    return fit(run, loader, val_loader(val_set or default_val, DATA_SHAPE, 2), cfg)


def test_signal_during_evaluation_stops_before_the_next_batch(tmp_path, voc_root):
    _plain_run.root = voc_root
    _, _, val_set = _plain_run()
    straight = _fit(str(tmp_path / 'straight'), 2)
    prefix = str(tmp_path / 'eval')
    before = signal.getsignal(signal.SIGINT)
    # Item 3 is in the second of three evaluation batches (2 images each). The val
    # loader here reads items as it goes, so the signal comes mid-evaluation.
    with pytest.raises(TrainingInterrupted) as info:
        _fit(prefix, 2, val_set=_SignalOnRead(val_set, 3, signal.SIGTERM), resume='')
    assert info.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    log = open(prefix + '_train.log').read()
    assert 'Interrupted by SIGTERM at epoch 0, iteration 2' in log
    assert 'Validation' not in log  # the evaluation did not finish
    state = verify_checkpoint(find_checkpoints(prefix)[-1])
    assert (state['epoch'], state['iteration'], state['batch']) == (0, 2, 2)
    _fit(prefix, 2, resume='auto')
    history = [json.loads(l) for l in open(prefix + '_history.jsonl')]
    assert [h['epoch'] for h in history] == [0, 1] and history[0]['resumed_after_batch'] == 2
    _assert_same_params(prefix + '_last.params', straight['last_params'])


def test_signals_during_a_checkpoint_save_let_it_finish(tmp_path, voc_root, monkeypatch):
    """Two signals while the checkpoint of iteration 3 is written: the save completes,
    training stops right after it, without a second save of the same iteration."""
    _plain_run.root = voc_root
    prefix = str(tmp_path / 'save')
    real_save, saves = engine.save_checkpoint, []

    def save_while_signalled(*args, **kwargs):
        saves.append(args[3]['iteration'])
        if args[3]['iteration'] == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(engine, 'save_checkpoint', save_while_signalled)
    with pytest.raises(TrainingInterrupted) as info:
        _fit(prefix, 3)
    assert info.value.signum == signal.SIGINT
    assert saves == [1, 2, 2, 3]  # iteration 2 ends epoch 0 (mid-epoch, then epoch end)
    newest = find_checkpoints(prefix)[-1]
    assert verify_checkpoint(newest)['iteration'] == 3
    assert 'Interrupted by SIGINT at epoch 1, iteration 3; checkpoint saved to {}'.format(
        newest) in open(prefix + '_train.log').read()


def test_third_signal_exits_at_once_and_handlers_are_restored():
    code = textwrap.dedent('''
        import os, signal, sys, time
        sys.path.insert(0, {root!r})
        from gankd.stopping import StopSignals
        # Compared with what was there before: a process started from a background job
        # inherits SIGINT ignored, and Python then keeps SIG_IGN, not default_int_handler.
        before = {{s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}}
        with StopSignals() as stop:
            assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
            os.kill(os.getpid(), signal.SIGINT)
            # Python runs the handler when the main thread next checks for signals, which
            # a loaded machine can delay past the next statement.
            for _ in range(500):
                if stop.requested:
                    break
                time.sleep(0.01)
            assert stop.requested and stop.signum == signal.SIGINT
        assert all(signal.getsignal(s) is h for s, h in before.items())
        print('restored', flush=True)
        with StopSignals():
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
            print('not reached', flush=True)
    ''').format(root=str(ROOT))
    tic = time.time()
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert time.time() - tic < 20
    assert proc.stdout.split() == ['restored']
    assert 'third time: exiting now' in proc.stderr


def test_loader_workers_ignore_stop_signals(voc_root):
    train_set, _, _ = voc_datasets(voc_root)
    net = build_ssd(**ssd_config(STUDENT, DATA_SHAPE, read_classes(voc_root)))
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, DATA_SHAPE, DATA_SHAPE)))
    loader = train_loader(train_set, anchors, DATA_SHAPE, 4, num_workers=2, augment='light')
    loader.set_epoch(0)
    first = [b[0].shape for b in loader]
    pids = loader.worker_pids
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)
    for pid in pids:
        os.kill(pid, 0)  # still there: raises ProcessLookupError otherwise
    loader.set_epoch(1)
    assert [b[0].shape for b in loader] == first
    # The loader still stops them (SIGKILL, since they ignore SIGTERM), without hanging.
    loader._worker_pool.terminate()
    for pid in pids:
        deadline = time.time() + 10
        while os.path.exists('/proc/{}'.format(pid)) and time.time() < deadline:
            time.sleep(0.05)
        assert not os.path.exists('/proc/{}'.format(pid))


def test_grid_passes_the_signal_to_its_cell_and_resumes_it(voc_root, tmp_path):
    """SIGTERM to the grid alone (as a scheduler sends it): the cell's training saves a
    checkpoint and exits, then the grid (143); the same command resumes the cell, and a
    Ctrl-C stops it again (130)."""
    out, work = tmp_path / 'r.json', tmp_path / 'work'
    grid = ['--dataset-root', voc_root, '--teachers', 'none', '--students', STUDENT,
            '--seeds', 0, '--out', out, '--work-dir', work, '--data-shape', DATA_SHAPE,
            '--batch-size', 4, '-j', 0, '--epochs', 200, '--log-interval', 1,
            '--optimizer', 'adam', '--augment', 'light']
    offset = 0
    for signum, expect in ((signal.SIGTERM, 'Interrupted by SIGTERM at epoch'),
                           (signal.SIGINT, 'Interrupted by SIGINT at epoch')):
        proc = _popen('reproduce.py', grid)
        try:
            deadline = time.time() + 120
            while not glob.glob(str(work / '**' / '*_train.log'), recursive=True):
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.1)
            log = glob.glob(str(work / '**' / '*_train.log'), recursive=True)[0]
            # The second time, a batch of the resumed training (its log is appended to).
            _wait_for(log, '[Batch 0]', proc, after=offset)
            os.kill(proc.pid, signum)  # the grid alone; the cell is in its own session
            out_text, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        assert proc.returncode == 128 + signum, err
        assert 'Traceback' not in err and 'run the same command to resume' in err
        text = open(log).read()
        assert expect in text[offset:]
        assert not out.exists() or not json.load(open(out))['records']
        offset = len(text)
    assert 'Resumed from' in text
