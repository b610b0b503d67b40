"""Export a saved SSD or distilled student as one inference graph (GluonCV's export_block).

Writes PREFIX-symbol.json and PREFIX-0000.params: backbone, head, decoding and NMS, nothing
of the teacher or the critics. Load them without this package:

    net = mx.gluon.SymbolBlock.imports('PREFIX-symbol.json', ['data'], 'PREFIX-0000.params')
    ids, scores, bboxes = net(images)  # (B, H, W, 3) RGB in [0, 255], resized to the data shape

Example:
    python scripts/export.py --params params/ssd_128_mobilenet0.25_gankd_from_resnet18_v1_best.params \
        --out export/student
"""
import argparse

from gankd.cli import main_guard


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--params', required=True, help='params file (JSON beside it)')
    p.add_argument('--out', required=True, help='prefix of the exported files')
    p.add_argument('--no-preprocess', action='store_true',
                   help="the graph takes the normalised (B, 3, H, W) tensor instead of GluonCV's "
                   'default (B, H, W, 3) pixels in [0, 255]')
    p.add_argument('--onnx', action='store_true',
                   help='also write PREFIX.onnx: backbone and raw head outputs (class scores, '
                   "box offsets, anchors; no NMS; the MXNet graph it comes from as PREFIX-raw-*); "
                   'needs the onnx package')
    args = p.parse_args()
    from gankd.deploy import data_shape_of, export_detector, export_onnx
    if args.onnx:
        # Checked first: a missing onnx package must not leave half an export behind.
        export_onnx(args.params, args.out + '.onnx')
    meta, sym, params = export_detector(args.params, args.out,
                                        preprocess=not args.no_preprocess)
    print('{} ({}, data shape {}): {} {}{}'.format(
        meta.get('name'), meta['kind'], data_shape_of(meta), sym, params,
        ' ' + args.out + '.onnx' if args.onnx else ''))


if __name__ == '__main__':
    main_guard(main)
