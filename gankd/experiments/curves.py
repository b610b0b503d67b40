"""Learning curves and controls of a grid: the data the report draws and tabulates.

A cell's history (``<prefix>_history.jsonl``) holds, per epoch, the iteration reached and,
where it validated, the test mAP. From those:

- :func:`learning_curves`: validation mAP against iterations, per cell and seed, and
  :func:`mean_curve`, their mean over seeds;
- :func:`iterations_to_reach`: per distilled cell, the first validated iteration at which
  each seed reaches the final mAP of the baseline of the same seed, so that faster
  convergence is a result beside the final mAP.

The controls show whether the pipeline transfers knowledge at all (:func:`is_control`): a
method named ``control-*`` (the feature-transfer control: a student of the teacher's
architecture trained through a feature term alone into the teacher's frozen head) and a
teacher named ``NET@random`` (distilling from untrained weights); the report adds the
teachers' mAP from the training loop's own validation beside eval_voc.py's. The tables
are in :mod:`gankd.experiments.tables`, the figure in :mod:`gankd.experiments.figures`.
"""
import json
import os
from collections import OrderedDict

__all__ = ['CONTROL_PREFIX', 'FEATURE_TRANSFER_SHARE', 'is_control', 'read_history',
           'learning_curves', 'mean_curve', 'iterations_to_reach']

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


def mean_curve(seeds):
    """Mean over the seeds that validated at each iteration."""
    by_iter = OrderedDict()
    for curve in seeds.values():
        for it, m in curve:
            by_iter.setdefault(it, []).append(m)
    return sorted((it, sum(v) / len(v)) for it, v in by_iter.items())
