#!/usr/bin/env python3
"""Time imgtrans's pix2pix training step (the trainer's own) or inference, as the textbook script does.

    python benchmarks/pix2pix_step.py --mode train --size 256 --batch 1 --amp fp32 --iters 5
    python benchmarks/pix2pix_step.py --mode infer --size 256 --batch 8 --compile
    python benchmarks/pix2pix_step.py --mode infer --size 256 --batch 8 --backend torch --precision bf16
    python benchmarks/pix2pix_step.py --mode infer --size 256 --batch 8 --backend onnxruntime --precision int8 \
        --onnx-cache /tmp/imgtrans-onnx

Inference with ``--backend``/``--precision`` runs the translator ``imgtrans translate`` runs
(imgtrans.deploy.translators, NaN checks included, glibc's allocator told to keep freed memory as
``imgtrans translate`` tells it); onnxruntime files are exported (int8: calibrated on the
first 32 label maps of ../shared/data/facades/train) into ``--onnx-cache`` once, outside the timing.

Same models (U-Net 256 + 70x70 PatchGAN), same random inputs in [-1, 1], same warm-up. Prints one
JSON line: mean and median ms per iteration, images/s, FLOPs per iteration (counted with
torch.utils.flop_counter), achieved GFLOP/s and peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics

import torch

from pathlib import Path

from imgtrans.data import SyntheticFacades
from imgtrans.deploy.fusion import compile_for_inference
from imgtrans.inference import translate
from imgtrans.train import TrainConfig, Trainer
from peak import flop_counter, step_seconds  # this folder's: FLOPs with oneDNN's products; one timing loop

CALIBRATION = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades" / "train"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--amp", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="infer: torch.compile with frozen weights")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], help="infer: run imgtrans.deploy.translators's translator")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32")
    p.add_argument("--onnx-cache", default="/tmp/imgtrans-onnx", help="folder for the exported ONNX files")
    p.add_argument("--calibration", default=str(CALIBRATION), help="int8: AB images whose right half (labels) calibrate")
    a = p.parse_args()
    config = TrainConfig(model="pix2pix-facades", amp=a.amp, device=a.device, workers=0, out="/tmp/imgtrans-bench")
    trainer = Trainer(config, train_data=SyntheticFacades(1, 16))
    device = trainer.device
    x = torch.rand(a.batch, 3, a.size, a.size, device=device) * 2 - 1
    y = torch.rand(a.batch, 3, a.size, a.size, device=device) * 2 - 1
    batch = {"input": x, "target": y}
    compiled = compile_for_inference(trainer.model) if a.compile and a.mode == "infer" and not a.backend else None
    translator = make_translator(trainer.model, a) if a.backend and a.mode == "infer" else None

    def step() -> None:
        if a.mode == "train":
            trainer.train_step(batch)
            return
        if translator is not None:
            translator(x)
            return
        with trainer.autocast():
            compiled(x) if compiled is not None else translate(trainer.model, x)

    with flop_counter() as counter:  # eager, outside the timing
        trainer.train_step(batch) if a.mode == "train" else translate(trainer.model, x)
    times = step_seconds(step, a.warmup, a.iters, device)
    mean, median = statistics.fmean(times), statistics.median(times)
    gflop = counter.get_total_flops() / 1e9
    setting = f"backend={a.backend} precision={a.precision}" if translator is not None else f"amp={a.amp}"
    setting += " compiled" if a.compile and a.backend == "torch" else ""
    print(json.dumps({
        "what": f"imgtrans pix2pix {a.mode} size={a.size} batch={a.batch} {setting}"
        + (" compiled" if compiled else "") + f" device={device.type}",
        "ms_per_iter": round(mean * 1000, 2),
        "median_ms": round(median * 1000, 2),
        "img_per_s": round(a.batch / mean, 3),
        "gflop_per_iter": round(gflop, 2),
        "gflop_per_s": round(gflop / median, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": cpu(),
    }))


def cpu() -> str:
    """The CPU's instruction set as imgtrans.deploy.translators reports it (absent from older checkouts)."""
    try:
        from imgtrans.deploy.translators import instruction_set
    except ImportError:
        return torch.backends.cpu.get_cpu_capability()
    return instruction_set()


def make_translator(model, a):
    """imgtrans.deploy.translators's translator for --backend/--precision; ONNX files exported once into --onnx-cache."""
    from PIL import Image

    from imgtrans.images import image_to_tensor
    from imgtrans.deploy.onnx import export_onnx
    from imgtrans.deploy.int8 import quantize_onnx
    from imgtrans.deploy.translators import OnnxTranslator, TorchTranslator
    from imgtrans.devices import keep_freed_memory

    keep_freed_memory()  # as imgtrans translate does
    if a.backend == "torch":
        return TorchTranslator(model, a.precision, next(model.parameters()).device, compile=a.compile)
    cache = Path(a.onnx_cache)
    path = cache / f"pix2pix-facades-seed0-{a.precision}.onnx"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        if a.precision == "int8":
            files = sorted(Path(a.calibration).glob("*.jpg"))[:32]
            images = [image_to_tensor(Image.open(f).convert("RGB").crop((256, 0, 512, 256))).unsqueeze(0) for f in files]
            quantize_onnx(model, path, images)
        else:
            export_onnx(model, path)
    return OnnxTranslator(path)


if __name__ == "__main__":
    main()
