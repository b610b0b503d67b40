"""Item 1: the teacher split. head(backbone(x)) must be the SSD's own output."""
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from conftest import DATA_SHAPE, TEACHER
from gankd.errors import GankdError
from gankd.detectors.ssd.model import (build_ssd, build_teacher, copy_head, load_params_strict, split_ssd,
                       ssd_config)


def _outputs(fn, x, training):
    with autograd.train_mode() if training else autograd.predict_mode():
        return [o.asnumpy() for o in fn(x)]


@pytest.mark.parametrize('base,shape', [('resnet18_v1', DATA_SHAPE), ('mobilenet0.25', 128)])
@pytest.mark.parametrize('hybridize', [False, True])
def test_head_of_backbone_equals_ssd_in_both_modes(base, shape, hybridize, classes):
    net = build_ssd(**ssd_config(base, shape, classes))
    backbone, head = split_ssd(net)
    if hybridize:
        net.hybridize()
        head.hybridize()
    x = mx.nd.random.uniform(-1, 1, shape=(2, 3, shape, shape))
    for training in (True, False, True):  # also switching back and forth between modes
        if hybridize:
            net._clear_cached_op()  # GluonCV's SSD caches one mode's graph
        expected = _outputs(net, x, training)
        got = _outputs(lambda d: head(backbone(d)), x, training)
        assert len(got) == 3
        for e, g in zip(expected, got):
            assert e.shape == g.shape
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    # Inference outputs are (ids, scores, bboxes) with a detection per row.
    ids, scores, bboxes = _outputs(lambda d: head(backbone(d)), x, False)
    assert ids.shape[-1] == 1 and scores.shape[-1] == 1 and bboxes.shape[-1] == 4


def test_copied_head_has_same_outputs_and_own_parameters(classes):
    cfg = ssd_config(TEACHER, DATA_SHAPE, classes)
    backbone, head = split_ssd(build_ssd(**cfg))
    copy = copy_head(cfg, head)
    maps = backbone(mx.nd.random.uniform(shape=(1, 3, DATA_SHAPE, DATA_SHAPE)))
    with autograd.train_mode():
        for a, b in zip(head(maps), copy(maps)):
            np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    p_orig = head.class_predictors[0].predictor.weight
    p_copy = copy.class_predictors[0].predictor.weight
    p_copy.set_data(p_copy.data() + 1)
    assert not np.allclose(p_orig.data().asnumpy(), p_copy.data().asnumpy())


def test_teacher_params_of_another_class_list_name_first_mismatch(teacher_params, classes):
    cfg = ssd_config(TEACHER, DATA_SHAPE, classes + ['extra'])
    with pytest.raises(GankdError) as err:
        build_teacher(cfg, teacher_params)
    msg = str(err.value)
    assert 'class_predictors.0.predictor.weight' in msg
    n = len(classes)
    assert '({}, '.format(4 * (n + 1)) in msg and '({}, '.format(4 * (n + 2)) in msg


def test_teacher_params_of_another_network_are_refused(teacher_params, classes):
    cfg = ssd_config('mobilenet0.25', DATA_SHAPE, classes)
    with pytest.raises(GankdError, match='does not fit the teacher'):
        build_teacher(cfg, teacher_params)


def test_teacher_loads_its_own_params_exactly(teacher_params, classes):
    net = build_teacher(ssd_config(TEACHER, DATA_SHAPE, classes), teacher_params)
    saved = mx.nd.load(teacher_params)
    params = net._collect_params_with_prefix()
    for name, value in saved.items():
        np.testing.assert_array_equal(params[name].data().asnumpy(), value.asnumpy())


def test_missing_model_zoo_file_asks_for_teacher_params(tmp_path, monkeypatch):
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    with pytest.raises(GankdError, match='--teacher-params'):
        build_teacher(ssd_config('resnet50_v1', 512))


def test_unreadable_params_file(tmp_path, classes):
    bad = tmp_path / 'bad.params'
    bad.write_bytes(b'not a params file')
    net = build_ssd(**ssd_config(TEACHER, DATA_SHAPE, classes))
    with pytest.raises(GankdError, match='not a readable MXNet params file'):
        load_params_strict(net, str(bad))


def test_model_zoo_teacher_is_used_when_its_file_is_on_disk(tmp_path, monkeypatch):
    """Without --teacher-params the GluonCV cache file is loaded (no download)."""
    from gankd.detectors.ssd.model import zoo_params_file
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    cfg = ssd_config('mobilenet1.0', 512)  # = ssd_512_mobilenet1.0_voc
    name, path = zoo_params_file(cfg)
    assert name == 'ssd_512_mobilenet1.0_voc' and path.startswith(str(tmp_path))
    os.makedirs(os.path.dirname(path))
    zoo_net = build_ssd(**cfg)
    zoo_net.save_parameters(path)
    teacher = build_teacher(cfg)
    for (k, a), b in zip(zoo_net._collect_params_with_prefix().items(),
                         teacher._collect_params_with_prefix().values()):
        np.testing.assert_array_equal(a.data().asnumpy(), b.data().asnumpy(), err_msg=k)
