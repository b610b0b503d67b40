"""Item 2 and 3: students on the teacher's geometry, and the six critics."""
import mxnet as mx
import numpy as np
import pytest

from gankd.distill.critics import CriticSet, FeatureCritic, clip_weights
from gankd.errors import GankdError
from gankd.detectors.ssd.model import build_ssd, feature_shapes, split_ssd, ssd_config
from gankd.detectors.ssd.student import build_student


@pytest.fixture(scope='module')
def resnet50_shapes():
    backbone, _ = split_ssd(build_ssd(**ssd_config('resnet50_v1', 128, ['a', 'b'])))
    return feature_shapes(backbone, 128)


@pytest.mark.parametrize('student', ['mobilenet1.0', 'mobilenet0.75', 'mobilenet0.25',
                                     'mobilenetv2_1.0', 'resnet18_v1', 'resnet10_v1_0.25'])
def test_student_maps_have_teacher_shapes(student, resnet50_shapes):
    backbone = build_student(student, 128, resnet50_shapes)
    maps = backbone(mx.nd.random.uniform(shape=(2, 3, 128, 128)))
    assert [tuple(m.shape) for m in maps] == [(2,) + tuple(s) for s in resnet50_shapes]


def test_small_resnets_are_gluoncv_resnets_of_the_named_size():
    from gluoncv.model_zoo import get_model
    from gluoncv.model_zoo.resnet import BasicBlockV1, ResNetV1
    net = get_model('resnet10_v1_0.25')
    assert isinstance(net, ResNetV1)
    blocks = [b for b in net.features if isinstance(b, mx.gluon.nn.HybridSequential)]
    assert [len(stage) for stage in blocks] == [1, 1, 1, 1]
    assert all(isinstance(b, BasicBlockV1) for stage in blocks for b in stage)
    # A quarter of resnet18_v1's channels, level by level, as a plain SSD.
    ssd = build_ssd(**ssd_config('resnet10_v1_0.25', 64, ['a', 'b']))
    backbone, _ = split_ssd(ssd)
    shapes = feature_shapes(backbone, 64)
    assert [s[0] for s in shapes[:2]] == [64, 128]
    assert [s[1] for s in shapes] == [4, 2, 1, 1, 1, 1]
    with pytest.raises(ValueError, match='no ImageNet weights'):
        get_model('resnet10_v1_0.25', pretrained=True)


def test_adapters_only_where_channels_differ(resnet50_shapes):
    # MobileNet1.0 has 512/1024 channels where ResNet-50 has 1024/2048: two adapters.
    assert build_student('mobilenet1.0', 128, resnet50_shapes).adapted_levels == [0, 1]
    assert build_student('mobilenet1.0', 128, resnet50_shapes, adapt='all').adapted_levels == \
        list(range(6))


def test_geometry_mismatch_prints_both_shape_lists(resnet50_shapes):
    five_levels = resnet50_shapes[:5]
    with pytest.raises(GankdError) as err:
        build_student('mobilenet1.0', 128, five_levels)
    assert str(five_levels) in str(err.value)
    assert '(512, 8, 8)' in str(err.value)  # the student's own first level
    other_sizes = [(c, h * 2, w * 2) for c, h, w in resnet50_shapes]
    with pytest.raises(GankdError, match='spatial sizes'):
        build_student('mobilenet1.0', 128, other_sizes)


@pytest.mark.parametrize('spatial,depth', [(32, 5), (16, 4), (8, 3), (4, 2), (2, 1), (1, 0)])
def test_critic_depth_follows_level_size(spatial, depth):
    critic = FeatureCritic(16, spatial)
    critic.initialize()
    assert critic.depth == depth
    assert sum(isinstance(b, mx.gluon.nn.Conv2D) for b in critic.body) == max(depth, 1)
    out = critic(mx.nd.random.uniform(shape=(3, 16, spatial, spatial)))
    assert out.shape == (3,)


def test_critic_scores_are_unbounded_one_per_image(resnet50_shapes):
    critics = CriticSet(resnet50_shapes)
    critics.initialize(mx.init.Normal(0.5))
    maps = [mx.nd.random.uniform(0, 100, shape=(2,) + s) for s in resnet50_shapes]
    scores = critics(maps)
    assert len(scores) == 6 and all(s.shape == (2,) for s in scores)
    assert max(abs(s).max().asscalar() for s in scores) > 1  # no sigmoid
    # Scores of one image do not depend on the other images of the batch.
    alone = critics([m[:1] for m in maps])
    for a, b in zip(alone, scores):
        np.testing.assert_allclose(a.asnumpy(), b[:1].asnumpy(), rtol=1e-4)


def test_clip_weights_bounds_every_trainable_weight_on_every_device():
    critic = FeatureCritic(4, 4)  # depth 2: conv, conv + BatchNorm
    critic.initialize(mx.init.Normal(1.0), ctx=[mx.cpu(0), mx.cpu(1)])
    critic(mx.nd.zeros((1, 4, 4, 4), ctx=mx.cpu(0)))
    params = critic.collect_params()
    stats = {n: p.data().asnumpy().copy() for n, p in params.items() if p.grad_req == 'null'}
    assert any(n.endswith('running_var') for n in stats)
    clip_weights(params, 0.03)
    for name, p in params.items():
        for d in p.list_data():
            if name in stats:  # BatchNorm statistics are not weights: untouched
                np.testing.assert_array_equal(d.asnumpy(), stats[name])
            else:
                assert abs(d).max().asscalar() <= 0.03, name
    assert any(n.endswith('gamma') for n in params)  # gamma is clipped, as in WGAN


def test_critic_input_scales_make_scores_invariant_to_map_magnitude(resnet50_shapes):
    critics = CriticSet(resnet50_shapes)
    critics.initialize(mx.init.Normal(0.02))
    maps = [mx.nd.random.uniform(0, 1, shape=(2,) + s) for s in resnet50_shapes]
    assert not critics.is_calibrated()
    critics.calibrate([maps])
    assert critics.is_calibrated()
    rms = [float(mx.nd.sqrt(mx.nd.mean(m ** 2)).asscalar()) for m in maps]
    np.testing.assert_allclose(critics.input_scales.data().asnumpy(), rms, rtol=1e-5)
    before = [s.asnumpy() for s in critics(maps)]
    big = [m * 1000 for m in maps]
    critics.calibrate([big])
    for a, b in zip(before, critics(big)):
        np.testing.assert_allclose(a, b.asnumpy(), rtol=1e-3, atol=1e-6)
