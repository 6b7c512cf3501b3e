#!/usr/bin/env bash
# Same-budget comparison on CMP Facades (labels -> photo, BtoA) of the paper's U-Net and U-Nets
# with timm encoders, all with the paper's objective (L1 + cGAN, 70x70 PatchGAN): 128x128 crops,
# batch 1, 4 epochs (2 constant + 2 decaying), then L1 / PSNR / SSIM / sharpness on the 106 test
# images (eval mode). Encoders start from random weights unless PRETRAINED=1 (needs the network
# or the timm weights in the Hugging Face cache). Two runs at a time, one thread each.
#
#   bash benchmarks/timm_comparison.sh [OUT]        (default OUT=runs/timm-comparison)
set -euo pipefail
out="${1:-runs/timm-comparison}"
data="${FACADES:-../shared/data/facades}"
pretrained=$([ "${PRETRAINED:-0}" = 1 ] && echo true || echo false)
mkdir -p "$out"
export OMP_NUM_THREADS=1

train() {  # run name, generator, generator arguments (JSON)
  imgtrans train pix2pix-l1-cgan --data "$data/train" --direction BtoA --out "$out/$1" \
    --model-args "{\"generator\": \"$2\", \"generator_args\": $3}" --load-size 143 --crop-size 128 \
    --epochs 4 --workers 1 --log-every 50 --sample-every 800 --checkpoint-every 800 > "$out/$1.log" 2>&1
}

train unet128 unet128 '{}' &
train unet-resnet34 unet-resnet34 "{\"pretrained_encoder\": $pretrained}" &
wait
train unet-efficientnet_b0 unet-efficientnet_b0 "{\"pretrained_encoder\": $pretrained}"

for run in unet128 unet-resnet34 unet-efficientnet_b0; do
  imgtrans eval "$out/$run" --data "$data/test" --direction BtoA --size 128 --modes eval --out "$out/eval-$run" \
    | tee "$out/eval-$run.txt"
done
