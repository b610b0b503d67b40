"""VOC-layout datasets: GluonCV's VOCDetection, with clear errors and any class list."""
import os
import xml.etree.ElementTree as ET

import numpy as np
from gluoncv.data import VOCDetection

from ..errors import GankdError

__all__ = ['VOC_CLASSES', 'read_classes', 'VOCLayoutDetection', 'voc_datasets']

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
               'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')

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
