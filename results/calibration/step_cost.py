"""Seconds per training step of plain SSDs, measured on real batches.

usage: python results/calibration/step_cost.py DATA NET:SHAPE:BATCH [...]
(four steps after one warm-up; e.g. resnet18_v1:64:32)."""
import time, sys, mxnet as mx
from gankd.train.run import build_plain_run, contexts
from gankd.data.voc import voc_datasets
from gankd.train.loop import train_step
tr, _, classes = voc_datasets(sys.argv[1])
for spec in sys.argv[2:]:
    net, shape, bs = spec.split(':'); shape, bs = int(shape), int(bs)
    run = build_plain_run(net, shape, classes, contexts(), optimizer='adam')
    it = iter(run.family.train_loader(tr, run, shape, bs, 0, augment='light'))
    batches = [next(it) for _ in range(4)]
    train_step(run, batches[0]); mx.nd.waitall()
    t = time.time()
    for b in batches: train_step(run, b)
    mx.nd.waitall(); print(net, shape, bs, 'step %.3f s' % ((time.time() - t) / 4), flush=True)
