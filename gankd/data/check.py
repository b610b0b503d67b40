"""The start-up check of a dataset: every image exists, decodes and has its annotated size.

Boxes are checked when the annotations are read (:class:`gankd.data.voc.VOCLayoutDetection`,
:class:`gankd.data.coco.COCOLayoutDetection`); what is left for here needs the image files.
A failure is a :class:`GankdError` naming the file and the problem, raised before
anything is trained or evaluated.

Reading a JPEG, PNG, BMP or TIFF header (``PIL.Image.open(...).size``) is enough to know
the image exists, is of a format MXNet's image reader decodes and has a given size, so a
tree of 20,000 images is checked in seconds. Files of any other format (or that PIL does
not know) are decoded whole with ``mx.image.imread``, the reader training uses: MXNet
1.9.1's OpenCV 3.4 reads neither GIF nor WebP nor PPM, which PIL would accept.
"""
import os
import time

import numpy as np
from PIL import Image

from ..errors import GankdError

__all__ = ['HEADER_FORMATS', 'image_size', 'check_dataset', 'count_without_objects',
           'describe_dataset']

#: PIL formats whose header is trusted: MXNet's OpenCV decodes these (to 3-channel RGB,
#: whatever the file's extension, colour mode or bit depth).
HEADER_FORMATS = ('JPEG', 'PNG', 'BMP', 'TIFF', 'MPO')


def image_size(path):
    """``(width, height)`` of an image, as MXNet's reader will decode it.

    Parameters
    ----------
    path : str

    Returns
    -------
    (int, int)

    Raises
    ------
    GankdError
        The file is missing or not an image MXNet's reader decodes.
    """
    if not os.path.isfile(path):
        raise GankdError('image not found: {}'.format(path))
    fmt = None
    try:
        with Image.open(path) as im:
            fmt = im.format
            if fmt in HEADER_FORMATS:
                return im.size
    except Exception:  # PIL raises many types for files it does not know; OpenCV decides
        pass
    import mxnet as mx
    try:
        img = mx.image.imread(path, 1)
    except Exception:  # MXNetError, with OpenCV's message and a C++ stack trace inside
        img = None
    if img is None or img.size == 0:
        kind = ' (a {} file)'.format(fmt) if fmt else ''
        raise GankdError('image {} cannot be decoded{}: MXNet\'s image reader (OpenCV) reads '
                         'JPEG, PNG, BMP and TIFF'.format(path, kind))
    return int(img.shape[1]), int(img.shape[0])


def _check_size(path, annotated, where):
    width, height = image_size(path)
    if annotated is not None and (int(round(annotated[0])), int(round(annotated[1]))) != (
            width, height):
        raise GankdError('{} says the image is {}x{} but {} is {}x{}'.format(
            where, int(round(annotated[0])), int(round(annotated[1])), path, width, height))


def _check_voc(dataset):
    for idx, item in enumerate(dataset._items):
        path = dataset._image_path.format(*item)
        _check_size(path, dataset.annotated_size(idx),
                    '<size> of ' + dataset._anno_path.format(*item))


def _check_coco(dataset):
    coco = dataset.coco
    for entry in coco.loadImgs(sorted(coco.getImgIds())):
        path = dataset._parse_image_path(entry)
        where = '{} (image id {})'.format(dataset.annotation_file, entry['id'])
        _check_size(path, (entry['width'], entry['height']), where)


def check_dataset(dataset):
    """Check every image of a VOC- or COCO-layout dataset.

    Parameters
    ----------
    dataset : gankd.data.voc.VOCLayoutDetection or gankd.data.coco.COCOLayoutDetection

    Returns
    -------
    float
        Seconds the check took.

    Raises
    ------
    GankdError
        On the first image that is missing, does not decode or differs in size from its
        annotation, naming both files.
    """
    start = time.time()
    if hasattr(dataset, 'coco'):
        _check_coco(dataset)
    else:
        _check_voc(dataset)
    return time.time() - start


def _labels(dataset):
    if getattr(dataset, '_label_cache', None) is not None:
        return dataset._label_cache
    return dataset._labels


def count_without_objects(dataset):
    """Number of images with no box (GluonCV's COCO marks them with a row of -1)."""
    count = 0
    for label in _labels(dataset):
        label = np.asarray(label, dtype='float32')
        count += int(label.size == 0 or not (label[:, 4] >= 0).any())
    return count


def describe_dataset(dataset):
    """``'16 images (2 without objects)'``."""
    return '{} images ({} without objects)'.format(len(dataset), count_without_objects(dataset))
