"""Faster R-CNN as a detector family: GluonCV's Faster R-CNN, cut at the RPN's input.

Two stages of :class:`gankd.detectors.family.Predictions`:

* ``'rpn'``: every anchor. The RPN scores objectness with one sigmoid logit ``s``; its
  ``cls_logits`` are the two-class logits ``[0, s]``, whose softmax is
  ``[1 - sigmoid(s), sigmoid(s)]``, so softmax-based terms see the RPN's own
  probabilities. Targets are GluonCV's anchor targets (1 sampled positive, 0 sampled
  negative, -1 not sampled or padding); boxes are GluonCV's RPN encoding.
* ``'rcnn'``: the proposals sampled for the R-CNN loss. ``box_preds`` are each sample's
  regression for its target class (for background and ignored samples, class 1's,
  which no loss reads); targets are GluonCV's R-CNN targets.

The teacher's predictions for soft, bounded and crosshead, and the student's maps
through the teacher's head for crosshead and di, are taken on the student's own anchors
and sampled proposals (:meth:`FasterRCNNFamily.reference_predictions`).
"""
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import Block

from ...errors import GankdError
from ..family import DetectorFamily, Predictions, register_family
from .loss import LOSS_NAMES, FasterRCNNLoss
from .model import (ZOO_PRESETS, build_faster_rcnn, build_teacher, copy_head, feature_shapes,
                    frcnn_config, fresh_head, split_faster_rcnn)
from .student import map_shapes, build_student, probe_features
from .transforms import target_net, train_loader, val_loader

__all__ = ['FasterRCNNFamily', 'FASTER_RCNN', 'StagePredictions', 'Targets',
           'FasterRCNNDetector']


@dataclass
class StagePredictions(Predictions):
    """:class:`Predictions` with what Faster R-CNN's loss and reference runs also need.

    Attributes
    ----------
    box_mask : NDArray
        ``(B, K, 4)`` weight of every box element in the stage's smooth L1 loss.
    rois : NDArray or None
        ``(B, K, 4)`` the sampled proposals (``'rcnn'`` only).
    """
    box_mask: Any = None
    rois: Any = None


#: One device's training targets: the (padded) images, labels ``(B, M, 6)`` padded
#: with -1, GluonCV's RPN targets, and per image its sampling seed and number of boxes.
Targets = namedtuple('Targets', 'image label rpn_cls rpn_box rpn_mask seeds num_gt')


class FasterRCNNDetector(Block):
    """A backbone in front of a :class:`FasterRCNNHead`: a student detector.

    ``net(x)`` gives the detections of one image, as GluonCV's ``FasterRCNN`` does.
    """

    def __init__(self, backbone, head, **kwargs):
        super(FasterRCNNDetector, self).__init__(**kwargs)
        self.backbone = backbone
        self.head = head

    def forward(self, x):
        return self.head(self.backbone(x), x)


def class_boxes(box_pred, cls_targets):
    """``(B, K, 4)``: each sample's box regression for its target class (class 1 for
    background and ignored samples)."""
    classes = mx.nd.maximum(cls_targets - 1, 0)
    one_hot = mx.nd.one_hot(classes, box_pred.shape[2]).expand_dims(-1)
    return (box_pred * one_hot).sum(axis=2)


def two_class(score):
    """``[0, s]`` logits from ``(B, N, 1)`` sigmoid logits ``s``."""
    return mx.nd.concat(mx.nd.zeros_like(score), score, dim=-1)


class FasterRCNNFamily(DetectorFamily):
    """GluonCV's Faster R-CNN: presets of
    :func:`gankd.detectors.faster_rcnn.model.frcnn_config`, the backbone up to ``layer3``
    and :class:`gankd.detectors.faster_rcnn.head.FasterRCNNHead`.

    Batches come from :mod:`gankd.detectors.faster_rcnn.transforms`; a device's targets
    are :data:`Targets`.
    """
    name = 'faster_rcnn'
    loss_names = LOSS_NAMES
    # GluonCV's train_faster_rcnn.py clips every gradient element to [-5, 5].
    optimizer_options = {'clip_gradient': 5.0}
    # One image per device (GluonCV's setting): BatchNorm in the critics would normalise a
    # single image's 1x1 activations to a constant (no gradient for the student).
    critic_bn = False

    def __init__(self):
        self.loss_fn = FasterRCNNLoss()

    # ----------------------------------------------------------------- building
    def config(self, network, data_shape, classes, dataset='voc', **options):
        known = ('roi_mode', 'max_size', 'num_sample', 'roi_size')
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise GankdError('Faster R-CNN has no model option {!r}; its options: {}'.format(
                unknown[0], ', '.join(known)))
        return frcnn_config(network, data_shape, classes, dataset, **options)

    def build(self, config, ctx, pretrained_base=False):
        return build_faster_rcnn(ctx=ctx, pretrained_base=pretrained_base, **config)

    def split(self, detector):
        return split_faster_rcnn(detector)

    def load_teacher(self, config, params, ctx):
        return build_teacher(config, params, ctx=ctx)

    def levels(self, backbone, data_shape, ctx):
        return feature_shapes(backbone, data_shape, ctx)

    def build_student(self, student, data_shape, teacher_levels, teacher, adapt='mismatch',
                      pretrained_base=False, ctx=None):
        short = data_shape[0] if isinstance(data_shape, (list, tuple)) else int(data_shape)
        # The teacher's map at every probe size, from its architecture (weights do not
        # change sizes); the square one is the teacher's own.
        shapes = map_shapes(probe_features(ZOO_PRESETS.get(teacher, teacher)), short)
        shapes = [tuple(teacher_levels[0])] + shapes[1:]
        return build_student(student, short, shapes, adapt=adapt, frozen_bn=pretrained_base,
                             pretrained_base=pretrained_base, teacher_name=teacher,
                             ctx=ctx or mx.cpu())

    def student_head(self, config, teacher_head, mode, ctx):
        head = fresh_head(config, ctx=ctx) if mode == 'fresh' else copy_head(
            config, teacher_head, ctx=ctx)
        if mode == 'frozen':
            head.collect_params().setattr('grad_req', 'null')
        return head

    def compose(self, backbone, head):
        return FasterRCNNDetector(backbone, head)

    # ---------------------------------------------------------------- describing
    @staticmethod
    def _name(config):
        return 'faster_rcnn_{}_{}_{}_{}'.format(config['base'], config['dataset'],
                                               config['short'], config['roi_mode'])

    def describe_plain(self, config):
        return {'kind': 'faster_rcnn', 'family': self.name, 'name': self._name(config),
                'faster_rcnn': config}

    def describe_student(self, student, teacher_config, teacher_levels, backbone, **extra):
        meta = {'kind': 'student', 'family': self.name,
                'name': 'faster_rcnn_{}_gankd_from_{}_{}_{}'.format(
                    student, teacher_config['base'], teacher_config['short'],
                    teacher_config['roi_mode']),
                'student': student, 'teacher': teacher_config,
                'teacher_shapes': [list(s) for s in teacher_levels],
                'teacher_probe_shapes': [list(s) for s in backbone.teacher_probe_shapes],
                'adapted_levels': backbone.adapted_levels,
                'student_frozen_bn': bool(backbone.frozen_bn)}
        meta.update(extra)
        return meta

    def from_description(self, meta, ctx):
        if meta.get('kind') == 'faster_rcnn':
            net = build_faster_rcnn(ctx=ctx, **meta['faster_rcnn'])
            backbone, head = split_faster_rcnn(net, _ctx_list(ctx))
            return net, backbone, head
        if meta.get('kind') == 'student':
            cfg = meta['teacher']
            _, head = split_faster_rcnn(build_faster_rcnn(ctx=ctx, **cfg), _ctx_list(ctx))
            backbone = build_student(meta['student'], cfg['short'],
                                     [tuple(s) for s in meta['teacher_probe_shapes']],
                                     adapt=meta.get('adapt', 'mismatch'),
                                     frozen_bn=meta.get('student_frozen_bn', False),
                                     teacher_name=cfg['base'], ctx=ctx)
            return FasterRCNNDetector(backbone, head), backbone, head
        raise GankdError('unknown detector kind {!r} in its JSON file'.format(meta.get('kind')))

    def data_shape(self, meta):
        cfg = self._config_of(meta)
        return (int(cfg['short']), int(cfg['max_size']))

    def metric_shape(self, meta):
        # Detections are scaled back to each image's own size (GluonCV's evaluation).
        return None

    def classes_of(self, meta):
        return self._config_of(meta)['classes']

    @staticmethod
    def _config_of(meta):
        return meta['faster_rcnn' if meta.get('kind') == 'faster_rcnn' else 'teacher']

    # --------------------------------------------------------------------- data
    def train_loader(self, dataset, run, data_shape, batch_size, num_workers=0, augment=None,
                     num_parts=1, part_index=0, seed=0, shuffle=True):
        if augment not in (None, 'gluoncv'):
            raise GankdError("Faster R-CNN trains with GluonCV's own augmentation (resize "
                             "and flip); --augment {} is SSD's".format(augment))
        short, max_size = self.data_shape(run.meta)
        return train_loader(dataset, target_net(run.backbone, run.head), short, max_size,
                            batch_size, len(run.ctx), num_workers, seed=seed,
                            shuffle=shuffle, num_parts=num_parts, part_index=part_index)

    def val_loader(self, dataset, data_shape, batch_size, num_workers=0):
        if isinstance(data_shape, (list, tuple)):
            short, max_size = data_shape
        else:
            short, max_size = int(data_shape), int(round(int(data_shape) * 5 / 3.0))
        return val_loader(dataset, short, max_size, batch_size, num_workers)

    def batch_size(self, batch):
        return sum(x.shape[0] for x in batch[0])

    def unpack(self, batch, ctx):
        images, labels, rpn_cls, rpn_box, rpn_mask, seeds = batch
        if len(images) != len(ctx):
            raise GankdError('a batch padded for {} devices cannot train on {}'.format(
                len(images), len(ctx)))
        xs, targets = [], []
        for c, x, y, cls_t, box_t, mask_t, s in zip(ctx, images, labels, rpn_cls, rpn_box,
                                                    rpn_mask, seeds):
            if y.shape[1] == 0:
                # No image of the device has objects: one padding row (MXNet 1.x takes a
                # zero-size axis for an unknown one).
                y = -mx.nd.ones((y.shape[0], 1, y.shape[2]), ctx=y.context)
            num_gt = (y.slice_axis(axis=-1, begin=4, end=5) >= 0).sum(axis=(1, 2))
            x = x.as_in_context(c)
            xs.append(x)
            targets.append(Targets(x, y.as_in_context(c), cls_t.as_in_context(c),
                                   box_t.as_in_context(c), mask_t.as_in_context(c),
                                   [int(v) for v in s.asnumpy()],
                                   [int(v) for v in num_gt.asnumpy()]))
        return xs, targets

    # ----------------------------------------------------------------- training
    def forward_train(self, head, maps, targets):
        t = targets
        out = head.forward_train(maps[0], t.image, t.label, t.seeds, t.num_gt)
        return [StagePredictions('rpn', two_class(out.rpn_score), out.rpn_box, t.rpn_cls,
                                 t.rpn_box, box_mask=t.rpn_mask),
                StagePredictions('rcnn', out.cls_pred, class_boxes(out.box_pred,
                                                                   out.cls_targets),
                                 out.cls_targets, out.box_targets, box_mask=out.box_mask,
                                 rois=out.rois)]

    def task_loss(self, predictions, targets):
        images = sum(p[0].cls_logits.shape[0] for p in predictions)
        parts = [self.loss_fn(p[0], p[1], images) for p in predictions]
        # GluonCV's total: RPN and R-CNN parts with weight 1 each (no mixup).
        objectives = [d['RPN_Conf'] + d['RPN_SmoothL1'] + d['RCNN_CrossEntropy'] +
                      d['RCNN_SmoothL1'] for d in parts]
        return objectives, {n: [d[n] for d in parts] for n in LOSS_NAMES}

    def reference_predictions(self, head, maps, like):
        """``head`` on ``maps`` with ``like``'s anchors and sampled proposals.

        The head runs with its BatchNorm in inference mode (running statistics, none
        updated): it is the frozen teacher's, whose predictions are those of the trained
        teacher. Gradients still reach ``maps`` when called under ``autograd.record``.
        """
        rpn_like, rcnn_like = like
        with autograd.predict_mode():
            score, box = head.rpn_raw(maps[0])
            cls_pred, box_pred = head.rcnn(maps[0], rcnn_like.rois)
        return [StagePredictions('rpn', two_class(score), box, rpn_like.cls_targets,
                                 rpn_like.box_targets, box_mask=rpn_like.box_mask),
                StagePredictions('rcnn', cls_pred, class_boxes(box_pred, rcnn_like.cls_targets),
                                 rcnn_like.cls_targets, rcnn_like.box_targets,
                                 box_mask=rcnn_like.box_mask, rois=rcnn_like.rois)]

    # ---------------------------------------------------------------- inference
    def set_nms(self, head, nms_thresh=None, nms_topk=None):
        # None keeps the preset's (GluonCV's 0.3 and 400).
        head.set_nms(nms_thresh=head.nms_thresh if nms_thresh is None else nms_thresh,
                     nms_topk=head.nms_topk if nms_topk is None else nms_topk)

    def eval_inputs(self, batch, ctx):
        # One image per entry (GluonCV predicts one image at a time), spread over the
        # devices; ground truth padded with -1 rows to the batch's most boxes, which the
        # VOC metric skips, so that it can stack the batch's images.
        images, labels, scales = batch
        most = max(y.shape[1] for y in labels)
        inputs = []
        for i, (x, y, scale) in enumerate(zip(images, labels, scales)):
            scale = float(scale.reshape((-1,)).asscalar())
            if y.shape[1] < most:
                y = mx.nd.concat(y, -mx.nd.ones((1, most - y.shape[1], y.shape[2]),
                                                 ctx=y.context), dim=1)
            inputs.append(((x.as_in_context(ctx[i % len(ctx)]), scale),
                           y.slice_axis(axis=-1, begin=0, end=4) * scale,
                           y.slice_axis(axis=-1, begin=4, end=5),
                           y.slice_axis(axis=-1, begin=5, end=6) if y.shape[-1] > 5 else None))
        return inputs

    def predict(self, backbone, head, x):
        # GluonCV's validation: boxes clipped to the resized image, then scaled back to
        # the original image (the ground truth is scaled the same way).
        from gluoncv.nn.bbox import BBoxClipToImage
        image, scale = x
        ids, scores, bboxes = head(backbone(image), image)
        return ids, scores, BBoxClipToImage()(bboxes, image) * scale


def _ctx_list(ctx):
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]


#: The Faster R-CNN family, registered as ``'faster_rcnn'``.
FASTER_RCNN = register_family(FasterRCNNFamily())
