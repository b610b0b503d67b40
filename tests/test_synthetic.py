"""Behaviour tests for gankd.data.synthetic and scripts/make_synthetic_voc.py."""
import hashlib
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gankd.data.synthetic import (  # noqa: E402
    DEFAULT_CLASSES, make_synthetic_voc)
from gankd.data.voc import read_classes as read_class_names

SCRIPT = REPO / "scripts" / "make_synthetic_voc.py"
SMALL = dict(num_train=10, num_test=6, image_size=96, seed=3)


def _hashes(root: Path) -> dict:
    """Relative path -> sha256 of every file below ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _ids(root: Path, split: str) -> list:
    text = (root / "VOC2007" / "ImageSets" / "Main" / f"{split}.txt").read_text()
    return text.split()


def _objects(root: Path, image_id: str) -> list:
    xml = ET.parse(root / "VOC2007" / "Annotations" / f"{image_id}.xml").getroot()
    return list(xml.iter("object"))


def _untruncated_side(obj) -> int:
    """Longer box side of an object, or 0 when it is cut by the border."""
    b = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
    return max(b[2] - b[0], b[3] - b[1]) + 1 if obj.findtext("truncated") == "0" else 0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "voc"
    info = make_synthetic_voc(out, coco_json=True, **SMALL)
    return out, info


@pytest.fixture(scope="module")
def stats_dataset(tmp_path_factory):
    """More, smaller images: enough objects for distribution checks."""
    out = tmp_path_factory.mktemp("synth_stats") / "voc"
    make_synthetic_voc(out, num_train=150, num_test=1, image_size=64, seed=11)
    return out


def test_layout(dataset):
    out, info = dataset
    voc = out / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        assert (voc / sub).is_dir()
    train, test = _ids(out, "trainval"), _ids(out, "test")
    assert len(train) == SMALL["num_train"] and len(test) == SMALL["num_test"]
    assert not set(train) & set(test)
    for image_id in train + test:
        assert len(image_id) == 6 and image_id.isdigit()
        assert (voc / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert (voc / "Annotations" / f"{image_id}.xml").is_file()
    assert read_class_names(out) == list(DEFAULT_CLASSES) == info["classes"]
    assert info["root"] == str(out)
    assert info["num_train"] == SMALL["num_train"]
    assert info["num_test"] == SMALL["num_test"]


@pytest.mark.parametrize("split", ["trainval", "test"])
def test_gluoncv_voc_detection_loads_everything(dataset, split):
    VOCDetection = pytest.importorskip("gluoncv.data").VOCDetection
    out, _ = dataset
    names = read_class_names(out)

    class SynthVOC(VOCDetection):
        CLASSES = tuple(names)

    ds = SynthVOC(root=str(out), splits=[(2007, split)])
    assert len(ds) == len(_ids(out, split))
    size = SMALL["image_size"]
    total = 0
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.shape == (size, size, 3)
        assert label.ndim == 2 and label.shape[1] == 6 and label.shape[0] >= 1
        xmin, ymin, xmax, ymax, cls, difficult = label.T
        assert np.all((0 <= xmin) & (xmin < xmax) & (xmax <= size))
        assert np.all((0 <= ymin) & (ymin < ymax) & (ymax <= size))
        assert np.all((cls >= 0) & (cls < len(names)) & (cls == np.round(cls)))
        assert set(difficult.tolist()) <= {0.0, 1.0}
        # No box was silently rejected by GluonCV's validation.
        assert label.shape[0] == len(_objects(out, ds._items[i][1]))
        total += label.shape[0]
    assert total >= len(ds)


def test_xml_fields(dataset):
    out, _ = dataset
    size = SMALL["image_size"]
    for image_id in _ids(out, "trainval") + _ids(out, "test"):
        root = ET.parse(out / "VOC2007" / "Annotations" / f"{image_id}.xml").getroot()
        assert root.findtext("filename") == f"{image_id}.jpg"
        assert root.findtext("size/width") == str(size)
        assert root.findtext("size/height") == str(size)
        assert root.findtext("size/depth") == "3"
        objs = list(root.iter("object"))
        assert objs, "every image has at least one labelled object"
        for obj in objs:
            assert obj.findtext("name") in DEFAULT_CLASSES
            assert obj.findtext("pose") == "Unspecified"
            assert obj.findtext("truncated") in ("0", "1")
            assert obj.findtext("difficult") in ("0", "1")
            b = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            # 1-based inclusive pixel coordinates.
            assert 1 <= b[0] < b[2] <= size and 1 <= b[1] < b[3] <= size


def test_distribution_of_objects(stats_dataset):
    """Sizes span small to large; truncation, occlusion and all classes occur."""
    out = stats_dataset
    size = 64
    sides, truncated, difficult, names, per_image = [], [], [], set(), []
    for image_id in _ids(out, "trainval"):
        objs = _objects(out, image_id)
        per_image.append(len(objs))
        for obj in objs:
            sides += [_untruncated_side(obj)] if _untruncated_side(obj) else []
            truncated.append(int(obj.findtext("truncated")))
            difficult.append(int(obj.findtext("difficult")))
            names.add(obj.findtext("name"))
    assert names == set(DEFAULT_CLASSES)
    assert min(per_image) >= 1 and max(per_image) <= 6 and max(per_image) >= 4
    assert min(sides) <= 0.12 * size and max(sides) >= 0.45 * size
    assert 0 < sum(truncated) < len(truncated)
    assert 0 < sum(difficult) < 0.3 * len(difficult)


def test_same_seed_is_byte_identical(tmp_path, dataset):
    out, _ = dataset
    again = tmp_path / "again"
    make_synthetic_voc(again, coco_json=True, **SMALL)
    assert _hashes(again) == _hashes(out)


def test_different_seed_differs(tmp_path, dataset):
    out, _ = dataset
    other = tmp_path / "other"
    make_synthetic_voc(other, coco_json=True, **dict(SMALL, seed=SMALL["seed"] + 1))
    a, b = _hashes(out), _hashes(other)
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert sorted(jpgs) == sorted(k for k in b if k.endswith(".jpg"))
    assert all(a[k] != b[k] for k in jpgs)


def test_test_split_independent_of_num_train(tmp_path, dataset):
    out, _ = dataset
    other = tmp_path / "more_train"
    make_synthetic_voc(other, **dict(SMALL, num_train=SMALL["num_train"] + 7))
    a, b = _hashes(out), _hashes(other)
    test_ids = _ids(out, "test")
    assert _ids(other, "test") == test_ids
    for image_id in test_ids:
        for rel in (f"VOC2007/JPEGImages/{image_id}.jpg", f"VOC2007/Annotations/{image_id}.xml"):
            assert a[rel] == b[rel]
    # The shared train prefix is unchanged too.
    for image_id in _ids(out, "trainval"):
        rel = f"VOC2007/JPEGImages/{image_id}.jpg"
        assert a[rel] == b[rel]


def test_rerun_replaces_previous_dataset(tmp_path):
    out = tmp_path / "voc"
    make_synthetic_voc(out, num_train=6, num_test=2, image_size=64)
    make_synthetic_voc(out, num_train=3, num_test=2, image_size=64)
    assert len(list((out / "VOC2007" / "JPEGImages").glob("*.jpg"))) == 5
    assert len(list((out / "VOC2007" / "Annotations").glob("*.xml"))) == 5
    assert not (out / "annotations").exists()


def test_custom_classes(tmp_path):
    out = tmp_path / "voc"
    info = make_synthetic_voc(out, num_train=8, num_test=2, image_size=64,
                              classes=["hexagon", "ring"])
    assert read_class_names(out) == ["hexagon", "ring"] == info["classes"]
    for image_id in _ids(out, "trainval"):
        assert {o.findtext("name") for o in _objects(out, image_id)} <= {"hexagon", "ring"}


@pytest.mark.parametrize("kwargs", [
    dict(num_train=0), dict(num_test=-1), dict(num_train=2.5), dict(num_train=True),
    dict(image_size=63), dict(seed=-1), dict(classes=[]), dict(classes=["blob"]),
    dict(classes=["circle", "circle"]), dict(classes="circle"),
])
def test_bad_arguments_raise_value_error(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_synthetic_voc(tmp_path / "voc", **dict(dict(num_train=2, num_test=1,
                                                         image_size=64), **kwargs))
    assert not (tmp_path / "voc" / "VOC2007").exists()


def test_refuses_foreign_non_empty_dir(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        make_synthetic_voc(tmp_path, num_train=2, num_test=1, image_size=64)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def _run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=120, cwd=str(REPO))


@pytest.mark.parametrize("args", [
    ["--num-train", "0"], ["--num-test", "-3"], ["--image-size", "32"],
    ["--seed", "abc"], ["--classes", "circle,blob"], [],
])
def test_script_bad_input_one_line_exit_2(tmp_path, args):
    if args != []:
        args = ["--out", str(tmp_path / "voc"), *args]
    res = _run_script(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_script_success(tmp_path):
    out = tmp_path / "voc"
    res = _run_script("--out", str(out), "--num-train", "3", "--num-test", "2",
                      "--image-size", "64", "--seed", "5", "--coco-json")
    assert res.returncode == 0, res.stderr
    assert len(_ids(out, "trainval")) == 3 and len(_ids(out, "test")) == 2
    assert (out / "annotations" / "instances_train.json").is_file()
    # Same flags through the library give the same bytes.
    lib = tmp_path / "lib"
    make_synthetic_voc(lib, num_train=3, num_test=2, image_size=64, seed=5, coco_json=True)
    assert _hashes(lib) == _hashes(out)


@pytest.mark.parametrize("split,voc_split", [("train", "trainval"), ("test", "test")])
def test_coco_json_matches_xml(dataset, split, voc_split):
    coco_mod = pytest.importorskip("pycocotools.coco")
    out, info = dataset
    path = out / "annotations" / f"instances_{split}.json"
    assert info["coco_json"][split] == str(path)
    coco = coco_mod.COCO(str(path))
    ids = _ids(out, voc_split)
    assert len(coco.getImgIds()) == len(ids)
    cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert sorted(cats.values()) == sorted(DEFAULT_CLASSES)
    n_xml = 0
    for img in coco.loadImgs(coco.getImgIds()):
        assert (out / img["file_name"]).is_file()
        image_id = Path(img["file_name"]).stem
        objs = _objects(out, image_id)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert len(anns) == len(objs)
        for ann, obj in zip(anns, objs):
            b = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert ann["bbox"] == [b[0] - 1, b[1] - 1, b[2] - b[0] + 1, b[3] - b[1] + 1]
            assert cats[ann["category_id"]] == obj.findtext("name")
            assert ann["iscrowd"] == 0 and 0 < ann["area"] <= ann["bbox"][2] * ann["bbox"][3]
        n_xml += len(objs)
    assert len(coco.getAnnIds()) == n_xml


def test_easy_difficulty_has_few_large_objects(tmp_path):
    """``difficulty='easy'``: at most three objects per image, none smaller than about a
    quarter of the image side (unless cut by the border), recorded in the metadata."""
    out = tmp_path / "easy"
    size = 64
    make_synthetic_voc(out, num_train=60, num_test=1, image_size=size, seed=11,
                       difficulty="easy")
    per_image, sides = [], []
    for image_id in _ids(out, "trainval"):
        objs = _objects(out, image_id)
        per_image.append(len(objs))
        sides += [_untruncated_side(o) for o in objs if _untruncated_side(o)]
    assert min(per_image) >= 1 and max(per_image) <= 3
    assert min(sides) >= 0.15 * size
    assert '"difficulty": "easy"' in (out / "synthetic_meta.json").read_text()
    with pytest.raises(ValueError, match="difficulty"):
        make_synthetic_voc(tmp_path / "bad", difficulty="hard", **SMALL)
