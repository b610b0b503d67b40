"""Distillation terms: what each compares, what it needs, and how terms are registered.

The training loop captures, per device, the student's (adapted) maps, the teacher's maps
and the head's predictions in a :class:`Captures`; each term turns those into a loss that
is added to the detection loss. A new method is one :class:`DistillTerm` subclass and one
``@register_term('name')`` line, not a new loop: the term declares what it needs
(:attr:`DistillTerm.needs`), the loop provides only that, and the term names its own
logged losses (:attr:`DistillTerm.log_names`). Its options (temperature, margin, ...)
are its constructor's keyword arguments named in :attr:`DistillTerm.options`, reachable
from the command line as ``--distill-options TERM.OPTION=VALUE``.
"""
import importlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..errors import GankdError

__all__ = ['Captures', 'DistillTerm', 'DistillContext', 'TERMS', 'register_term',
           'build_terms', 'term_names', 'term_options', 'parse_term_options', 'TEACHER_MAPS', 'TEACHER_PREDICTIONS']

#: What a term can need besides the student's maps and predictions.
TEACHER_MAPS = 'teacher_maps'
TEACHER_PREDICTIONS = 'teacher_predictions'


@dataclass
class Captures:
    """What one device saw in one iteration.

    Attributes
    ----------
    student_maps : list of NDArray
        The student's (adapted) maps, recorded for autograd.
    teacher_maps : list of NDArray or None
        The frozen teacher's maps (no gradient), None when no term needs them.
    fraction : float
        This device's share of the batch; per-device means times ``fraction`` sum to the
        batch mean.
    targets : object
        This device's targets, as the detector family's loader made them (opaque).
    predictions : list of gankd.detectors.family.Predictions or None
        The student head's training-mode outputs per stage, recorded; filled in for the
        student step.
    teacher_predictions : list of gankd.detectors.family.Predictions or None
        The frozen teacher head on the teacher's maps, with the student's candidates (no
        gradient); filled in when a term needs ``teacher_predictions``.
    family : gankd.detectors.family.DetectorFamily or None
        The detector family, for terms that run a head (crosshead, di).
    student_records, teacher_records : dict of str -> NDArray
        The internal layers the terms record (:attr:`DistillTerm.records`), by name: the
        student's recorded for autograd, the teacher's without a graph.
    """
    student_maps: List[Any]
    teacher_maps: Optional[List[Any]]
    fraction: float
    targets: Any = None
    predictions: Optional[List[Any]] = None
    teacher_predictions: Optional[List[Any]] = None
    family: Any = None
    student_records: Dict[str, Any] = field(default_factory=dict)
    teacher_records: Dict[str, Any] = field(default_factory=dict)


@dataclass
class DistillContext:
    """What a term may be built from (:meth:`DistillTerm.from_context`).

    Attributes
    ----------
    teacher_shapes : list of tuple
        ``(C, H, W)`` of the teacher's maps, per level.
    ctx : list of mxnet.Context
    teacher_head : HybridBlock or None
        The teacher's head, frozen.
    family : gankd.detectors.family.DetectorFamily or None
    distribution : gankd.train.distributed.Distribution or None
        How gradients are aggregated (terms with a Trainer of their own).
    amp : module or None
    sync_devices : int
        SyncBatchNorm over this many devices inside a term's blocks (``--syncbn``).
    student : HybridBlock or None
        The student's backbone, for a term that runs parts of it itself (``lit``).
    """
    teacher_shapes: List[Any]
    ctx: List[Any]
    teacher_head: Any = None
    family: Any = None
    distribution: Any = None
    amp: Any = None
    sync_devices: int = 1
    student: Any = None


class DistillTerm(object):
    """Base class of a distillation term.

    Attributes
    ----------
    name : str
        The name of the term's loss in logs and history.
    key : str
        The name it is registered under (``--distill``), set by :func:`register_term`.
    needs : tuple of str
        What the loop must provide besides the student's maps and predictions:
        :data:`TEACHER_MAPS` (the teacher backbone runs) and/or
        :data:`TEACHER_PREDICTIONS` (the frozen teacher head runs on the teacher's maps,
        with the student's candidates).
    needs_teacher_head : bool
        Whether the term runs the teacher's head itself (it gets it from the context).
    records : tuple of str
        Internal layers of the backbones the term compares besides the maps (e.g.
        ``hint.layers``): the loop records them in the student and in the teacher
        (:mod:`gankd.distill.recorders`) and hands them over in
        :attr:`Captures.student_records` and :attr:`Captures.teacher_records`, keyed by
        the entry. An entry ``student_layer:teacher_layer`` pairs layers of different
        names (:func:`gankd.distill.recorders.layer_sides`).
    log_names : tuple of str
        The names the term logs, in their order in the log line (default: ``name``).
    options : tuple of str
        Constructor keywords reachable as ``--distill-options KEY.OPTION=VALUE``.
    weight : float
        Multiplies :meth:`loss` in the student objective.
    warmup : int
        Over the run's first ``warmup`` iterations ``weight`` rises linearly from 0 (at
        iteration 0) to its full value (from iteration ``warmup`` on); 0 is no warm-up.
    iteration : int or None
        The iteration being trained, counted from the run's start, as the loop last told
        (:meth:`set_iteration`). The ramp is derived from it alone, so a resumed run
        continues it; None (outside the loop) is the full weight.
    """
    name = 'distill'
    key = None
    needs = (TEACHER_MAPS,)
    needs_teacher_head = False
    records = ()
    log_names = ()
    options = ()

    def __init__(self, weight=1.0, warmup=0):
        self.weight = weight
        self.warmup = int(warmup)
        self.iteration = None

    @classmethod
    def from_context(cls, context, weight=1.0, **options):
        """Build the term for a run (:class:`DistillContext`) with the given options; a
        term that needs the teacher's shapes, devices or head overrides this."""
        return cls(weight=weight, **options)

    @property
    def weight(self):
        """The weight of this iteration: the full weight but during the warm-up."""
        if self.warmup > 0 and self.iteration is not None and self.iteration < self.warmup:
            return self._weight * (max(self.iteration, 0) / float(self.warmup))
        return self._weight

    @weight.setter
    def weight(self, value):
        self._weight = value

    @property
    def needs_teacher(self):
        return TEACHER_MAPS in self.needs

    @property
    def needs_teacher_preds(self):
        return TEACHER_PREDICTIONS in self.needs

    def logged_names(self):
        """The names this term logs, in order."""
        return tuple(self.log_names) or (self.name,)

    def set_iteration(self, iteration):
        """Called by the loop before every iteration with the run's iteration count."""
        self.iteration = iteration

    def prepare(self, captures):
        """Work before the student step (e.g. critic updates). Returns loss NDArrays to
        log, by name; values are per-device lists summed over devices."""
        return {}

    def summarize(self, values):
        """Derived values to log, from this iteration's host-side ``values`` (e.g. the
        critics' Wasserstein estimate); updates ``values`` in place."""

    def loss(self, cap):
        """The term's loss on one device (mean over that device's images), recorded."""
        raise NotImplementedError

    def losses(self, captures):
        """Per-device losses whose sum over devices is the batch loss, recorded.

        The default weights each device's mean by its share of the batch; a term that
        normalises over the whole batch (e.g. by the positives of all devices, as
        ``SSDMultiBoxLoss`` does) overrides this instead of :meth:`loss`.
        """
        return [self.loss(cap) * cap.fraction for cap in captures]

    def description(self):
        """The term's settings, recorded in the JSON beside the student's params."""
        return {}

    def bind_records(self, student_shapes, teacher_shapes):
        """Told, once the run is built and before its Trainer is, the ``(C, H, W)`` of
        each recorded entry in the student and in the teacher (dicts entry -> shape), so
        the term can make what depends on them (e.g. connectors) or refuse them. The
        default does nothing."""

    def student_params(self):
        """Parameters the term adds to the student's side (e.g. a 1x1 connector), trained
        by the student's Trainer. Returns a list of Parameters."""
        return []

    def blocks(self):
        """Blocks the term owns and checkpoints (name -> Block)."""
        return {}

    def trainers(self):
        """Trainers the term owns and checkpoints (name -> Trainer)."""
        return {}


#: Registered terms: ``--distill`` name -> DistillTerm subclass, in registration order.
TERMS: Dict[str, type] = {}


def register_term(key):
    """Class decorator: make a :class:`DistillTerm` available as ``--distill key``."""
    def register(cls):
        if key in TERMS and TERMS[key] is not cls:
            raise GankdError('distillation term {!r} is registered twice'.format(key))
        cls.key = key
        TERMS[key] = cls
        return cls
    return register


def _load_builtin():
    # Importing the modules registers their terms.
    for module in ('adversarial', 'feature', 'sections', 'prediction'):
        importlib.import_module('.' + module, __package__)


def term_names():
    """The registered term names, in registration order."""
    _load_builtin()
    return tuple(TERMS)


def _cast_like(value, default, what):
    """A command-line string cast to the type of the option's default."""
    if not isinstance(value, str):
        return value
    try:
        if isinstance(default, bool) or default is None and value.lower() in (
                'true', 'false', 'none'):
            return {'true': True, 'false': False, 'none': None}[value.lower()]
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (KeyError, ValueError):
        raise GankdError('{} takes a {}, got {!r}'.format(
            what, type(default).__name__, value)) from None
    return value


def term_options(cls, given):
    """Check ``given`` (option -> value, values possibly strings) against the options a
    term class declares, cast to the types of their defaults."""
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
    unknown = sorted(set(given) - set(cls.options))
    if unknown:
        raise GankdError('distillation term {!r} has no option {!r}; its options: {}'.format(
            cls.key, unknown[0], ', '.join(cls.options) or 'none'))
    return {k: _cast_like(v, defaults.get(k), '{}.{}'.format(cls.key, k))
            for k, v in given.items()}


def parse_term_options(items):
    """``['soft.temperature=2', 'bounded.margin=0.1']`` -> ``{'soft': {'temperature': '2'},
    'bounded': {'margin': '0.1'}}`` (values are cast when the terms are built)."""
    out = {}
    for item in items or ():
        name, eq, value = item.partition('=')
        term, dot, option = name.strip().partition('.')
        if not eq or not dot or not term or not option:
            raise GankdError('--distill-options takes TERM.OPTION=VALUE, got {!r}'.format(item))
        out.setdefault(term, {})[option] = value.strip()
    return out


def build_terms(names, weights, context, options=None):
    """The distillation terms named on the command line, in the given order.

    Parameters
    ----------
    names : list of str
        Registered names (:data:`TERMS`), each at most once.
    weights : list of float
        One weight per name.
    context : DistillContext
    options : dict or None
        Term name -> {option: value}; values may be strings from the command line.

    Returns
    -------
    list of DistillTerm
    """
    known = term_names()
    names, weights = list(names), list(weights)
    options = dict(options or {})
    if len(names) != len(weights):
        raise GankdError('{} distillation terms ({}) but {} weights; give one weight per '
                         'term'.format(len(names), ','.join(names), len(weights)))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise GankdError('unknown distillation term {!r}; choose from {}'.format(
            unknown[0], ', '.join(known)))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise GankdError('distillation term {!r} is given more than once'.format(repeated[0]))
    stray = sorted(set(options) - set(names))
    if stray:
        raise GankdError('--distill-options names {!r}, which is not among --distill {}'.format(
            stray[0], ','.join(names)))
    try:
        weights = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise GankdError('distillation weights must be numbers, got {}'.format(
            weights)) from None
    bad = [w for w in weights if not math.isfinite(w)]
    if bad:
        raise GankdError('distillation weights must be finite, got {}'.format(bad[0]))
    headless = [n for n in names if TERMS[n].needs_teacher_head]
    if context.teacher_head is None and headless:
        raise GankdError('distillation terms {} need the teacher head'.format(
            ', '.join(headless)))
    return [TERMS[n].from_context(context, weight=w,
                                  **term_options(TERMS[n], options.get(n, {})))
            for n, w in zip(names, weights)]
