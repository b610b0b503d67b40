"""Building GluonCV SSDs from presets and splitting them into backbone and head.

The GAN-KD teacher is a trained GluonCV SSD cut in two: its backbone (``ssd.features``,
the part that produces the six feature maps) and its head (per-level class and box
predictors, anchors, decoders and NMS). :class:`SSDHead` is that head as a standalone
block, so ``head(backbone(x))`` is exactly ``ssd(x)`` in both training and inference
mode, and a student backbone can be plugged into it.
"""
import math
import os
import warnings

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import HybridBlock
from gluoncv.model_zoo.ssd.ssd import get_ssd

from ...data.voc import VOC_CLASSES
from ...errors import GankdError
from ..detector import load_params_strict
from ..backbones import SMALL_RESNETS, ssd_feature_layers  # importing registers them

__all__ = ['FEATURE_LAYERS', 'VOC_CLASSES', 'ssd_config', 'build_ssd', 'SSDHead', 'ssd_loss',
           'split_ssd', 'fresh_head', 'copy_head', 'feature_shapes', 'load_params_strict',
           'zoo_params_file', 'build_teacher', 'init_from_scratch', 'cached_zoo_file',
           'require_pretrained_base']


# Internal layers of each base network that become the first SSD levels (stride 16 and
# 32); the remaining levels are added by GluonCV's FeatureExpander. These are the layers
# of GluonCV's own SSD presets; mobilenetv2 has no SSD preset in GluonCV, so its layers
# are the last activations at stride 16 and 32.
FEATURE_LAYERS = {
    'resnet18_v1': ['stage3_activation1', 'stage4_activation1'],
    'resnet34_v1': ['stage3_activation5', 'stage4_activation2'],
    'resnet50_v1': ['stage3_activation5', 'stage4_activation2'],
    'resnet101_v2': ['stage3_activation22', 'stage4_activation2'],
    'mobilenet1.0': ['relu22_fwd', 'relu26_fwd'],
    'mobilenet0.75': ['relu22_fwd', 'relu26_fwd'],
    'mobilenet0.5': ['relu22_fwd', 'relu26_fwd'],
    'mobilenet0.25': ['relu22_fwd', 'relu26_fwd'],
    'mobilenetv2_1.0': ['features_linearbottleneck13_relu60_relu6', 'features_relu61_relu6'],
    'mobilenetv2_0.75': ['features_linearbottleneck13_relu60_relu6', 'features_relu61_relu6'],
    'mobilenetv2_0.5': ['features_linearbottleneck13_relu60_relu6', 'features_relu61_relu6'],
}
FEATURE_LAYERS.update({name: ssd_feature_layers(name) for name in SMALL_RESNETS})

# Channels of the four levels FeatureExpander appends (GluonCV's 512 presets; the
# mobilenet0.25 preset uses half, and so do the narrow ResNets).
HALF_EXTRA_FILTERS = [256, 256, 128, 128]
EXTRA_FILTERS = {name: HALF_EXTRA_FILTERS for name in
                 ('mobilenet0.25', 'resnet10_v1_0.25', 'resnet10_v1_0.5', 'resnet18_v1_0.5')}
DEFAULT_EXTRA_FILTERS = [512, 512, 256, 256]

# Anchor sizes of GluonCV's 512 presets, in pixels at 512; scaled for other shapes.
ANCHOR_SIZES_512 = {'voc': [51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492],
                    'coco': [51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72]}
# MSRA initialisation, as GluonCV uses for the layers FeatureExpander appends.
MSRA = mx.init.Xavier(rnd_type='gaussian', factor_type='out', magnitude=2)

ANCHOR_RATIOS = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2


def _level_sizes(data_shape, num_levels=6, first_stride=16):
    """Spatial sizes of the SSD levels: stride 16, 32, then halving (ceil) per level."""
    size = int(math.ceil(data_shape / first_stride))
    sizes = []
    for _ in range(num_levels):
        sizes.append(size)
        size = int(math.ceil(size / 2))
    return sizes


def ssd_config(base, data_shape=512, classes=VOC_CLASSES, dataset='voc'):
    """The SSD preset for a base network, data shape and class list.

    At ``data_shape=512`` with the VOC classes this is exactly GluonCV's
    ``ssd_512_<base>_voc`` (same layers, filters, anchors), so model-zoo weights load.
    For other shapes the anchor sizes scale with the shape and the steps follow the
    feature-map sizes.

    Parameters
    ----------
    base : str
        Base network name in GluonCV's model zoo, e.g. ``'resnet50_v1'``.
    data_shape : int
        Square input size.
    classes : sequence of str
        Foreground class names.
    dataset : str
        ``'voc'`` or ``'coco'`` (selects the anchor sizes).

    Returns
    -------
    dict
        Keyword arguments for :func:`build_ssd`, JSON-serialisable.
    """
    if base not in FEATURE_LAYERS:
        raise GankdError('unsupported base network {!r}; choose one of {}'.format(
            base, ', '.join(sorted(FEATURE_LAYERS))))
    if data_shape < 64 or data_shape % 32:
        raise GankdError('--data-shape must be a multiple of 32 and at least 64, got {}'
                         .format(data_shape))
    scale = data_shape / 512.0
    sizes = [round(s * scale, 4) for s in ANCHOR_SIZES_512.get(dataset, ANCHOR_SIZES_512['voc'])]
    steps = [data_shape / s for s in _level_sizes(data_shape)]
    steps = [int(s) if float(s).is_integer() else s for s in steps]
    return dict(base=base, data_shape=int(data_shape), classes=list(classes), dataset=dataset,
                features=FEATURE_LAYERS[base],
                filters=EXTRA_FILTERS.get(base, DEFAULT_EXTRA_FILTERS),
                sizes=sizes, ratios=ANCHOR_RATIOS, steps=steps)


def build_ssd(base, data_shape, classes, dataset, features, filters, sizes, ratios, steps,
              ctx=mx.cpu(), pretrained_base=False):
    """Build an initialised GluonCV SSD.

    Parameters
    ----------
    base, data_shape, classes, dataset, features, filters, sizes, ratios, steps
        As returned by :func:`ssd_config`.
    ctx : mxnet.Context or list of mxnet.Context
    pretrained_base : bool
        Start the base network from GluonCV's ImageNet weights (which must be on disk);
        otherwise everything is trained from scratch.

    Returns
    -------
    gluoncv.model_zoo.ssd.SSD
    """
    if pretrained_base:
        require_pretrained_base(base)
    with warnings.catch_warnings():
        # FeatureExpander warns that it cannot infer the input type; it is float32.
        warnings.simplefilter('ignore')
        net = get_ssd(base, data_shape, features=features, filters=filters, sizes=sizes,
                      ratios=ratios, steps=steps, classes=classes, dataset=dataset,
                      pretrained=False, pretrained_base=pretrained_base)
        init_from_scratch(net, data_shape, ctx, reinit=not pretrained_base)
    return net


def init_from_scratch(net, data_shape, ctx=mx.cpu(), reinit=True):
    """Initialise a network for training from scratch and resolve its shapes.

    MXNet's default (uniform +-0.07) stalls deep networks trained without a pretrained
    base, so every convolution and dense weight of the backbone is drawn MSRA-style, as
    GluonCV does for the layers FeatureExpander appends.
    """
    net.initialize(ctx=ctx)
    # Deferred shapes are resolved by one forward pass, so weights can be loaded or copied.
    ctx0 = ctx[0] if isinstance(ctx, (list, tuple)) else ctx
    with autograd.train_mode():
        net(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx0))
    if not reinit:
        return  # pretrained base: GluonCV already initialised the layers it appended
    # The SSD's predictors keep GluonCV's own Xavier initialisation.
    body = getattr(net, 'features', net)
    for name, param in body.collect_params().items():
        if name.endswith('weight') and len(param.shape) >= 2:
            param.initialize(MSRA, ctx=ctx, force_reinit=True)


class SSDHead(HybridBlock):
    """The head of an SSD as a block of its own.

    Takes the list of feature maps and returns what :class:`gluoncv.model_zoo.SSD`
    returns: ``(cls_preds, box_preds, anchors)`` in training mode and
    ``(ids, scores, bboxes)`` after decoding and NMS in inference mode.

    Parameters
    ----------
    class_predictors, box_predictors, anchor_generators : mxnet.gluon.nn.HybridSequential
        One block per level, taken from an SSD (parameters are shared, not copied).
    bbox_decoder, cls_decoder : HybridBlock
        The SSD's decoders.
    num_classes : int
        Number of foreground classes.
    nms_thresh, nms_topk, post_nms : float, int, int
        NMS settings as in :meth:`SSD.set_nms`.
    """

    def __init__(self, class_predictors, box_predictors, anchor_generators, bbox_decoder,
                 cls_decoder, num_classes, nms_thresh=0.45, nms_topk=400, post_nms=100,
                 **kwargs):
        super(SSDHead, self).__init__(**kwargs)
        self.class_predictors = class_predictors
        self.box_predictors = box_predictors
        self.anchor_generators = anchor_generators
        self.bbox_decoder = bbox_decoder
        self.cls_decoder = cls_decoder
        self.num_classes = num_classes
        self.nms_thresh, self.nms_topk, self.post_nms = nms_thresh, nms_topk, post_nms
        self._graph_is_training = None

    def set_nms(self, nms_thresh=0.45, nms_topk=400, post_nms=100):
        """Set the NMS parameters used in inference mode."""
        self._clear_cached_op()
        self.nms_thresh, self.nms_topk, self.post_nms = nms_thresh, nms_topk, post_nms

    def forward(self, features):
        # The graph differs between training and inference (decoding and NMS), and a
        # hybridised block caches one graph; rebuild it only when the mode changes.
        training = autograd.is_training()
        if training != self._graph_is_training:
            self._clear_cached_op()
            self._graph_is_training = training
        return super(SSDHead, self).forward(list(features))

    def raw_outputs(self, F, features):
        """``(cls_preds, box_preds, anchors)`` before decoding and NMS, in any mode.

        What the head's predictors give; :mod:`gankd.deploy` exports it for runtimes
        whose NMS differs from MXNet's.
        """
        cls_preds = [F.flatten(F.transpose(cp(feat), (0, 2, 3, 1)))
                     for feat, cp in zip(features, self.class_predictors)]
        box_preds = [F.flatten(F.transpose(bp(feat), (0, 2, 3, 1)))
                     for feat, bp in zip(features, self.box_predictors)]
        anchors = [F.reshape(ag(feat), shape=(1, -1))
                   for feat, ag in zip(features, self.anchor_generators)]
        cls_preds = F.concat(*cls_preds, dim=1).reshape((0, -1, self.num_classes + 1))
        box_preds = F.concat(*box_preds, dim=1).reshape((0, -1, 4))
        anchors = F.concat(*anchors, dim=1).reshape((1, -1, 4))
        return [cls_preds, box_preds, anchors]

    def hybrid_forward(self, F, features):
        cls_preds, box_preds, anchors = self.raw_outputs(F, features)
        if autograd.is_training():
            return [cls_preds, box_preds, anchors]
        bboxes = self.bbox_decoder(box_preds, anchors)
        cls_ids, scores = self.cls_decoder(F.softmax(cls_preds, axis=-1))
        results = []
        for i in range(self.num_classes):
            cls_id = cls_ids.slice_axis(axis=-1, begin=i, end=i + 1)
            score = scores.slice_axis(axis=-1, begin=i, end=i + 1)
            results.append(F.concat(*[cls_id, score, bboxes], dim=-1))
        result = F.concat(*results, dim=1)
        if 0 < self.nms_thresh < 1:
            result = F.contrib.box_nms(
                result, overlap_thresh=self.nms_thresh, topk=self.nms_topk, valid_thresh=0.01,
                id_index=0, score_index=1, coord_start=2, force_suppress=False)
            if self.post_nms > 0:
                result = result.slice_axis(axis=1, begin=0, end=self.post_nms)
        ids = F.slice_axis(result, axis=2, begin=0, end=1)
        scores = F.slice_axis(result, axis=2, begin=1, end=2)
        bboxes = F.slice_axis(result, axis=2, begin=2, end=6)
        return ids, scores, bboxes


def ssd_loss(negative_mining_ratio=3, rho=1.0, lambd=1.0):
    """GluonCV's ``SSDMultiBoxLoss`` as every SSD loss of this project uses it.

    ``min_hard_negatives`` equals the mining ratio: an image with positives mines
    ``ratio * positives >= ratio`` hard negatives, exactly as with GluonCV's default of 0,
    while an image without objects (all anchors negative) now mines ``ratio`` of them
    instead of none, so background images train as background rather than adding nothing.
    """
    from gluoncv.loss import SSDMultiBoxLoss
    return SSDMultiBoxLoss(negative_mining_ratio=negative_mining_ratio, rho=rho, lambd=lambd,
                           min_hard_negatives=negative_mining_ratio)


def split_ssd(ssd):
    """Split a GluonCV SSD into its backbone and a standalone :class:`SSDHead`.

    Both parts share the SSD's parameters, so saving ``ssd`` saves them.

    Parameters
    ----------
    ssd : gluoncv.model_zoo.ssd.SSD

    Returns
    -------
    (HybridBlock, SSDHead)
        The backbone (returns the list of feature maps) and the head.
    """
    head = SSDHead(ssd.class_predictors, ssd.box_predictors, ssd.anchor_generators,
                   ssd.bbox_decoder, ssd.cls_decoder, ssd.num_classes,
                   ssd.nms_thresh, ssd.nms_topk, ssd.post_nms)
    return ssd.features, head


def fresh_head(config, ctx=mx.cpu()):
    """A newly initialised head of the SSD that ``config`` describes.

    Parameters
    ----------
    config : dict
        An :func:`ssd_config`.
    ctx : mxnet.Context or list of mxnet.Context

    Returns
    -------
    SSDHead
    """
    return split_ssd(build_ssd(ctx=ctx, **config))[1]


def copy_head(config, head, ctx=mx.cpu()):
    """A trainable copy of ``head``: same architecture, its own parameters, same values.

    Parameters
    ----------
    config : dict
        The :func:`ssd_config` the head was built from.
    head : SSDHead
    ctx : mxnet.Context or list of mxnet.Context

    Returns
    -------
    SSDHead
    """
    new = fresh_head(config, ctx=ctx)
    src = head._collect_params_with_prefix()
    for name, param in new._collect_params_with_prefix().items():
        param.set_data(src[name].data())
    return new


def feature_shapes(backbone, data_shape, ctx=mx.cpu()):
    """Shapes ``(C, H, W)`` of the maps a backbone gives for one ``data_shape`` image."""
    maps = backbone(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx))
    return [tuple(m.shape[1:]) for m in maps]


def cached_zoo_file(name):
    """Where GluonCV keeps model-zoo weights ``name`` (``$MXNET_HOME/models`` or
    ``~/.mxnet/models``), or None when the model zoo has no such weights. Never
    downloads."""
    from gluoncv.model_zoo.model_store import _model_sha1, short_hash
    if name not in _model_sha1:
        return None
    root = os.path.join(os.environ.get('MXNET_HOME', os.path.join('~', '.mxnet')), 'models')
    return os.path.join(os.path.expanduser(root), '{}-{}.params'.format(name, short_hash(name)))


def zoo_params_file(config):
    """Name and cache path of the GluonCV model-zoo SSD for this preset (path None when
    GluonCV has no such model)."""
    name = 'ssd_{}_{}_{}'.format(config['data_shape'], config['base'], config['dataset'])
    return name, cached_zoo_file(name)


def require_pretrained_base(base):
    """Refuse ``--pretrained-base`` when GluonCV's ImageNet weights are not on disk."""
    path = cached_zoo_file(base)
    if path is None or not os.path.isfile(path):
        raise GankdError('ImageNet weights for {} not found{} (no download is attempted); '
                         'place them there or train without --pretrained-base'.format(
                             base, ' at ' + path if path else ' in the GluonCV model zoo'))


def build_teacher(config, params=None, ctx=mx.cpu()):
    """Build the teacher SSD and load its trained weights.

    Parameters
    ----------
    config : dict
        From :func:`ssd_config`.
    params : str or None
        A ``.params`` file; None means GluonCV's model-zoo file for this preset, which
        must already be on disk (no download is attempted).
    ctx : mxnet.Context or list of mxnet.Context

    Returns
    -------
    gluoncv.model_zoo.ssd.SSD
    """
    if params is None:
        name, path = zoo_params_file(config)
        if path is None:
            raise GankdError('GluonCV has no model-zoo weights for {}; train a teacher with '
                             'scripts/train_ssd.py and pass --teacher-params'.format(name))
        if not os.path.isfile(path):
            raise GankdError('model-zoo weights for {} not found at {} (no download is '
                             'attempted); pass --teacher-params FILE'.format(name, path))
        params = path
    net = build_ssd(ctx=ctx, **config)  # random weights, then the teacher's
    load_params_strict(net, params, ctx=ctx, what='teacher ssd_{}_{}'.format(
        config['data_shape'], config['base']))
    return net
