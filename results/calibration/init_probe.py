"""Calibration probe: plain SSD with another initialisation of the backbone's convolutions.
usage: initprobe.py MODE NETWORK DATA PREFIX EPOCHS   (MODE: depthwise | in | none)"""
import sys
import mxnet as mx
from gankd.cli import seed_everything
from gankd.data.voc import voc_datasets
from gankd.train.loop import TrainConfig, fit
from gankd.train.run import build_plain_run
mode, net_name, data, prefix, epochs = sys.argv[1:6]
seed_everything(233)
train_set, val_set, classes = voc_datasets(data)
run = build_plain_run(net_name, 64, classes, [mx.cpu()], optimizer='adam')
fan_in = mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)
n = 0
for name, p in run.save_block.features.collect_params().items():
    if name.endswith('weight') and len(p.shape) == 4 and (
            mode == 'in' or (mode == 'depthwise' and p.shape[1] == 1)):
        p.initialize(fan_in, ctx=[mx.cpu()], force_reinit=True)
        n += 1
print('reinitialised', n, 'conv weights')
train = run.family.train_loader(train_set, run, 64, 32, 1, augment='light', seed=233)
val = run.family.val_loader(val_set, 64, 32, 1)
cfg = TrainConfig(epochs=int(epochs), lr=1e-3, lr_decay_epoch='99', save_prefix=prefix,
                  log_interval=125)
print(fit(run, train, val, cfg)['best_map'])
