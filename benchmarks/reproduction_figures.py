#!/usr/bin/env python3
"""Figures and table of the facades reproduction, from the runs of reproduce_facades.sh.

    python benchmarks/reproduction_figures.py runs/reproduction docs/figures

Writes ``reproduction_samples.png`` (test images: input | each objective | target),
``reproduction_lab.png`` (the Lab marginals of every objective's outputs against the targets,
Figure 7 of the paper) and prints a Markdown table of the evaluation metrics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from imgtrans.data import PairedImageDataset
from imgtrans.inference import translate
from imgtrans.store.factory import load as load_model
from imgtrans.metrics import draw_lab_histograms
from imgtrans.images import save_image
from imgtrans.train.samples import image_grid

RUNS = {"L1": "pix2pix-l1", "GAN": "pix2pix-gan", "cGAN": "pix2pix-cgan", "L1+GAN": "pix2pix-l1-gan",
        "L1+cGAN": "pix2pix-l1-cgan"}  # fmt: skip


def colour_spread(distributions: dict) -> dict[str, float]:
    """Standard deviation of the outputs' a and b over that of the targets' (1: as colourful as the photos).

    Computed from the Lab histograms that ``imgtrans eval`` stores; "greyish" outputs have a
    spread well below 1.
    """
    spread = {}
    for channel in ("a", "b"):
        axis = distributions["axes"][channel]
        width = (axis["high"] - axis["low"]) / axis["bins"]
        centres = torch.arange(axis["bins"], dtype=torch.float64) * width + axis["low"] + width / 2
        output, target = (histogram_std(distributions[side][channel], centres) for side in ("output", "target"))
        spread[channel] = output / target
    return spread


def histogram_std(histogram: list[float], centres: torch.Tensor) -> float:
    p = torch.tensor(histogram, dtype=torch.float64)
    p = p / p.sum()
    mean = (p * centres).sum()
    return float((p * (centres - mean) ** 2).sum().sqrt())


def loss_means(log: Path, epochs: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """Mean of each logged loss over each of ``epochs`` (1-based), from a run's log.jsonl."""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    means = {}
    for epoch in epochs:
        inside = [r for r in records if epoch - 1 < r["epoch"] <= epoch]
        keys = [k for k in inside[0] if k not in ("step", "epoch", "lr", "img_per_s")] if inside else []
        means[epoch] = {k: sum(r[k] for r in inside) / len(inside) for k in keys}
    return means


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--data", default="../shared/data/facades/test")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--images", default="1,27,53,88", help="test file numbers shown in the samples figure")
    a = p.parse_args()
    runs = {label: a.runs / name for label, name in RUNS.items() if (a.runs / f"eval-{name}" / "metrics.json").is_file()}
    metrics = {label: json.loads((a.runs / f"eval-{run.name}" / "metrics.json").read_text()) for label, run in runs.items()}

    header = "| objective | L1 | PSNR (dB) | SSIM | sharpness | colour spread a / b | Lab intersection L / a / b |"
    print(header + "\n| --- | --- | --- | --- | --- | --- | --- |")
    for label, m in metrics.items():
        for mode, section in m["modes"].items():
            mean, lab = section["summary"]["mean"], section["summary"]["lab_intersection"]
            spread = colour_spread(section["lab_distributions"])
            name = label if mode == "eval" else f"{label} (paper's test mode)"
            print(f"| {name} | {mean['l1']:.4f} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | {mean['sharpness']:.3f} "
                  f"| {spread['a']:.2f} / {spread['b']:.2f} | {lab['L']:.3f} / {lab['a']:.3f} / {lab['b']:.3f} |")

    print("\n| objective | epoch | D loss | D(real) logit | D(fake) logit | G GAN term | G L1 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, run in runs.items():
        for epoch, means in loss_means(run / "log.jsonl", epochs=(1, 5, 10, 15, 20)).items():
            cells = " | ".join(f"{means[k]:.3f}" if k in means else "-" for k in ("d_loss", "d_real", "d_fake", "g_gan", "g_l1"))
            print(f"| {label} | {epoch} | {cells} |")

    a.out.mkdir(parents=True, exist_ok=True)
    figure = draw_lab_histograms({label: m["modes"]["eval"]["lab_distributions"] for label, m in metrics.items()})
    figure.save(a.out / "reproduction_lab.png")

    data = PairedImageDataset(a.data, "BtoA", load_size=a.size, crop_size=None, train=False)
    index = {p[0].name: i for i, p in enumerate(data.pairs)}
    items = [data[index[f"{n}.jpg"]] for n in a.images.split(",")]
    x = torch.stack([it["input"] for it in items])
    columns = [x] + [translate(load_model(run), x) for run in runs.values()] + [torch.stack([it["target"] for it in items])]
    save_image(image_grid(columns), a.out / "reproduction_samples.png")
    print(f"columns: input | {' | '.join(runs)} | target; written to {a.out}")


if __name__ == "__main__":
    main()
