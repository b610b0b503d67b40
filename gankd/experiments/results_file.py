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
           'flags_changed', 'set_aside_old_run', 'done_records', 'claim']

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
    """Move the record ``key`` from ``records`` to the file's ``retired`` list, with why.

    Two things retire a record. A teacher's weights are not committed: a grid resumed on
    another machine trains it again, from the same seed, and another CPU gives other
    weights; the cells distilled from the earlier training keep their numbers, and those
    that do not name their teacher training yet are given this one
    (:func:`name_unnamed`). And a preset's recipe may change for a cell (a calibration
    finds its seeds too noisy): ``reproduce.py --retire-changed`` runs the cell again
    and keeps the record of the old recipe. Either way it stays in the file, out of the
    tables, and the report lists it.
    """
    with _locked(path):
        data = load_results(path)
        old = [r for r in data['records'] if r.get('key') == key]
        data['records'] = [r for r in data['records'] if r.get('key') != key]
        for r in old:
            if r.get('role') == 'teacher':
                name_unnamed(data['records'], r)
        data.setdefault('retired', []).extend(
            dict(r, retired_at=time.strftime('%Y-%m-%dT%H:%M:%S'), retired_because=reason)
            for r in old)
        _write_atomic(path, data)
    return old


def flags_changed(old, new):
    """``'--warmup-iters 250 added'``: what separates two flag lists, for a reason."""
    def pairs(flags):
        out, i = [], 0
        while i < len(flags):
            if i + 1 < len(flags) and not str(flags[i + 1]).startswith('--'):
                out.append('{} {}'.format(flags[i], flags[i + 1]))
                i += 2
            else:
                out.append(str(flags[i]))
                i += 1
        return out
    before, after = pairs(old or []), pairs(new or [])
    parts = ['{} added'.format(p) for p in after if p not in before] + \
        ['{} dropped'.format(p) for p in before if p not in after]
    return ', '.join(parts) or 'the same flags in another order'


def set_aside_old_run(prefix, record):
    """Rename the folder of a retired record's run to ``<folder>.retired-<time>``, so that
    ``--resume auto`` does not continue the old recipe's checkpoints under the new one.

    Only a folder none of whose files is newer than the record is the old run; one
    written to since (the new recipe's run, started by hand or by another process) is
    left alone. A record without a readable time cannot tell them apart: its folder is
    set aside, since continuing the wrong run would be worse than starting again.
    Returns the new name, or None.
    """
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        return None
    try:
        finished = time.mktime(time.strptime(record.get('finished_at') or '',
                                             '%Y-%m-%dT%H:%M:%S'))
    except ValueError:
        finished = None
    newest = max((os.path.getmtime(os.path.join(root, f))
                  for root, _, files in os.walk(folder) for f in files), default=0.0)
    if finished is not None and newest > finished + 5.0:
        return None
    aside = '{}.retired-{}'.format(folder, time.strftime('%Y%m%dT%H%M%S'))
    os.rename(folder, aside)
    return aside


def done_records(grid, cells, on_changed='refuse'):
    """Records of cells already finished, by key.

    A record made with other flags than its cell's would put two experiments in one
    table: ``on_changed`` 'refuse' raises, 'retire' moves it to ``retired``
    (:func:`retire_record`) and sets its run's folder aside (:func:`set_aside_old_run`)
    so the cell runs again under the new recipe, and 'drop' leaves it out of the answer
    and touches nothing (a dry run of 'retire').
    """
    done = {}
    for r in load_results(grid.out)['records']:
        if r.get('status') == 'ok':
            done[r['key']] = r
    for cell in cells:
        r = done.get(cell.key)
        if r is not None and r.get('flags') != cell.flags and (
                cell.legacy_flags is None or r.get('flags') != cell.legacy_flags):
            if on_changed in ('retire', 'drop'):
                if on_changed == 'retire':
                    retire_record(grid.out, cell.key, 'the recipe changed: {}'.format(
                        flags_changed(r.get('flags'), cell.flags)))
                    set_aside_old_run(cell.prefix, r)
                del done[cell.key]
                continue
            raise GankdError(
                '{} holds cell {} run with other flags ({}); use another --out and '
                '--work-dir, or --retire-changed to run it again and keep that record '
                'under "retired"'.format(
                    grid.out, cell.key, ' '.join(r.get('flags') or [])))
        if r is not None and cell.role != 'teacher' and r.get('select') != grid.select:
            raise GankdError('{} holds cell {} evaluated from its {} params, not --select {}; '
                             'use another --out'.format(grid.out, cell.key, r.get('select'),
                                                        grid.select))
    return done
