"""The frozen teacher's maps of a training batch, on the BatchNorm statistics chosen.

The student trains with BatchNorm on each batch's own statistics. A teacher in inference
mode normalises with its running statistics instead, so that even a student holding the
teacher's very weights does not reproduce the teacher's maps in training, and a feature
term is not zero there (measured in ``mini-voc-res``, results/README.md: the maps miss by
1 to 9% per level for the finished teacher, by 14 to 53% for the same teacher after 625
of its 5,000 iterations). With ``'batch'`` the teacher normalises each batch as the
student does, and a student with the teacher's weights has exactly the teacher's maps.
MMRazor calls the default
``teacher_norm_eval=True``; with its other setting the teacher's running statistics may
move, while here they stay as they are, so the teacher stays frozen (its evaluation,
checkpoints and resumes are unchanged).
"""
from mxnet import autograd

from ..errors import GankdError

__all__ = ['TEACHER_BN_CHOICES', 'teacher_maps']

TEACHER_BN_CHOICES = ('running', 'batch')


def _running_statistics(block):
    # Gluon's BatchNorm names them running_*; the extra layers GluonCV's FeatureExpander
    # builds from symbols, moving_* (16 of mini-voc-res's teacher's 56).
    return [p for p in block.collect_params().values()
            if p.name.endswith(('running_mean', 'running_var', 'moving_mean', 'moving_var'))]


def teacher_maps(teacher, x, statistics='running'):
    """The teacher's maps of ``x``, without a graph.

    Parameters
    ----------
    teacher : HybridBlock
        The frozen teacher backbone.
    x : NDArray
        A batch on one device.
    statistics : {'running', 'batch'}
        ``--teacher-bn``: BatchNorm on the teacher's running statistics (inference, the
        default), or on the batch's own, as the student's in training.

    Returns
    -------
    list of NDArray
    """
    if statistics == 'running':
        return teacher(x)
    if statistics != 'batch':
        raise GankdError('teacher BatchNorm statistics must be one of {}, got {!r}'.format(
            ', '.join(TEACHER_BN_CHOICES), statistics))
    ctx = x.context
    # Whether a training-mode forward pass moves BatchNorm's running statistics depends on
    # the kernel (MXNet's CPU kernel moves them in the backward pass, which the teacher
    # never runs); they are copied first and put back, so the teacher stays frozen on
    # every device. Only this device's copy is touched.
    stats = _running_statistics(teacher)
    saved = [p.data(ctx).copy() for p in stats]
    with autograd.pause(train_mode=True):
        maps = teacher(x)
    for p, value in zip(stats, saved):
        value.copyto(p.data(ctx))
    return maps
