"""Teacher-forced sections: ``Loss_lit``, :class:`TeacherForcedTerm` (LIT, Koratana et al.
2019), each section of the student's backbone fed the teacher's value at the cut before
it (:func:`gankd.distill.recorders.forced_view`)."""
import mxnet as mx
from mxnet.gluon import nn

from ..detectors.ssd.model import MSRA
from ..errors import GankdError
from .base import DistillTerm, register_term
from .feature import batch_powers, relative_sum
from .recorders import forced_view, layer_sides, parse_layers

__all__ = ['TeacherForcedTerm', 'LIT_CONNECTORS']

LIT_CONNECTORS = ('none', '1x1')


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
    connector : {'none', '1x1'}
        ``lit.connector=1x1`` (this project's extension; LIT itself needs the teacher's
        shapes): for a narrower student, a cut whose channels differ (same spatial size)
        gets two 1x1 convolutions. One maps the teacher's value to the student's
        channels before the section reads it; the other maps the section's output at
        that cut to the teacher's channels to be compared. A third error keeps the
        first one honest: the mapped teacher value must match the student's own value
        at the cut, ``mean((in(t) - s) ** 2)`` relative to the student's power, or the
        sections would learn from inputs the student never produces.
    """
    name = 'Loss_lit'
    options = ('layers', 'connector')

    @classmethod
    def from_context(cls, context, weight=1.0, **options):
        return cls(context.student, context.ctx, weight=weight, **options)

    def __init__(self, student, ctx=None, weight=1.0, layers='', connector='none'):
        super(TeacherForcedTerm, self).__init__(weight)
        self.records = parse_layers(layers)
        if not self.records:
            raise GankdError('lit.layers must name the cuts, e.g. lit.layers=pool0_fwd,'
                             'stage1_activation1,stage2_activation1')
        if connector not in LIT_CONNECTORS:
            raise GankdError('lit.connector must be one of {}, got {!r}'.format(
                ', '.join(LIT_CONNECTORS), connector))
        self.connector, self.ctx = connector, ctx
        # Made by bind_records for the cuts whose channels differ: cut -> 1x1 conv.
        self.input_connectors = self.output_connectors = None
        self._in_conv, self._out_conv = {}, {}
        self.sections = forced_view(student, [layer_sides(e)[0] for e in self.records],
                                    what='the student')
        self.sections.hybridize(static_alloc=True, static_shape=True)

    def bind_records(self, student_shapes, teacher_shapes):
        """Refuse a cut whose shape differs between student and teacher (the student's
        section reads the teacher's value there), unless ``connector='1x1'`` and only its
        channels differ: then make that cut's connectors."""
        narrower = []
        for entry in self.records:
            s, t = tuple(student_shapes[entry]), tuple(teacher_shapes[entry])
            if s == t:
                continue
            if self.connector == 'none' or s[1:] != t[1:]:
                raise GankdError('lit.layers: cut {} has shape {} in the student and {} in '
                                 'the teacher; a cut must have the same shape in both{}'
                                 .format(entry, s, t, '' if s[1:] != t[1:] else
                                         ' (or, with lit.connector=1x1, the same size)'))
            narrower.append((entry, s[0], t[0]))
        if not narrower:
            return
        self.input_connectors = nn.HybridSequential(prefix='lit_in_')
        self.output_connectors = nn.HybridSequential(prefix='lit_out_')
        for entry, cs, ct in narrower:
            with self.input_connectors.name_scope():
                self._in_conv[entry] = nn.Conv2D(cs, 1, in_channels=ct,
                                                 weight_initializer=MSRA)
            self.input_connectors.add(self._in_conv[entry])
            if entry != self.records[0]:  # the first cut is only ever an input
                with self.output_connectors.name_scope():
                    self._out_conv[entry] = nn.Conv2D(ct, 1, in_channels=cs,
                                                      weight_initializer=MSRA)
                self.output_connectors.add(self._out_conv[entry])
        for block in self._connector_blocks().values():
            block.initialize(ctx=self.ctx)
            block.hybridize(static_alloc=True)

    def _targets(self, cap):
        # The teacher's maps and later cuts, then the student's own value at each
        # connected cut (what the mapped teacher value must match).
        return ([t.detach() for t in cap.teacher_maps] +
                [cap.teacher_records[layer].detach() for layer in self.records[1:]] +
                [cap.student_records[layer].detach() for layer in self._in_conv])

    def _errors(self, cap):
        fed = [cap.teacher_records[layer].detach() for layer in self.records]
        fed = [self._in_conv[layer](t) if layer in self._in_conv else t
               for layer, t in zip(self.records, fed)]
        outputs = list(self.sections(*fed))
        n_maps = len(outputs) - len(self.records) + 1
        outputs[n_maps:] = [self._out_conv[layer](o) if layer in self._out_conv else o
                            for layer, o in zip(self.records[1:], outputs[n_maps:])]
        wanted = self._targets(cap)
        errors = [mx.nd.square(o - t).mean() for o, t in zip(outputs, wanted)]
        # Not detached: the student's cut is drawn towards the mapped teacher value too.
        connected = [layer for layer in self.records if layer in self._in_conv]
        errors += [mx.nd.square(fed[self.records.index(layer)] -
                                cap.student_records[layer]).mean() for layer in connected]
        return errors

    def losses(self, captures):
        powers = batch_powers(captures, [self._targets(c) for c in captures])
        return [relative_sum(self._errors(cap), powers) * cap.fraction for cap in captures]

    def loss(self, cap):
        return self.losses([cap])[0] / cap.fraction

    def description(self):
        out = {'lit_layers': list(self.records)}
        if self.connector != 'none':  # only when set, so earlier records stay as they were
            out['lit_connector'] = self.connector
        return out

    def _connector_blocks(self):
        blocks = (('lit_input_connectors', self.input_connectors),
                  ('lit_output_connectors', self.output_connectors))
        return {name: block for name, block in blocks if block is not None and len(block)}

    def student_params(self):
        return [p for block in self._connector_blocks().values()
                for p in block.collect_params().values()]

    def blocks(self):
        return self._connector_blocks()
