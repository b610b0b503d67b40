"""Bad input gets one clear line and exit code 2 (stopping by signal: test_stopping.py)."""
import os
import shutil

import pytest

from conftest import DATA_SHAPE, STUDENT, TEACHER, run_script

GANKD = ['--teacher', TEACHER, '--student', STUDENT, '--data-shape', DATA_SHAPE,
         '--batch-size', 8, '-j', 0, '--log-interval', 1]


def assert_one_line_error(proc, *needles, after_log=False):
    """Exit code 2, no traceback, and one error line (the last, after any training log)."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    if not after_log:
        assert len(lines) == 1, proc.stderr
    assert 'error: ' in lines[-1] and sum('error: ' in l for l in lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_missing_dataset_root(tmp_path, teacher_params):
    missing = tmp_path / 'nowhere'
    proc = run_script('train_gankd_ssd.py', *GANKD, '--teacher-params', teacher_params,
                      '--dataset-root', missing)
    assert_one_line_error(proc, str(missing), 'VOC2007/')


def test_missing_split_file(tmp_path, voc_root, teacher_params):
    root = tmp_path / 'voc'
    shutil.copytree(voc_root, root)
    os.remove(root / 'VOC2007' / 'ImageSets' / 'Main' / 'test.txt')
    proc = run_script('eval_voc.py', '--params', teacher_params, '--dataset-root', root)
    assert_one_line_error(proc, str(root / 'VOC2007' / 'ImageSets' / 'Main' / 'test.txt'),
                          'layout')


@pytest.mark.parametrize('damage,expect', [
    (lambda xml: xml[:len(xml) // 2], 'not valid XML'),
    (lambda xml: xml.replace('<xmin>', '<xmin>abc', 1), 'does not parse'),
    (lambda xml: xml.replace('<bndbox>', '<bbox>').replace('</bndbox>', '</bbox>'), 'missing'),
])
def test_malformed_annotation_names_file_and_problem(tmp_path, voc_root, teacher_params,
                                                     damage, expect):
    root = tmp_path / 'voc'
    shutil.copytree(voc_root, root)
    anno_dir = root / 'VOC2007' / 'Annotations'
    victim = sorted(anno_dir.iterdir())[0]
    victim.write_text(damage(victim.read_text()))
    proc = run_script('train_gankd_ssd.py', *GANKD, '--teacher-params', teacher_params,
                      '--dataset-root', root)
    assert_one_line_error(proc, str(victim), expect)


def test_teacher_params_that_do_not_fit(tmp_path, voc_root, teacher_params):
    proc = run_script('train_gankd_ssd.py', *GANKD[2:], '--teacher', 'mobilenet0.25',
                      '--student', STUDENT, '--teacher-params', teacher_params,
                      '--dataset-root', voc_root)
    assert_one_line_error(proc, teacher_params, 'parameter')


def test_missing_model_zoo_teacher(tmp_path, voc_root):
    env_home = tmp_path / 'mxhome'
    proc = run_script('train_gankd_ssd.py', '--teacher', 'resnet50_v1', '--student', STUDENT,
                      '--data-shape', 512, '--dataset-root', voc_root, '--batch-size', 8,
                      env=dict(os.environ, MXNET_HOME=str(env_home)))
    assert_one_line_error(proc, 'ssd_512_resnet50_v1', '--teacher-params')


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, voc_root, teacher_params):
    prefix = str(tmp_path / 'nan')
    common = GANKD + ['--teacher-params', teacher_params, '--dataset-root', voc_root,
                      '--save-prefix', prefix]
    proc = run_script('train_gankd_ssd.py', *common, '--epochs', 1)
    assert proc.returncode == 0, proc.stderr
    good = os.path.join(prefix + '_ckpt', 'epoch0001-iter00000002')
    assert os.path.isdir(good)
    # An absurd learning rate makes the next iterations overflow.
    proc = run_script('train_gankd_ssd.py', *common, '--epochs', 3, '--resume', 'auto',
                      '--lr', '1e30')
    assert_one_line_error(proc, 'became', 'at iteration', after_log=True)
    log = open(prefix + '_train.log').read()
    assert 'Last good checkpoint: {}'.format(good) in log
    assert sorted(os.listdir(prefix + '_ckpt')) == ['epoch0001-iter00000002']


def test_pretrained_base_missing_from_cache(tmp_path, voc_root):
    proc = run_script('train_ssd.py', '--network', 'mobilenet0.25', '--data-shape', DATA_SHAPE,
                      '--dataset-root', voc_root, '--pretrained-base',
                      env=dict(os.environ, MXNET_HOME=str(tmp_path)))
    assert_one_line_error(proc, 'mobilenet0.25', str(tmp_path), '--pretrained-base')
