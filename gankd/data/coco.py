"""COCO-format detection: GluonCV's ``COCODetection`` and ``COCODetectionMetric``, adapted.

Two layouts are read by the same code:

* real MS COCO: ``ROOT/annotations/instances_train2017.json``, ``ROOT/train2017/*.jpg``,
  ``ROOT/annotations/instances_val2017.json``, ``ROOT/val2017/*.jpg`` (Table 2 of the
  paper trains on train2017 and reports val2017);
* the synthetic generator's ``--coco-json`` output: ``ROOT/annotations/instances_train.json``
  and ``ROOT/annotations/instances_test.json`` whose ``file_name`` is relative to ``ROOT``
  (the JPEGs stay in ``ROOT/VOC2007/JPEGImages/``, shared with the VOC annotations).

The metric is COCO's AP averaged over IoU 0.50:0.05:0.95 (the headline number, last) and
AP at IoU 0.5, computed by pycocotools exactly as GluonCV's ``train_ssd.py`` does for COCO.
"""
import contextlib
import io
import os
import shutil
import tempfile
import weakref

import numpy as np
from gluoncv.data import COCODetection
from gluoncv.utils.metrics.coco_detection import COCODetectionMetric

from .voc import BOX_TOLERANCE, val_loader
from .check import check_dataset, count_without_objects
from ..detectors.detector import load_detector
from ..train.loop import evaluate
from ..errors import GankdError

__all__ = ['COCO_SPLITS', 'SYNTHETIC_SPLITS', 'COCOLayoutDetection', 'coco_dataset',
           'coco_datasets', 'default_splits', 'COCOMetric', 'evaluate_coco_params',
           'format_table']

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


def _remove_dir(path, owner_pid):
    # Data-loader workers forked from the owner hold a copy of the metric; only the
    # process that made the folder removes it.
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


class COCOMetric(COCODetectionMetric):
    """GluonCV's COCO metric with the interface of :func:`gankd.train.loop.evaluate`.

    ``update`` is GluonCV's: detections arrive per device in the network's input
    coordinates, one row per image in dataset order, and are scaled back to each image's
    size in the annotation file (the SSD validation transform resizes to a square
    ``data_shape`` without keeping the aspect ratio, so one scale per axis is exact).
    The ground-truth arguments are ignored: pycocotools reads the ground truth from the
    dataset's annotation file.

    Parameters
    ----------
    dataset : COCOLayoutDetection
        The validation set, with every image kept (``coco_datasets``' second value).
    data_shape : int or (int, int)
        Network input size; an int is a square, a pair is ``(height, width)``.
    score_thresh : float
        Detections below this score are not scored (GluonCV's default).

    Notes
    -----
    ``get()`` returns the names ``[*class names, 'AP50', 'mAP']``: per-class AP at
    IoU 0.50:0.95, AP at IoU 0.5, then AP at IoU 0.50:0.95 (COCO's headline number, last
    so that training keeps the parameters that maximise it).  All values are fractions
    in [0, 1] (NaN for a class without ground truth), over all areas, 100 detections per
    image.  The detections JSON pycocotools reads goes to a private temporary folder,
    removed after each ``get()`` (the file) and with the metric (the folder).
    """

    def __init__(self, dataset, data_shape, score_thresh=0.05):
        if not isinstance(dataset, COCODetection):
            raise GankdError('COCOMetric needs a COCO dataset (gankd.data.coco.coco_datasets), '
                             'got {}'.format(type(dataset).__name__))
        if isinstance(data_shape, (int, np.integer)):
            data_shape = (int(data_shape), int(data_shape))
        data_shape = tuple(int(s) for s in data_shape)
        num_ids = len(dataset.coco.getImgIds())
        if len(dataset) != num_ids:
            # Otherwise detections would silently be paired with the wrong images.
            raise GankdError('{} has {} of the {} images of its annotation file; evaluate on '
                             'a set that keeps images without boxes (coco_datasets\' '
                             'validation set)'.format(dataset, len(dataset), num_ids))
        self._tmpdir = tempfile.mkdtemp(prefix='gankd_coco_')
        # Removes the folder when the metric is collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _remove_dir, self._tmpdir, os.getpid())
        super(COCOMetric, self).__init__(
            dataset, os.path.join(self._tmpdir, 'detections'), use_time=False, cleanup=False,
            score_thresh=score_thresh, data_shape=data_shape)

    def get(self):
        """Run pycocotools on the detections collected since ``reset()``.

        Returns
        -------
        (list of str, list of float)
            ``[*classes, 'AP50', 'mAP']`` and their values.
        """
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress prints
                coco_eval = self._update()
        finally:
            if os.path.exists(self._filename):
                os.remove(self._filename)
        params = coco_eval.params
        # precision: (IoU thresholds, recall points, classes, area ranges, max detections);
        # -1 marks a class without ground truth.
        area = list(params.areaRngLbl).index('all')
        max_dets = list(params.maxDets).index(100)
        precision = coco_eval.eval['precision'][:, :, :, area, max_dets]
        iou50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))

        def mean(p):
            p = p[p > -1]
            return float(np.mean(p)) if p.size else float('nan')

        names = list(self.dataset.classes) + ['AP50', 'mAP']
        values = [mean(precision[:, :, k]) for k in range(precision.shape[2])]
        values += [mean(precision[iou50]), mean(precision)]
        return names, values

    def cleanup(self):
        """Remove the temporary folder now (it is also removed with the metric)."""
        self._finalizer()


def evaluate_coco_params(params, dataset_root, ctx, batch_size=8, num_workers=0, split=None,
                         progress=False, check=True):
    """COCO AP of the detector in ``params`` (rebuilt from the JSON beside it).

    Parameters
    ----------
    params : str
        Params file written by training (``save_detector``).
    dataset_root : str
        COCO-layout root (see :func:`coco_datasets`).
    ctx : list of mxnet.Context
    batch_size, num_workers : int
    split : str or None
        Annotation name; None is ``instances_val2017`` (or the synthetic ``instances_test``).
    progress : bool
    check : bool
        First check that every image exists, decodes and has its annotated size
        (:func:`gankd.data.check.check_dataset`).

    Returns
    -------
    dict
        ``{'params', 'name', 'split', 'num_images', 'per_class': {class: AP}, 'AP50',
        'mAP'}``; ``mAP`` is AP at IoU 0.50:0.95.
    """
    meta, backbone, head = load_detector(params, ctx[0] if len(ctx) == 1 else ctx)
    cfg = meta['ssd' if meta['kind'] == 'ssd' else 'teacher']
    val_set = coco_dataset(dataset_root, split, train=False)
    if check:
        check_dataset(val_set)
    classes = val_set.classes
    if [c.lower() for c in cfg['classes']] != [c.lower() for c in classes]:
        # The head's class ids would be scored as the wrong categories.
        raise GankdError('{} detects {} classes ({}) but {} has {} ({})'.format(
            params, len(cfg['classes']), ', '.join(cfg['classes']), val_set._anno_file,
            len(classes), ', '.join(classes)))
    data_shape = cfg['data_shape']
    backbone.hybridize(static_alloc=True)
    head.hybridize(static_alloc=True)
    metric = COCOMetric(val_set, data_shape)
    try:
        names, values = evaluate(backbone, head,
                                 val_loader(val_set, data_shape, batch_size, num_workers),
                                 ctx, classes, progress=progress, metric=metric)
    finally:
        metric.cleanup()
    return {'params': os.path.abspath(params), 'name': meta.get('name'),
            'split': os.path.basename(val_set._anno_file)[:-len('.json')],
            'num_images': len(val_set),
            'per_class': {n: float(v) for n, v in zip(names[:-2], values[:-2])},
            'AP50': float(values[-2]), 'mAP': float(values[-1])}


def format_table(result):
    """Per-class AP@[.5:.95] table, then the ``AP50=`` line, then the ``mAP=`` line."""
    width = max(len(c) for c in list(result['per_class']) + ['class'])
    lines = ['{}  {}'.format('class'.ljust(width), 'AP[.5:.95]'),
             '{}  {}'.format('-' * width, '----------')]
    lines += ['{}  {:.4f}'.format(c.ljust(width), ap) for c, ap in result['per_class'].items()]
    lines.append('{} ({} images of {})'.format(result['name'], result['num_images'],
                                               result['split']))
    lines.append('AP50={:.4f}'.format(result['AP50']))
    lines.append('mAP={:.4f}'.format(result['mAP']))
    return '\n'.join(lines)
