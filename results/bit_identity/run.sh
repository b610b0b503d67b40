#!/bin/sh
# usage: DATA=D TEACHER=T.params run.sh CHECKOUT OUTDIR -- a fixed-seed GAN-KD run with hint and crosshead
# (D: make_synthetic_voc.py --num-train 48 --num-test 16 --image-size 64 --seed 0 --difficulty easy;
#  T: train_ssd.py --network resnet18_v1 --data-shape 64 --batch-size 8 --epochs 1 --optimizer adam -j 0)
cd "$1" && OMP_NUM_THREADS=1 "${PYTHON:-python}" scripts/train_gankd_ssd.py \
  --dataset-root "$DATA" --teacher resnet18_v1 --teacher-params "$TEACHER" \
  --student mobilenet0.25 --data-shape 64 --batch-size 8 --epochs 2 --gan-epochs 1 --optimizer adam \
  --distill gan,hint,crosshead --distill-weights 0.1,0.5,1 -j 0 --cpu-contexts 2 --seed 7 \
  --save-prefix "$2/student" --log-interval 2
