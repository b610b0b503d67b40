"""Building GluonCV Faster R-CNNs from presets and cutting them into backbone and head.

Two kinds of preset, both built through GluonCV's ``get_faster_rcnn``:

* the model zoo's ``faster_rcnn_resnet50_v1b_voc`` and ``faster_rcnn_resnet101_v1d_voc``
  (:data:`ZOO_PRESETS`), with GluonCV's own settings (600 px short side, 12000/2000
  training proposals, BatchNorm frozen for ImageNet weights), so that model-zoo weights
  load;
* a base network name (``resnet18_v1b``, ``resnet50_v1b``, ...), sized for short sides of
  a few hundred pixels or less and for training from scratch: anchor sizes, the minimum
  proposal size and the number of proposals follow the short side, and BatchNorm is not
  frozen.

The backbone is the base network up to ``layer3`` (stride 16, the RPN's input); the
head (:class:`gankd.detectors.faster_rcnn.head.FasterRCNNHead`) is the RPN and the R-CNN
part: ``layer4`` as top features, the class and box predictors.
"""
import os
import warnings

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import HybridBlock, nn

from ...errors import GankdError
from ..detector import load_params_strict
from ..ssd.model import MSRA, cached_zoo_file, require_pretrained_base

__all__ = ['ZOO_PRESETS', 'BASE_NETWORKS', 'FEATURE_LAYERS', 'TOP_LAYERS', 'frcnn_config',
           'build_faster_rcnn', 'base_network', 'OneLevel', 'split_faster_rcnn',
           'feature_shapes', 'build_teacher', 'fresh_head', 'copy_head', 'TRAIN_PATTERNS',
           'apply_train_recipe', 'min_anchors']

#: The layers of a ResNet-v1b-style base that form the backbone (stride 16) and the top
#: features of the R-CNN head, as in GluonCV's Faster R-CNN presets.
FEATURE_LAYERS = ('conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3')
TOP_LAYERS = ('layer4',)

#: Base networks with those layers in GluonCV's model zoo (``resnetv1b``), and this
#: project's ``resnet10_v1b`` (``gankd.detectors.backbones``, for CPU-sized runs).
BASE_NETWORKS = ('resnet10_v1b', 'resnet18_v1b', 'resnet34_v1b', 'resnet50_v1b', 'resnet101_v1b',
                 'resnet152_v1b', 'resnet50_v1c', 'resnet101_v1c', 'resnet50_v1d',
                 'resnet101_v1d', 'resnet152_v1d')

#: GluonCV's parameters trained with frozen BatchNorm (``train_patterns`` of its presets):
#: the stem, ``layer1`` and every BatchNorm stay as the ImageNet weights left them.
TRAIN_PATTERNS = '|'.join(['.*dense', '.*rpn', '.*down(2|3|4)_conv', '.*layers(2|3|4)_conv'])

# GluonCV's VOC presets (gluoncv/model_zoo/rcnn/faster_rcnn/predefined_models.py).
_ZOO_SETTINGS = dict(
    short=600, max_size=1000, nms_thresh=0.3, nms_topk=400, post_nms=100, roi_mode='align',
    roi_size=[14, 14], strides=16, clip=None, rpn_channel=1024, base_size=16,
    scales=[2, 4, 8, 16, 32], ratios=[0.5, 1, 2], alloc_size=[128, 128], rpn_nms_thresh=0.7,
    rpn_train_pre_nms=12000, rpn_train_post_nms=2000, rpn_test_pre_nms=6000,
    rpn_test_post_nms=300, rpn_min_size=16, num_sample=128, pos_iou_thresh=0.5,
    pos_ratio=0.25, max_num_gt=100, frozen_bn=True)

#: Model-zoo presets by name: their base network.
ZOO_PRESETS = {'faster_rcnn_resnet50_v1b_voc': 'resnet50_v1b',
               'faster_rcnn_resnet101_v1d_voc': 'resnet101_v1d'}

ROI_MODES = ('align', 'pool')


def min_anchors(config, short=None):
    """Anchors of the smallest map the RPN sees: a square image of the short side."""
    side = -(-int(short or config['short']) // int(config['strides']))  # ceil
    return side * side * len(config['scales']) * len(config['ratios'])


def frcnn_config(network, data_shape=600, classes=(), dataset='voc', roi_mode='align',
                 max_size=None, num_sample=None, roi_size=None):
    """The Faster R-CNN preset for ``network`` at short side ``data_shape``.

    Parameters
    ----------
    network : str
        A model-zoo preset of :data:`ZOO_PRESETS` (GluonCV's settings; ``data_shape`` and
        ``max_size`` override its 600 and 1000), or a base network of
        :data:`BASE_NETWORKS` (settings for small images and training from scratch).
    data_shape : int
        Short side of the resized images (GluonCV's ``short``).
    classes : sequence of str
    dataset : str
    roi_mode : {'align', 'pool'}
        RoIAlign or RoIPooling (``--roi-mode``).
    max_size : int or None
        Longest side after resizing; None: the preset's (zoo) or ``5/3`` of the short side
        (GluonCV's 1000 for 600).
    num_sample : int or None
        Proposals sampled per image for the R-CNN loss; None: the preset's (128 zoo, 64).
    roi_size : int or None
        Side of the pooled RoI features (GluonCV's 14); the R-CNN head's cost grows with
        its square, so tiny CPU runs may take 7.

    Returns
    -------
    dict
        JSON-serialisable keyword arguments of :func:`build_faster_rcnn`.
    """
    if roi_mode not in ROI_MODES:
        raise GankdError('--roi-mode must be align or pool, got {!r}'.format(roi_mode))
    short = int(data_shape)
    if short < 64:
        raise GankdError('--data-shape (the short side) must be at least 64, got {}'.format(
            short))
    if network in ZOO_PRESETS:
        cfg = dict(_ZOO_SETTINGS, base=ZOO_PRESETS[network], preset=network)
        cfg['max_size'] = int(max_size or round(cfg['max_size'] * short / cfg['short']))
        cfg['short'] = short
    elif network in BASE_NETWORKS:
        scale = min(1.0, short / 600.0)
        cfg = dict(_ZOO_SETTINGS, base=network, preset=None, short=short,
                   max_size=int(max_size or round(short * 5 / 3.0)),
                   # Anchors and the smallest proposal scale with the image, as SSD's
                   # anchors do; 1000/256 proposals and 64 samples suit a few objects per
                   # image at a few hundred pixels and keep a CPU iteration short.
                   scales=[round(s * scale, 4) for s in (2, 4, 8, 16, 32)],
                   rpn_min_size=max(1, int(round(16 * scale))), rpn_channel=256,
                   rpn_train_pre_nms=1000, rpn_train_post_nms=256, rpn_test_pre_nms=1000,
                   rpn_test_post_nms=100, num_sample=64,
                   # From scratch, BatchNorm learns its statistics (GluonCV freezes it
                   # only for ImageNet weights and one image per device).
                   frozen_bn=False)
    else:
        raise GankdError('unsupported Faster R-CNN network {!r}; choose a model-zoo preset '
                         '({}) or a base network ({})'.format(
                             network, ', '.join(sorted(ZOO_PRESETS)), ', '.join(BASE_NETWORKS)))
    if cfg['max_size'] < short:
        raise GankdError('--max-size {} is smaller than the short side {}'.format(
            cfg['max_size'], short))
    cfg.update(classes=list(classes), dataset=dataset, roi_mode=roi_mode)
    if num_sample is not None:
        if int(num_sample) < 4:
            raise GankdError('--num-sample must be at least 4, got {}'.format(num_sample))
        cfg['num_sample'] = int(num_sample)
    if roi_size is not None:
        if int(roi_size) < 2:
            raise GankdError('--roi-size must be at least 2, got {}'.format(roi_size))
        cfg['roi_size'] = [int(roi_size), int(roi_size)]
    # GluonCV's RPN slices its post-NMS proposals out of all anchors of the image: more
    # proposals than anchors fail deep inside MXNet ("Invalid end for end=...").
    anchors = min_anchors(cfg)
    wanted = max(cfg['rpn_train_post_nms'], cfg['rpn_test_post_nms'])
    if anchors < wanted:
        raise GankdError('a {}x{} image gives the RPN {} anchors, fewer than its {} proposals; '
                         'use a short side of at least {}'.format(
                             short, short, anchors, wanted, _short_for(cfg, wanted)))
    return cfg


def _short_for(cfg, wanted):
    short = int(cfg['short'])
    while min_anchors(cfg, short) < wanted:
        short += 16
    return short


def base_network(base, frozen_bn, pretrained_base=False):
    """A GluonCV ResNet-v1b-style base network (not dilated: stride 16 at ``layer3``)."""
    from gluoncv.model_zoo import get_model
    if base not in BASE_NETWORKS:
        raise GankdError('unsupported base network {!r}; choose one of {}'.format(
            base, ', '.join(BASE_NETWORKS)))
    if pretrained_base:
        require_pretrained_base(base)
    return get_model(base, pretrained=pretrained_base, dilated=False,
                     use_global_stats=bool(frozen_bn))


def _layers(net, names):
    block = nn.HybridSequential()
    for name in names:
        block.add(getattr(net, name))
    return block


def build_faster_rcnn(base, preset, classes, dataset, short, max_size, roi_mode, roi_size,
                      frozen_bn, ctx=mx.cpu(), pretrained_base=False, **settings):
    """An initialised GluonCV ``FasterRCNN`` of a :func:`frcnn_config`.

    Built as GluonCV's presets are (``features`` = the base up to ``layer3``,
    ``top_features`` = ``layer4``), through ``get_faster_rcnn``, so a model-zoo preset
    has the parameter names and shapes of GluonCV's own and loads its weights. Without
    ``pretrained_base`` every convolution of the base is drawn MSRA-style (MXNet's
    default stalls deep networks trained from scratch); the RPN and the predictors keep
    GluonCV's initialisation.
    """
    from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import get_faster_rcnn
    net = base_network(base, frozen_bn, pretrained_base)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        frcnn = get_faster_rcnn(
            name=base, dataset=dataset, pretrained=False, features=_layers(net, FEATURE_LAYERS),
            top_features=_layers(net, TOP_LAYERS), classes=list(classes), short=short,
            max_size=max_size, train_patterns=TRAIN_PATTERNS if frozen_bn else None,
            roi_mode=roi_mode, roi_size=tuple(roi_size), per_device_batch_size=1,
            **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
    frcnn.initialize(ctx=ctx)
    # ImageNet weights were loaded on the CPU before: every parameter to the run's devices.
    frcnn.collect_params().reset_ctx(ctx)
    ctx0 = ctx[0] if isinstance(ctx, (list, tuple)) else ctx
    # Deferred shapes (the predictors' inputs) are resolved by one inference pass.
    with autograd.predict_mode():
        frcnn(mx.nd.zeros((1, 3, short, short), ctx=ctx0))
    if not pretrained_base:
        for block in (frcnn.features, frcnn.top_features):
            for name, param in block.collect_params().items():
                if name.endswith('weight') and len(param.shape) == 4:
                    param.initialize(MSRA, ctx=ctx, force_reinit=True)
    apply_train_recipe(frcnn, frozen_bn)
    return frcnn


def apply_train_recipe(block, frozen_bn, patterns=TRAIN_PATTERNS):
    """GluonCV's ``train_faster_rcnn.py`` recipe on ``block``'s parameters: no weight decay
    on biases and BatchNorm's gamma and beta; with frozen BatchNorm only the parameters of
    ``patterns`` train (the others get ``grad_req='null'``)."""
    for param in block.collect_params('.*beta|.*gamma|.*bias').values():
        param.wd_mult = 0.0
    if frozen_bn:
        trained = set(block.collect_params(patterns).keys())
        for name, param in block.collect_params().items():
            if name not in trained:
                param.grad_req = 'null'


class OneLevel(HybridBlock):
    """A feature extractor returning its one map as a list, as the loop's maps are."""

    def __init__(self, features, **kwargs):
        super(OneLevel, self).__init__(**kwargs)
        self.features = features

    def hybrid_forward(self, F, x):
        return [self.features(x)]


def split_faster_rcnn(net, ctx=None):
    """``(backbone, head)`` of a GluonCV ``FasterRCNN``, sharing its parameters.

    ``ctx``: the devices the head's own target generator lives on (default: those of
    the net's parameters).
    """
    from .head import FasterRCNNHead
    if ctx is None:
        ctx = net.class_predictor.weight.list_ctx()
    return OneLevel(net.features), FasterRCNNHead(net, ctx)


def feature_shapes(backbone, data_shape, ctx=mx.cpu()):
    """``(C, H, W)`` of the backbone's map for a square image of the short side."""
    size = data_shape[0] if isinstance(data_shape, (list, tuple)) else data_shape
    with autograd.predict_mode():
        maps = backbone(mx.nd.zeros((1, 3, int(size), int(size)), ctx=ctx))
    return [tuple(m.shape[1:]) for m in maps]


def fresh_head(config, ctx=mx.cpu()):
    """A newly initialised head of the Faster R-CNN ``config`` describes."""
    return split_faster_rcnn(build_faster_rcnn(ctx=ctx, **config), ctx)[1]


def copy_head(config, head, ctx=mx.cpu()):
    """A trainable copy of ``head``: the same architecture and values, its own
    parameters (those GluonCV's recipe freezes stay frozen)."""
    new = fresh_head(config, ctx=ctx)
    src = head._collect_params_with_prefix()
    for name, param in new._collect_params_with_prefix().items():
        param.set_data(src[name].data())
    return new


def _ctx_list(ctx):
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]


def build_teacher(config, params=None, ctx=mx.cpu()):
    """The teacher Faster R-CNN with its trained weights.

    ``params`` None means GluonCV's model-zoo file of the preset, which must already be
    on disk (no download is attempted); it is loaded as GluonCV loads it (parameters the
    file has beyond the model are ignored), any other file strictly.
    """
    what = 'teacher {}'.format(config.get('preset') or 'faster_rcnn_' + config['base'])
    if params is None:
        # Checked before building: a missing file should not cost a network's build.
        name = config.get('preset')
        path = cached_zoo_file(name) if name else None
        if path is None:
            # GluonCV 0.10.5 publishes faster_rcnn_resnet50_v1b_voc but not the ResNet-101
            # VOC preset the GAN-KD authors name as their teacher.
            raise GankdError('GluonCV publishes no model-zoo weights for {}; train a teacher '
                             'with scripts/train_faster_rcnn.py and pass --teacher-params'
                             .format(name or 'faster_rcnn_' + config['base']))
        if not os.path.isfile(path):
            raise GankdError('model-zoo weights for {} not found at {} (no download is '
                             'attempted); pass --teacher-params FILE'.format(name, path))
        net = build_faster_rcnn(ctx=ctx, **config)
        try:
            net.load_parameters(path, ctx=_ctx_list(ctx), ignore_extra=True)
        except (AssertionError, mx.base.MXNetError) as err:
            raise GankdError('{} does not fit the {}: {}'.format(
                path, what, str(err).splitlines()[0])) from None
        return net
    net = build_faster_rcnn(ctx=ctx, **config)
    load_params_strict(net, params, ctx=ctx, what=what)
    return net
