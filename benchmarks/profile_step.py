#!/usr/bin/env python3
"""Where the time of one pix2pix training step goes, by kind of work (torch.profiler, CPU).

    python benchmarks/profile_step.py --size 256 --batch 1

Prints one JSON line per category: ms per step and share of the profiled step.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.profiler import ProfilerActivity, profile

from imgtrans.data import SyntheticFacades
from imgtrans.train import TrainConfig, Trainer

CATEGORIES = {
    "convolution forward": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution"),
    "convolution backward": ("aten::convolution_backward",),
    "matmul + overlap-add (transposed convs on small maps)": ("aten::mm", "aten::bmm", "aten::col2im", "aten::im2col"),
    "Adam update": ("aten::_fused_adam_", "Optimizer.zero_grad#Adam.zero_grad"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "activations and dropout": ("aten::leaky_relu_", "aten::leaky_relu_backward", "aten::relu", "aten::relu_",
                                "aten::threshold_backward", "aten::bernoulli_", "aten::tanh", "aten::tanh_backward"),
    "copies and concatenation": ("aten::copy_", "aten::cat", "aten::constant_pad_nd"),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    trainer = Trainer(TrainConfig(workers=0, out="/tmp/imgtrans-profile"), train_data=SyntheticFacades(1, 16))
    batch = {"input": torch.rand(a.batch, 3, a.size, a.size) * 2 - 1, "target": torch.rand(a.batch, 3, a.size, a.size) * 2 - 1}
    for _ in range(2):
        trainer.train_step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            trainer.train_step(batch)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / a.steps / 1000
    seen = 0.0
    for name, ops in CATEGORIES.items():
        ms = sum(e.self_cpu_time_total for e in events if e.key in ops) / a.steps / 1000
        seen += ms
        print(json.dumps({"category": name, "ms_per_step": round(ms, 1), "share": round(ms / total, 3)}))
    print(json.dumps({"category": "everything else", "ms_per_step": round(total - seen, 1), "share": round(1 - seen / total, 3)}))
    print(json.dumps({"category": "total (profiled)", "ms_per_step": round(total, 1), "size": a.size, "batch": a.batch}))


if __name__ == "__main__":
    main()
