#!/usr/bin/env python3
"""The validation curve of a run, from its ``log.jsonl``, as a PNG drawn with PIL alone.

    python benchmarks/validation_curve.py RUN docs/figures/validation_curve.png

Draws validation L1 and PSNR against the step, marks the best step (``RUN/best/best.json``)
and the last, and prints the numbers the docs quote: the validations, best and last step, and
the time validation took as a fraction of the run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PANEL_W, PANEL_H, MARGIN = 420, 260, 56


def panel(draw: ImageDraw.ImageDraw, x0: int, points: list[tuple[int, float]], title: str, best: int, last: int,
          font) -> None:  # fmt: skip
    steps, values = [p[0] for p in points], [p[1] for p in points]
    low, high = min(values), max(values)
    pad = (high - low) * 0.1 or abs(high) * 0.05 or 1.0
    low, high = low - pad, high + pad
    left, top, right, bottom = x0 + MARGIN, 30, x0 + PANEL_W - 12, PANEL_H - 36

    def xy(step: int, value: float) -> tuple[float, float]:
        x = left + (right - left) * step / max(steps[-1], 1)
        return x, bottom - (bottom - top) * (value - low) / (high - low)

    draw.rectangle([left, top, right, bottom], outline=(120, 120, 120))
    draw.text((left, 8), title, fill=(0, 0, 0), font=font)
    for k in range(5):  # value ticks
        value = low + (high - low) * k / 4
        y = xy(0, value)[1]
        draw.line([left - 4, y, left, y], fill=(120, 120, 120))
        draw.text((x0 + 4, y - 6), f"{value:.3g}", fill=(60, 60, 60), font=font)
    for step in sorted({0, steps[len(steps) // 2], steps[-1]}):  # step ticks
        x = xy(step, low)[0]
        draw.line([x, bottom, x, bottom + 4], fill=(120, 120, 120))
        draw.text((x - 12, bottom + 6), str(step), fill=(60, 60, 60), font=font)
    draw.text(((left + right) / 2 - 12, bottom + 20), "step", fill=(60, 60, 60), font=font)
    draw.line([xy(s, v) for s, v in points], fill=(31, 119, 180), width=2)
    for step, value in points:
        x, y = xy(step, value)
        colour = (214, 39, 40) if step == best else (31, 119, 180)
        radius = 5 if step in (best, last) else 3
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
        if step == best:
            draw.text((x - 30, y + 8), f"best {step}", fill=colour, font=font)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("png", type=Path)
    args = parser.parse_args()
    records = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val_l1" in r]
    best = json.loads((args.run / "best" / "best.json").read_text())
    last = validations[-1]["step"]
    image = Image.new("RGB", (2 * PANEL_W, PANEL_H), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    panel(draw, 0, [(r["step"], r["val_l1"]) for r in validations], "validation L1 (lower is better)", best["step"],
          last, font)  # fmt: skip
    panel(draw, PANEL_W, [(r["step"], r["val_psnr"]) for r in validations], "validation PSNR, dB (higher is better)",
          best["step"], last, font)  # fmt: skip
    args.png.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.png)
    print("| step | val L1 | val PSNR | val SSIM | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for r in validations:
        mark = " (best)" if r["step"] == best["step"] else ""
        scores = f"{r['val_l1']:.4f} | {r['val_psnr']:.2f} | {r['val_ssim']:.4f} | {r['val_seconds']:.2f}"
        print(f"| {r['step']}{mark} | {scores} |")
    print(f"best step {best['step']} ({best['metric']} {best['score']:.4f}), last step {last}")
    print(f"validation seconds in all: {sum(r['val_seconds'] for r in validations):.1f}")


if __name__ == "__main__":
    main()
