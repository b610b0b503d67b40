"""Evaluate a saved SSD or GAN-KD student: VOC07 11-point mAP at IoU 0.5.

Without --params: the newest *_best.params under params/; without --dataset-root: the
dataset recorded beside the params file at training time.

Examples:
    python scripts/eval_voc.py
    python scripts/eval_voc.py --params params/ssd_512_mobilenet1.0_gankd_from_resnet50_v1_best.params \
        --dataset-root ~/VOCdevkit --gpus 0
"""
import argparse
import sys

from gankd.cli import add_data_check_flag, main_guard


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--params', default=None, help='params file (JSON beside it); default: '
                   'the newest *_best.params under params/')
    p.add_argument('--dataset-root', default=None,
                   help='default: the dataset the params were trained on (from their JSON)')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--gpus', default='', help="GPU ids; '' evaluates on the CPU")
    p.add_argument('--cpu-contexts', type=int, default=1)
    p.add_argument('-j', '--num-workers', type=int, default=0)
    p.add_argument('--json', default=None, help='also write the numbers to this JSON file')
    add_data_check_flag(p)
    args = p.parse_args()
    from gankd.train.run import contexts
    from gankd.eval.params import choose_params, evaluate_params, format_table, write_json
    params, root, said = choose_params(args.params, args.dataset_root)
    for line in said:
        print('eval_voc.py: ' + line, file=sys.stderr)
    result = evaluate_params(params, root, contexts(args.gpus, args.cpu_contexts),
                             args.batch_size, args.num_workers, check=not args.skip_data_check)
    if args.json:
        write_json(result, args.json)
    print(format_table(result))


if __name__ == '__main__':
    main_guard(main)
