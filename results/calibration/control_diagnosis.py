"""Why a student trained through hint alone (the feature-transfer control) scores what it
does: how far its maps are from the teacher's, level by level, with its BatchNorm on
running statistics (as evaluated) and on each batch's (as trained); and its VOC07 mAP
both ways; and, with ``LAYERS`` (comma-separated, as ``hint.layers``), the same for
internal layers of the two backbones, on running statistics.

    OMP_NUM_THREADS=1 python results/calibration/control_diagnosis.py STUDENT_PARAMS \
        TEACHER_PARAMS DATASET_ROOT [LAYERS]

Relative error: mean((student map - teacher map)^2) / mean(teacher map^2) on 32 test
images, the teacher in inference mode as in training.
"""
import sys

import mxnet as mx
from mxnet import autograd

from gankd.data.voc import voc_datasets
from gankd.detectors.detector import load_detector
from gankd.detectors.family import family_of
from gankd.distill.recorders import parse_layers, recording_view
from gankd.train.loop import evaluate


class BatchStatistics(mx.gluon.Block):
    """A backbone whose BatchNorm uses the batch's statistics (training mode)."""

    def __init__(self, backbone):
        super(BatchStatistics, self).__init__()
        self.backbone = backbone

    def forward(self, x):
        with autograd.train_mode():
            return self.backbone(x)


def power(t):
    """Mean square of a map."""
    return float((t ** 2).mean().asscalar())


def relative_error(s, t):
    return power(s - t) / power(t)


def main(student_file, teacher_file, root, layers=''):
    meta, student, head = load_detector(student_file)
    _, teacher, _ = load_detector(teacher_file)
    family = family_of(meta)
    _, test, classes = voc_datasets(root)
    shape = family.data_shape(meta)
    x = next(iter(family.val_loader(test, shape, 32, 0)))[0].as_in_context(mx.cpu())
    t_maps, s_running, s_batch = teacher(x), student(x), BatchStatistics(student)(x)
    for i, t in enumerate(t_maps):
        print('level {} {}: teacher mean square {:.3f}; relative error {:.3f} (running '
              'statistics), {:.3f} (batch statistics)'.format(
                  i, tuple(t.shape[1:]), power(t), relative_error(s_running[i], t),
                  relative_error(s_batch[i], t)))
    layers = parse_layers(layers)
    if layers:
        s_rec = recording_view(student, layers)(x)[-len(layers):]
        t_rec = recording_view(teacher, layers)(x)[-len(layers):]
        for layer, s, t in zip(layers, s_rec, t_rec):
            print('layer {} {}: teacher mean square {:.3f}; relative error {:.3f} (running '
                  'statistics)'.format(layer, tuple(t.shape[1:]), power(t),
                                       relative_error(s, t)))
    for name, backbone in (('running', student), ('batch', BatchStatistics(student))):
        names, values = evaluate(family, backbone, head, family.val_loader(test, shape, 32, 0),
                                 [mx.cpu()], classes)
        print('VOC07 mAP, {} statistics: {:.1f}'.format(name, 100 * dict(zip(names, values))['mAP']))


if __name__ == '__main__':
    main(*sys.argv[1:5])
