#!/usr/bin/env python3
"""Each convolution of the pix2pix training step on its own: milliseconds and GFLOP/s, forward and backward.

    python benchmarks/layer_times.py --amp fp32
    python benchmarks/layer_times.py --amp bf16 --batch 4

Runs one trainer step (U-Net 256 + 70x70 PatchGAN, random pairs) to record every convolution's
input as the step hands it over (shape, memory layout), then times each layer alone: forward under
the step's autocast, and backward from a gradient of ones, with the input's gradient wherever the
step needs one (all but the networks' first layers). Caches are emptied before each call by
writing 128 MB, as the step's other layers would. Prints one JSON line per layer (median of 9
calls, best of three rounds; FLOPs from the layer's shape) and the sum. The PatchGAN
runs three times a step (twice with weight gradients), the U-Net once.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from imgtrans.blocks.unfolded import channels_last
from imgtrans.data import SyntheticFacades
from imgtrans.devices import instruction_set
from imgtrans.train import TrainConfig, Trainer


def layer_inputs(trainer: Trainer, batch: dict) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Every convolution of the model with the first input the step gave it (and whether that needed a gradient)."""
    seen: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    hooks = []
    for name, module in trainer.model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            def record(mod, args, name=name):
                seen.setdefault(name, (mod, args[0].detach().clone().requires_grad_(args[0].requires_grad)))
            hooks.append(module.register_forward_pre_hook(record))
    trainer.train_step(batch)
    for hook in hooks:
        hook.remove()
    return seen


def gflop(module: nn.Module, inp: torch.Tensor, out_shape: torch.Size) -> float:
    """The layer's multiply-adds times 2, for the forward pass, the weight gradient and, if needed, the input's."""
    kh, kw = module.kernel_size
    pixels = inp[0, 0].numel() if isinstance(module, nn.ConvTranspose2d) else out_shape[2] * out_shape[3]
    one = 2 * inp.shape[0] * module.in_channels * module.out_channels * kh * kw * pixels
    return one * (3 if inp.requires_grad else 2) / 1e9


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--amp", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    a = p.parse_args()
    trainer = Trainer(TrainConfig(model="pix2pix-facades", amp=a.amp, workers=0, out="/tmp/imgtrans-bench"),
                      train_data=SyntheticFacades(1, 16))  # fmt: skip
    x = torch.rand(a.batch, 3, a.size, a.size) * 2 - 1
    inputs = layer_inputs(trainer, {"input": x, "target": torch.rand_like(x) * 2 - 1})
    flush = torch.zeros(32 << 20)
    total = 0.0
    for name, (module, inp) in inputs.items():  # the networks' inputs need no gradient
        with torch.no_grad(), trainer.autocast():
            out_shape = module(inp).shape

        def call(module: nn.Module = module, inp: torch.Tensor = inp) -> float:
            flush.add_(1)
            module.zero_grad(set_to_none=True)
            inp.grad = None
            start = time.perf_counter()
            with trainer.autocast():
                out = module(inp)
            out.backward(torch.ones_like(out))
            return time.perf_counter() - start

        rounds = []
        for _ in range(3):
            call()
            rounds.append(sorted(call() for _ in range(9))[4] * 1000)
        ms = min(rounds)
        total += ms
        print(json.dumps({
            "layer": name, "kind": type(module).__name__, "input": list(inp.shape),
            "channels_last": inp.dim() == 4 and channels_last(inp),
            "ms": round(ms, 2), "gflop_per_s": round(gflop(module, inp, out_shape) / ms * 1000, 1),
        }))
    print(json.dumps({"amp": a.amp, "batch": a.batch, "size": a.size, "sum_ms": round(total, 1),
                      "cpu": instruction_set(), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
