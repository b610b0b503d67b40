"""Command-line plumbing shared by the scripts: GluonCV-style flags, clear errors.

Scripts only parse flags and call :func:`train_from_args`; the loop lives in
:mod:`gankd.train.loop`.
"""
import argparse
import os
import random
import sys

import numpy as np

from ..errors import GankdError

__all__ = ['training_parser', 'add_data_check_flag', 'split_list', 'train_from_args', 'main_guard',
           'seed_everything', 'gan_options', 'add_faster_rcnn_flags', 'model_options',
           'apply_recipe', 'FAMILY_CHOICES', 'RECIPES', 'DEFAULT_RECIPE']


def add_data_check_flag(parser):
    """``--skip-data-check``, for training and evaluation scripts alike."""
    parser.add_argument('--skip-data-check', action='store_true',
                        help='do not check at start-up that every image exists, decodes and '
                        'has the size its annotation gives (for trusted data)')


#: ``--critic`` and ``--critic-norm`` choices, as :data:`gankd.distill.critic_losses.CRITICS` and
#: :data:`gankd.distill.critics.CRITIC_NORMS` name them (spelled out: flags parse without MXNet).
CRITIC_CHOICES = ('wgan-clip', 'wgan-gp', 'hinge-sn', 'lsgan')
CRITIC_NORM_CHOICES = ('rms', 'channel', 'none')


#: Families the training scripts know (``training_parser``'s ``family``).
FAMILY_CHOICES = ('ssd', 'faster_rcnn')

#: ``--recipe``: named values of ``--distill`` and ``--adv-weight``, so that each setting
#: of the README's "which is which" is one flag (issue 12). Flags given explicitly win.
RECIPES = {
    # The setting that lost least to the plain student in mini-voc-res (results/README.md,
    # "The full trio"): GAN-KD's critics plus a cosine feature term.
    'best': {'distill': 'gan,cosine', 'adv_weight': 0.1},
    # GAN-KD alone, at the weight that lost least in mini-voc's ablation.
    'gankd': {'distill': 'gan', 'adv_weight': 0.1},
    # GAN-KD as published: the adversarial term alone, at weight 1.
    'published': {'distill': 'gan', 'adv_weight': 1.0},
}
#: Each family's default recipe. Faster R-CNN keeps GAN-KD alone: the composite was
#: measured on SSD only.
DEFAULT_RECIPE = {'ssd': 'best', 'faster_rcnn': 'gankd'}


def training_parser(description, distill, family='ssd'):
    """Flags of GluonCV's ``train_ssd.py`` (``family='ssd'``) or ``train_faster_rcnn.py``
    (``'faster_rcnn'``), plus the GAN-KD ones when ``distill``.

    The defaults follow the GluonCV script of the family (Faster R-CNN on VOC: 20 epochs,
    decays at 14 and 20, one image per device); ``args.family`` records the family.
    """
    if family not in FAMILY_CHOICES:
        raise GankdError('unknown detector family {!r}; known: {}'.format(
            family, ', '.join(FAMILY_CHOICES)))
    frcnn = family == 'faster_rcnn'
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(family=family)
    if frcnn:
        p.add_argument('--data-shape', type=int, default=600,
                       help="short side of the resized images (GluonCV's short)")
        p.add_argument('--batch-size', type=int, default=None,
                       help='total batch over all devices (default: one image per device)')
    else:
        p.add_argument('--data-shape', type=int, default=512, help='input size (square)')
        p.add_argument('--batch-size', type=int, default=32,
                       help='total batch over all devices')
    p.add_argument('--dataset', default='voc', choices=['voc', 'coco'], help='dataset format')
    p.add_argument('--dataset-root', default='data/synthetic_voc',
                   help='VOC devkit folder holding VOC2007/ (and VOC2012/), or a COCO folder '
                   'holding annotations/instances_{train,val}2017.json')
    p.add_argument('--gpus', default='', help="GPU ids, e.g. 0,1,2,3; '' trains on the CPU")
    p.add_argument('--cpu-contexts', type=int, default=1,
                   help='with --gpus "": number of CPU contexts (tests the multi-device path)')
    p.add_argument('--kvstore', default='device',
                   help='gradient aggregation: device or local (one machine), dist_sync or '
                   'dist_device_sync (several machines, started by mxnet/tools/launch.py)')
    p.add_argument('--horovod', action='store_true',
                   help='aggregate with Horovod instead of a kvstore (launch with horovodrun)')
    p.add_argument('--syncbn', action='store_true',
                   help='SyncBatchNorm across the devices of a worker (GPUs)')
    p.add_argument('--amp', action='store_true',
                   help='mixed precision with mxnet.contrib.amp (GPUs only)')
    p.add_argument('-j', '--num-workers', type=int, default=2, help='data loader processes')
    p.add_argument('--epochs', type=int, default=20 if frcnn else 240,
                   help='0 writes the initial weights as <prefix>_last.params (a random '
                   'teacher, for controls)')
    p.add_argument('--lr', type=float, default=1e-3, help='SGD learning rate')
    p.add_argument('--warmup-iters', type=int, default=0,
                   help='raise the learning rate linearly from 0 over the first N iterations')
    p.add_argument('--lr-decay', type=float, default=0.1)
    p.add_argument('--lr-decay-epoch', default='14,20' if frcnn else '160,200',
                   help='epochs at which lr decays')
    p.add_argument('--optimizer', default='sgd', choices=['sgd', 'adam'],
                   help="detection optimiser: SGD as train_ssd.py, or Adam for short runs")
    p.add_argument('--momentum', type=float, default=0.9)
    p.add_argument('--wd', type=float, default=5e-4)
    p.add_argument('--log-interval', type=int, default=100, help='batches between log lines')
    p.add_argument('--save-prefix', default=None, help='path prefix of saved files '
                   '(default params/<model name>)')
    p.add_argument('--save-interval', type=int, default=0,
                   help='also save params every N epochs (0: best and last only)')
    p.add_argument('--val-interval', type=int, default=1, help='validate every N epochs')
    p.add_argument('--seed', type=int, default=233)
    p.add_argument('--resume', default='', help="checkpoint folder, or 'auto' for the newest "
                   "intact checkpoint of --save-prefix")
    p.add_argument('--start-epoch', type=int, default=0)
    p.add_argument('--keep-checkpoints', type=int, default=3)
    p.add_argument('--checkpoint-interval', type=int, default=0,
                   help='also checkpoint every N iterations (0: at the end of each epoch only)')
    p.add_argument('--pretrained-base', action='store_true',
                   help="start the (student's) base network from GluonCV's ImageNet weights, "
                   "which must be in ~/.mxnet/models or $MXNET_HOME/models")
    p.add_argument('--progress', action='store_true', help='tqdm progress bars')
    if frcnn:
        add_faster_rcnn_flags(p)
    else:
        p.add_argument('--augment', default='ssd', choices=['ssd', 'light'],
                       help="GluonCV's SSD augmentation, or resize + flip only (short CPU runs)")
    add_data_check_flag(p)
    if distill:
        p.add_argument('--teacher', default='faster_rcnn_resnet101_v1d_voc' if frcnn else
                       'resnet50_v1', help='teacher: a base network{}'.format(
                           ', or a GluonCV model-zoo Faster R-CNN preset' if frcnn else ''))
        p.add_argument('--teacher-params', default=None,
                       help="teacher {} weights; default: GluonCV's model-zoo file if "
                       "cached".format('Faster R-CNN' if frcnn else 'SSD'))
        p.add_argument('--student', default='resnet50_v1b' if frcnn else 'mobilenet1.0',
                       help='student base network')
        p.add_argument('--gan-epochs', type=int, default=None,
                       help='epochs with the critics (default: all); then detection only')
        p.add_argument('--n-critic', type=int, default=1, help='critic steps per iteration')
        p.add_argument('--clip', type=float, default=0.03, help='critic weight clipping')
        p.add_argument('--recipe', default=DEFAULT_RECIPE[family], choices=list(RECIPES),
                       help='the values of --distill and --adv-weight when those are not '
                       'given: {}'.format('; '.join(
                           '{} = --distill {} --adv-weight {:g}'.format(
                               name, r['distill'], r['adv_weight'])
                           for name, r in RECIPES.items())))
        p.add_argument('--adv-weight', type=float, default=None,
                       help="weight of the GAN term (when --distill-weights is not given; "
                       "default: the recipe's); 1 is the published formula's, 0.1 did "
                       "better in mini-voc's ablation")
        p.add_argument('--distill', default=None,
                       help="comma-separated distillation terms: {} (gan is GAN-KD; "
                       "default: the recipe's)".format(', '.join(_term_names())))
        p.add_argument('--distill-weights', default=None,
                       help='one weight per --distill term, e.g. 1,0.5 (default: '
                       '--adv-weight for gan, 1 for the others)')
        p.add_argument('--distill-options', nargs='+', default=None, metavar='TERM.OPTION=VALUE',
                       help='options of the terms, e.g. soft.temperature=2 bounded.margin=0.1 '
                       'crosshead.box_weight=0.5 (see gankd/distill; the critic and hint '
                       'flags below set the same options of gan and hint)')
        p.add_argument('--lr-d', type=float, default=5e-4, help='critic Adam learning rate')
        p.add_argument('--critic', default='wgan-clip', choices=CRITIC_CHOICES,
                       help='critic variant: wgan-clip (published: WGAN, weight clipping), '
                       'wgan-gp (gradient penalty), hinge-sn (hinge loss, spectral norm), '
                       'lsgan (least squares)')
        p.add_argument('--gp-weight', type=float, default=10.0,
                       help='weight of the gradient penalty (--critic wgan-gp)')
        p.add_argument('--critic-norm', default='rms', choices=CRITIC_NORM_CHOICES,
                       help="critic inputs: divided by the teacher maps' RMS per level, "
                       "standardised per channel with the teacher's mean and std, or raw "
                       "(statistics measured on the first batch, kept in checkpoints)")
        p.add_argument('--critic-levels', default=None,
                       help='comma-separated levels (0 = largest map) that get a critic, '
                       'e.g. 0,1,2; the others get no adversarial loss (default: all)')
        p.add_argument('--critic-bn', action=argparse.BooleanOptionalAction, default=None,
                       help='BatchNorm inside the critics (DCGAN/WGAN reference critic); '
                       'default: {}on for wgan-clip and lsgan, off for wgan-gp and '
                       'hinge-sn'.format('off (one image per device leaves BatchNorm '
                                         'nothing to normalise over), else ' if frcnn else ''))
        p.add_argument('--adv-warmup', type=int, default=0,
                       help='raise the adversarial weight linearly from 0 over the first N '
                       'iterations (the critics train from the start)')
        p.add_argument('--adapt', default='mismatch', choices=['mismatch', 'all'],
                       help='1x1 adapters where channels differ, or on every level')
        p.add_argument('--det-weight', type=float, default=1.0,
                       help='weight of the detection loss while the distillation terms are '
                       'on (0: the student learns through the terms alone, as in the '
                       'feature-transfer control); fine-tuning epochs use 1')
        p.add_argument('--hint-connector', default='1x1', choices=['1x1', 'none'],
                       help="hint's adaptation layer: a trainable 1x1 conv per level (Chen "
                       "et al.), or none: L2 between the maps the head receives and the "
                       "teacher's")
        p.add_argument('--teacher-bn', default='running', choices=['running', 'batch'],
                       help="BatchNorm statistics of the frozen teacher when it gives its "
                       "maps: its running ones (inference, as MMRazor's teacher_norm_eval), "
                       "or each batch's own, as the student's in training, so that the "
                       "teacher's weights reproduce its targets exactly (its running "
                       "statistics stay untouched)")
        p.add_argument('--head', default='teacher', choices=['teacher', 'fresh', 'frozen'],
                       help="the head the student's maps drive: a trainable copy of the "
                       "teacher's, a newly initialised one, or the teacher's, frozen")
    elif frcnn:
        p.add_argument('--network', default='faster_rcnn_resnet50_v1b_voc',
                       help='a GluonCV model-zoo Faster R-CNN preset (its settings, BatchNorm '
                       'frozen for ImageNet weights), or a base network such as resnet18_v1b '
                       '(settings for small images, trained from scratch)')
    else:
        p.add_argument('--network', default='resnet50_v1', help='base network of the SSD')
    return p


def add_faster_rcnn_flags(p):
    """The Faster R-CNN model flags: resizing and the R-CNN head's RoI features."""
    p.add_argument('--max-size', type=int, default=None,
                   help="longest side of the resized images (GluonCV's max_size; default: "
                   "the preset's, 5/3 of the short side)")
    p.add_argument('--roi-mode', default='align', choices=['align', 'pool'],
                   help='RoIAlign or RoIPooling of the proposals (Table 3 has both rows)')
    p.add_argument('--num-sample', type=int, default=None,
                   help="proposals sampled per image for the R-CNN loss (default: the "
                   "preset's, 128 for model-zoo presets, 64 for base networks)")
    p.add_argument('--roi-size', type=int, default=None,
                   help="side of the pooled RoI features (default GluonCV's 14; 7 quarters "
                   "the R-CNN head's cost, for tiny CPU runs)")


def model_options(args):
    """The family's model settings from parsed flags (:func:`add_faster_rcnn_flags`)."""
    if getattr(args, 'family', 'ssd') != 'faster_rcnn':
        return {}
    options = dict(roi_mode=args.roi_mode, max_size=args.max_size, num_sample=args.num_sample,
                   roi_size=args.roi_size)
    return {k: v for k, v in options.items() if v is not None}


def _term_names():
    try:
        from ..distill.base import term_names
        return term_names()
    except ImportError:  # help without MXNet installed
        return ('gan', 'hint', 'cosine', 'lit', 'soft', 'bounded', 'crosshead', 'di')


def seed_everything(seed):
    import mxnet as mx
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def _check_args(args):
    for name in ('batch_size', 'data_shape'):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise GankdError('--{} must be positive, got {}'.format(
                name.replace('_', '-'), getattr(args, name)))
    if args.epochs < 0:
        raise GankdError('--epochs must be 0 (write the initial weights) or more, got {}'
                         .format(args.epochs))
    if getattr(args, 'n_critic', 1) < 1:
        raise GankdError('--n-critic must be at least 1')
    if getattr(args, 'clip', 1) <= 0:
        raise GankdError('--clip must be positive')
    if getattr(args, 'gp_weight', 0) < 0:
        raise GankdError('--gp-weight must be 0 or more')
    if getattr(args, 'adv_warmup', 0) < 0:
        raise GankdError('--adv-warmup must be 0 or more')
    if args.horovod and args.kvstore != 'device':
        raise GankdError('--horovod replaces the kvstore; drop --kvstore {}'.format(
            args.kvstore))


def split_list(text, flag, cast=str, required=False, unique=False):
    """``'a,b'`` -> ``['a', 'b']`` (blanks dropped), each item passed through ``cast``.

    ``flag`` names the option in the error; ``required`` refuses an empty list and
    ``unique`` a repeated item. Returns a list.
    """
    items = [t.strip() for t in str(text or '').split(',') if t.strip()]
    if required and not items:
        raise GankdError('{} is empty'.format(flag))
    try:
        items = [cast(t) for t in items]
    except ValueError:
        raise GankdError('{} takes comma-separated {}s, got {!r}'.format(
            flag, getattr(cast, '__name__', 'value'), text)) from None
    if unique and len(set(items)) != len(items):
        raise GankdError('{} lists a value twice: {!r}'.format(flag, text))
    return items


def apply_recipe(args):
    """Give ``--distill`` and ``--adv-weight``, where not set, the values of ``--recipe``
    (:data:`RECIPES`); returns ``args``."""
    for name, value in RECIPES[args.recipe].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def gan_options(args):
    """Keyword arguments of :func:`gankd.train.run.build_gankd_run` for the critics, from
    parsed distillation flags (``--adv-weight`` from ``--recipe`` if not given)."""
    apply_recipe(args)
    levels = (None if args.critic_levels is None else
              split_list(args.critic_levels, '--critic-levels', int))
    return dict(lr_d=args.lr_d, clip=args.clip, n_critic=args.n_critic,
                adv_weight=args.adv_weight, critic=args.critic, gp_weight=args.gp_weight,
                critic_norm=args.critic_norm, critic_bn=args.critic_bn,
                critic_levels=levels, adv_warmup=args.adv_warmup)


def _datasets(args):
    """``(train_set, val_set, classes, seconds)`` of ``--dataset``: seconds the start-up
    check took (None when skipped)."""
    from ..data.voc import voc_datasets
    from ..data.check import check_dataset
    if args.dataset == 'coco':
        from ..data.coco import coco_datasets
        train_set, val_set, classes = coco_datasets(args.dataset_root)
    else:
        train_set, val_set, classes = voc_datasets(args.dataset_root)
    seconds = None
    if not args.skip_data_check:
        seconds = check_dataset(train_set) + check_dataset(val_set)
    return train_set, val_set, classes, seconds


def train_from_args(args, distill, family=None):
    """Build datasets and the run from parsed flags, then :func:`gankd.train.loop.fit`.

    ``family``: the detector family (default: ``args.family``, which
    :func:`training_parser` sets, else ``'ssd'``).
    """
    from ..data.check import describe_dataset
    from ..distill.base import parse_term_options
    from ..train.distributed import Distribution, require_amp
    from ..train.loop import TrainConfig, fit, setup_logging
    from ..train.run import build_gankd_run, build_plain_run, contexts

    family = family or getattr(args, 'family', 'ssd')
    if distill:
        apply_recipe(args)
    _check_args(args)
    dist = Distribution(args.kvstore, args.horovod)
    # Every worker starts from the same weights (the seed), then reads its own shard.
    seed_everything(args.seed)
    ctx = contexts(args.gpus, args.cpu_contexts)
    if args.horovod and ctx[0].device_type == 'gpu':
        import mxnet as mx
        ctx = [mx.gpu(dist.local_rank)]  # Horovod: one process per GPU
    if args.batch_size is None:
        args.batch_size = len(ctx)  # GluonCV's Faster R-CNN: one image per device
    if args.batch_size % len(ctx):
        raise GankdError('--batch-size {} does not split evenly over {} devices'.format(
            args.batch_size, len(ctx)))
    amp = require_amp(ctx) if args.amp else None
    train_set, val_set, classes, check_seconds = _datasets(args)
    common = dict(dataset=args.dataset, lr=args.lr, momentum=args.momentum, wd=args.wd,
                  optimizer=args.optimizer, pretrained_base=args.pretrained_base,
                  distribution=dist, syncbn=args.syncbn, amp=amp, family=family,
                  model_options=model_options(args))
    if distill:
        weights = (None if args.distill_weights is None else
                   split_list(args.distill_weights, '--distill-weights', float))
        run = build_gankd_run(args.teacher, args.student, args.data_shape, classes, ctx,
                              teacher_params=args.teacher_params, adapt=args.adapt,
                              head=args.head, distill=split_list(args.distill, '--distill'),
                              distill_weights=weights, det_weight=args.det_weight,
                              hint_connector=args.hint_connector,
                              teacher_bn=args.teacher_bn,
                              distill_options=parse_term_options(args.distill_options),
                              **gan_options(args), **common)
    else:
        run = build_plain_run(args.network, args.data_shape, classes, ctx, **common)
    # Recorded beside every params file, so eval_voc.py needs no flags.
    run.meta['dataset_root'] = os.path.abspath(args.dataset_root)
    # The input size as the family's loaders and metrics take it (Faster R-CNN: short
    # and longest side; its boxes are scaled back to each image).
    shape = run.family.data_shape(run.meta)
    metric = None
    if args.dataset == 'coco':
        from ..eval.metrics import COCOMetric
        metric = COCOMetric(val_set, run.family.metric_shape(run.meta))
    prefix = args.save_prefix or 'params/' + run.meta['name']
    if dist.rank > 0:
        # Workers hold identical weights; each keeps its own checkpoints (so no shared file
        # system is needed to resume), and only worker 0 validates and writes the results.
        prefix = '{}_worker{}'.format(prefix, dist.rank)
    logger = setup_logging(prefix)
    logger.info('{}: {}'.format(run.meta['name'], vars(args)))
    logger.info('Training set: {}; validation set: {}; images without objects train as '
                'background. {}'.format(
                    describe_dataset(train_set), describe_dataset(val_set),
                    'Data check skipped.' if check_seconds is None else
                    'Data check passed in {:.1f} s.'.format(check_seconds)))
    if dist.num_workers > 1:
        logger.info('worker {} of {}: reads 1/{} of the training set'.format(
            dist.rank, dist.num_workers, dist.num_workers))
    train_data = run.family.train_loader(train_set, run, shape, args.batch_size,
                                         args.num_workers,
                                         augment=getattr(args, 'augment', None),
                                         num_parts=dist.num_workers, part_index=dist.rank,
                                         seed=args.seed)
    val_data = (run.family.val_loader(val_set, shape, args.batch_size, args.num_workers)
                if dist.is_chief else None)
    cfg = TrainConfig(epochs=args.epochs, gan_epochs=getattr(args, 'gan_epochs', None),
                      lr=args.lr, lr_decay=args.lr_decay, lr_decay_epoch=args.lr_decay_epoch,
                      log_interval=args.log_interval, save_prefix=prefix,
                      save_interval=args.save_interval, val_interval=args.val_interval,
                      start_epoch=args.start_epoch, resume=args.resume,
                      keep_checkpoints=args.keep_checkpoints, seed=args.seed,
                      checkpoint_interval=args.checkpoint_interval,
                      warmup_iters=args.warmup_iters,
                      progress=args.progress)
    return fit(run, train_data, val_data, cfg, logger, metric=metric)


def main_guard(main):
    """Run ``main()``; a GankdError becomes one line on stderr and exit code 2; training
    stopped by SIGINT or SIGTERM exits with 130 or 143, as the shell reports a process
    those signals end."""
    from ..train.loop import TrainingInterrupted
    from ..stopping import StopRequested, exit_code
    try:
        return main()
    except (TrainingInterrupted, StopRequested) as err:
        # A grid stops between cells (StopRequested), training after a checkpoint.
        print('{}: {}{}'.format(sys.argv[0].rsplit('/', 1)[-1], err, '' if isinstance(
            err, TrainingInterrupted) else '; run the same command to resume'),
            file=sys.stderr)
        sys.exit(exit_code(err.signum))
    except GankdError as err:
        print('{}: error: {}'.format(sys.argv[0].rsplit('/', 1)[-1], err), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
