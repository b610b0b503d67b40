"""Per-level Wasserstein critics (the "D Net" of GAN-KD, Figure 2 of the seed)."""
import math

import mxnet as mx
from mxnet.gluon import HybridBlock, nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

__all__ = ['FeatureCritic', 'CriticSet', 'clip_weights', 'trainable']


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
        Height (= width) of the feature map; sets the depth, ceil(log2(spatial)).
    width : int
        Channels of the first convolution; doubled per layer up to ``max_width``.
    max_width : int
    norm : bool
        BatchNorm after every convolution but the first.
    sync_devices : int
        With more than one, the BatchNorms are SyncBatchNorms over that many devices
        (``--syncbn``).
    """

    def __init__(self, in_channels, spatial, width=64, max_width=256, norm=True,
                 sync_devices=1, **kwargs):
        super(FeatureCritic, self).__init__(**kwargs)
        self.depth = max(int(math.ceil(math.log2(spatial))), 0) if spatial > 1 else 0
        with self.name_scope():
            self.body = nn.HybridSequential()
            channels = in_channels
            if self.depth == 0:
                # A 1x1 map has nothing to downsample: one 1x1 layer keeps a hidden layer.
                self.body.add(nn.Conv2D(width, 1, in_channels=channels), nn.LeakyReLU(0.2))
                channels = width
            for i in range(self.depth):
                out = min(width * 2 ** i, max_width)
                first = i == 0
                self.body.add(nn.Conv2D(out, 3, strides=2, padding=1, in_channels=channels,
                                        use_bias=first or not norm))
                if norm and not first:
                    self.body.add(nn.BatchNorm(in_channels=out) if sync_devices <= 1 else
                                  SyncBatchNorm(in_channels=out, num_devices=sync_devices))
                self.body.add(nn.LeakyReLU(0.2))
                channels = out
            self.score = nn.Conv2D(1, 1, in_channels=channels)

    def hybrid_forward(self, F, x):
        return self.score(self.body(x)).reshape((0, -1)).mean(axis=1)


class CriticSet(HybridBlock):
    """One :class:`FeatureCritic` per level; returns a list of per-image scores.

    Each level's maps (teacher's and student's alike) are divided by a constant, the
    ``input_scales`` parameter (not trained, not clipped). With weight clipping the
    critic's scores grow with the magnitude of its input, and the SSD levels of an
    untrained or from-scratch network differ in magnitude by orders; a per-level
    constant keeps every critic's scores, and the adversarial term, of order one.
    :meth:`calibrate` sets it to the RMS of the teacher's maps.

    Parameters
    ----------
    shapes : list of tuple
        ``(C, H, W)`` of the teacher's maps.
    width, max_width, norm, sync_devices
        See :class:`FeatureCritic`.
    """

    def __init__(self, shapes, width=64, max_width=256, norm=True, sync_devices=1, **kwargs):
        super(CriticSet, self).__init__(**kwargs)
        with self.name_scope():
            self.levels = nn.HybridSequential()
            for c, h, _ in shapes:
                self.levels.add(FeatureCritic(c, h, width, max_width, norm, sync_devices))
            self.input_scales = self.params.get('input_scales', shape=(len(shapes),),
                                                init=mx.init.One(), grad_req='null',
                                                differentiable=False)

    def calibrate(self, teacher_maps, average=None):
        """Set each level's input scale to the RMS of the teacher's maps.

        Parameters
        ----------
        teacher_maps : list of list of NDArray
            Per device, the six maps; the RMS is over all devices' images.
        average : callable or None
            Averages an NDArray over workers (distributed training), so that every
            worker's critics see the same scales.
        """
        ctx = teacher_maps[0][0].context
        rms = mx.nd.concat(*[mx.nd.sqrt(mx.nd.mean(mx.nd.concat(
            *[dev[i].as_in_context(ctx).reshape((-1,)) for dev in teacher_maps], dim=0) ** 2))
            .reshape((1,)) for i in range(len(teacher_maps[0]))], dim=0)
        if average is not None:
            rms = average(rms)
        self.input_scales.set_data(mx.nd.maximum(rms, 1e-6))

    def is_calibrated(self):
        return not bool((self.input_scales.data() == 1).min().asscalar())

    def hybrid_forward(self, F, maps, input_scales):
        return [critic(F.broadcast_div(m, F.slice_axis(input_scales, axis=0, begin=i,
                                                       end=i + 1).reshape((1, 1, 1, 1))))
                for i, (critic, m) in enumerate(zip(self.levels, maps))]


def trainable(params):
    """The parameters an optimiser updates (not BatchNorm running statistics)."""
    return {k: p for k, p in params.items() if p.grad_req != 'null'}


def clip_weights(params, clip):
    """Clip every trainable parameter to [-clip, clip] in place, on every device (WGAN:
    weights, biases and BatchNorm gamma/beta; running statistics are not weights)."""
    for param in trainable(params).values():
        for data in param.list_data():
            mx.nd.clip(data, -clip, clip, out=data)
