"""SSD's data pipeline: GluonCV's SSD augmentation per image, its anchor targets per batch,
for images with or without objects, and the loaders of training and evaluation batches."""
import mxnet as mx
import numpy as np
from gluoncv.data.batchify import Pad, Stack, Tuple
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform, SSDDefaultValTransform

from ...data.loaders import QuietWorkersLoader, TrainLoader
from ...errors import GankdError

__all__ = ['SSDTrainTransform', 'LightSSDTrainTransform', 'SSDBatchTargets', 'AUGMENTATIONS',
           'train_loader',
           'val_loader']


def _objects(label):
    """The rows of a label that are boxes: GluonCV's COCO reader gives an image without
    any a dummy row of -1."""
    label = np.asarray(label)
    return label[label[:, 4] >= 0] if label.size else label.reshape((0, 6))


class SSDTrainTransform(SSDDefaultTrainTransform):
    """GluonCV's SSD augmentation, for images with or without objects; returns the image
    tensor and its boxes ``(N, 5+)``, whose targets :class:`SSDBatchTargets` makes."""

    def __init__(self, width, height, **kwargs):
        super(SSDTrainTransform, self).__init__(width, height, anchors=None, **kwargs)

    def __call__(self, src, label):
        return super(SSDTrainTransform, self).__call__(src, _objects(label))


class LightSSDTrainTransform(SSDTrainTransform):
    """Resize and random flip only.

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
        return img, bbox.astype(img.dtype)


class SSDBatchTargets(object):
    """Batchify of SSD training samples: stacked images and their anchor targets,
    ``(images, cls_targets, box_targets)``.

    GluonCV's target generator (``SSDTargetGenerator``, as its SSD training transform
    builds it) runs once per batch, on the boxes padded with -1, rather than once per
    image in the transform: its cost is mostly per call, so this is about 25 times
    cheaper (12 ms of CPU per image against 14 to 17 ms per batch of 32 at 64 px,
    ``results/calibration/loader_cost.py``), and the targets are the same. It had made
    the loader, not the network, what bounds small networks' training speed. The boxes of an image come before its padding rows, so
    its targets are those it gets alone. An image without objects would get nonsense
    (GluonCV's matcher gives every anchor tied at IoU 0 the first box, here a padding
    row of zero size, whose box target is infinite), so it gets what every unmatched
    anchor gets instead: class 0 (background), box target 0.

    Parameters
    ----------
    anchors : mxnet.nd.NDArray
        The network's anchors, ``(1, N, 4)``, on the CPU.
    iou_thresh, box_norm
        As GluonCV's ``SSDDefaultTrainTransform``.
    """

    def __init__(self, anchors, iou_thresh=0.5, box_norm=(0.1, 0.1, 0.2, 0.2)):
        from gluoncv.model_zoo.ssd.target import SSDTargetGenerator
        self._anchors = anchors
        self._generator = SSDTargetGenerator(iou_thresh=iou_thresh, stds=box_norm,
                                             negative_mining_ratio=-1)

    def __call__(self, samples):
        images = mx.nd.stack(*[image for image, _ in samples])
        rows = max(1, max(len(boxes) for _, boxes in samples))
        padded = np.full((len(samples), rows, 5), -1, dtype='float32')
        for i, (_, boxes) in enumerate(samples):
            padded[i, :len(boxes)] = np.asarray(boxes)[:, :5]
        cls_targets, box_targets, _ = self._generator(
            self._anchors, None, mx.nd.array(padded[:, :, :4]), mx.nd.array(padded[:, :, 4:5]))
        if (padded[:, 0, 4] < 0).any():
            has_objects = mx.nd.array(padded[:, 0, 4] >= 0)
            cls_targets = mx.nd.where(has_objects.reshape((-1, 1)).broadcast_like(cls_targets),
                                      cls_targets, mx.nd.zeros_like(cls_targets))
            box_targets = mx.nd.where(
                has_objects.reshape((-1, 1, 1)).broadcast_like(box_targets), box_targets,
                mx.nd.zeros_like(box_targets))
        return images, cls_targets, box_targets


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
    transform = AUGMENTATIONS[augment](data_shape, data_shape)
    return TrainLoader(dataset, transform, batch_size, SSDBatchTargets(anchors), seed,
                       shuffle, num_parts, part_index, num_workers)


def val_loader(dataset, data_shape, batch_size, num_workers=0):
    """Resized test images with labels padded by -1; every image is kept (no rollover,
    unlike GluonCV's eval_ssd.py, which drops the last partial batch)."""
    transform = SSDDefaultValTransform(data_shape, data_shape)
    return QuietWorkersLoader(
        dataset.transform(transform), batch_size, shuffle=False,
        batchify_fn=Tuple(Stack(), Pad(pad_val=-1)), last_batch='keep',
        num_workers=num_workers)
