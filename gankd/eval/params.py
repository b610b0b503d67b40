"""Evaluating a saved detector on the VOC2007 test split of a dataset root."""
import json
import os

from ..data.voc import val_loader, voc_datasets
from ..data.check import check_dataset
from ..detectors.detector import load_detector, meta_path
from ..train.loop import evaluate
from ..errors import GankdError

__all__ = ['evaluate_params', 'format_table', 'newest_best_params', 'choose_params']


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


def evaluate_params(params, dataset_root, ctx, batch_size=8, num_workers=0, progress=False,
                    check=True):
    """VOC07 mAP of the detector in ``params`` (rebuilt from the JSON beside it).

    ``check``: first check that every test image exists, decodes and has its annotated
    size (:func:`gankd.data.check.check_dataset`).

    Returns
    -------
    dict
        ``{'params', 'name', 'num_images', 'per_class': {class: AP}, 'mAP'}``.
    """
    meta, backbone, head = load_detector(params, ctx[0] if len(ctx) == 1 else ctx)
    data_shape = meta['ssd' if meta['kind'] == 'ssd' else 'teacher']['data_shape']
    _, test_set, classes = voc_datasets(dataset_root)
    if check:
        check_dataset(test_set)
    backbone.hybridize(static_alloc=True)
    head.hybridize(static_alloc=True)
    names, values = evaluate(backbone, head, val_loader(test_set, data_shape, batch_size,
                                                        num_workers), ctx, classes,
                            progress=progress)
    return {'params': os.path.abspath(params), 'name': meta.get('name'),
            'num_images': len(test_set),
            'per_class': {n: float(v) for n, v in zip(names[:-1], values[:-1])},
            'mAP': float(values[-1])}


def format_table(result):
    """Per-class AP table, then the mAP line."""
    width = max(len(c) for c in list(result['per_class']) + ['class'])
    lines = ['{}  {}'.format('class'.ljust(width), 'AP'),
             '{}  {}'.format('-' * width, '------')]
    lines += ['{}  {:.4f}'.format(c.ljust(width), ap) for c, ap in result['per_class'].items()]
    lines.append('{} ({} test images)'.format(result['name'], result['num_images']))
    lines.append('mAP={:.4f}'.format(result['mAP']))
    return '\n'.join(lines)


def write_json(result, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(result, f, indent=1)
