#!/usr/bin/env python3
"""The trainer's step with the U-Net contiguous, channels-last with torch's Adam, and as the trainer sets it up.

    python benchmarks/layout_ab.py --amp bf16 --rounds 10
    python benchmarks/layout_ab.py --amp fp32 --rounds 8
    python benchmarks/layout_ab.py --amp bf16 --batch 4 --rounds 3 --variants contiguous,default

An A/B in one process (U-Net 256 + 70x70 PatchGAN, random pairs, 256x256): two trainers of each
variant, in an order shuffled every round, two steps each per round; prints each copy's median ms.

- ``contiguous``: the U-Net kept contiguous (as on CPUs without AMX, ``train.setup.has_amx`` off);
- ``torch_adam``: the U-Net channels-last, with ``torch.optim.Adam``, whose fused CPU kernel copies
  every channels-last gradient;
- ``default``: the U-Net channels-last with imgtrans's Adam (the trainer's own choice on AMX CPUs).

Forcing the channels-last U-Net on a CPU without AMX measures what the rule would do there.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

import imgtrans.train.setup as setup
import imgtrans.train.trainer as trainer_module
from imgtrans.blocks.unfolded import channels_last
from imgtrans.data import SyntheticFacades
from imgtrans.devices import instruction_set
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train.optimizer import Adam

VARIANTS = ("contiguous", "torch_adam", "default")


def build(variant: str, amp: str) -> Trainer:
    """A trainer whose U-Net layout and optimiser are the variant's (the module attributes the trainer reads)."""
    setup.has_amx = lambda: variant != "contiguous"
    trainer_module.Adam = torch.optim.Adam if variant == "torch_adam" else Adam
    config = TrainConfig(workers=0, out="/tmp/imgtrans-layout-ab", amp=amp)
    trainer = Trainer(config, train_data=SyntheticFacades(1, 16))
    assert channels_last(trainer.model.generator.encoder[1].conv.weight) == (variant != "contiguous"), variant
    return trainer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--amp", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"a comma-separated subset of {', '.join(VARIANTS)}")
    a = p.parse_args()
    variants = a.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        p.error(f"--variants: unknown {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    size = (a.batch, 3, 256, 256)
    torch.manual_seed(0)
    batch = {"input": torch.rand(size) * 2 - 1, "target": torch.rand(size) * 2 - 1}
    copies = [(v, i, build(v, a.amp)) for v in variants for i in range(2)]
    for _, _, trainer in copies:
        for _ in range(2):
            trainer.train_step(batch)  # warm-up
    times: dict[tuple[str, int], list[float]] = {(v, i): [] for v, i, _ in copies}
    for _ in range(a.rounds):
        random.shuffle(copies)
        for v, i, trainer in copies:
            for _ in range(2):
                start = time.perf_counter()
                trainer.train_step(batch)
                times[(v, i)].append((time.perf_counter() - start) * 1000)
    for (v, i), ms in sorted(times.items()):
        print(json.dumps({"variant": v, "copy": i, "amp": a.amp, "batch": a.batch,
                          "median_ms": round(statistics.median(ms), 1), "rounds": a.rounds,
                          "cpu": instruction_set(), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
