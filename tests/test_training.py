"""Item 4 and 5: the GAN-KD loop and plain SSD training, run for real on tiny data."""
import json

import mxnet as mx
import numpy as np
import pytest

from conftest import DATA_SHAPE, STUDENT, TEACHER, run_script
from gankd.train.run import build_gankd_run
from gankd.data.voc import voc_datasets
from gankd.detectors.ssd.transforms import val_loader
from gankd.train.loop import TrainConfig, fit


def _snapshot(block):
    return {k: p.data().asnumpy().copy() for k, p in block._collect_params_with_prefix().items()}


@pytest.fixture(scope='module')
def gankd_run_result(voc_root, teacher_params, tmp_path_factory):
    """Three epochs of GAN-KD (two with critics, n_critic=2), watching every critic step."""
    train_set, val_set, classes = voc_datasets(voc_root)
    run = build_gankd_run(TEACHER, STUDENT, DATA_SHAPE, classes, [mx.cpu()],
                          teacher_params=teacher_params, n_critic=2, clip=0.03)
    term = run.terms[0]
    clip_seen = []
    term.step_hooks.append(lambda params: clip_seen.append(
        max(abs(p.data()).max().asscalar() for p in params.values())))
    before = {'teacher': _snapshot(run.teacher), 'student': _snapshot(run.backbone),
              'head': _snapshot(run.head)}
    loader = run.family.train_loader(train_set, run, DATA_SHAPE, 8)
    prefix = str(tmp_path_factory.mktemp('gankd') / 'run')
    cfg = TrainConfig(epochs=3, gan_epochs=2, lr=0.01, log_interval=1, save_prefix=prefix)
    result = fit(run, loader, val_loader(val_set, DATA_SHAPE, 4), cfg)
    return dict(run=run, before=before, clip_seen=clip_seen, prefix=prefix, result=result,
                iterations=len(loader), loader=loader)


def test_fit_gives_the_loader_each_epoch(gankd_run_result):
    # The loader's order and augmentation are drawn for the epoch fit() last set.
    assert gankd_run_result['loader'].sampler.epoch == 2


def test_teacher_parameters_bit_identical_after_training(gankd_run_result):
    r = gankd_run_result
    after = _snapshot(r['run'].teacher)
    assert after.keys() == r['before']['teacher'].keys()
    for name, value in r['before']['teacher'].items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_every_critic_weight_within_clip_after_every_critic_step(gankd_run_result):
    r = gankd_run_result
    # Two GAN epochs, n_critic=2: a hook call per critic step, none in fine-tuning.
    assert len(r['clip_seen']) == 2 * 2 * r['iterations']
    assert max(r['clip_seen']) <= 0.03 + 1e-7
    # The bound is reached: clipping is active, not just a small initialisation.
    assert max(r['clip_seen']) > 0.029


def test_student_and_head_train_from_a_copy_of_the_teacher_head(gankd_run_result, teacher_params):
    r = gankd_run_result
    student_after, head_after = _snapshot(r['run'].backbone), _snapshot(r['run'].head)
    assert any(not np.array_equal(student_after[k], v) for k, v in r['before']['student'].items())
    # Head parameter names are those of a GluonCV SSD file (class_predictors.0..., ...).
    teacher_head = mx.nd.load(teacher_params)
    changed = 0
    for name, value in r['before']['head'].items():
        # The head started as the teacher's head ...
        np.testing.assert_array_equal(value, teacher_head[name].asnumpy())
        changed += not np.array_equal(head_after[name], value)
    assert changed  # ... and trained with the student


@pytest.mark.parametrize('head', ['fresh', 'frozen'])
def test_head_flag_starts_fresh_or_keeps_the_teacher_head_frozen(head, voc_root, teacher_params,
                                                                 tmp_path):
    train_set, val_set, classes = voc_datasets(voc_root)
    mx.random.seed(0)
    run = build_gankd_run(TEACHER, STUDENT, DATA_SHAPE, classes, [mx.cpu()],
                          teacher_params=teacher_params, head=head)
    teacher_head = {k: v.asnumpy() for k, v in mx.nd.load(teacher_params).items()}
    before = {'student': _snapshot(run.backbone), 'head': _snapshot(run.head)}
    same = [np.array_equal(v, teacher_head[k]) for k, v in before['head'].items()]
    # Fresh: no head weight is the teacher's (biases may both start at zero).
    assert all(same) if head == 'frozen' else not any(
        same[i] for i, k in enumerate(before['head']) if k.endswith('weight'))
    loader = run.family.train_loader(train_set, run, DATA_SHAPE, 8)
    fit(run, loader, None, TrainConfig(epochs=1, gan_epochs=1, lr=0.01,
                                        save_prefix=str(tmp_path / 'run')))
    student_after, head_after = _snapshot(run.backbone), _snapshot(run.head)
    assert any(not np.array_equal(student_after[k], v) for k, v in before['student'].items())
    changed = [not np.array_equal(head_after[k], v) for k, v in before['head'].items()]
    assert (not any(changed)) if head == 'frozen' else any(changed)
    assert run.meta['head'] == head


def test_log_history_and_params_files(gankd_run_result):
    prefix = gankd_run_result['prefix']
    log = open(prefix + '_train.log').read().splitlines()
    interval = [l for l in log if l.startswith('[Epoch 0][Batch')]
    assert interval
    for key in ('Loss_D=', 'Loss_D_real=', 'Loss_D_fake=', 'Loss_G=', 'CrossEntropy=',
                'SmoothL1=', 'samples/sec'):
        assert key in interval[0]
    assert 'Loss_D=' not in [l for l in log if l.startswith('[Epoch 2][Batch')][0]
    assert any(l.startswith('mAP=') for l in log)
    history = [json.loads(l) for l in open(prefix + '_history.jsonl')]
    assert [h['epoch'] for h in history] == [0, 1, 2]
    assert [h['stage'] for h in history] == ['distill', 'distill', 'detection']
    assert 'Loss_D' in history[0] and 'Loss_D' not in history[2]
    assert all(0 <= h['mAP'] <= 1 for h in history)
    best = gankd_run_result['result']['best_params']
    assert log[-1] == 'Best mAP={:.4f}: {}'.format(max(h['mAP'] for h in history), best)
    meta = json.load(open(best[:-len('.params')] + '.json'))
    assert meta['kind'] == 'student' and meta['student'] == STUDENT
    assert meta['teacher']['base'] == TEACHER and meta['adapted_levels']


def test_eval_script_evaluates_the_student_from_params_alone(gankd_run_result, voc_root, tmp_path):
    best = gankd_run_result['result']['best_params']
    out = tmp_path / 'eval.json'
    proc = run_script('eval_voc.py', '--params', best, '--dataset-root', voc_root,
                      '--batch-size', 4, '--json', out)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith('mAP=')
    numbers = json.load(open(out))
    assert numbers['num_images'] == 6 and len(numbers['per_class']) == 6
    assert abs(float(last[4:]) - numbers['mAP']) < 1e-4
    assert abs(numbers['mAP'] - gankd_run_result['result']['best_map']) < 1e-4


def test_eval_counts_every_image_once(voc_root, teacher_params, monkeypatch):
    """4 test images per batch over 6 images: the last, partial batch must count."""
    from gankd.train.loop import evaluate
    from gankd.detectors.detector import load_detector
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric
    _, test_set, classes = voc_datasets(voc_root)
    ctx = [mx.cpu(0), mx.cpu(1)]
    _, backbone, head = load_detector(teacher_params, ctx)
    seen = []
    orig = VOC07MApMetric.update
    # A spy on the real metric: count the images each update receives.
    monkeypatch.setattr(VOC07MApMetric, 'update', lambda self, *a: (
        seen.append(sum(d.shape[0] for d in a[0])), orig(self, *a)))
    from gankd.detectors.ssd import SSD
    evaluate(SSD, backbone, head, val_loader(test_set, DATA_SHAPE, 4), ctx, classes)
    assert sum(seen) == len(test_set) == 6


def test_plain_training_script_writes_a_loadable_ssd(voc_root, tmp_path):
    prefix = tmp_path / 'plain'
    proc = run_script('train_ssd.py', '--network', 'mobilenet0.25', '--data-shape', DATA_SHAPE,
                      '--batch-size', 8, '--dataset-root', voc_root, '--epochs', 1,
                      '--save-prefix', prefix, '-j', 0, '--log-interval', 1)
    assert proc.returncode == 0, proc.stderr
    assert 'Loss_D' not in proc.stderr
    best = str(prefix) + '_best.params'
    # A plain SSD params file is a GluonCV SSD file: it loads into the preset directly.
    from gankd.detectors.ssd.model import build_ssd, ssd_config
    meta = json.load(open(str(prefix) + '_best.json'))
    assert meta['kind'] == 'ssd'
    net = build_ssd(**ssd_config('mobilenet0.25', DATA_SHAPE, meta['ssd']['classes']))
    net.load_parameters(best)


def test_warmup_raises_the_learning_rate_linearly_over_the_first_iterations(voc_root):
    from gankd.train.run import build_plain_run
    from gankd.train.loop import train_one_epoch
    train_set, _, classes = voc_datasets(voc_root)
    run = build_plain_run(STUDENT, DATA_SHAPE, classes, [mx.cpu()], lr=0.01, optimizer='adam')
    loader = run.family.train_loader(train_set, run, DATA_SHAPE, 4)
    seen = []
    for epoch, start in ((0, 0), (1, 4)):
        loader.set_epoch(epoch)
        train_one_epoch(run, loader, epoch, log_interval=0, start_iteration=start,
                        warmup=(6, 0.01),
                        on_iteration=lambda it: seen.append(run.trainer.learning_rate))
    # 16 images in batches of 4: 4 iterations an epoch; the ramp spans the epoch boundary.
    assert seen == pytest.approx([0.01 * k / 6 for k in range(1, 7)] + [0.01, 0.01])
