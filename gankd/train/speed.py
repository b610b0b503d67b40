"""Timing one GAN-KD iteration against the sum of its parts, on the same batch.

The parts are what an iteration cannot avoid: the student's forward and backward
through the head (detection loss), the teacher backbone's forward, and the critics'
forwards and backwards (``n_critic`` critic passes plus the student-side pass). What the
iteration spends beyond their sum is overhead: optimiser updates, weight clipping, the
one loss sync per iteration, copies between devices.
"""
from mxnet import autograd

from .loop import split, train_step
from ..deploy import median_seconds

__all__ = ['time_iteration_and_parts']


def _median(fn, repeats):
    return median_seconds(fn, repeats, warmup=2)


def time_iteration_and_parts(run, batch, repeats=10):
    """Median seconds of a full GAN-KD iteration and of each part alone.

    Parameters
    ----------
    run : gankd.train.loop.Run
        A GAN-KD run (with an :class:`AdversarialTerm`).
    batch : tuple of NDArray
        One training batch ``(images, cls_targets, box_targets)``.
    repeats : int

    Returns
    -------
    dict
        Seconds for ``iteration`` and each part, ``sum_of_parts`` and ``ratio``.
    """
    term = run.terms[0]
    xs, cls_t, box_t = [split(b, run.ctx) for b in batch]
    total = float(batch[0].shape[0])

    def student_part():
        with autograd.record():
            preds = [run.head(run.backbone(x)) for x in xs]
            sum_loss, _, _ = run.loss_fn([p[0] for p in preds], [p[1] for p in preds],
                                         cls_t, box_t)
            objectives = [l.sum() for l in sum_loss]
        autograd.backward(objectives)

    def teacher_part():
        for x in xs:
            run.teacher(x)

    t_maps = [run.teacher(x) for x in xs]
    s_maps = [[m.detach() for m in run.backbone(x)] for x in xs]

    def critic_part():
        for _ in range(term.n_critic):
            with autograd.record():
                losses = [(sum(s.mean() for s in term.critics(t)) -
                           sum(s.mean() for s in term.critics(s_))) * (x.shape[0] / total)
                          for t, s_, x in zip(t_maps, s_maps, xs)]
            autograd.backward(losses)
        # The student-side pass: critics on student maps, gradients into the maps.
        inputs = [[m.copy() for m in maps] for maps in s_maps]
        for maps in inputs:
            for m in maps:
                m.attach_grad()
        with autograd.record():
            adv = [sum(s.mean() for s in term.critics(maps)) for maps in inputs]
        autograd.backward(adv)

    parts = {'student_fwd_bwd': _median(student_part, repeats),
             'teacher_fwd': _median(teacher_part, repeats),
             'critics_fwd_bwd': _median(critic_part, repeats)}
    iteration = _median(lambda: train_step(run, batch, distill=True), repeats)
    total_parts = sum(parts.values())
    result = dict(parts, iteration=iteration, sum_of_parts=total_parts,
                  ratio=iteration / total_parts)
    return result
