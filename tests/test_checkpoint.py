"""Checkpoints survive SIGKILL and damage: resume picks the newest intact one."""
import json
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np

from conftest import DATA_SHAPE, ROOT, STUDENT, TEACHER, run_script
from test_bad_input import assert_one_line_error


def _common(voc_root, teacher_params, prefix):
    return ['--teacher', TEACHER, '--student', STUDENT, '--data-shape', DATA_SHAPE,
            '--batch-size', 8, '-j', 0, '--log-interval', 1, '--teacher-params',
            teacher_params, '--dataset-root', voc_root, '--save-prefix', prefix]


def test_sigkill_mid_epoch_then_resume_auto_reaches_last_epoch(tmp_path, voc_root,
                                                               teacher_params):
    prefix = str(tmp_path / 'kill')
    common = _common(voc_root, teacher_params, prefix) + ['--checkpoint-interval', 1]
    cmd = [sys.executable, str(ROOT / 'scripts' / 'train_gankd_ssd.py')] + \
        [str(a) for a in common] + ['--epochs', '200']
    ckpt_dir = prefix + '_ckpt'
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # 16 images, batch 8: epoch 1 runs iterations 3 and 4; kill after iteration 3.
        deadline = time.time() + 120
        while time.time() < deadline and not os.path.isdir(
                os.path.join(ckpt_dir, 'epoch0001-iter00000003')):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    intact = [d for d in sorted(os.listdir(ckpt_dir)) if d.startswith('epoch')]
    assert 'epoch0001-iter00000003' in intact
    newest = intact[-1]
    done = run_script('train_gankd_ssd.py', *common, '--epochs', 3, '--resume', 'auto')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'Resumed from {}'.format(os.path.join(ckpt_dir, newest)) in done.stderr
    history = [json.loads(l) for l in open(prefix + '_history.jsonl')]
    assert [h['epoch'] for h in history] == [0, 1, 2]  # no epoch twice, none missing
    ev = run_script('eval_voc.py', '--params', prefix + '_last.params', '--dataset-root',
                    voc_root)
    assert ev.returncode == 0, ev.stderr
    assert ev.stdout.strip().splitlines()[-1].startswith('mAP=')


def test_damaged_newest_checkpoint_falls_back_to_previous(tmp_path, voc_root, teacher_params):
    prefix = str(tmp_path / 'dmg')
    common = _common(voc_root, teacher_params, prefix)
    first = run_script('train_gankd_ssd.py', *common, '--epochs', 2)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt_dir = prefix + '_ckpt'
    older, newest = [os.path.join(ckpt_dir, d) for d in sorted(os.listdir(ckpt_dir))][-2:]
    model = os.path.join(newest, 'model.params')
    with open(model, 'r+b') as f:
        f.truncate(os.path.getsize(model) // 2)
    # Naming the damaged checkpoint explicitly is a clear error ...
    explicit = run_script('train_gankd_ssd.py', *common, '--epochs', 3, '--resume', newest)
    assert_one_line_error(explicit, newest, 'model.params', 'checksum', after_log=True)
    # ... while --resume auto skips it and continues from the one before.
    auto = run_script('train_gankd_ssd.py', *common, '--epochs', 3, '--resume', 'auto')
    assert auto.returncode == 0, auto.stderr[-3000:]
    assert 'is damaged' in auto.stderr
    assert 'Resumed from {} at epoch 1'.format(older) in auto.stderr
    history = [json.loads(l) for l in open(prefix + '_history.jsonl')]
    assert [h['epoch'] for h in history] == [0, 1, 2]


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, voc_root,
                                                            teacher_params):
    """Four epochs (two with the critics, two of detection only) in one go, against the
    same run resumed at an epoch boundary (two epochs, then ``--resume auto`` to four) and
    resumed from mid-epoch checkpoints: the same weights, bit for bit. The runs also use
    1, 0 and 2 loader processes, which must not matter: every sample's augmentation is
    seeded from (--seed, epoch, position), whichever process draws it. 16 images in
    batches of 6 make 2 batches an epoch (4 images left out, a different 4 each time)."""
    def train(name, epochs, workers, *extra):
        prefix = str(tmp_path / name)
        args = _common(voc_root, teacher_params, prefix)
        args[args.index('--batch-size') + 1] = 6
        args[args.index('-j') + 1] = workers
        proc = run_script('train_gankd_ssd.py', *args, '--epochs', epochs, '--gan-epochs', 2,
                          '--lr', 0.01, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return prefix

    def losses(prefix):
        return [(h['epoch'], h['CrossEntropy'], h.get('Loss_G')) for h in map(
            json.loads, open(prefix + '_history.jsonl'))]

    straight = train('straight', 4, 1, '--checkpoint-interval', 1, '--keep-checkpoints', 20)
    expected = mx.nd.load(straight + '_last.params')
    train('boundary', 2, 0)
    resumed = [train('boundary', 4, 2, '--resume', 'auto')]
    assert losses(resumed[0]) == losses(straight) and len(losses(straight)) == 4
    # Iteration 3 is the first batch of epoch 1 (with the critics), iteration 5 the first
    # of epoch 2 (detection only): the resumed runs train the second batch of each.
    for name in ('epoch0001-iter00000003', 'epoch0002-iter00000005'):
        resumed.append(train('mid-' + name, 4, 0, '--resume',
                             os.path.join(straight + '_ckpt', name)))
        first = json.loads(open(resumed[-1] + '_history.jsonl').readline())
        assert first['epoch'] == int(name[5:9]) and first['resumed_after_batch'] == 1
        assert first['iteration'] == int(name[-8:]) + 1
    for prefix in resumed:
        got = mx.nd.load(prefix + '_last.params')
        assert got.keys() == expected.keys()
        for k in expected:
            np.testing.assert_array_equal(got[k].asnumpy(), expected[k].asnumpy(),
                                          err_msg='{}: {}'.format(prefix, k))
