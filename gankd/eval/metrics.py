"""Detection metrics beyond GluonCV's VOC07 mAP: COCO AP through pycocotools, with the
interface :func:`gankd.train.loop.evaluate` expects."""
import contextlib
import io
import os
import shutil
import tempfile
import weakref

import numpy as np
from gluoncv.data import COCODetection
from gluoncv.utils.metrics.coco_detection import COCODetectionMetric

from ..errors import GankdError

__all__ = ['COCOMetric']


def _remove_dir(path, owner_pid):
    # Data-loader workers forked from the owner hold a copy of the metric; only the
    # process that made the folder removes it.
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


class COCOMetric(COCODetectionMetric):
    """GluonCV's COCO metric with the interface of :func:`gankd.train.loop.evaluate`.

    ``update`` is GluonCV's: detections arrive per device in the network's input
    coordinates, one row per image in dataset order, and are scaled back to each image's
    size in the annotation file (the SSD validation transform resizes to a square
    ``data_shape`` without keeping the aspect ratio, so one scale per axis is exact).
    The ground-truth arguments are ignored: pycocotools reads the ground truth from the
    dataset's annotation file.

    Parameters
    ----------
    dataset : COCOLayoutDetection
        The validation set, with every image kept (``coco_datasets``' second value).
    data_shape : int or (int, int) or None
        Network input size; an int is a square, a pair is ``(height, width)``; None when
        the detections already are in each image's pixels (Faster R-CNN).
    score_thresh : float
        Detections below this score are not scored (GluonCV's default).

    Notes
    -----
    ``get()`` returns the names ``[*class names, 'AP50', 'mAP']``: per-class AP at
    IoU 0.50:0.95, AP at IoU 0.5, then AP at IoU 0.50:0.95 (COCO's headline number, last
    so that training keeps the parameters that maximise it).  All values are fractions
    in [0, 1] (NaN for a class without ground truth), over all areas, 100 detections per
    image.  The detections JSON pycocotools reads goes to a private temporary folder,
    removed after each ``get()`` (the file) and with the metric (the folder).
    """

    def __init__(self, dataset, data_shape, score_thresh=0.05):
        if not isinstance(dataset, COCODetection):
            raise GankdError('COCOMetric needs a COCO dataset (gankd.data.coco.coco_datasets), '
                             'got {}'.format(type(dataset).__name__))
        if isinstance(data_shape, (int, np.integer)):
            data_shape = (int(data_shape), int(data_shape))
        if data_shape is not None:
            data_shape = tuple(int(s) for s in data_shape)
        num_ids = len(dataset.coco.getImgIds())
        if len(dataset) != num_ids:
            # Otherwise detections would silently be paired with the wrong images.
            raise GankdError('{} has {} of the {} images of its annotation file; evaluate on '
                             'a set that keeps images without boxes (coco_datasets\' '
                             'validation set)'.format(dataset, len(dataset), num_ids))
        self._tmpdir = tempfile.mkdtemp(prefix='gankd_coco_')
        # Removes the folder when the metric is collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _remove_dir, self._tmpdir, os.getpid())
        super(COCOMetric, self).__init__(
            dataset, os.path.join(self._tmpdir, 'detections'), use_time=False, cleanup=False,
            score_thresh=score_thresh, data_shape=data_shape)

    def get(self):
        """Run pycocotools on the detections collected since ``reset()``.

        Returns
        -------
        (list of str, list of float)
            ``[*classes, 'AP50', 'mAP']`` and their values.
        """
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress prints
                coco_eval = self._update()
        finally:
            if os.path.exists(self._filename):
                os.remove(self._filename)
        params = coco_eval.params
        # precision: (IoU thresholds, recall points, classes, area ranges, max detections);
        # -1 marks a class without ground truth.
        area = list(params.areaRngLbl).index('all')
        max_dets = list(params.maxDets).index(100)
        precision = coco_eval.eval['precision'][:, :, :, area, max_dets]
        iou50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))

        def mean(p):
            p = p[p > -1]
            return float(np.mean(p)) if p.size else float('nan')

        names = list(self.dataset.classes) + ['AP50', 'mAP']
        values = [mean(precision[:, :, k]) for k in range(precision.shape[2])]
        values += [mean(precision[iou50]), mean(precision)]
        return names, values

    def cleanup(self):
        """Remove the temporary folder now (it is also removed with the metric)."""
        self._finalizer()
