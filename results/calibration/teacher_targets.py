"""Are the feature-transfer control's targets the teacher's real maps? The teacher on
the distillation loader's batches.

    OMP_NUM_THREADS=1 python results/calibration/teacher_targets.py TEACHER_PARAMS \
        DATASET_ROOT [--batches 3]

Builds the control's run as ``train_gankd_ssd.py`` builds it (``--distill hint
--hint-connector none --head frozen --det-weight 0``, batch 32, the light augmentation)
and prints, for the first batches of its training loader, the input's mean and RMS, the
mean square of the teacher's six maps, and the teacher's own detection loss through the
head the student drives; then the same statistics on the validation loader. A teacher fed
other inputs in distillation than in its training (another normalisation, say) would show
a high detection loss there, or maps of another scale than on the validation images.
"""
import argparse

import mxnet as mx
import numpy as np
from mxnet import autograd

from warm_start_control import control_run   # this folder's script: the same run


def _stats(x, maps):
    return 'input mean {:.3f} rms {:.3f}; teacher maps mean square {}'.format(
        x.mean().asscalar(), mx.nd.square(x).mean().sqrt().asscalar(),
        ', '.join('{:.3f}'.format(mx.nd.square(m).mean().asscalar()) for m in maps))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('teacher_params')
    p.add_argument('root')
    p.add_argument('--batches', type=int, default=3)
    args = p.parse_args()
    mx.random.seed(0)
    np.random.seed(0)
    run, shape, train, test = control_run(args.teacher_params, args.root)
    family = run.family
    loader = family.train_loader(train, run, shape, 32, 0, augment='light', seed=0)
    for i, batch in enumerate(loader):
        if i == args.batches:
            break
        xs, targets = family.unpack(batch, run.ctx)
        maps = run.teacher(xs[0])
        with autograd.record():   # training-mode losses, as the loop logs them
            preds = family.forward_train(run.teacher_head, list(maps), targets[0])
            _, logged = family.task_loss([preds], [targets[0]])
        losses = ', '.join('{} {:.3f}'.format(name, sum(v.asscalar() for v in per_device))
                           for name, per_device in logged.items())
        print('training batch {}: {}; teacher detection loss: {}'.format(
            i, _stats(xs[0], maps), losses))
    for i, batch in enumerate(family.val_loader(test, shape, 32, 0)):
        if i == args.batches:
            break
        x = batch[0].as_in_context(run.ctx[0])
        print('validation batch {}: {}'.format(i, _stats(x, run.teacher(x))))


if __name__ == '__main__':
    main()
