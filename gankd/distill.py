"""Distillation terms: how teacher and student are compared.

The training loop captures, per device, the teacher's maps, the (adapted) student's maps
and the head's predictions in a :class:`Captures`; each term turns those into a loss
that is added to the detection loss. A new method is a new :class:`DistillTerm`
subclass, not a new loop. GAN-KD is :class:`AdversarialTerm`: it owns the six critics
and trains them in :meth:`DistillTerm.prepare`, before the student step.
"""
from dataclasses import dataclass
from typing import Any, List, Optional

import mxnet as mx
from mxnet import autograd

from .critic import CriticSet, clip_weights, trainable
from .distributed import Distribution, backward

__all__ = ['Captures', 'DistillTerm', 'AdversarialTerm']


@dataclass
class Captures:
    """What one device saw in one iteration.

    Attributes
    ----------
    student_maps : list of NDArray
        The student's (adapted) maps, recorded for autograd.
    teacher_maps : list of NDArray or None
        The frozen teacher's maps (no gradient), None when no term needs the teacher.
    fraction : float
        This device's share of the batch; per-device means times ``fraction`` sum to the
        batch mean.
    cls_preds, box_preds, anchors, cls_targets, box_targets : NDArray or None
        Head outputs and SSD targets, filled in for the student step.
    teacher_cls_preds, teacher_box_preds : NDArray or None
        The frozen teacher head's raw predictions on the teacher's maps (no gradient),
        filled in when a term sets ``needs_teacher_preds``.
    """
    student_maps: List[Any]
    teacher_maps: Optional[List[Any]]
    fraction: float
    cls_preds: Any = None
    box_preds: Any = None
    anchors: Any = None
    cls_targets: Any = None
    box_targets: Any = None
    teacher_cls_preds: Any = None
    teacher_box_preds: Any = None


class DistillTerm(object):
    """Base class of a distillation term.

    Attributes
    ----------
    name : str
        The name of the loss in logs and history.
    weight : float
        Multiplies :meth:`loss` in the student objective.
    needs_teacher : bool
        Whether the teacher backbone must run for this term.
    needs_teacher_preds : bool
        Whether the loop must also run the frozen teacher head on the teacher's maps
        (fills ``Captures.teacher_cls_preds`` / ``teacher_box_preds``).
    """
    name = 'distill'
    needs_teacher = True
    needs_teacher_preds = False

    def __init__(self, weight=1.0):
        self.weight = weight

    def prepare(self, captures):
        """Work before the student step (e.g. critic updates). Returns loss NDArrays to
        log, by name; values are per-device lists summed over devices."""
        return {}

    def loss(self, cap):
        """The term's loss on one device (mean over that device's images), recorded."""
        raise NotImplementedError

    def losses(self, captures):
        """Per-device losses whose sum over devices is the batch loss, recorded.

        The default weights each device's mean by its share of the batch; a term that
        normalises over the whole batch (e.g. by the positives of all devices, as
        ``SSDMultiBoxLoss`` does) overrides this instead of :meth:`loss`.
        """
        return [self.loss(cap) * cap.fraction for cap in captures]

    def student_params(self):
        """Parameters the term adds to the student's side (e.g. a 1x1 connector), trained
        by the student's Trainer. Returns a list of Parameters."""
        return []

    def blocks(self):
        """Blocks the term owns and checkpoints (name -> Block)."""
        return {}

    def trainers(self):
        """Trainers the term owns and checkpoints (name -> Trainer)."""
        return {}


class AdversarialTerm(DistillTerm):
    """GAN-KD: six Wasserstein critics tell teacher maps from student maps.

    Critic step (``n_critic`` times, student maps detached):
    ``L_D = sum over levels [mean D(teacher) - mean D(student)]``, then every critic weight
    is clipped to ``[-clip, clip]``. Student term: ``sum over levels mean D(student)``
    (the loop multiplies it by ``weight``, ``--adv-weight``).

    Parameters
    ----------
    shapes : list of tuple
        ``(C, H, W)`` of the teacher's maps.
    ctx : list of mxnet.Context
    weight : float
        ``--adv-weight``.
    lr : float
        Adam learning rate of the critics (``--lr-d``).
    beta1 : float
    clip : float
        Weight clipping bound (``--clip``).
    n_critic : int
        Critic steps per iteration (``--n-critic``).
    kvstore : str
    width : int
        Channels of each critic's first layer.
    input_norm : bool
        Divide each level by the RMS of the teacher's maps on the first batch (see
        :class:`CriticSet`); False feeds the raw maps.
    critic_bn : bool
        BatchNorm inside the critics (see :class:`FeatureCritic`).
    sync_devices : int
        SyncBatchNorm over this many devices inside the critics (``--syncbn``).
    distribution : gankd.distributed.Distribution or None
        Makes the critics' Trainer and averages the input scales over workers; None is one
        machine with ``kvstore``.
    amp : module or None
        ``mxnet.contrib.amp`` when training in mixed precision (``--amp``).
    """
    name = 'Loss_G'

    def __init__(self, shapes, ctx, weight=1.0, lr=5e-4, beta1=0.5, clip=0.03, n_critic=1,
                 kvstore='device', width=64, input_norm=True, critic_bn=True, sync_devices=1,
                 distribution=None, amp=None):
        super(AdversarialTerm, self).__init__(weight)
        self.clip, self.n_critic, self.input_norm = clip, n_critic, input_norm
        self.critics = CriticSet(shapes, width=width, norm=critic_bn, sync_devices=sync_devices)
        # DCGAN/WGAN initialisation; it already lies inside the clipping range.
        self.critics.initialize(mx.init.Normal(0.02), ctx=ctx)
        self.critics.hybridize(static_alloc=True)
        # Only the critics' weights are trained and clipped, not the input scales or
        # BatchNorm's running statistics.
        self.weights = trainable(self.critics.levels.collect_params())
        self.distribution = distribution or Distribution(kvstore)
        self.amp = amp
        self.trainer = self.distribution.trainer(self.weights, 'adam',
                                                 {'learning_rate': lr, 'beta1': beta1})
        if amp is not None:
            amp.init_trainer(self.trainer)
        self._calibration_checked = False
        # Called after every critic step with the critics' ParameterDict (for tests and
        # monitoring; e.g. a check that clipping holds).
        self.step_hooks = []

    def prepare(self, captures):
        if self.input_norm and not self._calibration_checked:
            # Scales restored from a checkpoint are kept; fresh ones are measured once.
            if not self.critics.is_calibrated():
                self.critics.calibrate([c.teacher_maps for c in captures],
                                       average=self.distribution.average)
            self._calibration_checked = True
        real, fake = [], []
        for _ in range(self.n_critic):
            losses, real, fake = [], [], []
            with autograd.record():
                for cap in captures:
                    d_real = sum(s.mean() for s in self.critics(cap.teacher_maps))
                    d_fake = sum(s.mean() for s in self.critics(
                        [m.detach() for m in cap.student_maps]))
                    losses.append((d_real - d_fake) * cap.fraction)
                    real.append(d_real * cap.fraction)
                    fake.append(d_fake * cap.fraction)
            backward(losses, self.trainer, self.amp)
            self.trainer.step(1)
            clip_weights(self.weights, self.clip)
            for hook in self.step_hooks:
                hook(self.weights)
        # Logged values are those of the last critic step.
        return {'Loss_D_real': real, 'Loss_D_fake': fake}

    def loss(self, cap):
        return sum(s.mean() for s in self.critics(cap.student_maps))

    def blocks(self):
        return {'critics': self.critics}

    def trainers(self):
        return {'critics': self.trainer}
