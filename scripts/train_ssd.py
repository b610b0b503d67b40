"""Train a plain SSD (teachers, and the no-distillation baselines of Table 1).

Example:
    python scripts/train_ssd.py --network resnet50_v1 --data-shape 512 \
        --dataset-root ~/VOCdevkit --gpus 0,1,2,3 --batch-size 32
"""
from gankd.cli import main_guard, train_from_args, training_parser


def main():
    args = training_parser(__doc__.splitlines()[0], distill=False).parse_args()
    train_from_args(args, distill=False)


if __name__ == '__main__':
    main_guard(main)
