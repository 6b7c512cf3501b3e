#!/usr/bin/env python3
"""This machine's arithmetic peak: large matrix products in fp32 and bf16, and one large convolution.

    python benchmarks/peak.py

Prints one JSON line per measurement (GFLOP/s, median of 5 after warm-up) and whether the CPU
computes bfloat16 natively (oneDNN's check).
"""

from __future__ import annotations

import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula


def median_ms(fn, repeats: int = 5) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def step_seconds(fn, warmup: int, iters: int, device: torch.device) -> list[float]:
    """Seconds of each of ``iters`` calls of ``fn`` after ``warmup`` untimed ones; CUDA work is waited for."""
    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def gflops(fn, flop: float, repeats: int = 5) -> float:
    return flop / median_ms(fn, repeats) / 1e6


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, taught the FLOPs of oneDNN's ``linear`` (``x w^T``, 2 m n k).

    The matmul convolutions compute their float32 products with it (imgtrans.blocks.product), and
    torch.utils.flop_counter knows only ATen's products: uncounted, a U-Net 256 step at 256x256
    batch 1 would count 74 GFLOP instead of 87.
    """
    linear = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if linear is not None and linear not in flop_registry:

        @register_flop_formula(linear)
        def linear_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
            return 2 * x_shape[0] * x_shape[1] * w_shape[0]

    return FlopCounterMode(display=False)


def main() -> None:
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    n = 2048
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        size = n if dtype is torch.float32 or native_bf16 else 256  # emulated bf16 is very slow
        a, b = a[:size, :size].contiguous(), b[:size, :size].contiguous()
        print(json.dumps({"what": f"matmul {size}x{size} {str(dtype)[6:]}", "gflop_per_s": round(gflops(lambda: a @ b, 2 * size**3), 1)}))
    x, w = torch.randn(1, 256, 32, 32), torch.randn(512, 256, 4, 4)
    flop = 2 * 512 * 256 * 16 * 31 * 31
    with torch.no_grad():
        print(json.dumps({"what": "conv 256->512 4x4 at 32x32 (the PatchGAN's C512) fp32",
                          "gflop_per_s": round(gflops(lambda: F.conv2d(x, w, padding=1), flop), 1)}))
    print(json.dumps({"what": "cpu", "capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
