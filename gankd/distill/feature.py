"""Feature-level terms: the student's maps compared with the teacher's, level by level.

* ``Loss_hint``, :class:`HintTerm`: Chen et al. 2017 hint learning (seeds 001, 003).
* ``Loss_cosine``, :class:`CosineTerm`: GAN-KD's unpublished "cosine attention", with a
  formula of this project's own.

A term that needs a connector owns it as a Block; its parameters are returned by
:meth:`DistillTerm.student_params` (so the student's Trainer trains them) and the block by
:meth:`DistillTerm.blocks` (so checkpoints hold it).
"""
import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from ..detectors.ssd.model import MSRA
from ..errors import GankdError
from .base import DistillTerm, register_term
from .recorders import parse_layers

__all__ = ['HintTerm', 'CosineTerm', 'HINT_CONNECTORS', 'batch_powers', 'relative_sum']


HINT_CONNECTORS = ('1x1', 'none')
HINT_NORMALIZATIONS = ('none', 'level')
HINT_LAYER_LOSSES = ('l2', 'partial')


def batch_powers(captures, targets):
    """Per target, its mean square over the devices' captures (host floats).

    ``targets[d][i]`` is device ``d``'s i-th target. Weighted by the devices' shares and
    divided by their sum, so that one device's captures alone give that device's own
    powers.
    """
    share = float(sum(c.fraction for c in captures))
    return [sum(c.fraction * float(mx.nd.square(t[i]).mean().asscalar())
                for c, t in zip(captures, targets)) / share
            for i in range(len(targets[0]))]


def relative_sum(errors, powers):
    """``sum(error / power)``; a target that is zero everywhere (a dead level) keeps its
    plain error."""
    return sum(e / (p if p > 1e-12 else 1.0) for e, p in zip(errors, powers))


@register_term('hint')
class HintTerm(DistillTerm):
    """Hint learning (FitNets), as adapted to detection by Chen et al. 2017 (seeds 001, 003).

    Per level a 1x1 convolution (the adaptation layer) maps the student's map to the
    teacher's, and the squared error to the teacher's map is averaged over its elements:
    ``sum over levels mean((conv(s) - t) ** 2)``.

    The connector exists on every level even when channels already match, because Chen et
    al. found the adaptation layer itself important for the transfer. Where its input and
    output channels agree it starts as the identity, so training starts from the plain
    L2 hint and a student equal to the teacher has zero loss; elsewhere it is drawn
    MSRA-style like the student's own adapters.

    Parameters
    ----------
    shapes : list of tuple
        ``(C, H, W)`` of the teacher's maps.
    ctx : mxnet.Context or list of mxnet.Context
    weight : float
    student_channels : list of int or None
        Channels of the student's maps; None means the teacher's (the maps in
        :class:`Captures` are already adapted to the teacher's channels).
    connector : {'1x1', 'none'}
        ``--hint-connector``. ``'none'`` compares the maps the head receives with the
        teacher's directly, ``mean((s - t) ** 2)``: only then does a student that
        satisfies the hint give the teacher's head the teacher's own input. With a
        trainable 1x1 connector the hint can be met by ``conv(s)`` alone (measured: a
        student of the teacher's architecture, trained on hint alone into the teacher's
        frozen head, brought ``conv(s)`` to the teacher's detection loss, 2.99 against
        2.97, while ``s`` itself stayed at 6.30, its connectors 0.6 to 0.85 away from the
        identity in relative norm).
    normalize : {'none', 'level'}
        ``--distill-options hint.normalize=level`` divides each level's squared error by
        the mean square of the teacher's map on that level (in the batch, as a constant):
        every level's relative error counts alike. With ``'none'`` (Chen et al.'s plain
        L2) a level whose maps are small weighs little: in ``mini-voc-res`` the teacher's
        level-1 maps have a mean square of 0.10 against 0.36 to 0.52 elsewhere, and that
        level kept the largest relative error (0.77) in the feature-transfer control.
    layers : str or sequence of str
        ``--distill-options hint.layers=stage1_activation1,stage2_activation1``: internal
        layers of the backbones hinted besides the maps, FitNets' hints on intermediate
        stages (recorded in both networks, :mod:`gankd.distill.recorders`). Each adds
        ``mean((s - t) ** 2)`` of the layer's outputs. A layer with the teacher's channels
        is compared directly; one with other channels through a 1x1 connector of its own
        (FitNets' regressor), drawn MSRA-style. Its spatial size must be the teacher's.
        An entry ``student_layer:teacher_layer`` pairs layers of different names, for a
        student of another depth (``hint.layers=stage2__plus0:stage2__plus1``: the end of
        stage 2 in a one-block-per-stage ResNet and in resnet18_v1). With ``normalize=level``
        each layer's error is divided by the teacher's power on it as well, so a nearly
        silent layer weighs heavily (in mini-voc-res the inner activations of resnet18_v1's
        stage 4, mean squares 0.001 and 0.004, swamped the rest: results/README.md).
        Empty by default.
    layer_loss : {'l2', 'partial'}
        ``--distill-options hint.layer_loss=partial``: how the ``layers`` are compared.
        ``'l2'`` is ``mean((s - t) ** 2)``. ``'partial'`` is the partial L2 of Heo et al.
        2019 ("A Comprehensive Overhaul of Feature Distillation"), meant for layers taken
        before a ReLU (e.g. ``stage2__plus1``, the sum a residual block feeds its ReLU):
        the teacher's negative responses are raised to their channel's mean negative
        response in the batch (the margin), and a student response at or below a
        non-positive target costs nothing, since the ReLU makes both zero. The maps the
        head receives are always compared by plain L2.
    """
    name = 'Loss_hint'
    options = ('connector', 'normalize', 'layers', 'layer_loss')

    @classmethod
    def from_context(cls, context, weight=1.0, **options):
        return cls(context.teacher_shapes, context.ctx, weight=weight, **options)

    def __init__(self, shapes, ctx, weight=1.0, student_channels=None, connector='1x1',
                 normalize='none', layers='', layer_loss='l2'):
        super(HintTerm, self).__init__(weight)
        self.records = parse_layers(layers)
        self.ctx = ctx
        self.layer_connectors = None  # made by bind_records where channels differ
        self._layer_conv = {}
        if layer_loss not in HINT_LAYER_LOSSES:
            raise GankdError('hint.layer_loss must be one of {}, got {!r}'.format(
                ', '.join(HINT_LAYER_LOSSES), layer_loss))
        if layer_loss != 'l2' and not self.records:
            raise GankdError('hint.layer_loss={} compares hint.layers, and none are '
                             'named'.format(layer_loss))
        self.layer_loss = layer_loss
        if normalize not in HINT_NORMALIZATIONS:
            raise GankdError('hint.normalize must be one of {}, got {!r}'.format(
                ', '.join(HINT_NORMALIZATIONS), normalize))
        self.normalize = normalize
        out_channels = [int(s[0]) for s in shapes]
        in_channels = list(student_channels) if student_channels else out_channels
        if len(in_channels) != len(out_channels):
            raise GankdError('HintTerm: {} student levels for {} teacher levels'.format(
                len(in_channels), len(out_channels)))
        if connector not in HINT_CONNECTORS:
            raise GankdError('hint connector must be one of {}, got {!r}'.format(
                ', '.join(HINT_CONNECTORS), connector))
        if connector == 'none' and in_channels != out_channels:
            raise GankdError('hint without connector needs the teacher\'s channels on every '
                             'level; the student has {}, the teacher {}'.format(
                                 in_channels, out_channels))
        self.connectors = None
        if connector == 'none':
            return
        self.connectors = nn.HybridSequential(prefix='hint_')
        with self.connectors.name_scope():
            for cin, cout in zip(in_channels, out_channels):
                self.connectors.add(nn.Conv2D(cout, kernel_size=1, in_channels=cin,
                                              weight_initializer=MSRA))
        self.connectors.initialize(ctx=ctx)
        for conv, cin, cout in zip(self.connectors, in_channels, out_channels):
            if cin == cout:
                conv.weight.set_data(mx.nd.eye(cout).reshape((cout, cout, 1, 1)))
        self.connectors.hybridize(static_alloc=True)

    def _errors(self, cap, margins=None):
        # detach: the teacher is a fixed target even if its maps were recorded.
        convs = self.connectors or [lambda s: s] * len(cap.student_maps)
        errors = [mx.nd.square(conv(s) - t.detach()).mean()
                  for conv, s, t in zip(convs, cap.student_maps, cap.teacher_maps)]
        for i, layer in enumerate(self.records):
            s, t = cap.student_records[layer], cap.teacher_records[layer].detach()
            if layer in self._layer_conv:  # shapes were checked in bind_records
                s = self._layer_conv[layer](s)
            if margins is None:
                errors.append(mx.nd.square(s - t).mean())
                continue
            target = mx.nd.broadcast_maximum(
                t, mx.nd.array(margins[i], ctx=t.context).reshape((1, -1, 1, 1)))
            # Where the target is not positive and the student is below it, both are
            # zero after the ReLU: no cost.
            free = (s <= target) * (target <= 0)
            errors.append((mx.nd.square(s - target) * (1 - free)).mean())
        return errors

    def bind_records(self, student_shapes, teacher_shapes):
        """A 1x1 connector for each layer whose channels differ from the teacher's; a
        layer of another spatial size is refused."""
        wanted = [(layer, student_shapes[layer], teacher_shapes[layer])
                  for layer in self.records]
        for layer, s, t in wanted:
            if tuple(s[1:]) != tuple(t[1:]):
                raise GankdError('hint.layers: layer {} is {}x{} in the student and {}x{} in '
                                 'the teacher; a hinted layer must have the teacher\'s '
                                 'spatial size'.format(layer, s[1], s[2], t[1], t[2]))
        connected = [(layer, s[0], t[0]) for layer, s, t in wanted if s[0] != t[0]]
        if not connected:
            return
        self.layer_connectors = nn.HybridSequential(prefix='hint_layers_')
        with self.layer_connectors.name_scope():
            for layer, cin, cout in connected:
                conv = nn.Conv2D(cout, kernel_size=1, in_channels=cin, weight_initializer=MSRA)
                self.layer_connectors.add(conv)
                self._layer_conv[layer] = conv
        self.layer_connectors.initialize(ctx=self.ctx)
        self.layer_connectors.hybridize(static_alloc=True)

    def _margins(self, captures):
        """Per recorded layer, each channel's mean negative response of the teacher over
        the whole batch (0 where a channel has none), or None for plain L2."""
        if self.layer_loss != 'partial':
            return None
        margins = []
        for layer in self.records:
            total, count = 0.0, 0.0
            for cap in captures:
                t = cap.teacher_records[layer]
                total = total + mx.nd.minimum(t, 0).sum(axis=(0, 2, 3)).asnumpy()
                count = count + (t < 0).sum(axis=(0, 2, 3)).asnumpy()
            margins.append(total / np.maximum(count, 1.0))
        return margins

    def _targets(self, cap):
        return list(cap.teacher_maps) + [cap.teacher_records[layer] for layer in self.records]

    def loss(self, cap):
        return self._weighted(self._errors(cap, self._margins([cap])), self._powers([cap]))

    def losses(self, captures):
        # The level powers and the margins are the whole batch's, so that the devices'
        # losses add up to the one-device loss.
        powers, margins = self._powers(captures), self._margins(captures)
        return [self._weighted(self._errors(cap, margins), powers) * cap.fraction
                for cap in captures]

    def _powers(self, captures):
        """Per level, the mean square of the teacher's maps over the batch (host floats),
        or None without normalisation."""
        if self.normalize == 'none':
            return None
        return batch_powers(captures, [self._targets(c) for c in captures])

    @staticmethod
    def _weighted(errors, powers):
        return sum(errors) if powers is None else relative_sum(errors, powers)

    def description(self):
        # Only when set, so the default's records stay as they were.
        out = {'hint_normalize': self.normalize} if self.normalize != 'none' else {}
        if self.records:
            out['hint_layers'] = list(self.records)
        if self.layer_loss != 'l2':
            out['hint_layer_loss'] = self.layer_loss
        return out

    def _connector_blocks(self):
        return {name: block for name, block in (('hint_connectors', self.connectors),
                                                ('hint_layer_connectors',
                                                 self.layer_connectors)) if block}

    def student_params(self):
        return [p for block in self._connector_blocks().values()
                for p in block.collect_params().values()]

    def blocks(self):
        return self._connector_blocks()


@register_term('cosine')
class CosineTerm(DistillTerm):
    """GAN-KD's "cosine attention", as defined by this project.

    The GAN-KD author's logs name a ``cosine_length_loss`` but its formula was never
    published; this is our own definition, not a reproduction. At every location of
    every level, with ``s`` and ``t`` the student's and teacher's channel vectors::

        l = 1 - cos(s, t) + | ||s|| - ||t|| | / (||t|| + eps)
        w = ||t|| / (mean over the image's locations of ||t|| + eps)

    so the direction (cosine) and the length (relative norm difference) of the features
    are matched, with locations weighted by the teacher's feature strength (its
    "attention"; zero where the teacher's map is zero). The loss is the mean of ``w * l``
    over locations and images, summed over levels; it is zero (up to rounding) when the
    student's maps equal the teacher's.

    Parameters
    ----------
    weight : float
    eps : float
        Keeps norms and ratios finite where a feature vector is zero.
    """
    name = 'Loss_cosine'
    options = ('eps',)

    def __init__(self, weight=1.0, eps=1e-6):
        super(CosineTerm, self).__init__(weight)
        self.eps = float(eps)

    def loss(self, cap):
        eps = self.eps
        total = 0
        for s, t in zip(cap.student_maps, cap.teacher_maps):
            t = t.detach()
            t_norm = mx.nd.sqrt(mx.nd.square(t).sum(axis=1))
            # The square root's gradient is infinite at zero, where ReLU maps often are.
            s_norm = mx.nd.sqrt(mx.nd.square(s).sum(axis=1) + eps * eps)
            cos = (s * t).sum(axis=1) / mx.nd.maximum(s_norm * t_norm, eps * eps)
            length = mx.nd.abs(s_norm - t_norm) / (t_norm + eps)
            strength = t_norm / (t_norm.mean(axis=(1, 2), keepdims=True) + eps)
            total = total + (strength * (1 - cos + length)).mean()
        return total
