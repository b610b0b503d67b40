"""A saved detector as something to ship: one exported graph, its detections, its speed.

A params file (plain SSD or distilled student, see :mod:`gankd.detectors.detector`) holds only the
deliverable detector: backbone and head, never the teacher or the critics. Here it
becomes one hybridised graph written by GluonCV's ``export_block`` (``PREFIX-symbol.json``
and ``PREFIX-0000.params``, loadable by ``mx.gluon.SymbolBlock.imports`` without this
package), pictures of its detections drawn by GluonCV's ``plot_bbox``, and the latency,
throughput and size of that exported graph.
"""
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from .detectors.detector import load_detector
from .errors import GankdError

__all__ = ['InferenceGraph', 'RawGraph', 'data_shape_of', 'load_inference_graph',
           'export_detector', 'ones_for_fixed_gamma', 'export_onnx', 'load_image', 'detect',
           'detections_above', 'draw_detections', 'demo', 'count_params', 'median_seconds', 'bench_exported',
           'speed_markdown', 'plot_map_latency']

# GluonCV's normalisation (SSDDefaultValTransform), on [0, 1] pixels.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class InferenceGraph(HybridBlock):
    """Backbone and head as one hybridisable block: image tensor to ``(ids, scores,
    bboxes)`` after decoding and NMS (in inference mode).

    Parameters
    ----------
    backbone : HybridBlock
    head : gankd.detectors.ssd.model.SSDHead
    """

    def __init__(self, backbone, head, **kwargs):
        super(InferenceGraph, self).__init__(**kwargs)
        self.backbone = backbone
        self.head = head

    def hybrid_forward(self, F, x):
        return self.head(self.backbone(x))


class RawGraph(InferenceGraph):
    """Like :class:`InferenceGraph`, but returns the head's raw ``(cls_preds, box_preds,
    anchors)``: decoding and NMS are left to the runtime (ONNX's NMS is class-agnostic,
    MXNet's is per class)."""

    def hybrid_forward(self, F, x):
        return self.head.raw_outputs(F, self.backbone(x))


def data_shape_of(meta):
    """The input size a detector was trained at."""
    return meta['ssd' if meta['kind'] == 'ssd' else 'teacher']['data_shape']


def load_inference_graph(params_file, ctx=mx.cpu(), raw=False):
    """Rebuild the detector in ``params_file`` as one block.

    Returns
    -------
    (dict, InferenceGraph)
        The metadata and the block (trained weights, not yet hybridised).
    """
    meta, backbone, head = load_detector(params_file, ctx)
    if meta.get('family', 'ssd') != 'ssd':
        # The graphs here are SSD's (one hybridised graph, fixed square input).
        raise GankdError('{} is a {} detector: export, demo and inference benchmarks take '
                         'SSDs only (eval_voc.py and eval_coco.py evaluate it)'.format(
                             params_file, meta['family']))
    return meta, (RawGraph if raw else InferenceGraph)(backbone, head)


def export_detector(params_file, prefix, preprocess=True, raw=False, data_shape=None,
                    ctx=mx.cpu()):
    """Export the detector in ``params_file`` with GluonCV's ``export_block``.

    Parameters
    ----------
    params_file : str
        A params file with its JSON beside it.
    prefix : str
        Writes ``PREFIX-symbol.json`` and ``PREFIX-0000.params``.
    preprocess : bool
        True (GluonCV's default): the graph takes ``(B, H, W, 3)`` RGB pixels in
        [0, 255] and normalises them itself; False: it takes the normalised ``(B, 3, H,
        W)`` tensor the params model takes.
    raw : bool
        Export :class:`RawGraph` (no decoding, no NMS) instead of :class:`InferenceGraph`.
    data_shape : int or None
        Size of the dummy input that traces the graph (default: the trained size). The
        exported graph accepts other sizes too.

    Returns
    -------
    (dict, str, str)
        The metadata, the symbol file and the params file written.
    """
    from gluoncv.utils import export_block
    meta, block = load_inference_graph(params_file, ctx, raw=raw)
    size = data_shape or data_shape_of(meta)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    # export_block removes box_encode from mx.sym.contrib for good (an operator some
    # runtimes lack); training in the same process uses it, so it is put back.
    box_encode = mx.sym.contrib.__dict__.get('box_encode')
    try:
        export_block(prefix, block, (size, size, 3) if preprocess else (3, size, size),
                     preprocess=preprocess, layout='HWC' if preprocess else 'CHW', ctx=ctx)
    except RuntimeError as err:
        raise GankdError('cannot export {}: {}'.format(params_file, err)) from None
    finally:
        if box_encode is not None:
            mx.sym.contrib.box_encode = box_encode
    return meta, prefix + '-symbol.json', prefix + '-0000.params'


def ones_for_fixed_gamma(sym_file, params_file):
    """Set to 1 the gamma of every BatchNorm in an exported graph that ignores it.

    MXNet's ``BatchNorm`` defaults to ``fix_gamma=True`` (gamma read as 1, whatever the
    array holds, and never trained). GluonCV's SSD feature expander builds its BatchNorms
    with that default, so their gamma arrays keep their random initial values. MXNet
    1.9.1's ONNX converter of ``BatchNorm`` drops ``fix_gamma`` and passes the array on
    as the scale, which changes the extra feature levels' outputs; writing ones makes
    both graphs compute the same. MXNet's own outputs do not change.

    Returns
    -------
    list of str
        The gamma arrays rewritten (``params_file`` is saved in place when any).
    """
    with open(sym_file) as f:
        nodes = json.load(f)['nodes']
    arrays = mx.nd.load(params_file)
    fixed = []
    for node in nodes:
        if node['op'] == 'BatchNorm' and str((node.get('attrs') or {}).get(
                'fix_gamma', 'True')).lower() in ('true', '1'):
            key = 'arg:' + nodes[node['inputs'][1][0]]['name']
            if key in arrays:
                arrays[key] = mx.nd.ones_like(arrays[key])
                fixed.append(key[len('arg:'):])
    if fixed:
        mx.nd.save(params_file, arrays)
    return fixed


def export_onnx(params_file, out, ctx=mx.cpu()):
    """Export the backbone and the head's raw outputs (:class:`RawGraph`, taking the
    normalised ``(1, 3, S, S)`` tensor) as ONNX with MXNet's ``mx.onnx.export_model``.

    Needs the ``onnx`` package, which this project does not install: without it this
    raises a :class:`GankdError` before anything is written. Fixed gammas are written as
    ones first (:func:`ones_for_fixed_gamma`).
    """
    if importlib.util.find_spec('onnx') is None:
        raise GankdError("--onnx needs the 'onnx' package, which is not installed "
                         '(pip install onnx==1.14.1); the MXNet export was not written')
    prefix = os.path.splitext(out)[0] + '-raw'
    meta, sym, params = export_detector(params_file, prefix, preprocess=False, raw=True,
                                        ctx=ctx)
    ones_for_fixed_gamma(sym, params)
    size = data_shape_of(meta)
    mx.onnx.export_model(sym, params, in_shapes=[(1, 3, size, size)],
                         in_types=[np.float32], onnx_file_path=out)
    return out


def load_image(path, data_shape):
    """Read an image and prepare it as evaluation does.

    Returns
    -------
    (NDArray, NDArray)
        The original ``(H, W, 3)`` uint8 RGB image and the ``(1, 3, S, S)`` normalised
        tensor (resized to ``data_shape`` square, as ``SSDDefaultValTransform`` does).
    """
    from gluoncv.data.transforms import image as timage
    if not os.path.isfile(path):
        raise GankdError('image not found: {}'.format(path))
    try:
        img = mx.image.imread(path)
    except mx.base.MXNetError:
        raise GankdError('{} is not a readable image'.format(path)) from None
    x = timage.imresize(img, data_shape, data_shape, interp=9)
    x = mx.nd.image.normalize(mx.nd.image.to_tensor(x), mean=MEAN, std=STD)
    return img, x.expand_dims(0)


def detect(block, x):
    """``(ids, scores, bboxes)`` of one image tensor as NumPy arrays (first image)."""
    ids, scores, bboxes = block(x)
    return ids[0].asnumpy(), scores[0].asnumpy(), bboxes[0].asnumpy()


def detections_above(ids, scores, bboxes, thresh, scale=(1.0, 1.0), size=None):
    """Detections scoring at least ``thresh``, best first, boxes scaled by ``(sx, sy)``
    and, given the image ``size`` ``(w, h)``, clipped to it (an untrained head's boxes
    can reach infinity).

    Returns
    -------
    list of (int, float, list of float)
        Class index, score, ``[xmin, ymin, xmax, ymax]``.
    """
    out = []
    for cid, score, box in zip(ids.ravel(), scores.ravel(), bboxes):
        if cid < 0 or score < thresh:
            continue  # -1: suppressed or padding
        box = box * np.array([scale[0], scale[1], scale[0], scale[1]], dtype=box.dtype)
        if size is not None:
            box = np.clip(box, 0, [size[0], size[1], size[0], size[1]])
        out.append((int(cid), float(score), [float(v) for v in box]))
    return sorted(out, key=lambda d: -d[1])


def draw_detections(img, dets, classes, path, thresh=0.0):
    """Draw ``dets`` on ``img`` with GluonCV's ``plot_bbox`` and save a PNG of the
    image's own size.

    Parameters
    ----------
    img : NDArray or numpy.ndarray
        ``(H, W, 3)`` RGB image.
    dets : list
        From :func:`detections_above` (boxes in ``img``'s pixels).
    classes : sequence of str
    path : str
    thresh : float
        Passed to ``plot_bbox``.
    """
    import matplotlib
    matplotlib.use('Agg')  # no display
    import matplotlib.pyplot as plt
    from gluoncv.utils.viz import plot_bbox
    img = img.asnumpy() if isinstance(img, mx.nd.NDArray) else np.asarray(img)
    h, w = img.shape[:2]
    dpi = 100
    # One figure pixel per image pixel: the axes fill the figure, nothing around them.
    fig = plt.figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    boxes = np.array([d[2] for d in dets], dtype='float32').reshape(-1, 4)
    scores = np.array([d[1] for d in dets], dtype='float32')
    labels = np.array([d[0] for d in dets], dtype='float32')
    plot_bbox(img, boxes, scores, labels, thresh=thresh, class_names=list(classes), ax=ax,
              linewidth=max(1.0, min(h, w) / 150.0), fontsize=max(6, min(12, min(h, w) // 20)))
    ax.axis('off')
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, format='png')
    plt.close(fig)


def demo(params_file, images, out_dir, thresh=0.5, ctx=mx.cpu()):
    """Detect objects in ``images``, draw them into ``out_dir/<stem>.png`` and yield one
    line per detection: ``image class score xmin ymin xmax ymax`` (boxes in the image's
    pixels, best first per image)."""
    stems = [os.path.splitext(os.path.basename(i))[0] for i in images]
    if len(set(stems)) < len(stems):
        raise GankdError('two images have the same name; their pictures would overwrite '
                         'each other in {}'.format(out_dir))
    for path in images:  # before the model is built: fail fast
        if not os.path.isfile(path):
            raise GankdError('image not found: {}'.format(path))
    meta, block = load_inference_graph(params_file, ctx)
    block.hybridize(static_alloc=True)
    classes = (meta['ssd'] if meta['kind'] == 'ssd' else meta['teacher'])['classes']
    size = data_shape_of(meta)
    for path, stem in zip(images, stems):
        img, x = load_image(path, size)
        h, w = img.shape[:2]
        dets = detections_above(*detect(block, x.as_in_context(ctx)), thresh=thresh,
                                scale=(w / float(size), h / float(size)), size=(w, h))
        png = os.path.join(out_dir, stem + '.png')
        draw_detections(img, dets, classes, png, thresh=thresh)
        print('{}: {} detections at score >= {}'.format(png, len(dets), thresh),
              file=sys.stderr)
        for cid, score, box in dets:
            yield '{} {} {:.4f} {:.1f} {:.1f} {:.1f} {:.1f}'.format(path, classes[cid], score,
                                                                   *box)


# BatchNorm running statistics are not learned parameters. GluonCV's base networks name
# them running_*, the layers FeatureExpander appends (mx.sym.BatchNorm) moving_*.
BN_STATISTICS = ('running_mean', 'running_var', 'moving_mean', 'moving_var')


def count_params(params_file):
    """Number of learned values in a params file (BatchNorm running statistics, which
    are not learned by gradient, left out)."""
    arrays = mx.nd.load(params_file)
    return int(sum(a.size for name, a in arrays.items()
                   if not name.endswith(BN_STATISTICS)))


def median_seconds(fn, runs, warmup=5):
    """Median wall time of ``fn()`` (including waiting for MXNet's engine)."""
    for _ in range(warmup):
        fn()
        mx.nd.waitall()
    times = []
    for _ in range(runs):
        mx.nd.waitall()
        tic = time.perf_counter()
        fn()
        mx.nd.waitall()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def bench_exported(params_file, data_shape=None, batch_size=16, runs=50, ctx=mx.cpu()):
    """Size and speed of a detector as exported (GluonCV's default preprocessing
    included), loaded back with ``SymbolBlock.imports``.

    Parameters
    ----------
    params_file : str
    data_shape : int or None
        Input size (default: the trained size).
    batch_size : int
        The batch at which throughput is measured.
    runs : int
        Timed runs at batch 1 (after 5 warm-up runs); a fifth as many, at least 5, at
        ``batch_size``.

    Returns
    -------
    dict
        ``name, kind, params, data_shape, num_params, size_bytes, latency_ms`` (median
        at batch 1), ``batch_size, throughput`` (images per second) and ``runs``.
    """
    if runs < 1 or batch_size < 1:
        raise GankdError('--runs and --batch-size must be positive')
    with tempfile.TemporaryDirectory(prefix='gankd_export_') as tmp:
        meta, sym, params = export_detector(params_file, os.path.join(tmp, 'model'), ctx=ctx)
        with warnings.catch_warnings():
            # MXNet warns that it cannot infer the input's type; it is float32.
            warnings.simplefilter('ignore')
            net = mx.gluon.SymbolBlock.imports(sym, ['data'], params, ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    size = data_shape or data_shape_of(meta)
    rng = np.random.RandomState(0)

    def images(n):
        return mx.nd.array(rng.uniform(0, 255, (n, size, size, 3)), ctx=ctx)

    one, batch = images(1), images(batch_size)
    latency = median_seconds(lambda: net(one), runs)
    batch_time = median_seconds(lambda: net(batch), max(5, runs // 5))
    return {'name': meta.get('name', os.path.basename(params_file)), 'kind': meta['kind'],
            'params': os.path.abspath(params_file), 'data_shape': int(size),
            'num_params': count_params(params_file),
            'size_bytes': os.path.getsize(params_file),
            'latency_ms': 1000.0 * latency, 'batch_size': int(batch_size),
            'throughput': batch_size / batch_time, 'runs': int(runs)}


def speed_markdown(rows):
    """A Markdown table of :func:`bench_exported` rows; speed-ups are relative to the
    first row (put the teacher first). A row with ``mAP`` (0-1) gets it as a column."""
    with_map = any('mAP' in r for r in rows)
    head = ['model', 'input', 'params (M)', 'size (MB)', 'latency, batch 1 (ms)',
            'speed-up', 'throughput (img/s)'] + (['mAP'] if with_map else [])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    base = rows[0]['latency_ms'] if rows else None
    for r in rows:
        cells = [r['name'], str(r['data_shape']), '{:.2f}'.format(r['num_params'] / 1e6),
                 '{:.1f}'.format(r['size_bytes'] / 2.0 ** 20), '{:.2f}'.format(r['latency_ms']),
                 '{:.2f}x'.format(base / r['latency_ms']),
                 '{:.1f} (batch {})'.format(r['throughput'], r['batch_size'])]
        if with_map:
            cells.append('{:.1f}'.format(100 * r['mAP']) if r.get('mAP') is not None else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_map_latency(rows, path):
    """Save a figure of mAP (%) against batch-1 latency (ms), one labelled point per row
    that has an ``mAP``."""
    points = [r for r in rows if r.get('mAP') is not None]
    if not points:
        raise GankdError('no row has an mAP to plot against latency')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in points:
        ax.scatter(r['latency_ms'], 100 * r['mAP'])
        ax.annotate(r['name'], (r['latency_ms'], 100 * r['mAP']), fontsize=7,
                    xytext=(4, 4), textcoords='offset points')
    ax.set_xlabel('latency at batch 1 (ms, this CPU)')
    ax.set_ylabel('VOC07 mAP (%)')
    ax.set_title('mAP against latency')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_json(rows, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(rows, f, indent=1)
