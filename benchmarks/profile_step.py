#!/usr/bin/env python3
"""Where the time of one pix2pix training step goes, by kind of work, forward and backward; and its floor.

    python benchmarks/profile_step.py --size 256 --batch 1 --amp fp32
    python benchmarks/profile_step.py --size 256 --batch 1 --amp bf16

The trainer's own step (U-Net 256 + 70x70 PatchGAN, random pairs), profiled with torch.profiler on
the CPU. Each operator's self time goes to a kind of work, and to the backward pass when it runs
inside autograd's engine. FLOPs per kind are counted with torch.utils.flop_counter.

The floor, measured in the same run: the step's convolution and matrix-product arithmetic at the
speed of the PatchGAN's largest convolution (C512 at 32x32, forward and backward, best of three medians, in this
precision: the best any of the step's layers reaches), plus Adam's memory traffic (per parameter
it reads weight, gradient and two moments and writes three, 28 bytes) at the bandwidth the fused
Adam kernel reaches on its own over as many weights. Prints one JSON line per kind of work, then the
floor and the step's ratio to it.

The profiler's own allocations change what glibc can reuse: with them, the step's large tensors
(the bf16 weight copies, 32 MB gradients) land on fresh pages, about 25,000 page faults per
profiled step against none unprofiled (``page_faults_per_*step``), and their zero-filling is
charged to whichever operator allocated: mostly the casts and copies under bf16. So the profile's
shares are of a slower step than the one timed (``profiled_ms`` against ``step_ms``).
"""

from __future__ import annotations

import argparse
import json
import resource

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from imgtrans.data import SyntheticFacades
from imgtrans.devices import instruction_set
from imgtrans.train import TrainConfig, Trainer
from peak import flop_counter, median_ms  # this folder's: the same timing as the peak measurements

KINDS = {
    "convolution": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::convolution_backward",
                    "aten::mkldnn_convolution_backward"),
    "matrix products (small maps)": ("aten::mm", "aten::bmm", "aten::addmm", "mkldnn::_linear_pointwise"),
    "im2col and overlap-add": ("aten::col2im", "aten::im2col"),
    "Adam": ("aten::_fused_adam_", "Optimizer.zero_grad#Adam.zero_grad"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::_batch_norm_with_update",
                   "aten::batch_norm_backward"),
    "activations, dropout, tanh": ("aten::leaky_relu_", "aten::leaky_relu", "aten::leaky_relu_backward", "aten::relu",
                                   "aten::relu_", "aten::threshold_backward", "aten::bernoulli_", "aten::tanh",
                                   "aten::tanh_backward", "aten::mul", "aten::div_"),
    "copies, casts, concatenation": ("aten::copy_", "aten::cat", "aten::constant_pad_nd", "aten::clone",
                                     "aten::contiguous"),
}  # fmt: skip


def kind_of(name: str) -> str:
    return next((kind for kind, names in KINDS.items() if name in names), "everything else")


def page_faults() -> int:
    """This process's minor page faults so far (pages the kernel mapped and zero-filled on first touch)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def in_backward(event) -> bool:
    """Whether an operator ran inside autograd's engine (the backward pass)."""
    while event is not None:
        if event.name.startswith("autograd::engine::evaluate_function"):
            return True
        event = event.cpu_parent
    return False


def convolution_peak(amp: str) -> float:
    """GFLOP/s of the PatchGAN's C512 convolution (256 -> 512, 4x4, 32x32), forward and backward."""
    x = torch.randn(1, 256, 32, 32, requires_grad=True).contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 256, 4, 4, requires_grad=True)
    flop = 3 * 2 * 512 * 256 * 16 * 31 * 31  # forward, input gradient, weight gradient

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=amp == "bf16"):
            y = F.conv2d(x, w, padding=1)
        y.backward(torch.ones_like(y))
        x.grad = w.grad = None

    return flop / best_ms(step) / 1e6


def best_ms(fn) -> float:
    """The best of three medians of ``fn``: a peak is what the CPU reaches, and other load only slows it."""
    return min(median_ms(fn) for _ in range(3))


def adam_bandwidth(parameters: int) -> float:
    """GB/s the fused Adam kernel streams over ``parameters`` weights, 28 bytes each, in 8M-weight tensors.

    Faster than a plain copy or ``torch.add`` here (56 against 41 and 34 GB/s): the best this
    memory gives to Adam's pass, so its share of the floor is what no step can beat.
    """
    chunk = 8 << 20
    weights = [torch.nn.Parameter(torch.randn(chunk)) for _ in range(max(parameters // chunk, 1))]
    for w in weights:
        w.grad = torch.randn(chunk)
    adam = torch.optim.Adam(weights, lr=2e-4, betas=(0.5, 0.999), fused=True)
    return 28 * len(weights) * chunk / best_ms(adam.step) / 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--amp", choices=["fp32", "bf16"], default="fp32")
    a = p.parse_args()
    config = TrainConfig(workers=0, out="/tmp/imgtrans-profile", amp=a.amp)
    trainer = Trainer(config, train_data=SyntheticFacades(1, 16))
    size = (a.batch, 3, a.size, a.size)
    batch = {"input": torch.rand(size) * 2 - 1, "target": torch.rand(size) * 2 - 1}
    for _ in range(2):
        trainer.train_step(batch)
    with flop_counter() as counter:
        trainer.train_step(batch)
    flops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    faults = [page_faults()]
    step_ms = median_ms(lambda: trainer.train_step(batch), a.steps)
    faults.append(page_faults())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            trainer.train_step(batch)
    faults.append(page_faults())
    split: dict[tuple[str, str], float] = {}
    for event in prof.events():
        if event.name.startswith(("autograd::", "Optimizer.step", "ProfilerStep")):
            continue  # wrappers: their work is in the operators they call
        key = (kind_of(event.name), "backward" if in_backward(event) else "forward")
        split[key] = split.get(key, 0.0) + event.self_cpu_time_total / 1000 / a.steps
    profiled = sum(split.values())
    products = {name.split("::")[1] for name in KINDS["matrix products (small maps)"]}  # "aten::mm" -> "mm"
    gflop = {
        "convolution": sum(v for k, v in flops.items() if "convolution" in k) / 1e9,
        "matrix products (small maps)": sum(v for k, v in flops.items() if k.split(".")[1] in products) / 1e9,
    }
    for kind in [*KINDS, "everything else"]:
        fwd, bwd = split.get((kind, "forward"), 0.0), split.get((kind, "backward"), 0.0)
        line = {"kind": kind, "forward_ms": round(fwd, 1), "backward_ms": round(bwd, 1),
                "share": round((fwd + bwd) / profiled, 3)}  # fmt: skip
        if kind in gflop:
            line |= {"gflop": round(gflop[kind], 2), "gflop_per_s": round(gflop[kind] / (fwd + bwd) * 1000, 1)}
        print(json.dumps(line))
    parameters = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    peak, gb_per_s = convolution_peak(a.amp), adam_bandwidth(parameters)
    arithmetic_ms = sum(gflop.values()) / peak * 1000
    adam_ms = 28 * parameters / gb_per_s / 1e6
    floor = arithmetic_ms + adam_ms
    print(json.dumps({
        "step_ms": round(step_ms, 1), "profiled_ms": round(profiled, 1), "amp": a.amp, "size": a.size, "batch": a.batch,
        "arithmetic_gflop": round(sum(gflop.values()), 2), "convolution_peak_gflop_per_s": round(peak, 1),
        "bandwidth_gb_per_s": round(gb_per_s, 1), "floor_ms": round(floor, 1),
        "floor_arithmetic_ms": round(arithmetic_ms, 1), "floor_adam_ms": round(adam_ms, 1),
        "step_over_floor": round(step_ms / floor, 2), "cpu": instruction_set(), "threads": torch.get_num_threads(),
        "page_faults_per_step": round((faults[1] - faults[0]) / (a.steps + 1)),  # median_ms warms up once
        "page_faults_per_profiled_step": round((faults[2] - faults[1]) / a.steps),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
