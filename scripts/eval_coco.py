"""Evaluate a saved SSD or GAN-KD student: COCO AP at IoU 0.50:0.95 and at 0.5.

Example (Table 2: MS COCO val2017):
    python scripts/eval_coco.py --params params/ssd_512_mobilenet1.0_gankd_from_resnet50_v1_best.params \
        --dataset-root ~/.mxnet/datasets/coco --gpus 0
"""
import argparse

from gankd.cli import add_data_check_flag, main_guard


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--params', required=True, help='params file (JSON beside it)')
    p.add_argument('--dataset-root', default='data/synthetic_voc',
                   help='folder holding annotations/<split>.json and the images')
    p.add_argument('--split', default=None,
                   help='annotation file name without .json (default: instances_val2017, '
                   "or the synthetic generator's instances_test when only that exists)")
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--gpus', default='', help="GPU ids; '' evaluates on the CPU")
    p.add_argument('--cpu-contexts', type=int, default=1)
    p.add_argument('-j', '--num-workers', type=int, default=0)
    p.add_argument('--json', default=None, help='also write the numbers to this JSON file')
    add_data_check_flag(p)
    args = p.parse_args()
    from gankd.train.run import contexts
    from gankd.eval.params import evaluate_coco_params, format_coco_table, write_json
    result = evaluate_coco_params(args.params, args.dataset_root,
                                  contexts(args.gpus, args.cpu_contexts), args.batch_size,
                                  args.num_workers, split=args.split,
                                  check=not args.skip_data_check)
    if args.json:
        write_json(result, args.json)
    print(format_coco_table(result))


if __name__ == '__main__':
    main_guard(main)
