"""Checkpoints survive SIGKILL and damage: resume picks the newest intact one."""
import json
import os
import signal
import subprocess
import sys
import time

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
