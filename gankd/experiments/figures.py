"""The report's figures (PNG, matplotlib): (a) mAP per student, (b) measured gains beside
the published ones, (c) each cell's training curves, (d) learning curves of validation mAP
against iterations.
"""
import os
from collections import OrderedDict

from .curves import learning_curves, mean_curve, read_history
from .grid import BASELINE
from .published import PUBLISHED_LABEL, TABLE3, published_gain
from .stats import cell_key

__all__ = ['CURVE_KEYS', 'plot_maps', 'plot_gains', 'plot_curves', 'plot_learning']

#: History keys :func:`plot_curves` draws, those a history has.
CURVE_KEYS = ('Loss_D', 'Loss_G', 'CrossEntropy', 'SmoothL1', 'mAP')


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # files only; no display on these machines
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    import matplotlib.pyplot as plt
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # keeps a legend placed outside
    plt.close(fig)


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
            cell = summary['cells'].get(cell_key(s, t, m))
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
    beside Table 1's published GAN-KD gain for the same row and column (a Faster R-CNN
    grid: Table 3's ResNet50 + RoIAlign gain)."""
    plt = _pyplot()
    from matplotlib.patches import Patch
    methods = summary['methods']
    pairs = [(s, t) for s in summary['students'] for t in summary['teachers']]
    # A Faster R-CNN grid's networks are not Table 3's: its RoIAlign row stands beside all.
    frcnn = summary.get('family') == 'faster_rcnn'
    row = TABLE3.rows['ResNet50 + RoIAlign']
    table3_align = round(row[1] - row[0], 1)
    width = 0.8 / (len(methods) + 1)
    offset = lambda i: (i - len(methods) / 2) * width  # noqa: E731
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(pairs) * (len(methods) + 1) ** 0.5), 4))
    for j, (s, t) in enumerate(pairs):
        for i, m in enumerate(methods):
            g = summary['gains'].get(cell_key(s, t, m))
            if g is not None:
                # C0 is the baseline in (a); methods keep their colours of (a).
                ax.bar(j + offset(i), g['mean'], width, yerr=g['std'] or 0.0, capsize=3,
                       color='C{}'.format(i + 1))
        pub = table3_align if frcnn else published_gain(s, t, exact=False)
        if pub is not None:
            ax.bar(j + offset(len(methods)), pub, width, color='lightgray', hatch='//',
                   edgecolor='k')
    # Legend patches of their own, so it is complete whichever bars exist.
    handles = [Patch(color='C{}'.format(i + 1), label='measured, {} (mean ± std over seed '
                     'pairs)'.format(m)) for i, m in enumerate(methods)]
    handles.append(Patch(facecolor='lightgray', hatch='//', edgecolor='k',
                         label=PUBLISHED_LABEL + (': GAN-KD, Table 3 (ResNet50 + RoIAlign)'
                                                  if frcnn else ': GAN-KD, Table 1 (by family)')))
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
        histories = [(r['seed'], read_history(r['history'])) for r in rs]
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


def plot_learning(records, teacher_maps, path, baseline='baseline'):
    """Validation mAP against iterations: one panel per student, the mean over seeds of
    the baseline and of each (teacher, method), with each teacher's mAP as a dotted
    line. Returns ``path``, or None when no history has a validation."""
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
            xs, ys = zip(*mean_curve(curves[key]))
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
