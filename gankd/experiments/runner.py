"""Running a grid: each cell's training as a subprocess, then its evaluation.

Every training runs with ``--resume auto``: a crash in one cell is recorded as failed
without ending the grid, memory is given back after each cell, and an interrupted cell
continues from its last checkpoint. Each finished cell is evaluated (VOC07 mAP,
:func:`gankd.eval.params.evaluate_params`) and appended as one record to the results JSON
(:mod:`gankd.experiments.results_file`).
"""
import json
import os
import shlex
import signal
import subprocess
import time

from ..stopping import StopSignals, exit_code
from ..train.checkpoint import file_sha256
from .grid import plan
from .results_file import claim, done_records, load_results, retire_record, save_record

__all__ = ['run_cell', 'run_grid']


def _last_line(path):
    """The last non-empty line of a log: where the scripts put their one-line error."""
    try:
        with open(path, errors='replace') as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError:
        return ''
    return lines[-1] if lines else ''


def _train(cell, stop):
    """Run the cell's training as a subprocess, output to its log. Returns the exit code.

    The training runs in a session of its own, so a terminal's Ctrl-C reaches it only
    through ``stop`` (:class:`gankd.stopping.StopSignals`), which passes each SIGINT or
    SIGTERM on once; the training then saves a checkpoint and exits, and the grid stops
    after it (:class:`gankd.stopping.StopRequested`). The same command resumes the cell.
    """
    os.makedirs(os.path.dirname(cell.prefix), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(cell.log, 'a') as log:
        log.write('$ {}\n'.format(shlex.join(cell.command)))
        log.flush()
        proc = subprocess.Popen(cell.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        stop.child = proc
        try:
            code = proc.wait()
        finally:
            stop.child = None
    if code in (exit_code(signal.SIGINT), exit_code(signal.SIGTERM)):
        # Stopped by a signal sent to the training alone: stop the grid as well.
        stop.signum = stop.signum or code - 128
    stop.check()
    return code


def _evaluate(cell, grid):
    from ..train.run import contexts
    from ..eval.params import evaluate_params
    return evaluate_params(cell.params, grid.dataset_root, contexts(grid.gpus), batch_size=8)


def _record(cell, grid, error=None):
    """A failed record of ``cell``; :func:`run_cell` fills in what it achieves."""
    return {'key': cell.key, 'role': cell.role, 'student': cell.student,
            'teacher': cell.teacher, 'method': cell.method, 'seed': cell.seed,
            'status': 'failed', 'mAP': None, 'per_class': None, 'params': cell.params,
            'history': cell.history if cell.command else None,
            'log': cell.log if cell.command else None, 'dataset_root': grid.dataset_root,
            'select': grid.select if cell.role != 'teacher' else 'best',
            'family': grid.family, 'command': cell.command,
            'command_line': shlex.join(cell.command) if cell.command else None,
            'flags': cell.flags, 'returncode': None, 'error': error, 'seconds': 0.0,
            'finished_at': time.strftime('%Y-%m-%dT%H:%M:%S')}


def _loop_map(params):
    """The mAP the training loop's own validation gave these params (in the JSON beside
    them), or None."""
    from ..detectors.detector import meta_path
    try:
        with open(meta_path(params)) as f:
            value = json.load(f).get('mAP')
    except (OSError, ValueError):
        return None
    return None if value is None else float(value)


def run_cell(cell, grid, stop):
    """Train (unless given) and evaluate one cell; the record, ok or failed."""
    record = _record(cell, grid)
    tic = time.time()
    if cell.command:
        code = _train(cell, stop)
        record['returncode'] = code
        if code != 0:
            record['error'] = _last_line(cell.log) or 'exit code {}'.format(code)
    record['train_seconds'] = time.time() - tic
    if record['error'] is None and not os.path.exists(cell.params):
        record['error'] = 'no params file {} after training'.format(cell.params)
    if record['error'] is None:
        tic_eval = time.time()
        try:
            result = _evaluate(cell, grid)
        except Exception as err:  # a broken cell must not end the grid
            record['error'] = 'evaluation failed: {}: {}'.format(type(err).__name__, err)
        else:
            record.update(status='ok', mAP=result['mAP'], per_class=result['per_class'],
                          num_test_images=result['num_images'],
                          loop_mAP=_loop_map(cell.params),
                          params_sha256=file_sha256(cell.params))
        record['eval_seconds'] = time.time() - tic_eval
    record['seconds'] = time.time() - tic
    record['finished_at'] = time.strftime('%Y-%m-%dT%H:%M:%S')
    return record


def run_grid(grid, dry_run=False, echo=None):
    """Run every unfinished cell of ``grid``, recording each in ``grid.out``.

    Parameters
    ----------
    grid : Grid
    dry_run : bool
        Print the commands (and what is already done) without running anything.
    echo : callable, optional
        Receives the progress lines (default: print them).

    Returns
    -------
    dict
        Counts: ``cells``, ``skipped`` (done before), ``ok``, ``failed``.
    """
    # Flushed, so progress shows at once through a pipe (| tee) during hour-long cells.
    echo = echo or (lambda line: print(line, flush=True))
    cells = plan(grid)
    # --retire-changed: cells whose recipe changed run again, their old records kept.
    on_changed = ('refuse' if not grid.retire_changed else 'drop' if dry_run else 'retire')
    done = done_records(grid, cells, on_changed)
    failed_teachers = set()
    counts = {'cells': len(cells), 'skipped': 0, 'ok': 0, 'failed': 0}
    with StopSignals() as stop:
        for i, cell in enumerate(cells, 1):
            stop.check()
            _run_grid_cell(grid, cell, '[{}/{}] {}'.format(i, len(cells), cell.key), done,
                           failed_teachers, counts, dry_run, echo, stop)
    return counts


def _teacher_changed(cell, record):
    """Why the finished teacher ``record`` no longer describes the weights on disk, or None.

    The weights are not committed with the results: on another machine (or after params/
    was cleaned) they are missing and the teacher is trained again, from the same seed;
    a training on another CPU gives other weights. A record names its weights by their
    SHA-256; records from before that, by the loop's own mAP saved beside them.
    """
    if cell.role != 'teacher' or not cell.command:
        return None
    if not os.path.exists(cell.params):
        return '{} is missing'.format(cell.params)
    if record.get('params_sha256'):
        if record['params_sha256'] != file_sha256(cell.params):
            return 'the params on disk are another training (their SHA-256 differs)'
        return None
    loop, recorded = _loop_map(cell.params), record.get('loop_mAP')
    if loop is not None and recorded is not None and abs(loop - recorded) > 1e-9:
        return ("the params on disk are another training (the loop's mAP beside them "
                'is {:.4f}, the record\'s {:.4f})'.format(loop, recorded))
    return None


def _stamp_teacher(grid, cell, record):
    """Name, in a distilled cell's record, the teacher training it learnt from."""
    teacher = next((r for r in load_results(grid.out)['records']
                    if r.get('key') == cell.depends and r.get('status') == 'ok'), None)
    if teacher is not None:
        record['teacher_mAP'] = teacher['mAP']
        record['teacher_params_sha256'] = teacher.get('params_sha256')


def _run_grid_cell(grid, cell, head, done, failed_teachers, counts, dry_run, echo, stop):
    """One cell of :func:`run_grid`: skip it if done, else run and record it."""
    changed = _teacher_changed(cell, done[cell.key]) if cell.key in done else None
    if cell.key in done and changed is None:
        counts['skipped'] += 1
        echo('{}: done (mAP={:.4f}), skipped'.format(head, done[cell.key]['mAP']))
        return
    if dry_run:
        if changed:
            echo('{}: done, but {}; it would run again'.format(head, changed))
        echo('{}: {}'.format(head, shlex.join(cell.command) if cell.command
                             else 'given teacher ' + cell.params + ' (evaluated)'))
        return
    # Another process running the same grid may hold the cell: a student cell is then
    # left to it; a teacher is waited for, since the cells after it need its weights.
    with claim(cell.claim_file, wait=cell.role == 'teacher') as mine:
        if not mine:
            counts['skipped'] += 1
            echo('{}: running in another process, skipped'.format(head))
            return
        # Read again under the claim: another process may have finished the cell, or
        # retired and replaced a teacher's record, while this one waited or ran others.
        record = done_records(grid, [cell],
                              'retire' if grid.retire_changed else 'refuse').get(cell.key)
        if record is not None:
            changed = _teacher_changed(cell, record)
            if changed is None:
                counts['skipped'] += 1
                echo('{}: finished in another process, skipped'.format(head))
                return
            retire_record(grid.out, cell.key, changed)
            echo('{}: done, but {}; training it again (its old record is kept under '
                 '"retired")'.format(head, changed))
        if cell.depends in failed_teachers:
            record = _record(cell, grid, 'teacher {} failed; see its record'.format(
                cell.depends))
        else:
            echo('{}: running (log: {})'.format(head, cell.log if cell.command else '-'))
            record = run_cell(cell, grid, stop)
            if cell.depends:
                _stamp_teacher(grid, cell, record)
        save_record(grid.out, record, grid.name)
    if record['status'] == 'ok':
        counts['ok'] += 1
        echo('{}: mAP={:.4f} ({:.0f} s)'.format(head, record['mAP'], record['seconds']))
    else:
        counts['failed'] += 1
        if cell.role == 'teacher':
            failed_teachers.add(cell.key)
        echo('{}: FAILED: {}'.format(head, record['error']))
