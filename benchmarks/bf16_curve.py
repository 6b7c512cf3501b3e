#!/usr/bin/env python3
"""Does bf16 autocast training follow the fp32 loss curve? Same seed, data and steps, twice.

    python benchmarks/bf16_curve.py --data ../shared/data/facades/train --steps 300

Trains pix2pix-facades (labels -> photo, BtoA) in fp32 and then in bf16 from identical weights,
data order and augmentation, and compares the loss curves after smoothing over a window. Prints
one JSON line per logged step of each run and a summary with the largest relative gap between
the smoothed curves over the second half of the run. ``--base-channels`` and ``--crop`` shrink the
model and images where bf16 is emulated (CPUs without AVX512-BF16/AMX), so that it finishes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

from imgtrans.train import TrainConfig, Trainer


def run(args: argparse.Namespace, amp: str, out: str) -> list[dict]:
    width = {"base_channels": args.base_channels}
    config = TrainConfig(
        model="pix2pix-facades",
        model_args={"generator_args": width, "discriminator_args": width},
        data=args.data,
        direction="BtoA",
        out=out,
        load_size=args.crop + args.crop // 8,
        crop_size=args.crop,
        amp=amp,
        max_steps=args.steps,
        log_every=1,
        sample_every=0,
        checkpoint_every=0,
        workers=0,
    )
    Trainer(config).fit()
    with open(f"{out}/log.jsonl") as f:
        return [json.loads(line) for line in f]


def smooth(values: list[float], window: int) -> list[float]:
    return [statistics.fmean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/data/facades/train")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--base-channels", type=int, default=64)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--window", type=int, default=25)
    a = p.parse_args()
    curves = {}
    for amp in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as out:
            curves[amp] = run(a, amp, out)
        for record in curves[amp]:
            print(json.dumps({"amp": amp, **{k: record[k] for k in ("step", "d_loss", "g_gan", "g_l1")}}))
    summary = {"what": f"bf16 vs fp32 loss curves, {a.steps} steps, width {a.base_channels}, crop {a.crop}"}
    for term in ("g_l1", "d_loss", "g_gan"):
        fp32 = smooth([r[term] for r in curves["fp32"]], a.window)
        bf16 = smooth([r[term] for r in curves["bf16"]], a.window)
        half = len(fp32) // 2
        gaps = [abs(b - f) / abs(f) for f, b in zip(fp32[half:], bf16[half:])]
        summary[f"{term}_max_relative_gap"] = round(max(gaps), 4)
        summary[f"{term}_fp32_last"] = round(fp32[-1], 4)
        summary[f"{term}_bf16_last"] = round(bf16[-1], 4)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
