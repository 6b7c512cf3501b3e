#!/usr/bin/env python3
"""Time one pix2pixHD training step, the trainer's own, at 512x256 and full widths.

    python benchmarks/pix2pixhd_step.py --width 512 --height 256 --batch 1 --amp fp32 --iters 3
    python benchmarks/pix2pixhd_step.py --amp bf16

The ``pix2pixhd`` recipe as ``imgtrans.build`` makes it: the global generator (64 filters, 4
downsamplings, 9 residual blocks), 2 multi-scale discriminators (64 filters, 3 layers), LSGAN,
feature matching and the VGG-19 term (random VGG weights: the time does not depend on them, and
nothing is downloaded). The input is a one-hot Cityscapes-style label map, ``--label-nc`` classes
plus the instance-boundary channel. One step is NVIDIA's: G's update, then D's, from one forward
pass. Prints one JSON line: mean and median ms per step, FLOPs per step (torch.utils.flop_counter),
achieved GFLOP/s, peak resident memory and the CPU's instruction set.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics

import torch

from imgtrans.data.labels import encode_labels
from imgtrans.train import TrainConfig, Trainer
from peak import flop_counter, step_seconds  # this folder's: FLOPs with oneDNN's products; one timing loop


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--label-nc", type=int, default=35, help="classes of the label map (Cityscapes: 35)")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--amp", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    channels = a.label_nc + 1
    torch.manual_seed(0)
    labels = torch.randint(0, a.label_nc, (a.batch, 1, a.height, a.width))
    instances = torch.randint(0, 4, (a.batch, 1, a.height, a.width))
    x = encode_labels(labels, a.label_nc, instances)
    y = torch.rand(a.batch, 3, a.height, a.width) * 2 - 1
    data = [{"input": x[0], "target": y[0]}]
    config = TrainConfig(
        model="pix2pixhd", model_args={"in_channels": channels, "pretrained_vgg": False}, amp=a.amp,
        device=a.device, workers=0, out="/tmp/imgtrans-bench-hd",
    )  # fmt: skip
    trainer = Trainer(config, train_data=data)
    device = trainer.device
    batch = {"input": x.to(device), "target": y.to(device)}
    with flop_counter() as counter:  # outside the timing
        trainer.train_step(batch)
    times = step_seconds(lambda: trainer.train_step(batch), a.warmup, a.iters, device)
    mean, median = statistics.fmean(times), statistics.median(times)
    gflop = counter.get_total_flops() / 1e9
    print(json.dumps({
        "what": f"imgtrans pix2pixhd train {a.width}x{a.height} batch={a.batch} in_channels={channels} amp={a.amp} "
        f"device={device.type}",
        "ms_per_step": round(mean * 1000, 1),
        "median_ms": round(median * 1000, 1),
        "steps": a.iters,
        "gflop_per_step": round(gflop, 1),
        "gflop_per_s": round(gflop / median, 1),
        "parameters_g_d": [sum(p.numel() for p in n.parameters()) for n in trainer.model.networks().values()],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }))


if __name__ == "__main__":
    main()
