"""Detectors as saved and loaded: params file plus a JSON file naming the architecture.

The JSON names the detector's family (``family``; files from before families are SSDs)
and its ``kind``: ``ssd``, a plain detector from a preset (teachers, baselines), whose
params file is a normal GluonCV file; or ``student``, a student backbone in front of the
teacher's head. ``load_detector`` rebuilds either from the JSON through its family, so
evaluation needs nothing else.
"""
import json
import os

import mxnet as mx
from mxnet.gluon import HybridBlock

from ..errors import GankdError

__all__ = ['Detector', 'meta_path', 'save_detector', 'load_detector', 'build_from_meta',
           'load_params_strict']


class Detector(HybridBlock):
    """A backbone in front of a head: ``head(backbone(x))`` (a student detector).

    Parameters
    ----------
    backbone : HybridBlock
        Returns the list of feature maps.
    head : HybridBlock
        The family's head (e.g. :class:`gankd.detectors.ssd.model.SSDHead`).
    """

    def __init__(self, backbone, head, **kwargs):
        super(Detector, self).__init__(**kwargs)
        self.backbone = backbone
        self.head = head

    def forward(self, x):
        # Not hybridised as a whole: the head switches graphs between modes itself.
        return self.head(self.backbone(x))


def meta_path(params_file):
    """The JSON file beside a params file (same stem)."""
    return os.path.splitext(params_file)[0] + '.json'


def save_detector(params_file, block, meta):
    """Write ``block``'s parameters and ``meta`` beside them, each atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(params_file)), exist_ok=True)
    tmp = params_file + '.tmp'
    mx.nd.waitall()  # the last step's BatchNorm statistics (see gankd.train.checkpoint)
    block.save_parameters(tmp)
    os.replace(tmp, params_file)
    tmp = meta_path(params_file) + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, meta_path(params_file))


def load_params_strict(block, filename, ctx=mx.cpu(), what='model'):
    """Load a ``.params`` file, naming the first parameter that does not fit.

    GluonCV's own loader reports a shape mismatch deep inside MXNet; this checks names
    and shapes first so the user learns which weights and which model disagree.

    Parameters
    ----------
    block : mxnet.gluon.Block
        An initialised block (shapes known).
    filename : str
    ctx : mxnet.Context or list of mxnet.Context
    what : str
        How to call the model in the error message.
    """
    if not os.path.isfile(filename):
        raise GankdError('params file not found: {}'.format(filename))
    try:
        loaded = mx.nd.load(filename)
    except mx.base.MXNetError:
        raise GankdError('{} is not a readable MXNet params file'.format(filename)) from None
    if not isinstance(loaded, dict):
        raise GankdError('{} holds no named parameters'.format(filename))
    loaded = {k.split(':', 1)[-1]: v for k, v in loaded.items()}
    params = block._collect_params_with_prefix()
    for name, param in params.items():
        if name not in loaded:
            raise GankdError('{} does not fit the {}: parameter {} is missing from the file'
                             .format(filename, what, name))
        file_shape, model_shape = tuple(loaded[name].shape), tuple(param.shape)
        if file_shape != model_shape:
            raise GankdError('{} does not fit the {}: parameter {} has shape {} in the file '
                             'but {} in the model'.format(filename, what, name, file_shape,
                                                          model_shape))
    extra = sorted(set(loaded) - set(params))
    if extra:
        raise GankdError('{} does not fit the {}: the file has parameter {} which the model '
                         'lacks'.format(filename, what, extra[0]))
    block.load_parameters(filename, ctx=ctx)


def build_from_meta(meta, ctx=mx.cpu()):
    """Build an initialised detector described by ``meta`` (random weights), through its
    family (:meth:`gankd.detectors.family.DetectorFamily.from_description`).

    Returns
    -------
    (Block, HybridBlock, HybridBlock)
        The block whose params are saved, its backbone and its head.
    """
    from .family import family_of
    return family_of(meta).from_description(meta, ctx)


def load_detector(params_file, ctx=mx.cpu()):
    """Rebuild a detector from ``params_file`` and the JSON file beside it.

    Returns
    -------
    (dict, HybridBlock, SSDHead)
        The metadata, the backbone and the head, with the trained weights.
    """
    if not os.path.isfile(params_file):
        raise GankdError('params file not found: {}'.format(params_file))
    mpath = meta_path(params_file)
    if not os.path.isfile(mpath):
        raise GankdError('{} has no architecture file beside it (expected {})'.format(
            params_file, mpath))
    try:
        with open(mpath) as f:
            meta = json.load(f)
    except ValueError as err:
        raise GankdError('{} is not valid JSON: {}'.format(mpath, err)) from None
    block, backbone, head = build_from_meta(meta, ctx)
    load_params_strict(block, params_file, ctx=ctx, what=meta.get('name', meta['kind']))
    return meta, backbone, head
