"""Assembling a :class:`gankd.train.loop.Run` for plain SSD training or for GAN-KD."""
import mxnet as mx
from mxnet import autograd

from ..detectors.detector import Detector
from ..distill.base import AdversarialTerm
from .distributed import Distribution, sync_batchnorm
from .loop import Run
from ..errors import GankdError
from ..detectors.ssd.model import (build_ssd, build_teacher, copy_head, feature_shapes, fresh_head, split_ssd,
                  ssd_config)
from ..detectors.ssd.student import build_student
from ..distill.terms import build_terms

__all__ = ['HEAD_CHOICES', 'contexts', 'build_plain_run', 'build_gankd_run', 'train_anchors']

#: ``--head``: what the student's maps drive (see :func:`build_gankd_run`).
HEAD_CHOICES = ('teacher', 'fresh', 'frozen')


def contexts(gpus='', cpu_contexts=1):
    """Devices from ``--gpus`` ('' = CPU) or, for testing, ``cpu_contexts`` CPU devices."""
    if gpus and str(gpus).strip():
        try:
            ids = [int(i) for i in str(gpus).split(',') if i.strip()]
        except ValueError:
            raise GankdError('--gpus takes comma-separated integers, got {!r}'.format(gpus))
        if mx.context.num_gpus() < len(ids):
            raise GankdError('--gpus {} asks for {} GPUs but this MXNet sees {} (install '
                             'mxnet-cu112 on a CUDA machine, or pass --gpus "" for CPU)'.format(
                                 gpus, len(ids), mx.context.num_gpus()))
        return [mx.gpu(i) for i in ids]
    return [mx.cpu(i) for i in range(max(1, int(cpu_contexts)))]


def _trainer(params, optimizer, lr, momentum, wd, distribution, amp=None):
    """SGD with momentum as GluonCV's train_ssd.py, or Adam (``momentum`` unused)."""
    if optimizer == 'sgd':
        opt = {'learning_rate': lr, 'wd': wd, 'momentum': momentum}
    elif optimizer == 'adam':
        opt = {'learning_rate': lr, 'wd': wd}
    else:
        raise GankdError("--optimizer must be 'sgd' or 'adam', got {!r}".format(optimizer))
    trainer = distribution.trainer(params, optimizer, opt)
    if amp is not None:
        amp.init_trainer(trainer)
    return trainer


def _sync_features(block, attr, ctx, syncbn, key):
    """Replace ``block.<attr>`` (a FeatureExpander) by its SyncBatchNorm copy (--syncbn)."""
    if not syncbn:
        return
    if len(ctx) > 1 and any(c.device_type == 'cpu' for c in ctx):
        # Seen here with MXNet 1.9.1: four or more SyncBatchNorm layers on two CPU
        # contexts deadlock in the first forward pass.
        raise GankdError('--syncbn needs GPUs: SyncBatchNorm deadlocks on several CPU '
                         'contexts in MXNet 1.9.1')
    setattr(block, attr, sync_batchnorm(getattr(block, attr), len(ctx), key))


def build_plain_run(network, data_shape, classes, ctx, dataset='voc', lr=1e-3, momentum=0.9,
                    wd=5e-4, optimizer='sgd', pretrained_base=False, distribution=None,
                    syncbn=False, amp=None):
    """A plain SSD (teachers and no-distillation baselines).

    Parameters
    ----------
    distribution : gankd.train.distributed.Distribution or None
        How gradients are aggregated (None: this machine's devices).
    syncbn : bool
        SyncBatchNorm across ``ctx`` in the backbone.
    amp : module or None
        ``mxnet.contrib.amp``, already initialised (:func:`gankd.train.distributed.require_amp`).

    Returns
    -------
    Run
    """
    distribution = distribution or Distribution()
    cfg = ssd_config(network, data_shape, classes, dataset)
    net = build_ssd(ctx=ctx, pretrained_base=pretrained_base, **cfg)
    _sync_features(net, 'features', ctx, syncbn, 'ssd')
    backbone, head = split_ssd(net)
    backbone.hybridize(static_alloc=True, static_shape=True)
    head.hybridize(static_alloc=True, static_shape=True)
    meta = {'kind': 'ssd', 'name': 'ssd_{}_{}_{}'.format(data_shape, network, dataset),
            'ssd': cfg}
    return Run(ctx=ctx, backbone=backbone, head=head, save_block=net, meta=meta,
               classes=list(classes), amp=amp,
               trainer=_trainer(net.collect_params(), optimizer, lr, momentum, wd,
                                distribution, amp))


def build_gankd_run(teacher, student, data_shape, classes, ctx, teacher_params=None,
                    dataset='voc', lr=1e-3, momentum=0.9, wd=5e-4, lr_d=5e-4, clip=0.03,
                    n_critic=1, adv_weight=0.1, adapt='mismatch', optimizer='sgd',
                    critic_norm='rms', critic_bn=None, pretrained_base=False,
                    distill=('gan',), distill_weights=None, distribution=None, syncbn=False,
                    amp=None, head='teacher', det_weight=1.0, hint_connector='1x1',
                    critic='wgan-clip', gp_weight=10.0, critic_levels=None, adv_warmup=0):
    """A distillation run: frozen teacher backbone and head, student + adapters, the
    head the student's maps drive (by default a trainable copy of the teacher's), and the
    distillation terms (by default GAN-KD's six critics alone).

    Parameters
    ----------
    head : {'teacher', 'fresh', 'frozen'}
        ``--head``: the student's head is a trainable copy of the teacher's head (GAN-KD:
        "its SSD head" goes on training), a newly initialised head of the teacher's shape,
        or the teacher's head kept frozen, so that only the student adapts to it.
    distill : sequence of str
        Names of :data:`gankd.distill.terms.TERM_NAMES` (``--distill``).
    distill_weights : sequence of float or None
        One per name (``--distill-weights``); None gives ``adv_weight`` to ``gan`` and 1
        to the others.
    distribution, syncbn, amp
        See :func:`build_plain_run`; ``syncbn`` also covers the critics' BatchNorms.
    det_weight : float
        ``--det-weight``: the detection loss's weight while the terms are on.
    hint_connector : {'1x1', 'none'}
        ``--hint-connector`` (:class:`gankd.distill.terms.HintTerm`).
    critic : str
        ``--critic``: the critic variant (:data:`gankd.distill.critic_losses.CRITICS`);
        ``'wgan-clip'`` is the published one.
    critic_norm : {'rms', 'channel', 'none'}
        ``--critic-norm``: what the critics' inputs are normalised by.
    critic_bn : bool or None
        ``--critic-bn``; None is the critic variant's default.
    gp_weight : float
        ``--gp-weight`` (``wgan-gp``).
    critic_levels : list of int or None
        ``--critic-levels``: the levels that get a critic (None: all).
    adv_warmup : int
        ``--adv-warmup``: iterations over which the adversarial weight rises from 0.

    Returns
    -------
    Run
    """
    distribution = distribution or Distribution()
    tcfg = ssd_config(teacher, data_shape, classes, dataset)
    teacher_net = build_teacher(tcfg, teacher_params, ctx=ctx)
    t_backbone, t_head = split_ssd(teacher_net)
    t_shapes = feature_shapes(t_backbone, data_shape, ctx[0])
    # The teacher never changes: no gradient buffers, never in a Trainer.
    t_backbone.collect_params().setattr('grad_req', 'null')
    t_backbone.hybridize(static_alloc=True, static_shape=True)
    t_head.collect_params().setattr('grad_req', 'null')
    t_head.hybridize(static_alloc=True, static_shape=True)
    if head not in HEAD_CHOICES:
        raise GankdError('head must be one of {}, not {!r}'.format(', '.join(HEAD_CHOICES),
                                                                   head))
    s_head = fresh_head(tcfg, ctx=ctx) if head == 'fresh' else copy_head(tcfg, t_head, ctx=ctx)
    if head == 'frozen':
        s_head.collect_params().setattr('grad_req', 'null')
    backbone = build_student(student, data_shape, t_shapes, adapt=adapt, teacher_name=teacher,
                             pretrained_base=pretrained_base, ctx=ctx)
    _sync_features(backbone, 'expander', ctx, syncbn, 'student')
    backbone.hybridize(static_alloc=True, static_shape=True)
    s_head.hybridize(static_alloc=True, static_shape=True)
    model = Detector(backbone, s_head)
    meta = {'kind': 'student', 'name': 'ssd_{}_{}_gankd_from_{}'.format(data_shape, student,
                                                                       teacher),
            'student': student, 'teacher': tcfg, 'teacher_shapes': [list(s) for s in t_shapes],
            'adapt': adapt, 'adapted_levels': backbone.adapted_levels, 'head': head,
            'teacher_params': teacher_params, 'det_weight': float(det_weight),
            'hint_connector': hint_connector}
    distill = list(distill)
    if distill_weights is None:
        distill_weights = [adv_weight if n == 'gan' else 1.0 for n in distill]
    meta['distill'] = dict(zip(distill, [float(w) for w in distill_weights]))
    terms = build_terms(distill, distill_weights, t_shapes, ctx, t_head, gan_options=dict(
        lr=lr_d, clip=clip, n_critic=n_critic, input_norm=critic_norm,
        critic_bn=critic_bn, sync_devices=len(ctx) if syncbn else 1,
        distribution=distribution, amp=amp, critic=critic, gp_weight=gp_weight,
        levels=critic_levels, warmup=adv_warmup), hint_options=dict(connector=hint_connector))
    gan = [t for t in terms if isinstance(t, AdversarialTerm)]
    if gan:
        # The critic's settings, for reports and for resuming with the same flags.
        meta.update(critic=critic, critic_norm=critic_norm, critic_bn=gan[0].critic_bn,
                    critic_levels=gan[0].critics.level_ids, adv_warmup=int(adv_warmup),
                    clip=float(clip), gp_weight=float(gp_weight))
    # Connectors of the terms (e.g. hint's 1x1 convs) train with the student but are not
    # part of the deliverable detector; checkpoints hold them through Run.blocks().
    params = [p for p in model.collect_params().values() if p.grad_req != 'null'] + [
        p for t in terms for p in t.student_params()]
    return Run(ctx=ctx, backbone=backbone, head=s_head, save_block=model, meta=meta,
               classes=list(classes), teacher=t_backbone, terms=terms, teacher_head=t_head,
               amp=amp, det_weight=float(det_weight),
               trainer=_trainer(params, optimizer, lr, momentum, wd, distribution, amp))


def train_anchors(run, data_shape):
    """The head's anchors, on the CPU, for GluonCV's SSD training transform."""
    with autograd.train_mode():
        _, _, anchors = run.head(run.backbone(
            mx.nd.zeros((1, 3, data_shape, data_shape), ctx=run.ctx[0])))
    return anchors.as_in_context(mx.cpu())
