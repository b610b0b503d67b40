"""Detectors as saved and loaded: params file plus a JSON file naming the architecture.

Two kinds exist. ``ssd``: a plain GluonCV SSD from a preset (teachers, baselines); its
params file is a normal GluonCV SSD file. ``student``: a :class:`StudentBackbone` in
front of an :class:`SSDHead` (a GAN-KD student). Either way ``load_detector`` rebuilds
it from the JSON beside the params file, so evaluation needs nothing else.
"""
import json
import os

import mxnet as mx
from mxnet.gluon import HybridBlock

from ..errors import GankdError
from .ssd.model import build_ssd, load_params_strict, split_ssd
from .ssd.student import build_student

__all__ = ['Detector', 'meta_path', 'save_detector', 'load_detector', 'build_from_meta']


class Detector(HybridBlock):
    """A backbone in front of an SSD head: ``head(backbone(x))``.

    Parameters
    ----------
    backbone : HybridBlock
        Returns the list of feature maps.
    head : gankd.detectors.ssd.model.SSDHead
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


def build_from_meta(meta, ctx=mx.cpu()):
    """Build an initialised detector described by ``meta`` (random weights).

    Returns
    -------
    (Block, HybridBlock, SSDHead)
        The block whose params are saved, its backbone and its head.
    """
    if meta.get('kind') == 'ssd':
        net = build_ssd(ctx=ctx, **meta['ssd'])
        backbone, head = split_ssd(net)
        return net, backbone, head
    if meta.get('kind') == 'student':
        # The student's head has the teacher's architecture; its weights come from the file.
        _, head = split_ssd(build_ssd(ctx=ctx, **meta['teacher']))
        backbone = build_student(meta['student'], meta['teacher']['data_shape'],
                                 meta['teacher_shapes'], adapt=meta.get('adapt', 'mismatch'),
                                 teacher_name=meta['teacher']['base'], ctx=ctx)
        return Detector(backbone, head), backbone, head
    raise GankdError('unknown detector kind {!r} in its JSON file'.format(meta.get('kind')))


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
