"""The quick start: synthetic data, a teacher, a baseline student, a GAN-KD student.

Everything goes through the same flags a user would pass to the scripts, so the quick
start exercises exactly the code paths of ``train_ssd.py``, ``train_gankd_ssd.py`` and
``eval_voc.py``.
"""
import json
import os
import time

from tqdm import tqdm

from ..cli import train_from_args, training_parser
from ..data.synthetic import make_synthetic_voc
from ..eval.params import evaluate_params

__all__ = ['PRESETS', 'quickstart', 'format_result']

# Sized for a 2-core CPU: 'default' aims at 10 minutes, 'tiny' takes about one (for tests).
# What the benchmark calibrations taught (results/README.md): networks from scratch need
# hundreds of iterations before mAP means anything; 64 px costs half of 96 px per
# iteration for the same learning; three classes of clearly different outline are
# learned about twice as fast as six; and ResNets learn several times faster per
# iteration than MobileNets of the same size (resnet10_v1_0.25: 30 mAP after 625
# iterations, mobilenet0.5: 9 after 750). So: small ResNets (gankd.detectors.backbones),
# a teacher of 1,250 iterations and students of 375, each validated once, at its end
# (measured as set: 7 min 21 s, teacher 41.1 mAP, students 25.6 and 26.5; README,
# "What was verified where").
PRESETS = {
    'default': dict(num_train=4000, num_test=300, image_size=64, data_shape=64,
                    classes=('circle', 'triangle', 'cross'), difficulty='easy',
                    teacher='resnet10_v1_0.5', student='resnet10_v1_0.25', batch_size=32,
                    teacher_epochs=10, teacher_lr_decay_epoch='8', student_epochs=3,
                    gan_epochs=3, optimizer='adam', lr=1e-3, lr_decay_epoch='99'),
    'tiny': dict(num_train=32, num_test=8, image_size=64, data_shape=64,
                 teacher='resnet10_v1_0.5', student='resnet10_v1_0.25', batch_size=8,
                 teacher_epochs=1, student_epochs=2, gan_epochs=1, optimizer='adam',
                 lr=1e-3, lr_decay_epoch='100'),
}


def _train(distill, flags):
    args = training_parser('quickstart', distill=distill).parse_args(
        [str(f) for f in flags])
    return train_from_args(args, distill=distill)


def quickstart(out_dir='runs/quickstart', preset='default', seed=233, workers=1, speed=True):
    """Run the quick start and return its numbers.

    Parameters
    ----------
    out_dir : str
        Where the data and all params, logs and results go.
    preset : str
        A key of :data:`PRESETS`.
    seed : int
    workers : int
        Data loader processes.
    speed : bool
        Also time the exported teacher and GAN-KD student at batch 1
        (:func:`gankd.deploy.bench_exported`), after the wall time is taken.

    Returns
    -------
    dict
        mAPs of teacher, baseline student and GAN-KD student, their params files, the
        settings and the wall time; also written to ``out_dir/quickstart.json``.
    """
    p = PRESETS[preset]
    data = os.path.join(out_dir, 'data')
    params = os.path.join(out_dir, 'params')
    tic = time.time()
    make_synthetic_voc(data, num_train=p['num_train'], num_test=p['num_test'],
                       image_size=p['image_size'], seed=seed, progress=True,
                       classes=p.get('classes'), difficulty=p.get('difficulty', 'standard'))
    common = ['--data-shape', p['data_shape'], '--batch-size', p['batch_size'],
              '--dataset-root', data, '-j', workers, '--seed', seed, '--lr', p['lr'],
              '--optimizer', p['optimizer'], '--augment', 'light',
              '--log-interval', 10 ** 6, '--progress']
    student_schedule = ['--lr-decay-epoch', p['lr_decay_epoch'],
                        '--val-interval', p['student_epochs']]
    stages = tqdm(total=3, desc='quick start', unit='model')
    teacher = _train(False, common + [
        '--network', p['teacher'], '--epochs', p['teacher_epochs'],
        '--val-interval', p['teacher_epochs'], '--lr-decay-epoch',
        p.get('teacher_lr_decay_epoch', p['lr_decay_epoch']),
        '--save-prefix', os.path.join(params, 'teacher')])
    stages.update()
    baseline = _train(False, common + student_schedule + [
        '--network', p['student'], '--epochs', p['student_epochs'],
        '--save-prefix', os.path.join(params, 'baseline')])
    stages.update()
    # GAN-KD itself, not train_gankd_ssd.py's default recipe (GAN-KD plus a cosine term).
    gankd = _train(True, common + student_schedule + [
        '--recipe', 'gankd', '--teacher', p['teacher'], '--student', p['student'],
        '--teacher-params', teacher['best_params'], '--epochs', p['student_epochs'],
        '--gan-epochs', p['gan_epochs'], '--save-prefix', os.path.join(params, 'gankd')])
    stages.update()
    stages.close()
    result = {'preset': preset, 'settings': p, 'seed': seed, 'data': data}
    for key, run in (('teacher', teacher), ('baseline', baseline), ('gankd', gankd)):
        ev = evaluate_params(run['best_params'], data, _cpu(), progress=True)
        result[key] = {'params': run['best_params'], 'mAP': ev['mAP']}
    result['seconds'] = time.time() - tic
    if speed:
        # What distillation buys: the exported student's latency against the teacher's.
        from ..deploy import bench_exported
        for key in ('teacher', 'gankd'):
            row = bench_exported(result[key]['params'], runs=30)
            result[key].update(latency_ms=row['latency_ms'], num_params=row['num_params'])
    with open(os.path.join(out_dir, 'quickstart.json'), 'w') as f:
        json.dump(result, f, indent=1)
    return result


def _cpu():
    import mxnet as mx
    return [mx.cpu()]


def format_result(result):
    """Table 1's shape: the teacher, then the student without and with GAN-KD."""
    s = result['settings']
    gain = 100 * (result['gankd']['mAP'] - result['baseline']['mAP'])
    lines = [
        'Quick start (synthetic VOC, {} train / {} test images, {} px, seed {}): VOC07 mAP'
        .format(s['num_train'], s['num_test'], s['data_shape'], result['seed']),
        '',
        '| student | teacher: none | teacher: {} (GAN-KD) | gain |'.format(s['teacher']),
        '|---|---|---|---|',
        '| {} | {:.1f} | {:.1f} | {:+.1f} |'.format(
            s['student'], 100 * result['baseline']['mAP'], 100 * result['gankd']['mAP'], gain),
        '',
        'teacher {} alone: {:.1f} mAP'.format(s['teacher'], 100 * result['teacher']['mAP']),
        '',
    ]
    if 'latency_ms' in result['gankd']:
        t, g = result['teacher'], result['gankd']
        lines += ['speed (exported, batch 1, this CPU): teacher {:.2f} ms, GAN-KD student {:.2f} '
                  'ms: {:.2f}x faster, {:.1f}x fewer parameters'.format(
                      t['latency_ms'], g['latency_ms'], t['latency_ms'] / g['latency_ms'],
                      t['num_params'] / g['num_params']), '']
    lines += [
        'files:',
        '  data      {}'.format(result['data']),
        '  teacher   {}'.format(result['teacher']['params']),
        '  baseline  {}'.format(result['baseline']['params']),
        '  GAN-KD    {}'.format(result['gankd']['params']),
        '  (logs and per-epoch history beside each params file)',
        'wall time: {:.0f} s'.format(result['seconds']),
    ]
    return '\n'.join(lines)
