"""SSD as a detector family: GluonCV's SSD, cut at its six feature maps.

Targets are GluonCV's anchor targets, made by the data pipeline
(:mod:`gankd.detectors.ssd.transforms`); the task loss is GluonCV's ``SSDMultiBoxLoss``
(:func:`gankd.detectors.ssd.model.ssd_loss`); a head run on other maps has the same
anchors, since SSD's anchors depend only on the maps' sizes.
"""
import mxnet as mx
from mxnet import autograd
from mxnet.gluon.utils import split_and_load

from ...errors import GankdError
from ..detector import Detector
from ..family import DetectorFamily, Predictions, register_family
from .model import (build_ssd, build_teacher, copy_head, feature_shapes, fresh_head, split_ssd,
                    ssd_config, ssd_loss)
from .student import build_student
from .transforms import train_loader, val_loader

__all__ = ['SSDFamily', 'SSD', 'split_batch']

STAGE = 'ssd'


def split_batch(data, ctx, even=True):
    """Split a batch over devices; with ``even=False`` a short batch uses fewer devices."""
    ctx = ctx[:max(1, min(len(ctx), data.shape[0]))]
    return split_and_load(data, ctx_list=ctx, batch_axis=0, even_split=even)


class SSDFamily(DetectorFamily):
    """GluonCV's SSD: presets of :func:`gankd.detectors.ssd.model.ssd_config`, the
    backbone ``ssd.features`` and :class:`gankd.detectors.ssd.model.SSDHead`.

    Batches are ``(images, cls_targets, box_targets)`` for training and
    ``(images, labels)`` for evaluation; a device's targets are its
    ``(cls_targets, box_targets)``.
    """
    name = 'ssd'
    loss_names = ('CrossEntropy', 'SmoothL1')

    def __init__(self):
        self.loss_fn = ssd_loss()

    # ----------------------------------------------------------------- building
    def config(self, network, data_shape, classes, dataset='voc', **options):
        if options:
            raise GankdError('SSD has no model option {!r}'.format(sorted(options)[0]))
        return ssd_config(network, data_shape, classes, dataset)

    def build(self, config, ctx, pretrained_base=False):
        return build_ssd(ctx=ctx, pretrained_base=pretrained_base, **config)

    def split(self, detector):
        return split_ssd(detector)

    def load_teacher(self, config, params, ctx):
        return build_teacher(config, params, ctx=ctx)

    def levels(self, backbone, data_shape, ctx):
        return feature_shapes(backbone, data_shape, ctx)

    def build_student(self, student, data_shape, teacher_levels, teacher, adapt='mismatch',
                      pretrained_base=False, ctx=None):
        return build_student(student, data_shape, teacher_levels, adapt=adapt,
                             teacher_name=teacher, pretrained_base=pretrained_base, ctx=ctx)

    def student_head(self, config, teacher_head, mode, ctx):
        head = fresh_head(config, ctx=ctx) if mode == 'fresh' else copy_head(
            config, teacher_head, ctx=ctx)
        if mode == 'frozen':
            head.collect_params().setattr('grad_req', 'null')
        return head

    def compose(self, backbone, head):
        return Detector(backbone, head)

    # ---------------------------------------------------------------- describing
    def describe_plain(self, config):
        return {'kind': 'ssd', 'family': self.name, 'name': 'ssd_{}_{}_{}'.format(
            config['data_shape'], config['base'], config['dataset']), 'ssd': config}

    def describe_student(self, student, teacher_config, teacher_levels, backbone, **extra):
        meta = {'kind': 'student', 'family': self.name,
                'name': 'ssd_{}_{}_gankd_from_{}'.format(teacher_config['data_shape'],
                                                         student, teacher_config['base']),
                'student': student, 'teacher': teacher_config,
                'teacher_shapes': [list(s) for s in teacher_levels],
                'adapted_levels': backbone.adapted_levels}
        meta.update(extra)
        return meta

    def from_description(self, meta, ctx):
        if meta.get('kind') == 'ssd':
            net = build_ssd(ctx=ctx, **meta['ssd'])
            backbone, head = split_ssd(net)
            return net, backbone, head
        if meta.get('kind') == 'student':
            # The student's head has the teacher's architecture; its weights come from the
            # file.
            _, head = split_ssd(build_ssd(ctx=ctx, **meta['teacher']))
            backbone = build_student(meta['student'], meta['teacher']['data_shape'],
                                     meta['teacher_shapes'],
                                     adapt=meta.get('adapt', 'mismatch'),
                                     teacher_name=meta['teacher']['base'], ctx=ctx)
            return Detector(backbone, head), backbone, head
        raise GankdError('unknown detector kind {!r} in its JSON file'.format(meta.get('kind')))

    def data_shape(self, meta):
        return int(self._config_of(meta)['data_shape'])

    def classes_of(self, meta):
        return self._config_of(meta)['classes']

    @staticmethod
    def _config_of(meta):
        # A plain SSD's preset, or the teacher's, whose head a student keeps.
        return meta['ssd' if meta.get('kind') == 'ssd' else 'teacher']

    # --------------------------------------------------------------------- data
    def train_loader(self, dataset, run, data_shape, batch_size, num_workers=0, augment='ssd',
                     num_parts=1, part_index=0, seed=0, shuffle=True):
        return train_loader(dataset, self.anchors(run.backbone, run.head, data_shape,
                                                  run.ctx[0]),
                            data_shape, batch_size, num_workers, augment=augment,
                            num_parts=num_parts, part_index=part_index, seed=seed,
                            shuffle=shuffle)

    def val_loader(self, dataset, data_shape, batch_size, num_workers=0):
        return val_loader(dataset, data_shape, batch_size, num_workers)

    def anchors(self, backbone, head, data_shape, ctx=mx.cpu()):
        """The head's anchors, on the CPU, for GluonCV's SSD training transform."""
        with autograd.train_mode():
            _, _, anchors = head(backbone(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx)))
        return anchors.as_in_context(mx.cpu())

    def unpack(self, batch, ctx):
        xs, cls_t, box_t = [split_batch(b, ctx) for b in batch]
        return xs, list(zip(cls_t, box_t))

    # ----------------------------------------------------------------- training
    def forward_train(self, head, maps, targets):
        cls_preds, box_preds, _ = head(maps)
        return [Predictions(STAGE, cls_preds, box_preds, targets[0], targets[1])]

    def task_loss(self, predictions, targets):
        # One call over all devices: SSDMultiBoxLoss normalises by the positives of the
        # whole batch, so the devices' losses add up to the batch's.
        sum_loss, cls_loss, box_loss = self.loss_fn(
            [p[0].cls_logits for p in predictions], [p[0].box_preds for p in predictions],
            [t[0] for t in targets], [t[1] for t in targets])
        return ([l.sum() for l in sum_loss],
                {'CrossEntropy': [l.sum() for l in cls_loss],
                 'SmoothL1': [l.sum() for l in box_loss]})

    def reference_predictions(self, head, maps, like):
        # SSD's anchors depend only on the maps' sizes: the same candidates as ``like``.
        cls_preds, box_preds, _ = head(maps)
        return [Predictions(p.stage, cls_preds, box_preds, p.cls_targets, p.box_targets)
                for p in like]

    # ---------------------------------------------------------------- inference
    def set_nms(self, head, nms_thresh=None, nms_topk=None):
        # None: GluonCV's eval_ssd.py settings.
        head.set_nms(nms_thresh=0.45 if nms_thresh is None else nms_thresh,
                     nms_topk=400 if nms_topk is None else nms_topk)

    def eval_inputs(self, batch, ctx):
        data = split_batch(batch[0], ctx, even=False)
        labels = split_batch(batch[1], ctx, even=False)
        return [(x, y.slice_axis(axis=-1, begin=0, end=4), y.slice_axis(axis=-1, begin=4, end=5),
                 y.slice_axis(axis=-1, begin=5, end=6) if y.shape[-1] > 5 else None)
                for x, y in zip(data, labels)]

    def predict(self, backbone, head, x):
        ids, scores, bboxes = head(backbone(x))
        return ids, scores, bboxes.clip(0, x.shape[2])


#: The SSD family, registered as ``'ssd'``.
SSD = register_family(SSDFamily())
