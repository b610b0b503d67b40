"""Evaluating a saved detector (params file + JSON) on a dataset: VOC07 mAP on the VOC2007
test split, or COCO AP on a COCO annotation file; any family, through the same loop."""
import json
import os

from ..data.check import check_dataset
from ..data.voc import voc_datasets
from ..detectors.detector import load_detector, meta_path
from ..detectors.family import family_of
from ..errors import GankdError
from ..train.loop import evaluate

__all__ = ['evaluate_params', 'evaluate_coco_params', 'evaluate_file', 'format_table',
           'format_coco_table', 'newest_best_params', 'choose_params', 'write_json']


def newest_best_params(root='params'):
    """The most recently written ``*_best.params`` under ``root`` (recursively), or None."""
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.join(folder, f) for f in files if f.endswith('_best.params')]
    return max(found, key=os.path.getmtime) if found else None


def choose_params(params=None, dataset_root=None, search='params'):
    """What ``eval_voc.py`` evaluates when flags are left out.

    Parameters
    ----------
    params : str or None
        ``--params``; None: the newest ``*_best.params`` under ``search``.
    dataset_root : str or None
        ``--dataset-root``; None: the root recorded at training time in the JSON beside
        the params file.

    Returns
    -------
    (str, str, list of str)
        The params file, the dataset root, and what was chosen, said in words.
    """
    said = []
    if params is None:
        params = newest_best_params(search)
        if params is None:
            raise GankdError('no --params given and no *_best.params under {}/'.format(
                os.path.abspath(search)))
        said.append('evaluating the newest *_best.params: {}'.format(params))
    if dataset_root is None:
        mpath = meta_path(params)
        if not os.path.isfile(params):
            raise GankdError('params file not found: {}'.format(params))
        if not os.path.isfile(mpath):
            raise GankdError('{} has no architecture file beside it (expected {})'.format(
                params, mpath))
        try:
            with open(mpath) as f:
                dataset_root = json.load(f).get('dataset_root')
        except ValueError as err:
            raise GankdError('{} is not valid JSON: {}'.format(mpath, err)) from None
        if dataset_root is None:
            raise GankdError('{} does not record the dataset it was trained on; pass '
                             '--dataset-root'.format(params))
        said.append('on the dataset it was trained on: {}'.format(dataset_root))
    return params, dataset_root, said


def evaluate_file(params, dataset, ctx, metric=None, batch_size=8, num_workers=0,
                  progress=False, check=True):
    """The metric of the detector in ``params`` (rebuilt from the JSON beside it) on
    ``dataset``.

    Parameters
    ----------
    params : str
    dataset : VOC- or COCO-layout dataset
        Every image is evaluated, in order.
    ctx : list of mxnet.Context
    metric : callable or None
        ``metric(shape)`` gives the metric (:func:`gankd.train.loop.evaluate`), ``shape``
        being the family's ``metric_shape``; None is VOC07 mAP.
    check : bool
        First check that every image exists, decodes and has its annotated size
        (:func:`gankd.data.check.check_dataset`).

    Returns
    -------
    (dict, list of str, list of float)
        The detector's JSON, the metric's names and values.
    """
    meta, backbone, head = load_detector(params, ctx[0] if len(ctx) == 1 else ctx)
    family = family_of(meta)
    classes = list(family.classes_of(meta))
    if [c.lower() for c in classes] != [c.lower() for c in dataset.classes]:
        # The head's class ids would be scored as the wrong categories.
        raise GankdError('{} detects {} classes ({}) but {} has {} ({})'.format(
            params, len(classes), ', '.join(classes),
            getattr(dataset, '_anno_file', None) or getattr(dataset, '_root', 'the dataset'),
            len(dataset.classes),
            ', '.join(dataset.classes)))
    if check:
        check_dataset(dataset)
    data_shape = family.data_shape(meta)
    backbone.hybridize(static_alloc=True)
    head.hybridize(static_alloc=True)
    metric = metric(family.metric_shape(meta)) if metric is not None else None
    try:
        names, values = evaluate(
            family, backbone, head,
            family.val_loader(dataset, data_shape, batch_size, num_workers), ctx,
            dataset.classes, progress=progress, metric=metric)
    finally:
        if hasattr(metric, 'cleanup'):
            metric.cleanup()
    return meta, names, values


def evaluate_params(params, dataset_root, ctx, batch_size=8, num_workers=0, progress=False,
                    check=True):
    """VOC07 mAP of the detector in ``params`` on the VOC2007 test split of ``dataset_root``.

    Returns
    -------
    dict
        ``{'params', 'name', 'num_images', 'per_class': {class: AP}, 'mAP'}``.
    """
    _, test_set, _ = voc_datasets(dataset_root)
    meta, names, values = evaluate_file(params, test_set, ctx, None, batch_size, num_workers,
                                        progress, check)
    return {'params': os.path.abspath(params), 'name': meta.get('name'),
            'num_images': len(test_set),
            'per_class': {n: float(v) for n, v in zip(names[:-1], values[:-1])},
            'mAP': float(values[-1])}


def evaluate_coco_params(params, dataset_root, ctx, batch_size=8, num_workers=0, split=None,
                         progress=False, check=True):
    """COCO AP of the detector in ``params`` on a COCO-layout ``dataset_root``.

    ``split``: the annotation name; None is ``instances_val2017`` (or the synthetic
    ``instances_test``).

    Returns
    -------
    dict
        ``{'params', 'name', 'split', 'num_images', 'per_class': {class: AP}, 'AP50',
        'mAP'}``; ``mAP`` is AP at IoU 0.50:0.95.
    """
    from ..data.coco import coco_dataset
    from .metrics import COCOMetric
    val_set = coco_dataset(dataset_root, split, train=False)
    meta, names, values = evaluate_file(params, val_set, ctx,
                                        lambda shape: COCOMetric(val_set, shape), batch_size,
                                        num_workers, progress, check)
    return {'params': os.path.abspath(params), 'name': meta.get('name'),
            'split': os.path.basename(val_set._anno_file)[:-len('.json')],
            'num_images': len(val_set),
            'per_class': {n: float(v) for n, v in zip(names[:-2], values[:-2])},
            'AP50': float(values[-2]), 'mAP': float(values[-1])}


def format_table(result):
    """Per-class AP table, then the mAP line."""
    width = max(len(c) for c in list(result['per_class']) + ['class'])
    lines = ['{}  {}'.format('class'.ljust(width), 'AP'),
             '{}  {}'.format('-' * width, '------')]
    lines += ['{}  {:.4f}'.format(c.ljust(width), ap) for c, ap in result['per_class'].items()]
    lines.append('{} ({} test images)'.format(result['name'], result['num_images']))
    lines.append('mAP={:.4f}'.format(result['mAP']))
    return '\n'.join(lines)


def format_coco_table(result):
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


def write_json(result, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(result, f, indent=1)
