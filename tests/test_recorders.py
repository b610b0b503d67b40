"""Recorders (gankd.distill.recorders) and the hint on internal layers they serve
(``--distill-options hint.layers=...``): the recording view computes the backbone's own
maps over the backbone's own parameters, and the recorded layer is the one named; hinting
it trains that layer towards the teacher's, through a 1x1 connector of its own where the
student's channels differ, which checkpoints and resumes; a layer the networks lack or
size differently is refused in one line."""
import pytest

from conftest import (DATA_SHAPE, STUDENT, TEACHER, assert_checkpoints_hold_and_resume,
                      run_script)
from test_bad_input import GANKD, assert_one_line_error

LAYER = 'stage1_activation0'  # the small ResNets' first stage (one block per stage)


def _hint_run(voc_root, teacher_params, layers, student=TEACHER):
    import mxnet as mx
    from gankd.cli import seed_everything
    from gankd.data.voc import voc_datasets
    from gankd.train.run import build_gankd_run
    seed_everything(1)
    train_set, _, classes = voc_datasets(voc_root)
    # The untrained teacher on batch statistics: on its initial running ones its maps grow
    # layer by layer to ~1e4, and their error would drown the recorded layer's.
    run = build_gankd_run(TEACHER, student, DATA_SHAPE, classes, [mx.cpu()],
                          teacher_params=teacher_params, distill=['hint'], head='frozen',
                          hint_connector='none', det_weight=0, optimizer='adam', lr=5e-3,
                          teacher_bn='batch',
                          distill_options={'hint': {'layers': layers}} if layers else None)
    batch = next(iter(run.family.train_loader(train_set, run, DATA_SHAPE, 8, 0,
                                              augment='light')))
    return run, batch


def test_a_recording_view_gives_the_backbones_maps_then_the_named_layer(voc_root,
                                                                        teacher_params):
    import numpy as np
    from mxnet import autograd
    run, batch = _hint_run(voc_root, teacher_params, LAYER)
    assert run.records == (LAYER,)
    x = batch[0]
    maps, records = run.student_outputs(x)
    for a, b in zip(maps, run.backbone(x)):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    # The first stage (stride 4), as the teacher's same layer.
    assert records[LAYER].shape == run.teacher_outputs(x)[1][LAYER].shape
    assert records[LAYER].shape[2:] == (DATA_SHAPE // 4, DATA_SHAPE // 4)
    # The very Parameters of the backbone: what the Trainer steps is what the view runs.
    own = run.backbone.collect_params()
    view = run.student_recorder.collect_params()
    assert set(view.keys()) == set(own.keys())
    assert all(view[k] is own[k] for k in own.keys())
    # The recorded output is the first stage's: a loss on it reaches the first stage's
    # weights and none after it.
    with autograd.record():
        loss = run.student_outputs(x)[1][LAYER].sum()
    loss.backward()
    grads = {k: float(p.grad().abs().sum().asscalar()) for k, p in own.items()
             if p.grad_req != 'null' and k.endswith('conv0_weight')}
    assert any('stage1_' in k and g > 0 for k, g in grads.items()), grads
    assert all(g == 0 for k, g in grads.items() if 'stage4_' in k), grads


def test_hinting_a_layer_trains_it_towards_the_teachers(voc_root, teacher_params):
    """The same 30 steps of hint alone, with and without the first stage among the hinted
    layers (same seed, same start): only with it does the stage's error fall (measured:
    relative error 1.01 without, 0.63 with), and the hint's first loss is the maps' plus
    that layer's squared error."""
    from mxnet import autograd
    from gankd.train.loop import train_step

    def stage_error(run, x):
        with autograd.train_mode():  # both on batch statistics, as in training
            s = run.student_recorder(x)[-1]
            t = run.teacher_recorder(x)[-1]
        return float((((s - t) ** 2).mean() / (t ** 2).mean()).sqrt().asscalar())

    plain, batch = _hint_run(voc_root, teacher_params, '')
    layered, _ = _hint_run(voc_root, teacher_params, LAYER)
    x = batch[0]
    start = stage_error(layered, x)
    # Recorders of the plain run, for measuring only (it trains without them).
    from gankd.distill.recorders import recording_view
    plain.student_recorder = recording_view(plain.backbone, [LAYER])
    plain.teacher_recorder = recording_view(plain.teacher, [LAYER])
    assert stage_error(plain, x) == pytest.approx(start, rel=1e-6)
    first_plain = train_step(plain, batch)['Loss_hint']
    first_layered = train_step(layered, batch)['Loss_hint']
    assert first_layered - first_plain == pytest.approx(
        (start ** 2) * _teacher_power(layered, x), rel=1e-3)
    for _ in range(29):
        train_step(plain, batch)
        train_step(layered, batch)
    assert stage_error(layered, x) < 0.8 * start
    assert stage_error(layered, x) < 0.8 * stage_error(plain, x)


def _teacher_power(run, x):
    from mxnet import autograd
    with autograd.train_mode():
        t = run.teacher_recorder(x)[-1]
    return float((t ** 2).mean().asscalar())


def test_a_layer_the_networks_lack_is_refused_in_one_line(voc_root, teacher_params, tmp_path):
    proc = run_script('train_gankd_ssd.py', *GANKD, '--teacher-params', teacher_params,
                      '--dataset-root', voc_root, '--epochs', 1, '--distill', 'hint',
                      '--distill-options', 'hint.layers=stage9_activation0',
                      '--save-prefix', tmp_path / 's')
    assert_one_line_error(proc, 'stage9_activation0', 'no layer')


def test_a_layer_of_other_channels_is_hinted_through_a_connector_of_its_own(voc_root,
                                                                          teacher_params):
    """The student (resnet10_v1_0.25) has half the teacher's channels in every stage: the
    layer gets a 1x1 connector (FitNets' regressor), which the student's Trainer steps and
    the checkpoints hold, and 30 steps bring the connected layer towards the teacher's."""
    from mxnet import autograd
    from gankd.train.loop import train_step
    run, batch = _hint_run(voc_root, teacher_params, LAYER, student=STUDENT)
    x = batch[0]
    term = run.terms[0]
    s_shape = run.student_outputs(x)[1][LAYER].shape
    t_shape = run.teacher_outputs(x)[1][LAYER].shape
    assert s_shape[1] * 2 == t_shape[1] and s_shape[2:] == t_shape[2:]
    conv = term.layer_connectors[0]
    assert conv.weight.shape == (t_shape[1], s_shape[1], 1, 1)
    assert run.blocks()['hint_layer_connectors'] is term.layer_connectors
    assert any(p is conv.weight for p in run.trainer._params)

    def layer_error():
        with autograd.train_mode():
            s = conv(run.student_recorder(x)[-1])
            t = run.teacher_recorder(x)[-1]
        return float(((s - t) ** 2).mean().asscalar() / (t ** 2).mean().asscalar())

    start, weight = layer_error(), conv.weight.data().asnumpy().copy()
    for _ in range(30):
        train_step(run, batch)
    assert layer_error() < 0.8 * start
    assert abs(conv.weight.data().asnumpy() - weight).max() > 0


def test_layer_connectors_are_checkpointed_and_resumed(voc_root, teacher_params, tmp_path):
    assert_checkpoints_hold_and_resume(
        [*GANKD, '--teacher-params', teacher_params, '--dataset-root', voc_root,
         '--distill', 'hint', '--distill-options', 'hint.layers=' + LAYER],
        tmp_path / 's', ['hint_layer_connectors.params'])


def test_a_layer_of_another_spatial_size_is_refused_in_one_line(voc_root, teacher_params,
                                                                 tmp_path):
    # The student's first stage paired with the teacher's second: half the size.
    proc = run_script('train_gankd_ssd.py', *GANKD, '--teacher-params', teacher_params,
                      '--dataset-root', voc_root, '--epochs', 1, '--distill', 'hint',
                      '--distill-options', 'hint.layers=stage1_activation0:stage2_activation0',
                      '--save-prefix', tmp_path / 's')
    assert_one_line_error(proc, 'stage1_activation0:stage2_activation0', 'spatial size')
