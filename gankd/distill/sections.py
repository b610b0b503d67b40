"""Teacher-forced sections: ``Loss_lit``, :class:`TeacherForcedTerm` (LIT, Koratana et al.
2019), each section of the student's backbone fed the teacher's value at the cut before
it (:func:`gankd.distill.recorders.forced_view`)."""
import mxnet as mx

from ..errors import GankdError
from .base import DistillTerm, register_term
from .feature import batch_powers, relative_sum
from .recorders import forced_view, layer_sides, parse_layers

__all__ = ['TeacherForcedTerm']


@register_term('lit')
class TeacherForcedTerm(DistillTerm):
    """LIT's teacher-forced sections (Koratana et al. 2019, "LIT: Learned Intermediate
    Representation Training for Model Compression").

    The student's backbone is cut at ``layers`` (:func:`gankd.distill.recorders.forced_view`)
    and every section between two cuts is run on the teacher's value at the cut before
    it; each section's output is compared with the teacher's at the next cut, and the
    maps computed from the last cuts with the teacher's maps, each squared error relative
    to the teacher's power on it::

        sum over sections mean((section(t_before) - t_after) ** 2) / mean(t_after ** 2)

    So every section learns from the teacher's input at once instead of waiting for the
    sections before it to match; the student itself still runs end to end (for the
    head, and for ``hint`` when it is on: LIT pairs the sections with an end-to-end
    loss). A student of the teacher's architecture can meet it exactly. The sections run
    in a second forward and backward of the student's graph: the same number of updates
    at more cost each (in mini-voc-res's control, 1.35 times the time per iteration of
    the same run without it: results/README.md).

    Parameters
    ----------
    student : HybridBlock
        The student's backbone (its parameters are the ones trained).
    layers : str or sequence of str
        ``--distill-options lit.layers=pool0_fwd,stage2__plus1,...``: the cuts, in the
        graph's order, each with the teacher's shape (no connector). The first must cut
        every path from the input. ``student_layer:teacher_layer`` pairs a cut of the
        student with a teacher layer of another name, for a shallower student
        (``stage2__plus0:stage2__plus1``: the end of stage 2 in a one-block-per-stage
        ResNet and in resnet18_v1), LIT's own setting.
    """
    name = 'Loss_lit'
    options = ('layers',)

    @classmethod
    def from_context(cls, context, weight=1.0, **options):
        return cls(context.student, weight=weight, **options)

    def __init__(self, student, weight=1.0, layers=''):
        super(TeacherForcedTerm, self).__init__(weight)
        self.records = parse_layers(layers)
        if not self.records:
            raise GankdError('lit.layers must name the cuts, e.g. lit.layers=pool0_fwd,'
                             'stage1_activation1,stage2_activation1')
        self.sections = forced_view(student, [layer_sides(e)[0] for e in self.records],
                                    what='the student')
        self.sections.hybridize(static_alloc=True, static_shape=True)

    def bind_records(self, student_shapes, teacher_shapes):
        """Refuse a cut whose shape differs between student and teacher: the student's
        section reads the teacher's value there."""
        for entry in self.records:
            if tuple(student_shapes[entry]) != tuple(teacher_shapes[entry]):
                raise GankdError('lit.layers: cut {} has shape {} in the student and {} in '
                                 'the teacher; a cut must have the same shape in '
                                 'both'.format(entry, tuple(student_shapes[entry]),
                                               tuple(teacher_shapes[entry])))

    def _targets(self, cap):
        return ([t.detach() for t in cap.teacher_maps] +
                [cap.teacher_records[layer].detach() for layer in self.records[1:]])

    def losses(self, captures):
        targets = [self._targets(c) for c in captures]
        powers = batch_powers(captures, targets)
        out = []
        for cap, wanted in zip(captures, targets):
            outputs = self.sections(*[cap.teacher_records[layer].detach()
                                      for layer in self.records])
            errors = [mx.nd.square(s - t).mean() for s, t in zip(outputs, wanted)]
            out.append(relative_sum(errors, powers) * cap.fraction)
        return out

    def loss(self, cap):
        return self.losses([cap])[0] / cap.fraction

    def description(self):
        return {'lit_layers': list(self.records)}
