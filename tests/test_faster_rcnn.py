"""Issue 14: GluonCV's Faster R-CNN as a second detector family, through the same loop.

Tiny scale: 8 training and 4 test images of 96 px, a resnet18_v1b Faster R-CNN at short
side 96 with 16 sampled proposals and 7x7 RoI features. The teacher has random weights
(the mechanics do not need a trained one).
"""
import json
import math
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from conftest import run_script
from test_bad_input import assert_one_line_error
from gankd.data.synthetic import make_synthetic_voc
from gankd.data.voc import read_classes, voc_datasets
from gankd.detectors.detector import save_detector
from gankd.detectors.faster_rcnn import FASTER_RCNN
from gankd.detectors.faster_rcnn.student import build_student, check_geometry
from gankd.detectors.faster_rcnn.transforms import (FasterRCNNTrainTransform, TrainBatchify,
                                                    target_net)
from gankd.distill import Captures, DistillContext, build_terms
from gankd.errors import GankdError

SHORT = 96
TEACHER = 'resnet18_v1b'
TINY = dict(num_sample=16, roi_size=7)
FLAGS = ['--data-shape', SHORT, '--num-sample', 16, '--roi-size', 7, '-j', 0,
         '--log-interval', 1, '--batch-size', 2]
CPU0, CPU1 = mx.cpu(0), mx.cpu(1)
TERMS = ('gan', 'hint', 'soft', 'bounded', 'crosshead', 'di', 'cosine')


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp('frcnn') / 'voc'
    make_synthetic_voc(str(path), num_train=8, num_test=4, image_size=96, seed=5)
    return str(path)


@pytest.fixture(scope='module')
def fr_classes(root):
    return read_classes(root)


@pytest.fixture(scope='module')
def teacher(tmp_path_factory, fr_classes):
    """A teacher Faster R-CNN with random weights, saved as training saves one."""
    mx.random.seed(1)
    cfg = FASTER_RCNN.config(TEACHER, SHORT, fr_classes, **TINY)
    net = FASTER_RCNN.build(cfg, mx.cpu())
    path = str(tmp_path_factory.mktemp('frteacher') / 'teacher.params')
    save_detector(path, net, FASTER_RCNN.describe_plain(cfg))
    return path


def _history(prefix):
    return [json.loads(l) for l in open(prefix + '_history.jsonl')]


# ------------------------------------------------------------------------ presets

@pytest.mark.parametrize('preset', ['faster_rcnn_resnet50_v1b_voc',
                                    'faster_rcnn_resnet101_v1d_voc'])
def test_zoo_preset_has_gluoncvs_parameters_and_small_presets_fit_their_anchors(preset):
    """A model-zoo preset is GluonCV's own network (same parameter names and shapes, so
    model-zoo weights load, and the same trained parameters); a preset asking for more
    proposals than a small image has anchors is refused before MXNet fails on it."""
    from gluoncv.model_zoo import get_model
    from gluoncv.data import VOCDetection
    classes = list(VOCDetection.CLASSES)
    cfg = FASTER_RCNN.config(preset, 600, classes)
    assert cfg['rpn_train_post_nms'] == 2000 and cfg['frozen_bn'] and cfg['max_size'] == 1000
    # Parameter shapes depend neither on the input size nor on the number of proposals:
    # build both small, with 4 test proposals instead of 300 (the inference pass that
    # resolves the deferred shapes otherwise runs layer4 of a ResNet-101 on 300 RoIs,
    # a minute of CPU that MXNet's asynchronous engine bills to the next test).
    ours = FASTER_RCNN.build(dict(cfg, short=128, max_size=160, rpn_test_post_nms=4),
                             mx.cpu())
    theirs = get_model(preset, pretrained=False, pretrained_base=False)
    theirs.initialize()
    # GluonCV keeps the number in two places; both must be there for the override to act.
    assert theirs._rpn_test_post_nms == theirs.rpn._test_post_nms == cfg['rpn_test_post_nms']
    theirs._rpn_test_post_nms = theirs.rpn._test_post_nms = 4
    with autograd.predict_mode():
        theirs(mx.nd.zeros((1, 3, 128, 128)))
    a = {k: v.shape for k, v in ours._collect_params_with_prefix().items()}
    b = {k: v.shape for k, v in theirs._collect_params_with_prefix().items()}
    mx.nd.waitall()
    assert a == b
    # GluonCV's recipe: frozen BatchNorm, only its train_patterns train (but constants:
    # the RPN's anchors match '.*rpn' and are no weights).
    selected = set(theirs.collect_train_params().keys())
    assert {k for k, v in ours._collect_params_with_prefix().items() if v.grad_req != 'null'} \
        == {k for k, v in theirs._collect_params_with_prefix().items()
            if v.name in selected and not isinstance(v, gluon.Constant)}
    with pytest.raises(GankdError, match='anchors'):
        FASTER_RCNN.config(preset, 64, classes)
    with pytest.raises(GankdError, match='pool'):
        FASTER_RCNN.config(TEACHER, SHORT, classes, roi_mode='max')
    with pytest.raises(GankdError, match='no model option'):
        FASTER_RCNN.config(TEACHER, SHORT, classes, anchors=3)


def test_model_zoo_teacher_missing_from_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    cfg = FASTER_RCNN.config('faster_rcnn_resnet50_v1b_voc', 600, ['a', 'b'])
    with pytest.raises(GankdError, match='faster_rcnn_resnet50_v1b_voc not found at {}.*'
                       '--teacher-params'.format(tmp_path)):
        FASTER_RCNN.load_teacher(cfg, None, mx.cpu())
    # GluonCV 0.10.5's model store has no VOC weights of the ResNet-101 preset.
    cfg = FASTER_RCNN.config('faster_rcnn_resnet101_v1d_voc', 600, ['a', 'b'])
    with pytest.raises(GankdError, match='no model-zoo weights for '
                       'faster_rcnn_resnet101_v1d_voc.*--teacher-params'):
        FASTER_RCNN.load_teacher(cfg, None, mx.cpu())
    with pytest.raises(GankdError, match='no model-zoo weights for faster_rcnn_resnet18_v1b'):
        FASTER_RCNN.load_teacher(FASTER_RCNN.config(TEACHER, SHORT, ['a']), None, mx.cpu())


def test_student_adapter_and_stride_check(fr_classes):
    """A student with other channels gets a 1x1 adapter to the teacher's; one whose map
    would have another size (another stride) is refused with both shape lists."""
    teacher_probe = [(256, 6, 6), (256, 6, 9), (256, 9, 6)]
    student = build_student('resnet50_v1b', SHORT, teacher_probe)
    assert student.adapted_levels == [0]
    with autograd.predict_mode():
        assert student(mx.nd.zeros((1, 3, SHORT, 144)))[0].shape == (1, 256, 6, 9)
    with pytest.raises(GankdError, match='strides differ'):
        build_student('resnet18_v1b', SHORT, [(256, 12, 12), (256, 12, 18), (256, 18, 12)])
    with pytest.raises(GankdError, match='resnet18_v1b cannot match teacher t'):
        check_geometry([(256, 6, 6)], [(256, 3, 3)], 'resnet18_v1b', 't')


def _first_training_image(root, cfg, backbone, head):
    """The first training image of epoch 0 (seed 3) with its targets, as the plain
    training loop unpacks it for one CPU."""
    family = FASTER_RCNN
    train_set, _, _ = voc_datasets(root)
    run = SimpleNamespace(meta=family.describe_plain(cfg), backbone=backbone, head=head,
                          ctx=[CPU0])
    loader = family.train_loader(train_set, run, family.data_shape(run.meta), 1, seed=3)
    loader.set_epoch(0)
    _, (t,) = family.unpack(next(iter(loader)), [CPU0])
    return t


def test_head_and_loss_are_gluoncvs_training_forward_and_loss(root, fr_classes):
    """The head's training forward on the backbone's map is GluonCV's ``FasterRCNN``
    training forward (same proposals sampled, given the image's seed), and the task
    loss is the loss of GluonCV's ``train_faster_rcnn.py`` on its outputs (one image)."""
    family = FASTER_RCNN
    cfg = family.config(TEACHER, SHORT, fr_classes, **TINY)
    net = family.build(cfg, CPU0)
    backbone, head = family.split(net)
    t = _first_training_image(root, cfg, backbone, head)
    with autograd.record():
        preds = family.forward_train(head, backbone(t.image), t)
        _, parts = family.task_loss([preds], [t])
        mx.random.seed(t.seeds[0], ctx=CPU0)
        label = t.label[:, :t.num_gt[0]]
        (cls_pred, box_pred, roi, _, _, rpn_score, rpn_box, _, cls_targets, box_targets,
         box_masks, _) = net(t.image, label[:, :, :4], label[:, :, 4:5])
    np.testing.assert_array_equal(preds[1].rois.asnumpy(), roi.asnumpy())
    np.testing.assert_array_equal(preds[1].cls_targets.asnumpy(), cls_targets.asnumpy())
    np.testing.assert_allclose(preds[1].cls_logits.asnumpy(), cls_pred.asnumpy(), rtol=1e-4,
                               atol=1e-5)
    # GluonCV's train_faster_rcnn.py, one image per device.
    rpn_cls_t, rpn_box_t, rpn_mask = t.rpn_cls, t.rpn_box, t.rpn_mask
    score = rpn_score.squeeze(axis=-1)
    num_rpn = (rpn_cls_t >= 0).sum()
    num_rcnn = (cls_targets >= 0).sum()
    expected = {
        'RPN_Conf': gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)(
            score, rpn_cls_t, rpn_cls_t >= 0) * rpn_cls_t.size / num_rpn,
        'RPN_SmoothL1': gluon.loss.HuberLoss(rho=1 / 9.)(rpn_box, rpn_box_t, rpn_mask) *
        rpn_box.size / num_rpn,
        'RCNN_CrossEntropy': gluon.loss.SoftmaxCrossEntropyLoss()(
            cls_pred, cls_targets, cls_targets.expand_dims(-1) >= 0) * cls_targets.size /
        num_rcnn,
        'RCNN_SmoothL1': gluon.loss.HuberLoss()(box_pred, box_targets, box_masks) *
        box_pred.size / num_rcnn}
    for name, value in expected.items():
        assert abs(parts[name][0].asscalar() - value.sum().asscalar()) <= 1e-4 * max(
            1e-3, abs(value.sum().asscalar())), name
    assert preds[1].positives().sum().asscalar() > 0


def test_resnet10_v1b_is_a_smaller_base_with_resnet18_v1bs_geometry(root, fr_classes):
    """``resnet10_v1b`` (gankd.detectors.backbones: GluonCV's ResNetV1b, one block per
    stage) builds a Faster R-CNN whose backbone map has resnet18_v1b's channels and
    stride, with fewer parameters, and trains: finite losses, a gradient in every layer."""
    family = FASTER_RCNN
    nets = {}
    for base in ('resnet10_v1b', TEACHER):
        cfg = family.config(base, SHORT, fr_classes, **TINY)
        nets[base] = (cfg, family.build(cfg, CPU0))
    shapes = {b: family.levels(family.split(n)[0], SHORT, CPU0) for b, (_, n) in nets.items()}
    assert shapes['resnet10_v1b'] == shapes[TEACHER]

    def size(net):
        return sum(p.data().size for p in net.collect_params().values())
    assert size(nets['resnet10_v1b'][1]) < 0.8 * size(nets[TEACHER][1])
    cfg, net = nets['resnet10_v1b']
    backbone, head = family.split(net)
    t = _first_training_image(root, cfg, backbone, head)
    with autograd.record():
        objectives, parts = family.task_loss([family.forward_train(head, backbone(t.image), t)],
                                             [t])
    autograd.backward(objectives)
    assert all(math.isfinite(v[0].asscalar()) for v in parts.values())
    for name in ('layers1_', 'layers2_', 'layers3_'):  # ResNetV1b's layer1 to layer3
        grads = [p.grad().abs().sum().asscalar() for k, p in backbone.collect_params().items()
                 if name in k and k.endswith('weight') and p.grad_req != 'null']
        assert grads and sum(grads) > 0, name


# ------------------------------------------------------------------ plain training

def test_plain_training_writes_params_that_eval_voc_evaluates(root, tmp_path):
    prefix = str(tmp_path / 'plain')
    proc = run_script('train_faster_rcnn.py', '--network', TEACHER, '--dataset-root', root,
                      '--epochs', 1, '--save-prefix', prefix, *FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr
    for name in ('RPN_Conf=', 'RPN_SmoothL1=', 'RCNN_CrossEntropy=', 'RCNN_SmoothL1='):
        assert name in log
    (record,) = _history(prefix)
    assert record['iteration'] == 4 and 0 <= record['mAP'] <= 1
    assert all(math.isfinite(record[k]) for k in FASTER_RCNN.loss_names)
    meta = json.load(open(prefix + '_best.json'))
    assert meta['family'] == 'faster_rcnn' and meta['faster_rcnn']['roi_size'] == [7, 7]
    ev = run_script('eval_voc.py', '--params', prefix + '_best.params', '--batch-size', 3)
    assert ev.returncode == 0, ev.stderr
    last = ev.stdout.strip().splitlines()[-1]
    assert abs(float(last[len('mAP='):]) - record['mAP']) < 1e-4
    assert '(4 test images)' in ev.stdout
    # Export is SSD's: refused in one line, not a traceback.
    ex = run_script('export.py', '--params', prefix + '_best.params', '--out',
                    str(tmp_path / 'export'))
    assert_one_line_error(ex, 'faster_rcnn detector', 'SSDs only')


# ---------------------------------------------------------------- GAN-KD training

def test_gankd_with_every_term_trains_and_the_student_evaluates(root, teacher, tmp_path):
    prefix = str(tmp_path / 'gankd')
    proc = run_script('train_gankd_faster_rcnn.py', '--teacher', TEACHER, '--student',
                      'resnet18_v1b', '--adapt', 'all', '--teacher-params', teacher,
                      '--dataset-root', root, '--epochs', 1, '--save-prefix', prefix,
                      '--distill', ','.join(TERMS), '--roi-mode', 'pool', *FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = _history(prefix)
    assert record['stage'] == 'distill'
    for name in ('Loss_D', 'Loss_G', 'Loss_hint', 'Loss_soft', 'Loss_bounded',
                 'Loss_crosshead', 'Loss_di', 'Loss_cosine') + FASTER_RCNN.loss_names:
        assert math.isfinite(record[name]), name
    meta = json.load(open(prefix + '_last.json'))
    assert meta['kind'] == 'student' and meta['adapted_levels'] == [0]
    assert meta['teacher']['roi_mode'] == 'pool'
    assert set(meta['distill']) == set(TERMS)
    ev = run_script('eval_voc.py', '--params', prefix + '_last.params')
    assert ev.returncode == 0, ev.stderr
    assert abs(float(ev.stdout.strip().splitlines()[-1][4:]) - record['mAP']) < 1e-4


# ------------------------------------------------ terms on R-CNN captures, in-process

def _shard(batch, parts):
    """A one-device batch split into ``parts`` devices' shards (images of one size)."""
    out = []
    for element in batch:
        (whole,) = element
        size = whole.shape[0] // parts
        out.append(tuple(whole[i * size:(i + 1) * size] for i in range(parts)))
    return tuple(out)


@pytest.fixture(scope='module')
def rig(root, fr_classes, teacher):
    """A frozen teacher and a trainable copy of its head, as a distillation run builds
    them, with BatchNorm frozen (GluonCV's model-zoo setting) so that training and
    inference modes agree; one batch of two images with its teacher maps."""
    family, ctx = FASTER_RCNN, [CPU0, CPU1]
    cfg = dict(family.config(TEACHER, SHORT, fr_classes, **TINY), frozen_bn=True)
    backbone, head = family.split(family.load_teacher(cfg, teacher, ctx))
    for block in (backbone, head):
        block.collect_params().setattr('grad_req', 'null')
        block.hybridize(static_alloc=True, static_shape=True)
    s_head = family.student_head(cfg, head, 'teacher', ctx)
    s_head.hybridize(static_alloc=True, static_shape=True)
    train_set, _, _ = voc_datasets(root)
    run = SimpleNamespace(meta=family.describe_plain(cfg), backbone=backbone, head=head,
                          ctx=[CPU0])
    loader = family.train_loader(train_set, run, family.data_shape(run.meta), 2, seed=3)
    loader.set_epoch(0)
    batch = next(iter(loader))
    # A NumPy copy leaves MKLDNN's layout behind, so that the maps can be sliced.
    t_maps = mx.nd.array(backbone(batch[0][0].as_in_context(CPU0))[0].asnumpy())
    shapes = family.levels(backbone, SHORT, CPU0)
    context = DistillContext(shapes, ctx, teacher_head=head, family=family)
    return dict(family=family, backbone=backbone, head=head, s_head=s_head, batch=batch,
                t_maps=t_maps, context=context)


def _captures(d, s_maps, devices):
    """Per-device Captures as train_step builds them, student maps attached as leaves."""
    family = d['family']
    batch = d['batch'] if len(devices) == 1 else _shard(d['batch'], len(devices))
    _, targets = family.unpack(batch, devices)
    size = s_maps.shape[0] // len(devices)
    caps = []
    for i, (dev, tg) in enumerate(zip(devices, targets)):
        s = s_maps[i * size:(i + 1) * size].copyto(dev)
        s.attach_grad()
        t = d['t_maps'][i * size:(i + 1) * size].copyto(dev)
        caps.append(Captures([s], [t], size / float(s_maps.shape[0]), targets=tg,
                             family=family))
    return caps


def _run_term(term, d, caps):
    """What train_step does with a term: prepare, student head, teacher predictions, the
    term's per-device losses (recorded)."""
    term.prepare(caps)
    with autograd.record():
        for cap in caps:
            cap.predictions = d['family'].forward_train(d['s_head'], cap.student_maps,
                                                        cap.targets)
        if term.needs_teacher_preds:
            with autograd.pause(train_mode=True):
                for cap in caps:
                    cap.teacher_predictions = d['family'].reference_predictions(
                        d['head'], cap.teacher_maps, cap.predictions)
        losses = term.losses(caps)
    return losses, sum(l.asscalar() for l in losses)


def _term(d, name, devices, **options):
    mx.random.seed(11)  # the same critics for every build
    context = DistillContext(d['context'].teacher_shapes, devices, teacher_head=d['head'],
                             family=d['family'])
    weight = 1.0
    return build_terms([name], [weight], context, {name: options} if options else None)[0]


def _perturbed(maps, scale=0.3, seed=1):
    rng = np.random.RandomState(seed)
    return maps + mx.nd.array(rng.randn(*maps.shape) * scale * maps.asnumpy().std())


def test_r_cnn_predictions_have_the_stages_the_terms_read(rig):
    d = rig
    caps = _captures(d, d['t_maps'], [CPU0])
    _run_term(_term(d, 'soft', [CPU0]), d, caps)
    rpn, rcnn = caps[0].predictions
    assert (rpn.stage, rcnn.stage) == ('rpn', 'rcnn')
    anchors = rpn.cls_logits.shape[1]
    assert rpn.cls_logits.shape == (2, anchors, 2) and rpn.box_preds.shape == (2, anchors, 4)
    # [0, s]: softmax gives the RPN's sigmoid probability.
    np.testing.assert_array_equal(rpn.cls_logits[:, :, 0].asnumpy(), 0)
    assert rcnn.cls_logits.shape == (2, 16, d['head'].num_class + 1)
    assert rcnn.box_preds.shape == rcnn.box_targets.shape == rcnn.rois.shape == (2, 16, 4)
    for p in (rpn, rcnn):
        assert p.positives().sum().asscalar() > 0
        targets = set(np.unique(p.cls_targets.asnumpy()).tolist())
        assert min(targets) >= -1 and 0 in targets
    # The teacher's predictions are on the student's sampled proposals.
    assert caps[0].teacher_predictions[1].rois is rcnn.rois


@pytest.mark.parametrize('name', TERMS)
def test_every_term_gives_gradients_to_the_student_only(rig, name):
    """Backward through the term on two devices: every device's student map gets a finite
    non-zero gradient; the teacher's maps and predictions none; the teacher's head is
    frozen and unchanged."""
    d = rig
    devices = [CPU0, CPU1]
    term = _term(d, name, devices)
    caps = _captures(d, _perturbed(d['t_maps']), devices)
    for cap in caps:
        cap.teacher_maps[0].attach_grad()
    head_before = {k: p.data(CPU0).asnumpy().copy()
                   for k, p in d['head'].collect_params().items()}
    losses, value = _run_term(term, d, caps)
    teacher_arrays = [a for cap in caps for p in (cap.teacher_predictions or [])
                      for a in (p.cls_logits, p.box_preds)]
    for arr in teacher_arrays:
        arr.attach_grad()
    autograd.backward(losses)
    assert math.isfinite(value)
    for cap in caps:
        norm = cap.student_maps[0].grad.abs().sum().asscalar()
        assert math.isfinite(norm) and norm > 0, name
        assert cap.teacher_maps[0].grad.abs().sum().asscalar() == 0
    for arr in teacher_arrays:
        assert arr.grad.abs().sum().asscalar() == 0
    for k, p in d['head'].collect_params().items():
        assert p.grad_req == 'null', k
        np.testing.assert_array_equal(p.data(CPU0).asnumpy(), head_before[k], err_msg=k)


def _weighted_entropy(caps, bg=1.5):
    total = 0.0
    for tp in caps[0].teacher_predictions:
        p = mx.nd.softmax(tp.cls_logits, axis=-1).asnumpy()
        w = np.ones(p.shape[-1])
        w[0] = bg
        total += float(np.mean(-(w * p * np.log(p)).sum(-1)))
    return total


def test_terms_at_equality_and_device_splits_sum_to_the_batch(rig):
    """Student maps equal to the teacher's, through a copy of its head: hint, cosine,
    bounded and crosshead are zero, soft is the teacher's class-weighted entropy and di
    the teacher's own detection loss. Off equality, each term on two devices (one image
    each) sums to its value on one device (both images)."""
    d = rig
    values = {}
    for name in ('hint', 'cosine', 'soft', 'bounded', 'crosshead', 'di'):
        caps = _captures(d, d['t_maps'], [CPU0])
        values[name] = _run_term(_term(d, name, [CPU0]), d, caps)[1]
        if name == 'soft':
            assert abs(values[name] - _weighted_entropy(caps)) < 1e-4 * values[name]
        if name == 'di':
            objectives, _ = d['family'].task_loss([caps[0].predictions], [caps[0].targets])
            assert abs(values[name] - objectives[0].asscalar()) < 1e-4 * values[name]
    assert values['hint'] == 0 and values['bounded'] == 0
    assert abs(values['cosine']) < 1e-4 and abs(values['crosshead']) < 1e-5
    s_maps = _perturbed(d['t_maps'], scale=1.0)
    for name in ('hint', 'cosine', 'soft', 'bounded', 'crosshead', 'di'):
        one = _run_term(_term(d, name, [CPU0]), d, _captures(d, s_maps, [CPU0]))[1]
        two = _run_term(_term(d, name, [CPU0, CPU1]), d, _captures(d, s_maps, [CPU0, CPU1]))[1]
        assert one > 0, name
        assert abs(two - one) <= 1e-4 * max(1.0, abs(one)), (name, one, two)


def test_an_image_without_objects_trains_as_background(rig, root):
    """GluonCV's RPN target generator cannot take zero boxes: such an image gets negative
    anchors only (at most the 256 GluonCV samples), and the R-CNN samples no positive and
    trains on background with finite losses."""
    d = rig
    train_set, _, _ = voc_datasets(root)
    img, label = train_set[0]
    net = target_net(d['backbone'], d['head'])
    empty = FasterRCNNTrainTransform(SHORT, 160, net)(img, label[:0])
    cls_target = empty[2][0].asnumpy()
    assert (cls_target <= 0).all() and 0 < (cls_target == 0).sum() <= 256
    full = FasterRCNNTrainTransform(SHORT, 160, net)(img, label)
    batch = TrainBatchify(net, 1)([empty, full])
    _, (targets,) = d['family'].unpack(batch, [CPU0])
    assert targets.num_gt == [0, label.shape[0]]
    with autograd.record():
        maps = d['backbone'](targets.image)
        preds = d['family'].forward_train(d['s_head'], maps, targets)
        objectives, parts = d['family'].task_loss([preds], [targets])
    positives = preds[1].positives().asnumpy()
    assert positives[0].sum() == 0 and positives[1].sum() > 0
    assert all(math.isfinite(v[0].asscalar()) for v in parts.values())
    # A device whose images all lack objects (labels padded to zero rows).
    batch = TrainBatchify(net, 1)([empty, empty])
    assert batch[1][0].shape[1] == 0
    _, (targets,) = d['family'].unpack(batch, [CPU0])
    with autograd.record():
        preds = d['family'].forward_train(d['s_head'], d['backbone'](targets.image), targets)
        _, parts = d['family'].task_loss([preds], [targets])
    assert preds[1].positives().sum().asscalar() == 0
    assert all(math.isfinite(v[0].asscalar()) for v in parts.values())
