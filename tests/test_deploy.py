"""Issue 16: export, demo pictures, inference speed, and eval_voc.py without flags, run as
a user runs them."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from conftest import DATA_SHAPE, STUDENT, TEACHER, run_script
from gankd.detectors.detector import load_detector

# The fresh process: MXNet alone. gankd is installed (editable) in this environment, so the
# process blocks its import before anything else: the export must load without it.
LOAD_EXPORT = '''
import sys
sys.modules['gankd'] = None  # any import of gankd now raises ImportError
import numpy as np
import mxnet as mx
net = mx.gluon.SymbolBlock.imports(sys.argv[1] + '-symbol.json', ['data'],
                                   sys.argv[1] + '-0000.params')
ids, scores, bboxes = net(mx.nd.array(np.load(sys.argv[2])))
np.savez(sys.argv[3], ids=ids.asnumpy(), scores=scores.asnumpy(), bboxes=bboxes.asnumpy())
assert sys.modules['gankd'] is None
try:
    import gankd  # noqa: F401
    print('gankd importable')
except ImportError:
    print('gankd not importable')
'''


@pytest.fixture(scope='module')
def student_params(tmp_path_factory, classes, teacher_params):
    """A distilled student's params file, saved as training saves it."""
    from gankd.train.run import build_gankd_run
    from gankd.detectors.detector import save_detector
    run = build_gankd_run(TEACHER, STUDENT, DATA_SHAPE, classes, [mx.cpu()],
                          teacher_params=teacher_params)
    path = str(tmp_path_factory.mktemp('student') / 'student.params')
    save_detector(path, run.save_block, run.meta)
    return path


def _pixels(voc_root, n=3):
    """The first ``n`` test images, resized to the data shape: (n, H, W, 3) in [0, 255]."""
    from gluoncv.data.transforms import image as timage
    folder = os.path.join(voc_root, 'VOC2007', 'JPEGImages')
    names = sorted(os.listdir(folder))[:n]
    return np.stack([timage.imresize(mx.image.imread(os.path.join(folder, f)), DATA_SHAPE,
                                     DATA_SHAPE, interp=9).asnumpy() for f in names]
                    ).astype('float32')


@pytest.mark.parametrize('kind', ['ssd', 'student'])
def test_export_runs_without_gankd_and_equals_the_params_model(kind, teacher_params,
                                                               student_params, voc_root,
                                                               tmp_path):
    params = teacher_params if kind == 'ssd' else student_params
    prefix = tmp_path / 'export' / 'model'
    proc = run_script('export.py', '--params', params, '--out', prefix)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / 'export' / 'model-symbol.json').is_file()
    pixels = _pixels(voc_root)
    np.save(tmp_path / 'pixels.npy', pixels)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    run = subprocess.run([sys.executable, '-c', LOAD_EXPORT, str(prefix),
                          str(tmp_path / 'pixels.npy'), str(tmp_path / 'out.npz')],
                         cwd=str(elsewhere), env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == 'gankd not importable'
    got = np.load(tmp_path / 'out.npz')

    # The params model on the same pixels, normalised as GluonCV's export preprocessing does.
    meta, backbone, head = load_detector(params)
    x = mx.nd.array(pixels)
    x = mx.nd.broadcast_div(
        mx.nd.broadcast_minus(x, mx.nd.array([123.675, 116.28, 103.53]).reshape((1, 1, 1, 3))),
        mx.nd.array([58.395, 57.12, 57.375]).reshape((1, 1, 1, 3))).transpose((0, 3, 1, 2))
    ids, scores, bboxes = [a.asnumpy() for a in head(backbone(x))]
    assert (ids >= 0).sum() > 0  # there are detections to compare
    np.testing.assert_array_equal(got['ids'], ids)
    np.testing.assert_allclose(got['scores'], scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got['bboxes'], bboxes, rtol=1e-5, atol=1e-4)

    # Only the detector's own arrays (plus GluonCV's two preprocessing constants): the
    # student's file holds neither teacher nor critics, nor does its export.
    exported = mx.nd.load(str(prefix) + '-0000.params')
    extra = sorted(k for k in exported if 'defaultpreprocess' in k)
    assert len(extra) == 2
    saved = mx.nd.load(params)
    assert len(exported) - 2 == len(saved)
    assert sorted(a.size for k, a in exported.items() if k not in extra) == sorted(
        a.size for a in saved.values())
    assert not [k for k in exported if 'critic' in k]


@pytest.mark.skipif(__import__('importlib').util.find_spec('onnx') is not None,
                    reason='onnx is installed here')
def test_onnx_without_the_onnx_package_is_one_error_line(teacher_params, tmp_path):
    proc = run_script('export.py', '--params', teacher_params, '--out', tmp_path / 'm', '--onnx')
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('export.py: error: --onnx needs the')
    assert os.listdir(tmp_path) == []


def test_fixed_gammas_become_ones_and_mxnet_computes_the_same(student_params, tmp_path):
    from gankd.deploy import export_detector, ones_for_fixed_gamma
    _, sym, params = export_detector(student_params, str(tmp_path / 'raw'), preprocess=False,
                                     raw=True)
    before = mx.nd.load(params)
    fixed = ones_for_fixed_gamma(sym, params)
    after = mx.nd.load(params)
    # GluonCV's feature expander: a 1x1 and a 3x3 convolution per extra level, each with a
    # BatchNorm of MXNet's default fix_gamma=True (four extra levels).
    assert len(fixed) == 8 and all('expand' in k for k in fixed)
    assert any((before['arg:' + k] != 1).sum().asscalar() for k in fixed)  # random before
    for k in after:
        want = mx.nd.ones_like(before[k]) if k[len('arg:'):] in fixed else before[k]
        assert (after[k] == want).min().asscalar() == 1, k
    x = mx.nd.random.normal(shape=(2, 3, DATA_SHAPE, DATA_SHAPE))
    outs = []
    for arrays in (before, after):
        mx.nd.save(str(tmp_path / 'p.params'), arrays)
        net = mx.gluon.SymbolBlock.imports(sym, ['data'], str(tmp_path / 'p.params'))
        outs.append([o.asnumpy() for o in net(x)])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not all(__import__('importlib').util.find_spec(m)
                            for m in ('onnx', 'onnxruntime')),
                    reason='needs onnx and onnxruntime (not in requirements.txt: every '
                    'onnxruntime for Python 3.11 requires numpy>=1.24.2, MXNet 1.9.1 numpy<1.24)')
@pytest.mark.parametrize('kind', ['ssd', 'student'])
def test_onnxruntime_reproduces_the_raw_outputs(kind, teacher_params, student_params,
                                                voc_root, tmp_path):
    import onnxruntime
    from gankd.deploy import RawGraph
    src = teacher_params if kind == 'ssd' else student_params
    # Random initialisation leaves negative running variances in the feature expander, as
    # no training does: MXNet's ReLU turns their NaNs into 0, ONNX's keeps them.
    params = str(tmp_path / 'model.params')
    mx.nd.save(params, {k: a.abs() if k.endswith(('running_var', 'moving_var')) else a
                        for k, a in mx.nd.load(src).items()})
    shutil.copy(src[:-len('.params')] + '.json', params[:-len('.params')] + '.json')
    proc = run_script('export.py', '--params', params, '--out', tmp_path / 'm', '--onnx')
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta, backbone, head = load_detector(params)
    raw = RawGraph(backbone, head)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # MXNet's graph keeps its weights as inputs: warnings
    session = onnxruntime.InferenceSession(str(tmp_path / 'm.onnx'), options,
                                           providers=['CPUExecutionProvider'])
    pixels = _pixels(voc_root)
    x = (pixels / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    x = x.transpose((0, 3, 1, 2)).astype('float32')
    for image in x:
        got = session.run(None, {'data': image[None]})
        want = [a.asnumpy() for a in raw(mx.nd.array(image[None]))]
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want):  # class scores, box offsets, anchors
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_demo_draws_pngs_and_prints_the_detections_above_the_threshold(student_params,
                                                                      voc_root, tmp_path):
    from gluoncv.data.transforms.presets.ssd import SSDDefaultValTransform
    from PIL import Image
    meta, backbone, head = load_detector(student_params)
    classes = meta['teacher']['classes']
    folder = os.path.join(voc_root, 'VOC2007', 'JPEGImages')
    images = [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:3]]
    # The model's detections, found the way evaluation prepares images.
    found = []
    for path in images:
        img = mx.image.imread(path)
        h, w = img.shape[:2]
        x, _ = SSDDefaultValTransform(DATA_SHAPE, DATA_SHAPE)(img, np.zeros((0, 5)))
        ids, scores, boxes = [a[0].asnumpy() for a in head(backbone(x.expand_dims(0)))]
        for cid, score, box in zip(ids[:, 0], scores[:, 0], boxes):
            if cid >= 0:
                box = np.clip(box * ([w / DATA_SHAPE, h / DATA_SHAPE] * 2), 0, [w, h, w, h])
                found.append((path, classes[int(cid)], float(score), box))
    # A threshold in a gap between scores, with several detections on each side (an
    # untrained head gives many scores of exactly 1).
    ranked = sorted(set(round(d[2], 6) for d in found))[::-1]
    gaps = [(a + b) / 2 for a, b in zip(ranked, ranked[1:]) if a - b > 2e-4]
    thresh = min(gaps, key=lambda t: abs(sum(d[2] >= t for d in found) - 8))
    expected = [d for d in found if d[2] >= thresh]
    assert 2 <= len(expected) < len(found)

    out = tmp_path / 'pictures'
    proc = run_script('demo.py', '--params', student_params, *images, '--out', out,
                      '--thresh', thresh)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [l.split(' ') for l in proc.stdout.strip().splitlines()]
    assert len(printed) == len(expected)
    for p in printed:  # each printed line is one of the model's detections, once
        match = [d for d in expected if d[0] == p[0] and d[1] == p[1] and
                 abs(float(p[2]) - d[2]) < 1e-4 and
                 np.allclose([float(v) for v in p[3:]], d[3], atol=0.051)]
        assert match, p
        expected.remove(match[0])
    for path in images:
        png = out / (os.path.splitext(os.path.basename(path))[0] + '.png')
        with open(png, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
        with Image.open(png) as pic:
            pic.load()  # decodes the whole file
            assert pic.format == 'PNG'
            assert pic.size == Image.open(path).size


def test_demo_missing_image_is_one_error_line(teacher_params, tmp_path):
    proc = run_script('demo.py', '--params', teacher_params, tmp_path / 'none.jpg',
                      '--out', tmp_path / 'o')
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'demo.py: error: image not found: {}'.format(tmp_path / 'none.jpg')]


def test_bench_inference_table_and_json(teacher_params, student_params, tmp_path):
    out = tmp_path / 'speed.json'
    proc = run_script('bench_inference.py', teacher_params, student_params, '--runs', 5,
                      '--batch-size', 4, '--json', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.load(open(out))
    assert [r['kind'] for r in rows] == ['ssd', 'student']
    table = [l for l in proc.stdout.splitlines() if l.startswith('| ')][1:]
    assert len(table) == 2
    for row, line, params in zip(rows, table, [teacher_params, student_params]):
        arrays = mx.nd.load(params)
        # The extra layers' BatchNorm statistics (moving_*) are there, and not counted.
        assert any(k.endswith('moving_var') for k in arrays)
        learned = sum(a.size for k, a in arrays.items()
                      if not k.endswith(('running_mean', 'running_var', 'moving_mean',
                                         'moving_var')))
        assert row['num_params'] == learned
        assert row['size_bytes'] == os.path.getsize(params)
        assert row['data_shape'] == DATA_SHAPE and row['batch_size'] == 4
        assert row['latency_ms'] > 0 and row['throughput'] > 0
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert float(cells[4]) == pytest.approx(row['latency_ms'], abs=0.006)
        assert float(cells[5].rstrip('x')) == pytest.approx(
            rows[0]['latency_ms'] / row['latency_ms'], abs=0.006)
    # The student is the smaller network (resnet10_v1_0.25 against resnet10_v1_0.5).
    assert rows[1]['num_params'] < rows[0]['num_params']


def test_speed_markdown_and_map_latency_figure(tmp_path):
    from PIL import Image
    from gankd.errors import GankdError
    from gankd.deploy import plot_map_latency, speed_markdown
    rows = [dict(name='teacher', data_shape=64, num_params=2e6, size_bytes=2 ** 23,
                 latency_ms=8.0, batch_size=16, throughput=300.0, mAP=0.5),
            dict(name='student', data_shape=64, num_params=5e5, size_bytes=2 ** 21,
                 latency_ms=2.0, batch_size=16, throughput=900.0, mAP=0.4)]
    table = speed_markdown(rows).splitlines()
    assert table[0].endswith('| mAP |')
    assert table[3] == '| student | 64 | 0.50 | 2.0 | 2.00 | 4.00x | 900.0 (batch 16) | 40.0 |'
    path = plot_map_latency(rows, str(tmp_path / 'fig' / 'map_latency.png'))
    with Image.open(path) as pic:
        assert pic.format == 'PNG' and pic.size[0] > 100
    with pytest.raises(GankdError):
        plot_map_latency([dict(rows[0], mAP=None)], str(tmp_path / 'none.png'))


@pytest.fixture(scope='module')
def trained_here(voc_root, tmp_path_factory):
    """A folder in which a plain SSD was trained with a relative --save-prefix under
    params/, as a user's working directory looks afterwards."""
    cwd = tmp_path_factory.mktemp('workdir')
    proc = run_script('train_ssd.py', '--network', 'mobilenet0.25', '--data-shape', DATA_SHAPE,
                      '--batch-size', 8, '--dataset-root', voc_root, '--epochs', 1, '-j', 0,
                      '--save-prefix', 'params/run1/m', cwd=str(cwd))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


def test_eval_voc_without_flags_takes_the_newest_best_params_and_its_dataset(
        trained_here, voc_root, teacher_params):
    best = trained_here / 'params' / 'run1' / 'm_best.params'
    meta = json.load(open(trained_here / 'params' / 'run1' / 'm_best.json'))
    assert meta['dataset_root'] == os.path.abspath(voc_root)  # recorded by training
    # An older best params file that points at a dataset that is not there: choosing it
    # would fail.
    old = trained_here / 'params' / 'older'
    old.mkdir(exist_ok=True)
    shutil.copy(best, old / 'z_best.params')
    json.dump(dict(meta, dataset_root=str(trained_here / 'gone')), open(old / 'z_best.json', 'w'))
    past = time.time() - 3600
    os.utime(old / 'z_best.params', (past, past))

    proc = run_script('eval_voc.py', cwd=str(trained_here))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'params/run1/m_best.params' in proc.stderr
    assert os.path.abspath(voc_root) in proc.stderr
    assert re.fullmatch(r'mAP=[\d.]+', proc.stdout.strip().splitlines()[-1])
    assert '(6 test images)' in proc.stdout

    # Every flag still overrides: a file without a recorded dataset, with --dataset-root.
    proc = run_script('eval_voc.py', '--params', teacher_params, '--dataset-root', voc_root,
                      cwd=str(trained_here))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'newest' not in proc.stderr and 'trained on' not in proc.stderr


def test_eval_voc_without_flags_errors(teacher_params, tmp_path):
    proc = run_script('eval_voc.py', cwd=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'eval_voc.py: error: no --params given and no *_best.params under {}/'.format(
            tmp_path / 'params')]
    # A params file whose JSON does not say which dataset it was trained on.
    (tmp_path / 'params').mkdir()
    shutil.copy(teacher_params, tmp_path / 'params' / 't_best.params')
    shutil.copy(teacher_params[:-len('.params')] + '.json', tmp_path / 'params' / 't_best.json')
    proc = run_script('eval_voc.py', cwd=str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('eval_voc.py: error: ')
    assert 'pass --dataset-root' in lines[0]


def test_export_without_preprocessing_takes_the_normalised_tensor(student_params, tmp_path):
    from gankd.deploy import export_detector
    meta, sym, params = export_detector(student_params, str(tmp_path / 'raw'), preprocess=False)
    # GluonCV's export_block removes box_encode; training in this process needs it back.
    assert 'box_encode' in mx.sym.contrib.__dict__
    net = mx.gluon.SymbolBlock.imports(sym, ['data'], params)
    assert not [k for k in mx.nd.load(params) if 'defaultpreprocess' in k]
    x = mx.nd.random.normal(shape=(2, 3, DATA_SHAPE, DATA_SHAPE))
    _, backbone, head = load_detector(student_params)
    for got, want in zip(net(x), head(backbone(x))):
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-5, atol=1e-4)


def test_report_puts_speed_and_size_beside_map(teacher_params, student_params, tmp_path):
    from PIL import Image
    from gankd.experiments.report import write_report
    from gankd.experiments.tables import SPEED_HEADING

    def record(role, student, teacher, method, seed, mAP, params):
        return {'key': '{}/{}/{}/seed{}'.format(role, student, teacher, seed), 'role': role,
                'student': student, 'teacher': teacher, 'method': method, 'seed': seed,
                'status': 'ok', 'mAP': mAP, 'params': params, 'history': None}
    gone = str(tmp_path / 'gone' / 'baseline_best.params')
    records = [record('teacher', None, TEACHER, None, 233, 0.50, teacher_params),
               record('teacher', None, TEACHER, None, 234, 0.54, teacher_params),
               record('baseline', STUDENT, 'none', 'baseline', 0, 0.30, gone),
               # The lowest seed's params are measured: seed 1's are not on disk.
               record('distill', STUDENT, TEACHER, 'gan', 1, 0.36, str(tmp_path / 'nope')),
               record('distill', STUDENT, TEACHER, 'gan', 0, 0.33, student_params)]
    results = tmp_path / 'grid.json'
    results.write_text(json.dumps({'records': records}))
    written = write_report(str(results), str(tmp_path / 'rep'), 'grid')
    text = open(written['report']).read()
    speed = json.load(open(written['summary']))['speed']
    rows = speed['rows']
    assert [r['name'] for r in rows] == ['teacher ' + TEACHER,
                                        '{} (gan from {})'.format(STUDENT, TEACHER)]
    assert [r['params'] for r in rows] == [teacher_params, student_params]
    assert [r['mAP'] for r in rows] == [pytest.approx(0.52), pytest.approx(0.345)]
    for row, params in zip(rows, [teacher_params, student_params]):
        assert row['size_bytes'] == os.path.getsize(params)
        assert row['num_params'] == sum(
            a.size for k, a in mx.nd.load(params).items()
            if not k.endswith(('running_mean', 'running_var', 'moving_mean', 'moving_var')))
        assert row['latency_ms'] > 0 and row['runs'] == 30

    section = text[text.index(SPEED_HEADING):text.index('## Figures')]
    table = [l for l in section.splitlines() if l.startswith('| ')][1:]
    assert len(table) == 2
    for row, line in zip(rows, table):
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert cells[0] == row['name'] and cells[1] == str(DATA_SHAPE)
        assert float(cells[4]) == pytest.approx(row['latency_ms'], abs=0.006)
        assert float(cells[5].rstrip('x')) == pytest.approx(
            rows[0]['latency_ms'] / row['latency_ms'], abs=0.006)
        assert float(cells[7]) == pytest.approx(100 * row['mAP'], abs=0.051)
    assert cells[7] == '34.5'
    # The baseline's params file is gone: said, not measured.
    assert speed['missing'] == [{'label': STUDENT + ' (no teacher)', 'params': gone}]
    assert 'Not measured' in section and '{} (no teacher) (`{}`)'.format(STUDENT, gone) in section

    png = tmp_path / 'rep' / 'grid_speed.png'
    assert str(png) in written['figures'] and '(grid_speed.png)' in text
    with Image.open(png) as pic:
        pic.load()
        assert pic.format == 'PNG'

    # --no-speed: the quick report, nothing exported or timed.
    proc = run_script('report.py', '--results', results, '--out-dir', tmp_path / 'quick',
                      '--name', 'grid', '--no-speed')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SPEED_HEADING not in (tmp_path / 'quick' / 'grid.md').read_text()
    assert not (tmp_path / 'quick' / 'grid_speed.png').exists()
    assert json.load(open(tmp_path / 'quick' / 'grid_summary.json'))['speed'] is None

    # No params file on disk at all: no section (weights are not committed).
    results.write_text(json.dumps({'records': [dict(r, params=gone) for r in records]}))
    written = write_report(str(results), str(tmp_path / 'none'), 'grid')
    assert SPEED_HEADING not in open(written['report']).read()
    assert not (tmp_path / 'none' / 'grid_speed.png').exists()

    # --speed-from: another machine, no params on disk, a cell rerun: the earlier
    # timings stand (they depend on the architecture), the mAP is the results' own.
    rerun = [dict(r, params=gone, mAP=0.40) if r['method'] == 'gan' and r['seed'] == 0
             else dict(r, params=gone) for r in records]
    results.write_text(json.dumps({'records': rerun}))
    earlier = tmp_path / 'rep' / 'grid_summary.json'
    proc = run_script('report.py', '--results', results, '--out-dir', tmp_path / 'reused',
                      '--name', 'grid', '--speed-from', earlier)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reused = json.load(open(tmp_path / 'reused' / 'grid_summary.json'))['speed']
    assert [r['latency_ms'] for r in reused['rows']] == [r['latency_ms'] for r in rows]
    assert [r['mAP'] for r in reused['rows']] == [pytest.approx(0.52), pytest.approx(0.38)]
    assert reused['missing'] == [{'label': STUDENT + ' (no teacher)', 'params': gone,
                                  'why': 'not in the earlier table'}]
    text = (tmp_path / 'reused' / 'grid.md').read_text()
    assert 'reused here' in text and '| 38.0 |' in text
    assert (tmp_path / 'reused' / 'grid_speed.png').is_file()
