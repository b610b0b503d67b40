"""COCO-format data and metric (gankd.data.coco) and scripts/eval_coco.py, on real files."""
import gc
import json
import os
import re
import shutil

import numpy as np
import pytest

from conftest import DATA_SHAPE, TEACHER, run_script

IMAGE_SIZE = 96  # images differ from the 64 px input, so boxes must be scaled back


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    """Synthetic data with the COCO JSON files; returns (root, generator info)."""
    from gankd.data.synthetic import make_synthetic_voc
    root = tmp_path_factory.mktemp('coco') / 'synth'
    info = make_synthetic_voc(str(root), num_train=8, num_test=5, image_size=IMAGE_SIZE,
                              seed=3, coco_json=True)
    return str(root), info


@pytest.fixture(scope='module')
def datasets(coco_root):
    from gankd.data.coco import coco_datasets
    return coco_datasets(coco_root[0])


@pytest.fixture(scope='module')
def random_params(tmp_path_factory, coco_root):
    """A random-weight SSD for the dataset's classes, saved as training saves it."""
    from gankd.detectors.detector import save_detector
    from gankd.detectors.ssd.model import build_ssd, ssd_config
    cfg = ssd_config(TEACHER, DATA_SHAPE, coco_root[1]['classes'], dataset='coco')
    path = str(tmp_path_factory.mktemp('det') / 'random.params')
    save_detector(path, build_ssd(**cfg), {'kind': 'ssd', 'name': 'random', 'ssd': cfg})
    return path


def _num_boxes(dataset):
    return sum(int((np.asarray(label)[:, 4] >= 0).sum()) for label in dataset._labels)


def test_synthetic_coco_json_is_read(coco_root, datasets):
    from gankd.data.voc import voc_datasets
    root, info = coco_root
    train, val, classes = datasets
    assert classes == info['classes']
    # Evaluation keeps every image; both splits hold every box the generator drew.
    assert len(val) == info['num_test']
    assert _num_boxes(train) == info['num_boxes_train']
    assert _num_boxes(val) == info['num_boxes_test']
    with open(os.path.join(root, 'annotations', 'instances_train.json')) as f:
        assert len(train) == len(json.load(f)['images'])
    # Same images and boxes as the VOC reader sees (both 0-based inclusive corners).
    _, voc_test, _ = voc_datasets(root)
    for i in range(len(val)):
        img, label = val[i]
        voc_img, voc_label = voc_test[i]
        assert img.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        assert (img.asnumpy() == voc_img.asnumpy()).all()
        label = label[label[:, 4] >= 0]
        np.testing.assert_allclose(label, voc_label[:, :5])


def test_real_coco_layout(coco_root, tmp_path):
    """MS COCO's own layout: file_name is a bare name, images in <root>/val2017/."""
    from gankd.data.coco import COCOLayoutDetection, coco_dataset
    from gankd.eval.metrics import COCOMetric
    from gankd.errors import GankdError
    src, info = coco_root
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'val2017').mkdir()
    with open(os.path.join(src, 'annotations', 'instances_test.json')) as f:
        anno = json.load(f)
    for entry in anno['images']:
        name = os.path.basename(entry['file_name'])
        shutil.copy(os.path.join(src, entry['file_name']), root / 'val2017' / name)
        entry['file_name'] = name
        entry['coco_url'] = 'http://images.cocodataset.org/val2017/' + name
    # One more image with no box: evaluation and training keep it (training as background).
    shutil.copy(root / 'val2017' / name, root / 'val2017' / 'empty.jpg')
    anno['images'].append(dict(anno['images'][0], id=999999, file_name='empty.jpg'))
    (root / 'annotations' / 'instances_val2017.json').write_text(json.dumps(anno))
    val = coco_dataset(str(root))  # default split: instances_val2017
    assert len(val) == info['num_test'] + 1 and _num_boxes(val) == info['num_boxes_test']
    assert val.classes == info['classes']
    COCOMetric(val, DATA_SHAPE).cleanup()
    train = coco_dataset(str(root), 'instances_val2017', train=True)
    assert len(train) == info['num_test'] + 1
    # GluonCV's default drops it; detections would be paired with the wrong images.
    dropped = COCOLayoutDetection(str(root), 'instances_val2017', skip_empty=True)
    assert len(dropped) == info['num_test']
    with pytest.raises(GankdError, match='keeps images without boxes'):
        COCOMetric(dropped, DATA_SHAPE)

    os.remove(root / 'val2017' / name)
    with pytest.raises(GankdError, match='image not found: .*val2017/' + name):
        coco_dataset(str(root))
    (root / 'annotations' / 'instances_val2017.json').write_text('{"images": [')
    with pytest.raises(GankdError, match='malformed annotation file .*instances_val2017.json'):
        coco_dataset(str(root))


def _ground_truth_detections(val, shift=0.0, per_image=8):
    """Detections equal to the labels (scaled to the network input), optionally shifted
    right by ``shift`` box widths; padded with id -1 like the SSD's output."""
    bboxes, ids, scores = [], [], []
    for label in val._labels:
        label = np.asarray(label, dtype='float32')
        label = label[label[:, 4] >= 0]
        box = label[:, :4] * (DATA_SHAPE / float(IMAGE_SIZE))
        box[:, [0, 2]] += shift * (box[:, 2:3] - box[:, 0:1])
        b, i, s = (np.full((per_image, 4), -1, 'float32'), np.full((per_image, 1), -1, 'float32'),
                   np.full((per_image, 1), -1, 'float32'))
        b[:len(box)], i[:len(box), 0], s[:len(box), 0] = box, label[:, 4], 1.0
        bboxes.append(b)
        ids.append(i)
        scores.append(s)
    return [np.stack(x) for x in (bboxes, ids, scores)]


def _score(metric, detections):
    """Feed one batch split over two 'devices', as engine.evaluate does."""
    import mxnet as mx
    metric.reset()
    halves = [[mx.nd.array(x[:2]), mx.nd.array(x[2:])] for x in detections]
    metric.update(*halves, None, None, None)
    names, values = metric.get()
    return dict(zip(names, values)), names


def test_coco_metric_ground_truth_is_perfect(datasets):
    from gankd.eval.metrics import COCOMetric
    _, val, classes = datasets
    metric = COCOMetric(val, DATA_SHAPE)
    tmpdir = metric._tmpdir
    perfect, names = _score(metric, _ground_truth_detections(val))
    assert names == list(classes) + ['AP50', 'mAP']
    assert perfect['mAP'] == pytest.approx(1.0) and perfect['AP50'] == pytest.approx(1.0)
    # Shifted by a quarter width, IoU is ~0.6: still found at 0.5, missed at 0.65 and up.
    shifted, _ = _score(metric, _ground_truth_detections(val, shift=0.25))
    assert shifted['AP50'] == pytest.approx(1.0)
    assert 0.1 < shifted['mAP'] < 0.5
    far, _ = _score(metric, _ground_truth_detections(val, shift=0.8))
    assert far['AP50'] < 0.1 and far['mAP'] < shifted['mAP']
    # The detections JSON is gone after get(), the folder with the metric.
    assert os.listdir(tmpdir) == []
    del metric
    gc.collect()
    assert not os.path.exists(tmpdir)


def test_eval_coco_script(coco_root, random_params, tmp_path):
    root, info = coco_root
    out = tmp_path / 'result.json'
    proc = run_script('eval_coco.py', '--params', random_params, '--dataset-root', root,
                      '--batch-size', 4, '-j', 0, '--json', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    m = re.fullmatch(r'mAP=([\d.]+)', lines[-1])
    ap50 = re.fullmatch(r'AP50=([\d.]+)', lines[-2])
    assert m and ap50, proc.stdout
    result = json.loads(out.read_text())
    assert result['split'] == 'instances_test' and result['num_images'] == info['num_test']
    assert list(result['per_class']) == info['classes']
    assert abs(float(m.group(1)) - result['mAP']) < 1e-4
    assert abs(float(ap50.group(1)) - result['AP50']) < 1e-4
    assert 0.0 <= result['mAP'] <= result['AP50'] <= 1.0


def test_eval_coco_script_missing_annotation(coco_root, random_params):
    root, _ = coco_root
    proc = run_script('eval_coco.py', '--params', random_params, '--dataset-root', root,
                      '--split', 'instances_val2017')
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    missing = os.path.join(root, 'annotations', 'instances_val2017.json')
    assert 'error: annotation file not found: ' + missing in lines[0]


def test_training_on_coco_validates_with_coco_ap_and_the_params_evaluate(coco_root, tmp_path):
    """``--dataset coco``: COCODetection for training, COCODetectionMetric (AP@[.5:.95])
    for validation and for choosing the best params, which eval_coco.py then reads."""
    root, _ = coco_root
    prefix = str(tmp_path / 'coco_run')
    proc = run_script('train_ssd.py', '--network', 'mobilenet0.25', '--dataset', 'coco',
                      '--dataset-root', root, '--data-shape', DATA_SHAPE, '--batch-size', 4,
                      '--epochs', 1, '-j', 0, '--optimizer', 'adam', '--augment', 'light',
                      '--save-prefix', prefix)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = proc.stdout + proc.stderr
    assert 'AP50=' in log and re.search(r'\nmAP=[0-9.]+', log)
    with open(prefix + '_history.jsonl') as f:
        record = json.loads(f.readline())
    assert 0.0 <= record['mAP'] <= 1.0
    with open(prefix + '_best.json') as f:
        assert json.load(f)['ssd']['dataset'] == 'coco'
    proc = run_script('eval_coco.py', '--params', prefix + '_best.params', '--dataset-root', root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1].split('=')[1]) == pytest.approx(
        record['mAP'], abs=1e-4)
