"""Loaders every family shares: a reproducible, resumable epoch order with per-sample
augmentation seeds, and worker processes that leave stop signals to the trainer."""
import multiprocessing.pool
import random

import numpy as np
from mxnet import gluon
from mxnet.gluon.data import dataloader as mx_dataloader
from mxnet.util import is_np_array, is_np_shape

from ..stopping import ignore_stop_signals

__all__ = ['EpochSampler', 'SeededAugmentation', 'QuietWorkersLoader', 'TrainLoader']


class EpochSampler(gluon.data.Sampler):
    """One epoch's training order, the same in every process and after a resume.

    The order is a permutation seeded by ``(seed, epoch)``. With ``num_parts`` workers,
    worker ``part_index`` takes every ``num_parts``-th sample of it, so the workers' shares
    are disjoint and equal (dist_sync needs the same number of iterations everywhere).
    Each sample also gets its own augmentation seed, and the sampler yields
    ``(augmentation seed, index)`` keys for :class:`SeededAugmentation`.

    Parameters
    ----------
    length : int
        Size of the dataset.
    seed : int
        The run's ``--seed``.
    shuffle : bool
        False keeps the dataset's order (augmentation seeds still differ per epoch).
    num_parts, part_index : int
        Distributed training: this worker's share.
    """

    def __init__(self, length, seed=0, shuffle=True, num_parts=1, part_index=0):
        self._length, self._seed, self._shuffle = length, int(seed), shuffle
        self._num_parts, self._part_index = num_parts, part_index
        self._share = length // num_parts
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch, skip=0):
        """Draw the next iteration's order for ``epoch``, leaving out its first ``skip``
        samples (already trained before a mid-epoch checkpoint)."""
        self.epoch, self.skip = int(epoch), int(skip)

    def __iter__(self):
        rng = np.random.RandomState([self._seed, self.epoch])
        order = rng.permutation(self._length) if self._shuffle else np.arange(self._length)
        seeds = rng.randint(0, 2 ** 31 - 1, size=self._length)
        share = slice(self._part_index, self._share * self._num_parts, self._num_parts)
        keys = list(zip(seeds[share].tolist(), order[share].tolist()))
        return iter(keys[self.skip:])

    def __len__(self):
        return max(self._share - self.skip, 0)


class SeededAugmentation(gluon.data.Dataset):
    """``transform(*dataset[index])`` for a key ``(seed, index)``, with Python's and
    NumPy's global generators (which GluonCV's augmentations draw from) seeded first.

    Loader worker processes draw from generators of their own (Python's is reseeded at
    every fork), so without this neither a run's augmentation could be repeated nor a
    resumed run continue as the uninterrupted one would have.
    """

    def __init__(self, dataset, transform):
        self._dataset, self._transform = dataset, transform

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, key):
        seed, index = key
        random.seed(seed)
        np.random.seed(seed)
        return self._transform(*self._dataset[index])


def _quiet_worker_init(*args):
    ignore_stop_signals()
    mx_dataloader._worker_initializer(*args)


class _QuietWorkerPool(multiprocessing.pool.Pool):
    """A process pool whose workers ignore SIGINT and SIGTERM. Since they ignore
    SIGTERM, which is how ``Pool.terminate`` stops workers, this pool stops its own with
    SIGKILL: they hold nothing that needs cleaning up."""

    @staticmethod
    def Process(ctx, *args, **kwds):
        proc = ctx.Process(*args, **kwds)
        proc.terminate = proc.kill
        return proc


class QuietWorkersLoader(gluon.data.DataLoader):
    """GluonCV's (MXNet's) ``DataLoader`` whose worker processes ignore SIGINT and
    SIGTERM.

    A terminal's Ctrl-C reaches every process of the foreground group, and a scheduler's
    SIGTERM may too. The training process stops cleanly on either
    (:mod:`gankd.stopping`); its loader workers must neither print a
    ``KeyboardInterrupt`` traceback nor die while the last batches are still being read,
    so they ignore both and are stopped by the loader itself. Arguments are those of
    ``DataLoader``.
    """

    def __init__(self, *args, num_workers=0, prefetch=None, **kwargs):
        # MXNet 1.9.1 (a fixed, final release) builds its process pool inside __init__;
        # build the loader without one, then give it ours, as its __init__ would.
        super(QuietWorkersLoader, self).__init__(*args, num_workers=0, **kwargs)
        if num_workers > 0:
            self._num_workers = num_workers
            if kwargs.get('batchify_fn') is None:
                self._batchify_fn = mx_dataloader.default_mp_batchify_fn
            self._prefetch = max(0, int(prefetch) if prefetch is not None else 2 * num_workers)
            self._worker_pool = _QuietWorkerPool(
                num_workers, initializer=_quiet_worker_init,
                initargs=[self._dataset, is_np_shape(), is_np_array()])

    @property
    def worker_pids(self):
        """Process ids of the worker processes (empty with ``num_workers=0``)."""
        if self._worker_pool is None:
            return []
        return [p.pid for p in self._worker_pool._pool]


class TrainLoader(QuietWorkersLoader):
    """Batches of an :class:`EpochSampler` order through :class:`SeededAugmentation`; call
    :meth:`set_epoch` before each epoch. An epoch's last partial batch is left out (its
    images come in other epochs' orders), so every full epoch has the same number of
    batches."""

    def __init__(self, dataset, transform, batch_size, batchify_fn, seed=0, shuffle=True,
                 num_parts=1, part_index=0, num_workers=0):
        self.sampler = EpochSampler(len(dataset), seed, shuffle, num_parts, part_index)
        self.batch_size = batch_size
        super(TrainLoader, self).__init__(
            SeededAugmentation(dataset, transform), batch_size, sampler=self.sampler,
            last_batch='discard', batchify_fn=batchify_fn, num_workers=num_workers)

    def set_epoch(self, epoch, skip_batches=0):
        """The batches of ``epoch`` after its first ``skip_batches``."""
        self.sampler.set_epoch(epoch, skip_batches * self.batch_size)
