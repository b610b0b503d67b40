"""The report's Markdown: its tables and the document that holds them (:func:`markdown`).

The measured table is laid out like the paper's Table 1 (rows: students; columns: no
teacher, then each teacher), every cell the mean ± sample standard deviation of the
per-seed mAPs with their count, and the gain over the baseline as the mean ± std of the
per-seed differences where the seeds pair up. The published numbers of
:mod:`gankd.experiments.published` stand beside it, labelled as quoted, not reproduced.
"""
import os

from .curves import CONTROL_PREFIX, FEATURE_TRANSFER_SHARE, iterations_to_reach
from .grid import BASELINE
from .published import (MODEL_ZOO, MODEL_ZOO_SOURCE, PUBLISHED_LABEL, TABLE1, TABLE3,
                        published_gain, published_name, table_markdown)
from .stats import cell_key, gap_closed

__all__ = ['fmt_cell', 'fmt_gain', 'markdown', 'iterations_markdown', 'controls_markdown',
           'validity_markdown', 'SPEED_HEADING', 'VALIDITY']

SPEED_HEADING = '## Speed and size (exported, this CPU)'

#: What a benchmark must show before its gains mean anything (issue 11), in mAP points:
#: every student's baseline at least ``min_baseline``; its sample std over at least
#: ``min_seeds`` seeds at most ``max_seed_std``; every teacher at least
#: ``min_teacher_margin`` above every baseline.
VALIDITY = {'min_baseline': 30.0, 'max_seed_std': 1.5, 'min_seeds': 3,
            'min_teacher_margin': 10.0}


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


def _fmt_gap(summary, student, teacher, method):
    share = gap_closed(summary, student, teacher, method)
    if share is not None:
        return '{:.0%}'.format(share)
    tmap = summary['teacher_maps'].get(teacher) or {}
    base = summary['cells'].get(cell_key(student, 'none', BASELINE))
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
        row = [s, fmt_cell(summary['cells'].get(cell_key(s, 'none', BASELINE)), digits)]
        for t in teachers:
            key = cell_key(s, t, method)
            row += [fmt_cell(summary['cells'].get(key), digits),
                    fmt_gain(summary['gains'].get(key), digits), _fmt_gap(summary, s, t, method)]
        lines.append('| ' + ' | '.join(row) + ' |')
    return lines


#: Table 3's GAN-KD rows (its third row is another method, fine-grained imitation).
TABLE3_GANKD_ROWS = ('ResNet50 + RoIPooling', 'ResNet50 + RoIAlign')


def _table3_gains():
    """``'+5.0 (ResNet50 + RoIPooling); +2.3 (ResNet50 + RoIAlign)'``."""
    return '; '.join('{:+.1f} ({})'.format(round(TABLE3.rows[r][1] - TABLE3.rows[r][0], 1), r)
                     for r in TABLE3_GANKD_ROWS)


def _published_beside(summary, digits):
    """Measured gains of every method beside the published GAN-KD gain: Table 1's for
    the matching row and column (SSD), Table 3's rows (Faster R-CNN, whose networks are
    not the table's)."""
    methods = summary['methods']
    if summary.get('family') == 'faster_rcnn':
        head = ['student', 'teacher'] + ['measured gain ({})'.format(m) for m in methods] + [
            '{}: GAN-KD gain, Table 3 (ResNet101 teacher, ResNet50 student)'.format(
                PUBLISHED_LABEL)]
        lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
        for s in summary['students']:
            for t in summary['teachers']:
                cells = [fmt_gain(summary['gains'].get(cell_key(s, t, m)), digits)
                         for m in methods]
                lines.append('| ' + ' | '.join([s, t] + cells + [_table3_gains()]) + ' |')
        return lines
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
            cells = [fmt_gain(summary['gains'].get(cell_key(s, t, m)), digits)
                     for m in methods]
            lines.append('| ' + ' | '.join([s, t] + cells + [
                '–' if pub is None else '{:+.1f}'.format(pub), where]) + ' |')
    return lines


def _teachers_table(summary, digits):
    if summary.get('family') == 'faster_rcnn':
        lines = ["| teacher | measured mAP | {}: Table 3's teacher |".format(PUBLISHED_LABEL),
                 '|---|---|---|']
        for t, m in summary['teacher_maps'].items():
            lines.append('| {} | {} | {} |'.format(t, fmt_cell(m, digits), TABLE3.notes[0]))
        return lines
    lines = ['| teacher | measured mAP | {}: GluonCV model zoo, 512 px, VOC |'.format(
        PUBLISHED_LABEL), '|---|---|---|']
    for t, m in summary['teacher_maps'].items():
        zoo = 'ssd_512_{}_voc'.format(t)
        pub = '{} {}'.format(zoo, MODEL_ZOO[zoo]) if zoo in MODEL_ZOO else '–'
        lines.append('| {} | {} | {} |'.format(t, fmt_cell(m, digits), pub))
    return lines


def _trainings_table(rows, digits):
    """The teachers' trainings, when a grid resumed elsewhere trained one again."""
    if not rows:
        return []
    lines = ['### Trainings of the teachers', '',
             "The teachers' weights are not committed: a grid resumed on another machine "
             'trains its teacher again from the same seed, and another CPU gives other '
             'weights. Each distilled record names the training it learnt from (the '
             "SHA-256 of its params); the tables above give the current training's mAP, "
             "the controls the mAP of the training each control learnt from.", '',
             '| teacher | training finished | mAP | params SHA-256 | distilled cells that '
             'learnt from it | status |', '|---|---|---|---|---|---|']
    for r in rows:
        lines.append('| {} | {} | {:.{d}f} | {} | {} | {} |'.format(
            r['teacher'], r['finished_at'] or '–', r['mAP'],
            '`{}`'.format(r['sha256'][:12]) if r['sha256'] else '– (not recorded)',
            '{}{}'.format(r['cells'], '' if r['sha256'] else ' (the records naming none)'),
            'current' if r['current'] else 'retired: ' + (r['retired_because'] or '?'),
            d=digits))
    return lines + ['']


def _retired_table(rows, digits):
    """The cells of a recipe the preset has changed since: kept, out of the tables."""
    if not rows:
        return []
    lines = ['### Retired cells', '',
             'Runs of a recipe the preset has changed since (`reproduce.py '
             '--retire-changed`), kept under `retired` in the results file and counted in '
             'no table above.', '',
             '| cell | seed | mAP | finished | retired because |', '|---|---|---|---|---|']
    for r in rows:
        lines.append('| {} / {} / {} | {} | {:.{d}f} | {} | {} |'.format(
            r['student'], r['teacher'], r['method'], r['seed'], r['mAP'],
            r['finished_at'] or '–', r['retired_because'] or '?', d=digits))
    return lines + ['']


def _methods_table(summary, teacher, digits):
    """Rows: baseline then each method; per student its mAP, the gain over the baseline
    and the share of the teacher-student gap closed."""
    head = ['method'] + sum([[s, 'gain', 'gap closed', 'last-epoch train CE']
                             for s in summary['students']], [])
    lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']

    def train_ce(key):
        return fmt_cell((summary['cells'].get(key) or {}).get('train_ce'), 2)

    row = ['none (plain Faster R-CNN)' if summary.get('family') == 'faster_rcnn'
           else 'none (plain SSD)']
    for s in summary['students']:
        key = cell_key(s, 'none', BASELINE)
        row += [fmt_cell(summary['cells'].get(key), digits), '–', '–', train_ce(key)]
    lines.append('| ' + ' | '.join(row) + ' |')
    for m in summary['methods']:
        row = [m]
        for s in summary['students']:
            key = cell_key(s, teacher, m)
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
    frcnn = summary.get('family') == 'faster_rcnn'
    table = 'Table 3' if frcnn else 'Table 1'
    for m in summary['methods'][:1] or [None]:
        if m is None:
            out += ['## Measured (baselines only)', '']
        else:
            out += ['## Measured, laid out like {} (method: {})'.format(table, m), '']
        out += _table1(summary, m, digits) + ['']
    if summary['methods'] and summary['teachers']:
        out += ['## Measured gains beside the published ones', ''] + \
            _published_beside(summary, digits) + ['']
    if summary['teacher_maps']:
        out += ['## Teachers', ''] + _teachers_table(summary, digits) + [''] + (
            [] if frcnn else ['Model-zoo numbers: ' + MODEL_ZOO_SOURCE + '.', ''])
        out += _trainings_table(summary.get('teacher_trainings'), digits)
    out += _retired_table(summary.get('retired_cells'), digits)
    out += ['## ' + PUBLISHED_LABEL.capitalize(), '',
            table_markdown('table3') if frcnn else
            table_markdown('table1', _published_rows(summary)), '']
    iterations = iterations_markdown(records or [])
    if len(iterations) > 2:
        out += ['## Convergence: iterations to reach the baseline\'s final mAP', '',
                'From the validations in each cell\'s history (same seed pairs as the gains).',
                ''] + iterations + ['']
    validity = validity_markdown(summary, digits)
    if validity:
        out += ['## Can this benchmark measure?', ''] + validity
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


def validity_markdown(summary, digits=1, limits=VALIDITY):
    """Per student, whether its baseline meets :data:`VALIDITY`, and the verdict.

    "not yet" where a number is missing (fewer seeds than asked, no teacher): a grid
    still running has not failed a criterion, it has not shown it.
    """
    teachers = {t: summary['teacher_maps'][t] for t in summary['teachers']
                if not t.endswith('@random') and (summary['teacher_maps'].get(t) or {}).get('n')}
    rows, verdicts = [], []
    # Every baseline counts (item 1 of issue 11), a control's student's too: it is a
    # student whose seeds' spread the controls' verdicts rest on.
    controls_students = [c['student'] for c in summary['cells'].values()
                         if c['teacher'] == 'none' and c['student'] not in summary['students']]
    for student in list(summary['students']) + controls_students:
        base = summary['cells'].get(cell_key(student, 'none', BASELINE))
        if not base or not base.get('n'):
            continue
        level = base['mean'] >= limits['min_baseline']
        if base['n'] >= limits['min_seeds']:
            spread = base['std'] <= limits['max_seed_std']
        else:
            spread = None
        margins = [t['mean'] - base['mean'] for t in teachers.values()]
        margin = min(margins) >= limits['min_teacher_margin'] if margins else None
        verdicts += [level, spread, margin]
        rows.append('| {} | {} | {} | {} | {} |'.format(
            student + (" (the controls' student)" if student in controls_students else ''),
            fmt_cell(base, digits), 'yes' if level else 'NO',
            'not yet ({} of {} seeds)'.format(base['n'], limits['min_seeds'])
            if spread is None else ('yes' if spread else 'NO'),
            'not yet (no teacher)' if margin is None else '{} ({:+.{d}f})'.format(
                'yes' if margin else 'NO', min(margins), d=digits)))
    if not rows:
        return []
    verdict = ('no' if False in verdicts else 'not yet' if None in verdicts else 'yes')
    return ['Every student\'s baseline at least {min_baseline:.0f} mAP; its sample std over '
            'at least {min_seeds} seeds at most {max_seed_std}; every teacher at least '
            '{min_teacher_margin:.0f} points above it.'.format(**limits), '',
            '| student | baseline | >= {:.0f} | seed std <= {} | teacher >= baseline + {:.0f} '
            '(closest teacher) |'.format(limits['min_baseline'], limits['max_seed_std'],
                                         limits['min_teacher_margin']),
            '|---|---|---|---|---|'] + rows + \
        ['', '**Can measure: {}.**'.format(verdict), '']


def controls_markdown(summary, records, digits=1, baseline='baseline'):
    """The controls' section: feature transfer, random teacher, teacher evaluation."""
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
            # The teacher training the control learnt from, when its records name it.
            t = c.get('teacher_seen') or summary['teacher_maps'].get(c['teacher']) or {}
            share = c['mean'] / t['mean'] if t.get('n') and t['mean'] > 0 else None
            key = cell_key(c['student'], c['teacher'], c['method'])
            lines.append('| {} | {} | {} | {} | {} | {} | {} | {} | {} |'.format(
                c['student'], c['teacher'], c['method'], fmt_cell(c, digits),
                fmt_cell(t, digits), '–' if share is None else '{:.0%}'.format(share),
                fmt_cell(cells.get(cell_key(c['student'], 'none', baseline)), digits),
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
            key = cell_key(c['student'], c['teacher'], c['method'])
            lines.append('| {} | {} | {} | {} | {} | {} |'.format(
                c['student'], c['teacher'], c['method'], fmt_cell(c, digits),
                fmt_cell(cells.get(cell_key(c['student'], 'none', baseline)), digits),
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


def _speed_section(speed):
    """The speed section's Markdown lines (none without measurements)."""
    if not speed:
        return []
    from ..deploy import speed_markdown
    where = ('on the CPU that wrote this report' if not speed.get('source') else
             'on the CPU that wrote `{}`, reused here (latency and size depend on the '
             "architecture, not on the weights; mAP: these results)".format(speed['source']))
    out = [SPEED_HEADING, '',
           "Each model as `scripts/export.py` exports it (GluonCV's `export_block`, its "
           'preprocessing included), loaded back with `SymbolBlock.imports`: median latency '
           'of {} runs at batch 1, throughput at batch {}, {}. '
           "One params file per row (the lowest seed's); mAP: the mean over the row's seeds. "
           'Speed-up: relative to the first row.'.format(
               speed['runs'], speed['rows'][0]['batch_size'], where), '',
           speed_markdown(speed['rows']), '']
    absent = [m for m in speed['missing'] if not m.get('why')]
    if absent:
        out += ['Not measured, their params files are not on disk (weights are not '
                'committed; rerun the grid to make them): ' + '; '.join(
                    '{} (`{}`)'.format(m['label'], m['params']) for m in absent) + '.', '']
    other = [m for m in speed['missing'] if m.get('why')]
    if other:
        out += ['Not measured: ' + '; '.join('{} ({})'.format(m['label'], m['why'])
                                             for m in other) + '.', '']
    return out
