"""Synthetic shape-detection dataset in the Pascal VOC devkit layout.

The generated data is the default dataset of the project: small enough to
train SSD detectors from scratch on a couple of CPU cores, yet hard enough
that a larger network trained longer clearly beats a small one.

Design choices (all of them to keep the task *fair*):

* The class is defined by the **shape** of an object only.  Colour and
  texture (solid, stripes, checker, dots, noise) are drawn at random for
  every object, and the same textures and colours are used by the
  background and by the distractors, so no shortcut other than shape exists.
* Background clutter (gradients, low-frequency noise, textures) and
  distractor strokes, arcs and elongated blobs that are not any of the
  classes.
* Object sizes from ~6 % to ~60 % of the image side (log-uniform, so small
  objects are frequent), 1-6 objects per image, partial occlusion (later
  objects are painted over earlier ones) and truncation at the image border.
* Mild blur, Gaussian pixel noise and JPEG compression (quality 90).

Every image is drawn from its own random stream, seeded from
``(seed, split, index)``.  The output is therefore byte-identical for the same
arguments, and the test split does not change when ``num_train`` changes (and
vice versa).  Only NumPy and OpenCV are used.

Layout written below ``out_dir``::

    VOC2007/JPEGImages/NNNNNN.jpg
    VOC2007/Annotations/NNNNNN.xml
    VOC2007/ImageSets/Main/trainval.txt
    VOC2007/ImageSets/Main/test.txt
    classes.txt
    synthetic_meta.json                      (generation arguments)
    annotations/instances_train.json         (only with ``coco_json=True``)
    annotations/instances_test.json          (only with ``coco_json=True``)

``out_dir`` is the devkit root, i.e. it is what is passed as ``root`` to
``gluoncv.data.VOCDetection`` together with ``splits=[(2007, 'trainval')]``
or ``splits=[(2007, 'test')]``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    "DEFAULT_CLASSES",
    "SHAPE_NAMES",
    "TEXTURE_NAMES",
    "make_synthetic_voc",
]

#: Every shape the generator can draw; any subset may be used as classes.
SHAPE_NAMES: Tuple[str, ...] = (
    "circle", "square", "triangle", "cross", "ring", "star", "hexagon")
#: The six classes used when ``classes`` is not given.  Hexagon is left out
#: of the default because at a few pixels it is nearly a circle.
DEFAULT_CLASSES: Tuple[str, ...] = (
    "circle", "square", "triangle", "cross", "ring", "star")
#: Fill patterns, shared by objects, distractors and the background.
TEXTURE_NAMES: Tuple[str, ...] = ("solid", "stripes", "checker", "dots", "noise")

YEAR_DIR = "VOC2007"
META_FILE = "synthetic_meta.json"
FORMAT_VERSION = 1

# Image ids: train uses 000001.., test 500001.., so the two splits never
# collide and neither id range depends on the size of the other split.
_TEST_ID_OFFSET = 500000
_MAX_PER_SPLIT = 499999
_SPLIT_CODES = {"train": 1, "test": 2}

MIN_IMAGE_SIZE = 64
MAX_IMAGE_SIZE = 4096
MIN_OBJ_FRAC, MAX_OBJ_FRAC = 0.06, 0.60   # object diameter / image side
MIN_OBJ_PIXELS = 6.0                      # never draw below this diameter
MAX_OBJECTS = 6
MIN_INSIDE_FRAC = 0.5      # resample placement if less of the shape is inside
DIFFICULT_OCCLUSION = 0.6  # occluded fraction above which difficult=1
DROP_VISIBLE = 0.1         # visible fraction below which the box is dropped
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Difficulty:
    """How hard the images are: object count and size range, and whether clutter
    (strokes, blobs, lines over the objects) is drawn."""

    max_objects: int
    min_obj_frac: float
    max_obj_frac: float
    clutter: bool


DIFFICULTIES = {
    # The default: small objects among clutter, occlusion and truncation.
    "standard": Difficulty(MAX_OBJECTS, MIN_OBJ_FRAC, MAX_OBJ_FRAC, True),
    # For detectors trained from scratch in minutes (CPU benchmarks): at most three
    # objects of a quarter of the image side or more, no clutter.
    "easy": Difficulty(3, 0.25, MAX_OBJ_FRAC, False),
}


# --------------------------------------------------------------------------
# Argument handling
# --------------------------------------------------------------------------
def _check_int(name: str, value, low: int, high: int) -> int:
    """Return ``value`` as int or raise ``ValueError`` if out of range."""
    # bool is an int subclass; True as a count is almost surely a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def _check_classes(classes: Optional[Sequence[str]]) -> Tuple[str, ...]:
    """Validate the class list (names from :data:`SHAPE_NAMES`, unique)."""
    if classes is None:
        return DEFAULT_CLASSES
    if isinstance(classes, str):
        raise ValueError("classes must be a sequence of shape names, not a string")
    names = tuple(classes)
    if not names:
        raise ValueError("classes must not be empty")
    unknown = [c for c in names if c not in SHAPE_NAMES]
    if unknown:
        raise ValueError(
            f"unknown class name(s) {unknown}; choose from {list(SHAPE_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"classes must be unique, got {list(names)}")
    return names


def _prepare_out_dir(out: Path) -> None:
    """Create ``out`` or clear a previous synthetic dataset inside it.

    A directory that is not empty and was not written by this module is
    refused, so a typo in ``--out`` can never delete unrelated data.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir exists and is not a directory: {out}")
    if out.is_dir() and any(out.iterdir()):
        if not (out / META_FILE).is_file():
            raise ValueError(
                f"out_dir {out} is not empty and holds no {META_FILE}; "
                "refusing to overwrite it")
        # Stale images from a larger earlier run would otherwise survive.
        for sub in (YEAR_DIR, "annotations"):
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
        for name in ("classes.txt", META_FILE):
            if (out / name).exists():
                (out / name).unlink()
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        (out / YEAR_DIR / sub).mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------
# Colours and textures
# --------------------------------------------------------------------------
def _random_color(rng: np.random.RandomState) -> np.ndarray:
    """Uniform random BGR colour as float32 (colour carries no class info)."""
    return rng.uniform(0.0, 255.0, size=3).astype(np.float32)


def _rotated_coords(rng, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel grid rotated by a random angle, so patterns have any orientation."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0.0, math.pi)
    c, s = math.cos(ang), math.sin(ang)
    return xx * c + yy * s, -xx * s + yy * c


def _smooth_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled."""
    gh, gw = max(2, h // cells + 2), max(2, w // cells + 2)
    grid = rng.uniform(0.0, 1.0, size=(gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def _texture_mix(rng, kind: str, h: int, w: int) -> np.ndarray:
    """Mixing weight map in [0, 1] of shape (h, w) for a texture ``kind``.

    The texture is ``c1 * (1 - m) + c2 * m`` for two colours ``c1``, ``c2``.
    """
    if kind == "solid":
        return np.zeros((h, w), np.float32)
    if kind == "stripes":
        u, _ = _rotated_coords(rng, h, w)
        period = rng.uniform(3.0, 12.0)
        duty = rng.uniform(0.3, 0.7)
        phase = rng.uniform(0.0, 1.0)
        return (np.mod(u / period + phase, 1.0) < duty).astype(np.float32)
    if kind == "checker":
        u, v = _rotated_coords(rng, h, w)
        cell = rng.uniform(3.0, 12.0)
        return (np.mod(np.floor(u / cell) + np.floor(v / cell), 2.0)).astype(np.float32)
    if kind == "dots":
        u, v = _rotated_coords(rng, h, w)
        period = rng.uniform(4.0, 12.0)
        radius = rng.uniform(0.2, 0.4) * period
        du = np.mod(u, period) - period / 2
        dv = np.mod(v, period) - period / 2
        return (du * du + dv * dv < radius * radius).astype(np.float32)
    if kind == "noise":
        low = _smooth_noise(rng, h, w, cells=int(rng.randint(3, 10)))
        fine = rng.uniform(0.0, 1.0, size=(h, w)).astype(np.float32)
        return (0.7 * low + 0.3 * fine).clip(0.0, 1.0)
    raise ValueError(f"unknown texture {kind!r}")


def _texture(rng, h: int, w: int, c1: np.ndarray, c2: np.ndarray,
             kind: Optional[str] = None) -> np.ndarray:
    """Random texture patch (h, w, 3) float32 in BGR."""
    if kind is None:
        kind = TEXTURE_NAMES[rng.randint(len(TEXTURE_NAMES))]
    m = _texture_mix(rng, kind, h, w)[..., None]
    return c1 * (1.0 - m) + c2 * m


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------
def _regular_polygon(n: int, radius: float = 1.0) -> np.ndarray:
    """Vertices of a regular ``n``-gon of circumradius ``radius``."""
    t = np.arange(n) * (2 * math.pi / n) - math.pi / 2
    return np.stack([np.cos(t), np.sin(t)], axis=1) * radius


def _unit_shape(name: str, rng) -> List[Tuple[np.ndarray, int]]:
    """Polygons of a shape of radius ~1 centred at 0.

    Returns a list of ``(vertices, value)``; polygons are filled in order
    with ``value`` (1 = inside, 0 = hole), which is how the ring gets its hole.
    Shape proportions are jittered a little so that every class shows
    intra-class variation, but never enough to look like another class.
    """
    if name == "circle":
        return [(_regular_polygon(64), 1)]
    if name == "square":
        # Circumradius 1 makes a square of side sqrt(2); scale so the square
        # covers a similar area to the other shapes of the same "size".
        return [(_regular_polygon(4) * 1.15, 1)]
    if name == "triangle":
        return [(_regular_polygon(3) * 1.1, 1)]
    if name == "hexagon":
        return [(_regular_polygon(6), 1)]
    if name == "ring":
        inner = rng.uniform(0.45, 0.65)
        return [(_regular_polygon(64), 1), (_regular_polygon(64, inner), 0)]
    if name == "star":
        inner = rng.uniform(0.38, 0.5)
        outer = _regular_polygon(5)
        t = np.arange(5) * (2 * math.pi / 5) - math.pi / 2 + math.pi / 5
        inner_pts = np.stack([np.cos(t), np.sin(t)], axis=1) * inner
        pts = np.empty((10, 2))
        pts[0::2], pts[1::2] = outer, inner_pts
        return [(pts, 1)]
    if name == "cross":
        a = rng.uniform(0.28, 0.38)  # half arm width
        pts = np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
                        [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]])
        return [(pts, 1)]
    raise ValueError(f"unknown shape {name!r}")


def _irregular_blob(rng) -> List[Tuple[np.ndarray, int]]:
    """Elongated wobbly blob used as a distractor (never class-like).

    The strong elongation (aspect 2.5-4) and the random low harmonics keep it
    from resembling a circle or any of the regular polygons.
    """
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    r = np.ones_like(t)
    for k in (2, 3, 4):
        r += rng.uniform(0.08, 0.22) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    aspect = rng.uniform(2.5, 4.0)
    pts = np.stack([np.cos(t) * r, np.sin(t) * r / aspect], axis=1)
    return [(pts, 1)]


@dataclass
class _Mask:
    """A shape rasterised on its own local canvas.

    ``x0``, ``y0`` are the image coordinates of the local canvas' top-left
    pixel; the canvas may reach beyond the image (truncation).
    """

    mask: np.ndarray  # bool (h, w), the full (amodal, unclipped) shape
    x0: int
    y0: int


def _rasterize(polys: List[Tuple[np.ndarray, int]], cx: float, cy: float,
               radius: float, angle: float, aspect: float) -> _Mask:
    """Scale, stretch, rotate and fill polygons around centre (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    stretch = np.array([math.sqrt(aspect), 1.0 / math.sqrt(aspect)])
    moved = [((p * stretch * radius) @ rot.T, v) for p, v in polys]
    ext = int(math.ceil(max(np.abs(p).max() for p, _ in moved))) + 2
    size = 2 * ext + 1
    x0, y0 = int(math.floor(cx)) - ext, int(math.floor(cy)) - ext
    off = np.array([cx - x0, cy - y0])
    canvas = np.zeros((size, size), np.uint8)
    shift = 4  # sub-pixel vertex precision (1/16 px) for smooth small shapes
    for p, v in moved:
        pts = np.round((p + off) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(canvas, [pts], int(v), lineType=cv2.LINE_8, shift=shift)
    return _Mask(canvas.astype(bool), x0, y0)


def _clip(m: _Mask, size: int) -> Optional[Tuple[slice, slice, np.ndarray]]:
    """Part of a local mask inside a ``size`` x ``size`` image.

    Returns ``(rows, cols, mask_inside)`` in image coordinates or None if
    the canvas misses the image entirely.
    """
    h, w = m.mask.shape
    ya, yb = max(m.y0, 0), min(m.y0 + h, size)
    xa, xb = max(m.x0, 0), min(m.x0 + w, size)
    if ya >= yb or xa >= xb:
        return None
    sub = m.mask[ya - m.y0:yb - m.y0, xa - m.x0:xb - m.x0]
    return slice(ya, yb), slice(xa, xb), sub


def _paint(img: np.ndarray, rows: slice, cols: slice, sub: np.ndarray,
           tex: np.ndarray) -> None:
    """Copy ``tex`` into ``img[rows, cols]`` where ``sub`` is set."""
    region = img[rows, cols]
    region[sub] = tex[sub]


# --------------------------------------------------------------------------
# Background and distractors
# --------------------------------------------------------------------------
def _background(rng, size: int) -> np.ndarray:
    """Gradient + low-frequency colour noise + optional faint texture."""
    c1, c2 = _random_color(rng), _random_color(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ang = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(ang) + yy * math.sin(ang))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    amp = rng.uniform(10.0, 40.0)
    for ch in range(3):
        img[..., ch] += amp * (_smooth_noise(rng, size, size, int(rng.randint(16, 64))) - 0.5)
    if rng.uniform() < 0.5:
        # Same textures as the objects so texture alone never marks an object.
        alpha = rng.uniform(0.15, 0.4)
        tex = _texture(rng, size, size, _random_color(rng), _random_color(rng))
        img = img * (1 - alpha) + tex * alpha
    return img.astype(np.float32)


def _draw_stroke(rng, img: np.ndarray, size: int) -> None:
    """Draw one open stroke: a line, a polyline scribble or an open arc."""
    color = tuple(float(v) for v in _random_color(rng))
    thick = int(rng.randint(1, 4))
    kind = rng.randint(3)
    if kind == 0:
        p = rng.uniform(-0.1 * size, 1.1 * size, size=(2, 2)).astype(np.int32)
        cv2.line(img, tuple(map(int, p[0])), tuple(map(int, p[1])), color, thick)
    elif kind == 1:
        n = int(rng.randint(3, 7))
        start = rng.uniform(0, size, size=2)
        steps = rng.normal(0, 0.12 * size, size=(n - 1, 2))
        pts = np.vstack([start, start + np.cumsum(steps, axis=0)]).astype(np.int32)
        cv2.polylines(img, [pts], False, color, thick)
    else:
        # Arcs are kept well short of closed so they never read as rings.
        centre = tuple(int(v) for v in rng.uniform(0, size, size=2))
        axes = tuple(int(v) for v in rng.uniform(0.04, 0.3, size=2) * size + 2)
        start = rng.uniform(0, 360)
        span = rng.uniform(40, 220)
        cv2.ellipse(img, centre, axes, rng.uniform(0, 180), start, start + span,
                    color, thick)


def _draw_blob(rng, img: np.ndarray, size: int) -> None:
    """Draw one textured elongated blob distractor."""
    length = rng.uniform(0.04, 0.18) * size
    m = _rasterize(_irregular_blob(rng), rng.uniform(0, size), rng.uniform(0, size),
                   length, rng.uniform(0, math.pi), 1.0)
    clipped = _clip(m, size)
    if clipped is None:
        return
    rows, cols, sub = clipped
    tex = _texture(rng, sub.shape[0], sub.shape[1],
                   _random_color(rng), _random_color(rng))
    _paint(img, rows, cols, sub, tex)


def _distractors(rng, img: np.ndarray, size: int) -> None:
    """Clutter under the objects: strokes and blobs, count scales with area."""
    scale = (size / 256.0) ** 2
    for _ in range(int(rng.randint(2, 7) * max(scale, 0.5))):
        _draw_stroke(rng, img, size)
    for _ in range(int(rng.randint(1, 4) * max(scale, 0.5))):
        _draw_blob(rng, img, size)


# --------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------
@dataclass
class _Object:
    """Annotation of one drawn object (0-based inclusive pixel box)."""

    cls: int
    x1: int
    y1: int
    x2: int
    y2: int
    area: int          # in-image amodal mask pixels
    truncated: int
    difficult: int


def _place_object(rng, name: str, size: int, level: Difficulty = DIFFICULTIES["standard"]):
    """Sample pose and position until enough of the shape is inside the image.

    Returns ``(rows, cols, sub, truncated)`` or None after too many tries.
    """
    lo = max(level.min_obj_frac * size, MIN_OBJ_PIXELS)
    hi = max(level.max_obj_frac * size, lo)
    diameter = math.exp(rng.uniform(math.log(lo), math.log(hi)))  # log-uniform
    angle = rng.uniform(0, 2 * math.pi)
    aspect = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    polys = _unit_shape(name, rng)
    # Keeping the centre a little inside the border makes truncation common
    # for large objects (as in real photos) but rare for small ones.
    margin = min(0.3 * diameter, size / 2.0)
    for attempt in range(20):
        if attempt < 19:
            cx, cy = rng.uniform(margin, size - margin, size=2)
        else:
            cx = cy = size / 2.0  # last resort: centred always fits
        m = _rasterize(polys, cx, cy, diameter / 2.0, angle, aspect)
        clipped = _clip(m, size)
        if clipped is None:
            continue
        rows, cols, sub = clipped
        inside, total = int(sub.sum()), int(m.mask.sum())
        if total == 0 or inside < MIN_INSIDE_FRAC * total:
            continue
        ys, xs = np.nonzero(sub.any(axis=1))[0], np.nonzero(sub.any(axis=0))[0]
        if ys[-1] - ys[0] < 1 or xs[-1] - xs[0] < 1:
            continue  # VOC needs xmin < xmax, so at least 2 px each way
        return rows, cols, sub, int(inside < total)
    return None


def _object_colors(rng, img, rows, cols, sub):
    """Pick two texture colours that both stand out from the local background.

    Without this a random colour can match its surroundings and the object
    becomes invisible, which would make labels noise rather than a hard task.
    """
    local = img[rows, cols][sub].mean(axis=0)
    best, best_d = None, -1.0
    for _ in range(20):
        c1, c2 = _random_color(rng), _random_color(rng)
        d = min(np.linalg.norm(c1 - local), np.linalg.norm(c2 - local))
        if d > best_d:
            best, best_d = (c1, c2), d
        if d >= 60.0:
            break
    return best


def _render_image(rng, size: int, classes: Sequence[str],
                  level: Difficulty = DIFFICULTIES["standard"]
                  ) -> Tuple[np.ndarray, List[_Object]]:
    """Render one BGR uint8 image and its annotations."""
    img = _background(rng, size)
    if level.clutter:
        _distractors(rng, img, size)

    owner = np.full((size, size), -1, np.int16)  # topmost object per pixel
    placed = []  # (cls, rows, cols, sub, truncated)
    for _ in range(int(rng.randint(1, level.max_objects + 1))):
        cls = int(rng.randint(len(classes)))
        pose = _place_object(rng, classes[cls], size, level)
        if pose is None:
            continue
        rows, cols, sub, truncated = pose
        c1, c2 = _object_colors(rng, img, rows, cols, sub)
        tex = _texture(rng, sub.shape[0], sub.shape[1], c1, c2)
        _paint(img, rows, cols, sub, tex)
        owner[rows, cols][sub] = len(placed)
        placed.append((cls, rows, cols, sub, truncated))

    # A thin line or two over everything so "on top" is not a cue either;
    # they are too thin to count as occlusion.
    for _ in range(int(rng.randint(0, 3)) if level.clutter else 0):
        p = rng.uniform(0, size, size=(2, 2)).astype(np.int32)
        cv2.line(img, tuple(map(int, p[0])), tuple(map(int, p[1])),
                 tuple(float(v) for v in _random_color(rng)), 1)

    visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(placed))
    objects = []
    for i, (cls, rows, cols, sub, truncated) in enumerate(placed):
        area = int(sub.sum())
        vis = visible[i] / area
        if vis < DROP_VISIBLE:
            continue  # a sliver nobody could recognise; not a fair label
        ys = np.nonzero(sub.any(axis=1))[0]
        xs = np.nonzero(sub.any(axis=0))[0]
        objects.append(_Object(
            cls=cls, x1=cols.start + int(xs[0]), y1=rows.start + int(ys[0]),
            x2=cols.start + int(xs[-1]), y2=rows.start + int(ys[-1]),
            area=area, truncated=truncated,
            difficult=int(1.0 - vis > DIFFICULT_OCCLUSION)))

    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9))
    img += rng.normal(0.0, rng.uniform(2.0, 8.0), size=img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------
def _voc_xml(image_id: str, size: int, objects: List[_Object],
             classes: Sequence[str]) -> bytes:
    """Standard Pascal VOC annotation (1-based inclusive pixel boxes)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = YEAR_DIR
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "gankd synthetic shapes"
    sz = ET.SubElement(root, "size")
    for tag, val in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(sz, tag).text = str(val)
    ET.SubElement(root, "segmented").text = "0"
    for o in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[o.cls]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(o.truncated)
        ET.SubElement(obj, "difficult").text = str(o.difficult)
        box = ET.SubElement(obj, "bndbox")
        for tag, val in (("xmin", o.x1), ("ymin", o.y1), ("xmax", o.x2), ("ymax", o.y2)):
            ET.SubElement(box, tag).text = str(val + 1)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def _coco_dict(records, classes: Sequence[str], size: int) -> Dict:
    """COCO instances dict for one split from ``(int_id, str_id, objects)``."""
    images, annotations = [], []
    for int_id, image_id, objects in records:
        images.append({"id": int_id, "width": size, "height": size,
                       "file_name": f"{YEAR_DIR}/JPEGImages/{image_id}.jpg"})
        for o in objects:
            # Pixel j covers [j, j+1) in COCO's continuous coordinates.
            w, h = o.x2 - o.x1 + 1, o.y2 - o.y1 + 1
            annotations.append({
                "id": len(annotations) + 1, "image_id": int_id,
                "category_id": o.cls + 1, "bbox": [o.x1, o.y1, w, h],
                "area": o.area, "iscrowd": 0,
                "truncated": o.truncated, "difficult": o.difficult})
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"}
                  for i, n in enumerate(classes)]
    return {"info": {"description": "gankd synthetic shapes"},
            "images": images, "annotations": annotations, "categories": categories}


def _write_json(path: Path, obj) -> None:
    """Deterministic JSON (sorted keys, fixed separators)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, sort_keys=True, indent=1) + "\n", encoding="utf-8")


def _generate_split(out: Path, split: str, count: int, size: int, seed: int,
                    classes: Sequence[str], progress: bool = False,
                    level: Difficulty = DIFFICULTIES["standard"]):
    """Render and write every image of one split; return COCO-ready records."""
    from tqdm import tqdm
    voc = out / YEAR_DIR
    offset = 0 if split == "train" else _TEST_ID_OFFSET
    records = []
    for i in tqdm(range(count), desc=f"synthetic {split}", disable=not progress, leave=False):
        int_id = offset + i + 1
        image_id = f"{int_id:06d}"
        # Own stream per image: (seed, split, index) -> independent of counts.
        rng = np.random.RandomState([seed, _SPLIT_CODES[split], i])
        img, objects = _render_image(rng, size, classes, level)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for image {image_id}")
        (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes(buf.tobytes())
        (voc / "Annotations" / f"{image_id}.xml").write_bytes(
            _voc_xml(image_id, size, objects, classes))
        records.append((int_id, image_id, objects))
    return records


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------
def make_synthetic_voc(out_dir, num_train: int = 200, num_test: int = 50,
                       image_size: int = 256, seed: int = 0,
                       classes: Optional[Sequence[str]] = None,
                       coco_json: bool = False, progress: bool = False,
                       difficulty: str = "standard") -> Dict:
    """Generate a synthetic shape-detection dataset in the VOC devkit layout.

    Parameters
    ----------
    out_dir : str or Path
        Dataset root.  Created if missing; if it holds a dataset previously
        written by this function, that dataset is replaced.  Any other
        non-empty directory is refused.
    num_train : int, default 200
        Number of ``trainval`` images (1 to 499999).
    num_test : int, default 50
        Number of ``test`` images (1 to 499999).
    image_size : int, default 256
        Side of the square images in pixels (64 to 4096).
    seed : int, default 0
        Seed in [0, 2**32 - 1].  Each image has its own stream derived from
        ``(seed, split, index)``, so output is byte-identical for identical
        arguments and one split does not depend on the other's size.
    classes : sequence of str, optional
        Shapes to use as classes, in class-id order, chosen from
        :data:`SHAPE_NAMES`.  Defaults to :data:`DEFAULT_CLASSES`.
    coco_json : bool, default False
        Also write ``annotations/instances_{train,test}.json`` in COCO format
        (1-based category ids, ``bbox`` as ``[x, y, w, h]``, ``file_name``
        relative to ``out_dir``).
    progress : bool, default False
        Show a tqdm progress bar per split.
    difficulty : str, default "standard"
        A key of :data:`DIFFICULTIES`: ``"standard"`` or ``"easy"`` (fewer, larger
        objects and no clutter, for detectors trained from scratch in minutes).

    Returns
    -------
    dict
        ``root``, ``voc_dir``, ``classes_file``, ``classes``, ``image_size``,
        ``seed``, ``num_train``, ``num_test``, ``num_boxes_train``,
        ``num_boxes_test``, ``splits`` (split name -> image-set file) and
        ``coco_json`` (split -> JSON path, or None).

    Raises
    ------
    ValueError
        On out-of-range arguments, unknown or duplicate class names, or an
        ``out_dir`` that is a file or a non-empty foreign directory.

    Examples
    --------
    >>> info = make_synthetic_voc("/tmp/synth", num_train=20, num_test=5)  # doctest: +SKIP
    >>> from gluoncv.data import VOCDetection  # doctest: +SKIP
    >>> class SynthVOC(VOCDetection):  # doctest: +SKIP
    ...     CLASSES = tuple(info["classes"])
    >>> train = SynthVOC(root=info["root"], splits=[(2007, "trainval")])  # doctest: +SKIP
    """
    num_train = _check_int("num_train", num_train, 1, _MAX_PER_SPLIT)
    num_test = _check_int("num_test", num_test, 1, _MAX_PER_SPLIT)
    image_size = _check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    names = _check_classes(classes)
    if difficulty not in DIFFICULTIES:
        raise ValueError("difficulty must be one of {}, got {!r}".format(
            ", ".join(DIFFICULTIES), difficulty))
    level = DIFFICULTIES[difficulty]
    if out_dir is None or str(out_dir) == "":
        raise ValueError("out_dir must be a non-empty path")
    out = Path(out_dir).expanduser()
    _prepare_out_dir(out)
    meta = {"format_version": FORMAT_VERSION, "generator": "gankd.data.synthetic",
            "num_train": num_train, "num_test": num_test, "image_size": image_size,
            "seed": seed, "classes": list(names), "coco_json": bool(coco_json)}
    if difficulty != "standard":  # standard metadata stays byte-identical to before
        meta["difficulty"] = difficulty
    # Written first so an interrupted run can still be replaced by a rerun.
    _write_json(out / META_FILE, dict(meta, complete=False))

    train = _generate_split(out, "train", num_train, image_size, seed, names, progress, level)
    test = _generate_split(out, "test", num_test, image_size, seed, names, progress, level)

    main = out / YEAR_DIR / "ImageSets" / "Main"
    splits = {}
    for name, records in (("trainval", train), ("test", test)):
        path = main / f"{name}.txt"
        path.write_text("".join(f"{r[1]}\n" for r in records), encoding="utf-8")
        splits[name] = str(path)
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")

    coco_paths = None
    if coco_json:
        coco_paths = {}
        for name, records in (("train", train), ("test", test)):
            path = out / "annotations" / f"instances_{name}.json"
            _write_json(path, _coco_dict(records, names, image_size))
            coco_paths[name] = str(path)

    _write_json(out / META_FILE, dict(meta, complete=True))

    return {
        "root": str(out),
        "voc_dir": str(out / YEAR_DIR),
        "classes_file": str(out / "classes.txt"),
        "classes": list(names),
        "image_size": image_size,
        "seed": seed,
        "num_train": num_train,
        "num_test": num_test,
        "num_boxes_train": sum(len(r[2]) for r in train),
        "num_boxes_test": sum(len(r[2]) for r in test),
        "splits": splits,
        "coco_json": coco_paths,
    }
