"""Train a small SSD with GAN knowledge distillation from a big SSD's backbone.

Example (VOC, 4 GPUs):
    python scripts/train_gankd_ssd.py --teacher resnet50_v1 --student mobilenet1.0 \
        --teacher-params params/ssd_512_resnet50_v1_voc_best.params \
        --dataset-root ~/VOCdevkit --gpus 0,1,2,3 --batch-size 64
"""
from gankd.cli import main_guard, train_from_args, training_parser


def main():
    args = training_parser(__doc__.splitlines()[0], distill=True).parse_args()
    train_from_args(args, distill=True)


if __name__ == '__main__':
    main_guard(main)
