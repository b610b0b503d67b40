#!/usr/bin/env bash
# The feature-transfer control at CI's scale (results/README.md, "mini-voc-res"):
# a resnet10_v1_0.25 teacher on 512 images, then hint alone and the baseline for 512
# iterations each, validated every 128. Run from the repository root; OUT is a scratch dir.
set -euo pipefail
OUT=${1:-/tmp/ci_control}
PY=${PY:-.venv/bin/python}
D=$OUT/data
$PY scripts/make_synthetic_voc.py --out $D --num-train 512 --num-test 64 --image-size 64 \
    --seed 5 --difficulty easy --classes circle,triangle,cross
C="--data-shape 64 --dataset-root $D --batch-size 16 -j 0 --optimizer adam --lr 1e-3
   --augment light --log-interval 1000 --seed 1"
$PY scripts/train_ssd.py --network resnet10_v1_0.25 $C --epochs 12 --lr-decay-epoch 10 \
    --save-prefix $OUT/teacher
$PY scripts/train_gankd_ssd.py --teacher resnet10_v1_0.25 --student resnet10_v1_0.25 \
    --teacher-params $OUT/teacher_best.params --distill hint --hint-connector none \
    --head frozen --det-weight 0 $C --epochs 16 --lr-decay-epoch 99 --val-interval 4 \
    --save-prefix $OUT/hint
$PY scripts/train_ssd.py --network resnet10_v1_0.25 $C --epochs 16 --lr-decay-epoch 99 \
    --val-interval 4 --save-prefix $OUT/base
