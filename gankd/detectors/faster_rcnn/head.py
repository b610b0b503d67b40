"""The RPN and R-CNN parts of a GluonCV Faster R-CNN as a block of their own.

:class:`FasterRCNNHead` takes the backbone's map (and the image batch, whose size the
RPN clips its proposals to) and computes what GluonCV's ``FasterRCNN.hybrid_forward``
computes after ``self.features``, with GluonCV's own blocks: the RPN, the proposal
sampler, RoIAlign or RoIPooling, the top features, the predictors and the R-CNN target
generator. Three changes, each for distillation or reproducibility, none to the
numbers of a training step:

* the R-CNN part is a method on given proposals (:meth:`FasterRCNNHead.rcnn`), so a
  teacher's head can be run on the student's sampled proposals;
* box predictions are computed for every sampled proposal (GluonCV computes them for
  the positive ones only; a dense layer gives each row the same values either way);
* proposals are sampled image by image, each after seeding the device's random
  generator from that image's seed (drawn by the data pipeline), so the samples of an
  image do not depend on the batch it is in, how the batch is split over devices, or
  whether training was resumed.
"""
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import Block
from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import (RCNNTargetGenerator,
                                                            RCNNTargetSampler)

__all__ = ['FasterRCNNHead', 'TrainOutputs']


class TrainOutputs(object):
    """The head's training-mode outputs on one device's batch.

    Attributes
    ----------
    rpn_score, rpn_box : NDArray
        ``(B, N, 1)`` objectness logits and ``(B, N, 4)`` box regression of every anchor
        (GluonCV's ``raw_rpn_score``, ``raw_rpn_box``).
    rois : NDArray
        ``(B, K, 4)`` the sampled proposals (corner coordinates, input pixels).
    cls_pred : NDArray
        ``(B, K, C + 1)`` class logits of the samples.
    box_pred : NDArray
        ``(B, K, C, 4)`` per-class box regression of the samples.
    cls_targets : NDArray
        ``(B, K)`` GluonCV's R-CNN class targets: class + 1, 0 background, -1 ignored.
    box_targets : NDArray
        ``(B, K, 4)`` the encoded box target of each sample, for its target class.
    box_mask : NDArray
        ``(B, K, 4)`` 1 where GluonCV's box loss counts the sample (its positives, at most
        ``num_sample * pos_ratio`` of them).
    """

    def __init__(self, **values):
        self.__dict__.update(values)


class FasterRCNNHead(Block):
    """RPN + R-CNN of a GluonCV ``FasterRCNN``; parameters shared with it.

    Parameters
    ----------
    net : gluoncv.model_zoo.rcnn.faster_rcnn.FasterRCNN
    ctx : list of mxnet.Context
        Devices the R-CNN target generator's constants are put on.
    """

    def __init__(self, net, ctx, **kwargs):
        super(FasterRCNNHead, self).__init__(**kwargs)
        self.rpn = net.rpn
        self.top_features = net.top_features
        if net.box_features is not None:
            self.box_features = net.box_features
        self.class_predictor = net.class_predictor
        self.box_predictor = net.box_predictor
        self.cls_decoder = net.cls_decoder
        self.box_decoder = net.box_decoder
        self.num_class = net.num_class
        self._roi_mode, self._roi_size, self._stride = net._roi_mode, net._roi_size, net._strides
        self.nms_thresh, self.nms_topk, self.post_nms = net.nms_thresh, net.nms_topk, net.post_nms
        self.force_nms = net.force_nms
        sampler = net.sampler
        self._num_sample = sampler._num_sample
        # GluonCV's sampler and target generator, for one image at a time; kept out of
        # the block's children so that they add nothing to saved parameters.
        object.__setattr__(self, '_sampler', RCNNTargetSampler(
            num_image=1, num_proposal=sampler._num_proposal, num_sample=sampler._num_sample,
            pos_iou_thresh=sampler._pos_iou_thresh, pos_ratio=sampler._max_pos / float(
                sampler._num_sample), max_num_gt=sampler._max_num_gt))
        generator = RCNNTargetGenerator(self.num_class, sampler._max_pos, 1)
        generator.initialize(ctx=list(ctx))
        object.__setattr__(self, '_target_generator', generator)
        self._rpn_training = None

    # ------------------------------------------------------------------ settings
    def set_nms(self, nms_thresh=0.3, nms_topk=400, post_nms=100, force_nms=False):
        """NMS settings of the detections at inference (GluonCV's ``set_nms``)."""
        self.nms_thresh, self.nms_topk, self.post_nms = nms_thresh, nms_topk, post_nms
        self.force_nms = force_nms

    # ---------------------------------------------------------------------- RPN
    def _rpn(self, img, feat):
        # GluonCV's RPN decides between its training and inference graphs in Python; a
        # hybridised RPN keeps the graph it was traced with, so retrace on a change.
        training = autograd.is_training()
        if training != self._rpn_training:
            self.rpn._clear_cached_op()
            self._rpn_training = training
        return self.rpn(mx.nd.zeros_like(img), feat)

    def rpn_raw(self, feat):
        """``(B, N, 1)`` objectness logits and ``(B, N, 4)`` box regression of every anchor
        (no proposals: what the RPN loss compares)."""
        x = self.rpn.conv1(feat)
        score = self.rpn.score(x).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 1))
        box = self.rpn.loc(x).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 4))
        return score, box

    # ------------------------------------------------------------------- R-CNN
    def rcnn(self, feat, rois):
        """Class logits ``(B, K, C + 1)`` and per-class box regression ``(B, K, C, 4)`` of
        proposals ``rois`` ``(B, K, 4)`` on the map ``feat``."""
        batch, num = rois.shape[0], rois.shape[1]
        with autograd.pause():
            ids = mx.nd.arange(0, batch, ctx=rois.context).repeat(num).reshape((-1, 1))
            roi = mx.nd.concat(ids, rois.reshape((-1, 4)), dim=-1).detach()
        if self._roi_mode == 'pool':
            pooled = mx.nd.ROIPooling(feat, roi, self._roi_size, 1. / self._stride)
        else:
            pooled = mx.nd.contrib.ROIAlign(feat, roi, self._roi_size, 1. / self._stride,
                                            sample_ratio=2)
        top = self.top_features(pooled) if self.top_features is not None else pooled
        if hasattr(self, 'box_features'):
            box_feat = self.box_features(top)
        else:
            box_feat = mx.nd.contrib.AdaptiveAvgPooling2D(top, output_size=1)
        cls_pred = self.class_predictor(box_feat).reshape((batch, num, self.num_class + 1))
        box_pred = self.box_predictor(box_feat).reshape((batch, num, self.num_class, 4))
        return cls_pred, box_pred

    def _sample(self, rpn_box, rpn_score, gt_boxes, seeds, num_gt):
        """GluonCV's sampler image by image, each after seeding the device's generator."""
        rois, samples, matches = [], [], []
        ctx = rpn_box.context
        for i, (seed, count) in enumerate(zip(seeds, num_gt)):
            mx.random.seed(int(seed), ctx=ctx)
            # The image's own boxes (at least one row: a padding row is ignored by the
            # sampler, and lets an image without objects sample negatives only).
            gt = gt_boxes[i:i + 1, :max(1, int(count))]
            r, s, m = self._sampler(rpn_box[i:i + 1], rpn_score[i:i + 1], gt)
            rois.append(r)
            samples.append(s)
            matches.append(m)
        return rois, samples, matches

    def forward_train(self, feat, img, gt_label, seeds, num_gt):
        """The training forward of GluonCV's ``FasterRCNN`` after its features.

        Parameters
        ----------
        feat : NDArray
            ``(B, C, H, W)`` the backbone's map.
        img : NDArray
            ``(B, 3, H_in, W_in)`` the (padded) images.
        gt_label : NDArray
            ``(B, M, >=5)`` boxes and class ids, padded with -1.
        seeds : list of int
            Per image, the seed of its proposal sampling.
        num_gt : list of int
            Per image, its number of boxes (the first rows of ``gt_label``).

        Returns
        -------
        TrainOutputs
        """
        rpn_score, rpn_box, rpn_score_raw, rpn_box_raw, _ = self._rpn(img, feat)
        gt_box = gt_label.slice_axis(axis=-1, begin=0, end=4)
        gt_id = gt_label.slice_axis(axis=-1, begin=4, end=5)
        rois, samples, matches = self._sample(rpn_box, rpn_score, gt_box, seeds, num_gt)
        cls_targets, box_targets, box_mask = [], [], []
        with autograd.pause():
            for i, (r, s, m) in enumerate(zip(rois, samples, matches)):
                count = max(1, int(num_gt[i]))
                c, b, w, idx = self._target_generator(
                    r, s, m, gt_id[i:i + 1, :count], gt_box[i:i + 1, :count])
                cls_targets.append(c)
                # GluonCV's targets are per positive slot (B, P, C, 4), for the slots'
                # proposals ``idx``; put each back on its proposal, for its own class.
                slot = mx.nd.one_hot(idx, r.shape[1])  # (1, P, K)
                per_slot = (b * w).sum(axis=2)  # (1, P, 4)
                counted = w.max(axis=(2, 3))  # (1, P)
                box_targets.append(mx.nd.batch_dot(slot, per_slot, transpose_a=True))
                box_mask.append(mx.nd.batch_dot(slot, counted.expand_dims(-1),
                                                transpose_a=True).reshape((1, -1)))
            rois = mx.nd.concat(*rois, dim=0)
            cls_targets = mx.nd.concat(*cls_targets, dim=0)
            box_targets = mx.nd.concat(*box_targets, dim=0)
            box_mask = (mx.nd.concat(*box_mask, dim=0) > 0).expand_dims(-1).broadcast_like(
                box_targets)
        cls_pred, box_pred = self.rcnn(feat, rois)
        return TrainOutputs(rpn_score=rpn_score_raw, rpn_box=rpn_box_raw, rois=rois,
                            cls_pred=cls_pred, box_pred=box_pred, cls_targets=cls_targets,
                            box_targets=box_targets, box_mask=box_mask)

    # ---------------------------------------------------------------- inference
    def forward(self, feat, img):
        """Detections ``(ids, scores, bboxes)`` of one image, as GluonCV's ``FasterRCNN``
        gives them at inference (boxes in the input's pixels, not clipped)."""
        if isinstance(feat, (list, tuple)):
            feat = feat[0]
        if img.shape[0] != 1:
            raise ValueError('FasterRCNNHead predicts one image at a time, got {}'.format(
                img.shape[0]))
        _, rpn_box = self._rpn(img, feat)
        cls_pred, box_pred = self.rcnn(feat, rpn_box)
        F = mx.nd
        # From here on GluonCV's inference code, for its batch of one image.
        cls_ids, scores = self.cls_decoder(F.softmax(cls_pred, axis=-1))
        cls_ids = cls_ids.transpose((0, 2, 1)).reshape((0, 0, 0, 1))[0]
        scores = scores.transpose((0, 2, 1)).reshape((0, 0, 0, 1))[0]
        box_pred = box_pred.transpose((0, 2, 1, 3))[0]
        bbox = self.box_decoder(box_pred, rpn_box)
        res = F.concat(*[cls_ids, scores, bbox], dim=-1)
        if self.force_nms:
            res = res.reshape((1, -1, 0))
        res = F.contrib.box_nms(
            res, overlap_thresh=self.nms_thresh, topk=self.nms_topk, valid_thresh=0.0001,
            id_index=0, score_index=1, coord_start=2, force_suppress=self.force_nms)
        result = res.reshape((-3, 0)).expand_dims(0)
        ids = F.slice_axis(result, axis=-1, begin=0, end=1)
        scores = F.slice_axis(result, axis=-1, begin=1, end=2)
        bboxes = F.slice_axis(result, axis=-1, begin=2, end=6)
        return ids, scores, bboxes
