"""COCO-format datasets: GluonCV's ``COCODetection``, adapted (the metric is
:class:`gankd.eval.metrics.COCOMetric`).

Two layouts are read by the same code:

* real MS COCO: ``ROOT/annotations/instances_train2017.json``, ``ROOT/train2017/*.jpg``,
  ``ROOT/annotations/instances_val2017.json``, ``ROOT/val2017/*.jpg`` (Table 2 of the
  paper trains on train2017 and reports val2017);
* the synthetic generator's ``--coco-json`` output: ``ROOT/annotations/instances_train.json``
  and ``ROOT/annotations/instances_test.json`` whose ``file_name`` is relative to ``ROOT``
  (the JPEGs stay in ``ROOT/VOC2007/JPEGImages/``, shared with the VOC annotations).
"""
import contextlib
import io
import os

from gluoncv.data import COCODetection

from .voc import BOX_TOLERANCE
from .check import count_without_objects
from ..errors import GankdError

__all__ = ['COCO_SPLITS', 'SYNTHETIC_SPLITS', 'COCOLayoutDetection', 'coco_dataset',
           'coco_datasets', 'default_splits']

#: (train, val) annotation names of MS COCO 2017.
COCO_SPLITS = ('instances_train2017', 'instances_val2017')
#: (train, val) annotation names written by :func:`gankd.data.synthetic.make_synthetic_voc`.
SYNTHETIC_SPLITS = ('instances_train', 'instances_test')

COCO_LAYOUT = ('expected the COCO layout: DIR/annotations/instances_train2017.json and '
               'instances_val2017.json with images in DIR/train2017/ and DIR/val2017/ '
               '(the synthetic generator writes annotations/instances_{train,test}.json '
               'with --coco-json)')


class COCOLayoutDetection(COCODetection):
    """GluonCV's :class:`COCODetection` for one annotation file, any category list.

    GluonCV's class only accepts the 80 COCO categories, finds images through
    ``coco_url`` (which COCO-format files other than MS COCO's rarely carry) and fails
    with an ``IOError`` or a bare ``KeyError`` on a broken file.  Here the classes are the
    file's categories (in file order, as GluonCV numbers them), an image is looked up in
    ``root/<split without 'instances_'>/file_name`` (MS COCO) and then in
    ``root/file_name`` (the synthetic generator), and every problem is a
    :class:`GankdError` naming the file.

    Parameters
    ----------
    root : str
        Dataset root holding ``annotations/``.
    split : str
        Annotation file name without ``.json``, e.g. ``'instances_val2017'``.
    transform : callable or None
    skip_empty : bool
        Drop images without a usable box (GluonCV's default).  :func:`coco_dataset` keeps
        them, for training (as background) and evaluation alike: then the dataset order
        is the annotation file's sorted image ids, which :class:`COCOMetric` relies on to
        pair detections with images.
    min_object_area : float
        Boxes whose annotated ``area`` is below this are ignored (GluonCV's default 0).
    """

    def __init__(self, root, split, transform=None, skip_empty=True, min_object_area=0):
        root = os.path.expanduser(str(root))
        if not os.path.isdir(root):
            raise GankdError('dataset root not found: {}; {}'.format(root, COCO_LAYOUT))
        anno = os.path.join(root, 'annotations', split + '.json')
        if not os.path.isfile(anno):
            raise GankdError('annotation file not found: {}; {}'.format(anno, COCO_LAYOUT))
        self._anno_file = anno
        image_dir = split[len('instances_'):] if split.startswith('instances_') else split
        self._image_dir = os.path.join(root, image_dir)
        self._class_names = None
        try:
            # pycocotools prints progress on stdout, which belongs to the scripts' results.
            with contextlib.redirect_stdout(io.StringIO()):
                super(COCOLayoutDetection, self).__init__(
                    root=root, splits=[split], transform=transform,
                    min_object_area=min_object_area, skip_empty=skip_empty)
        except KeyError as err:
            raise GankdError('malformed annotation file {}: missing or unknown key {}'.format(
                anno, err)) from None
        except (ValueError, TypeError, AssertionError, IndexError) as err:
            raise GankdError('malformed annotation file {}: {}'.format(
                anno, err or type(err).__name__)) from None
        # GluonCV builds index_map from the 80 COCO names before the file is read.
        self.index_map = {name: i for i, name in enumerate(self.classes)}
        if not self._items:
            raise GankdError('{} lists no image with a box'.format(anno))

    def __str__(self):
        return '{}({})'.format(type(self).__name__, self._anno_file)

    @property
    def annotation_file(self):
        """Path of the JSON file this set was read from."""
        return self._anno_file

    @property
    def classes(self):
        """Category names of the annotation file, in its order (class id order)."""
        if self._class_names is None:
            coco = getattr(self, '_coco', None)
            if not coco:
                return []  # inside GluonCV's __init__, before the file is read
            self._class_names = tuple(c['name'] for c in coco[0].loadCats(coco[0].getCatIds()))
        # A list, since GluonCV compares the file's category list with this one.
        return list(self._class_names)

    def _check_load_bbox(self, coco, entry):
        # GluonCV clips boxes to the image and drops those of zero area, both silently:
        # MS COCO 2017's train set has two boxes of height 0, and corners a little outside
        # the image are rounding. Refuse what is neither.
        width, height = float(entry['width']), float(entry['height'])
        if not (width > 0 and height > 0):
            raise GankdError('malformed annotation file {}: image {} has size {}x{}'.format(
                self._anno_file, entry['id'], entry['width'], entry['height']))
        tol = BOX_TOLERANCE
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[entry['id']], iscrowd=None)):
            bbox = ann.get('bbox')
            try:
                x, y, w, h = [float(v) for v in bbox]
            except (TypeError, ValueError):
                raise GankdError('malformed annotation file {}: annotation {} (image {}) has '
                                 'bbox {!r}, not [x, y, width, height]'.format(
                                     self._anno_file, ann.get('id'), entry['id'], bbox)) from None
            problem = None
            if w < 0 or h < 0:
                problem = 'a negative width or height'
            elif x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
                problem = 'a box outside the {:g}x{:g} image'.format(width, height)
            if problem:
                raise GankdError('malformed annotation file {}: annotation {} (image {}) has '
                                 '{}: bbox {}'.format(self._anno_file, ann.get('id'),
                                                      entry['id'], problem, bbox))
        return super(COCOLayoutDetection, self)._check_load_bbox(coco, entry)

    def _parse_image_path(self, entry):
        name = entry.get('file_name')
        if not name:
            raise GankdError('malformed annotation file {}: image {} has no file_name'.format(
                self._anno_file, entry.get('id')))
        candidates = [os.path.join(self._image_dir, name), os.path.join(self._root, name)]
        for path in candidates:
            if os.path.isfile(path):
                return path
        raise GankdError('image not found: {} (nor {}), listed in {}'.format(
            candidates[0], candidates[1], self._anno_file))


def default_splits(root):
    """``(train, val)`` annotation names for ``root``: MS COCO 2017's, unless only the
    synthetic generator's files are there.

    Parameters
    ----------
    root : str

    Returns
    -------
    (str, str)
    """
    anno = os.path.join(os.path.expanduser(str(root)), 'annotations')

    def present(splits):
        return any(os.path.isfile(os.path.join(anno, s + '.json')) for s in splits)

    if not present(COCO_SPLITS) and present(SYNTHETIC_SPLITS):
        return SYNTHETIC_SPLITS
    # Also when neither exists, so that the error names the MS COCO file.
    return COCO_SPLITS


def coco_dataset(root, split=None, train=False):
    """One split of a COCO-layout dataset.

    Parameters
    ----------
    root : str
    split : str or None
        Annotation name; None is the validation split of :func:`default_splits`.
    train : bool
        A training set must hold at least one box. Both keep every image (an image
        without boxes trains as background), as :class:`COCOMetric` needs.

    Returns
    -------
    COCOLayoutDetection
    """
    if split is None:
        split = default_splits(root)[0 if train else 1]
    dataset = COCOLayoutDetection(root, split, skip_empty=False)
    if train and count_without_objects(dataset) == len(dataset):
        raise GankdError('{} lists no image with a box'.format(dataset.annotation_file))
    return dataset


def coco_datasets(root, train_split=None, val_split=None):
    """Training and validation datasets of a COCO-layout root.

    Parameters
    ----------
    root : str
        Holds ``annotations/<split>.json`` and the images.
    train_split, val_split : str or None
        Annotation names without ``.json``.  None picks :func:`default_splits`:
        ``instances_train2017`` / ``instances_val2017``, or the synthetic generator's
        ``instances_train`` / ``instances_test`` when only those exist.

    Returns
    -------
    (COCOLayoutDetection, COCOLayoutDetection, list of str)
        Training and validation sets (every image, also those without boxes) and the
        class names.

    Raises
    ------
    GankdError
        A missing root, annotation file or image, a malformed file, or training and
        validation files whose categories differ.
    """
    default_train, default_val = default_splits(root)
    train = coco_dataset(root, train_split or default_train, train=True)
    val = coco_dataset(root, val_split or default_val, train=False)
    if train.classes != val.classes:
        raise GankdError('{} and {} list different categories: {} vs {}'.format(
            train._anno_file, val._anno_file, train.classes, val.classes))
    return train, val, val.classes
