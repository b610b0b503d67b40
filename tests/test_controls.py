"""The controls of the calibrated benchmark (mini-voc-cal), at a scale CI can afford: the
loop's own evaluation agrees with eval_voc.py, and the distillation path from a student's
maps through its copy of the teacher's head loses nothing of the teacher.

The learning half of the feature-transfer control (a student trained through hint alone
approaching the teacher) is measured in the preset, not here: networks trained for the
few dozen iterations CI affords have BatchNorm running statistics far from their batch
statistics, so their inference-mode maps are orders of magnitude off (measured: relative
errors of 1e3 to 1e7 on the last levels of a resnet18_v1 teacher trained 30 iterations),
and hint toward them measures that, not transfer."""
import json

import pytest

from conftest import DATA_SHAPE, run_script


def test_teacher_mAP_of_the_training_loop_matches_eval_voc(tmp_path, voc_root):
    """The mAP the training loop validated and saved beside the best params is the one
    eval_voc.py measures on those params: one evaluation, not two that could disagree."""
    prefix = str(tmp_path / 'teacher')
    proc = run_script('train_ssd.py', '--network', 'mobilenet0.25', '--data-shape', DATA_SHAPE,
                      '--dataset-root', voc_root, '--batch-size', 8, '-j', 0, '--epochs', 3,
                      '--lr', 0.01, '--optimizer', 'adam', '--augment', 'light',
                      '--save-prefix', prefix)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loop = json.load(open(prefix + '_best.json'))['mAP']
    history = [json.loads(l) for l in open(prefix + '_history.jsonl')]
    assert loop == max(h['mAP'] for h in history)
    # Another batch size than training's: evaluation must not depend on it.
    ev = run_script('eval_voc.py', '--params', prefix + '_best.params', '--dataset-root',
                    voc_root, '--batch-size', 3, '--json', tmp_path / 'eval.json')
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.load(open(tmp_path / 'eval.json'))['mAP'] == pytest.approx(loop, abs=1e-9)


@pytest.fixture(scope='module')
def transfer_run(voc_root, teacher_params):
    """A student of the teacher's own architecture, trained through hint alone (no
    connector, detection loss weight 0) into the teacher's frozen head: the
    feature-transfer control of mini-voc-cal, on CI's tiny data."""
    import mxnet as mx
    from conftest import TEACHER
    from gankd.train.run import build_gankd_run
    from gankd.cli import seed_everything
    from gankd.data.voc import voc_datasets
    seed_everything(1)
    _, _, classes = voc_datasets(voc_root)
    return build_gankd_run(TEACHER, TEACHER, DATA_SHAPE, classes, [mx.cpu()],
                           teacher_params=teacher_params, distill=['hint'], head='frozen',
                           hint_connector='none', det_weight=0, optimizer='adam', lr=0.005)


def test_a_student_holding_the_teachers_weights_detects_exactly_like_the_teacher(
        tmp_path, voc_root, teacher_params, transfer_run):
    """The path from the student's maps through the student's copy of the head is the
    teacher's own: with the teacher's backbone weights, the saved student detects as the
    saved teacher does, box for box. (A pipeline that lost knowledge here could not
    transfer any.)"""
    import mxnet as mx
    import numpy as np
    from gankd.data.voc import voc_datasets
    from gankd.detectors.ssd.transforms import val_loader
    from gankd.detectors.detector import load_detector, save_detector
    run = transfer_run
    snapshot = {k: p.data().copy() for k, p in run.backbone.collect_params().items()}
    teacher = list(run.teacher.collect_params().values())
    student = list(run.backbone.collect_params().values())
    assert len(teacher) == len(student)
    for t, s in zip(teacher, student):
        s.set_data(t.data())
    path = str(tmp_path / 'student.params')
    save_detector(path, run.save_block, run.meta)
    for k, p in run.backbone.collect_params().items():  # the other tests train from scratch
        p.set_data(snapshot[k])
    _, t_backbone, t_head = load_detector(teacher_params)
    _, s_backbone, s_head = load_detector(path)
    _, val_set, _ = voc_datasets(voc_root)
    for batch in val_loader(val_set, DATA_SHAPE, 3):
        x = batch[0].as_in_context(mx.cpu())
        for a, b in zip(t_head(t_backbone(x)), s_head(s_backbone(x))):
            np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
