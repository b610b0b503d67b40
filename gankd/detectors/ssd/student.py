"""The student: a small base network expanded to the teacher's six-level geometry.

The student's maps replace the teacher's as input to the (copied) SSD head and as the
"fake" samples of the critics, so they must have the teacher's number of levels,
spatial sizes and channels. Levels and sizes come from the SSD preset of the student's
base network; channels are matched by a 1x1 convolution per level (the GAN-KD author's
answer to the channel mismatch between MobileNet and ResNet-50).
"""
import warnings

import mxnet as mx
from mxnet.gluon import HybridBlock, nn
from gluoncv.nn.feature import FeatureExpander

from ...errors import GankdError
from .model import MSRA, init_from_scratch, require_pretrained_base, ssd_config

__all__ = ['StudentBackbone', 'build_student', 'check_geometry']


class StudentBackbone(HybridBlock):
    """Base network + SSD feature expansion + per-level 1x1 adapters.

    Parameters
    ----------
    base : str
        GluonCV base network name, e.g. ``'mobilenet1.0'``.
    data_shape : int
        Square input size (selects the expansion preset).
    teacher_channels : list of int
        Channels of the teacher's maps, one per level.
    student_channels : list of int
        Channels of the expanded student's maps, one per level.
    adapt : str
        ``'mismatch'``: a 1x1 conv only where channels differ; ``'all'``: on every level
        (as hint learning wants).
    pretrained_base : bool
        Load GluonCV's ImageNet weights for the base (must be on disk).
    """

    def __init__(self, base, data_shape, teacher_channels, student_channels, adapt='mismatch',
                 pretrained_base=False, **kwargs):
        super(StudentBackbone, self).__init__(**kwargs)
        if adapt not in ('mismatch', 'all'):
            raise GankdError("adapt must be 'mismatch' or 'all', got {!r}".format(adapt))
        cfg = ssd_config(base, data_shape)
        self.adapted_levels = [i for i, (t, s) in enumerate(zip(teacher_channels, student_channels))
                               if adapt == 'all' or t != s]
        with self.name_scope():
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                self.expander = FeatureExpander(
                    network=base, outputs=cfg['features'], num_filters=cfg['filters'],
                    use_1x1_transition=True, use_bn=True, reduce_ratio=1.0, min_depth=128,
                    global_pool=False, pretrained=pretrained_base)
            self.adapters = nn.HybridSequential()
            for level in self.adapted_levels:
                self.adapters.add(nn.Conv2D(
                    teacher_channels[level], kernel_size=1, in_channels=student_channels[level],
                    weight_initializer=MSRA))

    def hybrid_forward(self, F, x):
        maps = list(self.expander(x))
        for adapter, level in zip(self.adapters, self.adapted_levels):
            maps[level] = adapter(maps[level])
        return maps


def check_geometry(student_shapes, teacher_shapes, student, teacher):
    """Refuse a student whose levels or spatial sizes differ from the teacher's."""
    if len(student_shapes) != len(teacher_shapes) or any(
            s[1:] != t[1:] for s, t in zip(student_shapes, teacher_shapes)):
        raise GankdError('student {} cannot match teacher {}: feature maps (C, H, W) are {} '
                         'for the student and {} for the teacher; the number of levels and '
                         'spatial sizes must agree'.format(student, teacher, student_shapes,
                                                           teacher_shapes))


def build_student(base, data_shape, teacher_shapes, adapt='mismatch', pretrained_base=False,
                  teacher_name='teacher', ctx=mx.cpu()):
    """Build an initialised :class:`StudentBackbone` whose maps fit the teacher's.

    Parameters
    ----------
    base : str
        Student base network.
    data_shape : int
    teacher_shapes : list of tuple
        ``(C, H, W)`` of each teacher map (see :func:`gankd.detectors.ssd.model.feature_shapes`).
    adapt : str
        See :class:`StudentBackbone`.
    pretrained_base : bool
    teacher_name : str
        Used in the error message.
    ctx : mxnet.Context or list of mxnet.Context

    Returns
    -------
    StudentBackbone
    """
    teacher_channels = [s[0] for s in teacher_shapes]
    # Probe the unadapted expansion once for its shapes, then build the real one.
    probe = StudentBackbone(base, data_shape, teacher_channels, teacher_channels, adapt='mismatch',
                            pretrained_base=False)
    probe.initialize()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        maps = probe.expander(mx.nd.zeros((1, 3, data_shape, data_shape)))
    student_shapes = [tuple(m.shape[1:]) for m in maps]
    check_geometry(student_shapes, [tuple(t) for t in teacher_shapes], base, teacher_name)
    if pretrained_base:
        require_pretrained_base(base)
    student = StudentBackbone(base, data_shape, teacher_channels,
                              [s[0] for s in student_shapes], adapt=adapt,
                              pretrained_base=pretrained_base)
    init_from_scratch(student, data_shape, ctx, reinit=not pretrained_base)
    return student
