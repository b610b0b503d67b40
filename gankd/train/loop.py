"""The training loop: one step, one epoch, evaluation, and fitting with checkpoints.

One loop serves every detector family and every distillation term. It asks the run's
:class:`gankd.detectors.family.DetectorFamily` for everything family-specific (how a
batch is put on the devices, the head's training outputs, the task loss, predictions for
evaluation) and gives the terms (:class:`gankd.distill.DistillTerm`) only what they
declare they need. A :class:`Run` without terms is plain detector training.
"""
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional

import mxnet as mx
from mxnet import autograd
from tqdm import tqdm
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

from .checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from ..detectors.detector import save_detector
from ..distill.base import TEACHER_MAPS, TEACHER_PREDICTIONS, Captures
from .distributed import backward
from .teacher import teacher_maps
from ..errors import DivergenceError, GankdError
from ..stopping import StopRequested, StopSignals, signal_name

__all__ = ['Run', 'TrainConfig', 'train_step', 'train_one_epoch', 'evaluate', 'fit',
           'learning_rate', 'TrainingInterrupted', 'log_order']


class TrainingInterrupted(GankdError):
    """Training stopped by SIGINT or SIGTERM after saving a checkpoint; ``signum`` says
    which (the scripts exit with 128 + signum)."""

    def __init__(self, message, signum):
        super(TrainingInterrupted, self).__init__(message)
        self.signum = signum


@dataclass
class Run:
    """Everything one training run trains and reads.

    Attributes
    ----------
    ctx : list of mxnet.Context
    family : gankd.detectors.family.DetectorFamily
    backbone : HybridBlock
        The trained backbone (student, or the detector's own features).
    head : HybridBlock
        The trained head.
    trainer : gluon.Trainer
        Steps backbone and head parameters.
    save_block : Block
        The block whose params are the deliverable (the detector, or a student Detector).
    meta : dict
        Architecture description written beside every params file.
    classes : list of str
    teacher : HybridBlock or None
        The frozen teacher backbone.
    terms : list of DistillTerm
    teacher_head : HybridBlock or None
        The teacher's own head, frozen (terms that compare predictions use it).
    amp : module or None
        ``mxnet.contrib.amp`` when training in mixed precision.
    det_weight : float
        Weight of the detection loss in the student's objective while the distillation
        terms are on (``--det-weight``; 0 trains through the terms alone, the
        feature-transfer control). Fine-tuning epochs always use 1.
    teacher_bn : {'running', 'batch'}
        The BatchNorm statistics the teacher gives its maps with (``--teacher-bn``; see
        :mod:`gankd.train.teacher`).
    records : tuple of str
        Internal layers recorded in both backbones for the terms that compare them
        (:mod:`gankd.distill.recorders`); empty without such terms.
    student_recorder, teacher_recorder : SymbolBlock or None
        Recording views of ``backbone`` and ``teacher`` (their parameters), which return
        the maps followed by the ``records``.
    """
    ctx: List[Any]
    family: Any
    backbone: Any
    head: Any
    trainer: Any
    save_block: Any
    meta: dict
    classes: List[str]
    teacher: Any = None
    terms: List[Any] = field(default_factory=list)
    teacher_head: Any = None
    amp: Any = None
    det_weight: float = 1.0
    teacher_bn: str = 'running'
    records: tuple = ()
    student_recorder: Any = None
    teacher_recorder: Any = None

    def student_outputs(self, x):
        """The student's maps of ``x`` and its recorded layers (layer -> NDArray)."""
        if not self.records:
            return list(self.backbone(x)), {}
        return self._split(self.student_recorder(x))

    def teacher_outputs(self, x):
        """The frozen teacher's maps of ``x`` (no graph) and its recorded layers."""
        if not self.records:
            return list(teacher_maps(self.teacher, x, self.teacher_bn)), {}
        return self._split(teacher_maps(self.teacher_recorder, x, self.teacher_bn))

    def _split(self, outputs):
        outputs = list(outputs)
        first = len(outputs) - len(self.records)
        return outputs[:first], dict(zip(self.records, outputs[first:]))

    def blocks(self):
        blocks = {'model': self.save_block}
        for term in self.terms:
            blocks.update(term.blocks())
        return blocks

    def trainers(self):
        trainers = {'trainer': self.trainer}
        for term in self.terms:
            trainers.update(term.trainers())
        return trainers


@dataclass
class TrainConfig:
    """The loop's settings; names and defaults follow GluonCV's ``train_ssd.py``."""
    epochs: int = 240
    gan_epochs: Optional[int] = None
    lr: float = 1e-3
    lr_decay: float = 0.1
    lr_decay_epoch: str = '160,200'
    log_interval: int = 100
    save_prefix: str = 'params/run'
    save_interval: int = 0
    val_interval: int = 1
    start_epoch: int = 0
    resume: str = ''
    keep_checkpoints: int = 3
    checkpoint_interval: int = 0
    nms_thresh: Optional[float] = None  # None: the family's (SSD 0.45, Faster R-CNN 0.3)
    nms_topk: Optional[int] = None
    seed: int = 233
    progress: bool = False
    warmup_iters: int = 0


def learning_rate(cfg, epoch):
    """Step schedule of ``train_ssd.py``: ``lr * lr_decay ** (decay epochs passed)``."""
    steps = [int(e) for e in str(cfg.lr_decay_epoch).split(',') if e.strip()]
    return cfg.lr * cfg.lr_decay ** sum(epoch >= s for s in steps)


def _scalars_to_host(named):
    """One device-to-host copy for all logged scalars of an iteration."""
    names = list(named)
    if not names:
        return {}
    cpu = mx.cpu()
    stacked = mx.nd.concat(*[named[n].reshape((1,)).as_in_context(cpu) for n in names], dim=0)
    return dict(zip(names, stacked.asnumpy().tolist()))


class MeanMeter(object):
    """Running means of named scalars."""

    def __init__(self):
        self.sums, self.counts = {}, {}

    def update(self, values):
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self):
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def reset(self):
        self.sums, self.counts = {}, {}


def _format(values):
    return ', '.join('{}={:.4f}'.format(k, v) for k, v in values.items())


def log_order(run):
    """The order of logged names: each term's own (in ``--distill`` order), then the
    family's task losses; names nobody declared follow in the order they appeared."""
    names = [n for t in run.terms for n in t.logged_names()] + list(run.family.loss_names)
    return list(dict.fromkeys(names))


def _ordered(values, order):
    keys = [k for k in order if k in values] + [k for k in values if k not in order]
    return {k: values[k] for k in keys}


def train_step(run, batch, distill=True):
    """One iteration: the terms' preparation (critic steps), then one student step.
    Returns host-side losses.

    Parameters
    ----------
    run : Run
    batch : tuple of NDArray
        A batch of the family's training loader, on the CPU.
    distill : bool
        Whether the distillation terms are on (first stage) or off (fine-tuning).

    Returns
    -------
    dict of str -> float
    """
    family = run.family
    xs, targets = family.unpack(batch, run.ctx)
    total = float(sum(x.shape[0] for x in xs))
    terms = run.terms if distill else []
    needs = {n for t in terms for n in t.needs}
    # The teacher runs outside autograd.record: no graph, no gradients.
    # Recorded layers are compared with the teacher's: they need it too.
    teacher_needed = TEACHER_MAPS in needs or any(t.records for t in terms)
    t_outs = ([run.teacher_outputs(x) for x in xs]
              if teacher_needed else [(None, {})] * len(xs))
    with autograd.record():
        s_outs = [run.student_outputs(x) for x in xs]
    caps = [Captures(s[0], t[0], x.shape[0] / total, targets=tg, family=family,
                     student_records=s[1], teacher_records=t[1])
            for s, t, x, tg in zip(s_outs, t_outs, xs, targets)]
    logged = {}
    for term in terms:
        for name, per_device in term.prepare(caps).items():
            logged[name] = sum(v.as_in_context(run.ctx[0]) for v in per_device)
    # A second record scope continues the student graph recorded above, so the student
    # forward runs once per iteration although the critics were updated in between.
    with autograd.record():
        for cap in caps:
            cap.predictions = family.forward_train(run.head, cap.student_maps, cap.targets)
        if TEACHER_PREDICTIONS in needs:
            # The frozen head's raw (training-mode) outputs on the student's candidates,
            # without a graph.
            with autograd.pause(train_mode=True):
                for cap in caps:
                    cap.teacher_predictions = family.reference_predictions(
                        run.teacher_head, cap.teacher_maps, cap.predictions)
        objectives, task_logged = family.task_loss([c.predictions for c in caps],
                                                   [c.targets for c in caps])
        det_weight = run.det_weight if terms else 1.0
        objectives = [det_weight * o for o in objectives]
        for term in terms:
            parts = [term.weight * l for l in term.losses(caps)]
            objectives = [o + p for o, p in zip(objectives, parts)]
            logged[term.name] = sum(p.as_in_context(run.ctx[0]) for p in parts)
    for name, per_device in task_logged.items():
        logged[name] = sum(v.as_in_context(run.ctx[0]) for v in per_device)
    values = _scalars_to_host(logged)
    for term in terms:
        term.summarize(values)
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        # Raised before the student's update, so its weights stay the last good ones.
        raise DivergenceError('{} became {}'.format(bad[0], values[bad[0]]))
    backward(objectives, run.trainer, run.amp)
    # The task loss and the terms are already normalised over the whole batch. In
    # fine-tuning the terms are off, so their connectors (hint's 1x1 convs) get no
    # gradient: they stay as they are instead of failing as stale.
    run.trainer.step(1, ignore_stale_grad=not distill)
    return values


def train_one_epoch(run, loader, epoch, distill=True, log_interval=100, logger=None,
                    start_iteration=0, on_iteration=None, progress=False, stop=None,
                    warmup=None):
    """Train one epoch. Returns ``(mean losses, iterations done, samples/sec)``.

    ``on_iteration(iteration)`` is called after every iteration (checkpointing hooks);
    ``progress`` shows a tqdm bar; ``stop`` (:class:`gankd.stopping.StopSignals`) is
    checked before the first iteration and after every one, and raises
    :class:`gankd.stopping.StopRequested` once a stop signal has arrived. ``warmup``
    ``(iterations, lr)``: the student's learning rate rises linearly to ``lr`` over the
    run's first ``iterations`` iterations (counted from the run's start, so a resumed
    run continues the same ramp). Every term is told the same count before each
    iteration (:meth:`gankd.distill.base.DistillTerm.set_iteration`, e.g. for
    ``--adv-warmup``).
    """
    logger = logger or logging.getLogger('gankd')
    if stop is not None:
        stop.check()
    order = log_order(run)
    shown = run.family.loss_names[0]
    epoch_meter, interval_meter = MeanMeter(), MeanMeter()
    tic = btic = time.time()
    samples = interval_samples = 0
    iteration = start_iteration
    bar = tqdm(loader, desc='epoch {}'.format(epoch), leave=False, disable=not progress)
    for i, batch in enumerate(bar):
        if warmup and warmup[0] and iteration <= warmup[0]:
            run.trainer.set_learning_rate(warmup[1] * min(1.0, (iteration + 1) / warmup[0]))
        for term in run.terms:
            term.set_iteration(iteration)  # e.g. --adv-warmup ramps from the run's count
        try:
            values = train_step(run, batch, distill)
        except DivergenceError as err:
            raise DivergenceError('{} at iteration {} (epoch {}, batch {})'.format(
                err, iteration, epoch, i)) from None
        iteration += 1
        epoch_meter.update(values)
        interval_meter.update(values)
        images = run.family.batch_size(batch)
        samples += images
        interval_samples += images
        if log_interval and (i + 1) % log_interval == 0:
            speed = interval_samples / max(time.time() - btic, 1e-9)
            logger.info('[Epoch {}][Batch {}], Speed: {:.3f} samples/sec, {}'.format(
                epoch, i, speed, _format(_ordered(interval_meter.means(), order))))
            interval_meter.reset()
            btic, interval_samples = time.time(), 0
        if on_iteration is not None:
            on_iteration(iteration)
        bar.set_postfix({shown: '{:.3f}'.format(values[shown])}, refresh=False)
        if stop is not None:
            stop.check()
    return (_ordered(epoch_meter.means(), order), iteration,
            samples / max(time.time() - tic, 1e-9))


def evaluate(family, backbone, head, loader, ctx, classes, nms_thresh=None, nms_topk=None,
             progress=False, metric=None, stop=None):
    """Detection metric over every image of ``loader`` (in order, none skipped).

    Parameters
    ----------
    family : gankd.detectors.family.DetectorFamily
        Puts a batch on the devices and predicts (:meth:`eval_inputs`, :meth:`predict`).
    metric : GluonCV-style detection metric or None
        ``update(bboxes, ids, scores, gt_bboxes, gt_ids, gt_difficults)`` / ``get()``,
        whose last value is the headline number; None is VOC07 11-point mAP at IoU 0.5.
        It is reset before use.
    stop : gankd.stopping.StopSignals or None
        Checked before every batch (raises ``StopRequested`` after a stop signal).

    Returns
    -------
    (list of str, list of float)
        Names (for VOC: class names then ``'mAP'``) and values.
    """
    if metric is None:
        metric = VOC07MApMetric(iou_thresh=0.5, class_names=classes)
    metric.reset()
    mx.nd.waitall()  # predictions use the last step's BatchNorm statistics (checkpoint.py)
    family.set_nms(head, nms_thresh=nms_thresh, nms_topk=nms_topk)
    for batch in tqdm(loader, desc='evaluate', leave=False, disable=not progress):
        if stop is not None:
            stop.check()
        det_bboxes, det_ids, det_scores, gt_bboxes, gt_ids, gt_difficults = [], [], [], [], [], []
        for x, boxes, ids, difficults in family.eval_inputs(batch, ctx):
            pred_ids, pred_scores, pred_bboxes = family.predict(backbone, head, x)
            det_ids.append(pred_ids)
            det_scores.append(pred_scores)
            det_bboxes.append(pred_bboxes)
            gt_bboxes.append(boxes)
            gt_ids.append(ids)
            gt_difficults.append(difficults)
        metric.update(det_bboxes, det_ids, det_scores, gt_bboxes, gt_ids, gt_difficults)
    return metric.get()


def setup_logging(save_prefix, name='gankd'):
    """Console and file logging as ``train_ssd.py`` does (``<prefix>_train.log``)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    os.makedirs(os.path.dirname(os.path.abspath(save_prefix)), exist_ok=True)
    fmt = logging.Formatter('%(message)s')
    for handler in (logging.StreamHandler(), logging.FileHandler(save_prefix + '_train.log')):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def fit(run, train_data, val_data, cfg, logger=None, metric=None):
    """Train for ``cfg.epochs`` epochs: distillation for the first ``cfg.gan_epochs``,
    then detection fine-tuning; validate, save params, checkpoint every epoch.

    SIGINT and SIGTERM stop training cleanly (:class:`gankd.stopping.StopSignals`, in
    force only while this runs): the last finished iteration is checkpointed and
    :class:`TrainingInterrupted` raised, naming the signal.

    ``metric`` is passed to :func:`evaluate` (None: VOC07 mAP); its last value decides
    the best params.

    Returns
    -------
    dict
        ``best_map``, ``best_params``, ``last_params`` and ``history``.
    """
    with StopSignals() as stop:
        return _fit(run, train_data, val_data, cfg, logger, metric, stop)


def _terms_text(weights):
    """``{'gan': 0.1, 'cosine': 1.0}`` -> ``'gan 0.1, cosine 1'``; None -> ``'none'``."""
    return ', '.join('{} {:g}'.format(k, v) for k, v in weights.items()) if weights else 'none'


def _fit(run, train_data, val_data, cfg, logger, metric, stop):
    logger = logger or setup_logging(cfg.save_prefix)
    gan_epochs = cfg.epochs if cfg.gan_epochs is None else cfg.gan_epochs
    # ``batch``: batches of ``epoch`` already trained (a mid-epoch checkpoint).
    state = {'epoch': cfg.start_epoch, 'iteration': 0, 'batch': 0, 'best_map': -1.0,
             'best_params': None}
    if cfg.resume:
        path = resolve_resume(cfg.resume, cfg.save_prefix, log=logger.info)
        if path is None:
            logger.info('--resume auto: no checkpoint of {} yet, starting fresh'.format(
                cfg.save_prefix))
        else:
            loaded = load_checkpoint(path, run.blocks(), run.trainers(), run.ctx)
            # Terms without parameters (cosine, soft, ...) leave the checkpoint's blocks
            # alike, so only the recorded terms tell another --distill (or --recipe) apart.
            if 'distill' in loaded and loaded['distill'] != run.meta.get('distill'):
                raise GankdError('checkpoint {} was made with the distillation terms {} but '
                                 'this run has {}; resume with the flags it was made with '
                                 '(the same --distill, --distill-weights and --recipe)'.format(
                                     path, _terms_text(loaded['distill']),
                                     _terms_text(run.meta.get('distill'))))
            # Checkpoints made before --teacher-bn existed were all on running statistics.
            if run.teacher is not None and loaded.get('teacher_bn', 'running') != run.teacher_bn:
                raise GankdError('checkpoint {} was made with --teacher-bn {} but this run has '
                                 '--teacher-bn {}; resume with the flags it was made with'
                                 .format(path, loaded.get('teacher_bn', 'running'),
                                         run.teacher_bn))
            state.update(loaded)
            logger.info('Resumed from {} at epoch {}, iteration {}'.format(
                path, state['epoch'], state['iteration']))
    history_file = cfg.save_prefix + '_history.jsonl'

    saved = {}

    def checkpoint(epoch, iteration, batch=0):
        key = (epoch, iteration, batch)
        if saved.get('key') != key:  # a stop right after a save does not write it again
            saved['path'] = save_checkpoint(
                cfg.save_prefix, run.blocks(), run.trainers(), dict(
                    epoch=epoch, iteration=iteration, batch=batch,
                    best_map=state['best_map'], best_params=state['best_params'],
                    distill=run.meta.get('distill'), teacher_bn=run.teacher_bn),
                keep=cfg.keep_checkpoints)
            saved['key'] = key
        return saved['path']

    if os.path.exists(history_file):
        # Epochs after the checkpoint are trained again; drop their old records.
        with open(history_file) as f:
            kept = [l for l in f if l.strip() and json.loads(l)['epoch'] < state['epoch']]
        with open(history_file, 'w') as f:
            f.writelines(kept)

    counter = {'iteration': state['iteration'], 'batch': state.get('batch', 0)}
    for epoch in range(state['epoch'], cfg.epochs):
        try:
            record = _train_and_validate(run, train_data, val_data, cfg, epoch,
                                         gan_epochs, counter, state, logger, checkpoint,
                                         metric, stop)
            counter['batch'] = 0
        except StopRequested as req:
            # Between iterations or evaluation batches: keep the weights of the last
            # finished iteration; on resume this epoch goes on after that batch (or,
            # stopped while validating, validates again).
            path = checkpoint(epoch, counter['iteration'], counter['batch'])
            logger.info('Interrupted by {} at epoch {}, iteration {}; checkpoint saved to '
                        '{}'.format(signal_name(req.signum), epoch, counter['iteration'],
                                    path))
            raise TrainingInterrupted(
                'stopped by {}; checkpoint saved to {}; resume with --resume auto'.format(
                    signal_name(req.signum), path), req.signum) from None
        except DivergenceError as err:
            good = resolve_resume('auto', cfg.save_prefix, log=logger.info)
            logger.info('Stopped: {}. Last good checkpoint: {}'.format(
                err, good or 'none yet'))
            raise
        with open(history_file, 'a') as f:
            f.write(json.dumps(record) + '\n')
        checkpoint(epoch + 1, counter['iteration'])
    if cfg.epochs == 0:
        # --epochs 0: the initial weights are the result (a random teacher, for controls).
        save_detector(cfg.save_prefix + '_last.params', run.save_block,
                      dict(run.meta, epoch=-1, mAP=None))
        logger.info('--epochs 0: saved the initial weights to {}_last.params'.format(
            cfg.save_prefix))
    elif state['best_params'] is None:
        logger.info('Finished; no validation ran. Last params: {}_last.params'.format(
            cfg.save_prefix))
    else:
        logger.info('Best mAP={:.4f}: {}'.format(state['best_map'], state['best_params']))
    return {'best_map': state['best_map'], 'best_params': state['best_params'],
            'last_params': cfg.save_prefix + '_last.params'}


def _train_and_validate(run, train_data, val_data, cfg, epoch, gan_epochs, counter, state,
                        logger, checkpoint, metric=None, stop=None):
    """One epoch of :func:`fit`: train, validate, save params. Returns the history record."""
    lr = learning_rate(cfg, epoch)
    run.trainer.set_learning_rate(lr)
    distill = bool(run.terms) and epoch < gan_epochs
    mx.random.seed(cfg.seed + epoch)  # MXNet's RNG state cannot be saved; reseed per epoch
    skip, start = counter['batch'], counter['iteration']
    if hasattr(train_data, 'set_epoch'):
        # This epoch's order and augmentation (TrainLoader); after a mid-epoch checkpoint,
        # the batches not yet trained.
        train_data.set_epoch(epoch, skip)
    elif skip:
        logger.info('epoch {} restarts from its first batch: this loader cannot skip the {} '
                    'already trained'.format(epoch, skip))
        skip = 0
    tic = time.time()

    def on_iteration(iteration):
        counter['iteration'] = iteration
        counter['batch'] = skip + iteration - start
        # Mid-epoch checkpoints bound what a crash (even SIGKILL) can lose.
        if cfg.checkpoint_interval and iteration % cfg.checkpoint_interval == 0:
            checkpoint(epoch, iteration, counter['batch'])

    losses, _, speed = train_one_epoch(
        run, train_data, epoch, distill, cfg.log_interval, logger, counter['iteration'],
        on_iteration=on_iteration, progress=cfg.progress, stop=stop,
        warmup=(cfg.warmup_iters, lr))
    record = {'epoch': epoch, 'lr': lr, 'stage': 'distill' if distill else 'detection',
              'iteration': counter['iteration'], 'speed': speed, 'time': time.time() - tic}
    if skip:
        record['resumed_after_batch'] = skip  # the losses are those of the rest of the epoch
    record.update(losses)
    logger.info('[Epoch {}] Training cost: {:.3f}, Speed: {:.3f} samples/sec, lr={:g}, {}'
                .format(epoch, record['time'], speed, lr, _format(losses)))
    last_epoch = epoch + 1 == cfg.epochs
    if val_data is not None and ((epoch + 1) % max(cfg.val_interval, 1) == 0 or last_epoch):
        names, values = evaluate(run.family, run.backbone, run.head, val_data, run.ctx,
                                 run.classes, cfg.nms_thresh, cfg.nms_topk,
                                 progress=cfg.progress, metric=metric, stop=stop)
        logger.info('[Epoch {}] Validation: \n{}'.format(epoch, '\n'.join(
            '{}={:.4f}'.format(k, v) for k, v in zip(names, values))))
        current = float(values[-1])
        record['mAP'] = current
        if current > state['best_map']:
            best_file = cfg.save_prefix + '_best.params'
            save_detector(best_file, run.save_block, dict(run.meta, mAP=current, epoch=epoch))
            state['best_map'], state['best_params'] = current, best_file
        if cfg.save_interval and (epoch + 1) % cfg.save_interval == 0:
            save_detector('{}_{:04d}_{:.4f}.params'.format(cfg.save_prefix, epoch, current),
                          run.save_block, dict(run.meta, mAP=current, epoch=epoch))
    save_detector(cfg.save_prefix + '_last.params', run.save_block,
                  dict(run.meta, epoch=epoch, mAP=record.get('mAP')))
    return record
