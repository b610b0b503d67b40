"""Issue 3: several devices in one process, several workers on MXNet's parameter server,
SyncBatchNorm's graph rewrite, and the flags refused where they cannot work."""
import glob
import json
import os
import socket
import subprocess
import sys
import time

import mxnet as mx
from mxnet import gluon
import numpy as np
import pytest

from conftest import (DATA_SHAPE, ROOT, STUDENT, TEACHER, assert_two_devices_update_as_one,
                      run_script)
from gankd.train.run import build_gankd_run
from gankd.data.loaders import EpochSampler
from gankd.data.voc import voc_datasets
from gankd.train.distributed import sync_batchnorm
from gankd.train.loop import train_step
from gankd.detectors.ssd.model import build_ssd, ssd_config


def _params(block, ctx):
    """The trained parameters of ``block`` on ``ctx`` (not BatchNorm's running statistics,
    which every device keeps for itself, as in GluonCV without SyncBatchNorm)."""
    return {k: p.data(ctx).asnumpy().copy()
            for k, p in block._collect_params_with_prefix().items() if p.grad_req != 'null'}


def _gankd(classes, teacher_params, ctx):
    run = build_gankd_run(TEACHER, STUDENT, DATA_SHAPE, classes, ctx,
                          teacher_params=teacher_params, lr=0.05, momentum=0.9)
    # The critics' Adam takes the sign of each gradient on its first step, so an element
    # whose gradient is rounding noise flips; plain SGD through the same Trainer and
    # kvstore shows the aggregation itself.
    term = run.terms[0]
    term.trainer = gluon.Trainer(term.weights, 'sgd', {'learning_rate': 0.01})
    return run


def _copy_weights(src, dst, tmp_path):
    for name, a, b in (('model', src.save_block, dst.save_block),
                       ('critics', src.terms[0].critics, dst.terms[0].critics)):
        path = str(tmp_path / (name + '.params'))
        a.save_parameters(path)
        b.load_parameters(path, ctx=dst.ctx)


def _updates(run, batch, ctx):
    """One GAN-KD iteration; returns the losses and, per block, every parameter's change on
    each device."""
    blocks = {'model': run.save_block, 'critics': run.terms[0].critics}
    before = {n: _params(b, ctx[0]) for n, b in blocks.items()}
    losses = train_step(run, batch)
    return losses, [{n: {k: v - before[n][k] for k, v in _params(b, c).items()}
                     for n, b in blocks.items()} for c in ctx]


def test_one_iteration_on_two_contexts_equals_one_context(voc_root, teacher_params, tmp_path):
    """Same batch, same starting weights: one GAN-KD iteration (critic step, then student
    step) on cpu(0)+cpu(1) changes the student, head and critics as it does on cpu(0).

    BatchNorm normalises over each device's images, so the batch is two copies of the same
    images: each half then has the statistics of the whole. What is compared is the rest:
    the split, the SSD loss normalised over the positives of both devices, the terms'
    per-device weighting, and both Trainers' aggregation over devices.

    "Within float tolerance" is measured, not guessed: at random weights some gradients
    are dominated by rounding (BatchNorm's cancellations, near-tied hard negatives, a
    critic's real and fake terms nearly cancelling), so that computing the same gradient
    on 4 images instead of 8 changes them. On one device, the half batch alone has exactly
    the doubled batch's gradient; parameters whose update moves by more than 1% between
    the two are not compared, and every other must agree within 2%, where a wiring error
    (per-device normalisation, a device's gradient left out) is off by 50% or more. The
    critics step with SGD here (see :func:`_gankd`).
    """
    train_set, _, classes = voc_datasets(voc_root)
    mx.random.seed(0)
    runs = [_gankd(classes, teacher_params, ctx)
            for ctx in ([mx.cpu(0)], [mx.cpu(0)], [mx.cpu(0), mx.cpu(1)])]
    for run in runs[1:]:
        _copy_weights(runs[0], run, tmp_path)
    # Four images per device: with two, BatchNorm on the 1x1 levels normalises two values.
    loader = runs[0].family.train_loader(train_set, runs[0], DATA_SHAPE, 4,
                          shuffle=False, augment='light')
    half = next(iter(loader))
    batch = [mx.nd.concat(b, b, dim=0) for b in half]

    losses_one, (one,) = _updates(runs[0], batch, runs[0].ctx)
    # The half batch alone has the same losses and gradients as the doubled batch, but is
    # computed in convolutions of 4 images, as each of the two devices computes it.
    _, (noise,) = _updates(runs[1], half, runs[1].ctx)
    losses_two, two = _updates(runs[2], batch, runs[2].ctx)

    for key in ('CrossEntropy', 'SmoothL1', 'Loss_G', 'Loss_D_real', 'Loss_D_fake'):
        np.testing.assert_allclose(losses_two[key], losses_one[key], rtol=5e-3, atol=1e-4,
                                   err_msg=key)
    compared = assert_two_devices_update_as_one(
        one, two, noise, {b: 20 if b == 'model' else 5 for b in one})
    assert any('predictor' in k for k in compared['model'])
    assert any(k.startswith('backbone') for k in compared['model'])


def test_epoch_sampler_gives_workers_equal_disjoint_shares_reshuffled_each_epoch():
    """Two workers' shares of one epoch: equal in size, disjoint, the same when drawn
    again (another process, or after a resume); the next epoch has another order and
    other augmentation seeds."""
    def draw(epoch, part, seed=233, length=17):
        sampler = EpochSampler(length, seed=seed, num_parts=2, part_index=part)
        sampler.set_epoch(epoch)
        return list(sampler)

    first, second = draw(0, 0), draw(0, 1)
    assert len(first) == len(second) == 8
    assert not {i for _, i in first} & {i for _, i in second}
    assert draw(0, 0) == first
    assert [i for _, i in draw(1, 0)] != [i for _, i in first]
    assert [s for s, _ in draw(1, 0)] != [s for s, _ in first]
    assert draw(0, 0, seed=234) != first
    unshuffled = EpochSampler(5, shuffle=False)
    assert [i for _, i in unshuffled] == list(range(5))


def test_batch_that_does_not_split_over_devices_is_refused(voc_root, teacher_params, tmp_path):
    proc = run_script('train_gankd_ssd.py', '--teacher', TEACHER, '--student', STUDENT,
                      '--teacher-params', teacher_params, '--data-shape', DATA_SHAPE,
                      '--dataset-root', voc_root, '--batch-size', 5, '--cpu-contexts', 2,
                      '--epochs', 1, '-j', 0, '--save-prefix', tmp_path / 'r')
    assert proc.returncode == 2
    assert 'does not split evenly over 2 devices' in proc.stderr
    assert 'Traceback' not in proc.stderr


@pytest.mark.parametrize('flags, message', [
    (['--amp'], '--amp needs GPUs'),
    (['--syncbn', '--cpu-contexts', '2'], '--syncbn needs GPUs'),
    (['--kvstore', 'nccl_ring'], '--kvstore must be'),
    (['--kvstore', 'dist_async'], 'asynchronous updates are not supported'),
    (['--distill', 'gan,fitnet'], "unknown distillation term 'fitnet'"),
    (['--distill', 'gan,hint', '--distill-weights', '1'], 'give one weight per term'),
])
def test_flags_that_cannot_work_here_are_refused_in_one_line(flags, message, voc_root,
                                                             teacher_params, tmp_path):
    proc = run_script('train_gankd_ssd.py', '--teacher', TEACHER, '--student', STUDENT,
                      '--teacher-params', teacher_params, '--data-shape', DATA_SHAPE,
                      '--dataset-root', voc_root, '--batch-size', 4, '--epochs', 1, '-j', 0,
                      '--save-prefix', tmp_path / 'r', *flags)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert message in lines[-1]
    assert 'Traceback' not in proc.stderr


def test_horovod_flag_without_horovod_is_a_clear_error(voc_root, teacher_params, tmp_path):
    try:
        import horovod.mxnet  # noqa: F401
        pytest.skip('Horovod is installed here; the refusal is for machines without it')
    except ImportError:
        pass
    proc = run_script('train_ssd.py', '--network', STUDENT, '--data-shape', DATA_SHAPE,
                      '--dataset-root', voc_root, '--batch-size', 4, '--epochs', 1, '-j', 0,
                      '--save-prefix', tmp_path / 'r', '--horovod')
    assert proc.returncode == 2
    assert 'pip install horovod' in proc.stderr.strip().splitlines()[-1]


def test_syncbn_rewrite_replaces_every_batchnorm_and_keeps_the_function():
    """With one device, SyncBatchNorm computes what BatchNorm computes; the copy shares the
    parameters, so training it trains the SSD."""
    net = build_ssd(**ssd_config(STUDENT, DATA_SHAPE, ['a', 'b']))
    x = mx.nd.random.uniform(shape=(4, 3, DATA_SHAPE, DATA_SHAPE))
    with mx.autograd.train_mode():
        expected = [m.asnumpy() for m in net.features(x)]
    def ops(block):
        graph = mx.sym.Group(list(block(mx.sym.var('data'))))
        return [n['op'] for n in json.loads(graph.tojson())['nodes']]
    batchnorms = ops(net.features).count('BatchNorm')
    synced = sync_batchnorm(net.features, 1, 'test')
    assert batchnorms > 5 and 'BatchNorm' not in ops(synced)
    assert ops(synced).count('_contrib_SyncBatchNorm') == batchnorms
    for name, p in synced.collect_params().items():
        assert p is net.features.collect_params()[name]
    net.features = synced  # replaces the SSD's child (same class)
    with mx.autograd.train_mode():
        got = [m.asnumpy() for m in net.features(x)]
    for level, (a, b) in enumerate(zip(got, expected)):
        # The highest levels are 1x1 maps normalised over 4 values: float32 rounding of
        # E[x^2] - E[x]^2 shows there; the relative error stays small.
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-2 * np.abs(b).max(),
                                   err_msg='level {}'.format(level))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _parameter_server(tmp_path, worker, deadline=400):
    """Run ``worker`` (an argv) as two workers beside a scheduler and one server on
    127.0.0.1 (a free port); every process is killed on the way out. Returns the workers'
    logs; each worker must exit with 0."""
    env = dict(os.environ, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(_free_port()),
               DMLC_NUM_SERVER='1', DMLC_NUM_WORKER='2', DMLC_NODE_HOST='127.0.0.1',
               PYTHONUNBUFFERED='1')
    procs, paths = [], [str(tmp_path / 'worker{}.log'.format(i)) for i in range(2)]
    try:
        for role in ('scheduler', 'server'):
            procs.append(subprocess.Popen([sys.executable, '-c', 'import mxnet'],
                                          env=dict(env, DMLC_ROLE=role),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        workers = []
        for path in paths:
            with open(path, 'w') as log:
                workers.append(subprocess.Popen(worker, env=dict(env, DMLC_ROLE='worker'),
                                                stdout=log, stderr=subprocess.STDOUT))
        procs += workers
        end = time.time() + deadline
        for w in workers:
            w.wait(timeout=max(1, end - time.time()))
        logs = [open(path).read() for path in paths]
        for w, log in zip(workers, logs):
            assert w.returncode == 0, log[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    return logs


# Each worker starts its parameters from its own values (worker 0: 1000 + i, worker 1:
# 2000 + i), broadcasts them through KeySpace Trainers, and takes one SGD step (lr 1) on
# the gradients 1 (worker 0) and 2 (worker 1), averaged: every parameter must end at
# worker 0's value minus 1.5. Several Trainers of many keys, as the first step of each
# one's last keys is where a pull of the initial value could be overtaken.
FIRST_STEP_WORKER = """
import json, sys
import mxnet as mx, numpy as np
from mxnet import autograd, gluon
from gankd.train.distributed import Distribution
dist = Distribution('dist_sync')
wrong = []
for t in range(8):
    params = [gluon.Parameter('t{}_p{}'.format(t, i), shape=(64,)) for i in range(100)]
    for i, p in enumerate(params):
        p.initialize(mx.init.Constant(1000.0 * (dist.rank + 1) + i), ctx=mx.cpu())
    trainer = dist.trainer(params, 'sgd', {'learning_rate': 1.0})
    with autograd.record():
        loss = sum((p.data() * (dist.rank + 1)).sum() for p in params)
    loss.backward()
    trainer.step(1)
    for i, p in enumerate(params):
        if not np.allclose(p.data().asnumpy(), 1000.0 + i - 1.5):
            wrong.append([t, i, float(p.data().asnumpy()[0])])
json.dump(wrong, open(sys.argv[1] + str(dist.rank), 'w'))
"""


def test_first_step_on_parameter_server_starts_from_worker0s_weights(tmp_path):
    """KeySpace Trainers over ``dist_sync``: the initial broadcast gives every worker
    worker 0's weights before the first gradients are summed. Without the wait in
    KeySpace.broadcast, a last key's weight came back as the summed gradient: this test
    failed in 6 of 6 runs."""
    out = str(tmp_path / 'wrong')
    _parameter_server(tmp_path, [sys.executable, '-c', 'import sys; sys.path.insert(0, {!r})\n'
                                 .format(str(ROOT)) + FIRST_STEP_WORKER, out], deadline=200)
    for rank in range(2):
        with open(out + str(rank)) as f:
            assert json.load(f) == [], 'worker {}: [trainer, key, value]'.format(rank)


def test_two_workers_on_parameter_server_end_with_identical_parameters(voc_root, teacher_params,
                                                                      tmp_path):
    """A scheduler, one server and two workers on 127.0.0.1 (``--kvstore dist_sync``): both
    workers train GAN-KD on their own half of the data and end with the same student, head
    and critics."""
    prefix = str(tmp_path / 'dist')
    train = [sys.executable, str(ROOT / 'scripts' / 'train_gankd_ssd.py'),
             '--teacher', TEACHER, '--student', STUDENT, '--teacher-params', teacher_params,
             '--data-shape', str(DATA_SHAPE), '--dataset-root', voc_root, '--batch-size', '4',
             '--epochs', '2', '--gan-epochs', '1', '-j', '0', '--kvstore', 'dist_sync',
             '--log-interval', '1', '--save-prefix', prefix, '--lr', '0.05']
    logs = _parameter_server(tmp_path, train)
    # Rank 0 writes <prefix>_*, rank 1 <prefix>_worker1_*; which process got which rank is
    # the scheduler's choice.
    assert os.path.exists(prefix + '_last.params')
    assert os.path.exists(prefix + '_worker1_last.params')
    assert any('worker 1 of 2: reads 1/2 of the training set' in l for l in logs)
    assert any('Validation' in l for l in logs)  # worker 0 validates
    # Student, adapters and head (the params file) and the critics (the last checkpoint):
    # every trained parameter is the same on both workers. BatchNorm's running statistics
    # are each worker's own (it sees other images), as on several GPUs without SyncBN.
    pairs = [(prefix + '_last.params', prefix + '_worker1_last.params')]
    pairs += [tuple(sorted(glob.glob(p + '_ckpt/epoch*/critics.params'))[-1]
                    for p in (prefix, prefix + '_worker1'))]
    for file_a, file_b in pairs:
        a, b = mx.nd.load(file_a), mx.nd.load(file_b)
        trained = [k for k in a if not any(s in k for s in ('running_', 'moving_', 'input_scales'))]
        assert a.keys() == b.keys() and len(trained) > 10
        for k in trained:
            np.testing.assert_allclose(a[k].asnumpy(), b[k].asnumpy(), rtol=1e-5, atol=1e-6,
                                       err_msg='{}: {}'.format(file_a, k))
        # The critics' input scales are averaged over the workers' first batches.
        for k in [k for k in a if 'input_scales' in k]:
            np.testing.assert_allclose(a[k].asnumpy(), b[k].asnumpy(), rtol=1e-6)
    # And training did move them: the first checkpoint (after epoch 0) differs from the end.
    first = mx.nd.load(sorted(glob.glob(prefix + '_ckpt/epoch*/model.params'))[0])
    last = mx.nd.load(prefix + '_last.params')
    assert any(not np.allclose(first[k].asnumpy(), last[k].asnumpy()) for k in first)


def test_syncbn_training_saves_params_that_evaluate(voc_root, tmp_path):
    """--syncbn on one device: the rewritten FeatureExpander trains, checkpoints and saves
    under the SSD's usual parameter names, so eval_voc.py loads the result."""
    prefix = str(tmp_path / 'sync')
    proc = run_script('train_ssd.py', '--network', STUDENT, '--data-shape', DATA_SHAPE,
                      '--dataset-root', voc_root, '--batch-size', 4, '--epochs', 1, '-j', 0,
                      '--save-prefix', prefix, '--syncbn', '--optimizer', 'adam')
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set(mx.nd.load(prefix + '_last.params'))
    assert any(n.startswith('features.') and n.endswith('_gamma') for n in names)
    proc = run_script('eval_voc.py', '--params', prefix + '_last.params',
                      '--dataset-root', voc_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith('mAP=')
