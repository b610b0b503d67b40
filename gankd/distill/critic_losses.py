"""The critic variants of GAN-KD's adversarial term (``--critic``): one class each.

A variant says what the critics minimise, what the student minimises, and how the
critics are kept Lipschitz (clipping after each step, a penalty in the objective, or
spectrally normalised convolutions). :class:`gankd.distill.base.AdversarialTerm` runs every
variant with the same loop; :data:`CRITICS` maps the flag's names to the classes.

Scores are those of :class:`gankd.distill.critics.CriticSet`: per level, one unbounded score per
image. Objectives here are means over one device's images, summed over levels; the
term weights each device by its share of the batch.

* ``wgan-clip``, :class:`WGANClip`: the published critic (WGAN, weights clipped to
  ``[-clip, clip]``). The default.
* ``wgan-gp``, :class:`WGANGP`: WGAN with a gradient penalty estimated by finite
  differences (MXNet 1.9.1 has no second-order gradient for convolutions).
* ``hinge-sn``, :class:`HingeSN`: hinge loss, spectrally normalised convolutions.
* ``lsgan``, :class:`LeastSquares`: least squares.
"""
from collections import OrderedDict

import mxnet as mx
import numpy as np

from .critics import clip_weights
from ..errors import GankdError

__all__ = ['CriticLoss', 'WGANClip', 'WGANGP', 'HingeSN', 'LeastSquares', 'CRITICS',
           'build_critic_loss']


def _mean_sum(scores):
    """``sum over levels of mean over images``, the Wasserstein estimate's half."""
    return sum(s.mean() for s in scores)


class CriticLoss(object):
    """Base class of a critic variant.

    Attributes
    ----------
    name : str
        The ``--critic`` value.
    batchnorm : bool
        Whether the critics have BatchNorm unless ``--critic-bn`` says otherwise.
    spectral_norm : bool
        Whether the critics' convolutions are spectrally normalised.
    """
    name = None
    batchnorm = True
    spectral_norm = False

    def critic(self, real, fake):
        """The critics' objective on one device from the per-level scores of the
        teacher's maps (``real``) and the student's (``fake``), recorded."""
        raise NotImplementedError

    def student(self, fake):
        """The student's objective from the per-level scores of its maps, recorded."""
        raise NotImplementedError

    def penalty(self, critics, captures):
        """Per-device penalties added to the critics' objective (means over each device's
        images), or None."""
        return None

    def after_step(self, weights):
        """Called after every critic update with the critics' trainable parameters."""


class WGANClip(CriticLoss):
    """The published critic: WGAN with weight clipping (Arjovsky et al. 2017).

    Critics: ``mean D(teacher) - mean D(student)``; student: ``mean D(student)``; after
    every critic step every trainable critic parameter (BatchNorm's gamma and beta too) is
    clipped to ``[-clip, clip]``.

    Parameters
    ----------
    clip : float
        ``--clip``.
    """
    name = 'wgan-clip'

    def __init__(self, clip=0.03):
        self.clip = clip

    def critic(self, real, fake):
        return _mean_sum(real) - _mean_sum(fake)

    def student(self, fake):
        return _mean_sum(fake)

    def after_step(self, weights):
        clip_weights(weights, self.clip)


class WGANGP(CriticLoss):
    """WGAN with a gradient penalty (Gulrajani et al. 2017), by finite differences.

    The textbook penalty ``(||grad D(x)|| - 1) ** 2`` at interpolates needs the gradient
    of a gradient, which MXNet 1.9.1 lacks for convolutions. Instead, per level and image,
    at ``x = e * t + (1 - e) * s`` (``e`` uniform in [0, 1], teacher map ``t`` and student
    map ``s`` of the same image, as the critic sees them) the critic's slope along the
    segment, ``u = (t - s) / ||t - s||``, is a central difference::

        slope = |D(x + h u) - D(x - h u)| / (2 h),   h = step * sqrt(C * H * W)

    (``h`` moves each element by ``step`` in RMS), and the penalty is
    ``gp_weight * mean (slope - 1) ** 2`` (``max(slope - 1, 0) ** 2`` when one-sided),
    summed over levels. It is recorded, so its gradient reaches the critics' weights
    through the two extra critic passes; no gradient reaches either network's maps.

    Why the segment and not random directions: Gulrajani et al.'s optimal critic has unit
    gradient pointing along the segments between coupled points, and its slope there is
    what ``mean D(t) - mean D(s)`` rewards; a random unit direction in these
    ``C * H * W`` (10^2 to 10^6) dimensions sees only ``||grad D|| / sqrt(C H W)`` of the
    gradient and would need many directions, two critic passes each, for a usable
    estimate. The price: the slope along the segment is a lower bound of the gradient's
    norm, so only steepness along these segments is penalised. Teacher and student maps
    of the same image make natural couples.

    The critics have no BatchNorm by default (as in Gulrajani et al.): with it, an
    image's score, and so its slope, depends on the other images of the batch.

    ``e`` is drawn from NumPy's global generator for the whole batch and split like the
    images, so a device split sees the same interpolates and a resumed run (whose
    checkpoint holds that generator's state) the same ones too.

    Parameters
    ----------
    gp_weight : float
        ``--gp-weight`` (10 in Gulrajani et al.).
    step : float
        Finite-difference step per element of the critic's input.
    one_sided : bool
        Penalise only slopes above 1 (Petzka et al. 2018) instead of any slope but 1.
    """
    name = 'wgan-gp'
    batchnorm = False

    def __init__(self, gp_weight=10.0, step=0.01, one_sided=False):
        if not gp_weight >= 0:
            raise GankdError('the gradient penalty weight must be 0 or more, got {}'.format(
                gp_weight))
        self.gp_weight, self.step, self.one_sided = float(gp_weight), float(step), one_sided

    critic = WGANClip.critic
    student = WGANClip.student

    def slopes(self, critic, t, s, eps):
        """Per image, the central-difference slope of ``critic`` at ``e t + (1 - e) s``
        along ``t - s``. ``t``, ``s``: ``(B, C, H, W)`` critic inputs; ``eps``: ``(B,)``."""
        t, s = t.detach(), s.detach()
        diff = t - s
        norm = mx.nd.sqrt(mx.nd.square(diff).reshape((0, -1)).sum(axis=1))
        # Where the student's map equals the teacher's there is no segment: u = 0 there,
        # and the slope (0) carries no gradient to the critic.
        u = mx.nd.broadcast_div(diff, mx.nd.maximum(norm, 1e-12).reshape((-1, 1, 1, 1)))
        x = s + mx.nd.broadcast_mul(eps.reshape((-1, 1, 1, 1)), diff)
        h = self.step * float(np.sqrt(t[0].size))
        return mx.nd.abs(critic(x + h * u) - critic(x - h * u)) / (2 * h)

    def penalty(self, critics, captures):
        sizes = [cap.student_maps[0].shape[0] for cap in captures]
        eps_all = np.random.uniform(size=sum(sizes)).astype('float32')
        out, start = [], 0
        for cap, n in zip(captures, sizes):
            ctx = cap.student_maps[0].context
            eps = mx.nd.array(eps_all[start:start + n], ctx=ctx)
            start += n
            real = critics.normalise([m.detach() for m in cap.teacher_maps])
            fake = critics.normalise([m.detach() for m in cap.student_maps])
            total = 0
            for critic, t, s in zip(critics.levels, real, fake):
                excess = self.slopes(critic, t, s, eps) - 1
                if self.one_sided:
                    excess = mx.nd.relu(excess)
                total = total + mx.nd.square(excess).mean()
            out.append(self.gp_weight * total)
        return out


class HingeSN(CriticLoss):
    """Hinge loss with spectrally normalised critics (Miyato et al. 2018).

    Critics: ``mean relu(1 - D(teacher)) + mean relu(1 + D(student))``; student:
    ``-mean D(student)``. Note the sign: here the teacher's maps score high, while the
    WGAN critics score them low. Every convolution is an :class:`gankd.distill.critics.SNConv2D`;
    no clipping, and no BatchNorm by default (as in Miyato et al.'s critics).
    """
    name = 'hinge-sn'
    batchnorm = False
    spectral_norm = True

    def critic(self, real, fake):
        return (sum(mx.nd.relu(1 - s).mean() for s in real) +
                sum(mx.nd.relu(1 + s).mean() for s in fake))

    def student(self, fake):
        return -_mean_sum(fake)


class LeastSquares(CriticLoss):
    """Least-squares GAN (Mao et al. 2017).

    Critics: ``mean (D(teacher) - 1) ** 2 / 2 + mean D(student) ** 2 / 2``; student:
    ``mean (D(student) - 1) ** 2 / 2``. The targets bound the scores, so no Lipschitz
    constraint (no clipping); unlike a sigmoid critic's, its loss does not saturate
    for maps the critic rejects confidently. BatchNorm as in the published critic (the
    DCGAN critic, which LSGAN also used).
    """
    name = 'lsgan'

    def critic(self, real, fake):
        return (sum(mx.nd.square(s - 1).mean() / 2 for s in real) +
                sum(mx.nd.square(s).mean() / 2 for s in fake))

    def student(self, fake):
        return sum(mx.nd.square(s - 1).mean() / 2 for s in fake)


#: ``--critic`` names, the published one first.
CRITICS = OrderedDict((c.name, c) for c in (WGANClip, WGANGP, HingeSN, LeastSquares))


def build_critic_loss(name, clip=0.03, gp_weight=10.0):
    """The variant named by ``--critic``, with the flags that concern it."""
    if name not in CRITICS:
        raise GankdError('unknown critic {!r}; choose from {}'.format(name, ', '.join(CRITICS)))
    if name == 'wgan-clip':
        return WGANClip(clip=clip)
    if name == 'wgan-gp':
        return WGANGP(gp_weight=gp_weight)
    return CRITICS[name]()
