"""The numbers of a report: records grouped into cells, mean ± std over seeds, paired
gains over the baseline and the share of the teacher-student gap they close.

All numbers are in mAP points (percent), as in the paper.
"""
import math
from collections import OrderedDict

from .curves import is_control, read_history
from .grid import BASELINE

__all__ = ['mean_std', 'paired_gain', 'cell_key', 'summarize', 'gap_closed', 'speed_groups',
           'retired_cells', 'teacher_trainings', 'record_family']


def record_family(record):
    """The detector family of a record (``'ssd'``, ``'faster_rcnn'``): as recorded, or,
    for records written before the family was, from its training script's name."""
    if record.get('family'):
        return record['family']
    command = record.get('command_line') or ''
    return 'faster_rcnn' if 'faster_rcnn.py' in command else 'ssd'


def mean_std(values):
    """Mean, sample standard deviation (n - 1; None below two values) and count."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return None, None, 0
    mean = sum(values) / n
    if n < 2:
        return mean, None, n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)), n


def paired_gain(base, other):
    """Gain of ``other`` over ``base`` (both ``{seed: mAP}``).

    Seeds in both pair up and the gain is the mean ± std of the per-seed differences;
    with no common seed it is the difference of the means, without a std.

    Returns
    -------
    dict or None
        ``mean``, ``std``, ``n`` (pairs, or 0 when unpaired), ``paired``.
    """
    if not base or not other:
        return None
    common = sorted(set(base) & set(other))
    if common:
        mean, std, n = mean_std([other[s] - base[s] for s in common])
        return {'mean': mean, 'std': std, 'n': n, 'paired': True}
    return {'mean': mean_std(other.values())[0] - mean_std(base.values())[0], 'std': None,
            'n': 0, 'paired': False}


def cell_key(student, teacher, method):
    """The key of a summary's cell: ``'student|teacher|method'``."""
    return '{}|{}|{}'.format(student, teacher, method)


def summarize(records):
    """Group finished records and compute every number of the report.

    Parameters
    ----------
    records : list of dict
        Records of a results JSON (failed ones are listed, not counted).

    Returns
    -------
    dict
        ``family`` (:func:`record_family` of the records), ``students``, ``teachers`` (networks, without 'none'), ``methods`` (distillation
        methods), ``cells`` (``'student|teacher|method'`` -> ``maps`` {seed: points},
        ``mean``, ``std``, ``n``, and ``train_ce``: mean, std, n of the last training
        epoch's CrossEntropy when the histories are on disk), ``gains`` (same keys,
        distilled cells only ->
        :func:`paired_gain`), ``teacher_maps`` (network -> mean, std, n) and ``failed``.
    """
    students, teachers, methods = [], [], []
    cells, teacher_maps, failed = OrderedDict(), OrderedDict(), []
    for r in records:
        if r.get('status') != 'ok':
            failed.append(r)
            continue
        points = 100.0 * float(r['mAP'])
        if r['role'] == 'teacher':
            teacher_maps.setdefault(r['teacher'], []).append(points)
            continue
        # Controls (gankd.experiments.curves) have their own section, not Table 1's rows
        # and columns.
        if not is_control(r) and (r['teacher'] != 'none' or not _control_only(
                records, r['student'])):
            _add_once(students, r['student'])
        if r['teacher'] != 'none' and not is_control(r):
            _add_once(teachers, r['teacher'])
            _add_once(methods, r['method'])
        key = cell_key(r['student'], r['teacher'], r['method'])
        cell = cells.setdefault(key, {'student': r['student'], 'teacher': r['teacher'],
                                      'method': r['method'], 'maps': {}, 'ce': {},
                                      'teacher_seen': {}})
        cell['maps'][int(r['seed'])] = points
        if r.get('teacher_mAP') is not None:
            cell['teacher_seen'][int(r['seed'])] = 100.0 * float(r['teacher_mAP'])
        last = [h for h in read_history(r.get('history')) if 'CrossEntropy' in h][-1:]
        if last:
            cell['ce'][int(r['seed'])] = float(last[0]['CrossEntropy'])
    for cell in cells.values():
        cell['mean'], cell['std'], cell['n'] = mean_std(cell['maps'].values())
        # A second, less noisy reading of how well detection trained: mAP near chance
        # swings with the initialisation, the training loss much less.
        cell['train_ce'] = dict(zip(('mean', 'std', 'n'), mean_std(cell.pop('ce').values())))
        # The mAP of the teacher training each seed learnt from, when every record names
        # it (a grid resumed on another machine trains its teacher again).
        seen = cell.pop('teacher_seen')
        cell['teacher_seen'] = (dict(zip(('mean', 'std', 'n'), mean_std(seen.values())))
                                if seen and len(seen) == len(cell['maps']) else None)
    gains = OrderedDict()
    for key, cell in cells.items():
        if cell['teacher'] == 'none':
            continue
        base = cells.get(cell_key(cell['student'], 'none', BASELINE))
        gains[key] = paired_gain(base['maps'] if base else {}, cell['maps'])
    for t in teachers:
        teacher_maps.setdefault(t, [])
    teacher_maps = OrderedDict((t, dict(zip(('mean', 'std', 'n'), mean_std(v))))
                               for t, v in teacher_maps.items())
    runs = _runs(records)
    families = [record_family(r) for r in records]
    return {'family': families[0] if families else 'ssd',
            'students': students, 'teachers': teachers, 'methods': methods,
            'cells': cells, 'gains': gains, 'teacher_maps': teacher_maps, 'failed': failed,
            'runs': runs}


def _control_only(records, student):
    """Whether every distilled record of ``student`` is a control's (the teacher's own
    architecture, trained for the feature-transfer control)."""
    distilled = [r for r in records if r.get('student') == student and
                 r.get('teacher') not in (None, 'none')]
    return bool(distilled) and all(is_control(r) for r in distilled)


def _runs(records):
    """What the report says about how the numbers were made: counts, time, which params
    were evaluated, and one command line per role."""
    ok = [r for r in records if r.get('status') == 'ok']
    examples = OrderedDict()
    for r in ok:
        if r.get('command_line'):
            examples.setdefault(r['role'], r['command_line'])
    return {'ok': len(ok), 'failed': len(records) - len(ok),
            'seconds': sum(float(r.get('seconds') or 0) for r in records),
            'select': sorted({r['select'] for r in ok
                              if r.get('role') != 'teacher' and r.get('select')}),
            'examples': examples}


def _add_once(items, value):
    if value not in items:
        items.append(value)


def gap_closed(summary, student, teacher, method):
    """The share of the teacher-student gap that distillation closes:
    ``gain / (teacher - baseline)``, or None when a number is missing or the teacher is not
    better than the baseline (no gap to close). The gain is the paired one when seeds pair
    (so a partial grid compares like with like), else the difference of the means."""
    base = summary['cells'].get(cell_key(student, 'none', BASELINE))
    dist = summary['cells'].get(cell_key(student, teacher, method))
    tmap = summary['teacher_maps'].get(teacher) or {}
    if not base or not dist or not base.get('n') or not dist.get('n') or not tmap.get('n'):
        return None
    gap = tmap['mean'] - base['mean']
    if gap <= 0:
        return None
    gain = summary['gains'].get(cell_key(student, teacher, method))
    if gain and gain['paired']:
        return gain['mean'] / gap
    return (dist['mean'] - base['mean']) / gap


def speed_groups(records):
    """One entry per teacher, then per student its baseline and each distilled method
    (controls left out: they are checks, not deliverables).

    Returns
    -------
    list of dict
        ``label, role, student, teacher, method``, ``params`` (the lowest seed's params
        file), ``seed`` (that seed), ``mAP`` (0-1, mean over the group's seeds) and ``n``.
    """
    groups = OrderedDict()
    ok = [r for r in records if r.get('status') == 'ok' and r.get('mAP') is not None
          and not is_control(r)]
    # Teachers first: the speed-ups of speed_markdown are relative to the first row.
    for r in sorted(ok, key=lambda r: r['role'] != 'teacher'):
        key = (r['role'], r.get('student'), r.get('teacher'), r.get('method'))
        groups.setdefault(key, []).append(r)
    out = []
    for (role, student, teacher, method), rs in groups.items():
        first = min(rs, key=lambda r: int(r['seed']))
        label = ('teacher {}'.format(teacher) if role == 'teacher' else
                 '{} (no teacher)'.format(student) if teacher in (None, 'none') else
                 '{} ({} from {})'.format(student, method, teacher))
        out.append({'label': label, 'role': role, 'student': student, 'teacher': teacher,
                    'method': method, 'params': first.get('params'), 'seed': first['seed'],
                    'mAP': sum(float(r['mAP']) for r in rs) / len(rs), 'n': len(rs)})
    return out


def teacher_trainings(data):
    """Every training of each teacher a results file knows, when there was more than one.

    A teacher's weights are not committed; a grid resumed on another machine trains it
    again from the same seed, and another CPU gives other weights. The earlier trainings'
    records are kept under ``retired`` (:func:`gankd.experiments.results_file.retire_record`)
    and each distilled record names the training it learnt from by its SHA-256.

    Parameters
    ----------
    data : dict
        A results file, as :func:`gankd.experiments.results_file.load_results` reads it.

    Returns
    -------
    list of dict
        Oldest first: ``teacher``, ``mAP`` (points), ``finished_at``, ``sha256`` (None for
        records from before weights were named), ``current``, ``retired_because`` and
        ``cells``: the distilled records that learnt from it (for a training without a
        SHA-256: the records that name none, made before trainings were named). Empty
        when no teacher was retired.
    """
    retired = [r for r in data.get('retired', []) if r.get('role') == 'teacher']
    if not retired:
        return []
    current = [r for r in data['records'] if r.get('role') == 'teacher' and
               r.get('status') == 'ok']
    distilled = [r for r in data['records'] if r.get('role') == 'distill' and
                 r.get('status') == 'ok']
    rows = []
    for r in sorted(retired, key=lambda r: r.get('finished_at') or '') + current:
        sha = r.get('params_sha256')
        rows.append({'teacher': r['teacher'], 'mAP': 100.0 * float(r['mAP']),
                     'finished_at': r.get('finished_at'), 'sha256': sha,
                     'current': r in current, 'retired_because': r.get('retired_because'),
                     'cells': sum(1 for d in distilled if d['teacher'] == r['teacher'] and
                                  d.get('teacher_params_sha256') == sha)})
    return rows


def retired_cells(data):
    """The student cells a results file keeps under ``retired``: runs of a recipe the
    preset has since changed (``reproduce.py --retire-changed``).

    Returns
    -------
    list of dict
        By key and seed: ``key``, ``student``, ``teacher``, ``method``, ``seed``,
        ``mAP`` (points), ``finished_at``, ``retired_because``.
    """
    rows = [{'key': r['key'], 'student': r['student'], 'teacher': r['teacher'],
             'method': r['method'], 'seed': r['seed'], 'mAP': 100.0 * float(r['mAP']),
             'finished_at': r.get('finished_at'), 'retired_because': r.get('retired_because')}
            for r in data.get('retired', []) if r.get('role') in ('baseline', 'distill') and
            r.get('status') == 'ok']
    return sorted(rows, key=lambda r: (r['student'], r['teacher'], r['method'], r['seed']))
