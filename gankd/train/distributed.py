"""Where gradients meet: the devices of one machine, MXNet's parameter server, or Horovod.

GAN-KD has two optimisers (SGD or Adam for the student, Adam for the critics), so two
Trainers must aggregate gradients across devices and machines. One process can hold only
one ``dist_sync`` kvstore (a second one hangs at start-up), so with the parameter server
every Trainer gets its own range of keys on the one shared kvstore (:class:`KeySpace`).
"""
import json

import mxnet as mx
from mxnet import autograd, gluon
from mxnet.kvstore.base import KVStoreBase

from ..errors import GankdError

__all__ = ['KeySpace', 'Distribution', 'backward', 'sync_batchnorm', 'require_amp',
           'HOROVOD_HINT']

# Far more keys than any Trainer has parameters, yet small: MXNet's KVStoreDist picks a
# key's server as ``(key * 9973) % num_servers`` in C ``int``, which overflows from key
# 215,337 on.
KEYS_PER_TRAINER = 1 << 14

HOROVOD_HINT = ('--horovod needs Horovod built with MXNet support '
                '(HOROVOD_WITH_MXNET=1 pip install horovod), launched with horovodrun')


class KeySpace(KVStoreBase):
    """One Trainer's view of a shared kvstore: its integer keys shifted by ``offset``.

    The Trainer aggregates gradients through it (``update_on_kvstore=False``) and applies
    its own optimiser locally, so every worker holds the same optimiser state and can
    checkpoint it.

    Parameters
    ----------
    kvstore : mxnet.kvstore.KVStore
        The process's one kvstore (e.g. ``dist_sync``).
    offset : int
        Added to every key.
    """

    def __init__(self, kvstore, offset):
        self._kv, self._offset = kvstore, offset

    def broadcast(self, key, value, out, priority=0):
        self._kv.broadcast(key + self._offset, value, out, priority=priority)
        # The Trainer sends the first gradient of this key right after; on the worker it
        # goes out from the gradient's buffer and the initial value comes back into the
        # weight's, so MXNet's engine does not order the two. Were the gradient to reach
        # the server first, the server's value would already be the summed gradient and
        # the worker would take that as its weight. Wait until the weight is here.
        for array in (out if isinstance(out, (list, tuple)) else [out]):
            array.wait_to_read()

    def pushpull(self, key, value, out=None, priority=0):
        self._kv.pushpull(key + self._offset, value, out=out, priority=priority)

    @staticmethod
    def is_capable(capability):
        # The optimiser runs in the worker, never on the servers.
        return False

    @property
    def type(self):
        return self._kv.type

    @property
    def rank(self):
        return self._kv.rank

    @property
    def num_workers(self):
        return self._kv.num_workers


class Distribution(object):
    """How a run's Trainers aggregate gradients, and which part of the data a worker reads.

    Parameters
    ----------
    kvstore : str
        ``device`` or ``local`` (one machine, gradients summed over its devices), or a
        parameter-server type such as ``dist_sync`` / ``dist_device_sync`` (the process
        was started by ``mxnet/tools/launch.py`` or with ``DMLC_*`` variables).
    horovod : bool
        Aggregate with Horovod's allreduce instead (``horovodrun``).

    Attributes
    ----------
    rank, num_workers : int
        This worker's index and the number of workers (0 and 1 on one machine).
    """

    def __init__(self, kvstore='device', horovod=False):
        self.kvstore, self.horovod = kvstore, horovod
        self._kv, self._hvd, self._next_offset = None, None, 0
        self.rank, self.num_workers = 0, 1
        if horovod:
            try:
                import horovod.mxnet as hvd
            except ImportError:
                raise GankdError(HOROVOD_HINT) from None
            hvd.init()
            self._hvd, self.rank, self.num_workers = hvd, hvd.rank(), hvd.size()
        elif 'dist' in kvstore:
            if 'async' in kvstore:
                raise GankdError('--kvstore {}: asynchronous updates are not supported; use '
                                 'dist_sync or dist_device_sync'.format(kvstore))
            self._kv = mx.kv.create(kvstore)
            self.rank, self.num_workers = self._kv.rank, self._kv.num_workers
        elif kvstore not in ('device', 'local'):
            raise GankdError("--kvstore must be device, local, dist_sync or dist_device_sync, "
                             "got {!r}".format(kvstore))

    @property
    def is_chief(self):
        """Whether this worker validates and writes the deliverable params."""
        return self.rank == 0

    @property
    def local_rank(self):
        """This worker's index on its machine (Horovod), for choosing its GPU."""
        return self._hvd.local_rank() if self._hvd else 0

    def trainer(self, params, optimizer, optimizer_params):
        """A Trainer whose gradients are summed over devices and averaged over workers.

        Every loss of the loop is a mean over the worker's own batch, so summing over the
        devices of a worker is right and the workers' sums are averaged.

        Parameters
        ----------
        params : ParameterDict or list of Parameter
        optimizer : str
        optimizer_params : dict

        Returns
        -------
        gluon.Trainer
        """
        opts = dict(optimizer_params)
        if self._hvd is not None:
            if isinstance(params, (list, tuple)):
                params = {p.name: p for p in params}
            self._hvd.broadcast_parameters(params, root_rank=0)
            # Horovod's Trainer averages over workers itself.
            return self._hvd.DistributedTrainer(params, optimizer, opts)
        if self._kv is None:
            return gluon.Trainer(params, optimizer, opts, kvstore=self.kvstore)
        # Trainer.step(1) multiplies gradients by rescale_grad, so this averages them.
        opts['rescale_grad'] = opts.get('rescale_grad', 1.0) / self.num_workers
        keys = KeySpace(self._kv, self._next_offset)
        self._next_offset += KEYS_PER_TRAINER
        return gluon.Trainer(params, optimizer, opts, kvstore=keys, update_on_kvstore=False)

    def average(self, array):
        """``array`` averaged over workers (itself on one machine); the same key space is
        used by every call, so workers must call it in the same order."""
        if self.num_workers == 1:
            return array
        if self._hvd is not None:
            return self._hvd.allreduce(array, average=True, name='gankd_average')
        key = self._next_offset
        self._next_offset += 1
        out = array.copy()
        self._kv.init(key, mx.nd.zeros_like(array))
        self._kv.pushpull(key, array, out=out)
        return out / self.num_workers


def backward(losses, trainer, amp=None):
    """``autograd.backward(losses)``, with the loss scaling of ``mxnet.contrib.amp``
    when mixed precision is on."""
    if amp is None:
        autograd.backward(losses)
        return
    with amp.scale_loss(losses, trainer) as scaled:
        autograd.backward(scaled)


def sync_batchnorm(block, num_devices, key):
    """A copy of a :class:`gluon.SymbolBlock` whose BatchNorms are SyncBatchNorms.

    GluonCV's ``FeatureExpander`` turns the base network into a symbol and adds its own
    ``mx.sym.BatchNorm`` layers, so ``norm_layer=SyncBatchNorm`` cannot reach all of them;
    rewriting the graph does. The copy shares ``block``'s parameters.

    Parameters
    ----------
    block : gluon.SymbolBlock
        Takes one input named ``data``.
    num_devices : int
        Devices a batch is split over; every one of them must run each forward pass.
    key : str
        Prefix of the synchronisation keys, unique per network.

    Returns
    -------
    gluon.SymbolBlock
    """
    data = mx.sym.var('data')
    outputs = block(data)
    outputs = mx.sym.Group(list(outputs)) if isinstance(outputs, (list, tuple)) else outputs
    graph = json.loads(outputs.tojson())
    count = 0
    for node in graph['nodes']:
        if node['op'] != 'BatchNorm':
            continue
        attrs = node.get('attrs', {})
        if int(attrs.get('axis', 1)) != 1:
            raise GankdError('--syncbn: {} normalises axis {}, only axis 1 is supported'.format(
                node['name'], attrs['axis']))
        node['op'] = '_contrib_SyncBatchNorm'
        node['attrs'] = {k: v for k, v in attrs.items()
                         if k in ('eps', 'momentum', 'fix_gamma', 'use_global_stats')}
        node['attrs'].update(ndev=str(num_devices), key='{}_{}'.format(key, count))
        count += 1
    synced = mx.sym.load_json(json.dumps(graph))
    outs = [synced[i] for i in range(len(synced.list_outputs()))]
    # Same class as ``block`` (e.g. FeatureExpander, whose own __init__ only builds the
    # graph), so the copy can replace it as a child of the SSD.
    copy = gluon.SymbolBlock.__new__(type(block))
    gluon.SymbolBlock.__init__(copy, outs, data, params=block.collect_params())
    return copy


def require_amp(ctx):
    """Turn on mixed precision (``mxnet.contrib.amp``); GPUs only.

    Must run before the networks are built.
    """
    if any(c.device_type != 'gpu' for c in ctx):
        raise GankdError('--amp needs GPUs: mxnet.contrib.amp trains in float16 on CUDA '
                         'devices only; drop --amp on the CPU')
    from mxnet.contrib import amp
    amp.init()
    return amp
