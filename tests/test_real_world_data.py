"""What custom and real VOC/COCO trees hold: images without objects, missing or odd image
files, the field variants annotation tools write. Each either works or ends in one
``error:`` line with exit code 2 before anything is trained (gankd.data.check, the readers
in gankd.data.voc and gankd.data.coco)."""
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from conftest import DATA_SHAPE, STUDENT, TEACHER, run_script
from test_bad_input import assert_one_line_error

TERMS = 'gan,hint,soft,bounded,crosshead,di,cosine'
FAST = ['--data-shape', DATA_SHAPE, '--batch-size', 8, '-j', 0, '--epochs', 1,
        '--optimizer', 'adam', '--log-interval', 1]


def _copy(voc_root, tmp_path):
    root = tmp_path / 'voc'
    shutil.copytree(voc_root, root)
    return root


def _ids(root, split):
    return (root / 'VOC2007' / 'ImageSets' / 'Main' / (split + '.txt')).read_text().split()


def _xml(root, image_id):
    return root / 'VOC2007' / 'Annotations' / (image_id + '.xml')


def _jpg(root, image_id):
    return root / 'VOC2007' / 'JPEGImages' / (image_id + '.jpg')


def _edit(root, image_id, edit):
    """Apply ``edit(annotation element)`` to an image's XML."""
    tree = ET.parse(_xml(root, image_id))
    edit(tree.getroot())
    tree.write(_xml(root, image_id), encoding='utf-8')


def _remove_objects(anno):
    for obj in anno.findall('object'):
        anno.remove(obj)


def _set_box(**coords):
    def edit(anno):
        box = anno.find('object').find('bndbox')
        for k, v in coords.items():
            box.find(k).text = str(v)
    return edit


def _history(prefix):
    with open(prefix + '_history.jsonl') as f:
        return [json.loads(line) for line in f]


# -- images without objects ---------------------------------------------------------------

def test_an_image_without_objects_gets_all_negative_targets(classes):
    """Both augmentations, targets made per batch: class target 0 (background) and box
    target 0 on every anchor, for a VOC label of shape (0, 6) and for GluonCV COCO's
    dummy row of -1, in a batch with an image that has objects, whose targets are those
    GluonCV's own transform gives it alone."""
    import mxnet as mx
    from mxnet import autograd
    from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
    from gankd.detectors.ssd.transforms import AUGMENTATIONS, SSDBatchTargets
    from gankd.detectors.ssd.model import build_ssd, ssd_config
    net = build_ssd(**ssd_config(STUDENT, DATA_SHAPE, classes))
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, DATA_SHAPE, DATA_SHAPE)))
    img = mx.nd.array(np.random.RandomState(0).randint(0, 255, (96, 80, 3)), dtype='uint8')
    objects = np.array([[10, 10, 70, 80, 2, 0], [40, 5, 60, 30, 0, 0]], 'float32')
    batchify = SSDBatchTargets(anchors)
    for name, transform in AUGMENTATIONS.items():
        t = transform(DATA_SHAPE, DATA_SHAPE)
        samples = [t(img, label) for label in (np.zeros((0, 6), 'float32'),
                                                np.full((1, 5), -1.0), objects)]
        x, cls_targets, box_targets = batchify(samples)
        assert x.shape == (3, 3, DATA_SHAPE, DATA_SHAPE), name
        assert cls_targets.shape == (3, anchors.shape[1]), name
        assert (cls_targets[:2].asnumpy() == 0).all(), name
        assert (box_targets[:2].asnumpy() == 0).all(), name
        # The image with objects has positives, the targets of GluonCV's per-image path.
        assert (cls_targets[2].asnumpy() == 3).any(), name
        alone = SSDDefaultTrainTransform(DATA_SHAPE, DATA_SHAPE, anchors)
        boxes = mx.nd.array(samples[2][1][np.newaxis])
        ref_cls, ref_box, _ = alone._target_generator(anchors, None, boxes[:, :, :4],
                                                      boxes[:, :, 4:5])
        assert (ref_cls[0].asnumpy() == cls_targets[2].asnumpy()).all(), name
        assert (ref_box[0].asnumpy() == box_targets[2].asnumpy()).all(), name
    # A batch with no object at all.
    _, cls_targets, box_targets = batchify(samples[:2])
    assert not cls_targets.asnumpy().any() and not box_targets.asnumpy().any()


@pytest.mark.parametrize('script,augment,contexts', [
    ('train_ssd.py', 'ssd', 2),
    ('train_gankd_ssd.py', 'light', 2),
    ('train_gankd_ssd.py', 'ssd', 1),
], ids=['ssd-augment_ssd-2ctx', 'gankd-all-terms-augment_light-2ctx',
        'gankd-all-terms-augment_ssd-1ctx'])
def test_images_without_objects_train_and_evaluate(tmp_path, voc_root, teacher_params, script,
                                                    augment, contexts):
    """Issue 15's first failure: an image with no <object> stopped training in GluonCV's
    target generator. With all but one training image empty, one batch of 8 holds no
    object at all."""
    root = _copy(voc_root, tmp_path)
    train_ids, test_ids = _ids(root, 'trainval'), _ids(root, 'test')
    for image_id in train_ids[1:] + test_ids[:2]:
        _edit(root, image_id, _remove_objects)
    prefix = str(tmp_path / 'run')
    args = FAST + ['--dataset-root', root, '--save-prefix', prefix, '--augment', augment,
                   '--cpu-contexts', contexts]
    if script == 'train_ssd.py':
        args += ['--network', STUDENT]
    else:
        args += ['--teacher', TEACHER, '--student', STUDENT, '--teacher-params', teacher_params,
                 '--distill', TERMS]
    proc = run_script(script, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'Traceback' not in log
    assert ('Training set: 16 images (15 without objects); validation set: 6 images '
            '(2 without objects)') in log
    record, = _history(prefix)
    assert 0.0 <= record['mAP'] <= 1.0
    assert all(np.isfinite(v) for k, v in record.items() if isinstance(v, float))
    assert os.path.isfile(prefix + '_best.params')
    # Validation (the two test images without objects among them) printed its mAP.
    assert re.search(r'\nmAP=[0-9.]+', log)


def test_coco_images_without_annotations_train(tmp_path):
    """COCO keeps images without annotations for training too (GluonCV drops them)."""
    from gankd.data.synthetic import make_synthetic_voc
    root = tmp_path / 'coco'
    make_synthetic_voc(str(root), num_train=8, num_test=4, image_size=96, seed=3, coco_json=True)
    path = root / 'annotations' / 'instances_train.json'
    anno = json.loads(path.read_text())
    empty = {e['id'] for e in anno['images'][:5]}
    anno['annotations'] = [a for a in anno['annotations'] if a['image_id'] not in empty]
    path.write_text(json.dumps(anno))
    prefix = str(tmp_path / 'run')
    proc = run_script('train_ssd.py', '--network', STUDENT, '--dataset', 'coco',
                      '--dataset-root', root, '--save-prefix', prefix, '--augment', 'light',
                      *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'Training set: 8 images (5 without objects); validation set: 4 images' in log
    assert 0.0 <= _history(prefix)[0]['mAP'] <= 1.0


# -- what annotation tools and devkits write, and works ------------------------------------

def test_annotation_tool_variants_are_read(tmp_path, voc_root, classes):
    """Field variants, encodings, image formats and rounding that real trees hold."""
    from gankd.data.voc import voc_datasets
    from gankd.data.check import check_dataset
    root = _copy(voc_root, tmp_path)
    _, reference, _ = voc_datasets(voc_root)
    reference = {item[1]: label for item, label in zip(reference._items,
                                                       reference._label_cache)}
    ids = _ids(root, 'test')

    def no_optional_fields(anno):
        for obj in anno.findall('object'):
            for tag in ('difficult', 'pose', 'truncated'):
                if obj.find(tag) is not None:
                    obj.remove(obj.find(tag))

    def odd_fields(anno):
        obj = anno.find('object')
        obj.find('difficult').text = ''
        obj.find('name').text = '  {} \n'.format(obj.find('name').text.upper())
        for k in ('xmin', 'ymin', 'xmax', 'ymax'):
            box = obj.find('bndbox')
            box.find(k).text = '{:.1f}'.format(float(box.find(k).text))

    _edit(root, ids[0], no_optional_fields)
    _edit(root, ids[1], odd_fields)
    _edit(root, ids[2], lambda anno: anno.remove(anno.find('size')))
    # Rounding: corners up to a pixel or so outside are clipped to the image.
    _edit(root, ids[3], _set_box(xmin=0, ymin='-0.4', xmax=97.5, ymax=96.9))
    # A byte order mark in the XML, the split file and classes.txt; CRLF and blank lines.
    xml = _xml(root, ids[4])
    xml.write_bytes(b'\xef\xbb\xbf' + xml.read_bytes())
    # Grayscale JPEG, a PNG named .jpg, and a non-ASCII name with a space.
    Image.open(_jpg(root, ids[4])).convert('L').save(_jpg(root, ids[4]), 'JPEG')
    Image.open(_jpg(root, ids[5])).save(_jpg(root, ids[5]), 'PNG')
    renamed = 'bild ä_ø'
    os.rename(_jpg(root, ids[5]), _jpg(root, renamed))
    os.rename(_xml(root, ids[5]), _xml(root, renamed))
    split = root / 'VOC2007' / 'ImageSets' / 'Main' / 'test.txt'
    split.write_bytes(b'\xef\xbb\xbf' + '\r\n'.join(ids[:5] + ['', renamed, '']).encode())
    names = root / 'classes.txt'
    names.write_bytes(b'\xef\xbb\xbf' + names.read_text().replace('\n', '\r\n').encode())

    _, test, read = voc_datasets(str(root))
    assert read == classes
    check_dataset(test)
    labels = {item[1]: label for item, label in zip(test._items, test._label_cache)}
    assert list(labels) == ids[:5] + [renamed]
    for image_id in (ids[0], ids[1], ids[2], ids[4]):
        np.testing.assert_allclose(labels[image_id][:, :5], reference[image_id][:, :5])
    assert (labels[ids[0]][:, 5] == 0).all() and labels[ids[1]][0, 5] == 0
    np.testing.assert_allclose(labels[ids[3]][0, :4], [0, 0, 96, 95.9], rtol=1e-6)
    np.testing.assert_allclose(labels[renamed], reference[ids[5]])
    for i in range(len(test)):
        img, _ = test[i]
        assert img.shape == (96, 96, 3)

    # The same tree trains (on its test split) and evaluates, as a real process.
    shutil.copy(split, split.with_name('trainval.txt'))
    prefix = str(tmp_path / 'run')
    proc = run_script('train_ssd.py', '--network', STUDENT, '--dataset-root', root,
                      '--save-prefix', prefix, '--augment', 'ssd', *FAST[:2], '--batch-size',
                      6, *FAST[4:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Training set: 6 images (0 without objects)' in proc.stdout + proc.stderr
    assert 0.0 <= _history(prefix)[0]['mAP'] <= 1.0


# -- what is refused: one line, exit code 2, before training -------------------------------

def _missing_image(root, image_id):
    os.remove(_jpg(root, image_id))
    return str(_jpg(root, image_id)), 'image not found'


def _garbage_image(root, image_id):
    _jpg(root, image_id).write_bytes(b'\xff\xd8 this is no JPEG')
    return str(_jpg(root, image_id)), 'cannot be decoded'


def _gif_image(root, image_id):
    Image.open(_jpg(root, image_id)).save(_jpg(root, image_id), 'GIF')
    return str(_jpg(root, image_id)), 'cannot be decoded (a GIF file)'


def _size_disagrees(root, image_id):
    def edit(anno):
        anno.find('size').find('width').text = '120'
    _edit(root, image_id, edit)
    return str(_jpg(root, image_id)), 'says the image is 120x96 but'


def _swapped_corners(root, image_id):
    _edit(root, image_id, _set_box(xmin=60, xmax=20))
    return str(_xml(root, image_id)), 'xmin > xmax in box (60, '


def _zero_size(root, image_id):
    _edit(root, image_id, _set_box(ymin=30, ymax=30))
    return str(_xml(root, image_id)), 'has zero height'


def _far_outside(root, image_id):
    _edit(root, image_id, _set_box(xmin=10, xmax=130))
    return str(_xml(root, image_id)), 'lies outside the 96x96 image'


def _unknown_class(root, image_id):
    def edit(anno):
        anno.find('object').find('name').text = 'Dgo'
    _edit(root, image_id, edit)
    return str(_xml(root, image_id)), "class 'Dgo' is not in {}".format(root / 'classes.txt')


def _empty_coordinate(root, image_id):
    _edit(root, image_id, _set_box(xmin=''))
    return str(_xml(root, image_id)), '<xmin> is empty'


REFUSED = [_missing_image, _garbage_image, _gif_image, _size_disagrees, _swapped_corners,
           _zero_size, _far_outside, _unknown_class, _empty_coordinate]


@pytest.mark.parametrize('damage', REFUSED, ids=[f.__name__[1:] for f in REFUSED])
def test_training_refuses_with_one_line_before_training(tmp_path, voc_root, damage):
    """Issue 15's second failure (a missing JPEG) and the other refusals, on a training
    image."""
    root = _copy(voc_root, tmp_path)
    where, problem = damage(root, _ids(root, 'trainval')[3])
    prefix = tmp_path / 'run'
    proc = run_script('train_ssd.py', '--network', STUDENT, '--dataset-root', root,
                      '--save-prefix', prefix, *FAST)
    assert_one_line_error(proc, where, problem)
    assert proc.stdout == '' and not os.path.exists(str(prefix) + '_train.log')


def test_evaluation_checks_its_images_and_the_check_can_be_skipped(tmp_path, voc_root,
                                                                   teacher_params):
    root = _copy(voc_root, tmp_path)
    image_id = _ids(root, 'test')[2]
    # Trusted data: the check would refuse the size, but boxes lie inside both sizes.
    _size_disagrees(root, image_id)
    proc = run_script('eval_voc.py', '--params', teacher_params, '--dataset-root', root,
                      '--skip-data-check')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.fullmatch(r'mAP=[0-9.]+', proc.stdout.strip().splitlines()[-1])
    where, problem = _missing_image(root, image_id)
    proc = run_script('eval_voc.py', '--params', teacher_params, '--dataset-root', root)
    assert_one_line_error(proc, where, problem)
    assert proc.stdout == ''


@pytest.fixture(scope='module')
def coco_tree(tmp_path_factory):
    from gankd.data.synthetic import make_synthetic_voc
    root = tmp_path_factory.mktemp('coco') / 'synth'
    info = make_synthetic_voc(str(root), num_train=8, num_test=4, image_size=96, seed=3,
                              coco_json=True)
    return root, info


@pytest.fixture(scope='module')
def coco_params(tmp_path_factory, coco_tree):
    from gankd.detectors.detector import save_detector
    from gankd.detectors.ssd.model import build_ssd, ssd_config
    cfg = ssd_config(STUDENT, DATA_SHAPE, coco_tree[1]['classes'], dataset='coco')
    path = str(tmp_path_factory.mktemp('det') / 'random.params')
    save_detector(path, build_ssd(**cfg), {'kind': 'ssd', 'name': 'random', 'ssd': cfg})
    return path


def _coco_size_disagrees(anno, root):
    anno['images'][1]['height'] = 90
    return str(root / anno['images'][1]['file_name']), 'says the image is 96x90 but'


def _coco_box_outside(anno, root):
    anno['annotations'][0]['bbox'] = [50, 50, 80, 10]
    return 'annotation {} (image {}) has a box outside the 96x96 image'.format(
        anno['annotations'][0]['id'], anno['annotations'][0]['image_id']), 'bbox [50, 50, 80, 10]'


def _coco_negative_size(anno, root):
    anno['annotations'][0]['bbox'][2] = -3
    return 'has a negative width or height', str(anno['annotations'][0]['id'])


def _coco_gif(anno, root):
    path = root / anno['images'][0]['file_name']
    Image.open(path).save(path, 'GIF')
    return str(path), 'cannot be decoded (a GIF file)'


COCO_REFUSED = [_coco_size_disagrees, _coco_box_outside, _coco_negative_size, _coco_gif]


@pytest.mark.parametrize('damage', COCO_REFUSED, ids=[f.__name__[1:] for f in COCO_REFUSED])
def test_coco_evaluation_refuses_with_one_line(tmp_path, coco_tree, coco_params, damage):
    src, _ = coco_tree
    root = tmp_path / 'coco'
    shutil.copytree(src, root)
    path = root / 'annotations' / 'instances_test.json'
    anno = json.loads(path.read_text())
    needles = damage(anno, root)
    path.write_text(json.dumps(anno))
    proc = run_script('eval_coco.py', '--params', coco_params, '--dataset-root', root)
    assert_one_line_error(proc, *needles)
    assert proc.stdout == ''


def test_coco_zero_size_box_is_ignored_as_in_gluoncv(coco_tree, tmp_path):
    """MS COCO 2017's train set has two boxes of height 0; GluonCV ignores them."""
    from gankd.data.coco import coco_dataset
    from gankd.data.check import check_dataset
    src, info = coco_tree
    root = tmp_path / 'coco'
    shutil.copytree(src, root)
    path = root / 'annotations' / 'instances_train.json'
    anno = json.loads(path.read_text())
    anno['annotations'][0]['bbox'][3] = 0
    path.write_text(json.dumps(anno))
    train = coco_dataset(str(root), 'instances_train', train=True)
    check_dataset(train)
    assert sum(int((np.asarray(l)[:, 4] >= 0).sum()) for l in train._labels) == (
        info['num_boxes_train'] - 1)


def test_detection_loss_trains_background_images_and_leaves_the_others_as_gluoncv():
    """An image whose anchors are all negative mines hard negatives like an image with one
    object (GluonCV's default mines none for it); images with objects get GluonCV's
    default loss exactly."""
    import mxnet as mx
    import numpy as np
    from gluoncv.loss import SSDMultiBoxLoss
    from gankd.detectors.ssd.model import ssd_loss
    rng = np.random.RandomState(0)
    anchors, classes = 50, 4
    cls_pred = mx.nd.array(rng.randn(3, anchors, classes))
    box_pred = mx.nd.array(rng.randn(3, anchors * 4))
    cls_t = np.zeros((3, anchors))
    cls_t[0, [3, 7]] = [1, 2]   # two objects
    cls_t[1, 11] = 3            # one object
    box_t = mx.nd.array(rng.randn(3, anchors, 4) * (cls_t[..., None] > 0))
    # (sum, class, box) losses, one array per device, one value per image.
    ours = [l[0].asnumpy() for l in ssd_loss()([cls_pred], [box_pred], [mx.nd.array(cls_t)],
                                               [box_t])]
    theirs = [l[0].asnumpy() for l in SSDMultiBoxLoss()([cls_pred], [box_pred],
                                                         [mx.nd.array(cls_t)], [box_t])]
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a[:2], b[:2])  # the images with objects
    assert theirs[1][2] == 0 and ours[1][2] > 0      # the background image's class loss
    assert ours[2][2] == 0                           # and no box loss for it
