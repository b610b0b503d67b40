"""GAN-KD's adversarial term: per-level critics tell the teacher's maps from the student's.

The critics, their losses and constraints live in :mod:`gankd.distill.critics` and
:mod:`gankd.distill.critic_losses`; this term trains them before every student step and
gives the student their verdict as its loss.
"""
import mxnet as mx
from mxnet import autograd

from ..errors import GankdError
from ..train.distributed import Distribution, backward
from .base import DistillTerm, register_term
from .critic_losses import build_critic_loss
from .critics import CRITIC_NORMS, CriticSet, trainable

__all__ = ['AdversarialTerm']


@register_term('gan')
class AdversarialTerm(DistillTerm):
    """GAN-KD: per-level critics tell teacher maps from student maps.

    Critic step (``n_critic`` times, student maps detached): the variant's objective
    (:mod:`gankd.distill.critic_losses`, ``--critic``), plus its penalty if it has one, then its
    constraint (e.g. clipping). The published one, ``wgan-clip``, is
    ``L_D = sum over levels [mean D(teacher) - mean D(student)]``, then every critic weight
    is clipped to ``[-clip, clip]``; its student term is ``sum over levels
    mean D(student)``. The loop multiplies the student term by ``weight``
    (``--adv-weight``), ramped up over ``warmup`` iterations (``--adv-warmup``).

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
        Weight clipping bound (``--clip``; ``wgan-clip`` only).
    n_critic : int
        Critic steps per iteration (``--n-critic``).
    kvstore : str
    width : int
        Channels of each critic's first layer.
    input_norm : {'rms', 'channel', 'none'} or bool
        ``--critic-norm``: divide each level by the RMS of the teacher's maps on the first
        batch, standardise each channel with the teacher's mean and std on the first
        batch, or feed the raw maps (see :class:`CriticSet`). True is ``'rms'``, False
        ``'none'``.
    critic_bn : bool or None
        BatchNorm inside the critics (see :class:`FeatureCritic`); None is the detector
        family's default if it has one (Faster R-CNN: off), else the variant's (on for
        ``wgan-clip`` and ``lsgan``, off for ``wgan-gp`` and ``hinge-sn``).
    sync_devices : int
        SyncBatchNorm over this many devices inside the critics (``--syncbn``).
    distribution : gankd.train.distributed.Distribution or None
        Makes the critics' Trainer and averages the input statistics over workers; None is
        one machine with ``kvstore``.
    amp : module or None
        ``mxnet.contrib.amp`` when training in mixed precision (``--amp``).
    critic : str
        ``--critic``, a name of :data:`gankd.distill.critic_losses.CRITICS`.
    gp_weight : float
        ``--gp-weight`` (``wgan-gp`` only).
    levels : list of int or None
        ``--critic-levels``: the levels with a critic; None is all.
    warmup : int
        ``--adv-warmup`` (see :class:`DistillTerm`).
    """
    name = 'Loss_G'
    log_names = ('Loss_D', 'Loss_D_real', 'Loss_D_fake', 'Loss_D_penalty', 'Loss_G')
    options = ('lr', 'beta1', 'clip', 'n_critic', 'width', 'input_norm', 'critic_bn', 'critic',
               'gp_weight', 'levels', 'warmup')

    @classmethod
    def from_context(cls, context, weight=1.0, **options):
        if options.get('critic_bn') is None:
            # The detector family's default, if it has one (see DetectorFamily.critic_bn).
            options['critic_bn'] = getattr(context.family, 'critic_bn', None)
        return cls(context.teacher_shapes, context.ctx, weight=weight,
                   distribution=context.distribution, amp=context.amp,
                   sync_devices=context.sync_devices, **options)

    def __init__(self, shapes, ctx, weight=1.0, lr=5e-4, beta1=0.5, clip=0.03, n_critic=1,
                 kvstore='device', width=64, input_norm='rms', critic_bn=None, sync_devices=1,
                 distribution=None, amp=None, critic='wgan-clip', gp_weight=10.0,
                 levels=None, warmup=0):
        super(AdversarialTerm, self).__init__(weight, warmup=warmup)
        if isinstance(levels, str):  # --distill-options gan.levels=0:1:2
            levels = [int(v) for v in levels.replace(':', ',').split(',') if v.strip()]
        if input_norm is True or input_norm is False:
            input_norm = 'rms' if input_norm else 'none'
        if input_norm not in CRITIC_NORMS:
            raise GankdError('critic norm must be one of {}, got {!r}'.format(
                ', '.join(CRITIC_NORMS), input_norm))
        self.clip, self.n_critic, self.input_norm = clip, n_critic, input_norm
        self.critic, self.gp_weight = critic, gp_weight
        self.critic_loss = build_critic_loss(critic, clip=clip, gp_weight=gp_weight)
        self.critic_bn = self.critic_loss.batchnorm if critic_bn is None else bool(critic_bn)
        self.critics = CriticSet(shapes, width=width, norm=self.critic_bn,
                                 sync_devices=sync_devices, levels=levels,
                                 channel_stats=input_norm == 'channel',
                                 spectral_norm=self.critic_loss.spectral_norm)
        # DCGAN/WGAN initialisation; it already lies inside the clipping range.
        self.critics.initialize(mx.init.Normal(0.02), ctx=ctx)
        if not self.critic_loss.spectral_norm:
            # Spectral normalisation updates its vectors in place: imperative only.
            self.critics.hybridize(static_alloc=True)
        # Only the critics' weights are trained and clipped, not the input statistics,
        # BatchNorm's running statistics or the power-iteration vectors.
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

    def critic_losses(self, captures):
        """The critics' per-device objectives (each device's mean times its share of the
        batch, recorded) and the values to log (per-device lists): ``Loss_D_real`` and
        ``Loss_D_fake``, the mean scores of teacher and student maps summed over levels,
        and the penalty as ``Loss_D_penalty`` for a variant that has one. No gradient
        reaches either network's maps."""
        losses, real, fake = [], [], []
        with autograd.record():
            for cap in captures:
                # Detached: a critic step trains the critics, never the networks.
                d_real = self.critics([m.detach() for m in cap.teacher_maps])
                d_fake = self.critics([m.detach() for m in cap.student_maps])
                losses.append(self.critic_loss.critic(d_real, d_fake) * cap.fraction)
                real.append(sum(s.mean() for s in d_real) * cap.fraction)
                fake.append(sum(s.mean() for s in d_fake) * cap.fraction)
            penalties = self.critic_loss.penalty(self.critics, captures)
            if penalties is not None:
                penalties = [p * cap.fraction for p, cap in zip(penalties, captures)]
                losses = [l + p for l, p in zip(losses, penalties)]
        logged = {'Loss_D_real': real, 'Loss_D_fake': fake}
        if penalties is not None:
            logged['Loss_D_penalty'] = penalties
        return losses, logged

    def prepare(self, captures):
        if self.input_norm != 'none' and not self._calibration_checked:
            # Statistics restored from a checkpoint are kept; fresh ones are measured once.
            if not self.critics.is_calibrated():
                self.critics.calibrate([c.teacher_maps for c in captures],
                                       average=self.distribution.average)
            self._calibration_checked = True
        logged = {}
        for _ in range(self.n_critic):
            losses, logged = self.critic_losses(captures)
            backward(losses, self.trainer, self.amp)
            self.trainer.step(1)
            self.critic_loss.after_step(self.weights)
            for hook in self.step_hooks:
                hook(self.weights)
        # Logged values are those of the last critic step.
        return logged

    def description(self):
        return dict(critic=self.critic, critic_norm=self.input_norm, critic_bn=self.critic_bn,
                    critic_levels=self.critics.level_ids, adv_warmup=int(self.warmup),
                    clip=float(self.clip), gp_weight=float(self.gp_weight))

    def summarize(self, values):
        if 'Loss_D_real' in values:
            # The critics' estimate of the distance between the two sets of maps.
            values['Loss_D'] = values['Loss_D_real'] - values['Loss_D_fake']

    def loss(self, cap):
        return self.critic_loss.student(self.critics(cap.student_maps))

    def blocks(self):
        return {'critics': self.critics}

    def trainers(self):
        return {'critics': self.trainer}
