#!/usr/bin/env python3
"""A CycleGAN run's test images both ways, as the reference's visuals show them.

Columns: A | G_A(A) | G_B(G_A(A)) | B | G_B(B) | G_A(G_B(B)).

    python benchmarks/cyclegan_samples.py RUN DATA OUT.png [--count 6] [--size 64]

RUN: a run folder, model folder or checkpoint (anything imgtrans.load reads); DATA: a folder with
testA/ and testB/ (images the run did not train on). Prints the mean L1 of each cycle on them.
"""

from __future__ import annotations

import argparse
import json

import torch

import imgtrans
from imgtrans.data import UnpairedImageDataset
from imgtrans.images import save_image
from imgtrans.train.samples import image_grid


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--count", type=int, default=6)
    p.add_argument("--size", type=int, default=64)
    a = p.parse_args()
    model = imgtrans.load(a.run)
    data = UnpairedImageDataset(a.data, split="test", load_size=a.size, crop_size=a.size, train=False)
    items = [data[i] for i in range(min(a.count, len(data)))]
    real_a, real_b = torch.stack([i["input"] for i in items]), torch.stack([i["target"] for i in items])
    fake_b, fake_a = model.translate(real_a, direction="AtoB"), model.translate(real_b, direction="BtoA")
    rec_a, rec_b = model.translate(fake_b, direction="BtoA"), model.translate(fake_a, direction="AtoB")
    save_image(image_grid([real_a, fake_b, rec_a, real_b, fake_a, rec_b]), a.out)
    print(json.dumps({"images": len(items), "cycle_l1_a": round(float((rec_a - real_a).abs().mean()), 4),
                      "cycle_l1_b": round(float((rec_b - real_b).abs().mean()), 4), "out": a.out}))  # fmt: skip


if __name__ == "__main__":
    main()
