"""The detector-family interface: what the loop, evaluation, saving and the terms ask of a
detector, so that one loop serves SSD today and two-stage detectors next.

A family knows how to build its detectors and cut them into a backbone (the part that
gives the feature maps distillation compares) and a head (everything after), how its
batches look, what its task loss is, and how to run a head on given maps with the same
candidates (anchors or sampled proposals) as another run of it. The loop itself never
looks inside a batch, a target or a prediction.

Families: ``'ssd'`` (:mod:`gankd.detectors.ssd`) and ``'faster_rcnn'``
(:mod:`gankd.detectors.faster_rcnn`).

Prediction-level terms see a family's training-mode outputs as a list of
:class:`Predictions`, one per stage (SSD has one; Faster R-CNN would have its RPN and its
R-CNN head), so a term such as Chen et al.'s soft labels is written once for both. A family
may subclass :class:`Predictions` to carry what its own loss and reference runs need
(Faster R-CNN: box-loss masks and sampled proposals); terms read only the fields here.
"""
import importlib
from dataclasses import dataclass
from typing import Any, Dict

from ..errors import GankdError

__all__ = ['Predictions', 'DetectorFamily', 'FAMILIES', 'register_family', 'get_family',
           'family_of']


@dataclass
class Predictions:
    """One stage's training-mode outputs over K candidates, with their targets.

    Attributes
    ----------
    stage : str
        The stage's name (``'ssd'``; ``'rpn'`` and ``'rcnn'`` for two-stage detectors).
    cls_logits : NDArray
        ``(B, K, num_classes + 1)`` class scores before the softmax; class 0 is background.
    box_preds : NDArray
        ``(B, K, 4)`` box regression outputs, in the space the family's box loss compares
        them to ``box_targets`` (SSD: GluonCV's normalised centre encoding).
    cls_targets : NDArray or None
        ``(B, K)`` class of each candidate: > 0 foreground, 0 background, < 0 ignored.
    box_targets : NDArray or None
        ``(B, K, 4)`` regression targets, meaningful where ``cls_targets > 0``.
    """
    stage: str
    cls_logits: Any
    box_preds: Any
    cls_targets: Any = None
    box_targets: Any = None

    def positives(self):
        """``(B, K)`` mask of the foreground candidates."""
        return self.cls_targets > 0


class DetectorFamily(object):
    """Base class of a detector family; every method is family-specific.

    Attributes
    ----------
    name : str
        The family's name, recorded as ``family`` in the JSON beside every params file.
    loss_names : tuple of str
        The names of :meth:`task_loss`'s parts, in the order they are logged.
    optimizer_options : dict
        Extra options of the detector's optimizer (Faster R-CNN: GluonCV's gradient
        clipping).
    critic_bn : bool or None
        Whether GAN-KD's critics have BatchNorm when ``--critic-bn`` is not given; None
        leaves it to the critic variant. A family trained with one image per device says
        False: BatchNorm over one image at the critic's 1x1 end turns every map into the
        same score, so the student would get no adversarial gradient.
    """
    name = None
    loss_names = ()
    optimizer_options = {}
    critic_bn = None

    # ----------------------------------------------------------------- building
    def config(self, network, data_shape, classes, dataset='voc', **options):
        """A JSON-serialisable description of a detector of ``network``; ``options`` are
        the family's own model settings (Faster R-CNN: ``roi_mode``, ``max_size``, ...),
        refused by a family that has none."""
        raise NotImplementedError

    def build(self, config, ctx, pretrained_base=False):
        """An initialised detector of ``config`` (random weights, or an ImageNet base)."""
        raise NotImplementedError

    def split(self, detector):
        """``(backbone, head)`` sharing ``detector``'s parameters; ``head(backbone(x))``
        is the detector."""
        raise NotImplementedError

    def load_teacher(self, config, params, ctx):
        """The detector of ``config`` with trained weights from ``params`` (None: the
        model zoo's file for the preset, which must be on disk)."""
        raise NotImplementedError

    def levels(self, backbone, data_shape, ctx):
        """``(C, H, W)`` per level of the maps ``backbone`` gives at ``data_shape``."""
        raise NotImplementedError

    def build_student(self, student, data_shape, teacher_levels, teacher, adapt='mismatch',
                      pretrained_base=False, ctx=None):
        """A student backbone on the teacher's levels (1x1 adapters where channels differ;
        a clear error where strides cannot match)."""
        raise NotImplementedError

    def student_head(self, config, teacher_head, mode, ctx):
        """The head a student's maps drive: ``'teacher'`` a trainable copy of the
        teacher's, ``'fresh'`` a new one, ``'frozen'`` a frozen copy."""
        raise NotImplementedError

    def compose(self, backbone, head):
        """The block saved as a student detector (``head(backbone(x))``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- describing
    def describe_plain(self, config):
        """The JSON saved beside a plain detector's params."""
        raise NotImplementedError

    def describe_student(self, student, teacher_config, teacher_levels, backbone, **extra):
        """The JSON saved beside a student detector's params."""
        raise NotImplementedError

    def from_description(self, meta, ctx):
        """``(saved block, backbone, head)`` of the detector ``meta`` describes, with random
        weights; the params file then fills them."""
        raise NotImplementedError

    def data_shape(self, meta):
        """The input size a saved detector was trained at, as the family's loaders take it
        (SSD: the square's side; Faster R-CNN: short and longest side)."""
        raise NotImplementedError

    def metric_shape(self, meta):
        """The input size :meth:`predict`'s boxes are in, for a metric that scales them
        back to each image (COCO); None when they already are in the image's pixels."""
        return self.data_shape(meta)

    def classes_of(self, meta):
        """The class names a saved detector detects, in id order."""
        raise NotImplementedError

    # --------------------------------------------------------------------- data
    def train_loader(self, dataset, run, data_shape, batch_size, num_workers=0, augment='ssd',
                     num_parts=1, part_index=0, seed=0, shuffle=True):
        """Batches for :meth:`unpack`, with the targets the task loss needs."""
        raise NotImplementedError

    def val_loader(self, dataset, data_shape, batch_size, num_workers=0):
        """Batches for :meth:`eval_inputs`, every image once, in order."""
        raise NotImplementedError

    def unpack(self, batch, ctx):
        """``(images per device, targets per device)``; targets are opaque to the loop."""
        raise NotImplementedError

    def batch_size(self, batch):
        """The number of images in a training batch (for the loop's speed)."""
        return batch[0].shape[0]

    # ----------------------------------------------------------------- training
    def forward_train(self, head, maps, targets):
        """The head's training-mode outputs on ``maps``: a list of :class:`Predictions`."""
        raise NotImplementedError

    def task_loss(self, predictions, targets):
        """The detection loss of every device's predictions.

        Returns
        -------
        (list of NDArray, dict of str -> list of NDArray)
            Per device the objective, normalised over the whole batch so the devices'
            objectives add up to the batch's; and per name of :attr:`loss_names` the
            per-device values to log.
        """
        raise NotImplementedError

    def reference_predictions(self, head, maps, like):
        """``head`` run on ``maps`` with the candidates and targets of ``like`` (the
        student's :class:`Predictions`), recorded when called under ``autograd.record``:
        the teacher's predictions for soft, bounded and crosshead, the student's maps
        through the teacher's head for crosshead and di."""
        raise NotImplementedError

    # ---------------------------------------------------------------- inference
    def set_nms(self, head, nms_thresh=None, nms_topk=None):
        """Non-maximum suppression settings of ``head`` at inference (None: the family's
        default)."""
        raise NotImplementedError

    def eval_inputs(self, batch, ctx):
        """Per device ``(inputs, gt_bboxes, gt_ids, gt_difficults or None)``; ``inputs`` is
        what :meth:`predict` takes (the loop does not look inside), and the ground truth
        is in the coordinates of :meth:`predict`'s boxes."""
        raise NotImplementedError

    def predict(self, backbone, head, x):
        """``(ids, scores, bboxes)`` of every image in ``x``, boxes inside the image."""
        raise NotImplementedError


#: Detector families by name.
FAMILIES: Dict[str, DetectorFamily] = {}


def register_family(family):
    """Make a :class:`DetectorFamily` (instance) known by its name."""
    FAMILIES[family.name] = family
    return family


def get_family(name):
    """The family called ``name``; GankdError naming the known ones otherwise."""
    _load_builtin()
    if name not in FAMILIES:
        raise GankdError('unknown detector family {!r}; known: {}'.format(
            name, ', '.join(sorted(FAMILIES))))
    return FAMILIES[name]


def family_of(meta):
    """The family of a saved detector's JSON (files from before families are SSDs)."""
    return get_family(meta.get('family', 'ssd'))


def _load_builtin():
    # Importing a family registers it; done lazily so this module imports no MXNet model.
    for name in ('.ssd', '.faster_rcnn'):
        importlib.import_module(name, __package__)
