"""CPU cost of SSD's training loader per batch, and of GluonCV's target generator per image
against per batch, on a dataset root (run under OMP_NUM_THREADS=1).

    python results/calibration/loader_cost.py DATASET_ROOT [NETWORK] [DATA_SHAPE] [BATCH]

Measured in the main process (``num_workers=0``), as process CPU time, so that a machine
busy with other work changes it little.
"""
import sys
import time

import mxnet as mx
import numpy as np
from gluoncv.model_zoo.ssd.target import SSDTargetGenerator

from gankd.data.voc import voc_datasets
from gankd.detectors.ssd.model import build_ssd, ssd_config
from gankd.detectors.ssd.transforms import _objects, train_loader


def main(root, network='resnet10_v1_0.25', data_shape=64, batch=32, batches=20):
    train, _, classes = voc_datasets(root)
    net = build_ssd(**ssd_config(network, data_shape, classes))
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, data_shape, data_shape)))
    loader = train_loader(train, anchors, data_shape, batch, augment='light')
    loader.set_epoch(0)
    batches_iter = iter(loader)
    next(batches_iter)
    tic = time.process_time()
    for _ in range(batches):
        next(batches_iter)
    print('loader, light augmentation: {:.0f} ms CPU per batch of {}'.format(
        1000 * (time.process_time() - tic) / batches, batch))

    generator = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2),
                                   negative_mining_ratio=-1)
    labels = [_objects(train[i][1]) for i in range(batch)]
    tic = time.process_time()
    for label in labels:
        generator(anchors, None, mx.nd.array(label[np.newaxis, :, :4]),
                  mx.nd.array(label[np.newaxis, :, 4:5]))
    mx.nd.waitall()
    per_image = 1000 * (time.process_time() - tic) / batch
    padded = np.full((batch, max(len(l) for l in labels), 5), -1, 'float32')
    for i, label in enumerate(labels):
        padded[i, :len(label)] = label[:, :5]
    tic = time.process_time()
    for _ in range(5):
        generator(anchors, None, mx.nd.array(padded[:, :, :4]), mx.nd.array(padded[:, :, 4:5]))
        mx.nd.waitall()
    print('targets: {:.1f} ms CPU per image one by one, {:.1f} ms per batch of {}'.format(
        per_image, 1000 * (time.process_time() - tic) / 5, batch))


if __name__ == '__main__':
    main(sys.argv[1], *(sys.argv[2:3]), *[int(a) for a in sys.argv[3:5]])
