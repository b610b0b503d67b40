"""Prediction-level terms: the student head's outputs compared with the teacher head's.

* ``Loss_soft``, :class:`SoftLabelTerm`: Chen et al. 2017 class-weighted soft labels.
* ``Loss_bounded``, :class:`BoundedRegressionTerm`: Chen et al. 2017 teacher-bounded
  regression.
* ``Loss_crosshead``, :class:`CrossHeadTerm`: CrossKD (seed 002).
* ``Loss_di``, :class:`DetectionImitationTerm`: Dist2's detection imitation (seed 004).

They read the detector family's :class:`gankd.detectors.family.Predictions`, one per
stage (SSD has one), so each is written once for every family. Box predictions and
targets are compared in the space where the family's own box loss compares them (SSD:
GluonCV's ``NormalizedBoxCenterEncoder`` with stds 0.1, 0.1, 0.2, 0.2). "Positive"
candidates are those with ``cls_targets > 0``.
"""
import mxnet as mx

from ..errors import GankdError
from .base import TEACHER_MAPS, TEACHER_PREDICTIONS, DistillTerm, register_term

__all__ = ['SoftLabelTerm', 'BoundedRegressionTerm', 'CrossHeadTerm',
           'DetectionImitationTerm']


def _total(parts):
    """The sum of a list of losses (the one loss itself when there is one, no extra op)."""
    return parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])


def _num_positives(captures, stage):
    """Positive candidates of one stage over all devices (at least 1), as
    SSDMultiBoxLoss counts them.

    A host-side number: every device's loss is divided by the same count, so the per-device
    losses add up to the loss of the whole batch however the batch was split.
    """
    return max(1.0, sum(float(cap.predictions[stage].positives().sum().asscalar())
                        for cap in captures))


@register_term('soft')
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
    needs = (TEACHER_MAPS, TEACHER_PREDICTIONS)
    options = ('temperature', 'background_weight', 'foreground_weight')

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
        parts = []
        for p, tp in zip(cap.predictions, cap.teacher_predictions):
            log_ps = mx.nd.log_softmax(p.cls_logits / self.temperature, axis=-1)
            pt = mx.nd.softmax(tp.cls_logits.detach() / self.temperature, axis=-1)
            w = self.class_weights(p.cls_logits.shape[-1], p.cls_logits.context)
            parts.append(-(pt * log_ps * w).sum(axis=-1).mean())
        return _total(parts)


#: Relative tolerance under which the bounded term takes the student's and the teacher's
#: box errors as equal.
GATE_TOLERANCE = 1e-5


@register_term('bounded')
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
    needs = (TEACHER_MAPS, TEACHER_PREDICTIONS)
    options = ('margin',)

    def __init__(self, weight=1.0, margin=0.0):
        super(BoundedRegressionTerm, self).__init__(weight)
        self.margin = float(margin)

    def losses(self, captures):
        out = [[] for _ in captures]
        for stage in range(len(captures[0].predictions)):
            num_pos = _num_positives(captures, stage)
            for i, cap in enumerate(captures):
                p, tp = cap.predictions[stage], cap.teacher_predictions[stage]
                err_s = mx.nd.square(p.box_preds - p.box_targets).sum(axis=-1)
                err_t = mx.nd.square(tp.box_preds.detach() - p.box_targets).sum(axis=-1)
                # The gate only selects candidates; it is no path for gradients. Errors
                # equal to float precision count as equal: a trainable copy of the head
                # and the frozen head can differ in the last bits on the same maps
                # (measured: up to 3e-7 in box outputs, on one CPU and not another), and
                # at margin 0 that alone would open the gate on about half the anchors.
                slack = GATE_TOLERANCE * (1.0 + err_t)
                gate = (err_s.detach() + self.margin > err_t + slack) * p.positives()
                out[i].append((err_s * gate).sum() / num_pos)
        return [_total(parts) for parts in out]


@register_term('crosshead')
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
    needs = (TEACHER_MAPS, TEACHER_PREDICTIONS)
    needs_teacher_head = True
    options = ('temperature', 'box_weight')

    @classmethod
    def from_context(cls, context, weight=1.0, **options):
        return cls(context.teacher_head, weight=weight, **options)

    def __init__(self, teacher_head, weight=1.0, temperature=1.0, box_weight=1.0):
        super(CrossHeadTerm, self).__init__(weight)
        if temperature <= 0:
            raise GankdError('CrossHeadTerm: temperature must be positive, got {}'.format(
                temperature))
        self.teacher_head = teacher_head
        self.temperature = float(temperature)
        self.box_weight = float(box_weight)

    def losses(self, captures):
        crossed = [cap.family.reference_predictions(self.teacher_head, cap.student_maps,
                                                    cap.predictions) for cap in captures]
        out = [[] for _ in captures]
        for stage in range(len(captures[0].predictions)):
            num_pos = _num_positives(captures, stage)
            for i, cap in enumerate(captures):
                x, tp = crossed[i][stage], cap.teacher_predictions[stage]
                log_px = mx.nd.log_softmax(x.cls_logits / self.temperature, axis=-1)
                log_pt = mx.nd.log_softmax(tp.cls_logits.detach() / self.temperature, axis=-1)
                kl = (mx.nd.exp(log_pt) * (log_pt - log_px)).sum(axis=-1).mean()
                box = mx.nd.smooth_l1(x.box_preds - tp.box_preds.detach(), scalar=1.0)
                box = (box * x.positives().expand_dims(axis=-1)).sum() / num_pos
                out[i].append(kl * cap.fraction + self.box_weight * box)
        return [_total(parts) for parts in out]


@register_term('di')
class DetectionImitationTerm(DistillTerm):
    """Dist2's detection imitation, DI (seed 004), with the detector's own loss.

    The student's maps pushed through the teacher's frozen head should give correct
    detections: the family's task loss (for SSD, GluonCV's ``SSDMultiBoxLoss``: hard
    negative mining, smooth L1 on positives, normalised by the positives of all devices)
    on those cross predictions and the ground-truth targets. It is GAN-KD's "student maps
    into the teacher's head" as a loss of its own. Only the teacher's head is needed, not
    its backbone.

    Parameters
    ----------
    teacher_head : HybridBlock
        The teacher's head, frozen, initialised on every device of the run.
    weight : float
    """
    name = 'Loss_di'
    needs = ()
    needs_teacher_head = True

    @classmethod
    def from_context(cls, context, weight=1.0, **options):
        return cls(context.teacher_head, weight=weight, **options)

    def __init__(self, teacher_head, weight=1.0):
        super(DetectionImitationTerm, self).__init__(weight)
        self.teacher_head = teacher_head

    def losses(self, captures):
        family = captures[0].family
        crossed = [family.reference_predictions(self.teacher_head, cap.student_maps,
                                                cap.predictions) for cap in captures]
        # One call over all devices: the task loss normalises over the whole batch.
        objectives, _ = family.task_loss(crossed, [cap.targets for cap in captures])
        return objectives
