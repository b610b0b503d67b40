"""Reproduce Table 1 in small: train and evaluate students x teachers x methods x seeds.

Examples:
    python scripts/reproduce.py --preset mini-voc
    python scripts/reproduce.py --dataset-root ~/VOCdevkit --teachers none,resnet50_v1 \
        --students mobilenet1.0,mobilenetv2_1.0,resnet18_v1 --seeds 0,1,2 \
        --out results/voc.json --data-shape 512 --batch-size 64 --gpus 0,1,2,3
    python scripts/reproduce.py --preset mini-voc --dry-run
"""
import sys

from gankd.cli import main_guard


def main():
    from gankd.experiments.reproduce import main as reproduce
    return reproduce()


if __name__ == '__main__':
    sys.exit(main_guard(main))
