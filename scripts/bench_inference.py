"""Size and inference speed of saved detectors, each exported as scripts/export.py does.

Per params file: learned parameters, size on disk, latency at batch 1 (median after
warm-up) and throughput at --batch-size, on this machine. Prints a Markdown table (the
first file is the reference for the speed-up: put the teacher first).

Example:
    python scripts/bench_inference.py params/ssd_128_resnet18_v1_voc_best.params \
        params/ssd_128_mobilenet0.25_voc_best.params \
        params/ssd_128_mobilenet0.25_gankd_from_resnet18_v1_best.params --json speed.json
"""
import argparse

from gankd.cli import main_guard


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('params', nargs='+', metavar='PARAMS', help='params files (JSON beside each)')
    p.add_argument('--data-shape', type=int, default=None,
                   help='input size for all (default: the size each was trained at)')
    p.add_argument('--batch-size', type=int, default=16, help='batch of the throughput run')
    p.add_argument('--runs', type=int, default=50, help='timed runs at batch 1')
    p.add_argument('--dataset-root', default=None,
                   help='also evaluate VOC07 mAP on this dataset (adds an mAP column)')
    p.add_argument('--json', default=None, help='also write the rows to this JSON file')
    p.add_argument('--figure', default=None, help='with --dataset-root: mAP against latency, PNG')
    args = p.parse_args()
    from gankd.errors import GankdError
    from gankd.deploy import bench_exported, plot_map_latency, speed_markdown, write_json
    if args.figure and not args.dataset_root:
        raise GankdError('--figure plots mAP, which needs --dataset-root')
    if args.data_shape is not None and (args.data_shape < 32 or args.data_shape % 32):
        raise GankdError('--data-shape must be a multiple of 32, got {}'.format(args.data_shape))
    rows = []
    for params in args.params:
        row = bench_exported(params, args.data_shape, args.batch_size, args.runs)
        if args.dataset_root:
            import mxnet as mx
            from gankd.eval.params import evaluate_params
            row['mAP'] = evaluate_params(params, args.dataset_root, [mx.cpu()])['mAP']
        rows.append(row)
    if args.json:
        write_json(rows, args.json)
    if args.figure:
        plot_map_latency(rows, args.figure)
    print(speed_markdown(rows))


if __name__ == '__main__':
    main_guard(main)
