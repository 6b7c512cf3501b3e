#!/usr/bin/env python3
"""What each backend and precision does to the output, on real test images.

    python benchmarks/precision_psnr.py RUN_OR_MODEL --data ../shared/data/facades/test --direction BtoA
    python benchmarks/precision_psnr.py RUN_OR_MODEL --data ../shared/data/facades/test --direction BtoA --size 1024

For every setting (torch fp32 eager and compiled, torch bf16 eager and compiled, onnxruntime fp32, onnxruntime
int8 calibrated on the first 32 label maps of ``--calibration``), translates every test input and reports:

- against PyTorch's float32 eval-mode output: PSNR over the whole set (images on [0, 1]), the
  lowest PSNR of one image, the largest absolute difference (in [-1, 1] units);
- against the targets (at 256 only): the paper's per-image scores (L1, PSNR, SSIM), averaged.

``--size 1024`` scales the label maps up (nearest neighbour) to 1024x1024, one at a time, to check
the 1024 setting's output against float32 (no targets at that size). One JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from imgtrans.data.paired import PairedImageDataset
from imgtrans.images import image_to_tensor
from imgtrans.store.factory import load as load_model
from imgtrans.metrics import image_scores
from imgtrans.deploy.translators import TorchTranslator, instruction_set, native_bf16, onnx_translator

CALIBRATION = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades" / "train"


def calibration_images(folder: Path, direction: str, count: int = 32) -> list[torch.Tensor]:
    """The first ``count`` inputs (B halves for BtoA) of the AB files in ``folder``."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:count]
    images = []
    for f in files:
        image = Image.open(f).convert("RGB")
        w, h = image.size
        half = (w // 2, 0, w, h) if direction == "BtoA" else (0, 0, w // 2, h)
        images.append(image_to_tensor(image.crop(half)).unsqueeze(0))
    return images


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model", help="run folder, saved model, checkpoint or zoo name")
    p.add_argument("--data", required=True, help="AB test images")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="BtoA")
    p.add_argument("--calibration", default=str(CALIBRATION), help="AB training images for int8 ranges")
    p.add_argument("--size", type=int, default=256, help="256 (the data's size) or larger: label maps scaled up")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--limit", type=int, help="only the first N test images")
    p.add_argument("--only", nargs="+", help="only these settings (e.g. 'torch fp32 compiled'); float32 always runs")
    a = p.parse_args()
    model = load_model(a.model)
    data = PairedImageDataset(a.data, direction=a.direction, load_size=None, crop_size=None, train=False)
    indices = list(range(len(data)))[: a.limit]
    inputs = torch.stack([data[i]["input"] for i in indices])
    targets = torch.stack([data[i]["target"] for i in indices])
    if a.size != inputs.shape[-1]:
        inputs = F.interpolate(inputs, size=(a.size, a.size), mode="nearest")
        targets = None
    batch = a.batch if a.size <= 256 else 1
    settings = {"torch fp32": lambda: TorchTranslator(model)}
    settings["torch fp32 compiled"] = lambda: TorchTranslator(model, compile=True)
    if native_bf16():
        settings["torch bf16"] = lambda: TorchTranslator(model, "bf16")
        settings["torch bf16 compiled"] = lambda: TorchTranslator(model, "bf16", compile=True)
    settings["onnxruntime fp32"] = lambda: onnx_translator(model)
    settings["onnxruntime int8"] = lambda: onnx_translator(
        model, "int8", calibration=calibration_images(Path(a.calibration), a.direction)
    )
    reference = None
    for name, make in settings.items():
        if a.only and name != "torch fp32" and name not in a.only:
            continue
        translator = make()
        outputs = torch.cat([translator(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])
        record = {"setting": name, "size": a.size, "images": len(inputs)}
        if reference is None:
            reference = outputs
        diff = (outputs - reference) / 2  # on [0, 1]
        mse_each = diff.pow(2).flatten(1).mean(1)
        mse = float(mse_each.mean())
        record["psnr_vs_fp32"] = round(10 * math.log10(1 / mse), 2) if mse > 0 else math.inf
        record["min_image_psnr_vs_fp32"] = round(float(10 * torch.log10(1 / mse_each.max())), 2) if mse > 0 else math.inf
        record["max_abs_error_vs_fp32"] = float(f"{float((outputs - reference).abs().max()):.3g}")
        if targets is not None:
            scores = image_scores(outputs.clamp(-1, 1), targets)
            record.update({f"target_{k}": round(float(v.mean()), 4) for k, v in scores.items()})
        record["cpu"] = instruction_set()
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
