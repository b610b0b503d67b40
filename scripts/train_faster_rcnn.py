"""Train a plain Faster R-CNN (teachers, and the no-distillation baselines of Table 3).

Examples:
    # GluonCV's VOC preset from ImageNet weights, 4 GPUs, one image per GPU
    python scripts/train_faster_rcnn.py --network faster_rcnn_resnet50_v1b_voc \
        --pretrained-base --dataset-root ~/VOCdevkit --gpus 0,1,2,3 --roi-mode align
    # a small Faster R-CNN from scratch on the CPU
    python scripts/train_faster_rcnn.py --network resnet18_v1b --data-shape 192 \
        --batch-size 2 --dataset-root data/synthetic_voc
"""
from gankd.cli import main_guard, train_from_args, training_parser


def main():
    args = training_parser(__doc__.splitlines()[0], distill=False,
                           family='faster_rcnn').parse_args()
    train_from_args(args, distill=False, family='faster_rcnn')


if __name__ == '__main__':
    main_guard(main)
