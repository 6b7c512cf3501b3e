"""Parameters and CPU inference speed of the timm-encoder U-Nets against the paper's ``unet256``.

Prints one JSON line per generator: its parameters (encoder and decoder apart for the timm
ones) and images per second in eval mode, without gradients, for a batch of one 256x256 image
(the median of ``--repeats`` timed runs after ``--warmup`` untimed ones). Random weights: the
speed does not depend on them.

    python benchmarks/timm_generators.py [--threads N] [--size 256] [--repeats 20]

On a machine shared with other jobs the speeds are approximate; compare them with each other
rather than with numbers measured elsewhere.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import imgtrans
from imgtrans.models.timm_parts import ENCODERS


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def images_per_second(model: torch.nn.Module, size: int, warmup: int, repeats: int) -> float:
    x = torch.rand(1, 3, size, size) * 2 - 1
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ["unet256", *(f"unet-{encoder}" for encoder in ENCODERS)]
    for name in names:
        torch.manual_seed(0)
        model = imgtrans.build(name).eval()
        row = {"generator": name, "parameters": count(model)}
        if hasattr(model, "encoder_name"):
            row["encoder_parameters"] = count(model.encoder)
            row["decoder_parameters"] = row["parameters"] - row["encoder_parameters"]
        row.update(
            images_per_second=round(images_per_second(model, args.size, args.warmup, args.repeats), 2),
            size=args.size,
            batch=1,
            threads=args.threads,
            torch=torch.__version__,
            cpu=platform.processor() or platform.machine(),
        )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
