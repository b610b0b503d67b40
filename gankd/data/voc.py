"""Datasets and loaders: GluonCV's VOCDetection and SSD transforms, with clear errors."""
import multiprocessing.pool
import os
import random
import xml.etree.ElementTree as ET

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon.data import dataloader as mx_dataloader
from mxnet.util import is_np_array, is_np_shape
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import image as timage
from gluoncv.data import VOCDetection
from gluoncv.data.batchify import Pad, Stack, Tuple
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform, SSDDefaultValTransform

from ..errors import GankdError
from ..detectors.ssd.model import VOC_CLASSES
from ..stopping import ignore_stop_signals

__all__ = ['read_classes', 'VOCLayoutDetection', 'voc_datasets', 'SSDTrainTransform',
           'LightSSDTrainTransform', 'EpochSampler', 'SeededAugmentation', 'QuietWorkersLoader',
           'TrainLoader', 'train_loader', 'val_loader']

VOC_LAYOUT = ('expected the VOC devkit layout: DIR/VOC2007/{Annotations,JPEGImages,'
              'ImageSets/Main/test.txt} and DIR/VOC2007 or DIR/VOC2012 ImageSets/Main/trainval.txt')


def read_classes(root):
    """Class names from ``root/classes.txt`` (one per line) or the 20 VOC classes."""
    path = os.path.join(root, 'classes.txt')
    if not os.path.isfile(path):
        return list(VOC_CLASSES)
    with open(path, encoding='utf-8-sig') as f:  # a byte order mark is no part of a name
        names = [line.strip().lower() for line in f if line.strip()]
    if not names:
        raise GankdError('{} lists no class names'.format(path))
    return names


#: How far (pixels) a box may reach outside its image and be clipped to it: rounding in
#: annotation tools, and 0-based coordinates where VOC's are 1-based, put a corner up to
#: a pixel or so outside. Further out is an error.
BOX_TOLERANCE = 2.0


def _number(text, what):
    if text is None or not text.strip():
        raise ValueError('{} is empty'.format(what))
    return float(text)


class VOCLayoutDetection(VOCDetection):
    """GluonCV's :class:`VOCDetection` with a class list of its own and strict labels.

    GluonCV logs and drops a box that lies outside its image, ignores classes outside its
    list and fails with no file name on an unreadable XML; here each is a
    :class:`GankdError` naming the file and the problem. What real devkits and annotation
    tools write is read: ``<difficult>`` missing or empty (0) or ``1.0``, float
    coordinates, ``<name>`` in any case with surrounding white space, a missing or zero
    ``<size>`` (the image header's is used), a UTF-8 byte order mark, blank lines in the
    split files, and corners up to :data:`BOX_TOLERANCE` pixels outside the image
    (clipped). An image without objects has a label of shape ``(0, 6)``.

    Parameters
    ----------
    root : str
        The devkit folder (holds ``VOC2007/``).
    splits : list of (int, str)
    classes : list of str
    transform : callable or None
    class_source : str
        Where the class names come from, for error messages.
    """

    def __init__(self, root, splits, classes, transform=None, class_source=None):
        self._class_names = tuple(classes)
        self._class_source = class_source or 'the class list'
        self._annotated_sizes = {}
        super(VOCLayoutDetection, self).__init__(root=root, splits=splits, transform=transform)

    @property
    def classes(self):
        return self._class_names

    def annotated_size(self, idx):
        """``(width, height)`` of the XML's ``<size>``, or None when it gives none."""
        return self._annotated_sizes.get(idx)

    def _load_items(self, splits):
        # Split files written on Windows or by hand may start with a byte order mark or
        # hold blank lines; GluonCV would read those as image ids.
        ids = []
        for subfolder, name in splits:
            root = os.path.join(self._root, 'VOC{}'.format(subfolder)
                                if isinstance(subfolder, int) else subfolder)
            with open(os.path.join(root, 'ImageSets', 'Main', name + '.txt'),
                      encoding='utf-8-sig') as f:
                ids += [(root, line.strip()) for line in f if line.strip()]
        return ids

    def _size(self, root, idx):
        """``(width, height)`` from ``<size>``, else from the image's header."""
        size = root.find('size')
        if size is not None and size.find('width') is not None and size.find(
                'height') is not None:
            width = _number(size.find('width').text, '<width>')
            height = _number(size.find('height').text, '<height>')
            if width > 0 and height > 0:
                self._annotated_sizes[idx] = (width, height)
                return width, height
        # Some tools leave <size> out or write 0 when they never opened the image.
        from .check import image_size
        return tuple(float(v) for v in image_size(self._image_path.format(*self._items[idx])))

    def _box(self, obj, width, height):
        """The 0-based ``[xmin, ymin, xmax, ymax]`` of an ``<object>``, clipped to the image."""
        box = obj.find('bndbox')
        # VOC coordinates are 1-based pixel indices; GluonCV subtracts 1.
        xmin, ymin, xmax, ymax = [_number(box.find(k).text, '<{}>'.format(k)) - 1
                                  for k in ('xmin', 'ymin', 'xmax', 'ymax')]
        shown = '({:g}, {:g}, {:g}, {:g})'.format(xmin + 1, ymin + 1, xmax + 1, ymax + 1)
        for lo, hi, axis in ((xmin, xmax, 'x'), (ymin, ymax, 'y')):
            if lo > hi:
                raise GankdError('{axis}min > {axis}max in box {box}'.format(axis=axis, box=shown))
            if lo == hi:
                raise GankdError('box {} has zero {}'.format(
                    shown, 'width' if axis == 'x' else 'height'))
        tol = BOX_TOLERANCE
        if xmin < -tol or ymin < -tol or xmax > width + tol or ymax > height + tol:
            raise GankdError('box {} (xmin, ymin, xmax, ymax; 1-based) lies outside the '
                             '{:g}x{:g} image'.format(shown, width, height))
        xmin, xmax = min(max(xmin, 0.), width), min(max(xmax, 0.), width)
        ymin, ymax = min(max(ymin, 0.), height), min(max(ymax, 0.), height)
        if xmin >= xmax or ymin >= ymax:
            raise GankdError('box {} lies on the border of the {:g}x{:g} image'.format(
                shown, width, height))
        return [xmin, ymin, xmax, ymax]

    def _load_label(self, idx):
        anno_path = self._anno_path.format(*self._items[idx])
        if not os.path.isfile(anno_path):
            raise GankdError('annotation file missing: {}'.format(anno_path))
        try:
            root = ET.parse(anno_path).getroot()
            width, height = self._size(root, idx)
            self._im_shapes[idx] = (width, height)
            label = []
            for obj in root.iter('object'):
                difficult = obj.find('difficult')
                difficult = (int(float(difficult.text)) if difficult is not None and
                             difficult.text and difficult.text.strip() else 0)
                name = obj.find('name').text.strip().lower()
                if name not in self.index_map:
                    # Ignoring it (as GluonCV does) would now train its box as background.
                    names = ', '.join(self.classes[:20]) + (', ...' if len(self.classes) > 20
                                                            else '')
                    raise GankdError('class {!r} is not in {} ({})'.format(
                        obj.find('name').text, self._class_source, names))
                label.append(self._box(obj, width, height) + [self.index_map[name], difficult])
        except ET.ParseError as err:
            raise GankdError('malformed annotation {}: not valid XML ({})'.format(anno_path, err))
        except AttributeError:
            raise GankdError('malformed annotation {}: a name or bndbox field is '
                             'missing'.format(anno_path)) from None
        except (TypeError, ValueError) as err:
            raise GankdError('malformed annotation {}: a number does not parse ({})'.format(
                anno_path, err)) from None
        except GankdError as err:
            if str(err).startswith('image not found'):
                raise GankdError('{}, for {} (which has no <size>)'.format(err, anno_path)) \
                    from None
            if str(err).startswith('image '):
                raise
            raise GankdError('malformed annotation {}: {}'.format(anno_path, err)) from None
        return np.array(label, dtype='float32').reshape((-1, 6))


def _split_file(root, year, name):
    return os.path.join(root, 'VOC{}'.format(year), 'ImageSets', 'Main', name + '.txt')


def voc_datasets(root, classes=None):
    """Training (trainval splits present) and test (VOC2007 test) datasets.

    Parameters
    ----------
    root : str
        The devkit folder holding ``VOC2007/`` and optionally ``VOC2012/``.
    classes : list of str or None
        Defaults to :func:`read_classes`.

    Returns
    -------
    (VOCLayoutDetection, VOCLayoutDetection, list of str)
    """
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise GankdError('dataset root not found: {}; {}'.format(root, VOC_LAYOUT))
    test_file = _split_file(root, 2007, 'test')
    if not os.path.isfile(test_file):
        raise GankdError('split file not found: {}; {}'.format(test_file, VOC_LAYOUT))
    train_splits = [(y, 'trainval') for y in (2007, 2012)
                    if os.path.isfile(_split_file(root, y, 'trainval'))]
    if not train_splits:
        raise GankdError('split file not found: {}; {}'.format(
            _split_file(root, 2007, 'trainval'), VOC_LAYOUT))
    source = os.path.join(root, 'classes.txt')
    source = source if os.path.isfile(source) else 'the 20 VOC classes (there is no {})'.format(
        source)
    if not classes:
        classes = read_classes(root)
    else:
        source = 'the given class list'
    train = VOCLayoutDetection(root, train_splits, classes, class_source=source)
    test = VOCLayoutDetection(root, [(2007, 'test')], classes, class_source=source)
    return train, test, classes


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


class EpochSampler(gluon.data.Sampler):
    """One epoch's training order, the same in every process and after a resume.

    The order is a permutation seeded by ``(seed, epoch)``. With ``num_parts`` workers,
    worker ``part_index`` takes every ``num_parts``-th sample of it, so the workers' shares
    are disjoint and equal (dist_sync needs the same number of iterations everywhere).
    Each sample also gets its own augmentation seed, and the sampler yields
    ``(augmentation seed, index)`` keys for :class:`SeededAugmentation`.

    Parameters
    ----------
    length : int
        Size of the dataset.
    seed : int
        The run's ``--seed``.
    shuffle : bool
        False keeps the dataset's order (augmentation seeds still differ per epoch).
    num_parts, part_index : int
        Distributed training: this worker's share.
    """

    def __init__(self, length, seed=0, shuffle=True, num_parts=1, part_index=0):
        self._length, self._seed, self._shuffle = length, int(seed), shuffle
        self._num_parts, self._part_index = num_parts, part_index
        self._share = length // num_parts
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch, skip=0):
        """Draw the next iteration's order for ``epoch``, leaving out its first ``skip``
        samples (already trained before a mid-epoch checkpoint)."""
        self.epoch, self.skip = int(epoch), int(skip)

    def __iter__(self):
        rng = np.random.RandomState([self._seed, self.epoch])
        order = rng.permutation(self._length) if self._shuffle else np.arange(self._length)
        seeds = rng.randint(0, 2 ** 31 - 1, size=self._length)
        share = slice(self._part_index, self._share * self._num_parts, self._num_parts)
        keys = list(zip(seeds[share].tolist(), order[share].tolist()))
        return iter(keys[self.skip:])

    def __len__(self):
        return max(self._share - self.skip, 0)


class SeededAugmentation(gluon.data.Dataset):
    """``transform(*dataset[index])`` for a key ``(seed, index)``, with Python's and
    NumPy's global generators (which GluonCV's augmentations draw from) seeded first.

    Loader worker processes draw from generators of their own (Python's is reseeded at
    every fork), so without this neither a run's augmentation could be repeated nor a
    resumed run continue as the uninterrupted one would have.
    """

    def __init__(self, dataset, transform):
        self._dataset, self._transform = dataset, transform

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, key):
        seed, index = key
        random.seed(seed)
        np.random.seed(seed)
        return self._transform(*self._dataset[index])


def _quiet_worker_init(*args):
    ignore_stop_signals()
    mx_dataloader._worker_initializer(*args)


class _QuietWorkerPool(multiprocessing.pool.Pool):
    """A process pool whose workers ignore SIGINT and SIGTERM. Since they ignore
    SIGTERM, which is how ``Pool.terminate`` stops workers, this pool stops its own with
    SIGKILL: they hold nothing that needs cleaning up."""

    @staticmethod
    def Process(ctx, *args, **kwds):
        proc = ctx.Process(*args, **kwds)
        proc.terminate = proc.kill
        return proc


class QuietWorkersLoader(gluon.data.DataLoader):
    """GluonCV's (MXNet's) ``DataLoader`` whose worker processes ignore SIGINT and
    SIGTERM.

    A terminal's Ctrl-C reaches every process of the foreground group, and a scheduler's
    SIGTERM may too. The training process stops cleanly on either
    (:mod:`gankd.stopping`); its loader workers must neither print a
    ``KeyboardInterrupt`` traceback nor die while the last batches are still being read,
    so they ignore both and are stopped by the loader itself. Arguments are those of
    ``DataLoader``.
    """

    def __init__(self, *args, num_workers=0, prefetch=None, **kwargs):
        # MXNet 1.9.1 (a fixed, final release) builds its process pool inside __init__;
        # build the loader without one, then give it ours, as its __init__ would.
        super(QuietWorkersLoader, self).__init__(*args, num_workers=0, **kwargs)
        if num_workers > 0:
            self._num_workers = num_workers
            if kwargs.get('batchify_fn') is None:
                self._batchify_fn = mx_dataloader.default_mp_batchify_fn
            self._prefetch = max(0, int(prefetch) if prefetch is not None else 2 * num_workers)
            self._worker_pool = _QuietWorkerPool(
                num_workers, initializer=_quiet_worker_init,
                initargs=[self._dataset, is_np_shape(), is_np_array()])

    @property
    def worker_pids(self):
        """Process ids of the worker processes (empty with ``num_workers=0``)."""
        if self._worker_pool is None:
            return []
        return [p.pid for p in self._worker_pool._pool]


class TrainLoader(QuietWorkersLoader):
    """Batches of an :class:`EpochSampler` order through :class:`SeededAugmentation`; call
    :meth:`set_epoch` before each epoch. An epoch's last partial batch is left out (its
    images come in other epochs' orders), so every full epoch has the same number of
    batches."""

    def __init__(self, dataset, transform, batch_size, seed=0, shuffle=True, num_parts=1,
                 part_index=0, num_workers=0):
        self.sampler = EpochSampler(len(dataset), seed, shuffle, num_parts, part_index)
        self.batch_size = batch_size
        super(TrainLoader, self).__init__(
            SeededAugmentation(dataset, transform), batch_size, sampler=self.sampler,
            last_batch='discard', batchify_fn=Tuple(Stack(), Stack(), Stack()),
            num_workers=num_workers)

    def set_epoch(self, epoch, skip_batches=0):
        """The batches of ``epoch`` after its first ``skip_batches``."""
        self.sampler.set_epoch(epoch, skip_batches * self.batch_size)


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
    return TrainLoader(dataset, transform, batch_size, seed, shuffle, num_parts, part_index,
                       num_workers)


def val_loader(dataset, data_shape, batch_size, num_workers=0):
    """Resized test images with labels padded by -1; every image is kept (no rollover,
    unlike GluonCV's eval_ssd.py, which drops the last partial batch)."""
    transform = SSDDefaultValTransform(data_shape, data_shape)
    return QuietWorkersLoader(
        dataset.transform(transform), batch_size, shuffle=False,
        batchify_fn=Tuple(Stack(), Pad(pad_val=-1)), last_batch='keep',
        num_workers=num_workers)
