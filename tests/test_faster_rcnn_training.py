"""Issue 14: Faster R-CNN training at tiny scale, the guarantees SSD has: bit-exact resume,
several devices equal to one, a parameter server, bad input as one line, COCO, grids.

A file of its own so that pytest-xdist can run it beside ``test_faster_rcnn.py`` (the
model, head and terms); it shares that file's fixtures and tiny settings.
"""
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from conftest import assert_two_devices_update_as_one, run_script
from test_bad_input import assert_one_line_error
import test_faster_rcnn
from test_faster_rcnn import CPU0, CPU1, FLAGS, SHORT, TEACHER, TINY, _history
from gankd.data.synthetic import make_synthetic_voc
from gankd.data.voc import voc_datasets
from gankd.detectors.faster_rcnn import FASTER_RCNN
from gankd.errors import GankdError

# The same module-scoped fixtures (cheap: 12 images and a random teacher), built again here.
root = test_faster_rcnn.root
fr_classes = test_faster_rcnn.fr_classes
teacher = test_faster_rcnn.teacher


# ------------------------------------------------------------------ resume, devices

def test_resume_continues_exactly_like_an_uninterrupted_run(root, teacher, tmp_path):
    """GAN-KD for two epochs in one go, against the same run stopped after one epoch and
    resumed with ``--resume auto``, and against one resumed from a mid-epoch checkpoint:
    the same student, head and critics, bit for bit. Proposal sampling draws MXNet random
    numbers, which a checkpoint cannot hold; each image's sampling is seeded from the
    data pipeline instead. The runs use 0 and 1 loader processes, which must not matter."""
    def train(name, epochs, workers, *extra):
        prefix = str(tmp_path / name)
        flags = list(FLAGS)
        flags[flags.index('-j') + 1] = workers
        proc = run_script('train_gankd_faster_rcnn.py', '--teacher', TEACHER, '--student',
                          TEACHER, '--teacher-params', teacher, '--dataset-root', root,
                          '--save-prefix', prefix, '--epochs', epochs, '--distill', 'gan,soft',
                          '--lr', 0.01, '--val-interval', 9, *flags, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return prefix

    straight = train('straight', 2, 0, '--checkpoint-interval', 1, '--keep-checkpoints', 20)
    resumed = [train('boundary', 1, 1)]
    train('boundary', 2, 0, '--resume', 'auto')
    mid = os.path.join(straight + '_ckpt', 'epoch0000-iter00000002')
    resumed.append(train('mid', 2, 1, '--resume', mid))
    first = _history(resumed[1])[0]
    assert first['epoch'] == 0 and first['resumed_after_batch'] == 2
    for name in ('model.params', 'critics.params'):
        final = sorted(os.listdir(straight + '_ckpt'))[-1]
        expected = mx.nd.load(os.path.join(straight + '_ckpt', final, name))
        for prefix in resumed:
            got = mx.nd.load(os.path.join(prefix + '_ckpt', sorted(os.listdir(
                prefix + '_ckpt'))[-1], name))
            assert got.keys() == expected.keys()
            for k in expected:
                np.testing.assert_array_equal(got[k].asnumpy(), expected[k].asnumpy(),
                                              err_msg='{} {}: {}'.format(prefix, name, k))
    losses = [(h['epoch'], h['RCNN_CrossEntropy'], h['Loss_soft']) for h in _history(straight)]
    assert [(h['epoch'], h['RCNN_CrossEntropy'], h['Loss_soft'])
            for h in _history(resumed[0])] == losses


def _step_changes(run, batch):
    """One train_step; the losses and every trained parameter's change, per device."""
    from gankd.train.loop import train_step
    blocks = {'model': run.save_block, 'critics': run.terms[0].critics}

    def params(block, ctx):
        return {k: p.data(ctx).asnumpy().copy()
                for k, p in block._collect_params_with_prefix().items() if p.grad_req != 'null'}
    before = {n: params(b, run.ctx[0]) for n, b in blocks.items()}
    losses = train_step(run, batch)
    return losses, [{n: {k: v - before[n][k] for k, v in params(b, c).items()}
                     for n, b in blocks.items()} for c in run.ctx]


def test_two_cpu_contexts_match_one(root, fr_classes, teacher, tmp_path):
    """One GAN-KD iteration (critic step, then student step with hint and soft) on
    cpu(0)+cpu(1) changes the student, head and critics as on cpu(0) alone. The batch is
    two copies of the same two images (so each device's BatchNorm sees the whole batch's
    statistics); parameters whose update is dominated by rounding (it moves by more than
    1% when the same gradient is computed on the half batch alone) are not compared, as
    in tests/test_distributed.py; the others agree within 2%."""
    from gankd.train.run import build_gankd_run
    train_set, _, _ = voc_datasets(root)
    mx.random.seed(0)
    runs = [build_gankd_run(TEACHER, TEACHER, SHORT, fr_classes, ctx, teacher_params=teacher,
                            distill=('gan', 'hint', 'soft'), lr=0.05, family='faster_rcnn',
                            model_options=TINY)
            for ctx in ([CPU0], [CPU0], [CPU0, CPU1])]
    for run in runs:
        term = run.terms[0]  # SGD for the critics: Adam's first step is a gradient's sign
        term.trainer = gluon.Trainer(term.weights, 'sgd', {'learning_rate': 0.01})
    for run in runs[1:]:
        for name, a, b in (('model', runs[0].save_block, run.save_block),
                           ('critics', runs[0].terms[0].critics, run.terms[0].critics),
                           ('hint', runs[0].terms[1].connectors, run.terms[1].connectors)):
            path = str(tmp_path / (name + '.params'))
            a.save_parameters(path)
            b.load_parameters(path, ctx=run.ctx)
    loader = runs[0].family.train_loader(train_set, runs[0], (SHORT, 160), 2, seed=3)
    loader.set_epoch(0)
    half = next(iter(loader))
    doubled = tuple((mx.nd.concat(e[0], e[0], dim=0),) for e in half)
    shards = tuple((e[0], e[0]) for e in half)

    losses_one, (one,) = _step_changes(runs[0], doubled)
    _, (noise,) = _step_changes(runs[1], half)
    losses_two, two = _step_changes(runs[2], shards)
    for key in FASTER_RCNN.loss_names + ('Loss_G', 'Loss_hint', 'Loss_soft', 'Loss_D_real'):
        np.testing.assert_allclose(losses_two[key], losses_one[key], rtol=5e-3, atol=1e-4,
                                   err_msg=key)
    compared = assert_two_devices_update_as_one(
        one, two, noise, {b: 20 if b == 'model' else 3 for b in one})['model']
    assert any(k.startswith('head.rpn') for k in compared)
    assert any('predictor' in k for k in compared)
    assert any(k.startswith('backbone') for k in compared)


# ------------------------------------------------------------------------ bad input

def test_teacher_params_that_do_not_fit(root, teacher):
    proc = run_script('train_gankd_faster_rcnn.py', '--teacher', 'resnet34_v1b', '--student',
                      TEACHER, '--teacher-params', teacher, '--dataset-root', root, *FLAGS)
    assert_one_line_error(proc, teacher, 'parameter')


def test_uneven_batch_and_missing_data_are_one_line(root, teacher, tmp_path):
    proc = run_script('train_gankd_faster_rcnn.py', '--teacher', TEACHER, '--student', TEACHER,
                      '--teacher-params', teacher, '--dataset-root', root, *FLAGS[:-2],
                      '--batch-size', 3, '--cpu-contexts', 2)
    assert_one_line_error(proc, '--batch-size 3', '2 devices')
    missing = tmp_path / 'nowhere'
    proc = run_script('train_faster_rcnn.py', '--network', TEACHER, '--dataset-root', missing,
                      *FLAGS)
    assert_one_line_error(proc, str(missing), 'VOC2007/')
    proc = run_script('eval_voc.py', '--params', str(tmp_path / 'none.params'), '--dataset-root',
                      root)
    assert_one_line_error(proc, 'none.params')


def test_two_workers_on_parameter_server_end_with_identical_parameters(root, teacher,
                                                                      tmp_path):
    """``--kvstore dist_sync`` with a scheduler, a server and two workers on 127.0.0.1:
    each worker trains GAN-KD on its half of the images; both end with the same student,
    head and critics."""
    import glob
    import sys
    from conftest import ROOT
    from test_distributed import _parameter_server
    prefix = str(tmp_path / 'dist')
    train = [sys.executable, str(ROOT / 'scripts' / 'train_gankd_faster_rcnn.py'),
             '--teacher', TEACHER, '--student', TEACHER, '--teacher-params', teacher,
             '--dataset-root', root, '--epochs', '1', '--kvstore', 'dist_sync',
             '--distill', 'gan,soft', '--save-prefix', prefix, '--lr', '0.01'] + \
        [str(f) for f in FLAGS]
    logs = _parameter_server(tmp_path, train)
    assert any('worker 1 of 2: reads 1/2 of the training set' in l for l in logs)
    pairs = [(prefix + '_last.params', prefix + '_worker1_last.params')]
    pairs += [tuple(sorted(glob.glob(p + '_ckpt/epoch*/critics.params'))[-1]
                    for p in (prefix, prefix + '_worker1'))]
    for file_a, file_b in pairs:
        a, b = mx.nd.load(file_a), mx.nd.load(file_b)
        # BatchNorm's running statistics are each worker's own (it sees other images).
        trained = [k for k in a if not any(s in k for s in ('running_', 'moving_'))]
        assert a.keys() == b.keys() and len(trained) > (8 if 'critics' in file_a else 50)
        for k in trained:
            np.testing.assert_allclose(a[k].asnumpy(), b[k].asnumpy(), rtol=1e-5, atol=1e-6,
                                       err_msg='{}: {}'.format(file_a, k))
    # And training moved them: the head started as the teacher's.
    start, end = mx.nd.load(teacher), mx.nd.load(prefix + '_last.params')
    assert not np.allclose(start['rpn.conv1.0.weight'].asnumpy(),
                           end['head.rpn.conv1.0.weight'].asnumpy())


def test_coco_training_and_eval_coco_of_a_faster_rcnn(tmp_path):
    """COCO AP of a Faster R-CNN, from the training loop and from eval_coco.py alike: its
    boxes are already in each image's pixels (no rescaling by an input size, unlike
    SSD's square inputs), here 128 px images resized to a short side of 96."""
    import re
    coco = tmp_path / 'coco'
    make_synthetic_voc(str(coco), num_train=2, num_test=3, image_size=128, seed=4,
                       coco_json=True)
    prefix = str(tmp_path / 'coco_run')
    proc = run_script('train_faster_rcnn.py', '--network', TEACHER, '--dataset', 'coco',
                      '--dataset-root', coco, '--epochs', 1, '--save-prefix', prefix, *FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = _history(prefix)
    proc = run_script('eval_coco.py', '--params', prefix + '_last.params', '--dataset-root',
                      coco, '--batch-size', 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r'mAP=[\d.]+', lines[-1]) and re.fullmatch(r'AP50=[\d.]+', lines[-2])
    assert abs(float(lines[-1][4:]) - record['mAP']) < 1e-4


def test_a_faster_rcnn_grid_runs_the_faster_rcnn_scripts_with_their_flags(tmp_path):
    """A reproduction grid of the Faster R-CNN family: teachers and baselines through
    train_faster_rcnn.py, students through train_gankd_faster_rcnn.py, every flag checked
    by those scripts' parsers (a Table 3 preset is a Benchmark with family='faster_rcnn')."""
    from gankd.experiments.grid import Grid, METHODS, plan
    grid = Grid(name='t3', dataset_root=str(tmp_path), teachers=('none', 'resnet50_v1b'),
                students=('resnet18_v1b',), methods=('gan', 'hint+soft+bounded'), seeds=(0,),
                teacher_flags={'epochs': 3, 'roi-mode': 'pool', 'data-shape': 192},
                student_flags={'epochs': 2, 'gan-epochs': 1, 'roi-mode': 'pool',
                               'num-sample': 32},
                out=str(tmp_path / 'r.json'), work_dir=str(tmp_path / 'w'),
                methods_flags=dict(METHODS, **{'hint+soft+bounded': (
                    '--distill', 'hint,soft,bounded')}), family='faster_rcnn')
    cells = plan(grid)
    scripts = {c.key: os.path.basename(c.command[1]) for c in cells}
    assert scripts == {'teacher/resnet50_v1b/seed233': 'train_faster_rcnn.py',
                       'resnet18_v1b/none/baseline/seed0': 'train_faster_rcnn.py',
                       'resnet18_v1b/resnet50_v1b/gan/seed0': 'train_gankd_faster_rcnn.py',
                       'resnet18_v1b/resnet50_v1b/hint+soft+bounded/seed0':
                           'train_gankd_faster_rcnn.py'}
    baseline = [c for c in cells if c.role == 'baseline'][0]
    assert '--gan-epochs' not in baseline.command and '--num-sample' in baseline.command
    bad = Grid(**dict(grid.__dict__, teacher_flags={'augment': 'light'}))
    with pytest.raises(GankdError, match='augment'):
        plan(bad)
