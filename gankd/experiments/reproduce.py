"""The reproduction grid: students x teachers x methods x seeds, trained and evaluated.

Every training is a subprocess of ``scripts/train_ssd.py`` (teachers, baselines) or
``scripts/train_gankd_ssd.py`` (distilled students), run with ``--resume auto``: a crash
in one cell is recorded as failed without ending the grid, memory is given back after
each cell, and an interrupted cell continues from its last checkpoint. Each finished
cell is evaluated (VOC07 mAP, :func:`gankd.voc_eval.evaluate_params`) and appended as
one record to the results JSON, which is rewritten atomically; a re-run skips the cells
whose record says ``ok``, so an interrupted grid resumes where it stopped.

Cells run seed by seed (all of seed 0 first), so a grid stopped early still fills the
whole table, with fewer seeds.
"""
import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..cli import split_list
from ..errors import GankdError
from ..stopping import StopSignals, exit_code

__all__ = ['METHODS', 'BASELINE', 'Grid', 'Cell', 'plan', 'run_grid', 'load_results',
           'save_record', 'build_parser', 'grid_from_args', 'main']

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / 'scripts'

#: Distillation methods: name -> extra flags of ``scripts/train_gankd_ssd.py``. GAN-KD
#: with the defaults is 'gan'; other methods (issue 5: 'hint' = ``--distill hint``) are
#: one entry each. ``--method NAME=FLAGS`` adds one for a single grid.
METHODS: Dict[str, Tuple[str, ...]] = {
    'gan': (),
    # The related methods of the seeds, on the same SSD and loop (issue 5's ablation).
    'hint': ('--distill', 'hint'),
    'soft+bounded': ('--distill', 'soft,bounded'),
    'crosshead': ('--distill', 'crosshead'),
    'di': ('--distill', 'di'),
    'gan+cosine': ('--distill', 'gan,cosine'),
    'gan+hint': ('--distill', 'gan,hint'),
    'gan+crosshead': ('--distill', 'gan,crosshead'),
}
#: The method name of plain-SSD students (teacher 'none').
BASELINE = 'baseline'
RESULTS_FORMAT = 'gankd-reproduce-results/1'
_NAME = re.compile(r'^[A-Za-z0-9_.+-]+$')


@dataclass
class Grid:
    """What to run, fully resolved (paths absolute, flags merged).

    Attributes
    ----------
    name : str
    dataset_root : str
    teachers : tuple of str
        ``'none'`` stands for the plain-SSD baseline students.
    students, methods : tuple of str
    seeds : tuple of int
    teacher_flags, student_flags : dict
        Training flags (name without ``--`` -> value; True means a bare switch).
    out : str
        Results JSON.
    work_dir : str
        Params, logs and checkpoints of every cell.
    teacher_seed : int
    select : str
        Which params of a student are evaluated: 'last' or 'best'.
    teacher_params : dict
        Teacher network -> params file to use instead of training one.
    methods_flags : dict
        Method name -> extra flags (a copy of :data:`METHODS` plus ``--method``).
    method_students : dict
        Method -> the students it is run on (default: every one of ``students``). A
        student named here but not in ``students`` (a control's) gets its baseline and
        the methods that name it.
    teacher_methods : dict
        Teacher -> the methods it is used with (default: all).
    teacher_students : dict
        Teacher -> the students it teaches (default: all).
    student_overrides : dict
        Student -> training flags that replace ``student_flags`` for it (baseline and
        distilled alike, so a cell's students still share everything).
    student_seeds : dict
        Student -> its seeds, instead of ``seeds`` (a costly control's student).
    """
    name: str
    dataset_root: str
    teachers: Tuple[str, ...]
    students: Tuple[str, ...]
    methods: Tuple[str, ...]
    seeds: Tuple[int, ...]
    teacher_flags: Dict[str, object]
    student_flags: Dict[str, object]
    out: str
    work_dir: str
    teacher_seed: int = 233
    select: str = 'last'
    teacher_params: Dict[str, str] = field(default_factory=dict)
    methods_flags: Dict[str, Tuple[str, ...]] = field(default_factory=lambda: dict(METHODS))
    method_students: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    teacher_methods: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    teacher_students: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    student_overrides: Dict[str, Dict[str, object]] = field(default_factory=dict)
    student_seeds: Dict[str, Tuple[int, ...]] = field(default_factory=dict)

    def all_students(self):
        """The students in run order: first those only some methods name (a control's
        student: the controls decide what every other number means, so they run first),
        then ``students`` as listed."""
        extra = [s for ss in self.method_students.values() for s in ss
                 if s not in self.students]
        return tuple(dict.fromkeys(extra + list(self.students)))

    def runs_method(self, student, teacher, method):
        """Whether the grid has the cell (student, teacher, method)."""
        if method in self.method_students:
            if student not in self.method_students[method]:
                return False
        elif student not in self.students:
            return False
        return (method in self.teacher_methods.get(teacher, (method,)) and
                student in self.teacher_students.get(teacher, (student,)))

    @property
    def gpus(self):
        return str(self.student_flags.get('gpus', '') or '')


@dataclass
class Cell:
    """One training (or one given teacher) and its evaluation.

    ``command`` is None for a teacher given with ``--teacher-params``.
    """
    key: str
    role: str                # 'teacher', 'baseline' or 'distill'
    student: Optional[str]
    teacher: str
    method: Optional[str]
    seed: int
    prefix: str              # --save-prefix of the training
    params: str              # the params file evaluated
    command: Optional[List[str]]
    depends: Optional[str] = None   # key of the teacher cell

    @property
    def flags(self):
        """What identifies the training: the command without interpreter and script."""
        return self.command[2:] if self.command else ['--teacher-params', self.params]

    @property
    def history(self):
        return self.prefix + '_history.jsonl'

    @property
    def log(self):
        return os.path.join(os.path.dirname(self.prefix), 'output.log')


# --------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------
def flag_list(flags):
    """``{'data-shape': 96, 'pretrained-base': True}`` -> ``['--data-shape', '96',
    '--pretrained-base']``; False and None are left out."""
    out = []
    for name, value in flags.items():
        if value is None or value is False:
            continue
        out.append('--' + name)
        if value is not True:
            out.append(str(value))
    return out


def _known_flags(distill):
    """Long option names (without ``--``) of a training script's parser."""
    from ..cli import training_parser
    parser = training_parser('check', distill=distill)
    return {s[2:] for a in parser._actions for s in a.option_strings if s.startswith('--')}


def _check_command(command, distill, what):
    """Parse a training command's flags with the script's own parser, so a bad flag is
    one error before anything trains instead of one failed cell per training."""
    from ..cli import training_parser
    parser = training_parser('check', distill=distill)

    def error(message):
        raise GankdError('{}: {}'.format(what, message))
    parser.error = error
    parser.parse_args(command[2:])


RANDOM_SUFFIX = '@random'


def teacher_network(name):
    """The network of a grid's teacher name: ``'resnet18_v1@random'`` -> ``'resnet18_v1'``."""
    return name[:-len(RANDOM_SUFFIX)] if name.endswith(RANDOM_SUFFIX) else name


def _teacher_cell(grid, net):
    """A teacher: trained by ``train_ssd.py``, given with ``--teacher-params``, or, for a
    name ending in ``@random`` (the random-teacher control), its initial weights alone
    (``train_ssd.py --epochs 0``)."""
    key = 'teacher/{}/seed{}'.format(net, grid.teacher_seed)
    prefix = os.path.join(grid.work_dir, 'teachers', '{}-s{}'.format(net, grid.teacher_seed),
                          'model')
    given = grid.teacher_params.get(net)
    if given:
        return Cell(key, 'teacher', None, net, None, grid.teacher_seed, prefix,
                    os.path.abspath(given), None)
    flags = dict(grid.teacher_flags)
    if net.endswith(RANDOM_SUFFIX):
        flags = {k: v for k, v in flags.items() if k not in ('epochs', 'val-interval')}
        flags['epochs'] = 0
    command = [sys.executable, str(SCRIPTS / 'train_ssd.py'), '--network',
               teacher_network(net), '--dataset-root', grid.dataset_root,
               '--save-prefix', prefix, '--seed', str(grid.teacher_seed),
               '--resume', 'auto'] + flag_list(flags)
    # A teacher's best params, as GluonCV's train_ssd.py keeps them: its quality is an
    # input of the experiment, not the measured quantity. A random one has only its last.
    return Cell(key, 'teacher', None, net, None, grid.teacher_seed, prefix,
                prefix + ('_last.params' if net.endswith(RANDOM_SUFFIX) else '_best.params'),
                command)


def _student_cell(grid, student, teacher_cell, method, seed, plain_flags):
    teacher = teacher_cell.teacher if teacher_cell else 'none'
    method = method if teacher_cell else BASELINE
    key = '{}/{}/{}/seed{}'.format(student, teacher, method, seed)
    prefix = os.path.join(grid.work_dir, 'students',
                          '{}-{}-{}-s{}'.format(student, teacher, method, seed), 'model')
    common = ['--dataset-root', grid.dataset_root, '--save-prefix', prefix,
              '--seed', str(seed), '--resume', 'auto']
    student_flags = dict(grid.student_flags, **grid.student_overrides.get(student, {}))
    if teacher_cell is None:
        flags = {k: v for k, v in student_flags.items() if k in plain_flags}
        command = [sys.executable, str(SCRIPTS / 'train_ssd.py'), '--network', student] + \
            common + flag_list(flags)
    else:
        extra = list(grid.methods_flags[method])
        # A method's own value of a student flag (an ablation's --gan-epochs 4) replaces it.
        flags = {k: v for k, v in student_flags.items() if '--' + k not in extra}
        command = [sys.executable, str(SCRIPTS / 'train_gankd_ssd.py'), '--teacher',
                   teacher_network(teacher), '--teacher-params', teacher_cell.params,
                   '--student', student] + common + flag_list(flags) + extra
    params = '{}_{}.params'.format(prefix, grid.select)
    return Cell(key, 'distill' if teacher_cell else 'baseline', student, teacher, method,
                seed, prefix, params, command,
                depends=teacher_cell.key if teacher_cell else None)


def plan(grid):
    """Every cell of ``grid`` in run order: teachers, then student by student (a
    control's student first, then the others as listed, cheapest first), seed by seed,
    its baseline and its distilled versions; a partly run grid has whole students.

    Raises
    ------
    GankdError
        A training flag the scripts would reject, or an unknown method.
    """
    unknown = [m for m in grid.methods if m not in grid.methods_flags]
    if unknown:
        raise GankdError('unknown method(s) {}; known: {} (or define one with --method '
                         'NAME=FLAGS)'.format(', '.join(unknown), ', '.join(grid.methods_flags)))
    # Flags only the distillation script knows (--gan-epochs) mean nothing to a baseline.
    plain_flags = _known_flags(distill=False)
    teachers = [_teacher_cell(grid, t) for t in grid.teachers if t != 'none']
    cells = list(teachers)
    for student in grid.all_students():
        for seed in grid.student_seeds.get(student, grid.seeds):
            if 'none' in grid.teachers:
                cells.append(_student_cell(grid, student, None, None, seed, plain_flags))
            for tc in teachers:
                for method in grid.methods:
                    if grid.runs_method(student, tc.teacher, method):
                        cells.append(_student_cell(grid, student, tc, method, seed,
                                                   plain_flags))
    for cell in cells:
        if cell.command:
            _check_command(cell.command, cell.role == 'distill', cell.key)
    return cells


# --------------------------------------------------------------------------------------
# Results file
# --------------------------------------------------------------------------------------
def load_results(path):
    """The results JSON as ``{'format', 'name', 'records': [...]}`` (empty if missing)."""
    if not os.path.exists(path):
        return {'format': RESULTS_FORMAT, 'records': []}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise GankdError('cannot read results {}: {}'.format(path, err))
    if not isinstance(data, dict) or not isinstance(data.get('records'), list):
        raise GankdError('{} is not a results file of scripts/reproduce.py (no "records" list)'
                         .format(path))
    return data


def _write_atomic(path, data):
    """Write JSON to a temporary file beside ``path``, then rename it over ``path``: a
    crash mid-write leaves the old file, never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=folder)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=1)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_record(path, record, name=None):
    """Add ``record`` to the results at ``path``, replacing one with the same key.

    The file is read again first, so records written meanwhile are kept.
    """
    data = load_results(path)
    records = [r for r in data['records'] if r.get('key') != record['key']]
    records.append(record)
    data['records'] = records
    if name:
        data['name'] = name
    _write_atomic(path, data)


def _done_records(grid, cells):
    """Records of cells already finished, by key; refuses records made with other flags,
    since mixing them would put two experiments in one table."""
    done = {}
    for r in load_results(grid.out)['records']:
        if r.get('status') == 'ok':
            done[r['key']] = r
    for cell in cells:
        r = done.get(cell.key)
        if r is not None and r.get('flags') != cell.flags:
            raise GankdError(
                '{} holds cell {} run with other flags ({}); use another --out and '
                '--work-dir, or delete that record'.format(
                    grid.out, cell.key, ' '.join(r.get('flags') or [])))
        if r is not None and cell.role != 'teacher' and r.get('select') != grid.select:
            raise GankdError('{} holds cell {} evaluated from its {} params, not --select {}; '
                             'use another --out'.format(grid.out, cell.key, r.get('select'),
                                                        grid.select))
    return done


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------
def _last_line(path):
    """The last non-empty line of a log: where the scripts put their one-line error."""
    try:
        with open(path, errors='replace') as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError:
        return ''
    return lines[-1] if lines else ''


def _train(cell, stop):
    """Run the cell's training as a subprocess, output to its log. Returns the exit code.

    The training runs in a session of its own, so a terminal's Ctrl-C reaches it only
    through ``stop`` (:class:`gankd.stopping.StopSignals`), which passes each SIGINT or
    SIGTERM on once; the training then saves a checkpoint and exits, and the grid stops
    after it (:class:`gankd.stopping.StopRequested`). The same command resumes the cell.
    """
    os.makedirs(os.path.dirname(cell.prefix), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(cell.log, 'a') as log:
        log.write('$ {}\n'.format(shlex.join(cell.command)))
        log.flush()
        proc = subprocess.Popen(cell.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        stop.child = proc
        try:
            code = proc.wait()
        finally:
            stop.child = None
    if code in (exit_code(signal.SIGINT), exit_code(signal.SIGTERM)):
        # Stopped by a signal sent to the training alone: stop the grid as well.
        stop.signum = stop.signum or code - 128
    stop.check()
    return code


def _evaluate(cell, grid):
    from ..builders import contexts
    from ..voc_eval import evaluate_params
    return evaluate_params(cell.params, grid.dataset_root, contexts(grid.gpus), batch_size=8)


def _record(cell, grid, error=None):
    """A failed record of ``cell``; :func:`run_cell` fills in what it achieves."""
    return {'key': cell.key, 'role': cell.role, 'student': cell.student,
            'teacher': cell.teacher, 'method': cell.method, 'seed': cell.seed,
            'status': 'failed', 'mAP': None, 'per_class': None, 'params': cell.params,
            'history': cell.history if cell.command else None,
            'log': cell.log if cell.command else None, 'dataset_root': grid.dataset_root,
            'select': grid.select if cell.role != 'teacher' else 'best',
            'command': cell.command,
            'command_line': shlex.join(cell.command) if cell.command else None,
            'flags': cell.flags, 'returncode': None, 'error': error, 'seconds': 0.0,
            'finished_at': time.strftime('%Y-%m-%dT%H:%M:%S')}


def _loop_map(params):
    """The mAP the training loop's own validation gave these params (in the JSON beside
    them), or None."""
    from ..detector import meta_path
    try:
        with open(meta_path(params)) as f:
            value = json.load(f).get('mAP')
    except (OSError, ValueError):
        return None
    return None if value is None else float(value)


def run_cell(cell, grid, stop):
    """Train (unless given) and evaluate one cell; the record, ok or failed."""
    record = _record(cell, grid)
    tic = time.time()
    if cell.command:
        code = _train(cell, stop)
        record['returncode'] = code
        if code != 0:
            record['error'] = _last_line(cell.log) or 'exit code {}'.format(code)
    record['train_seconds'] = time.time() - tic
    if record['error'] is None and not os.path.exists(cell.params):
        record['error'] = 'no params file {} after training'.format(cell.params)
    if record['error'] is None:
        tic_eval = time.time()
        try:
            result = _evaluate(cell, grid)
        except Exception as err:  # a broken cell must not end the grid
            record['error'] = 'evaluation failed: {}: {}'.format(type(err).__name__, err)
        else:
            record.update(status='ok', mAP=result['mAP'], per_class=result['per_class'],
                          num_test_images=result['num_images'],
                          loop_mAP=_loop_map(cell.params))
        record['eval_seconds'] = time.time() - tic_eval
    record['seconds'] = time.time() - tic
    record['finished_at'] = time.strftime('%Y-%m-%dT%H:%M:%S')
    return record


def run_grid(grid, dry_run=False, echo=None):
    """Run every unfinished cell of ``grid``, recording each in ``grid.out``.

    Parameters
    ----------
    grid : Grid
    dry_run : bool
        Print the commands (and what is already done) without running anything.
    echo : callable, optional
        Receives the progress lines (default: print them).

    Returns
    -------
    dict
        Counts: ``cells``, ``skipped`` (done before), ``ok``, ``failed``.
    """
    # Flushed, so progress shows at once through a pipe (| tee) during hour-long cells.
    echo = echo or (lambda line: print(line, flush=True))
    cells = plan(grid)
    done = _done_records(grid, cells)
    failed_teachers = set()
    counts = {'cells': len(cells), 'skipped': 0, 'ok': 0, 'failed': 0}
    with StopSignals() as stop:
        for i, cell in enumerate(cells, 1):
            stop.check()
            _run_grid_cell(grid, cell, '[{}/{}] {}'.format(i, len(cells), cell.key), done,
                           failed_teachers, counts, dry_run, echo, stop)
    return counts


def _run_grid_cell(grid, cell, head, done, failed_teachers, counts, dry_run, echo, stop):
    """One cell of :func:`run_grid`: skip it if done, else run and record it."""
    if cell.key in done and cell.role == 'teacher' and cell.command and \
            not os.path.exists(cell.params):
        # Weights are not committed with the results: on another machine (or after
        # params/ was cleaned) the teacher is trained again, from the same seed.
        echo('{}: done, but {} is missing; training it again'.format(head, cell.params))
        del done[cell.key]
    if cell.key in done:
        counts['skipped'] += 1
        echo('{}: done (mAP={:.4f}), skipped'.format(head, done[cell.key]['mAP']))
        return
    if dry_run:
        echo('{}: {}'.format(head, shlex.join(cell.command) if cell.command
                             else 'given teacher ' + cell.params + ' (evaluated)'))
        return
    if cell.depends in failed_teachers:
        record = _record(cell, grid, 'teacher {} failed; see its record'.format(
            cell.depends))
    else:
        echo('{}: running (log: {})'.format(head, cell.log if cell.command else '-'))
        record = run_cell(cell, grid, stop)
    save_record(grid.out, record, grid.name)
    if record['status'] == 'ok':
        counts['ok'] += 1
        echo('{}: mAP={:.4f} ({:.0f} s)'.format(head, record['mAP'], record['seconds']))
    else:
        counts['failed'] += 1
        if cell.role == 'teacher':
            failed_teachers.add(cell.key)
        echo('{}: FAILED: {}'.format(head, record['error']))


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
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


def _check_networks(names, what):
    from ..ssd import FEATURE_LAYERS
    bad = [n for n in names if n != 'none' and teacher_network(n) not in FEATURE_LAYERS]
    if bad:
        raise GankdError('{}: unknown network(s) {}; known: {}'.format(
            what, ', '.join(bad), ', '.join(FEATURE_LAYERS)))


def _preset_data(bench, work_dir, dry_run):
    """The preset's synthetic dataset under ``work_dir/data``, generated if missing."""
    from ..synthetic import META_FILE, make_synthetic_voc
    root = os.path.join(work_dir, 'data')
    spec = bench.data
    want = {'num_train': spec.num_train, 'num_test': spec.num_test,
            'image_size': spec.image_size, 'seed': spec.seed, 'difficulty': spec.difficulty}
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
    _check_networks(teachers, '--teachers')
    _check_networks(students, '--students')
    methods_flags = dict(METHODS, **(bench.method_flags if bench else {}))
    for mname, text in _parse_pairs(args.method, '--method').items():
        if not _NAME.match(mname) or mname == BASELINE:
            raise GankdError('--method: bad method name {!r}'.format(mname))
        methods_flags[mname] = tuple(shlex.split(text))
    given = {k: v for k, v in _parse_pairs(args.teacher_params, '--teacher-params').items()}
    for net, path in given.items():
        if not os.path.isfile(path):
            raise GankdError('--teacher-params {}: no such file {}'.format(net, path))
    if args.dataset_root:
        root = os.path.abspath(args.dataset_root)
        if not os.path.isdir(root):
            raise GankdError('--dataset-root {} is not a folder'.format(args.dataset_root))
    elif bench:
        root = _preset_data(bench, work_dir, args.dry_run)
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
                student_overrides=dict(bench.student_overrides) if bench else {})


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
