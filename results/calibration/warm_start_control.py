"""Does the feature-transfer path carry the teacher's knowledge? The feature-transfer
control with a head start.

    OMP_NUM_THREADS=1 python results/calibration/warm_start_control.py TEACHER_PARAMS \
        DATASET_ROOT [--reinit stage3,stage4,expand] [--iterations 300] [--seed 0] \
        [--teacher-bn running] [--lr 0.001]

The control's run (a student of the teacher's architecture, ``--distill hint
--hint-connector none --head frozen --det-weight 0``, Adam at 1e-3, batch 32, the light
augmentation) is built as ``train_gankd_ssd.py`` builds it, then:

1. the student backbone gets the teacher backbone's weights and is evaluated through the
   frozen head: it must score the teacher's own mAP, or the student's path to the head
   differs from the teacher's (a bug);
2. the parameters whose names contain one of ``--reinit`` are drawn afresh (MSRA, as
   from scratch; BatchNorm reset), the student is evaluated again, trained through hint
   alone for ``--iterations`` iterations, and evaluated once more. If the hint carries
   the teacher's maps, the mAP returns towards the teacher's. ``--reinit ''`` draws
   nothing: the student starts as the teacher, and hint alone should keep it there.

``--teacher-bn`` and ``--lr`` (Adam's) are ``train_gankd_ssd.py``'s; ``--teacher-bn``: the
BatchNorm statistics the teacher gives its maps with.
"""
import argparse

import mxnet as mx
import numpy as np

from gankd.data.voc import voc_datasets
from gankd.detectors.detector import load_detector
from gankd.detectors.ssd.model import MSRA
from gankd.train.loop import evaluate, train_step
from gankd.train.run import build_gankd_run


def voc_map(run, val):
    names, values = evaluate(run.family, run.backbone, run.head, val, run.ctx, run.classes)
    return 100 * dict(zip(names, values))['mAP']


def control_run(teacher_params, root, teacher_bn='running', lr=1e-3):
    """The feature-transfer control's run, built as ``train_gankd_ssd.py`` builds it, from
    a teacher's params (``teacher_bn``: ``--teacher-bn``; ``lr``: Adam's); returns
    ``(run, data_shape, train_set, test_set)``."""
    meta, _, _ = load_detector(teacher_params)
    network, shape = meta['ssd']['base'], int(meta['ssd']['data_shape'])
    train, test, classes = voc_datasets(root)
    run = build_gankd_run(network, network, shape, classes, [mx.cpu()],
                          teacher_params=teacher_params, distill=('hint',),
                          hint_connector='none', head='frozen', det_weight=0.0,
                          optimizer='adam', lr=lr, teacher_bn=teacher_bn)
    return run, shape, train, test


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('teacher_params')
    p.add_argument('root')
    p.add_argument('--reinit', default='stage3,stage4,expand')
    p.add_argument('--iterations', type=int, default=300)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--teacher-bn', default='running', choices=['running', 'batch'])
    p.add_argument('--lr', type=float, default=1e-3)
    args = p.parse_args()
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    run, shape, train, test = control_run(args.teacher_params, args.root, args.teacher_bn,
                                          args.lr)
    ctx = run.ctx
    val = run.family.val_loader(test, shape, 32, 0)
    teacher = list(run.teacher.collect_params().values())
    student = list(run.backbone.collect_params().values())
    assert [q.shape for q in teacher] == [q.shape for q in student]
    for t, s in zip(teacher, student):
        s.set_data(t.data())
    print('student = teacher weights, through the frozen head: {:.1f} mAP'.format(
        voc_map(run, val)))
    parts = [k for k in args.reinit.split(',') if k]
    drawn = 0
    for q in student:
        if not any(k in q.name for k in parts):
            continue
        drawn += q.data().size
        if q.name.endswith('weight') and len(q.shape) >= 2:
            q.initialize(MSRA, ctx=ctx, force_reinit=True)
        elif q.name.endswith(('gamma', 'running_var')):
            q.set_data(mx.nd.ones(q.shape))
        else:  # beta, bias, running_mean
            q.set_data(mx.nd.zeros(q.shape))
    print('{} of {} student weights drawn afresh ({}): {:.1f} mAP'.format(
        drawn, sum(q.data().size for q in student), args.reinit, voc_map(run, val)))
    loader = run.family.train_loader(train, run, shape, 32, 0, augment='light',
                                     seed=args.seed)
    done = 0
    while done < args.iterations:
        for batch in loader:
            values = train_step(run, batch)
            done += 1
            if done % 50 == 0:
                print('iteration {}: Loss_hint {:.4f}, CrossEntropy {:.3f}, SmoothL1 {:.3f}'
                      .format(done, values['Loss_hint'], values['CrossEntropy'],
                              values['SmoothL1']), flush=True)
            if done == args.iterations:
                break
    print('after {} iterations of hint alone (teacher BatchNorm on {} statistics, Adam at '
          '{:g}): {:.1f} mAP'.format(done, args.teacher_bn, args.lr, voc_map(run, val)))


if __name__ == '__main__':
    main()
