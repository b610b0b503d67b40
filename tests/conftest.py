"""Shared fixtures: a tiny synthetic VOC dataset and a teacher params file on disk."""
import os
import sys
from pathlib import Path

import pytest

# pytest.ini runs the suite on two pytest-xdist workers, one per core of the CI machine:
# one OpenMP thread each, so that the two do not contend for the cores (an explicit
# OMP_NUM_THREADS wins). Set before anything imports MXNet; the script server and the
# scripts it runs inherit it.
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ.setdefault('OMP_NUM_THREADS', '1')

import script_runner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Small enough for 2 CPU cores: 64 px input gives SSD levels of 4, 2, 1, 1, 1, 1; the small
# ResNets (gankd.detectors.backbones) cost a third of resnet18_v1 as the teacher, and their
# channels (128, 256 and 64, 128 on the first two levels) still differ, so adapters exist.
DATA_SHAPE = 64
TEACHER = 'resnet10_v1_0.5'
STUDENT = 'resnet10_v1_0.25'


@pytest.fixture(scope='session')
def voc_root(tmp_path_factory):
    from gankd.data.synthetic import make_synthetic_voc
    root = tmp_path_factory.mktemp('data') / 'voc'
    make_synthetic_voc(str(root), num_train=16, num_test=6, image_size=96, seed=3)
    return str(root)


@pytest.fixture(scope='session')
def classes(voc_root):
    from gankd.data.voc import read_classes
    return read_classes(voc_root)


@pytest.fixture(scope='session')
def teacher_params(tmp_path_factory, classes):
    """A teacher SSD with random weights, saved as training would save it."""
    from gankd.detectors.detector import save_detector
    from gankd.detectors.ssd.model import build_ssd, ssd_config
    cfg = ssd_config(TEACHER, DATA_SHAPE, classes)
    net = build_ssd(**cfg)
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.params')
    save_detector(path, net, {'kind': 'ssd', 'name': 'teacher', 'ssd': cfg})
    return path


def run_script(name, *args, timeout=300, env=None, cwd=None):
    """Run a script of scripts/ as a real process; returns the CompletedProcess.

    The process is forked from one that has imported MXNet already
    (``tests/script_runner.py``), which saves each run that import's 3.5 s of CPU.
    """
    env = dict(env or os.environ, PYTHONUNBUFFERED='1')
    return script_runner.run([sys.executable, str(ROOT / 'scripts' / name)] +
                             [str(a) for a in args], env, cwd=cwd, timeout=timeout)


def assert_checkpoints_hold_and_resume(args, prefix, files):
    """Train one epoch with ``args`` (checkpoints every iteration, ``--save-prefix
    prefix``): every checkpoint holds ``files``; a second run resumes from them."""
    first = run_script('train_gankd_ssd.py', *args, '--save-prefix', prefix,
                       '--checkpoint-interval', 1, '--epochs', 1)
    assert first.returncode == 0, first.stderr[-2000:]
    ckpt = str(prefix) + '_ckpt'
    saved = [set(os.listdir(os.path.join(ckpt, d))) for d in os.listdir(ckpt)]
    assert saved and all(set(files) <= names for names in saved), saved
    resumed = run_script('train_gankd_ssd.py', *args, '--save-prefix', prefix,
                         '--checkpoint-interval', 1, '--epochs', 2, '--resume', 'auto')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert 'Resumed from' in resumed.stdout + resumed.stderr


def assert_two_devices_update_as_one(one, two, noise, min_compared):
    """Updates on two devices (``two``: one snapshot per device) equal the one-device
    update ``one`` within 2%, block by block, wherever the update stands out from the
    run-to-run ``noise``; both devices hold the same copy. ``min_compared``: block ->
    how many parameters at least must be compared. Returns block -> compared names."""
    import numpy as np
    compared = {}
    for block in one:
        compared[block] = []
        for k, ref in one[block].items():
            # Both devices hold the same, updated copy.
            np.testing.assert_array_equal(two[0][block][k], two[1][block][k], err_msg=k)
            size = np.linalg.norm(ref)
            if size == 0 or np.linalg.norm(noise[block][k] - ref) > 0.01 * size:
                continue
            error = np.linalg.norm(two[0][block][k] - ref) / size
            assert error < 0.02, '{} {}: update differs by {:.1%}'.format(block, k, error)
            compared[block].append(k)
        assert len(compared[block]) >= min_compared[block], (block, compared[block])
    return compared

