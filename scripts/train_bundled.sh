#!/usr/bin/env bash
# Rebuild the bundled checkpoint weights/unet_w16_sample.pth from scratch: generate the training
# and validation samples (seeds that the driver's evaluation sample, seed 20261127, does not use)
# and train a width-16 UNet on them. CPU: about 40 minutes on 2 quiet cores; CUDA is used when present.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [[ $# -ge 1 && ( "$1" == "-h" || "$1" == "--help" ) ]]; then
    echo "usage: scripts/train_bundled.sh [WORKDIR [OUTPUT.pth]]"
    echo "  WORKDIR      where the training samples go (default: ./work/train)"
    echo "  OUTPUT.pth   checkpoint to write (default: WORKDIR/unet_w16_sample.pth; copy it to weights/ to bundle it)"
    echo "example:"
    echo "  scripts/train_bundled.sh work/train weights/unet_w16_sample.pth"
    exit 0
fi
WORK=${1:-./work/train}
OUT=${2:-$WORK/unet_w16_sample.pth}
mkdir -p -- "$WORK"

# Stage 1: 16 cars, 256x256 crops. Stage 2: fine-tune on 32 cars (the first 16 are the same)
# with 384x384 crops, which show the model more of each car at once.
"$PYTHON" -m unet_infer.sample --out "$WORK/train_sample" --cars 16 --seed 1
"$PYTHON" -m unet_infer.sample --out "$WORK/train_sample32" --cars 32 --seed 1
"$PYTHON" -m unet_infer.sample --out "$WORK/val_sample" --cars 1 --seed 7
"$PYTHON" -m unet_infer.train --data "$WORK/train_sample" --val "$WORK/val_sample" \
    --width 16 --epochs 14 --steps-per-epoch 50 --batch 8 --crop 256 --seed 0 --out "$WORK/stage1.pth"
"$PYTHON" -m unet_infer.train --data "$WORK/train_sample32" --val "$WORK/val_sample" --init "$WORK/stage1.pth" \
    --epochs 16 --steps-per-epoch 50 --batch 4 --crop 384 --lr 1e-3 --seed 1 --out "$OUT"
