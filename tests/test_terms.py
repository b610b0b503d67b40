"""Issue 5: the distillation terms of the related methods, on real MXNet/GluonCV layers.

One SSD at 64 px (conftest.TEACHER) is the teacher; its backbone gives the teacher maps, its
head (frozen, hybridised as in a run) the teacher predictions, and GluonCV's SSD target
generator the targets of three images with 1, 2 and 3 objects, so the images have
different numbers of positive anchors and a wrong normalisation shows in a device split.
Student maps are the teacher's maps (equality) or perturbed copies.
"""
import glob
import json
import math
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from gluoncv.loss import SSDMultiBoxLoss
from gluoncv.model_zoo.ssd.target import SSDTargetGenerator

from conftest import DATA_SHAPE, STUDENT, TEACHER, run_script
from gankd.distill import AdversarialTerm, Captures
from gankd.errors import GankdError
from gankd.detectors.ssd.model import build_ssd, copy_head, split_ssd, ssd_config
from gankd.detectors.family import Predictions
from gankd.detectors.ssd import SSD
from gankd.distill import (BoundedRegressionTerm, CosineTerm, CrossHeadTerm, DistillContext,
                           DetectionImitationTerm, HintTerm, SoftLabelTerm, build_terms,
                           term_names)

CPU0, CPU1 = mx.cpu(0), mx.cpu(1)
ONE, TWO = [CPU0], [CPU0, CPU1]
CLASSES = ['a', 'b', 'c']
# Objects per image (pixels, class index); different counts give different positives.
BOXES = [
    [[4, 4, 36, 36, 0]],
    [[0, 0, 64, 64, 1], [30, 8, 62, 40, 2]],
    [[0, 0, 32, 32, 2], [32, 32, 64, 64, 0], [8, 30, 40, 62, 1]],
]


@pytest.fixture(scope='module')
def setup():
    mx.random.seed(5)
    np.random.seed(5)
    cfg = ssd_config(TEACHER, DATA_SHAPE, CLASSES)
    backbone, head = split_ssd(build_ssd(ctx=TWO, **cfg))
    # Frozen and hybridised exactly as build_gankd_run does.
    backbone.collect_params().setattr('grad_req', 'null')
    head.collect_params().setattr('grad_req', 'null')
    backbone.hybridize(static_alloc=True, static_shape=True)
    head.hybridize(static_alloc=True, static_shape=True)
    student_head = copy_head(cfg, head, ctx=TWO)
    x = mx.nd.random.uniform(-1, 1, shape=(len(BOXES), 3, DATA_SHAPE, DATA_SHAPE))
    # The levels GluonCV appends to resnet18 have no BatchNorm, so with random weights
    # each level is ~10x the previous one; a trained teacher's maps are of order 1, as
    # these are after dividing each level by its RMS. (NumPy copies also leave MKLDNN's
    # layout behind, so the maps can be sliced per device.)
    t_maps = [m.asnumpy() for m in backbone(x)]
    t_maps = [mx.nd.array(m / np.sqrt(np.mean(m ** 2))) for m in t_maps]
    with autograd.train_mode():
        t_cls, t_box, anchors = head(t_maps)
    gen = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2),
                             negative_mining_ratio=-1)
    cls_t, box_t = [], []
    for boxes in BOXES:
        b = mx.nd.array(np.array(boxes, dtype='float32')[np.newaxis])
        c, r, _ = gen(anchors, None, b[:, :, :4], b[:, :, 4:5])
        cls_t.append(c)
        box_t.append(r)
    cls_t, box_t = mx.nd.concat(*cls_t, dim=0), mx.nd.concat(*box_t, dim=0)
    positives = (cls_t > 0).sum(axis=1).asnumpy()
    # The premise of the normalisation tests: every image has positives, all different.
    assert len(set(positives.tolist())) == len(BOXES) and positives.min() > 0
    return dict(cfg=cfg, backbone=backbone, head=head, student_head=student_head, x=x,
                t_maps=list(t_maps), t_cls=t_cls, t_box=t_box, cls_t=cls_t, box_t=box_t,
                shapes=[tuple(m.shape[1:]) for m in t_maps])


def perturbed(maps, scale=0.3, seed=1):
    """Student maps near the teacher's: maps + scale * std(map) * noise."""
    rng = np.random.RandomState(seed)
    return [m + mx.nd.array(rng.randn(*m.shape) * scale * m.asnumpy().std(), ctx=m.context)
            for m in maps]


def _slices(devices):
    """Image ranges per device: all three on one device; 2 + 1 on two (uneven)."""
    return [(0, 3)] if len(devices) == 1 else [(0, 2), (2, 3)]


def make_caps(d, s_maps, devices=ONE, teacher_maps=None, t_cls=None, t_box=None,
              cls_t=None, box_t=None):
    """Per-device Captures as train_step builds them (student maps are fresh leaves)."""
    teacher_maps = d['t_maps'] if teacher_maps is None else teacher_maps
    t_cls = d['t_cls'] if t_cls is None else t_cls
    t_box = d['t_box'] if t_box is None else t_box
    cls_t = d['cls_t'] if cls_t is None else cls_t
    box_t = d['box_t'] if box_t is None else box_t
    caps = []
    for dev, (a, b) in zip(devices, _slices(devices)):
        def part(arr):
            return arr[a:b].copyto(dev)
        targets = (part(cls_t), part(box_t))
        cap = Captures([part(m) for m in s_maps], [part(m) for m in teacher_maps],
                       (b - a) / 3.0, targets=targets, family=SSD)
        cap.teacher_predictions = [Predictions('ssd', part(t_cls), part(t_box), *targets)]
        # The candidates and targets; run_term fills in the student head's outputs.
        cap.predictions = [Predictions('ssd', None, None, *targets)]
        caps.append(cap)
    return caps


def run_term(term, d, caps, student_head=True, box_preds=None, attach=True):
    """What train_step does with a term: prepare, then head + losses under record.

    Returns the per-device losses (recorded) and their sum as a float. ``box_preds``
    replaces the student head's box predictions (one full-batch array, split like the
    images) to place them anchor by anchor.
    """
    if attach:
        for cap in caps:
            for m in cap.student_maps:
                m.attach_grad()
    term.prepare(caps)
    with autograd.record():
        for i, cap in enumerate(caps):
            pred = cap.predictions[0]
            if student_head:
                pred.cls_logits, pred.box_preds, _ = d['student_head'](cap.student_maps)
            if box_preds is not None:
                a, b = _slices([c.student_maps[0].context for c in caps])[i]
                pred.box_preds = box_preds[a:b].as_in_context(cap.student_maps[0].context)
        losses = term.losses(caps)
    return losses, sum(l.asscalar() for l in losses)


def total(term, d, s_maps, devices=ONE, **kwargs):
    """The batch loss of a term, on one or two devices."""
    caps = make_caps(d, s_maps, devices, **kwargs)
    return run_term(term, d, caps, attach=False)[1]


def grads_reach_student_not_teacher(term, d, s_maps):
    """Backward through the term: every device's student maps get a gradient, the
    teacher's maps and predictions (attached here on purpose) none, and the teacher head
    neither trains nor changes."""
    caps = make_caps(d, s_maps, TWO)
    teacher_arrays = []
    for cap in caps:
        teacher = cap.teacher_predictions[0]
        teacher_arrays += cap.teacher_maps + [teacher.cls_logits, teacher.box_preds]
    for arr in teacher_arrays:
        arr.attach_grad()
    head_before = {k: p.data(CPU0).asnumpy().copy()
                   for k, p in d['head'].collect_params().items()}
    losses, value = run_term(term, d, caps)
    autograd.backward(losses)
    assert math.isfinite(value) and value > 0
    for cap in caps:
        norms = [m.grad.abs().sum().asscalar() for m in cap.student_maps]
        assert all(math.isfinite(n) for n in norms)
        assert sum(norms) > 0
    for arr in teacher_arrays:
        assert arr.grad.abs().sum().asscalar() == 0
    for k, p in d['head'].collect_params().items():
        assert p.grad_req == 'null', k
        np.testing.assert_array_equal(p.data(CPU0).asnumpy(), head_before[k], err_msg=k)
    return caps


def two_devices_sum_to_one(term, d, s_maps, **kwargs):
    one = total(term, d, s_maps, ONE, **kwargs)
    two = total(term, d, s_maps, TWO, **kwargs)
    assert one > 0
    assert abs(two - one) <= 1e-5 * max(1.0, abs(one))
    return one


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def smooth_l1(x):
    a = np.abs(x)
    return np.where(a < 1, 0.5 * x * x, a - 0.5)


# ---------------------------------------------------------------------------- hint

def test_hint_zero_at_equality_and_plain_l2_at_start(setup):
    d = setup
    term = HintTerm(d['shapes'], TWO)
    assert term.name == 'Loss_hint' and term.needs_teacher
    assert total(term, d, d['t_maps']) == 0
    s_maps = perturbed(d['t_maps'])
    # The connectors start as the identity: the loss is the size-normalised L2, summed
    # over levels.
    expected = sum(np.mean((s.asnumpy() - t.asnumpy()) ** 2)
                   for s, t in zip(s_maps, d['t_maps']))
    assert abs(total(term, d, s_maps) - expected) <= 1e-4 * expected


def test_hint_connectors_are_trained_and_checkpointed(setup):
    d = setup
    term = HintTerm(d['shapes'], TWO)
    params = term.student_params()
    # One 1x1 conv per level, even where channels already match.
    assert len(params) == 2 * len(d['shapes'])
    assert term.blocks() == {'hint_connectors': term.connectors}
    grads_reach_student_not_teacher(term, d, perturbed(d['t_maps']))
    for p in params:
        assert p.grad_req == 'write'
        assert p.grad(CPU0).abs().sum().asscalar() > 0
    # The student's Trainer can step them.
    before = params[0].data(CPU0).asnumpy().copy()
    gluon.Trainer(params, 'sgd', {'learning_rate': 0.1}).step(1)
    assert not np.array_equal(params[0].data(CPU0).asnumpy(), before)


def test_hint_connectors_from_other_channels_are_msra_not_identity(setup):
    d = setup
    student_channels = [8] * len(d['shapes'])
    term = HintTerm(d['shapes'], ONE, student_channels=student_channels)
    w = term.connectors[0].weight.data().asnumpy()
    assert w.shape == (d['shapes'][0][0], 8, 1, 1) and w.std() > 0
    s_maps = [mx.nd.random.uniform(shape=(3, 8) + s[1:]) for s in d['shapes']]
    # No head on these 8-channel maps: the hint compares maps only.
    caps = make_caps(d, s_maps)
    assert run_term(term, d, caps, student_head=False, attach=False)[1] > 0


def test_hint_two_devices_sum_to_one(setup):
    two_devices_sum_to_one(HintTerm(setup['shapes'], TWO), setup, perturbed(setup['t_maps']))


def test_hint_level_normalisation_is_each_levels_relative_error(setup):
    d = setup
    # One level's maps ten times smaller, as a trained teacher's level 1 is: the plain L2
    # hardly sees that level's error, the normalised hint sees it as much as the others.
    t_maps = [m * (0.1 if i == 1 else 1.0) for i, m in enumerate(d['t_maps'])]
    s_maps = perturbed(t_maps)
    term = HintTerm(d['shapes'], ONE, connector='none', normalize='level')
    assert term.description() == {'hint_normalize': 'level'}
    assert total(term, d, t_maps, teacher_maps=t_maps) == 0
    relative = [np.mean((s.asnumpy() - t.asnumpy()) ** 2) / np.mean(t.asnumpy() ** 2)
                for s, t in zip(s_maps, t_maps)]
    value = total(term, d, s_maps, teacher_maps=t_maps)
    assert abs(value - sum(relative)) <= 1e-4 * sum(relative)
    plain = HintTerm(d['shapes'], ONE, connector='none')
    plain_errors = [np.mean((s.asnumpy() - t.asnumpy()) ** 2) for s, t in zip(s_maps, t_maps)]
    assert plain_errors[1] < 0.05 * max(plain_errors)
    assert relative[1] > 0.5 * max(relative)
    assert abs(total(plain, d, s_maps, teacher_maps=t_maps) - sum(plain_errors)) <= \
        1e-4 * sum(plain_errors)
    # The batch's powers, not each device's: two uneven devices add up to one.
    two = total(HintTerm(d['shapes'], TWO, connector='none', normalize='level'), d, s_maps,
                TWO, teacher_maps=t_maps)
    assert abs(two - value) <= 1e-5 * value
    # One device's loss alone is that device's own relative error (its own powers).
    last = make_caps(d, s_maps, TWO, teacher_maps=t_maps)[1]
    own = sum(np.mean((s.asnumpy() - t.asnumpy()) ** 2) / np.mean(t.asnumpy() ** 2)
              for s, t in zip(last.student_maps, last.teacher_maps))
    assert abs(term.loss(last).asscalar() - own) <= 1e-4 * own
    grads_reach_student_not_teacher(term, d, perturbed(d['t_maps']))


def test_hint_normalisation_must_be_known(setup):
    with pytest.raises(GankdError, match='hint.normalize must be one of none, level'):
        HintTerm(setup['shapes'], ONE, normalize='channel')


def _partial_l2(s, t, margins):
    """Heo et al.'s partial L2, in NumPy, as the reference for the term's."""
    target = np.maximum(t, margins.reshape(1, -1, 1, 1))
    free = (s <= target) & (target <= 0)
    return float(np.mean((s - target) ** 2 * (~free)))


def test_hint_partial_l2_on_a_pre_relu_layer_ignores_what_the_relu_zeroes(setup):
    """``hint.layer_loss=partial``: a student below a non-positive target costs nothing,
    anything else its squared distance to the teacher raised to its channels' mean
    negative response (the batch's, so two uneven devices add up to one)."""
    d = setup
    rng = np.random.RandomState(3)
    t = rng.randn(3, 4, 5, 5).astype('float32')
    margins = np.array([t[:, c][t[:, c] < 0].mean() for c in range(4)])
    assert (margins < 0).all() and (t < margins.reshape(1, -1, 1, 1)).any()

    def caps_with(s, devices):
        caps = make_caps(d, d['t_maps'], devices)  # maps equal: only the layer costs
        for cap, (a, b) in zip(caps, _slices(devices)):
            cap.student_records = {'pre': mx.nd.array(s[a:b], ctx=cap.student_maps[0].context)}
            cap.teacher_records = {'pre': mx.nd.array(t[a:b], ctx=cap.student_maps[0].context)}
        return caps

    def value(s, devices=ONE, layer_loss='partial'):
        term = HintTerm(d['shapes'], devices, connector='none', layers='pre',
                        layer_loss=layer_loss)
        return run_term(term, d, caps_with(s, devices), attach=False)[1]

    assert value(t) == 0
    # Below a negative teacher (and its margin): the ReLU makes both zero, so no cost;
    # plain L2 charges it.
    below = np.where(t < 0, t - 1, t)
    assert value(below) == 0
    assert value(below, layer_loss='l2') == pytest.approx(np.mean((t < 0) * 1.0), rel=1e-5)
    above = t + 0.5
    expected = _partial_l2(above, t, margins)
    assert expected > 0
    assert value(above) == pytest.approx(expected, rel=1e-5)
    assert value(above, TWO) == pytest.approx(expected, rel=1e-5)
    # The gradient reaches the student where it costs, and nowhere else.
    term = HintTerm(d['shapes'], ONE, connector='none', layers='pre', layer_loss='partial')
    cap = caps_with(below + (rng.rand(*t.shape) < 0.5) * 2.0, ONE)[0]
    cap.student_records['pre'].attach_grad()
    with autograd.record():
        loss = term.loss(cap)
    loss.backward()
    s = cap.student_records['pre'].asnumpy()
    target = np.maximum(t, margins.reshape(1, -1, 1, 1))
    free = (s <= target) & (target <= 0)
    grad = cap.student_records['pre'].grad.asnumpy()
    assert free.any() and (~free & (s != target)).any()
    assert (grad[free] == 0).all() and (grad[~free & (s != target)] != 0).all()
    assert term.description() == {'hint_layers': ['pre'], 'hint_layer_loss': 'partial'}


def test_hint_layer_loss_must_be_known_and_have_layers(setup):
    with pytest.raises(GankdError, match='hint.layer_loss must be one of l2, partial'):
        HintTerm(setup['shapes'], ONE, layers='pre', layer_loss='l1')
    with pytest.raises(GankdError, match='compares hint.layers, and none are named'):
        HintTerm(setup['shapes'], ONE, layer_loss='partial')


# ---------------------------------------------------------------------------- soft

def weighted_soft_ce(s_cls, t_cls, temperature=1.0, bg=1.5, fg=1.0):
    w = np.full(s_cls.shape[-1], fg)
    w[0] = bg
    pt = softmax(t_cls / temperature)
    log_ps = np.log(softmax(s_cls / temperature))
    return float(np.mean(-(w * pt * log_ps).sum(-1)))


def test_soft_equals_weighted_teacher_entropy_at_equality(setup):
    d = setup
    term = SoftLabelTerm()
    assert term.name == 'Loss_soft' and term.needs_teacher_preds and term.temperature == 1.0
    t_cls = d['t_cls'].asnumpy()
    entropy = weighted_soft_ce(t_cls, t_cls)
    assert entropy > 0
    # Student maps equal to the teacher's through a copy of the teacher's head.
    assert abs(total(term, d, d['t_maps']) - entropy) <= 1e-5 * entropy


def test_soft_matches_reference_with_class_weights_and_temperature(setup):
    d = setup
    s_maps = perturbed(d['t_maps'], scale=1.0)
    with autograd.train_mode():
        s_cls = d['student_head'](s_maps)[0].asnumpy()
    t_cls = d['t_cls'].asnumpy()
    for kwargs in (dict(), dict(temperature=2.0, bg=3.0, fg=0.5)):
        term = SoftLabelTerm(temperature=kwargs.get('temperature', 1.0),
                             background_weight=kwargs.get('bg', 1.5),
                             foreground_weight=kwargs.get('fg', 1.0))
        expected = weighted_soft_ce(s_cls, t_cls, **kwargs)
        assert abs(total(term, d, s_maps) - expected) <= 1e-5 * expected
    # With equal weights the teacher's distribution is the minimum.
    flat = SoftLabelTerm(background_weight=1.0)
    assert total(flat, d, s_maps) > total(flat, d, d['t_maps']) + 1e-3


def test_soft_gradients_and_devices(setup):
    d = setup
    s_maps = perturbed(d['t_maps'])
    grads_reach_student_not_teacher(SoftLabelTerm(), d, s_maps)
    two_devices_sum_to_one(SoftLabelTerm(), d, s_maps)


# ---------------------------------------------------------------------------- bounded

def _anchor(d, positive, image=0):
    cls_t = d['cls_t'][image].asnumpy()
    return int(np.flatnonzero(cls_t > 0 if positive else cls_t == 0)[0])


def test_bounded_zero_at_equality_and_counts_only_positive_anchors(setup):
    d = setup
    term = BoundedRegressionTerm()
    assert term.name == 'Loss_bounded' and term.needs_teacher_preds
    assert total(term, d, d['t_maps']) == 0
    num_pos = float((d['cls_t'] > 0).sum().asscalar())
    for image in range(3):
        for positive in (False, True):
            box = d['t_box'].copy()
            a = _anchor(d, positive, image)
            # Away from the ground truth: the student is worse than the teacher there.
            box[image, a] += 0.7 * mx.nd.sign(box[image, a] - d['box_t'][image, a])
            caps = make_caps(d, d['t_maps'])
            value = run_term(term, d, caps, box_preds=box, attach=False)[1]
            if positive:
                # Worse than the teacher there: its squared error, over all positives.
                y = d['box_t'][image, a].asnumpy()
                expected = np.sum((box[image, a].asnumpy() - y) ** 2) / num_pos
                assert abs(value - expected) <= 1e-5 * expected
            else:
                assert value == 0


def test_bounded_stops_once_student_beats_teacher_by_margin(setup):
    d = setup
    y = d['box_t']
    direction = mx.nd.ones_like(y)
    pos = (d['cls_t'] > 0).expand_dims(-1)
    # Teacher off by 0.5 per coordinate (error 1.0 per anchor) on the positives.
    t_box = y + 0.5 * direction * pos
    caps_args = dict(t_box=t_box)
    for student_offset, margin, counted in [(0.0, 0.0, False), (0.4, 0.0, False),
                                            (0.6, 0.0, True), (0.4, 0.5, True),
                                            (0.3, 0.5, False)]:
        # Student error 4 * offset^2 per anchor; counted iff 4 o^2 + margin > 1.
        term = BoundedRegressionTerm(margin=margin)
        box = y + student_offset * direction
        value = run_term(term, d, make_caps(d, d['t_maps'], **caps_args), box_preds=box,
                         attach=False)[1]
        expected = 4 * student_offset ** 2 if counted else 0.0
        assert abs(value - expected) <= 1e-5, (student_offset, margin)


def test_bounded_normalised_over_all_devices_and_gradients(setup):
    d = setup
    s_maps = perturbed(d['t_maps'], scale=1.0)
    one = two_devices_sum_to_one(BoundedRegressionTerm(), d, s_maps)
    # The same value from NumPy: gated squared errors of all positives / all positives.
    with autograd.train_mode():
        s_box = d['student_head'](s_maps)[1].asnumpy()
    y, t_box = d['box_t'].asnumpy(), d['t_box'].asnumpy()
    pos = d['cls_t'].asnumpy() > 0
    err_s, err_t = ((s_box - y) ** 2).sum(-1), ((t_box - y) ** 2).sum(-1)
    expected = np.sum(err_s * (err_s > err_t) * pos) / pos.sum()
    assert abs(one - expected) <= 1e-5 * expected
    grads_reach_student_not_teacher(BoundedRegressionTerm(), d, s_maps)


# ---------------------------------------------------------------------------- crosshead

def crosshead_reference(d, s_maps, t_cls, t_box, temperature=1.0):
    with autograd.train_mode():
        x_cls, x_box, _ = [a.asnumpy() for a in d['head'](s_maps)]
    log_px = np.log(softmax(x_cls / temperature))
    pt = softmax(t_cls / temperature)
    kl = np.mean((pt * (np.log(pt) - log_px)).sum(-1))
    pos = d['cls_t'].asnumpy() > 0
    box = np.sum(smooth_l1(x_box - t_box).sum(-1) * pos) / pos.sum()
    return kl + box


def test_crosshead_zero_at_equality_and_matches_reference(setup):
    d = setup
    term = CrossHeadTerm(d['head'])
    assert term.name == 'Loss_crosshead' and term.needs_teacher_preds
    assert abs(total(term, d, d['t_maps'])) < 1e-6
    s_maps = perturbed(d['t_maps'], scale=1.0)
    expected = crosshead_reference(d, s_maps, d['t_cls'].asnumpy(), d['t_box'].asnumpy())
    assert abs(total(term, d, s_maps) - expected) <= 1e-4 * expected
    t2 = CrossHeadTerm(d['head'], temperature=2.0)
    expected = crosshead_reference(d, s_maps, d['t_cls'].asnumpy(), d['t_box'].asnumpy(), 2.0)
    assert abs(total(t2, d, s_maps) - expected) <= 1e-4 * expected


def test_crosshead_regression_on_positives_classification_everywhere(setup):
    d = setup
    term = CrossHeadTerm(d['head'])
    s_maps = perturbed(d['t_maps'])
    base = total(term, d, s_maps)
    assert run_term(term, d, make_caps(d, s_maps), student_head=False, attach=False)[1] == base
    for positive in (False, True):
        t_box = d['t_box'].copy()
        t_box[1, _anchor(d, positive, image=1)] += 2.0
        changed = total(term, d, s_maps, t_box=t_box)
        assert (abs(changed - base) > 1e-3) == positive
    # The classification part covers negative anchors too.
    t_cls = d['t_cls'].copy()
    t_cls[1, _anchor(d, False, image=1), 0] += 5
    assert abs(total(term, d, s_maps, t_cls=t_cls) - base) > 1e-5


def test_crosshead_gradients_and_devices(setup):
    d = setup
    s_maps = perturbed(d['t_maps'])
    grads_reach_student_not_teacher(CrossHeadTerm(d['head']), d, s_maps)
    two_devices_sum_to_one(CrossHeadTerm(d['head']), d, s_maps)


# ---------------------------------------------------------------------------- di

def test_di_at_equality_is_the_teachers_own_detection_loss(setup):
    d = setup
    term = DetectionImitationTerm(d['head'])
    assert term.name == 'Loss_di' and not term.needs_teacher and not term.needs_teacher_preds
    own = SSDMultiBoxLoss()([d['t_cls']], [d['t_box']], [d['cls_t']], [d['box_t']])[0]
    own = own[0].sum().asscalar()
    assert own > 0
    assert abs(total(term, d, d['t_maps']) - own) <= 1e-5 * own
    # A student whose maps differ detects differently through the same head.
    assert abs(total(term, d, perturbed(d['t_maps'], scale=1.0)) - own) > 1e-3


def test_di_uses_ground_truth_on_positive_anchors(setup):
    d = setup
    term = DetectionImitationTerm(d['head'])
    s_maps = perturbed(d['t_maps'])
    base = total(term, d, s_maps)
    # The student's own head plays no part (its copy of the teacher's weights would
    # otherwise hide a term that used the student's predictions).
    assert run_term(term, d, make_caps(d, s_maps), student_head=False, attach=False)[1] == base
    for positive in (False, True):
        box_t = d['box_t'].copy()
        box_t[2, _anchor(d, positive, image=2)] += 2.0
        assert (abs(total(term, d, s_maps, box_t=box_t) - base) > 1e-3) == positive


def test_di_gradients_and_devices(setup):
    d = setup
    s_maps = perturbed(d['t_maps'])
    grads_reach_student_not_teacher(DetectionImitationTerm(d['head']), d, s_maps)
    two_devices_sum_to_one(DetectionImitationTerm(d['head']), d, s_maps)


# ---------------------------------------------------------------------------- cosine

def cosine_reference(s_maps, t_maps, eps=1e-6):
    out = 0.0
    for s, t in zip(s_maps, t_maps):
        s, t = s.asnumpy().astype('float64'), t.asnumpy().astype('float64')
        ns, nt = np.sqrt((s * s).sum(1)), np.sqrt((t * t).sum(1))
        cos = (s * t).sum(1) / np.maximum(ns * nt, eps * eps)
        w = nt / (nt.mean(axis=(1, 2), keepdims=True) + eps)
        out += np.mean(w * (1 - cos + np.abs(ns - nt) / (nt + eps)))
    return out


def test_cosine_zero_at_equality_and_matches_definition(setup):
    d = setup
    term = CosineTerm()
    assert term.name == 'Loss_cosine' and term.needs_teacher
    assert abs(total(term, d, d['t_maps'])) < 1e-5
    s_maps = perturbed(d['t_maps'], scale=1.0)
    expected = cosine_reference(s_maps, d['t_maps'])
    assert abs(total(term, d, s_maps) - expected) <= 1e-4 * expected
    levels = len(d['t_maps'])
    # Same direction, twice the length: only the length part, 1 at every location.
    assert abs(total(term, d, [2 * t for t in d['t_maps']]) - levels) < 1e-3
    # Opposite direction, same length: 1 - cos = 2 everywhere.
    assert abs(total(term, d, [-t for t in d['t_maps']]) - 2 * levels) < 1e-3


def test_cosine_weights_locations_by_teacher_strength(setup):
    d = setup
    term = CosineTerm()
    # Zero the teacher at one location of the first level: the student is free there.
    t_maps = [t.copy() for t in d['t_maps']]
    t_maps[0][:, :, 0, 0] = 0
    s_maps = [t.copy() for t in t_maps]
    s_maps[0][:, :, 0, 0] = 5.0
    assert abs(total(term, d, s_maps, teacher_maps=t_maps)) < 1e-5
    # The same change where the teacher is strong costs.
    s_maps = [t.copy() for t in t_maps]
    s_maps[0][:, :, 1, 1] = 5.0
    assert total(term, d, s_maps, teacher_maps=t_maps) > 1e-2


def test_cosine_gradients_finite_where_maps_are_zero_and_devices(setup):
    d = setup
    s_maps = perturbed(d['t_maps'])
    s_maps[0][:, :, 0, 0] = 0  # a dead ReLU location in the student
    grads_reach_student_not_teacher(CosineTerm(), d, s_maps)
    two_devices_sum_to_one(CosineTerm(), d, s_maps)


# ---------------------------------------------------------------------------- build_terms

def context(d, head=True, devices=ONE):
    return DistillContext(d['shapes'], devices, teacher_head=d['head'] if head else None,
                          family=SSD)


def test_build_terms_builds_every_term_in_order(setup):
    d = setup
    names = ['gan', 'hint', 'soft', 'bounded', 'crosshead', 'di', 'cosine']
    # lit runs the student's own graph, cut at named layers: tests/test_lit.py.
    assert sorted(term_names()) == sorted(names + ['lit'])
    weights = [1.0, 0.5, 2, 3, 4, 5, 6]
    terms = build_terms(names, weights, context(d), {
        'gan': dict(clip=0.01, n_critic=2, width=8), 'soft': {'temperature': '2'},
        'bounded': {'margin': '0.25'}, 'crosshead': {'box_weight': 0.5}})
    kinds = [AdversarialTerm, HintTerm, SoftLabelTerm, BoundedRegressionTerm, CrossHeadTerm,
             DetectionImitationTerm, CosineTerm]
    assert [type(t) for t in terms] == kinds
    assert [t.weight for t in terms] == [float(w) for w in weights]
    assert terms[0].clip == 0.01 and terms[0].n_critic == 2
    # Options given as command-line strings arrive cast to the option's type.
    assert terms[2].temperature == 2.0 and terms[3].margin == 0.25
    assert terms[4].box_weight == 0.5
    assert terms[4].teacher_head is d['head'] and terms[5].teacher_head is d['head']
    # Names in logs and checkpoint block names never collide.
    assert len({t.name for t in terms}) == len(terms)
    blocks = [k for t in terms for k in t.blocks()]
    assert sorted(blocks) == ['critics', 'hint_connectors']
    order = build_terms(['cosine', 'hint'], [1, 1], context(d, head=False))
    assert [type(t) for t in order] == [CosineTerm, HintTerm]
    assert build_terms([], [], context(d, head=False)) == []


@pytest.mark.parametrize('names, weights, options, message', [
    (['hint', 'sfot'], [1, 1], None, "unknown distillation term 'sfot'"),
    (['hint', 'cosine', 'hint'], [1, 1, 1], None, "'hint' is given more than once"),
    (['gan', 'hint'], [1], None, '2 distillation terms (gan,hint) but 1 weights'),
    (['hint'], [1, 2], None, '1 distillation terms (hint) but 2 weights'),
    (['hint'], ['x'], None, 'must be numbers'),
    (['hint'], [float('nan')], None, 'must be finite'),
    (['soft', 'di'], [1, 1], None, 'need the teacher head'),
    (['soft'], [1], {'soft': {'temprature': '2'}}, "no option 'temprature'"),
    (['soft'], [1], {'soft': {'temperature': 'warm'}}, 'soft.temperature takes a float'),
    (['soft'], [1], {'hint': {'connector': 'none'}}, "names 'hint', which is not among"),
])
def test_build_terms_errors(setup, names, weights, options, message):
    with pytest.raises(GankdError) as err:
        build_terms(names, weights, context(setup, head=False), options)
    assert message in str(err.value)


def test_a_new_term_is_one_class_and_one_registration(setup):
    """Registering a term makes it buildable by name with its options, and the loop logs
    it under its own name, without any list elsewhere being edited."""
    from gankd.distill.base import TERMS, DistillTerm, register_term
    from gankd.train.loop import Run, log_order, train_step
    from gankd.detectors.ssd.student import build_student

    @register_term('l1test')
    class L1Term(DistillTerm):
        name = 'Loss_l1test'
        options = ('scale',)

        def __init__(self, weight=1.0, scale=1.0):
            super(L1Term, self).__init__(weight)
            self.scale = scale

        def loss(self, cap):
            return sum(self.scale * mx.nd.abs(s - t.detach()).mean()
                       for s, t in zip(cap.student_maps, cap.teacher_maps))
    try:
        d = setup
        term, = build_terms(['l1test'], [2.0], context(d), {'l1test': {'scale': '3'}})
        assert isinstance(term, L1Term) and term.scale == 3.0 and term.weight == 2.0
        student = build_student(STUDENT, DATA_SHAPE, d['shapes'], ctx=ONE)
        head = copy_head(d['cfg'], d['head'], ctx=ONE)
        params = list(student.collect_params().values()) + list(
            head.collect_params().values())
        run = Run(ctx=ONE, family=SSD, backbone=student, head=head, save_block=student,
                  meta={}, classes=CLASSES, teacher=d['backbone'], terms=[term],
                  teacher_head=d['head'],
                  trainer=gluon.Trainer(params, 'sgd', {'learning_rate': 0.01}))
        values = train_step(run, (d['x'][:2], d['cls_t'][:2], d['box_t'][:2]))
        assert values['Loss_l1test'] > 0
        assert log_order(run) == ['Loss_l1test', 'CrossEntropy', 'SmoothL1']
    finally:
        del TERMS['l1test']


# ---------------------------------------------------------------------------- engine

def test_all_terms_in_one_real_train_step(setup):
    """The terms as the engine calls them: one step of train_step with every term."""
    from gankd.train.loop import Run, log_order, train_step
    from gankd.detectors.ssd.student import build_student
    d = setup
    student = build_student(STUDENT, DATA_SHAPE, d['shapes'], ctx=ONE)
    head = copy_head(d['cfg'], d['head'], ctx=ONE)
    # Every term on the maps (lit needs recorded layers: tests/test_lit.py).
    names = [n for n in term_names() if n != 'lit']
    terms = build_terms(names, [1.0] * len(names), context(d), {'gan': dict(width=8)})
    params = list(student.collect_params().values()) + list(head.collect_params().values())
    params += [p for t in terms for p in t.student_params()]
    run = Run(ctx=ONE, family=SSD, backbone=student, head=head, save_block=student, meta={},
              classes=CLASSES, teacher=d['backbone'], terms=terms, teacher_head=d['head'],
              trainer=gluon.Trainer(params, 'sgd', {'learning_rate': 0.01}))
    hint = terms[names.index('hint')].student_params()[0]
    before = hint.data().asnumpy().copy()
    values = train_step(run, (d['x'][:2], d['cls_t'][:2], d['box_t'][:2]))
    for t in terms:
        assert math.isfinite(values[t.name]), t.name
    assert values['Loss_hint'] > 0 and values['Loss_di'] > 0
    assert not np.array_equal(hint.data().asnumpy(), before)  # the connector trained
    # Logged in a stable order: each term's names in --distill order, then the task's.
    order = log_order(run)
    assert order[:5] == ['Loss_D', 'Loss_D_real', 'Loss_D_fake', 'Loss_D_penalty', 'Loss_G']
    assert order[-2:] == ['CrossEntropy', 'SmoothL1'] and set(values) <= set(order)


def test_distill_flags_compose_terms_in_one_training(voc_root, teacher_params, tmp_path):
    """``--distill gan,hint --distill-weights 1,0.5`` through the real script: both terms
    are logged, the hint connectors are checkpointed, and training resumes with them."""
    prefix = str(tmp_path / 'composed')
    flags = ['--teacher', TEACHER, '--student', STUDENT, '--teacher-params', teacher_params,
             '--data-shape', DATA_SHAPE, '--dataset-root', voc_root, '--batch-size', 8, '-j', 0,
             '--save-prefix', prefix, '--distill', 'gan,hint', '--distill-weights', '1,0.5',
             '--optimizer', 'adam', '--val-interval', 5]
    proc = run_script('train_gankd_ssd.py', *flags, '--epochs', 1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(prefix + '_history.jsonl') as f:
        record = json.loads(f.readline())
    assert {'Loss_G', 'Loss_hint', 'Loss_D', 'CrossEntropy'} <= set(record)
    with open(prefix + '_last.json') as f:
        assert json.load(f)['distill'] == {'gan': 1.0, 'hint': 0.5}
    ckpt = sorted(glob.glob(prefix + '_ckpt/epoch*'))[-1]
    assert os.path.exists(os.path.join(ckpt, 'hint_connectors.params'))
    assert os.path.exists(os.path.join(ckpt, 'critics.params'))
    # The second epoch is fine-tuning: the terms are off and their connectors idle.
    proc = run_script('train_gankd_ssd.py', *flags, '--epochs', 2, '--gan-epochs', 1,
                      '--resume', 'auto')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'Resumed from' in proc.stdout + proc.stderr
    with open(prefix + '_history.jsonl') as f:
        records = [json.loads(l) for l in f if l.strip()]
    assert [(r['epoch'], r['stage']) for r in records] == [(0, 'distill'), (1, 'detection')]
    # Resuming with another set of terms is refused in one line, not a shape error.
    other = [f if f != 'gan,hint' else 'gan' for f in flags]
    other = other[:other.index('--distill-weights')] + other[other.index('--distill-weights') + 2:]
    proc = run_script('train_gankd_ssd.py', *other, '--epochs', 3, '--resume', 'auto')
    assert proc.returncode == 2
    assert 'resume with the flags it was made with' in proc.stderr.strip().splitlines()[-1]
