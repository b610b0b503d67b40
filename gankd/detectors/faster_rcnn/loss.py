"""Faster R-CNN's detection loss, as GluonCV's ``train_faster_rcnn.py`` computes it.

RPN: sigmoid binary cross-entropy on the sampled anchors and smooth L1 (``rho = 1/9``) on
the positive ones; R-CNN: softmax cross-entropy on the sampled proposals and smooth L1
(``rho = 1``) on the positive ones, for their class. Each part is summed over an image and
divided by the image's sampled anchors (RPN) or proposals (R-CNN), which is GluonCV's
normalisation with one image per device (its default); the batch's loss is the mean
over images. (With several images per device GluonCV divides by the device's count
instead, so its loss would depend on how the batch is split.) The losses are GluonCV's
choice of Gluon losses, with its arguments.
"""
import mxnet as mx
from mxnet import gluon

__all__ = ['FasterRCNNLoss', 'LOSS_NAMES']

#: The parts of the loss, in the order they are logged.
LOSS_NAMES = ('RPN_Conf', 'RPN_SmoothL1', 'RCNN_CrossEntropy', 'RCNN_SmoothL1')


class FasterRCNNLoss(object):
    """The four parts of GluonCV's Faster R-CNN training loss, per device.

    Parameters
    ----------
    rpn_smoothl1_rho, rcnn_smoothl1_rho : float
        ``--rpn-smoothl1-rho`` and ``--rcnn-smoothl1-rho`` of ``train_faster_rcnn.py``.
    """

    def __init__(self, rpn_smoothl1_rho=1. / 9, rcnn_smoothl1_rho=1.):
        self.rpn_cls = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
        self.rpn_box = gluon.loss.HuberLoss(rho=rpn_smoothl1_rho)
        self.rcnn_cls = gluon.loss.SoftmaxCrossEntropyLoss()
        self.rcnn_box = gluon.loss.HuberLoss(rho=rcnn_smoothl1_rho)

    @staticmethod
    def _per_image(loss, size, counted):
        # Gluon's losses average over everything but the batch axis: times the number
        # of elements, over the image's sampled count, is GluonCV's sum / count.
        return loss * size / mx.nd.maximum(counted, 1)

    def __call__(self, rpn, rcnn, images):
        """Per-image-normalised losses of one device, each summed over its images and
        divided by ``images`` (the images of the whole batch).

        Parameters
        ----------
        rpn, rcnn : gankd.detectors.family.Predictions
            The stages' outputs; ``rpn.cls_logits`` holds ``[0, objectness]``; ``box_mask``
            ``(B, K, 4)`` is the weight of each box element in the smooth L1 loss.
        images : int
            Images of the whole batch over all devices.

        Returns
        -------
        dict of str -> NDArray
            The parts of :data:`LOSS_NAMES`, scalars.
        """
        score = rpn.cls_logits.slice_axis(axis=-1, begin=1, end=2).reshape((0, -1))
        sampled = rpn.cls_targets >= 0
        num = sampled.sum(axis=1)
        rpn_conf = self._per_image(self.rpn_cls(score, rpn.cls_targets, sampled),
                                   score.shape[1], num)
        rpn_l1 = self._per_image(self.rpn_box(rpn.box_preds, rpn.box_targets, rpn.box_mask),
                                 rpn.box_preds.shape[1] * 4, num)
        sampled = rcnn.cls_targets >= 0
        num = sampled.sum(axis=1)
        rcnn_ce = self._per_image(
            self.rcnn_cls(rcnn.cls_logits, rcnn.cls_targets, sampled.expand_dims(-1)),
            rcnn.cls_logits.shape[1], num)
        rcnn_l1 = self._per_image(self.rcnn_box(rcnn.box_preds, rcnn.box_targets, rcnn.box_mask),
                                  rcnn.box_preds.shape[1] * 4, num)
        return {name: value.sum() / float(images) for name, value in zip(
            LOSS_NAMES, (rpn_conf, rpn_l1, rcnn_ce, rcnn_l1))}
