#!/usr/bin/env bash
# The paper's objective ablation (Table 1) on CMP Facades, labels -> photo, at a scale a 2-core
# CPU finishes in a few hours: 128x128 crops (jitter 143 -> 128, mirroring), the 7-down U-Net
# (unet128), the 70x70 PatchGAN, batch 1, Adam 2e-4 (0.5, 0.999), 20 epochs (10 at the initial
# rate, 10 decaying to zero). Two runs at a time, one thread each. Then every model is evaluated
# on the 106 test images at 128x128, in eval mode and in the paper's test-time mode.
#
#   bash benchmarks/reproduce_facades.sh [OUT]        (default OUT=runs/reproduction)
set -euo pipefail
out="${1:-runs/reproduction}"
data="${FACADES:-../shared/data/facades}"
mkdir -p "$out"
export OMP_NUM_THREADS=1

train() {  # config name -> run folder
  imgtrans train "$1" --data "$data/train" --direction BtoA --out "$out/$1" \
    --model-args '{"generator": "unet128"}' --load-size 143 --crop-size 128 --epochs 20 \
    --workers 1 --log-every 50 --sample-every 2000 --checkpoint-every 2000 > "$out/$1.log" 2>&1
}

train pix2pix-l1-cgan & train pix2pix-l1 & wait
train pix2pix-cgan & train pix2pix-l1-gan & wait
train pix2pix-gan

for config in pix2pix-l1 pix2pix-gan pix2pix-cgan pix2pix-l1-gan pix2pix-l1-cgan; do
  imgtrans eval "$out/$config" --data "$data/test" --direction BtoA --size 128 --out "$out/eval-$config" \
    | tee "$out/eval-$config.txt"
done
