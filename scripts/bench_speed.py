"""Time one GAN-KD iteration and its parts alone; the last line is ``ratio=X``.

With ``--plain NETWORK``: a plain SSD step of this loop against the inner loop of
GluonCV's ``train_ssd.py`` on the same architecture and batch (``ratio`` = ours / theirs).

Examples:
    python scripts/bench_speed.py --teacher resnet50_v1 --student mobilenet1.0 \
        --data-shape 128 --batch-size 8
    python scripts/bench_speed.py --plain mobilenet1.0 --data-shape 128 --batch-size 8
"""
import argparse
import os
import tempfile

from gankd.cli import main_guard


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--teacher', default='resnet50_v1')
    p.add_argument('--student', default='mobilenet1.0')
    p.add_argument('--teacher-params', default=None,
                   help='teacher weights (speed does not depend on them: random if omitted)')
    p.add_argument('--data-shape', type=int, default=128)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--n-critic', type=int, default=1)
    p.add_argument('--dataset-root', default=None,
                   help='VOC-layout data; a small synthetic set is generated if omitted')
    p.add_argument('--gpus', default='')
    p.add_argument('--cpu-contexts', type=int, default=1)
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--plain', default=None, metavar='NETWORK',
                   help='time a plain SSD of NETWORK against GluonCV\'s train_ssd.py loop')
    p.add_argument('--optimizer', default='sgd', choices=['sgd', 'adam'])
    args = p.parse_args()

    import mxnet as mx
    from gankd.train.run import build_gankd_run, contexts
    from gankd.data.voc import voc_datasets
    from gankd.detectors.detector import save_detector
    from gankd.train.run import build_plain_run
    from gankd.train.speed import time_iteration_and_parts, time_plain_step_against_gluoncv
    from gankd.detectors.ssd.model import build_ssd, ssd_config
    from gankd.data.synthetic import make_synthetic_voc

    mx.random.seed(0)
    ctx = contexts(args.gpus, args.cpu_contexts)
    tmp = tempfile.mkdtemp(prefix='gankd_bench_')
    root = args.dataset_root
    if root is None:
        root = os.path.join(tmp, 'voc')
        make_synthetic_voc(root, num_train=args.batch_size, num_test=1,
                           image_size=args.data_shape, seed=0)
    train_set, _, classes = voc_datasets(root)
    if args.plain:
        run = build_plain_run(args.plain, args.data_shape, classes, ctx,
                              optimizer=args.optimizer)
        batch = next(iter(run.family.train_loader(train_set, run, args.data_shape,
                                                  args.batch_size)))
        result = time_plain_step_against_gluoncv(run, batch, args.repeats)
        print('plain={} data_shape={} batch={} devices={} optimizer={}'.format(
            args.plain, args.data_shape, args.batch_size, len(ctx), args.optimizer))
        for key in ('gluoncv_step', 'gankd_step'):
            print('{:16s} {:8.1f} ms'.format(key, 1000 * result[key]))
        print('ratio={:.3f}'.format(result['ratio']))
        return
    teacher_params = args.teacher_params
    if teacher_params is None:
        cfg = ssd_config(args.teacher, args.data_shape, classes)
        teacher_params = os.path.join(tmp, 'teacher.params')
        save_detector(teacher_params, build_ssd(**cfg), {'kind': 'ssd', 'ssd': cfg})
    run = build_gankd_run(args.teacher, args.student, args.data_shape, classes, ctx,
                          teacher_params=teacher_params, n_critic=args.n_critic)
    loader = run.family.train_loader(train_set, run, args.data_shape, args.batch_size)
    batch = next(iter(loader))
    result = time_iteration_and_parts(run, batch, args.repeats)
    print('teacher={} student={} data_shape={} batch={} n_critic={} devices={}'.format(
        args.teacher, args.student, args.data_shape, args.batch_size, args.n_critic, len(ctx)))
    for key in ('student_step', 'teacher_fwd', 'terms', 'sum_of_parts', 'iteration'):
        print('{:16s} {:8.1f} ms'.format(key, 1000 * result[key]))
    print('ratio={:.3f}'.format(result['ratio']))


if __name__ == '__main__':
    main_guard(main)
