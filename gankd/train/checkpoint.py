"""Training checkpoints that survive interruption.

A checkpoint is a folder ``<prefix>_ckpt/epochEEEE-iterIIIIIIII`` holding the params of
every trained block, the state of every Trainer, and ``state.json`` (epoch, iteration,
best mAP, RNG states and a SHA-256 of each file). It is written under a temporary name
and renamed when complete, so a crash never leaves a half-written checkpoint under a
real name; a damaged one is detected by its checksums and skipped by ``--resume auto``.
"""
import glob
import hashlib
import json
import os
import random
import shutil

import mxnet as mx
import numpy as np

from ..errors import GankdError

__all__ = ['save_checkpoint', 'load_checkpoint', 'find_checkpoints', 'resolve_resume',
           'file_sha256']


def file_sha256(path):
    """The SHA-256 of a file, read in chunks (params files are tens of MB)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_dir(prefix):
    """The folder holding a run's checkpoints."""
    return prefix + '_ckpt'


def save_checkpoint(prefix, blocks, trainers, state, keep=3):
    """Write a checkpoint atomically and keep only the newest ``keep``.

    Parameters
    ----------
    prefix : str
        The run's ``--save-prefix``.
    blocks : dict of str -> Block
    trainers : dict of str -> gluon.Trainer
    state : dict
        JSON-serialisable; must hold ``epoch`` and ``iteration``.
    keep : int

    Returns
    -------
    str
        The checkpoint folder.
    """
    root = checkpoint_dir(prefix)
    os.makedirs(root, exist_ok=True)
    name = 'epoch{:04d}-iter{:08d}'.format(state['epoch'], state['iteration'])
    final = os.path.join(root, name)
    tmp = os.path.join(root, '.tmp-' + name)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    # Training leaves BatchNorm's running statistics to be written after the step returns,
    # in operations that saving does not wait for: without this, a mid-epoch checkpoint
    # held the statistics of one batch earlier than its weights (seen when a run resumed
    # from it did not continue as the uninterrupted run).
    mx.nd.waitall()
    for key, block in blocks.items():
        block.save_parameters(os.path.join(tmp, key + '.params'))
    for key, trainer in trainers.items():
        trainer.save_states(os.path.join(tmp, key + '.states'))
    state = dict(state)
    state['numpy_rng'] = _numpy_state()
    state['python_rng'] = repr(random.getstate())
    state['sha256'] = {f: file_sha256(os.path.join(tmp, f)) for f in sorted(os.listdir(tmp))}
    with open(os.path.join(tmp, 'state.json'), 'w') as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    for old in find_checkpoints(prefix)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _numpy_state():
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def find_checkpoints(prefix):
    """Complete checkpoint folders of a run, oldest first."""
    return sorted(p for p in glob.glob(os.path.join(checkpoint_dir(prefix), 'epoch*-iter*'))
                  if os.path.isdir(p))


def verify_checkpoint(path):
    """Return the checkpoint's state, or raise GankdError if it is incomplete or damaged."""
    state_file = os.path.join(path, 'state.json')
    try:
        with open(state_file) as f:
            state = json.load(f)
    except (OSError, ValueError) as err:
        raise GankdError('checkpoint {} is damaged: state.json unreadable ({})'.format(
            path, err)) from None
    for fname, digest in state.get('sha256', {}).items():
        fpath = os.path.join(path, fname)
        if not os.path.isfile(fpath) or file_sha256(fpath) != digest:
            raise GankdError('checkpoint {} is damaged: {} is missing or does not match its '
                             'checksum'.format(path, fname))
    return state


def resolve_resume(resume, prefix, log=print):
    """The checkpoint folder to resume from: ``'auto'`` picks the newest intact one of
    this run (falling back past damaged ones), a path must itself be intact. Returns
    None when ``'auto'`` finds nothing."""
    if resume != 'auto':
        if not os.path.isdir(resume):
            raise GankdError('--resume {}: no such checkpoint folder'.format(resume))
        verify_checkpoint(resume)
        return resume
    for path in reversed(find_checkpoints(prefix)):
        try:
            verify_checkpoint(path)
            return path
        except GankdError as err:
            log('{}; trying an older checkpoint'.format(err))
    return None


def load_checkpoint(path, blocks, trainers, ctx):
    """Restore blocks, trainers and RNG states from a checkpoint; return its state."""
    from ..detectors.ssd.model import load_params_strict
    state = verify_checkpoint(path)
    saved = {os.path.splitext(f)[0] for f in os.listdir(path) if f.endswith('.params')}
    if saved != set(blocks):
        # E.g. resuming with another --distill: the hint connectors or critics differ.
        raise GankdError('checkpoint {} holds {} but this run trains {}; resume with the flags '
                         'it was made with (e.g. the same --distill)'.format(
                             path, ', '.join(sorted(saved)), ', '.join(sorted(blocks))))
    for key, block in blocks.items():
        load_params_strict(block, os.path.join(path, key + '.params'), ctx=ctx,
                           what='checkpointed ' + key)
    for key, trainer in trainers.items():
        states = os.path.join(path, key + '.states')
        if not os.path.isfile(states):
            raise GankdError('checkpoint {} has no {} trainer state'.format(path, key))
        trainer.load_states(states)
    if 'numpy_rng' in state:
        kind, keys, pos, has_gauss, cached = state['numpy_rng']
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if 'python_rng' in state:
        import ast
        random.setstate(ast.literal_eval(state['python_rng']))
    return state
