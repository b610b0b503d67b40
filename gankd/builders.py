"""Assembling a :class:`gankd.engine.Run` for plain SSD training or for GAN-KD."""
import mxnet as mx
from mxnet import autograd, gluon

from .detector import Detector
from .distill import AdversarialTerm
from .engine import Run
from .errors import GankdError
from .ssd import build_ssd, build_teacher, copy_head, feature_shapes, split_ssd, ssd_config
from .student import build_student

__all__ = ['contexts', 'build_plain_run', 'build_gankd_run', 'train_anchors']


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


def _trainer(params, optimizer, lr, momentum, wd, kvstore):
    """SGD with momentum as GluonCV's train_ssd.py, or Adam (``momentum`` unused)."""
    if optimizer == 'sgd':
        opt = {'learning_rate': lr, 'wd': wd, 'momentum': momentum}
    elif optimizer == 'adam':
        opt = {'learning_rate': lr, 'wd': wd}
    else:
        raise GankdError("--optimizer must be 'sgd' or 'adam', got {!r}".format(optimizer))
    return gluon.Trainer(params, optimizer, opt, kvstore=kvstore)


def build_plain_run(network, data_shape, classes, ctx, dataset='voc', lr=1e-3, momentum=0.9,
                    wd=5e-4, kvstore='device', optimizer='sgd', pretrained_base=False):
    """A plain SSD (teachers and no-distillation baselines).

    Returns
    -------
    Run
    """
    cfg = ssd_config(network, data_shape, classes, dataset)
    net = build_ssd(ctx=ctx, pretrained_base=pretrained_base, **cfg)
    backbone, head = split_ssd(net)
    backbone.hybridize(static_alloc=True, static_shape=True)
    head.hybridize(static_alloc=True, static_shape=True)
    meta = {'kind': 'ssd', 'name': 'ssd_{}_{}_{}'.format(data_shape, network, dataset),
            'ssd': cfg}
    return Run(ctx=ctx, backbone=backbone, head=head, save_block=net, meta=meta,
               classes=list(classes),
               trainer=_trainer(net.collect_params(), optimizer, lr, momentum, wd, kvstore))


def build_gankd_run(teacher, student, data_shape, classes, ctx, teacher_params=None,
                    dataset='voc', lr=1e-3, momentum=0.9, wd=5e-4, lr_d=5e-4, clip=0.03,
                    n_critic=1, adv_weight=1.0, adapt='mismatch', kvstore='device',
                    optimizer='sgd', critic_norm='rms', critic_bn=True,
                    pretrained_base=False):
    """A GAN-KD run: frozen teacher backbone, student + adapters, head copied from the
    teacher and trained, six critics.

    Returns
    -------
    Run
    """
    tcfg = ssd_config(teacher, data_shape, classes, dataset)
    teacher_net = build_teacher(tcfg, teacher_params, ctx=ctx)
    t_backbone, t_head = split_ssd(teacher_net)
    t_shapes = feature_shapes(t_backbone, data_shape, ctx[0])
    # The teacher never changes: no gradient buffers, never in a Trainer.
    t_backbone.collect_params().setattr('grad_req', 'null')
    t_backbone.hybridize(static_alloc=True, static_shape=True)
    t_head.collect_params().setattr('grad_req', 'null')
    t_head.hybridize(static_alloc=True, static_shape=True)
    head = copy_head(tcfg, t_head, ctx=ctx)
    backbone = build_student(student, data_shape, t_shapes, adapt=adapt, teacher_name=teacher,
                             pretrained_base=pretrained_base, ctx=ctx)
    backbone.hybridize(static_alloc=True, static_shape=True)
    head.hybridize(static_alloc=True, static_shape=True)
    model = Detector(backbone, head)
    meta = {'kind': 'student', 'name': 'ssd_{}_{}_gankd_from_{}'.format(data_shape, student,
                                                                       teacher),
            'student': student, 'teacher': tcfg, 'teacher_shapes': [list(s) for s in t_shapes],
            'adapt': adapt, 'adapted_levels': backbone.adapted_levels,
            'teacher_params': teacher_params}
    term = AdversarialTerm(t_shapes, ctx, weight=adv_weight, lr=lr_d, clip=clip,
                           n_critic=n_critic, kvstore=kvstore,
                           input_norm=critic_norm == 'rms', critic_bn=critic_bn)
    return Run(ctx=ctx, backbone=backbone, head=head, save_block=model, meta=meta,
               classes=list(classes), teacher=t_backbone, terms=[term], teacher_head=t_head,
               trainer=_trainer(model.collect_params(), optimizer, lr, momentum, wd, kvstore))


def train_anchors(run, data_shape):
    """The head's anchors, on the CPU, for GluonCV's SSD training transform."""
    with autograd.train_mode():
        _, _, anchors = run.head(run.backbone(
            mx.nd.zeros((1, 3, data_shape, data_shape), ctx=run.ctx[0])))
    return anchors.as_in_context(mx.cpu())
