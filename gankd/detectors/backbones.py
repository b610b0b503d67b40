"""Small residual base networks for CPU-sized students, added to GluonCV's model zoo.

MobileNets trained from scratch learn slowly here: on the calibration data
(``results/README.md``) mobilenet0.5 validated 9 mAP after 750 iterations where
resnet18_v1 passed 20 after 375, and resnet10_v1_0.25 (as small as mobilenet0.25) 30
after 625. So the cheap students of the calibrated benchmark are ResNet-V1s with fewer blocks and
fewer channels: GluonCV's own ``ResNetV1`` and ``BasicBlockV1``, only configured
smaller. A name reads ``resnet<depth>_v1_<width>``: ``resnet10_v1_0.25`` has one basic
block per stage and a quarter of resnet18_v1's channels.

GluonCV's SSD and ``FeatureExpander`` look a base network up by name in the model zoo,
so the networks are registered there (importing this module does it); every part of
GluonCV that takes a model name (``get_model``, ``get_ssd``) then builds them like its
own. They have no ImageNet weights.
"""
from gluoncv.model_zoo import model_zoo
from gluoncv.model_zoo.resnet import BasicBlockV1, ResNetV1
from gluoncv.model_zoo.resnetv1b import BasicBlockV1b, ResNetV1b

__all__ = ['SMALL_RESNETS', 'SMALL_RESNETS_V1B', 'small_resnet', 'small_resnet_v1b',
           'ssd_feature_layers', 'register_small_resnets']

# name -> (blocks per stage, channels: stem then each stage)
_RESNET18_CHANNELS = (64, 64, 128, 256, 512)
SMALL_RESNETS = {
    'resnet10_v1_0.25': ((1, 1, 1, 1), 0.25),
    'resnet10_v1_0.5': ((1, 1, 1, 1), 0.5),
    'resnet10_v1': ((1, 1, 1, 1), 1.0),
    'resnet18_v1_0.5': ((2, 2, 2, 2), 0.5),
}


def _no_zoo_weights(name, pretrained, kwargs):
    """Refuse ``pretrained`` (these networks have no ImageNet weights) and drop the
    model zoo's download arguments from ``kwargs``."""
    if pretrained:
        raise ValueError('{} has no ImageNet weights; train it from scratch'.format(name))
    kwargs.pop('ctx', None)
    kwargs.pop('root', None)


def small_resnet(name, pretrained=False, classes=1000, **kwargs):
    """Build one of :data:`SMALL_RESNETS` (random weights; ``pretrained`` must be False).

    Parameters
    ----------
    name : str
        A key of :data:`SMALL_RESNETS`.
    pretrained : bool
        Accepted for the model zoo's signature; no ImageNet weights exist.
    classes : int
        Output classes of the (unused by SSD) classifier.

    Returns
    -------
    gluoncv.model_zoo.resnet.ResNetV1
    """
    _no_zoo_weights(name, pretrained, kwargs)
    layers, width = SMALL_RESNETS[name]
    channels = [int(c * width) for c in _RESNET18_CHANNELS]
    return ResNetV1(BasicBlockV1, list(layers), channels, classes=classes, **kwargs)


#: ResNet-v1b bases for Faster R-CNN on the CPU (its backbone is ``conv1`` to ``layer3``,
#: the R-CNN head's top ``layer4``): name -> blocks per stage; channels as resnet18_v1b's.
SMALL_RESNETS_V1B = {'resnet10_v1b': (1, 1, 1, 1)}


def small_resnet_v1b(name, pretrained=False, **kwargs):
    """Build one of :data:`SMALL_RESNETS_V1B`: GluonCV's ``ResNetV1b`` with
    ``BasicBlockV1b``, as its ``resnet18_v1b`` but with fewer blocks (random weights).

    Parameters
    ----------
    name : str
        A key of :data:`SMALL_RESNETS_V1B`.
    pretrained : bool
        Accepted for the model zoo's signature; no ImageNet weights exist.
    **kwargs
        ``ResNetV1b``'s (``dilated``, ``use_global_stats``, ...), as ``get_model`` passes
        them to ``resnet18_v1b``.

    Returns
    -------
    gluoncv.model_zoo.resnetv1b.ResNetV1b
    """
    _no_zoo_weights(name, pretrained, kwargs)
    return ResNetV1b(BasicBlockV1b, list(SMALL_RESNETS_V1B[name]), name_prefix='resnetv1b_',
                     **kwargs)


def ssd_feature_layers(name):
    """The SSD's first two levels: the last activations of stages 3 and 4 (stride 16 and
    32), named as GluonCV names resnet18_v1's (``stage3_activation1``, ...)."""
    layers, _ = SMALL_RESNETS[name]
    return ['stage3_activation{}'.format(layers[2] - 1),
            'stage4_activation{}'.format(layers[3] - 1)]


def register_small_resnets():
    """Make every :data:`SMALL_RESNETS` and :data:`SMALL_RESNETS_V1B` name known to
    ``gluoncv.model_zoo.get_model``."""
    # The model zoo has no public registration hook; its name table is the one place
    # get_model, get_ssd and FeatureExpander all consult.
    for name in SMALL_RESNETS:
        model_zoo._models.setdefault(name, lambda _n=name, **kw: small_resnet(_n, **kw))
    for name in SMALL_RESNETS_V1B:
        model_zoo._models.setdefault(name, lambda _n=name, **kw: small_resnet_v1b(_n, **kw))


register_small_resnets()
