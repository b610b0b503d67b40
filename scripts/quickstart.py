"""Quick start: synthetic data, teacher, baseline student, GAN-KD student, three mAPs.

Example:
    python scripts/quickstart.py --out runs/quickstart
"""
import argparse

from gankd.cli import main_guard


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='runs/quickstart', help='folder for data, params and logs')
    p.add_argument('--preset', default='default', choices=['default', 'tiny'],
                   help="'tiny' is a one-minute smoke run")
    p.add_argument('--seed', type=int, default=233)
    p.add_argument('-j', '--num-workers', type=int, default=1)
    args = p.parse_args()
    from gankd.experiments.quickstart import format_result, quickstart
    print(format_result(quickstart(args.out, args.preset, args.seed, args.num_workers)))


if __name__ == '__main__':
    main_guard(main)
