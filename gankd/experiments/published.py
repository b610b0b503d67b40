"""The published GAN-KD numbers as data, each table with its source.

Everything here is *quoted* from the authors' README (HongWei, StartDt AI Lab, arXiv
1906.08467; the repository released no code), as reproduced in the project's seed
document and summarised in ``../shared/gankd-method.md``. None of it was measured by
this project: reports must label it "published (quoted, not reproduced)"
(:data:`PUBLISHED_LABEL`).

Numbers are kept exactly as printed: ``18`` stays an int and ``21.7`` a float, so
``str(value)`` gives the published text; an empty cell (printed ``-``) is None.

This project's network names (GluonCV base networks such as ``mobilenet1.0``) map to
the tables' row and column names through :data:`NETWORK_NAMES`; networks of the same
family at another width (``mobilenet0.25``) map through :func:`published_name` with
``exact=False`` and say so.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

__all__ = ['PublishedTable', 'TABLE1', 'TABLE2', 'TABLE3', 'TABLES', 'MODEL_ZOO',
           'MODEL_ZOO_SOURCE', 'NETWORK_NAMES', 'FAMILY_NAMES', 'PUBLISHED_LABEL',
           'published_name', 'published_value', 'published_gain', 'format_published',
           'table_markdown']

#: How reports label every number of this module.
PUBLISHED_LABEL = 'published (quoted, not reproduced)'

_README = ("authors' README (HongWei, StartDt AI Lab, GAN-KD, arXiv 1906.08467), "
           "quoted in ../shared/seeds/000_e56a23adf87e1b14.txt and "
           "../shared/gankd-method.md ('Published results (README)')")


@dataclass(frozen=True)
class PublishedTable:
    """One published results table.

    Attributes
    ----------
    key : str
        ``'table1'``, ``'table2'`` or ``'table3'``.
    title : str
    setting : str
        Detector, training set -> test set.
    metric : str
    columns : tuple of str
        Teacher columns; ``'none'`` is the student trained without distillation.
    rows : dict
        Student row name -> one value per column (None where the cell is empty).
    source : str
    notes : tuple of str
        What the source says around the table (teacher mAPs, printed gains).
    """
    key: str
    title: str
    setting: str
    metric: str
    columns: Tuple[str, ...]
    rows: Dict[str, Tuple[Optional[float], ...]]
    source: str
    notes: Tuple[str, ...] = field(default_factory=tuple)

    def value(self, row, column):
        """The published cell, or None when it is empty. KeyError for unknown names."""
        if row not in self.rows:
            raise KeyError('{}: no row {!r}; rows: {}'.format(self.key, row, list(self.rows)))
        if column not in self.columns:
            raise KeyError('{}: no column {!r}; columns: {}'.format(
                self.key, column, list(self.columns)))
        return self.rows[row][self.columns.index(column)]


TABLE1 = PublishedTable(
    key='table1',
    title='Table 1: SSD students with and without GAN-KD, by teacher',
    setting='SSD, VOC07+12 trainval -> VOC07 test',
    metric='mAP (VOC07, %)',
    columns=('none', 'VGG16', 'ResNet50', 'ResNet101', 'ResNet50 + cosine attention'),
    rows={
        'MobileNetV1': (75.4, 77.3, 77.7, 77.6, 78.4),
        'MobileNetV2': (75.9, 77.2, 77.7, 77.5, None),
        'ResNet18': (74.8, 77.2, 77.6, 77.3, None),
    },
    source=_README,
    notes=("The README blames the weak ResNet101 column on GluonCV's SSD-ResNet101 "
           "reaching only 79+ mAP on VOC, against 80+ for SSD-ResNet50.",
           "The README reports about +1 mAP from cosine attention, whose formula is not "
           "published."))

TABLE2 = PublishedTable(
    key='table2',
    title='Table 2: SSD students on COCO, ResNet50 teacher',
    setting='SSD, COCO train2017 -> val2017',
    metric='COCO val2017 (as printed)',
    columns=('none', 'ResNet50'),
    rows={
        'MobileNetV1_0.75': (18, 23),
        'MobileNetV1': (21.7, 25.4),
        'MobileNetV2': (22, 24.6),
    },
    source=_README)

TABLE3 = PublishedTable(
    key='table3',
    title='Table 3: Faster R-CNN students, ResNet101 teacher',
    setting='Faster R-CNN, VOC07 trainval -> VOC07 test',
    metric='mAP (VOC07, %)',
    columns=('none', 'ResNet101'),
    rows={
        'ResNet50 + RoIPooling': (67.0, 72.0),
        'ResNet50 + RoIAlign': (71.7, 74.0),
        'fine-grained feature imitation (CVPR 2019), ResNet50': (69.0, 72.0),
    },
    source=_README,
    notes=('Teacher: Faster R-CNN ResNet101, 74.8+ mAP on VOC07 test.',
           'Printed gains: +5, +2.3, +3.',
           'The third row is the reference method (arXiv 1906.03609), not GAN-KD.'))

TABLES = {t.key: t for t in (TABLE1, TABLE2, TABLE3)}

#: GluonCV model-zoo teachers (VOC07 test mAP, %); the mobilenet1.0 SSD is Table 1's
#: MobileNetV1 'none' cell.
MODEL_ZOO = {'ssd_512_resnet50_v1_voc': 80.1, 'ssd_512_mobilenet1.0_voc': 75.4}
MODEL_ZOO_SOURCE = "GluonCV model zoo, as quoted in ../shared/gankd-method.md"

#: This project's network names -> the tables' names, where the network is the one the
#: tables used (same family and width).
NETWORK_NAMES = {
    'mobilenet1.0': 'MobileNetV1',
    'mobilenet0.75': 'MobileNetV1_0.75',
    'mobilenetv2_1.0': 'MobileNetV2',
    'resnet18_v1': 'ResNet18',
    'resnet50_v1': 'ResNet50',
    'resnet101_v2': 'ResNet101',
    'vgg16_atrous': 'VGG16',
    'none': 'none',
}

#: Name prefixes -> the tables' name for the whole family, for networks of another width
#: (mobilenet0.25 is a MobileNetV1 at a quarter of the published width).
FAMILY_NAMES = (
    ('mobilenetv2_', 'MobileNetV2'),
    ('mobilenet', 'MobileNetV1'),
    ('resnet18_', 'ResNet18'),
    ('resnet50_', 'ResNet50'),
    ('resnet101_', 'ResNet101'),
    ('vgg16', 'VGG16'),
)


def published_name(network, table='table1', exact=True, kind=None):
    """The row or column name a table uses for one of this project's networks.

    Parameters
    ----------
    network : str
        A project network name (``'mobilenet1.0'``), ``'none'``, or already a table name.
    table : str or PublishedTable
    exact : bool
        If False, fall back to the family's name (``'mobilenet0.25'`` -> ``'MobileNetV1'``)
        when the exact network is not in the table.
    kind : {None, 'row', 'column'}
        Look among the rows (students) or the columns (teachers) only; both by default.

    Returns
    -------
    tuple (str, bool) or None
        ``(name, is_exact)``, or None when the table has no such row or column.
    """
    t = TABLES[table] if isinstance(table, str) else table
    names = set()
    if kind in (None, 'row'):
        names |= set(t.rows)
    if kind in (None, 'column'):
        names |= set(t.columns)
    if network in names:
        return network, True
    name = NETWORK_NAMES.get(network)
    if name in names:
        return name, True
    if exact:
        return None
    for prefix, family in FAMILY_NAMES:
        if network.startswith(prefix) and family in names:
            return family, False
    return None


def published_value(student, teacher='none', table='table1', exact=True):
    """The published number for a student and teacher (network or table names).

    Returns None when the table has no such row or column or the cell is empty.
    """
    t = TABLES[table] if isinstance(table, str) else table
    row = published_name(student, t, exact, kind='row')
    col = published_name(teacher, t, exact, kind='column')
    if row is None or col is None:
        return None
    return t.value(row[0], col[0])


def published_gain(student, teacher, table='table1', exact=True):
    """Published mAP gain of GAN-KD from ``teacher`` over no distillation, in points.

    Rounded to one decimal, the precision of the tables (77.7 - 75.4 is 2.3, not
    2.3000000000000114). None when either cell is missing.

    Examples
    --------
    >>> published_gain('mobilenet1.0', 'resnet50_v1')
    2.3
    >>> published_gain('MobileNetV1', 'ResNet50 + cosine attention')
    3.0
    """
    base = published_value(student, 'none', table, exact)
    with_kd = published_value(student, teacher, table, exact)
    if base is None or with_kd is None:
        return None
    return round(with_kd - base, 1)


def format_published(value):
    """The published text of a cell: ``'18'``, ``'21.7'``, or ``'-'`` when empty."""
    return '-' if value is None else str(value)


def table_markdown(table='table1', rows=None):
    """A published table as Markdown, labelled as quoted, with its source.

    ``rows`` restricts and orders the rows (table names); all rows by default.
    """
    t = TABLES[table] if isinstance(table, str) else table
    rows = list(t.rows) if rows is None else rows
    lines = ['{} ({}; {}), {}'.format(t.title, t.setting, t.metric, PUBLISHED_LABEL),
             '',
             '| student | ' + ' | '.join('teacher: ' + c for c in t.columns) + ' |',
             '|---|' + '---|' * len(t.columns)]
    for r in rows:
        lines.append('| {} | {} |'.format(r, ' | '.join(format_published(v)
                                                         for v in t.rows[r])))
    lines += ['', 'Source: ' + t.source + '.']
    lines += ['Note: ' + n for n in t.notes]
    return '\n'.join(lines)
