"""The student backbone: another base network's stride-16 map, in the teacher's channels.

Its map replaces the teacher's as the input of the (copied) RPN and R-CNN head and as the
critics' "fake" sample, so it must have the teacher's spatial size for every image and
the teacher's channels; a 1x1 convolution maps the channels where they differ.
"""
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import HybridBlock, nn

from ...errors import GankdError
from ..ssd.model import MSRA
from .model import FEATURE_LAYERS, apply_train_recipe, base_network

__all__ = ['StudentBackbone', 'build_student', 'check_geometry', 'probe_features', 'map_shapes',
           'PROBE_SHAPES']


class StudentBackbone(HybridBlock):
    """A base network up to ``layer3``, then a 1x1 adapter where channels differ.

    Parameters
    ----------
    base : str
        GluonCV ResNet-v1b-style base (``gankd.detectors.faster_rcnn.model.BASE_NETWORKS``).
    teacher_channels, student_channels : int
        Channels of the teacher's map and of the base's own.
    adapt : {'mismatch', 'all'}
        A 1x1 convolution only where channels differ, or always.
    frozen_bn : bool
        BatchNorm with its running statistics (GluonCV's choice with ImageNet weights).
    pretrained_base : bool
    """
    #: The attribute holding the base's layers (``--syncbn`` rewrites its BatchNorms).
    features_attr = 'features'

    def __init__(self, base, teacher_channels, student_channels, adapt='mismatch',
                 frozen_bn=False, pretrained_base=False, **kwargs):
        super(StudentBackbone, self).__init__(**kwargs)
        if adapt not in ('mismatch', 'all'):
            raise GankdError("adapt must be 'mismatch' or 'all', got {!r}".format(adapt))
        self.frozen_bn = bool(frozen_bn)
        self.adapted_levels = [0] if adapt == 'all' or teacher_channels != student_channels \
            else []
        with self.name_scope():
            # Built in this block's name scope, so that its parameter names differ from
            # those of the head's top features (the same base network's layer4).
            net = base_network(base, frozen_bn, pretrained_base)
            self.features = nn.HybridSequential()
            for name in FEATURE_LAYERS:
                self.features.add(getattr(net, name))
            self.adapter = None
            if self.adapted_levels:
                self.adapter = nn.Conv2D(teacher_channels, kernel_size=1,
                                         in_channels=student_channels, weight_initializer=MSRA)

    def hybrid_forward(self, F, x):
        feat = self.features(x)
        return [self.adapter(feat) if self.adapter is not None else feat]


#: Input sizes ``(H, W)`` (multiples of the short side) at which the student's map must
#: have the teacher's size: square and both elongations, so that a stride that agrees
#: at one size by chance does not pass.
PROBE_SHAPES = ((1.0, 1.0), (1.0, 1.5), (1.5, 1.0))


def map_shapes(block, short, ctx=mx.cpu()):
    shapes = []
    with autograd.predict_mode():
        for fh, fw in PROBE_SHAPES:
            x = mx.nd.zeros((1, 3, int(short * fh), int(short * fw)), ctx=ctx)
            shapes.append(tuple(block(x).shape[1:]))
    return shapes


def probe_features(base):
    """``base`` up to ``layer3``, initialised at random on the CPU, for its map sizes."""
    net, layers = base_network(base, False), nn.HybridSequential()
    for name in FEATURE_LAYERS:
        layers.add(getattr(net, name))
    layers.initialize()
    return layers


def check_geometry(student_shapes, teacher_shapes, student, teacher):
    """Refuse a student whose map differs in size from the teacher's at any probe size."""
    if any(s[1:] != t[1:] for s, t in zip(student_shapes, teacher_shapes)):
        raise GankdError('student {} cannot match teacher {}: their strides differ (maps '
                         '(C, H, W) of {} for the student and {} for the teacher at input '
                         'sizes {} of the short side); the student map must have the '
                         "teacher's size for every image".format(
                             student, teacher, student_shapes, teacher_shapes,
                             list(PROBE_SHAPES)))


def build_student(base, short, teacher_features, adapt='mismatch', frozen_bn=False,
                  pretrained_base=False, teacher_name='teacher', ctx=mx.cpu()):
    """An initialised :class:`StudentBackbone` whose map fits the teacher's.

    Parameters
    ----------
    base : str
    short : int
        The short side images are resized to.
    teacher_features : HybridBlock or list of tuple
        The teacher's feature extractor (returning its map), or the teacher map's
        ``(C, H, W)`` at each of :data:`PROBE_SHAPES`.
    adapt, frozen_bn, pretrained_base
        See :class:`StudentBackbone`.
    teacher_name : str
        For the error message.
    ctx : mxnet.Context or list of mxnet.Context

    Returns
    -------
    StudentBackbone
    """
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if isinstance(teacher_features, (list, tuple)):
        teacher_shapes = [tuple(s) for s in teacher_features]
    else:
        teacher_shapes = [s for s in map_shapes(lambda x: teacher_features(x)[0], short,
                                                 ctx[0])]
    student_shapes = map_shapes(probe_features(base), short)
    check_geometry(student_shapes, teacher_shapes, base, teacher_name)
    student = StudentBackbone(base, teacher_shapes[0][0], student_shapes[0][0], adapt=adapt,
                              frozen_bn=frozen_bn, pretrained_base=pretrained_base)
    student.initialize(ctx=ctx)
    student.collect_params().reset_ctx(ctx)  # ImageNet weights were loaded on the CPU
    with autograd.predict_mode():
        student(mx.nd.zeros((1, 3, short, short), ctx=ctx[0]))
    if not pretrained_base:
        for name, param in student.features.collect_params().items():
            if name.endswith('weight') and len(param.shape) == 4:
                param.initialize(MSRA, ctx=ctx, force_reinit=True)
    # GluonCV's recipe on the base only: the adapter always trains.
    apply_train_recipe(student.features, frozen_bn)
    student.teacher_probe_shapes = teacher_shapes
    return student
