"""The results JSON of a grid: one record per cell, rewritten atomically.

A re-run reads it to skip the cells whose record says ``ok``
(:func:`done_records`), so an interrupted grid resumes where it stopped.
"""
import contextlib
import fcntl
import json
import os
import tempfile
import time

from ..errors import GankdError

__all__ = ['RESULTS_FORMAT', 'load_results', 'save_record', 'retire_record', 'name_unnamed',
           'done_records', 'claim']

RESULTS_FORMAT = 'gankd-reproduce-results/1'


def load_results(path):
    """The results JSON as ``{'format', 'name', 'records': [...]}`` (empty if missing)."""
    if not os.path.exists(path):
        return {'format': RESULTS_FORMAT, 'records': []}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise GankdError('cannot read results {}: {}'.format(path, err))
    if not isinstance(data, dict) or not isinstance(data.get('records'), list):
        raise GankdError('{} is not a results file of scripts/reproduce.py (no "records" list)'
                         .format(path))
    return data


def _write_atomic(path, data):
    """Write JSON to a temporary file beside ``path``, then rename it over ``path``: a
    crash mid-write leaves the old file, never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=folder)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=1)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on ``path + '.lock'``: grids run side by side (say, one
    per core, ``--students`` split between them) then add their records to one file
    without losing each other's."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.abspath(path) + '.lock', 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def claim(path, wait=False):
    """Claim a cell for this process while the block runs; yields whether it got it.

    An exclusive lock on the file ``path``: processes running the same grid (one per
    core or GPU) then never train one cell twice. With ``wait`` the process waits for a
    claim held by another one (a teacher its students need) instead of giving up. The
    operating system drops the lock when its process dies, so a killed grid leaves no
    stale claim behind.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'a') as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def save_record(path, record, name=None):
    """Add ``record`` to the results at ``path``, replacing one with the same key.

    The file is read again under a lock first, so records written meanwhile, by this
    grid or another one sharing the file, are kept.
    """
    with _locked(path):
        data = load_results(path)
        records = [r for r in data['records'] if r.get('key') != record['key']]
        records.append(record)
        data['records'] = records
        if name:
            data['name'] = name
        _write_atomic(path, data)


def name_unnamed(records, teacher):
    """Write the teacher training ``teacher`` (a teacher's record) into each distilled
    record of that teacher that names none (``teacher_mAP``, ``teacher_params_sha256``):
    records from before trainings were named learnt from the training recorded then."""
    for r in records:
        if r.get('role') == 'distill' and r.get('teacher') == teacher.get('teacher') and \
                'teacher_mAP' not in r:
            r['teacher_mAP'] = teacher['mAP']
            r['teacher_params_sha256'] = teacher.get('params_sha256')


def retire_record(path, key, reason):
    """Move the teacher record ``key`` from ``records`` to the file's ``retired`` list.

    A teacher's weights are not committed: a grid resumed on another machine trains it
    again, from the same seed, and another CPU gives other weights. The cells distilled
    from the earlier training keep their numbers, so its record is kept, out of the
    tables, with why it was retired, and the cells that do not name their teacher
    training yet are given this one (:func:`name_unnamed`).
    """
    with _locked(path):
        data = load_results(path)
        old = [r for r in data['records'] if r.get('key') == key]
        data['records'] = [r for r in data['records'] if r.get('key') != key]
        for r in old:
            name_unnamed(data['records'], r)
        data.setdefault('retired', []).extend(
            dict(r, retired_at=time.strftime('%Y-%m-%dT%H:%M:%S'), retired_because=reason)
            for r in old)
        _write_atomic(path, data)
    return old


def done_records(grid, cells):
    """Records of cells already finished, by key; refuses records made with other flags,
    since mixing them would put two experiments in one table."""
    done = {}
    for r in load_results(grid.out)['records']:
        if r.get('status') == 'ok':
            done[r['key']] = r
    for cell in cells:
        r = done.get(cell.key)
        if r is not None and r.get('flags') != cell.flags and (
                cell.legacy_flags is None or r.get('flags') != cell.legacy_flags):
            raise GankdError(
                '{} holds cell {} run with other flags ({}); use another --out and '
                '--work-dir, or delete that record'.format(
                    grid.out, cell.key, ' '.join(r.get('flags') or [])))
        if r is not None and cell.role != 'teacher' and r.get('select') != grid.select:
            raise GankdError('{} holds cell {} evaluated from its {} params, not --select {}; '
                             'use another --out'.format(grid.out, cell.key, r.get('select'),
                                                        grid.select))
    return done
