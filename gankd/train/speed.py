"""Timing one distillation iteration against the sum of its parts, on the same batch.

The parts are what an iteration cannot avoid, each timed through the code the loop itself
runs: the student's step (forward and backward through the head with the task loss, and
its optimiser update), the teacher backbone's forward, and every term's own work (for
GAN-KD the real critic step, :meth:`gankd.distill.DistillTerm.prepare`, with its update
and constraint, plus the student-side pass through the critics). What the iteration
spends beyond their sum is the loop's overhead: composing the objective, copies between
devices, the one loss sync per iteration. (Timing the parts trains the run's student and
critics a few steps; the weights do not change what a step costs.)
"""
import statistics

import mxnet as mx
from mxnet import autograd

from ..deploy import median_seconds
from ..distill.base import Captures
from .loop import train_step

__all__ = ['time_iteration_and_parts', 'time_plain_step_against_gluoncv']


def _medians(fns, repeats, warmup=2):
    """Median seconds of each function, timed in turn within every round: a machine whose
    speed drifts (shared cores) shifts all of them alike, not one."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(median_seconds(fn, 1, warmup=0))
    return {name: statistics.median(t) for name, t in times.items()}


def time_iteration_and_parts(run, batch, repeats=10):
    """Median seconds of a full distillation iteration and of each part alone.

    Parameters
    ----------
    run : gankd.train.loop.Run
        A distillation run (with at least one term).
    batch : tuple of NDArray
        One batch of the family's training loader.
    repeats : int

    Returns
    -------
    dict
        Seconds for ``iteration`` and each part (``student_step``, ``teacher_fwd``,
        ``terms``), ``sum_of_parts`` and ``ratio``.
    """
    family = run.family
    xs, targets = family.unpack(batch, run.ctx)
    total = float(sum(x.shape[0] for x in xs))

    def student_part():
        with autograd.record():
            preds = [family.forward_train(run.head, run.backbone(x), t)
                     for x, t in zip(xs, targets)]
            objectives, _ = family.task_loss(preds, targets)
        autograd.backward(objectives)
        run.trainer.step(1, ignore_stale_grad=True)  # connectors get no gradient here

    def teacher_part():
        for x in xs:
            run.teacher_outputs(x)

    t_outs = [run.teacher_outputs(x) for x in xs]
    s_outs = [run.student_outputs(x) for x in xs]

    def terms_part():
        # Fresh leaves stand for the student's maps, so the terms' backward stops there.
        caps = []
        for (s, s_rec), (t, t_rec), x, tg in zip(s_outs, t_outs, xs, targets):
            leaves = [m.detach().copy() for m in s]
            rec_leaves = {k: m.detach().copy() for k, m in s_rec.items()}
            for m in leaves + list(rec_leaves.values()):
                m.attach_grad()
            caps.append(Captures(leaves, t, x.shape[0] / total, targets=tg, family=family,
                                 student_records=rec_leaves, teacher_records=t_rec))
        for term in run.terms:
            term.prepare(caps)
        with autograd.record():
            if any(t.needs_teacher_preds or t.needs_teacher_head for t in run.terms):
                for cap in caps:  # prediction-level terms compare the head's outputs
                    cap.predictions = family.forward_train(run.head, cap.student_maps,
                                                           cap.targets)
            if any(t.needs_teacher_preds for t in run.terms):
                with autograd.pause(train_mode=True):
                    for cap in caps:
                        cap.teacher_predictions = family.reference_predictions(
                            run.teacher_head, cap.teacher_maps, cap.predictions)
            losses = [l for term in run.terms for l in term.losses(caps)]
        autograd.backward(losses)

    parts = _medians({'student_step': student_part, 'teacher_fwd': teacher_part,
                      'terms': terms_part,
                      'iteration': lambda: train_step(run, batch, distill=True)}, repeats)
    iteration = parts.pop('iteration')
    total_parts = sum(parts.values())
    return dict(parts, iteration=iteration, sum_of_parts=total_parts,
                ratio=iteration / total_parts)


def time_plain_step_against_gluoncv(run, batch, repeats=10):
    """Median seconds of a plain SSD step through this loop and through the inner loop of
    GluonCV's ``scripts/detection/ssd/train_ssd.py``, on the same architecture and batch.

    GluonCV's loop, as it is written there: the whole SSD hybridised, one forward per
    device under ``autograd.record``, ``SSDMultiBoxLoss`` over the devices,
    ``autograd.backward``, ``trainer.step(1)``, then its two loss metrics updated (which
    copy the losses to the host, as this loop's one sync does).

    Parameters
    ----------
    run : gankd.train.loop.Run
        A plain SSD run (:func:`gankd.train.run.build_plain_run`).
    batch : tuple of NDArray
        ``(images, cls_targets, box_targets)``.

    Returns
    -------
    dict
        ``gankd_step``, ``gluoncv_step`` (seconds) and ``ratio`` (gankd / gluoncv).
    """
    from gluoncv.loss import SSDMultiBoxLoss
    from mxnet import gluon
    family = run.family
    net = family.build(run.meta['ssd'], run.ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    # The run's optimiser and hyper-parameters (train_ssd.py: SGD, momentum 0.9, wd 5e-4).
    opt = run.trainer._optimizer
    settings = {'learning_rate': run.trainer.learning_rate, 'wd': opt.wd}
    if hasattr(opt, 'momentum'):
        settings['momentum'] = opt.momentum
    trainer = gluon.Trainer(net.collect_params(), opt.__class__.__name__.lower(), settings)
    mbox_loss = SSDMultiBoxLoss()
    ce_metric, smoothl1_metric = mx.metric.Loss('CrossEntropy'), mx.metric.Loss('SmoothL1')
    xs, targets = family.unpack(batch, run.ctx)
    cls_targets, box_targets = [t[0] for t in targets], [t[1] for t in targets]
    batch_size = batch[0].shape[0]

    def gluoncv_step():
        with autograd.record():
            cls_preds, box_preds = [], []
            for x in xs:
                cls_pred, box_pred, _ = net(x)
                cls_preds.append(cls_pred)
                box_preds.append(box_pred)
            sum_loss, cls_loss, box_loss = mbox_loss(cls_preds, box_preds, cls_targets,
                                                     box_targets)
            autograd.backward(sum_loss)
        trainer.step(1)
        ce_metric.update(0, [l * batch_size for l in cls_loss])
        smoothl1_metric.update(0, [l * batch_size for l in box_loss])

    times = _medians({'gluoncv_step': gluoncv_step,
                      'gankd_step': lambda: train_step(run, batch, distill=False)}, repeats)
    return dict(times, ratio=times['gankd_step'] / times['gluoncv_step'])
