"""Learning curves and controls of a grid, for :mod:`gankd.experiments.report`.

A cell's history (``<prefix>_history.jsonl``) holds, per epoch, the iteration reached and,
where it validated, the test mAP. From those:

- :func:`learning_curves`: validation mAP against iterations, per cell and seed;
- :func:`iterations_to_reach`: per distilled cell, the first validated iteration at which
  each seed reaches the final mAP of the baseline of the same seed, so that faster
  convergence is a result beside the final mAP;
- :func:`plot_learning`: one panel per student, mean over seeds of the baseline and of
  every method, the teacher's mAP as a line;
- :func:`controls_markdown`: the controls that show whether the pipeline transfers
  knowledge at all: a method named ``control-*`` (the feature-transfer control: a student
  of the teacher's architecture trained through a feature term alone into the teacher's
  frozen head), a teacher named ``NET@random`` (distilling from untrained weights), and
  the teachers' mAP from the training loop's own evaluation beside eval_voc.py's.
"""
import json
import os
from collections import OrderedDict

__all__ = ['CONTROL_PREFIX', 'is_control', 'read_history', 'learning_curves',
           'iterations_to_reach', 'plot_learning', 'controls_markdown',
           'iterations_markdown']

CONTROL_PREFIX = 'control-'
#: A control passes when it reaches this share of its teacher's mAP.
FEATURE_TRANSFER_SHARE = 0.8


def is_control(record_or_cell):
    """Whether a record (or summary cell) belongs to a control, not to Table 1."""
    teacher = record_or_cell.get('teacher') or ''
    method = record_or_cell.get('method') or ''
    return teacher.endswith('@random') or method.startswith(CONTROL_PREFIX)


def read_history(path):
    """The JSON lines of a history file; a line cut by a crash is skipped."""
    records = []
    if not path or not os.path.exists(path):
        return records
    with open(path) as f:
        for line in f:
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    return records


def _curve(history):
    """``[(iteration, mAP points), ...]`` of the validated epochs."""
    return [(int(h['iteration']), 100.0 * float(h['mAP'])) for h in history
            if h.get('mAP') is not None and h.get('iteration') is not None]


def learning_curves(records):
    """``{(student, teacher, method): {seed: [(iteration, mAP points), ...]}}`` of the
    finished student records whose histories are on disk."""
    curves = OrderedDict()
    for r in records:
        if r.get('status') != 'ok' or r.get('role') == 'teacher':
            continue
        points = _curve(read_history(r.get('history')))
        if points:
            key = (r['student'], r['teacher'], r['method'])
            curves.setdefault(key, OrderedDict())[int(r['seed'])] = points
    return curves


def iterations_to_reach(records, baseline='baseline'):
    """For every distilled cell: per seed, the first validated iteration at which its mAP
    reaches the final mAP of the same seed's baseline (None if it never does), and the
    baseline's own number of iterations.

    Returns
    -------
    OrderedDict
        ``(student, teacher, method)`` -> ``{'seeds': {seed: iteration or None},
        'baseline_iterations': {seed: iteration}}``.
    """
    finals, totals = {}, {}
    for r in records:
        if r.get('status') == 'ok' and r.get('method') == baseline:
            curve = _curve(read_history(r.get('history')))
            key = (r['student'], int(r['seed']))
            finals[key] = 100.0 * float(r['mAP'])
            if curve:
                totals[key] = curve[-1][0]
    out = OrderedDict()
    for (student, teacher, method), seeds in learning_curves(records).items():
        if method == baseline:
            continue
        entry = out.setdefault((student, teacher, method), {'seeds': OrderedDict(),
                                                            'baseline_iterations': {}})
        for seed, curve in seeds.items():
            target = finals.get((student, seed))
            if target is None:
                continue
            entry['seeds'][seed] = next((it for it, m in curve if m >= target), None)
            if (student, seed) in totals:
                entry['baseline_iterations'][seed] = totals[(student, seed)]
    return out


def iterations_markdown(records, baseline='baseline'):
    """A table: per distilled cell, the iterations each seed needed to reach its
    baseline's final mAP, against the baseline's own iterations."""
    reach = iterations_to_reach(records, baseline)
    lines = ['| student | teacher | method | iterations to the baseline\'s final mAP, per seed '
             '| baseline\'s iterations | seeds that reached it |', '|---|---|---|---|---|---|']
    for (student, teacher, method), entry in reach.items():
        if not entry['seeds']:
            continue
        its = ', '.join('seed {}: {}'.format(s, 'not reached' if v is None else v)
                        for s, v in entry['seeds'].items())
        base = sorted(set(entry['baseline_iterations'].values()))
        reached = sum(v is not None for v in entry['seeds'].values())
        lines.append('| {} | {} | {} | {} | {} | {} of {} |'.format(
            student, teacher, method, its, ', '.join(map(str, base)) or '–', reached,
            len(entry['seeds'])))
    return lines


def _mean_curve(seeds):
    """Mean over the seeds that validated at each iteration."""
    by_iter = OrderedDict()
    for curve in seeds.values():
        for it, m in curve:
            by_iter.setdefault(it, []).append(m)
    return sorted((it, sum(v) / len(v)) for it, v in by_iter.items())


def plot_learning(records, teacher_maps, path, baseline='baseline'):
    """Validation mAP against iterations: one panel per student, the mean over seeds of
    the baseline and of each (teacher, method), with each teacher's mAP as a dotted
    line. Returns ``path``, or None when no history has a validation."""
    from .report import _pyplot, _save
    curves = learning_curves(records)
    if not curves:
        return None
    plt = _pyplot()
    students = list(OrderedDict.fromkeys(k[0] for k in curves))
    fig, axes = plt.subplots(1, len(students), figsize=(4.2 * len(students), 3.4),
                             squeeze=False)
    for ax, student in zip(axes[0], students):
        keys = [k for k in curves if k[0] == student]
        keys.sort(key=lambda k: (k[2] != baseline, k[1], k[2]))
        for i, key in enumerate(keys):
            xs, ys = zip(*_mean_curve(curves[key]))
            label = 'baseline' if key[2] == baseline else '{} from {}'.format(key[2], key[1])
            ax.plot(xs, ys, marker='o', ms=2.5, lw=1.6 if key[2] == baseline else 1.1,
                    color='k' if key[2] == baseline else 'C{}'.format(i % 10),
                    label='{} (n={})'.format(label, len(curves[key])))
        for j, (teacher, m) in enumerate(teacher_maps.items()):
            if m.get('n') and not teacher.endswith('@random'):
                ax.axhline(m['mean'], color='gray', ls=':', lw=1)
                ax.text(0, m['mean'], ' teacher {}'.format(teacher), fontsize=7,
                        va='bottom', color='gray')
        ax.set_title(student, fontsize=10)
        ax.set_xlabel('student iterations', fontsize=8)
        ax.set_ylabel('validation mAP (points)', fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle('Learning curves: mean over seeds', fontsize=10)
    _save(fig, path)
    return path


def controls_markdown(summary, records, digits=1, baseline='baseline'):
    """The controls' section: feature transfer, random teacher, teacher evaluation."""
    from .report import _cell_key, fmt_cell, fmt_gain
    lines = []
    cells = summary['cells']
    feature = [c for c in cells.values() if (c['method'] or '').startswith(CONTROL_PREFIX)]
    if feature:
        lines += ['### Feature transfer (a student trained through a feature term alone, '
                  'into the teacher\'s frozen head)', '',
                  '| student | teacher | control | its mAP | teacher mAP | share of the '
                  'teacher | baseline, same updates | gain over baseline | passes (>= {:.0%} '
                  'of the teacher) |'.format(FEATURE_TRANSFER_SHARE),
                  '|---|---|---|---|---|---|---|---|---|']
        for c in feature:
            t = summary['teacher_maps'].get(c['teacher']) or {}
            share = c['mean'] / t['mean'] if t.get('n') and t['mean'] > 0 else None
            key = _cell_key(c['student'], c['teacher'], c['method'])
            lines.append('| {} | {} | {} | {} | {} | {} | {} | {} | {} |'.format(
                c['student'], c['teacher'], c['method'], fmt_cell(c, digits),
                fmt_cell(t, digits), '–' if share is None else '{:.0%}'.format(share),
                fmt_cell(cells.get(_cell_key(c['student'], 'none', baseline)), digits),
                fmt_gain(summary['gains'].get(key), digits),
                '–' if share is None else ('yes' if share >= FEATURE_TRANSFER_SHARE
                                           else 'NO')))
        lines.append('')
    random = [c for c in cells.values() if c['teacher'].endswith('@random')]
    if random:
        lines += ['### Random teacher (distilling from untrained weights should gain '
                  'nothing)', '', '| student | teacher | method | mAP | baseline | gain |',
                  '|---|---|---|---|---|---|']
        for c in random:
            key = _cell_key(c['student'], c['teacher'], c['method'])
            lines.append('| {} | {} | {} | {} | {} | {} |'.format(
                c['student'], c['teacher'], c['method'], fmt_cell(c, digits),
                fmt_cell(cells.get(_cell_key(c['student'], 'none', baseline)), digits),
                fmt_gain(summary['gains'].get(key), digits)))
        lines.append('')
    teachers = [r for r in records if r.get('role') == 'teacher' and r.get('status') == 'ok']
    if teachers:
        lines += ['### Teachers: the training loop\'s own validation against eval_voc.py', '',
                  '| teacher | mAP, eval_voc.py | mAP, the loop\'s validation of the same '
                  'params | difference |', '|---|---|---|---|']
        for r in teachers:
            loop = r.get('loop_mAP')
            lines.append('| {} | {:.{d}f} | {} | {} |'.format(
                r['teacher'], 100 * r['mAP'], '–' if loop is None else '{:.{d}f}'.format(
                    100 * loop, d=digits), '–' if loop is None else '{:+.2f}'.format(
                        100 * (r['mAP'] - loop)), d=digits))
        lines.append('')
    return lines
