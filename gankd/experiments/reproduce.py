"""The command line of ``scripts/reproduce.py``: its flags, the grid they describe (a
preset of :mod:`gankd.experiments.presets` overridden by the flags) and running it.
"""
import argparse
import json
import os
import re
import shlex
import time
from pathlib import Path

from ..cli import split_list
from ..errors import GankdError
from .grid import BASELINE, METHODS, Grid, teacher_network
from .runner import run_grid

__all__ = ['build_parser', 'grid_from_args', 'preset_data', 'main']

_NAME = re.compile(r'^[A-Za-z0-9_.+-]+$')


# Reproduce flags passed to the trainings: (flag, training flag, applies to, argparse kw).
# 'both' go to teachers and students alike (the teacher's data shape must be the
# students'); 'student' and 'teacher' to one side only.
_PASS_THROUGH = [
    ('--data-shape', 'data-shape', 'both', dict(type=int)),
    ('--batch-size', 'batch-size', 'both', dict(type=int)),
    ('--num-workers', 'num-workers', 'both', dict(type=int)),
    ('--optimizer', 'optimizer', 'both', dict(choices=['sgd', 'adam'])),
    ('--augment', 'augment', 'both', dict(choices=['ssd', 'light'])),
    ('--gpus', 'gpus', 'both', dict()),
    ('--wd', 'wd', 'both', dict(type=float)),
    ('--log-interval', 'log-interval', 'both', dict(type=int)),
    ('--checkpoint-interval', 'checkpoint-interval', 'both', dict(type=int)),
    ('--pretrained-base', 'pretrained-base', 'both', dict(action='store_true', default=None)),
    ('--epochs', 'epochs', 'student', dict(type=int)),
    ('--gan-epochs', 'gan-epochs', 'student', dict(type=int)),
    ('--lr', 'lr', 'student', dict(type=float)),
    ('--lr-decay-epoch', 'lr-decay-epoch', 'student', dict()),
    ('--val-interval', 'val-interval', 'student', dict(type=int)),
    ('--teacher-epochs', 'epochs', 'teacher', dict(type=int)),
    ('--teacher-lr', 'lr', 'teacher', dict(type=float)),
    ('--teacher-lr-decay-epoch', 'lr-decay-epoch', 'teacher', dict()),
    ('--teacher-val-interval', 'val-interval', 'teacher', dict(type=int)),
]


def build_parser():
    """The flags of ``scripts/reproduce.py``."""
    p = argparse.ArgumentParser(
        description='Train and evaluate a grid of students x teachers x methods x seeds.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--preset', default=None,
                   help='a benchmark of gankd.experiments.presets (data, networks, seeds, '
                   'flags); the flags below override it')
    p.add_argument('--dataset-root', default=None, help='VOC devkit folder (default with '
                   '--preset: its synthetic data, generated into <work-dir>/data)')
    p.add_argument('--teachers', default=None,
                   help="comma-separated teacher networks; 'none' = plain-SSD baselines "
                   "(default without --preset: none,resnet50_v1)")
    p.add_argument('--students', default=None, help='comma-separated student networks')
    p.add_argument('--methods', default=None, help='comma-separated distillation methods '
                   '(known: {}; default gan)'.format(', '.join(METHODS)))
    p.add_argument('--method', action='append', default=[], metavar='NAME=FLAGS',
                   help="define a method for this grid, e.g. --method 'gan-w0.1=--adv-weight "
                   "0.1'")
    p.add_argument('--seeds', default=None, help='comma-separated student seeds (default 0)')
    p.add_argument('--teacher-seed', type=int, default=None, help='default 233')
    p.add_argument('--teacher-params', action='append', default=[], metavar='NET=PATH',
                   help='use this params file as teacher NET instead of training one')
    p.add_argument('--name', default=None, help='grid name (default: the preset, or the '
                   "stem of --out, or 'reproduce')")
    p.add_argument('--out', default=None, help='results JSON (default results/<name>.json)')
    p.add_argument('--work-dir', default=None,
                   help='params, logs and checkpoints (default params/reproduce/<name>)')
    p.add_argument('--select', default='last', choices=['last', 'best'],
                   help="students' params evaluated: 'last', or 'best' (chosen by the "
                   "trainings' validation, which is on the test split, so biased upward)")
    for flag, _, side, kw in _PASS_THROUGH:
        kw = dict(kw)
        kw.setdefault('default', None)
        names = ['-j', flag] if flag == '--num-workers' else [flag]
        p.add_argument(*names, help='training flag for {} (default: preset or script)'.format(
            {'both': 'teachers and students', 'student': 'students',
             'teacher': 'teachers'}[side]), **kw)
    p.add_argument('--extra-flags', default='', help='more student training flags, one '
                   "string, e.g. '--momentum 0.8'")
    p.add_argument('--teacher-extra-flags', default='', help='more teacher training flags')
    p.add_argument('--retire-changed', action='store_true',
                   help='run again the cells recorded with other flags (the preset changed '
                   'their recipe), keeping their old records under "retired" in --out')
    p.add_argument('--dry-run', action='store_true', help='print the commands, run nothing')
    return p


def _split_list(text, what, cast=str):
    return tuple(split_list(text, what, cast, required=True, unique=True))


def _parse_extra(text, what):
    """``'--momentum 0.8 --no-critic-bn'`` -> ``{'momentum': '0.8', 'no-critic-bn': True}``."""
    flags, tokens = {}, shlex.split(text or '')
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith('--'):
            raise GankdError('{}: expected a --flag, got {!r}'.format(what, tok))
        name, eq, value = tok[2:].partition('=')
        if eq:
            flags[name] = value
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith('--'):
            flags[name] = tokens[i + 1]
            i += 1
        else:
            flags[name] = True
        i += 1
    return flags


def _parse_pairs(items, what):
    pairs = {}
    for item in items:
        name, eq, value = item.partition('=')
        if not eq or not name.strip():
            raise GankdError('{} takes NAME=VALUE, got {!r}'.format(what, item))
        pairs[name.strip()] = value
    return pairs


def _check_networks(names, what, family='ssd'):
    if family == 'faster_rcnn':
        from ..detectors.faster_rcnn.model import BASE_NETWORKS, ZOO_PRESETS
        known = list(BASE_NETWORKS) + sorted(ZOO_PRESETS)
    else:
        from ..detectors.ssd.model import FEATURE_LAYERS
        known = list(FEATURE_LAYERS)
    bad = [n for n in names if n != 'none' and teacher_network(n) not in known]
    if bad:
        raise GankdError('{}: unknown network(s) {}; known: {}'.format(
            what, ', '.join(bad), ', '.join(known)))


def preset_data(bench, work_dir, dry_run):
    """The preset's synthetic dataset under ``work_dir/data``, generated if missing."""
    from ..data.synthetic import META_FILE, make_synthetic_voc
    root = os.path.join(work_dir, 'data')
    spec = bench.data
    want = {'num_train': spec.num_train, 'num_test': spec.num_test,
            'image_size': spec.image_size, 'seed': spec.seed, 'difficulty': spec.difficulty}
    if spec.classes:
        want['classes'] = list(spec.classes)
    meta_file = os.path.join(root, META_FILE)
    if os.path.exists(meta_file):
        with open(meta_file) as f:
            meta = dict({'difficulty': 'standard'}, **json.load(f))
        if meta.get('complete'):
            have = {k: meta.get(k) for k in want}
            if have != want:
                raise GankdError('{} holds other synthetic data ({}) than preset {} wants '
                                 '({}); use another --work-dir'.format(root, have, bench.name,
                                                                       want))
            return root
    if not dry_run:
        print('generating the synthetic data of {} into {}'.format(bench.name, root))
        make_synthetic_voc(root, progress=True, **want)
    return root


def _merge_flags(args, preset_teacher, preset_student):
    teacher, student = dict(preset_teacher), dict(preset_student)
    for flag, name, side, _ in _PASS_THROUGH:
        value = getattr(args, flag[2:].replace('-', '_'))
        if value is None:
            continue
        if side in ('both', 'teacher'):
            teacher[name] = value
        if side in ('both', 'student'):
            student[name] = value
    student.update(_parse_extra(args.extra_flags, '--extra-flags'))
    teacher.update(_parse_extra(args.teacher_extra_flags, '--teacher-extra-flags'))
    return teacher, student


def grid_from_args(args):
    """A :class:`Grid` from parsed flags: the preset (if any) overridden by the flags."""
    from .presets import get_preset
    bench = get_preset(args.preset) if args.preset else None
    name = args.name or (bench.name if bench else None) or (
        Path(args.out).stem if args.out else 'reproduce')
    if not _NAME.match(name):
        raise GankdError('--name {!r}: use letters, digits and . _ + - only'.format(name))
    out = os.path.abspath(args.out or os.path.join('results', name + '.json'))
    work_dir = os.path.abspath(args.work_dir or os.path.join('params', 'reproduce', name))
    teachers = _split_list(args.teachers, '--teachers') if args.teachers else (
        bench.teachers if bench else ('none', 'resnet50_v1'))
    if not args.students and not bench:
        raise GankdError('--students is required without --preset')
    students = _split_list(args.students, '--students') if args.students else bench.students
    methods = _split_list(args.methods, '--methods') if args.methods else (
        bench.methods if bench else ('gan',))
    seeds = _split_list(args.seeds, '--seeds', int) if args.seeds else (
        bench.seeds if bench else (0,))
    family = bench.family if bench else 'ssd'
    _check_networks(teachers, '--teachers', family)
    _check_networks(students, '--students', family)
    methods_flags = dict(METHODS, **(bench.method_flags if bench else {}))
    for mname, text in _parse_pairs(args.method, '--method').items():
        if not _NAME.match(mname) or mname == BASELINE:
            raise GankdError('--method: bad method name {!r}'.format(mname))
        methods_flags[mname] = tuple(shlex.split(text))
    for mname in methods:
        if mname not in methods_flags and mname != BASELINE:
            # Registered terms joined by '+' need no entry: a new term is usable at once.
            from ..distill.base import term_names
            parts = mname.split('+')
            if all(p in term_names() for p in parts):
                methods_flags[mname] = ('--distill', ','.join(parts))
    given = {k: v for k, v in _parse_pairs(args.teacher_params, '--teacher-params').items()}
    for net, path in given.items():
        if not os.path.isfile(path):
            raise GankdError('--teacher-params {}: no such file {}'.format(net, path))
    if args.dataset_root:
        root = os.path.abspath(args.dataset_root)
        if not os.path.isdir(root):
            raise GankdError('--dataset-root {} is not a folder'.format(args.dataset_root))
    elif bench:
        root = preset_data(bench, work_dir, args.dry_run)
    else:
        raise GankdError('--dataset-root is required without --preset')
    teacher_flags, student_flags = _merge_flags(
        args, bench.teacher_flags if bench else {}, bench.student_flags if bench else {})
    teacher_seed = args.teacher_seed if args.teacher_seed is not None else (
        bench.teacher_seed if bench else 233)
    return Grid(name=name, dataset_root=root, teachers=teachers, students=students,
                methods=methods, seeds=seeds, teacher_flags=teacher_flags,
                student_flags=student_flags, out=out, work_dir=work_dir,
                teacher_seed=teacher_seed, select=args.select, teacher_params=given,
                methods_flags=methods_flags,
                method_students=dict(bench.method_students) if bench else {},
                teacher_methods=dict(bench.teacher_methods) if bench else {},
                teacher_students=dict(bench.teacher_students) if bench else {},
                student_seeds=dict(bench.student_seeds) if bench else {},
                method_seeds=dict(bench.method_seeds) if bench else {},
                student_overrides=dict(bench.student_overrides) if bench else {},
                family=family, retire_changed=args.retire_changed)


def main(argv=None):
    """``scripts/reproduce.py``: returns 0 when every cell is done, 1 if any failed."""
    args = build_parser().parse_args(argv)
    grid = grid_from_args(args)
    tic = time.time()
    counts = run_grid(grid, dry_run=args.dry_run)
    if args.dry_run:
        print('dry run: {} cells, {} done, nothing run'.format(counts['cells'],
                                                               counts['skipped']))
        return 0
    print('{} cells: {} done before, {} finished now, {} failed ({:.0f} s); results: {}'
          .format(counts['cells'], counts['skipped'], counts['ok'], counts['failed'],
                  time.time() - tic, grid.out))
    return 1 if counts['failed'] else 0
