"""Assembling a :class:`gankd.train.loop.Run`: a plain detector, or a distillation run
(frozen teacher, student, terms), for any registered detector family."""
import mxnet as mx

from ..detectors.family import get_family
from ..distill.base import DistillContext, build_terms
from ..distill.recorders import layer_sides, recording_view
from ..errors import GankdError
from .distributed import Distribution, sync_batchnorm
from .loop import Run
from .teacher import TEACHER_BN_CHOICES

__all__ = ['HEAD_CHOICES', 'contexts', 'build_plain_run', 'build_distill_run',
           'build_gankd_run']

#: ``--head``: what the student's maps drive (see :func:`build_distill_run`).
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


def _trainer(params, optimizer, lr, momentum, wd, distribution, amp=None, extra=None):
    """SGD with momentum as GluonCV's train_ssd.py, or Adam (``momentum`` unused);
    ``extra``: the family's own optimizer options (e.g. gradient clipping)."""
    if optimizer == 'sgd':
        opt = {'learning_rate': lr, 'wd': wd, 'momentum': momentum}
    elif optimizer == 'adam':
        opt = {'learning_rate': lr, 'wd': wd}
    else:
        raise GankdError("--optimizer must be 'sgd' or 'adam', got {!r}".format(optimizer))
    opt.update(extra or {})
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
                    syncbn=False, amp=None, family='ssd', model_options=None):
    """A plain detector (teachers and no-distillation baselines).

    Parameters
    ----------
    distribution : gankd.train.distributed.Distribution or None
        How gradients are aggregated (None: this machine's devices).
    syncbn : bool
        SyncBatchNorm across ``ctx`` in the backbone.
    amp : module or None
        ``mxnet.contrib.amp``, already initialised (:func:`gankd.train.distributed.require_amp`).
    family : str or gankd.detectors.family.DetectorFamily
        The detector family (``'ssd'``, ``'faster_rcnn'``).
    model_options : dict or None
        The family's own model settings, passed to its ``config`` (Faster R-CNN:
        ``roi_mode``, ``max_size``, ``num_sample``, ``roi_size``).

    Returns
    -------
    Run
    """
    family = get_family(family) if isinstance(family, str) else family
    distribution = distribution or Distribution()
    cfg = family.config(network, data_shape, classes, dataset, **(model_options or {}))
    net = family.build(cfg, ctx, pretrained_base=pretrained_base)
    _sync_features(net, 'features', ctx, syncbn, 'ssd')
    backbone, head = family.split(net)
    backbone.hybridize(static_alloc=True, static_shape=True)
    head.hybridize(static_alloc=True, static_shape=True)
    return Run(ctx=ctx, family=family, backbone=backbone, head=head, save_block=net,
               meta=family.describe_plain(cfg), classes=list(classes), amp=amp,
               trainer=_trainer(net.collect_params(), optimizer, lr, momentum, wd,
                                distribution, amp, family.optimizer_options))


def build_distill_run(teacher, student, data_shape, classes, ctx, teacher_params=None,
                      dataset='voc', lr=1e-3, momentum=0.9, wd=5e-4, adapt='mismatch',
                      optimizer='sgd', pretrained_base=False, distill=('gan',),
                      distill_weights=None, distill_options=None, distribution=None,
                      syncbn=False, amp=None, head='teacher', det_weight=1.0, family='ssd',
                      model_options=None, teacher_bn='running'):
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
        Registered term names (:func:`gankd.distill.term_names`, ``--distill``).
    distill_weights : sequence of float or None
        One per name (``--distill-weights``); None is 1 for every term.
    distill_options : dict or None
        Term name -> {option: value} (``--distill-options`` and the flags of the critics
        and of hint); see :func:`gankd.distill.build_terms`.
    distribution, syncbn, amp
        See :func:`build_plain_run`; ``syncbn`` also covers the critics' BatchNorms.
    det_weight : float
        ``--det-weight``: the detection loss's weight while the terms are on.
    family : str or gankd.detectors.family.DetectorFamily
    model_options : dict or None
        The teacher's model settings (see :func:`build_plain_run`); the student's head
        has the teacher's architecture.
    teacher_bn : {'running', 'batch'}
        ``--teacher-bn``: the BatchNorm statistics the teacher gives its maps with, its
        running ones (inference) or each batch's own (:mod:`gankd.train.teacher`).

    Returns
    -------
    Run
    """
    family = get_family(family) if isinstance(family, str) else family
    distribution = distribution or Distribution()
    tcfg = family.config(teacher, data_shape, classes, dataset, **(model_options or {}))
    t_backbone, t_head = family.split(family.load_teacher(tcfg, teacher_params, ctx))
    t_shapes = family.levels(t_backbone, data_shape, ctx[0])
    # The teacher never changes: no gradient buffers, never in a Trainer.
    t_backbone.collect_params().setattr('grad_req', 'null')
    t_backbone.hybridize(static_alloc=True, static_shape=True)
    t_head.collect_params().setattr('grad_req', 'null')
    t_head.hybridize(static_alloc=True, static_shape=True)
    if teacher_bn not in TEACHER_BN_CHOICES:
        raise GankdError('teacher_bn must be one of {}, not {!r}'.format(
            ', '.join(TEACHER_BN_CHOICES), teacher_bn))
    if head not in HEAD_CHOICES:
        raise GankdError('head must be one of {}, not {!r}'.format(', '.join(HEAD_CHOICES),
                                                                   head))
    s_head = family.student_head(tcfg, t_head, head, ctx)
    backbone = family.build_student(student, data_shape, t_shapes, teacher, adapt=adapt,
                                    pretrained_base=pretrained_base, ctx=ctx)
    _sync_features(backbone, getattr(backbone, 'features_attr', 'expander'), ctx, syncbn,
                   'student')
    backbone.hybridize(static_alloc=True, static_shape=True)
    s_head.hybridize(static_alloc=True, static_shape=True)
    model = family.compose(backbone, s_head)
    distill = list(distill)
    if distill_weights is None:
        distill_weights = [1.0] * len(distill)
    options = {k: dict(v) for k, v in (distill_options or {}).items()}
    context = DistillContext(t_shapes, ctx, teacher_head=t_head, family=family,
                             distribution=distribution, amp=amp,
                             sync_devices=len(ctx) if syncbn else 1, student=backbone)
    terms = build_terms(distill, distill_weights, context, options)
    meta = family.describe_student(
        student, tcfg, t_shapes, backbone, adapt=adapt, head=head,
        teacher_params=teacher_params, det_weight=float(det_weight),
        hint_connector=options.get('hint', {}).get('connector', '1x1'))
    meta['distill'] = dict(zip(distill, [float(w) for w in distill_weights]))
    for term in terms:
        # Each term's settings, for reports and for resuming with the same flags.
        meta.update(term.description())
    if teacher_bn != 'running':  # only when set, so the default's records stay as they were
        meta['teacher_bn'] = teacher_bn
    # Internal layers some term compares: recording views of both backbones, over their
    # own parameters, return them after the maps.
    records = tuple(dict.fromkeys(layer for t in terms for layer in t.records))
    recorders, shapes = {}, {}
    if records:
        for side, block, name in (('student', backbone, student),
                                  ('teacher', t_backbone, teacher)):
            layers = [layer_sides(entry)[side == 'teacher'] for entry in records]
            view = recording_view(block, layers, what='the {} ({})'.format(side, name))
            # Shapes before hybridizing, at the run's input size.
            shapes[side] = dict(zip(records, family.levels(view, data_shape, ctx[0])[
                -len(records):]))
            view.hybridize(static_alloc=True, static_shape=True)
            recorders[side + '_recorder'] = view
        for term in terms:
            if term.records:  # e.g. hint's connectors for layers of other widths
                term.bind_records({k: shapes['student'][k] for k in term.records},
                                  {k: shapes['teacher'][k] for k in term.records})
    # Connectors of the terms (e.g. hint's 1x1 convs) train with the student but are not
    # part of the deliverable detector; checkpoints hold them through Run.blocks().
    params = [p for p in model.collect_params().values() if p.grad_req != 'null'] + [
        p for t in terms for p in t.student_params()]
    return Run(ctx=ctx, family=family, backbone=backbone, head=s_head, save_block=model,
               meta=meta, classes=list(classes), teacher=t_backbone, terms=terms,
               teacher_head=t_head, amp=amp, det_weight=float(det_weight),
               teacher_bn=teacher_bn, records=records, **recorders,
               trainer=_trainer(params, optimizer, lr, momentum, wd, distribution, amp,
                                family.optimizer_options))


def build_gankd_run(teacher, student, data_shape, classes, ctx, distill=('gan',),
                    distill_weights=None, distill_options=None, adv_weight=0.1, lr_d=5e-4,
                    clip=0.03, n_critic=1, critic='wgan-clip', gp_weight=10.0,
                    critic_norm='rms', critic_bn=None, critic_levels=None, adv_warmup=0,
                    hint_connector='1x1', **kwargs):
    """:func:`build_distill_run` with the options of ``train_gankd_ssd.py``'s flags: the
    critics' (``--lr-d``, ``--clip``, ``--n-critic``, ``--critic``, ``--gp-weight``,
    ``--critic-norm``, ``--critic-bn``, ``--critic-levels``, ``--adv-warmup``) and hint's
    (``--hint-connector``), under ``distill_options`` given per term, which win. Without
    ``distill_weights``, ``gan`` weighs ``adv_weight`` (``--adv-weight``) and every other
    term 1.
    """
    distill = list(distill)
    if distill_weights is None:
        distill_weights = [adv_weight if n == 'gan' else 1.0 for n in distill]
    options = {}
    if 'gan' in distill:
        options['gan'] = dict(lr=lr_d, clip=clip, n_critic=n_critic, input_norm=critic_norm,
                              critic_bn=critic_bn, critic=critic, gp_weight=gp_weight,
                              levels=critic_levels, warmup=adv_warmup)
    if 'hint' in distill:
        options['hint'] = dict(connector=hint_connector)
    for name, given in (distill_options or {}).items():
        options.setdefault(name, {}).update(given)
    return build_distill_run(teacher, student, data_shape, classes, ctx, distill=distill,
                             distill_weights=distill_weights, distill_options=options,
                             **kwargs)
