"""The reproduction grid: what to run (:class:`Grid`) and its cells in run order.

A grid is students x teachers x methods x seeds. Each cell is one training command:
``scripts/train_ssd.py`` for teachers and baselines, ``scripts/train_gankd_ssd.py`` for
distilled students (for a Faster R-CNN grid, ``train_faster_rcnn.py`` and
``train_gankd_faster_rcnn.py``: :data:`TRAIN_SCRIPTS`), every flag checked with the
script's own parser before anything trains. :func:`plan` puts the teachers first, then
student by student (a control's student first), seed by seed, its baseline and its
distilled versions: a grid stopped early has whole students.
"""
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import GankdError

__all__ = ['METHODS', 'BASELINE', 'RANDOM_SUFFIX', 'IMPLICIT_DISTILL', 'TRAIN_SCRIPTS', 'Grid',
           'Cell', 'flag_list', 'teacher_network', 'plan']

# The repository (gankd/experiments/ is two levels down), whose scripts the cells run.
ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / 'scripts'

#: Distillation methods: name -> extra flags of ``scripts/train_gankd_ssd.py``. GAN-KD
#: with the default critics is 'gan'. Any registered term, or terms joined by '+', is a
#: method without an entry here (``--methods cosine`` is ``--distill cosine``); these
#: entries are the names earlier results use. ``--method NAME=FLAGS`` adds one for a single
#: grid. Flags without ``--distill`` are GAN-KD's: the cell gets ``--distill gan``.
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

#: Training scripts of each detector family: (plain, distillation).
TRAIN_SCRIPTS = {'ssd': ('train_ssd.py', 'train_gankd_ssd.py'),
                 'faster_rcnn': ('train_faster_rcnn.py', 'train_gankd_faster_rcnn.py')}


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
    method_seeds : dict
        Method -> its seeds, instead of the student's (a control that passes at one seed
        and is then confirmed at more, on a student whose other controls keep one). The
        student's baseline runs at these seeds too, so every gain still pairs up.
    family : str
        The detector family of every cell (:data:`TRAIN_SCRIPTS`).
    retire_changed : bool
        A cell recorded with other flags (the preset's recipe for it changed) runs
        again, its old record kept under the results file's ``retired``; without it
        such a record is refused.
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
    method_seeds: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    family: str = 'ssd'
    retire_changed: bool = False

    def script(self, distill):
        """The training script of the grid's family, plain or distillation."""
        if self.family not in TRAIN_SCRIPTS:
            raise GankdError('unknown detector family {!r}; known: {}'.format(
                self.family, ', '.join(TRAIN_SCRIPTS)))
        return str(SCRIPTS / TRAIN_SCRIPTS[self.family][int(bool(distill))])

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

    def seeds_of(self, student, method=None):
        """The seeds of one student's cells of ``method``, or, for its baseline (None),
        every seed any of its cells runs at, so that each distilled cell has its pair."""
        own = tuple(self.student_seeds.get(student, self.seeds))
        if method is not None:
            return tuple(self.method_seeds.get(method, own))
        extra = [s for m in self.methods if m in self.method_seeds and any(
            self.runs_method(student, t, m) for t in self.teachers if t != 'none')
            for s in self.method_seeds[m]]
        return tuple(sorted(set(own) | set(extra))) if extra else own

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
    # The flags the same training was recorded with before its cell wrote out
    # ``--distill gan`` (:data:`IMPLICIT_DISTILL`); None when they are ``flags``.
    legacy_flags: Optional[List[str]] = None

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

    @property
    def claim_file(self):
        """Locked by the process training the cell (:func:`results_file.claim`)."""
        return os.path.join(os.path.dirname(self.prefix), 'running.lock')




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


def _known_flags(distill, family='ssd'):
    """Long option names (without ``--``) of a training script's parser."""
    from ..cli import training_parser
    parser = training_parser('check', distill=distill, family=family)
    return {s[2:] for a in parser._actions for s in a.option_strings if s.startswith('--')}


def _check_command(command, distill, what, family='ssd'):
    """Parse a training command's flags with the script's own parser, so a bad flag is
    one error before anything trains instead of one failed cell per training."""
    from ..cli import training_parser
    parser = training_parser('check', distill=distill, family=family)

    def error(message):
        raise GankdError('{}: {}'.format(what, message))
    parser.error = error
    parser.parse_args(command[2:])


RANDOM_SUFFIX = '@random'

#: What a method whose flags name no terms distils with. The cells write it out because
#: the script's own default changed (``--recipe best`` became SSD's default, issue 12);
#: results recorded before that had these flags left implicit, which meant the same.
IMPLICIT_DISTILL = ('--distill', 'gan')


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
    command = [sys.executable, grid.script(distill=False), '--network',
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
    legacy = None
    if teacher_cell is None:
        flags = {k: v for k, v in student_flags.items() if k in plain_flags}
        command = [sys.executable, grid.script(distill=False), '--network', student] + \
            common + flag_list(flags)
    else:
        extra = list(grid.methods_flags[method])
        # A method's own value of a student flag (an ablation's --gan-epochs 4) replaces it.
        flags = {k: v for k, v in student_flags.items() if '--' + k not in extra}
        head = [sys.executable, grid.script(distill=True), '--teacher',
                teacher_network(teacher), '--teacher-params', teacher_cell.params,
                '--student', student] + common + flag_list(flags)
        command = head + extra
        if '--distill' not in extra and '--recipe' not in extra:
            command = head + list(IMPLICIT_DISTILL) + extra
            legacy = (head + extra)[2:]
    params = '{}_{}.params'.format(prefix, grid.select)
    return Cell(key, 'distill' if teacher_cell else 'baseline', student, teacher, method,
                seed, prefix, params, command,
                depends=teacher_cell.key if teacher_cell else None, legacy_flags=legacy)


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
    plain_flags = _known_flags(distill=False, family=grid.family)
    teachers = [_teacher_cell(grid, t) for t in grid.teachers if t != 'none']
    cells = list(teachers)
    for student in grid.all_students():
        for seed in grid.seeds_of(student):
            if 'none' in grid.teachers:
                cells.append(_student_cell(grid, student, None, None, seed, plain_flags))
            for tc in teachers:
                for method in grid.methods:
                    if grid.runs_method(student, tc.teacher, method) and \
                            seed in grid.seeds_of(student, method):
                        cells.append(_student_cell(grid, student, tc, method, seed,
                                                   plain_flags))
    for cell in cells:
        if cell.command:
            _check_command(cell.command, cell.role == 'distill', cell.key, grid.family)
    return cells
