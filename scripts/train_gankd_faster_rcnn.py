"""Train a Faster R-CNN student with GAN knowledge distillation from a bigger Faster R-CNN.

Example (Table 3, VOC, 4 GPUs, one image per GPU):
    python scripts/train_gankd_faster_rcnn.py --teacher faster_rcnn_resnet101_v1d_voc \
        --student resnet50_v1b --pretrained-base --roi-mode align \
        --dataset-root ~/VOCdevkit --gpus 0,1,2,3 --distill gan
"""
from gankd.cli import main_guard, train_from_args, training_parser


def main():
    args = training_parser(__doc__.splitlines()[0], distill=True,
                           family='faster_rcnn').parse_args()
    train_from_args(args, distill=True, family='faster_rcnn')


if __name__ == '__main__':
    main_guard(main)
