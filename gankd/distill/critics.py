"""Per-level Wasserstein critics (the "D Net" of GAN-KD, Figure 2 of the seed)."""
import math

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import HybridBlock, nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

from ..errors import GankdError

__all__ = ['SNConv2D', 'ChannelStandardiser', 'FeatureCritic', 'CriticSet', 'CRITIC_NORMS',
           'check_levels', 'clip_weights', 'trainable']

#: ``--critic-norm``: what each level's maps are divided by before its critic.
CRITIC_NORMS = ('rms', 'channel', 'none')


class SNConv2D(nn.Conv2D):
    """A convolution whose weight is divided by its largest singular value (Miyato et al.
    2018, spectral normalisation).

    The weight, reshaped to ``(out, in * k * k)``, has its largest singular value
    estimated by power iteration from a persistent vector ``u`` (a Parameter that is not
    trained, so checkpoints keep it and a resumed run goes on from the same estimate).
    Every forward in training mode does one iteration and stores the new ``u``; the
    gradient of ``W / sigma(W)`` flows through ``sigma`` with ``u`` and ``v`` held fixed,
    as in the reference implementation.

    ``u`` is updated in place, which a hybridised graph cannot do: the block runs
    imperatively and refuses to be traced into a symbol.

    Parameters
    ----------
    channels, kernel_size, ...
        As :class:`mxnet.gluon.nn.Conv2D`.
    eps : float
        Keeps the normalisation of ``u`` and ``v`` finite for a zero weight.
    """

    def __init__(self, channels, kernel_size, eps=1e-12, **kwargs):
        super(SNConv2D, self).__init__(channels, kernel_size, **kwargs)
        self.eps = eps
        with self.name_scope():
            # Random start: a fixed one could be orthogonal to the top singular vector.
            self.u = self.params.get('u', shape=(channels,), init=mx.init.Normal(1.0),
                                     grad_req='null', differentiable=False)

    def _power_iteration(self, weight, u):
        """One power iteration from ``u``; returns the new ``(u, v)``, not recorded."""
        w = weight.reshape((0, -1))
        with autograd.pause():
            v = mx.nd.dot(w, u, transpose_a=True)
            v = v / (mx.nd.norm(v) + self.eps)
            u_new = mx.nd.dot(w, v)
            u_new = u_new / (mx.nd.norm(u_new) + self.eps)
        return u_new, v

    def normalised_weight(self, ctx=None):
        """``W / sigma`` with sigma estimated from the stored ``u`` (nothing updated)."""
        ctx = ctx or self.weight.list_ctx()[0]
        weight = self.weight.data(ctx)
        u, v = self._power_iteration(weight, self.u.data(ctx))
        return weight / mx.nd.dot(u, mx.nd.dot(weight.reshape((0, -1)), v))

    def hybrid_forward(self, F, x, weight, u, bias=None):
        if F is not mx.nd:
            raise GankdError('spectral-normalised convolutions update their power-iteration '
                             'vector in place and cannot be hybridised')
        u_new, v = self._power_iteration(weight, u)
        if autograd.is_training():
            u[:] = u_new  # u is this device's copy of the parameter: the estimate persists
        sigma = F.dot(u_new, F.dot(weight.reshape((0, -1)), v))
        weight = F.broadcast_div(weight, sigma.reshape((1, 1, 1, 1)))
        if bias is None:
            return F.Convolution(x, weight, name='fwd', **self._kwargs)
        return F.Convolution(x, weight, bias, name='fwd', **self._kwargs)


class ChannelStandardiser(HybridBlock):
    """``(x - mean) / std`` per channel, with constants measured on the teacher's maps.

    The statistics are Parameters that are neither trained nor clipped, so checkpoints
    keep them (as :class:`CriticSet`'s ``input_scales``). PKD standardises features per
    channel before comparing them; with the teacher's statistics for both networks, a
    student channel is judged by how far it departs from the teacher's distribution of
    that channel, whatever the channel's scale.

    Parameters
    ----------
    channels : int
    """

    def __init__(self, channels, **kwargs):
        super(ChannelStandardiser, self).__init__(**kwargs)
        with self.name_scope():
            self.mean = self.params.get('mean', shape=(channels,), init=mx.init.Zero(),
                                        grad_req='null', differentiable=False)
            self.std = self.params.get('std', shape=(channels,), init=mx.init.One(),
                                       grad_req='null', differentiable=False)

    def hybrid_forward(self, F, x, mean, std):
        return F.broadcast_div(F.broadcast_sub(x, mean.reshape((1, -1, 1, 1))),
                               std.reshape((1, -1, 1, 1)))


class FeatureCritic(HybridBlock):
    """Stride-2 convolutions down to 1x1, then one unbounded score per image.

    Figure 2 draws only "downsampling convolutions ending in 1x1x1". The layers follow
    the DCGAN critic of the reference WGAN code that the GAN-KD logs point to (Adam,
    beta1 0.5, clipping 0.03): 3x3 stride-2 convolutions, LeakyReLU(0.2), and BatchNorm
    after every convolution but the first. Batch norm matters here: with weights clipped
    but not normalised, a wide critic's scores grow with its gain (up to 9 * channels *
    clip per layer) into the thousands and swamp the detection loss; with it (its gamma
    and beta clipped too, as in the reference code) they stay of order one.

    Parameters
    ----------
    in_channels : int
        Channels of the feature map.
    spatial : int
        Height of the feature map at the nominal input size; sets the depth,
        ceil(log2(spatial)). Maps of any size are scored: the score map, 1x1 at the
        nominal size of a square map, is averaged (Faster R-CNN's maps change size with
        every batch).
    width : int
        Channels of the first convolution; doubled per layer up to ``max_width``.
    max_width : int
    norm : bool
        BatchNorm after every convolution but the first.
    sync_devices : int
        With more than one, the BatchNorms are SyncBatchNorms over that many devices
        (``--syncbn``).
    spectral_norm : bool
        Every convolution (the score's too) is an :class:`SNConv2D` (``--critic hinge-sn``);
        the critic then runs imperatively.
    """

    def __init__(self, in_channels, spatial, width=64, max_width=256, norm=True,
                 sync_devices=1, spectral_norm=False, **kwargs):
        super(FeatureCritic, self).__init__(**kwargs)
        self.depth = max(int(math.ceil(math.log2(spatial))), 0) if spatial > 1 else 0
        conv = SNConv2D if spectral_norm else nn.Conv2D
        with self.name_scope():
            self.body = nn.HybridSequential()
            channels = in_channels
            if self.depth == 0:
                # A 1x1 map has nothing to downsample: one 1x1 layer keeps a hidden layer.
                self.body.add(conv(width, 1, in_channels=channels), nn.LeakyReLU(0.2))
                channels = width
            for i in range(self.depth):
                out = min(width * 2 ** i, max_width)
                first = i == 0
                self.body.add(conv(out, 3, strides=2, padding=1, in_channels=channels,
                                   use_bias=first or not norm))
                if norm and not first:
                    self.body.add(nn.BatchNorm(in_channels=out) if sync_devices <= 1 else
                                  SyncBatchNorm(in_channels=out, num_devices=sync_devices))
                self.body.add(nn.LeakyReLU(0.2))
                channels = out
            self.score = conv(1, 1, in_channels=channels)

    def hybrid_forward(self, F, x):
        return self.score(self.body(x)).reshape((0, -1)).mean(axis=1)


class CriticSet(HybridBlock):
    """One :class:`FeatureCritic` per chosen level; returns a list of per-image scores.

    Each level's maps (teacher's and student's alike) are divided by a constant, the
    ``input_scales`` parameter (not trained, not clipped). With weight clipping the
    critic's scores grow with the magnitude of its input, and the SSD levels of an
    untrained or from-scratch network differ in magnitude by orders; a per-level
    constant keeps every critic's scores, and the adversarial term, of order one.
    :meth:`calibrate` sets it to the RMS of the teacher's maps. With ``channel_stats``
    each level is instead standardised per channel (:class:`ChannelStandardiser`,
    ``--critic-norm channel``), and :meth:`calibrate` measures the teacher's mean and
    standard deviation of every channel.

    Parameters
    ----------
    shapes : list of tuple
        ``(C, H, W)`` of the teacher's maps, every level.
    width, max_width, norm, sync_devices, spectral_norm
        See :class:`FeatureCritic`.
    levels : list of int or None
        The levels that get a critic (``--critic-levels``); None is all of them. The
        forward takes the maps of every level and scores the chosen ones, in order.
    channel_stats : bool
        Standardise per channel instead of dividing by one scale per level.
    """

    def __init__(self, shapes, width=64, max_width=256, norm=True, sync_devices=1,
                 levels=None, channel_stats=False, spectral_norm=False, **kwargs):
        super(CriticSet, self).__init__(**kwargs)
        self.level_ids = check_levels(levels, len(shapes))
        self.channel_stats = channel_stats
        chosen = [shapes[i] for i in self.level_ids]
        with self.name_scope():
            self.levels = nn.HybridSequential()
            for c, h, _ in chosen:
                self.levels.add(FeatureCritic(c, h, width, max_width, norm, sync_devices,
                                              spectral_norm))
            self.input_scales = self.params.get('input_scales', shape=(len(chosen),),
                                                init=mx.init.One(), grad_req='null',
                                                differentiable=False)
            # Only with --critic-norm channel, so that other checkpoints keep their
            # parameters (and older ones still load).
            self.standardisers = None
            if channel_stats:
                self.standardisers = nn.HybridSequential()
                for c, _, _ in chosen:
                    self.standardisers.add(ChannelStandardiser(c))

    def _select(self, maps):
        return [maps[i] for i in self.level_ids]

    def calibrate(self, teacher_maps, average=None):
        """Measure the constants the critics' inputs are normalised by, on the teacher's
        maps: each level's RMS, or with ``channel_stats`` each channel's mean and standard
        deviation.

        Parameters
        ----------
        teacher_maps : list of list of NDArray
            Per device, the maps of every level; statistics are over all devices' images.
        average : callable or None
            Averages an NDArray over workers (distributed training), so that every
            worker's critics see the same constants.
        """
        ctx = teacher_maps[0][0].context
        if self.channel_stats:
            for std_block, i in zip(self.standardisers, self.level_ids):
                maps = [dev[i].as_in_context(ctx) for dev in teacher_maps]
                if len({m.shape[2:] for m in maps}) > 1:
                    # Devices' maps of different sizes (Faster R-CNN pads each device's
                    # images alone): every location of every image, channels first.
                    maps = [mx.nd.concat(*[m.transpose((1, 0, 2, 3)).reshape((0, -1))
                                           for m in maps], dim=1)
                            .reshape((0, 1, -1, 1)).transpose((1, 0, 2, 3))]
                self._calibrate_channels(std_block, mx.nd.concat(*maps, dim=0), average)
            return
        # The mean square over every element of every device's maps: the flattened maps
        # concatenated (for maps of one size, the same numbers in the same order as
        # concatenating them along the batch), so maps may differ in size between devices.
        per_level = [mx.nd.concat(*[dev[i].as_in_context(ctx).reshape((-1,))
                                    for dev in teacher_maps], dim=0) for i in self.level_ids]
        rms = mx.nd.concat(*[mx.nd.sqrt(mx.nd.mean(m ** 2)).reshape((1,))
                             for m in per_level], dim=0)
        if average is not None:
            rms = average(rms)
        self.input_scales.set_data(mx.nd.maximum(rms, 1e-6))

    @staticmethod
    def _calibrate_channels(block, maps, average):
        # Moments rather than the variance itself, so that workers can average them.
        mean = maps.mean(axis=(0, 2, 3))
        square = (maps ** 2).mean(axis=(0, 2, 3))
        if average is not None:
            mean, square = average(mean), average(square)
        std = mx.nd.sqrt(mx.nd.maximum(square - mean ** 2, 0))
        # A channel the teacher leaves (nearly) constant, e.g. dead after a ReLU, would
        # otherwise magnify whatever the student puts there without bound: floor each
        # channel's std at 1% of the level's mean std.
        floor = mx.nd.maximum(std.mean() * 0.01, 1e-6)
        block.mean.set_data(mean)
        block.std.set_data(mx.nd.broadcast_maximum(std, floor))

    def is_calibrated(self):
        if self.channel_stats:
            return any(not bool((b.std.data() == 1).min().asscalar())
                       for b in self.standardisers)
        return not bool((self.input_scales.data() == 1).min().asscalar())

    def _normalise(self, F, i, m, input_scales):
        if self.channel_stats:
            return self.standardisers[i](m)
        return F.broadcast_div(m, F.slice_axis(input_scales, axis=0, begin=i,
                                               end=i + 1).reshape((1, 1, 1, 1)))

    def normalise(self, maps):
        """The chosen levels of ``maps`` (every level), as the critics see them."""
        chosen = self._select(maps)
        scales = self.input_scales.data(chosen[0].context)
        return [self._normalise(mx.nd, i, m, scales) for i, m in enumerate(chosen)]

    def hybrid_forward(self, F, maps, input_scales):
        return [critic(self._normalise(F, i, m, input_scales))
                for i, (critic, m) in enumerate(zip(self.levels, self._select(maps)))]


def check_levels(levels, num_levels):
    """``--critic-levels`` as a sorted list of level indices (None: every level)."""
    if levels is None:
        return list(range(num_levels))
    try:
        ids = [int(i) for i in levels]
    except (TypeError, ValueError):
        raise GankdError('critic levels must be integers, got {!r}'.format(levels)) from None
    bad = [i for i in ids if not 0 <= i < num_levels]
    if bad or not ids or len(set(ids)) != len(ids):
        raise GankdError('critic levels must be distinct indices from 0 to {}, at least one; '
                         'got {}'.format(num_levels - 1, ids))
    return sorted(ids)


def trainable(params):
    """The parameters an optimiser updates (not BatchNorm running statistics)."""
    return {k: p for k, p in params.items() if p.grad_req != 'null'}


def clip_weights(params, clip):
    """Clip every trainable parameter to [-clip, clip] in place, on every device (WGAN:
    weights, biases and BatchNorm gamma/beta; running statistics are not weights)."""
    for param in trainable(params).values():
        for data in param.list_data():
            mx.nd.clip(data, -clip, clip, out=data)
