"""A Markdown report and figures from the results JSON of
:mod:`gankd.experiments.runner`.

The measured table is laid out like the paper's Table 1 (rows: students; columns: no
teacher, then each teacher), every cell the mean ± sample standard deviation of the
per-seed mAPs with their count, and the gain over the baseline as the mean ± std of the
per-seed differences where the seeds pair up. The published numbers of
:mod:`gankd.experiments.published` stand beside it, labelled as quoted, not reproduced.

All numbers are in mAP points (percent), as in the paper.
"""
import json
import math
import os
from collections import OrderedDict

from .curves import (controls_markdown, is_control, iterations_markdown, plot_learning,
                     read_history as _read_history)
from ..errors import GankdError
from .published import (MODEL_ZOO, MODEL_ZOO_SOURCE, TABLE1, published_gain,
                        published_name, table_markdown)
from .grid import BASELINE
from .results_file import load_results

__all__ = ['mean_std', 'paired_gain', 'summarize', 'markdown', 'plot_maps', 'plot_gains',
           'plot_curves', 'speed_groups', 'measure_speed', 'write_report', 'main']

PUBLISHED_LABEL = 'published (quoted, not reproduced)'
CURVE_KEYS = ('Loss_D', 'Loss_G', 'CrossEntropy', 'SmoothL1', 'mAP')


# --------------------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------------------
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


def _cell_key(student, teacher, method):
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
        ``students``, ``teachers`` (networks, without 'none'), ``methods`` (distillation
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
        key = _cell_key(r['student'], r['teacher'], r['method'])
        cell = cells.setdefault(key, {'student': r['student'], 'teacher': r['teacher'],
                                      'method': r['method'], 'maps': {}, 'ce': {}})
        cell['maps'][int(r['seed'])] = points
        last = [h for h in _read_history(r.get('history')) if 'CrossEntropy' in h][-1:]
        if last:
            cell['ce'][int(r['seed'])] = float(last[0]['CrossEntropy'])
    for cell in cells.values():
        cell['mean'], cell['std'], cell['n'] = mean_std(cell['maps'].values())
        # A second, less noisy reading of how well detection trained: mAP near chance
        # swings with the initialisation, the training loss much less.
        cell['train_ce'] = dict(zip(('mean', 'std', 'n'), mean_std(cell.pop('ce').values())))
    gains = OrderedDict()
    for key, cell in cells.items():
        if cell['teacher'] == 'none':
            continue
        base = cells.get(_cell_key(cell['student'], 'none', BASELINE))
        gains[key] = paired_gain(base['maps'] if base else {}, cell['maps'])
    for t in teachers:
        teacher_maps.setdefault(t, [])
    teacher_maps = OrderedDict((t, dict(zip(('mean', 'std', 'n'), mean_std(v))))
                               for t, v in teacher_maps.items())
    runs = _runs(records)
    return {'students': students, 'teachers': teachers, 'methods': methods,
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


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------
def fmt_cell(cell, digits=1):
    """``'12.3 ± 0.4 (n=3)'``; ``'12.3 (n=1)'``; ``'–'`` when there is nothing."""
    if not cell or not cell.get('n'):
        return '–'
    text = '{:.{d}f}'.format(cell['mean'], d=digits)
    if cell.get('std') is not None:
        text += ' ± {:.{d}f}'.format(cell['std'], d=digits)
    return text + ' (n={})'.format(cell['n'])


def fmt_gain(gain, digits=1):
    """``'+1.2 ± 0.5 (3 pairs)'``, ``'+1.2 (1 pair)'``, ``'+1.2 (unpaired)'`` or ``'–'``."""
    if gain is None:
        return '–'
    # round(-0.04, 1) is -0.0; adding 0.0 makes it 0.0, printed '+0.0'.
    text = '{:+.{d}f}'.format(round(gain['mean'], digits) + 0.0, d=digits)
    if gain.get('std') is not None:
        text += ' ± {:.{d}f}'.format(gain['std'], d=digits)
    if not gain['paired']:
        return text + ' (unpaired)'
    return text + ' ({} pair{})'.format(gain['n'], '' if gain['n'] == 1 else 's')


def gap_closed(summary, student, teacher, method):
    """The share of the teacher-student gap that distillation closes:
    ``gain / (teacher - baseline)``, or None when a number is missing or the teacher is not
    better than the baseline (no gap to close). The gain is the paired one when seeds pair
    (so a partial grid compares like with like), else the difference of the means."""
    base = summary['cells'].get(_cell_key(student, 'none', BASELINE))
    dist = summary['cells'].get(_cell_key(student, teacher, method))
    tmap = summary['teacher_maps'].get(teacher) or {}
    if not base or not dist or not base.get('n') or not dist.get('n') or not tmap.get('n'):
        return None
    gap = tmap['mean'] - base['mean']
    if gap <= 0:
        return None
    gain = summary['gains'].get(_cell_key(student, teacher, method))
    if gain and gain['paired']:
        return gain['mean'] / gap
    return (dist['mean'] - base['mean']) / gap


def _fmt_gap(summary, student, teacher, method):
    share = gap_closed(summary, student, teacher, method)
    if share is not None:
        return '{:.0%}'.format(share)
    tmap = summary['teacher_maps'].get(teacher) or {}
    base = summary['cells'].get(_cell_key(student, 'none', BASELINE))
    if tmap.get('n') and base and base.get('n') and tmap['mean'] <= base['mean']:
        return 'none: teacher not better'
    return '–'


def _table1(summary, method, digits):
    """Table 1's layout for one method: none, then each teacher, the gain and the share
    of the teacher-student gap closed."""
    teachers = summary['teachers']
    head = ['student', 'teacher: none'] + sum(
        [['teacher: {} ({})'.format(t, method), 'gain over none', 'gap closed']
         for t in teachers], [])
    lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
    for s in summary['students']:
        row = [s, fmt_cell(summary['cells'].get(_cell_key(s, 'none', BASELINE)), digits)]
        for t in teachers:
            key = _cell_key(s, t, method)
            row += [fmt_cell(summary['cells'].get(key), digits),
                    fmt_gain(summary['gains'].get(key), digits), _fmt_gap(summary, s, t, method)]
        lines.append('| ' + ' | '.join(row) + ' |')
    return lines


def _published_beside(summary, digits):
    """Measured gains of every method beside Table 1's published GAN-KD gain for the
    matching row and column."""
    methods = summary['methods']
    head = ['student', 'teacher'] + ['measured gain ({})'.format(m) for m in methods] + [
        '{}: GAN-KD gain, Table 1'.format(PUBLISHED_LABEL), 'published row, column']
    lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
    for s in summary['students']:
        for t in summary['teachers']:
            row = published_name(s, exact=False, kind='row')
            col = published_name(t, exact=False, kind='column')
            pub = published_gain(s, t, exact=False)
            where = '–' if row is None or col is None else '{}{}, {}{}'.format(
                row[0], '' if row[1] else ' (family; another width)', col[0],
                '' if col[1] else ' (family)')
            cells = [fmt_gain(summary['gains'].get(_cell_key(s, t, m)), digits)
                     for m in methods]
            lines.append('| ' + ' | '.join([s, t] + cells + [
                '–' if pub is None else '{:+.1f}'.format(pub), where]) + ' |')
    return lines


def _teachers_table(summary, digits):
    lines = ['| teacher | measured mAP | {}: GluonCV model zoo, 512 px, VOC |'.format(
        PUBLISHED_LABEL), '|---|---|---|']
    for t, m in summary['teacher_maps'].items():
        zoo = 'ssd_512_{}_voc'.format(t)
        pub = '{} {}'.format(zoo, MODEL_ZOO[zoo]) if zoo in MODEL_ZOO else '–'
        lines.append('| {} | {} | {} |'.format(t, fmt_cell(m, digits), pub))
    return lines


def _methods_table(summary, teacher, digits):
    """Rows: baseline then each method; per student its mAP, the gain over the baseline
    and the share of the teacher-student gap closed."""
    head = ['method'] + sum([[s, 'gain', 'gap closed', 'last-epoch train CE']
                             for s in summary['students']], [])
    lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']

    def train_ce(key):
        return fmt_cell((summary['cells'].get(key) or {}).get('train_ce'), 2)

    row = ['none (plain SSD)']
    for s in summary['students']:
        key = _cell_key(s, 'none', BASELINE)
        row += [fmt_cell(summary['cells'].get(key), digits), '–', '–', train_ce(key)]
    lines.append('| ' + ' | '.join(row) + ' |')
    for m in summary['methods']:
        row = [m]
        for s in summary['students']:
            key = _cell_key(s, teacher, m)
            row += [fmt_cell(summary['cells'].get(key), digits),
                    fmt_gain(summary['gains'].get(key), digits),
                    _fmt_gap(summary, s, teacher, m), train_ce(key)]
        lines.append('| ' + ' | '.join(row) + ' |')
    return lines


def _published_rows(summary):
    """Table 1 rows of the grid's students (by family), in the table's order."""
    rows = {published_name(s, exact=False, kind='row') for s in summary['students']}
    wanted = {r[0] for r in rows if r is not None}
    return [r for r in TABLE1.rows if r in wanted] or list(TABLE1.rows)


def markdown(summary, name, figures=None, digits=1, results_path=None, records=None):
    """The report as Markdown text.

    ``figures`` maps a caption to a path relative to the report; ``records`` (the results'
    records) adds the convergence table and the controls.
    """
    out = ['# Reproduction: {}'.format(name), '']
    if results_path:
        # Relative to the working directory (the repository root), so a committed report
        # names the file as a reader of the repository sees it.
        shown = os.path.relpath(results_path)
        out += ['Results: `{}`.'.format(results_path if shown.startswith('..') else shown), '']
    out += ['Measured here: VOC07 11-point mAP at IoU 0.5 on the test split, in points; '
            'mean ± sample std over seeds (n = seeds). Gain: mean ± std of the per-seed '
            'differences to the baseline of the same seed. Numbers labelled "{}" are the '
            "authors' and were not run here.".format(PUBLISHED_LABEL), '']
    runs = summary.get('runs')
    if runs:
        out += ['{} finished cells, {} failed, {:.0f} s of training and evaluation in all{}.'
                .format(runs['ok'], runs['failed'], runs['seconds'],
                        '; students evaluated from their {} params'.format(
                            ' / '.join(runs['select'])) if runs['select'] else ''), '']
    if len(summary['methods']) > 1:
        # A comparison of methods (or an ablation's variants) leads with one row each;
        # Table 1's layout then follows for the first method alone.
        for t in summary['teachers']:
            out += ['## Methods (teacher {})'.format(t), ''] + \
                _methods_table(summary, t, digits) + ['']
    for m in summary['methods'][:1] or [None]:
        if m is None:
            out += ['## Measured (baselines only)', '']
        else:
            out += ['## Measured, laid out like Table 1 (method: {})'.format(m), '']
        out += _table1(summary, m, digits) + ['']
    if summary['methods'] and summary['teachers']:
        out += ['## Measured gains beside the published ones', ''] + \
            _published_beside(summary, digits) + ['']
    if summary['teacher_maps']:
        out += ['## Teachers', ''] + _teachers_table(summary, digits) + \
            ['', 'Model-zoo numbers: ' + MODEL_ZOO_SOURCE + '.', '']
    out += ['## ' + PUBLISHED_LABEL.capitalize(), '',
            table_markdown('table1', _published_rows(summary)), '']
    iterations = iterations_markdown(records or [])
    if len(iterations) > 2:
        out += ['## Convergence: iterations to reach the baseline\'s final mAP', '',
                'From the validations in each cell\'s history (same seed pairs as the gains).',
                ''] + iterations + ['']
    controls = controls_markdown(summary, records or [], digits)
    if controls:
        out += ['## Controls', ''] + controls
    out += _speed_section(summary.get('speed'))
    if figures:
        out += ['## Figures', '']
        for caption, path in figures.items():
            out += ['**{}**'.format(caption), '', '![{}]({})'.format(caption, path), '']
    if runs and runs['examples']:
        out += ['## Commands (one per role; every cell\'s is in the results JSON)', '']
        for role, line in runs['examples'].items():
            out += ['{}:'.format(role), '', '    ' + line, '']
    if summary['failed']:
        out += ['## Failed cells', '', '| cell | error | log |', '|---|---|---|']
        for r in summary['failed']:
            out.append('| {} | {} | {} |'.format(r['key'], (r.get('error') or '').replace(
                '|', '\\|'), r.get('log') or '–'))
        out.append('')
    return '\n'.join(out)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # files only; no display on these machines
    import matplotlib.pyplot as plt
    return plt


def _series(summary):
    """(label, teacher, method) of every bar group: the baseline, then each distilled."""
    series = [('no teacher', 'none', BASELINE)]
    for t in summary['teachers']:
        for m in summary['methods']:
            series.append(('{} from {}'.format(m, t), t, m))
    return series


def plot_maps(summary, path):
    """(a) mAP per student, baseline beside each distilled version, ± std and seeds."""
    plt = _pyplot()
    series, students = _series(summary), summary['students']
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(students) * len(series) ** 0.5), 4))
    for i, (label, t, m) in enumerate(series):
        xs, means, errs = [], [], []
        for j, s in enumerate(students):
            cell = summary['cells'].get(_cell_key(s, t, m))
            if not cell or not cell['n']:
                continue
            x = j + (i - (len(series) - 1) / 2) * width
            xs.append(x)
            means.append(cell['mean'])
            errs.append(cell['std'] or 0.0)
            ax.plot([x] * cell['n'], list(cell['maps'].values()), 'k.', ms=4, zorder=3)
        # Beyond matplotlib's ten default colours (an ablation's variants) colours would
        # repeat, so take them from a 20-colour map.
        color = plt.get_cmap('tab20')(i % 20) if len(series) > 10 else None
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=label, color=color)
    ax.set_xticks(range(len(students)))
    ax.set_xticklabels(students)
    ax.set_ylabel('VOC07 mAP (points)')
    ax.set_title('Measured mAP per student (mean ± std over seeds; dots: seeds)')
    if len(series) > 4:
        ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_gains(summary, path):
    """(b) measured gain over the baseline per student and teacher (one bar per method),
    beside Table 1's published GAN-KD gain for the same row and column."""
    plt = _pyplot()
    from matplotlib.patches import Patch
    methods = summary['methods']
    pairs = [(s, t) for s in summary['students'] for t in summary['teachers']]
    width = 0.8 / (len(methods) + 1)
    offset = lambda i: (i - len(methods) / 2) * width  # noqa: E731
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(pairs) * (len(methods) + 1) ** 0.5), 4))
    for j, (s, t) in enumerate(pairs):
        for i, m in enumerate(methods):
            g = summary['gains'].get(_cell_key(s, t, m))
            if g is not None:
                # C0 is the baseline in (a); methods keep their colours of (a).
                ax.bar(j + offset(i), g['mean'], width, yerr=g['std'] or 0.0, capsize=3,
                       color='C{}'.format(i + 1))
        pub = published_gain(s, t, exact=False)
        if pub is not None:
            ax.bar(j + offset(len(methods)), pub, width, color='lightgray', hatch='//',
                   edgecolor='k')
    # Legend patches of their own, so it is complete whichever bars exist.
    handles = [Patch(color='C{}'.format(i + 1), label='measured, {} (mean ± std over seed '
                     'pairs)'.format(m)) for i, m in enumerate(methods)]
    handles.append(Patch(facecolor='lightgray', hatch='//', edgecolor='k',
                         label=PUBLISHED_LABEL + ': GAN-KD, Table 1 (by family)'))
    ax.legend(handles=handles, fontsize=8)
    ax.margins(y=0.25)  # room for the legend above the bars
    ax.axhline(0, color='k', lw=0.8)
    ax.set_xticks(range(len(pairs)))
    ax.set_xticklabels(['{}\nfrom {}'.format(s, t) for s, t in pairs], fontsize=8)
    ax.set_ylabel('mAP gain over no teacher (points)')
    ax.set_title('Gain from distillation: measured vs published')
    _save(fig, path)


def plot_curves(records, out_dir):
    """(c) training curves, one PNG per cell (seeds overlaid): the history keys of
    :data:`CURVE_KEYS` that the history has, per epoch. Returns the files written."""
    plt = _pyplot()
    groups = OrderedDict()
    for r in records:
        if r.get('status') == 'ok' and r.get('history'):
            key = r['key'].rsplit('/seed', 1)[0]
            groups.setdefault(key, []).append(r)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for key, rs in groups.items():
        histories = [(r['seed'], _read_history(r['history'])) for r in rs]
        keys = [k for k in CURVE_KEYS if any(k in h for _, hist in histories for h in hist)]
        if not keys:
            continue
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
        for ax, k in zip(axes[0], keys):
            for seed, hist in histories:
                pts = [(h['epoch'], h[k]) for h in hist if h.get(k) is not None]
                if k == 'mAP':
                    pts = [(e, 100 * v) for e, v in pts]
                if pts:
                    # Markers keep one-epoch runs and sparse validations visible.
                    ax.plot(*zip(*pts), marker='o', ms=3 if k == 'mAP' else 2,
                            label='seed {}'.format(seed))
            switch = _stage_switch(histories)
            if switch is not None:
                ax.axvline(switch - 0.5, color='gray', ls=':', lw=1)
            ax.set_title('validation mAP (points)' if k == 'mAP' else k, fontsize=9)
            ax.set_xlabel('epoch', fontsize=8)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(key, fontsize=10)
        path = os.path.join(out_dir, key.replace('/', '_') + '.png')
        _save(fig, path)
        written.append(path)
    return written


def _stage_switch(histories):
    """First detection-only epoch after distillation epochs (where the critics stop)."""
    for _, hist in histories:
        stages = [(h['epoch'], h.get('stage')) for h in hist]
        for (_, a), (e, b) in zip(stages, stages[1:]):
            if a == 'distill' and b == 'detection':
                return e
    return None


def _save(fig, path):
    import matplotlib.pyplot as plt
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # keeps a legend placed outside
    plt.close(fig)


# --------------------------------------------------------------------------------------
# Speed and size of the deliverables
# --------------------------------------------------------------------------------------
SPEED_HEADING = '## Speed and size (exported, this CPU)'


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


def measure_speed(records, runs=30):
    """Latency, throughput and size (:func:`gankd.inference.bench_exported`) of the params
    file of each :func:`speed_groups` entry that is on disk.

    Returns
    -------
    dict or None
        ``rows`` (bench rows with the group's ``name`` (its label), ``mAP``, ``n``,
        ``seed``) and ``missing`` (groups whose params file is not on disk: label and
        path); None when no params file is on disk.
    """
    from ..inference import bench_exported
    rows, missing = [], []
    for g in speed_groups(records):
        if not g['params'] or not os.path.isfile(g['params']):
            missing.append({'label': g['label'], 'params': g['params']})
            continue
        row = bench_exported(g['params'], runs=runs)
        row.update(name=g['label'], mAP=g['mAP'], n=g['n'], seed=g['seed'])
        rows.append(row)
    return {'rows': rows, 'missing': missing, 'runs': runs} if rows else None


def _speed_section(speed):
    """The speed section's Markdown lines (none without measurements)."""
    if not speed:
        return []
    from ..inference import speed_markdown
    out = [SPEED_HEADING, '',
           "Each model as `scripts/export.py` exports it (GluonCV's `export_block`, its "
           'preprocessing included), loaded back with `SymbolBlock.imports`: median latency '
           'of {} runs at batch 1, throughput at batch {}, on the CPU that wrote this report. '
           "One params file per row (the lowest seed's); mAP: the mean over the row's seeds. "
           'Speed-up: relative to the first row.'.format(
               speed['runs'], speed['rows'][0]['batch_size']), '',
           speed_markdown(speed['rows']), '']
    if speed['missing']:
        out += ['Not measured, their params files are not on disk (weights are not '
                'committed; rerun the grid to make them): ' + '; '.join(
                    '{} (`{}`)'.format(m['label'], m['params']) for m in speed['missing'])
                + '.', '']
    return out


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------
def write_report(results, out_dir, name=None, digits=1, speed=True):
    """Write ``<name>.md``, ``<name>_summary.json`` and the PNG figures into ``out_dir``.

    With ``speed``, the params files of the records that are on disk are exported and
    timed (:func:`measure_speed`): a table beside mAP and ``<name>_speed.png``.

    Returns
    -------
    dict
        ``report``, ``summary``, ``figures`` (paths).
    """
    data = load_results(results)
    if not data['records']:
        raise GankdError('{} holds no records yet'.format(results))
    name = name or data.get('name') or os.path.splitext(os.path.basename(results))[0]
    summary = summarize(data['records'])
    os.makedirs(out_dir, exist_ok=True)
    figures = OrderedDict()
    if summary['students']:
        plot_maps(summary, os.path.join(out_dir, name + '_map.png'))
        figures['(a) mAP per student, baseline vs distilled'] = name + '_map.png'
    if summary['teachers'] and summary['methods']:
        plot_gains(summary, os.path.join(out_dir, name + '_gain.png'))
        figures['(b) gain per student: measured vs ' + PUBLISHED_LABEL] = name + '_gain.png'
    learning = plot_learning(data['records'], summary['teacher_maps'],
                             os.path.join(out_dir, name + '_learning.png'))
    if learning:
        figures['(d) learning curves: validation mAP against student iterations'] = \
            name + '_learning.png'
    curves = plot_curves(data['records'], os.path.join(out_dir, name + '_curves'))
    for path in curves:
        figures['(c) training curves, ' + os.path.basename(path)[:-4]] = os.path.relpath(
            path, out_dir)
    summary['speed'] = measure_speed(data['records']) if speed else None
    if summary['speed']:
        from ..inference import plot_map_latency
        plot_map_latency(summary['speed']['rows'], os.path.join(out_dir, name + '_speed.png'))
        figures['(e) mAP against latency (exported, this CPU)'] = name + '_speed.png'
    report = os.path.join(out_dir, name + '.md')
    with open(report, 'w') as f:
        f.write(markdown(summary, name, figures, digits, os.path.abspath(results),
                         records=data['records']))
    summary_file = os.path.join(out_dir, name + '_summary.json')
    with open(summary_file, 'w') as f:
        json.dump({k: v for k, v in summary.items() if k != 'failed'}, f, indent=1)
    return {'report': report, 'summary': summary_file,
            'figures': [os.path.join(out_dir, p) for p in figures.values()]}


def main(argv=None):
    """``scripts/report.py``."""
    import argparse
    p = argparse.ArgumentParser(description='Markdown report and figures from the results '
                                'JSON of scripts/reproduce.py.')
    p.add_argument('--results', required=True, help='results JSON of scripts/reproduce.py')
    p.add_argument('--out-dir', default='results', help='where the report and PNGs go')
    p.add_argument('--name', default=None, help='file name stem (default: the grid name)')
    p.add_argument('--digits', type=int, default=1, help='decimals of mAP points')
    p.add_argument('--no-speed', action='store_true',
                   help='do not export and time the params files on disk (a quicker report, '
                   'without the speed section)')
    args = p.parse_args(argv)
    if not os.path.exists(args.results):
        raise GankdError('--results: no such file {}'.format(args.results))
    written = write_report(args.results, args.out_dir, args.name, args.digits,
                           speed=not args.no_speed)
    print('report: {}'.format(written['report']))
    for path in written['figures']:
        print('figure: {}'.format(path))
    return 0
