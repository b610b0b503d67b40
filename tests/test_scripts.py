"""The quick start and the speed benchmark, run as a user runs them."""
import json
import re

from conftest import run_script


def test_quickstart_tiny_prints_three_maps(tmp_path):
    out = tmp_path / 'qs'
    proc = run_script('quickstart.py', '--out', out, '--preset', 'tiny', '-j', 0, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    row = re.search(r'^\| resnet10_v1_0\.25 \| ([\d.]+) \| ([\d.]+) \| ([+-][\d.]+) \|$', text, re.M)
    teacher = re.search(r'^teacher resnet10_v1_0\.5 alone: ([\d.]+) mAP$', text, re.M)
    assert row and teacher, text
    result = json.load(open(out / 'quickstart.json'))
    assert abs(float(row.group(1)) - 100 * result['baseline']['mAP']) < 0.051
    assert abs(float(row.group(2)) - 100 * result['gankd']['mAP']) < 0.051
    assert abs(float(teacher.group(1)) - 100 * result['teacher']['mAP']) < 0.051
    for key in ('teacher', 'baseline', 'gankd'):
        assert (out / 'params' / (key + '_best.params')).is_file()
        assert (out / 'params' / (key + '_best.json')).is_file()
        assert (out / 'params' / (key + '_history.jsonl')).is_file()
    assert 'quick start' in proc.stderr  # the tqdm bar
    # What distillation buys, as measured on the exported graphs.
    speed = re.search(r'^speed \(exported, batch 1, this CPU\): teacher ([\d.]+) ms, GAN-KD '
                      r'student ([\d.]+) ms: ([\d.]+)x faster', text, re.M)
    assert speed, text
    t, g = result['teacher']['latency_ms'], result['gankd']['latency_ms']
    assert abs(float(speed.group(3)) - t / g) < 0.01 and t > 0 and g > 0


def test_bench_speed_prints_ratio():
    proc = run_script('bench_speed.py', '--teacher', 'resnet18_v1', '--student', 'mobilenet0.25',
                      '--data-shape', 64, '--batch-size', 4, '--repeats', 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    times = {l.split()[0]: float(l.split()[1]) for l in lines if l.endswith(' ms')}
    assert set(times) == {'student_step', 'teacher_fwd', 'terms', 'sum_of_parts',
                          'iteration'}
    assert abs(times['sum_of_parts'] - times['student_step'] - times['teacher_fwd'] -
               times['terms']) < 0.3
    ratio = float(re.fullmatch(r'ratio=([\d.]+)', lines[-1]).group(1))
    assert abs(ratio - times['iteration'] / times['sum_of_parts']) < 0.01


def test_bench_speed_plain_compares_with_gluoncvs_loop():
    proc = run_script('bench_speed.py', '--plain', 'mobilenet0.25', '--data-shape', 64,
                      '--batch-size', 4, '--repeats', 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    times = {l.split()[0]: float(l.split()[1]) for l in lines if l.endswith(' ms')}
    assert set(times) == {'gluoncv_step', 'gankd_step'} and min(times.values()) > 0
    ratio = float(re.fullmatch(r'ratio=([\d.]+)', lines[-1]).group(1))
    assert abs(ratio - times['gankd_step'] / times['gluoncv_step']) < 0.01

