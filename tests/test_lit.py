"""LIT's teacher-forced sections (``--distill lit``, gankd.distill.recorders.forced_view):
the cut graph computes the backbone exactly when fed the backbone's own values, each
section from its own cut only; the term is zero for the teacher's own weights and trains
every section at once; a cut that leaves a path around it, or no cut, is refused."""
import pytest

from conftest import (DATA_SHAPE, STUDENT, TEACHER, assert_checkpoints_hold_and_resume,
                      run_script)
from test_bad_input import GANKD, assert_one_line_error

CUTS = ('pool0_fwd', 'stage1_activation0', 'stage2_activation0', 'stage3_activation0')


def _lit_run(voc_root, teacher_params, student=TEACHER, cuts=CUTS, connector='none'):
    import mxnet as mx
    from gankd.cli import seed_everything
    from gankd.data.voc import voc_datasets
    from gankd.train.run import build_gankd_run
    seed_everything(1)
    train_set, _, classes = voc_datasets(voc_root)
    # Batch statistics for the untrained teacher, as in test_recorders.py.
    run = build_gankd_run(TEACHER, student, DATA_SHAPE, classes, [mx.cpu()],
                          teacher_params=teacher_params, distill=['lit'], head='frozen',
                          det_weight=0, optimizer='adam', lr=5e-3, teacher_bn='batch',
                          distill_options={'lit': {'layers': ','.join(cuts),
                                                   'connector': connector}})
    batch = next(iter(run.family.train_loader(train_set, run, DATA_SHAPE, 8, 0,
                                              augment='light')))
    return run, batch


def test_the_cut_graph_is_the_backbone_fed_its_own_values(voc_root, teacher_params):
    import numpy as np
    from mxnet import autograd
    from gankd.distill.recorders import forced_view
    run, batch = _lit_run(voc_root, teacher_params)
    x = batch[0]
    maps, records = run.teacher_outputs(x)  # on batch statistics (teacher_bn='batch')
    view = forced_view(run.teacher, CUTS)

    def forced(*inputs):
        with autograd.train_mode():  # so are the sections: each batch's statistics
            return view(*inputs)
    outputs = forced(*[records[c] for c in CUTS])
    assert len(outputs) == len(maps) + len(CUTS) - 1
    for got, want in zip(outputs, list(maps) + [records[c] for c in CUTS[1:]]):
        np.testing.assert_array_equal(got.asnumpy(), want.asnumpy())
    # Each section computes from its own cut: zeroing the last cut changes the maps
    # after it and not the sections before it.
    fed = [records[c] for c in CUTS[:-1]] + [records[CUTS[-1]] * 0]
    changed = forced(*fed)
    assert float(abs(changed[0] - maps[0]).max().asscalar()) > 0
    for got, want in zip(changed[len(maps):], [records[c] for c in CUTS[1:]]):
        np.testing.assert_array_equal(got.asnumpy(), want.asnumpy())
    # The backbone's own Parameters (those after the first cut).
    own, shared = run.teacher.collect_params(), view.collect_params()
    assert shared.keys() and set(shared.keys()) <= set(own.keys())
    assert all(shared[k] is own[k] for k in shared.keys())
    assert any('stage3_' in k for k in shared.keys())


def test_lit_is_zero_for_the_teachers_weights_and_trains_every_section(voc_root,
                                                                       teacher_params):
    from mxnet import autograd
    from gankd.distill import Captures, TeacherForcedTerm
    from gankd.train.loop import train_step
    run, batch = _lit_run(voc_root, teacher_params)
    x = batch[0]
    maps, records = run.teacher_outputs(x)
    own = TeacherForcedTerm(run.teacher, layers=','.join(CUTS))
    cap = Captures(list(maps), list(maps), 1.0, teacher_records=records)
    with autograd.train_mode():  # the sections on batch statistics, as the teacher here
        assert float(own.loss(cap).asscalar()) == pytest.approx(0, abs=1e-9)
    # One step's gradient reaches the first and the last stage alike.
    term = run.terms[0]
    params = run.backbone.collect_params()
    with autograd.record():
        loss = term.loss(Captures(list(maps), list(maps), 1.0, teacher_records=records))
    loss.backward()
    grads = {k: float(p.grad().abs().sum().asscalar()) for k, p in params.items()
             if k.endswith('conv0_weight') and p.grad_req != 'null'}
    for stage in ('stage1_', 'stage4_'):
        assert any(stage in k and g > 0 for k, g in grads.items()), grads
    first = train_step(run, batch)['Loss_lit']
    for _ in range(29):
        last = train_step(run, batch)['Loss_lit']
    assert last < 0.5 * first


def test_a_deeper_student_learns_through_cuts_paired_with_the_teachers_layers(
        voc_root, teacher_params):
    """LIT's own setting: resnet18_v1_0.5 (two blocks per stage) under the teacher
    (one block, the same widths), each stage's end paired with the teacher's."""
    from gankd.train.loop import train_step
    cuts = ('pool0_fwd', 'stage1_activation1:stage1_activation0',
            'stage2_activation1:stage2_activation0')
    run, batch = _lit_run(voc_root, teacher_params, student='resnet18_v1_0.5', cuts=cuts)
    x = batch[0]
    records = run.student_outputs(x)[1]
    assert records[cuts[1]].shape == run.teacher_outputs(x)[1][cuts[1]].shape
    first = train_step(run, batch)['Loss_lit']
    for _ in range(19):
        last = train_step(run, batch)['Loss_lit']
    assert last < 0.5 * first


def test_a_cut_with_a_path_around_it_is_refused(voc_root, teacher_params):
    from gankd.distill.recorders import forced_view
    from gankd.errors import GankdError
    run, _ = _lit_run(voc_root, teacher_params)
    # Inside the first block: its shortcut goes around.
    with pytest.raises(GankdError, match='path from the input around'):
        forced_view(run.teacher, ['stage1_relu0_fwd'])


def test_lit_without_cuts_is_refused_in_one_line(voc_root, teacher_params, tmp_path):
    proc = run_script('train_gankd_ssd.py', *GANKD, '--teacher-params', teacher_params,
                      '--dataset-root', voc_root, '--epochs', 1, '--distill', 'lit',
                      '--save-prefix', tmp_path / 's')
    assert_one_line_error(proc, 'lit.layers')


def test_a_cut_of_another_shape_is_refused_in_one_line(voc_root, teacher_params, tmp_path):
    # The student (resnet10_v1_0.25) has half the teacher's channels at every cut.
    proc = run_script('train_gankd_ssd.py', *GANKD, '--teacher-params', teacher_params,
                      '--dataset-root', voc_root, '--epochs', 1, '--distill', 'lit',
                      '--distill-options', 'lit.layers=pool0_fwd,stage1_activation0',
                      '--save-prefix', tmp_path / 's')
    assert_one_line_error(proc, 'lit.layers: cut pool0_fwd', 'same shape')


def test_a_narrower_student_learns_through_connectors_at_the_cuts(voc_root, teacher_params):
    """lit.connector=1x1: resnet10_v1_0.25 has half the teacher's channels at every cut.
    Each cut gets a 1x1 conv from the teacher's channels (what the section reads) and,
    after the first, one back (what is compared); the Trainer steps them, the checkpoints
    hold them, and 30 steps halve the loss, the mapped teacher values drawing nearer the
    student's own values at the cuts."""
    from mxnet import autograd
    from gankd.train.loop import train_step
    run, batch = _lit_run(voc_root, teacher_params, student=STUDENT, connector='1x1')
    x = batch[0]
    term = run.terms[0]
    s_rec, t_rec = run.student_outputs(x)[1], run.teacher_outputs(x)[1]
    for cut in CUTS:
        cs, ct = s_rec[cut].shape[1], t_rec[cut].shape[1]
        assert cs * 2 == ct
        assert term._in_conv[cut].weight.shape == (cs, ct, 1, 1)
    assert sorted(term._out_conv) == sorted(CUTS[1:])
    assert all(term._out_conv[c].weight.shape == (t_rec[c].shape[1], s_rec[c].shape[1], 1, 1)
               for c in CUTS[1:])
    assert run.blocks()['lit_input_connectors'] is term.input_connectors
    assert run.blocks()['lit_output_connectors'] is term.output_connectors
    trained = set(map(id, run.trainer._params))
    assert all(id(p) in trained for p in term.student_params())

    def input_gap():
        with autograd.train_mode():
            s, t = run.student_outputs(x)[1], run.teacher_outputs(x)[1]
            conv = term._in_conv[CUTS[2]]
            return float(((conv(t[CUTS[2]]) - s[CUTS[2]]) ** 2).mean().asscalar() /
                         (s[CUTS[2]] ** 2).mean().asscalar())

    gap = input_gap()
    first = train_step(run, batch)['Loss_lit']
    for _ in range(29):
        last = train_step(run, batch)['Loss_lit']
    assert last < 0.5 * first
    assert input_gap() < 0.8 * gap


def test_lit_connectors_are_checkpointed_and_resumed(voc_root, teacher_params, tmp_path):
    assert_checkpoints_hold_and_resume(
        [*GANKD, '--teacher-params', teacher_params, '--dataset-root', voc_root,
         '--distill', 'lit', '--distill-options', 'lit.layers=' + ','.join(CUTS[:3]),
         'lit.connector=1x1'],
        tmp_path / 's', ['lit_input_connectors.params', 'lit_output_connectors.params'])


def test_a_cut_of_another_size_is_refused_even_with_connectors(voc_root, teacher_params,
                                                                tmp_path):
    proc = run_script('train_gankd_ssd.py', *GANKD, '--teacher-params', teacher_params,
                      '--dataset-root', voc_root, '--epochs', 1, '--distill', 'lit',
                      '--distill-options', 'lit.layers=pool0_fwd,stage1_activation0:'
                      'stage2_activation0', 'lit.connector=1x1', '--save-prefix', tmp_path / 's')
    assert_one_line_error(proc, 'lit.layers: cut stage1_activation0:stage2_activation0',
                          'same shape')
