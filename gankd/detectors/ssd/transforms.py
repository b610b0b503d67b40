"""SSD's data pipeline: GluonCV's SSD augmentation and anchor targets, for images with or
without objects, and the loaders of training and evaluation batches."""
import mxnet as mx
import numpy as np
from gluoncv.data.batchify import Pad, Stack, Tuple
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform, SSDDefaultValTransform

from ...data.loaders import QuietWorkersLoader, TrainLoader
from ...errors import GankdError

__all__ = ['SSDTrainTransform', 'LightSSDTrainTransform', 'AUGMENTATIONS', 'train_loader',
           'val_loader']


def _objects(label):
    """The rows of a label that are boxes: GluonCV's COCO reader gives an image without
    any a dummy row of -1."""
    label = np.asarray(label)
    return label[label[:, 4] >= 0] if label.size else label.reshape((0, 6))


class _BackgroundTargets(object):
    """GluonCV's SSD target generator, with all-negative targets for an image without
    objects.

    The generator cannot take zero boxes (``box_iou`` fails to infer the shape
    ``(1, 0, 4)``), and a dummy box would not do: its bipartite matching gives every box,
    however far, one anchor, whose box target is then infinite. An image without objects
    gets what the generator gives every anchor matched to no box: class 0 (background),
    box targets and masks 0.
    """

    def __init__(self, generator):
        self._generator = generator

    def __call__(self, anchors, cls_preds, gt_boxes, gt_ids):
        if gt_boxes.size:
            return self._generator(anchors, cls_preds, gt_boxes, gt_ids)
        num_anchors = anchors.size // 4
        box = mx.nd.zeros((1, num_anchors, 4))
        return mx.nd.zeros((1, num_anchors)), box, box.copy()


class SSDTrainTransform(SSDDefaultTrainTransform):
    """GluonCV's SSD augmentation and target generation, for images with or without
    objects (these train as background: every anchor negative)."""

    @property
    def _target_generator(self):
        generator = SSDDefaultTrainTransform._target_generator.fget(self)
        return None if generator is None else _BackgroundTargets(generator)

    def __call__(self, src, label):
        return super(SSDTrainTransform, self).__call__(src, _objects(label))


class LightSSDTrainTransform(SSDTrainTransform):
    """Resize and random flip only, with GluonCV's SSD target generation.

    GluonCV's default SSD augmentation (colour jitter, zoom-out up to 4x, constrained
    crops) is what long VOC schedules need, but it shrinks objects that a network trained
    from scratch for a few minutes on a CPU cannot yet find; the quick start uses this.
    """

    def __call__(self, src, label):
        label = _objects(label)
        h, w, _ = src.shape
        img = timage.imresize(src, self._width, self._height, interp=1)
        bbox = tbbox.resize(label, (w, h), (self._width, self._height))
        img, flips = timage.random_flip(img, px=0.5)
        bbox = tbbox.flip(bbox, (self._width, self._height), flip_x=flips[0])
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        cls_targets, box_targets, _ = self._target_generator(
            self._anchors, None, mx.nd.array(bbox[np.newaxis, :, :4]),
            mx.nd.array(bbox[np.newaxis, :, 4:5]))
        return img, cls_targets[0], box_targets[0]


AUGMENTATIONS = {'ssd': SSDTrainTransform, 'light': LightSSDTrainTransform}


def train_loader(dataset, anchors, data_shape, batch_size, num_workers=0, shuffle=True,
                 augment='ssd', num_parts=1, part_index=0, seed=0):
    """GluonCV's SSD training pipeline: augmentation and anchor targets, batches of
    ``(images, cls_targets, box_targets)``, reproducible from ``seed`` and the epoch
    (:class:`TrainLoader`).

    ``augment``: ``'ssd'`` (GluonCV's full augmentation) or ``'light'`` (resize + flip).
    ``num_parts``, ``part_index``: distributed training; this worker reads its share of
    each epoch's order.
    """
    if augment not in AUGMENTATIONS:
        raise GankdError('--augment must be one of {}, got {!r}'.format(sorted(AUGMENTATIONS),
                                                                       augment))
    if len(dataset) // num_parts < batch_size:
        raise GankdError('{} training images{} leave fewer than one batch of {}{}'.format(
            len(dataset), ' split over {} workers'.format(num_parts) if num_parts > 1 else '',
            batch_size, ' per worker' if num_parts > 1 else ''))
    transform = AUGMENTATIONS[augment](data_shape, data_shape, anchors)
    return TrainLoader(dataset, transform, batch_size, Tuple(Stack(), Stack(), Stack()), seed,
                       shuffle, num_parts, part_index, num_workers)


def val_loader(dataset, data_shape, batch_size, num_workers=0):
    """Resized test images with labels padded by -1; every image is kept (no rollover,
    unlike GluonCV's eval_ssd.py, which drops the last partial batch)."""
    transform = SSDDefaultValTransform(data_shape, data_shape)
    return QuietWorkersLoader(
        dataset.transform(transform), batch_size, shuffle=False,
        batchify_fn=Tuple(Stack(), Pad(pad_val=-1)), last_batch='keep',
        num_workers=num_workers)
