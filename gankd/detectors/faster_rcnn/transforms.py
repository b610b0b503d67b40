"""Faster R-CNN's data pipeline: GluonCV's transforms, RPN targets and batching.

Training images are resized (short side, longest side bounded) and flipped by GluonCV's
``FasterRCNNDefaultTrainTransform``, which also makes the RPN's anchor targets; batches
are padded per device by GluonCV's ``FasterRCNNTrainBatchify``, as GluonCV's
``train_faster_rcnn.py`` does, so images keep their aspect ratio and sizes vary. Two
additions: an image without objects gets all-negative RPN targets (GluonCV's generator
cannot take zero boxes), and every image carries a seed for its proposal sampling (see
:mod:`gankd.detectors.faster_rcnn.head`). Evaluation batches are lists of single images
(GluonCV's ``Append``), each with its scale back to the original size.
"""
from types import SimpleNamespace

import mxnet as mx
import numpy as np
from gluoncv.data.batchify import Append, FasterRCNNTrainBatchify, Tuple
from gluoncv.data.transforms.presets.rcnn import (FasterRCNNDefaultTrainTransform,
                                                  FasterRCNNDefaultValTransform)

from ...data.loaders import QuietWorkersLoader, TrainLoader
from ...errors import GankdError
from ..ssd.transforms import _objects

__all__ = ['FasterRCNNTrainTransform', 'TrainBatchify', 'train_loader', 'val_loader',
           'SEED_RANGE', 'target_net']

#: Sampling seeds are drawn below 2 ** 24, so a float32 batch holds them exactly.
SEED_RANGE = 2 ** 24


class _BackgroundRPNTargets(object):
    """GluonCV's RPN target generator, with all-negative targets for an image without
    objects.

    GluonCV's generator fails on zero boxes (``box_iou`` of no boxes), and its sampler
    would mark every anchor positive against a dummy box (each box gets its best anchors,
    however poor). Without objects every anchor inside the image is negative; as
    GluonCV's sampler does, at most ``num_sample`` of them are kept, drawn from NumPy's
    generator, and the rest ignored.
    """

    def __init__(self, generator):
        self._generator = generator

    def __call__(self, bbox, anchor, width, height):
        if bbox.shape[0]:
            return self._generator(bbox, anchor, width, height)
        a = anchor.asnumpy()
        inside = (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] < width) & (a[:, 3] < height)
        negative = np.flatnonzero(inside)
        limit = self._generator._sampler._num_sample
        if negative.size > limit:
            negative = np.random.choice(negative, size=limit, replace=False)
        cls_target = np.full(a.shape[0], -1.0, dtype='float32')
        cls_target[negative] = 0.0
        box = np.zeros(a.shape, dtype='float32')
        return mx.nd.array(cls_target), mx.nd.array(box), mx.nd.array(box)


class FasterRCNNTrainTransform(FasterRCNNDefaultTrainTransform):
    """GluonCV's Faster R-CNN training transform for images with or without objects,
    returning also the image's sampling seed (a float, drawn after the augmentation)."""

    @property
    def _target_generator(self):
        generator = FasterRCNNDefaultTrainTransform._target_generator.fget(self)
        return None if generator is None else _BackgroundRPNTargets(generator)

    def __call__(self, src, label):
        out = super(FasterRCNNTrainTransform, self).__call__(src, _objects(label))
        return tuple(out) + (np.float32(np.random.randint(0, SEED_RANGE)),)


class TrainBatchify(FasterRCNNTrainBatchify):
    """GluonCV's per-device padding of images, labels and RPN targets, plus the seeds.

    Returns
    -------
    tuple
        Per device (tuples of ``num_shards``): images, labels (padded with -1), RPN class
        targets, box targets, box masks, and the images' seeds.
    """

    def __call__(self, data):
        seeds = np.array([d[5] for d in data], dtype='float32')
        out = super(TrainBatchify, self).__call__([d[:5] for d in data])
        images, labels = out[0], out[1]
        if isinstance(images, mx.nd.NDArray):  # one device: GluonCV's Pad gives no list
            images, labels = [images], [labels]
        seeds = tuple(mx.nd.array(s) for s in np.array_split(seeds, self._num_shards))
        return (tuple(images), tuple(labels)) + tuple(out[2:]) + (seeds,)


def target_net(backbone, head):
    """What GluonCV's transform and batchify read from a network: the RPN's anchors and
    the features' symbolic shape (the backbone's map)."""
    return SimpleNamespace(rpn=head.rpn, features=lambda x: backbone(x)[0])


def train_loader(dataset, net, short, max_size, batch_size, num_devices=1, num_workers=0,
                 seed=0, shuffle=True, num_parts=1, part_index=0, rpn_num_sample=256):
    """GluonCV's Faster R-CNN training pipeline as reproducible, resumable batches
    (:class:`gankd.data.loaders.TrainLoader`).

    Parameters
    ----------
    dataset : VOC- or COCO-layout dataset
    net : object
        :func:`target_net` of the backbone and head being trained.
    short, max_size : int
        Resizing (GluonCV's ``short`` and ``max_size``).
    batch_size : int
        Images per batch over all devices.
    num_devices : int
        Devices the batch is padded for (one shard each).
    num_parts, part_index : int
        Distributed training: this worker's share of each epoch.
    rpn_num_sample : int
        Anchors sampled per image for the RPN loss (GluonCV's default 256).
    """
    if len(dataset) // num_parts < batch_size:
        raise GankdError('{} training images{} leave fewer than one batch of {}{}'.format(
            len(dataset), ' split over {} workers'.format(num_parts) if num_parts > 1 else '',
            batch_size, ' per worker' if num_parts > 1 else ''))
    transform = FasterRCNNTrainTransform(short, max_size, net, num_sample=rpn_num_sample)
    return TrainLoader(dataset, transform, batch_size, TrainBatchify(net, num_devices), seed,
                       shuffle, num_parts, part_index, num_workers)


def val_loader(dataset, short, max_size, batch_size, num_workers=0):
    """Every image once, in order, each resized alone: lists of ``(1, 3, H, W)`` images,
    ``(1, M, 6)`` labels in the resized image's pixels, and scales back to the original
    (GluonCV's validation pipeline)."""
    transform = FasterRCNNDefaultValTransform(short, max_size)
    return QuietWorkersLoader(
        dataset.transform(transform), batch_size, shuffle=False,
        batchify_fn=Tuple(*[Append() for _ in range(3)]), last_batch='keep',
        num_workers=num_workers)
