"""Distillation terms of the related methods, next to GAN-KD's adversarial term.

Each class is one way of comparing teacher and student (MMRazor style): the training
loop captures the maps and predictions once per iteration in a
:class:`gankd.distill.base.Captures` and every term turns them into a loss. A term that needs
a connector owns it as a Block; its parameters are returned by
:meth:`DistillTerm.student_params` (so the student's Trainer trains them) and the block by
:meth:`DistillTerm.blocks` (so checkpoints hold it).

* ``Loss_G``, :class:`gankd.distill.base.AdversarialTerm`: GAN-KD's critics (seed 000).
* ``Loss_hint``, :class:`HintTerm`: Chen et al. 2017 hint learning (seeds 001, 003).
* ``Loss_soft``, :class:`SoftLabelTerm`: Chen et al. 2017 class-weighted soft labels.
* ``Loss_bounded``, :class:`BoundedRegressionTerm`: Chen et al. 2017 teacher-bounded
  regression.
* ``Loss_crosshead``, :class:`CrossHeadTerm`: CrossKD (seed 002).
* ``Loss_di``, :class:`DetectionImitationTerm`: Dist2's detection imitation (seed 004).
* ``Loss_cosine``, :class:`CosineTerm`: GAN-KD's unpublished "cosine attention", with a
  formula of this project's own.

Box predictions and targets are compared in SSD's encoded box space (GluonCV's
``NormalizedBoxCenterEncoder`` with stds 0.1, 0.1, 0.2, 0.2), where the detection loss
itself works. "Positive anchors" are those with ``cls_targets > 0``.
"""
import math

import mxnet as mx
from mxnet.gluon import nn

from .base import AdversarialTerm, DistillTerm
from ..errors import GankdError
from ..detectors.ssd.model import MSRA, ssd_loss

__all__ = ['HintTerm', 'SoftLabelTerm', 'BoundedRegressionTerm', 'CrossHeadTerm',
           'DetectionImitationTerm', 'CosineTerm', 'TERM_NAMES', 'build_terms']


def _num_positives(captures):
    """Positive anchors over all devices (at least 1), as SSDMultiBoxLoss counts them.

    A host-side number: every device's loss is divided by the same count, so the per-device
    losses add up to the loss of the whole batch however the batch was split.
    """
    return max(1.0, sum(float((cap.cls_targets > 0).sum().asscalar()) for cap in captures))


def _positive_mask(cap):
    """``(B, A, 1)`` float mask of positive anchors, for ``(B, A, 4)`` box tensors."""
    return (cap.cls_targets > 0).expand_dims(axis=-1)


HINT_CONNECTORS = ('1x1', 'none')


class HintTerm(DistillTerm):
    """Hint learning (FitNets), as adapted to detection by Chen et al. 2017 (seeds 001, 003).

    Per level a 1x1 convolution (the adaptation layer) maps the student's map to the
    teacher's, and the squared error to the teacher's map is averaged over its elements:
    ``sum over levels mean((conv(s) - t) ** 2)``.

    The connector exists on every level even when channels already match, because Chen et
    al. found the adaptation layer itself important for the transfer. Where its input and
    output channels agree it starts as the identity, so training starts from the plain
    L2 hint and a student equal to the teacher has zero loss; elsewhere it is drawn
    MSRA-style like the student's own adapters.

    Parameters
    ----------
    shapes : list of tuple
        ``(C, H, W)`` of the teacher's maps.
    ctx : mxnet.Context or list of mxnet.Context
    weight : float
    student_channels : list of int or None
        Channels of the student's maps; None means the teacher's (the maps in
        :class:`Captures` are already adapted to the teacher's channels).
    connector : {'1x1', 'none'}
        ``--hint-connector``. ``'none'`` compares the maps the head receives with the
        teacher's directly, ``mean((s - t) ** 2)``: only then does a student that
        satisfies the hint give the teacher's head the teacher's own input. With a
        trainable 1x1 connector the hint can be met by ``conv(s)`` alone (measured: a
        student of the teacher's architecture, trained on hint alone into the teacher's
        frozen head, brought ``conv(s)`` to the teacher's detection loss, 2.99 against
        2.97, while ``s`` itself stayed at 6.30, its connectors 0.6 to 0.85 away from the
        identity in relative norm).
    """
    name = 'Loss_hint'

    def __init__(self, shapes, ctx, weight=1.0, student_channels=None, connector='1x1'):
        super(HintTerm, self).__init__(weight)
        out_channels = [int(s[0]) for s in shapes]
        in_channels = list(student_channels) if student_channels else out_channels
        if len(in_channels) != len(out_channels):
            raise GankdError('HintTerm: {} student levels for {} teacher levels'.format(
                len(in_channels), len(out_channels)))
        if connector not in HINT_CONNECTORS:
            raise GankdError('hint connector must be one of {}, got {!r}'.format(
                ', '.join(HINT_CONNECTORS), connector))
        if connector == 'none' and in_channels != out_channels:
            raise GankdError('hint without connector needs the teacher\'s channels on every '
                             'level; the student has {}, the teacher {}'.format(
                                 in_channels, out_channels))
        self.connectors = None
        if connector == 'none':
            return
        self.connectors = nn.HybridSequential(prefix='hint_')
        with self.connectors.name_scope():
            for cin, cout in zip(in_channels, out_channels):
                self.connectors.add(nn.Conv2D(cout, kernel_size=1, in_channels=cin,
                                              weight_initializer=MSRA))
        self.connectors.initialize(ctx=ctx)
        for conv, cin, cout in zip(self.connectors, in_channels, out_channels):
            if cin == cout:
                conv.weight.set_data(mx.nd.eye(cout).reshape((cout, cout, 1, 1)))
        self.connectors.hybridize(static_alloc=True)

    def loss(self, cap):
        # detach: the teacher is a fixed target even if its maps were recorded.
        convs = self.connectors or [lambda s: s] * len(cap.student_maps)
        return sum(mx.nd.square(conv(s) - t.detach()).mean()
                   for conv, s, t in zip(convs, cap.student_maps, cap.teacher_maps))

    def student_params(self):
        return list(self.connectors.collect_params().values()) if self.connectors else []

    def blocks(self):
        return {'hint_connectors': self.connectors} if self.connectors else {}


class SoftLabelTerm(DistillTerm):
    """Class-weighted soft cross-entropy of Chen et al. 2017 (seeds 001, 003).

    Per anchor ``-sum_c w_c * P_t(c) * log P_s(c)`` with ``P = softmax(z / T)`` over the
    ``num_classes + 1`` outputs of the SSD head (class 0 is background), averaged over
    anchors and images. ``w_0`` (background) is larger because detection's errors are
    mostly between background and foreground.

    The default ``T = 1`` follows Chen et al., who found that for detection no softening
    (T = 1) works best. The loss is not rescaled by ``T ** 2``; fold that into ``weight``.

    Note that with unequal class weights the minimum over ``P_s`` is not ``P_s = P_t``
    but ``P_s`` proportional to ``w * P_t``; at ``P_s = P_t`` the loss is the
    class-weighted entropy of the teacher.

    Parameters
    ----------
    weight : float
    temperature : float
    background_weight : float
        ``w_0``; 1.5 in Chen et al.
    foreground_weight : float
        ``w_c`` for ``c > 0``; 1.0 in Chen et al.
    """
    name = 'Loss_soft'
    needs_teacher_preds = True

    def __init__(self, weight=1.0, temperature=1.0, background_weight=1.5,
                 foreground_weight=1.0):
        super(SoftLabelTerm, self).__init__(weight)
        if temperature <= 0:
            raise GankdError('SoftLabelTerm: temperature must be positive, got {}'.format(
                temperature))
        self.temperature = float(temperature)
        self.background_weight = float(background_weight)
        self.foreground_weight = float(foreground_weight)

    def class_weights(self, num_outputs, ctx):
        """``(1, 1, num_outputs)`` weights: background first, then every foreground class."""
        values = [self.background_weight] + [self.foreground_weight] * (num_outputs - 1)
        return mx.nd.array(values, ctx=ctx).reshape((1, 1, -1))

    def loss(self, cap):
        log_ps = mx.nd.log_softmax(cap.cls_preds / self.temperature, axis=-1)
        pt = mx.nd.softmax(cap.teacher_cls_preds.detach() / self.temperature, axis=-1)
        w = self.class_weights(cap.cls_preds.shape[-1], cap.cls_preds.context)
        return -(pt * log_ps * w).sum(axis=-1).mean()


class BoundedRegressionTerm(DistillTerm):
    """Teacher-bounded L2 regression of Chen et al. 2017 (seeds 001, 003).

    On positive anchors, ``||R_s - y||^2`` counts only while
    ``||R_s - y||^2 + margin > ||R_t - y||^2``: the teacher's boxes are an upper bound to
    reach, not a target, since unbounded regression outputs of the teacher can point away
    from the ground truth. The sum is divided by the positive anchors of all devices, as
    GluonCV's ``SSDMultiBoxLoss`` normalises its box loss.

    Parameters
    ----------
    weight : float
    margin : float
        ``m`` of Chen et al. (no value is given in the seeds); with the default 0 the
        term stops once the student is at least as close to the ground truth as the
        teacher, and is zero where the student equals the teacher.
    """
    name = 'Loss_bounded'
    needs_teacher_preds = True

    def __init__(self, weight=1.0, margin=0.0):
        super(BoundedRegressionTerm, self).__init__(weight)
        self.margin = float(margin)

    def losses(self, captures):
        num_pos = _num_positives(captures)
        out = []
        for cap in captures:
            err_s = mx.nd.square(cap.box_preds - cap.box_targets).sum(axis=-1)
            err_t = mx.nd.square(cap.teacher_box_preds.detach() - cap.box_targets).sum(axis=-1)
            # The gate only selects anchors; it is no path for gradients.
            gate = (err_s.detach() + self.margin > err_t) * (cap.cls_targets > 0)
            out.append((err_s * gate).sum() / num_pos)
        return out


class CrossHeadTerm(DistillTerm):
    """CrossKD for SSD (seed 002): the student's maps through the teacher's frozen head.

    The cross-head predictions ``(c_x, r_x) = teacher_head(student_maps)`` mimic the
    teacher's own ``(c_t, r_t) = teacher_head(teacher_maps)``:

    * classification on every anchor: ``KL(softmax(c_t / T) || softmax(c_x / T))``,
      averaged over anchors and images (zero at equality, unlike a soft cross-entropy);
    * regression on positive anchors only: smooth L1 (``rho = 1``, as SSD's own box loss)
      between ``r_x`` and ``r_t``, summed over anchors and coordinates and divided by the
      positive anchors of all devices.

    Gradients reach the student's maps through the frozen head; the head's parameters
    must have ``grad_req='null'`` so it never trains.

    Parameters
    ----------
    teacher_head : gankd.detectors.ssd.model.SSDHead
        The teacher's head, frozen, initialised on every device of the run.
    weight : float
    temperature : float
        Not rescaled by ``T ** 2``; fold that into ``weight``.
    box_weight : float
        Weight of the regression part relative to the classification part.
    """
    name = 'Loss_crosshead'
    needs_teacher_preds = True

    def __init__(self, teacher_head, weight=1.0, temperature=1.0, box_weight=1.0):
        super(CrossHeadTerm, self).__init__(weight)
        if temperature <= 0:
            raise GankdError('CrossHeadTerm: temperature must be positive, got {}'.format(
                temperature))
        self.teacher_head = teacher_head
        self.temperature = float(temperature)
        self.box_weight = float(box_weight)

    def losses(self, captures):
        num_pos = _num_positives(captures)
        out = []
        for cap in captures:
            cls_x, box_x, _ = self.teacher_head(cap.student_maps)
            log_px = mx.nd.log_softmax(cls_x / self.temperature, axis=-1)
            log_pt = mx.nd.log_softmax(cap.teacher_cls_preds.detach() / self.temperature,
                                       axis=-1)
            kl = (mx.nd.exp(log_pt) * (log_pt - log_px)).sum(axis=-1).mean()
            box = mx.nd.smooth_l1(box_x - cap.teacher_box_preds.detach(), scalar=1.0)
            box = (box * _positive_mask(cap)).sum() / num_pos
            out.append(kl * cap.fraction + self.box_weight * box)
        return out


class DetectionImitationTerm(DistillTerm):
    """Dist2's detection imitation, DI (seed 004), with SSD's own loss.

    The student's maps pushed through the teacher's frozen head should give correct
    detections: GluonCV's ``SSDMultiBoxLoss`` (hard negative mining, smooth L1 on
    positives, normalised by the positives of all devices) on those cross predictions and
    the ground-truth targets. It is GAN-KD's "student maps into the teacher's head" as a
    loss of its own. Only the teacher's head is needed, not its backbone.

    Parameters
    ----------
    teacher_head : gankd.detectors.ssd.model.SSDHead
        The teacher's head, frozen, initialised on every device of the run.
    weight : float
    negative_mining_ratio, rho, lambd : float
        Passed to ``SSDMultiBoxLoss`` (its defaults are those of the detection loss).
    """
    name = 'Loss_di'
    needs_teacher = False

    def __init__(self, teacher_head, weight=1.0, negative_mining_ratio=3, rho=1.0, lambd=1.0):
        super(DetectionImitationTerm, self).__init__(weight)
        self.teacher_head = teacher_head
        self.loss_fn = ssd_loss(negative_mining_ratio=negative_mining_ratio, rho=rho,
                                lambd=lambd)

    def losses(self, captures):
        cross = [self.teacher_head(cap.student_maps) for cap in captures]
        # One call over all devices: SSDMultiBoxLoss counts the positives of the whole batch.
        sum_loss, _, _ = self.loss_fn([c[0] for c in cross], [c[1] for c in cross],
                                      [cap.cls_targets for cap in captures],
                                      [cap.box_targets for cap in captures])
        return [l.sum() for l in sum_loss]


class CosineTerm(DistillTerm):
    """GAN-KD's "cosine attention", as defined by this project.

    The GAN-KD author's logs name a ``cosine_length_loss`` but its formula was never
    published; this is our own definition, not a reproduction. At every location of
    every level, with ``s`` and ``t`` the student's and teacher's channel vectors::

        l = 1 - cos(s, t) + | ||s|| - ||t|| | / (||t|| + eps)
        w = ||t|| / (mean over the image's locations of ||t|| + eps)

    so the direction (cosine) and the length (relative norm difference) of the features
    are matched, with locations weighted by the teacher's feature strength (its
    "attention"; zero where the teacher's map is zero). The loss is the mean of ``w * l``
    over locations and images, summed over levels; it is zero (up to rounding) when the
    student's maps equal the teacher's.

    Parameters
    ----------
    weight : float
    eps : float
        Keeps norms and ratios finite where a feature vector is zero.
    """
    name = 'Loss_cosine'

    def __init__(self, weight=1.0, eps=1e-6):
        super(CosineTerm, self).__init__(weight)
        self.eps = float(eps)

    def loss(self, cap):
        eps = self.eps
        total = 0
        for s, t in zip(cap.student_maps, cap.teacher_maps):
            t = t.detach()
            t_norm = mx.nd.sqrt(mx.nd.square(t).sum(axis=1))
            # The square root's gradient is infinite at zero, where ReLU maps often are.
            s_norm = mx.nd.sqrt(mx.nd.square(s).sum(axis=1) + eps * eps)
            cos = (s * t).sum(axis=1) / mx.nd.maximum(s_norm * t_norm, eps * eps)
            length = mx.nd.abs(s_norm - t_norm) / (t_norm + eps)
            strength = t_norm / (t_norm.mean(axis=(1, 2), keepdims=True) + eps)
            total = total + (strength * (1 - cos + length)).mean()
        return total


TERM_NAMES = ('gan', 'hint', 'soft', 'bounded', 'crosshead', 'di', 'cosine')
_NEEDS_TEACHER_HEAD = ('crosshead', 'di')


def build_terms(names, weights, shapes, ctx, teacher_head, gan_options=None,
                hint_options=None):
    """The distillation terms named on the command line, in the given order.

    Parameters
    ----------
    names : list of str
        From :data:`TERM_NAMES`, each at most once.
    weights : list of float
        One weight per name.
    shapes : list of tuple
        ``(C, H, W)`` of the teacher's maps.
    ctx : list of mxnet.Context
    teacher_head : gankd.detectors.ssd.model.SSDHead or None
        The frozen teacher head (``'crosshead'`` and ``'di'`` need it).
    gan_options : dict or None
        Keyword arguments of :class:`gankd.distill.base.AdversarialTerm` besides shapes, ctx
        and weight (``lr``, ``clip``, ``n_critic``, ...).
    hint_options : dict or None
        Keyword arguments of :class:`HintTerm` (``connector``).

    Returns
    -------
    list of DistillTerm
    """
    names, weights = list(names), list(weights)
    if len(names) != len(weights):
        raise GankdError('{} distillation terms ({}) but {} weights; give one weight per '
                         'term'.format(len(names), ','.join(names), len(weights)))
    unknown = [n for n in names if n not in TERM_NAMES]
    if unknown:
        raise GankdError('unknown distillation term {!r}; choose from {}'.format(
            unknown[0], ', '.join(TERM_NAMES)))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise GankdError('distillation term {!r} is given more than once'.format(repeated[0]))
    try:
        weights = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise GankdError('distillation weights must be numbers, got {}'.format(
            weights)) from None
    bad = [w for w in weights if not math.isfinite(w)]
    if bad:
        raise GankdError('distillation weights must be finite, got {}'.format(bad[0]))
    if teacher_head is None and any(n in _NEEDS_TEACHER_HEAD for n in names):
        raise GankdError('distillation terms {} need the teacher head'.format(
            ', '.join(n for n in names if n in _NEEDS_TEACHER_HEAD)))
    factories = {
        'gan': lambda w: AdversarialTerm(shapes, ctx, weight=w, **(gan_options or {})),
        'hint': lambda w: HintTerm(shapes, ctx, weight=w, **(hint_options or {})),
        'soft': lambda w: SoftLabelTerm(weight=w),
        'bounded': lambda w: BoundedRegressionTerm(weight=w),
        'crosshead': lambda w: CrossHeadTerm(teacher_head, weight=w),
        'di': lambda w: DetectionImitationTerm(teacher_head, weight=w),
        'cosine': lambda w: CosineTerm(weight=w),
    }
    return [factories[n](w) for n, w in zip(names, weights)]
