"""The report of a grid: ``scripts/report.py`` writes the Markdown
(:mod:`gankd.experiments.tables`), the figures (:mod:`gankd.experiments.figures`) and the
summary JSON (:mod:`gankd.experiments.stats`) of a results file of
:mod:`gankd.experiments.runner`, and times the exported models it finds on disk.
"""
import argparse
import json
import os
from collections import OrderedDict

from ..errors import GankdError
from .figures import plot_curves, plot_gains, plot_learning, plot_maps
from .published import PUBLISHED_LABEL
from .results_file import load_results
from .stats import retired_cells, speed_groups, summarize, teacher_trainings
from .tables import markdown

__all__ = ['measure_speed', 'reuse_speed', 'write_report', 'build_parser', 'main']


def measure_speed(records, runs=30):
    """Latency, throughput and size (:func:`gankd.deploy.bench_exported`) of the params
    file of each :func:`speed_groups` entry that is on disk.

    Returns
    -------
    dict or None
        ``rows`` (bench rows with the group's ``name`` (its label), ``mAP``, ``n``,
        ``seed``) and ``missing`` (groups whose params file is not on disk: label and
        path); None when no params file is on disk.
    """
    from ..deploy import bench_exported
    rows, missing = [], []
    for g in speed_groups(records):
        if not g['params'] or not os.path.isfile(g['params']):
            missing.append({'label': g['label'], 'params': g['params']})
            continue
        row = bench_exported(g['params'], runs=runs)
        row.update(name=g['label'], mAP=g['mAP'], n=g['n'], seed=g['seed'])
        rows.append(row)
    return {'rows': rows, 'missing': missing, 'runs': runs} if rows else None


def reuse_speed(records, summary_path):
    """The speed table of an earlier report (its ``<name>_summary.json``), for a machine
    that lacks the params files: latency and size depend on the architecture, not on the
    weights, so its rows stand; their mAP is taken from ``records``. A group the earlier
    table lacks is listed as missing.

    Returns
    -------
    dict or None
        As :func:`measure_speed`, with ``source`` (the summary file); None when that
        summary has no speed table.
    """
    try:
        with open(summary_path) as f:
            earlier = json.load(f).get('speed')
    except (OSError, ValueError) as err:
        raise GankdError('--speed-from {}: {}'.format(summary_path, err))
    if not earlier:
        return None
    timed = {row['name']: row for row in earlier['rows']}
    rows, missing = [], []
    for g in speed_groups(records):
        if g['label'] in timed:
            rows.append(dict(timed[g['label']], mAP=g['mAP'], n=g['n'], seed=g['seed']))
        else:
            missing.append({'label': g['label'], 'params': g['params'],
                            'why': 'not in the earlier table'})
    return {'rows': rows, 'missing': missing, 'runs': earlier['runs'],
            'source': os.path.relpath(summary_path)} if rows else None


def write_report(results, out_dir, name=None, digits=1, speed=True, speed_from=None):
    """Write ``<name>.md``, ``<name>_summary.json`` and the PNG figures into ``out_dir``.

    With ``speed``, the params files of the records that are on disk are exported and
    timed (:func:`measure_speed`): a table beside mAP and ``<name>_speed.png``. With
    ``speed_from`` (an earlier report's summary JSON) its timings are reused instead
    (:func:`reuse_speed`).

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
    summary['teacher_trainings'] = teacher_trainings(data)
    summary['retired_cells'] = retired_cells(data)
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
    # Export (gankd.deploy) serves the SSD family only.
    if speed_from:
        summary['speed'] = reuse_speed(data['records'], speed_from)
    else:
        summary['speed'] = (measure_speed(data['records'])
                            if speed and summary['family'] == 'ssd' else None)
    if summary['speed']:
        from ..deploy import plot_map_latency
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


def build_parser():
    """The flags of ``scripts/report.py``."""
    p = argparse.ArgumentParser(description='Markdown report and figures from the results '
                                'JSON of scripts/reproduce.py.')
    p.add_argument('--results', required=True, help='results JSON of scripts/reproduce.py')
    p.add_argument('--out-dir', default='results', help='where the report and PNGs go')
    p.add_argument('--name', default=None, help='file name stem (default: the grid name)')
    p.add_argument('--digits', type=int, default=1, help='decimals of mAP points')
    p.add_argument('--speed-from', default=None, metavar='SUMMARY_JSON',
                   help="reuse the speed table of an earlier report's <name>_summary.json "
                   '(timings depend on the architectures, not on the weights) instead of '
                   'timing the params files on disk')
    p.add_argument('--no-speed', action='store_true',
                   help='do not export and time the params files on disk (a quicker report, '
                   'without the speed section)')
    return p


def main(argv=None):
    """``scripts/report.py``."""
    args = build_parser().parse_args(argv)
    if not os.path.exists(args.results):
        raise GankdError('--results: no such file {}'.format(args.results))
    written = write_report(args.results, args.out_dir, args.name, args.digits,
                           speed=not args.no_speed, speed_from=args.speed_from)
    print('report: {}'.format(written['report']))
    for path in written['figures']:
        print('figure: {}'.format(path))
    return 0
