#!/usr/bin/env python3
"""Measure the CMP Facades label colours in the pix2pix facades label maps (the B halves).

    python benchmarks/facades_palette.py [--data ../shared/data/facades]

For each of the 12 classes of imgtrans.app.FACADES it prints the median of the pixels nearest
that colour (within 60 levels), their share of all pixels, and in how many label maps the class
covers more than 50 pixels; then, as a check of the names, the mean row of each class and the
class most often found 6 pixels above it (sills lie under windows, doors and shops at the bottom).
The label maps are JPEG, so colours spread around their centres; about 14% of pixels (edges) are
further than 60 levels from every centre.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from imgtrans.app import FACADES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/facades", help="folder with train/ and test/ AB files")
    args = parser.parse_args()
    names = [n for n, _ in FACADES.classes]
    centres = np.array([c for _, c in FACADES.classes], dtype=np.float32)
    for split in ("train", "test"):
        files = sorted(Path(args.data, split).glob("*.jpg"))
        maps = [np.asarray(Image.open(f).convert("RGB"))[:, 256:].astype(np.float32) for f in files]
        pixels = np.concatenate([m.reshape(-1, 3) for m in maps])
        distance = np.linalg.norm(pixels[:, None, :] - centres[None], axis=-1)
        nearest, close = distance.argmin(1), distance.min(1) < 60
        print(f"{split}: {len(files)} label maps, {close.mean() * 100:.1f}% of pixels within 60 of a palette colour")
        for k, name in enumerate(names):
            mine = (nearest == k) & close
            found = sum(int((np.linalg.norm(m - centres[k], axis=-1) < 30).sum() > 50) for m in maps)
            median = tuple(int(v) for v in np.median(pixels[mine], 0).round())
            print(f"  {k + 1:2d} {name:<10} palette {FACADES.classes[k][1]}  measured {median}  "
                  f"{mine.mean() * 100:5.2f}% of pixels  in {found} maps")
    above = np.zeros((12, 12))
    rows: list[list[np.ndarray]] = [[] for _ in range(12)]
    for f in sorted(Path(args.data, "train").glob("*.jpg"))[:200]:
        m = np.asarray(Image.open(f).convert("RGB"))[:, 256:].astype(np.float32)
        d = np.linalg.norm(m[..., None, :] - centres, axis=-1)
        labels = np.where(d.min(-1) < 60, d.argmin(-1), -1)
        for k in range(12):
            rows[k].append(np.nonzero(labels == k)[0])
            over = labels[:-6][labels[6:] == k]
            above[k] += np.bincount(over[over >= 0], minlength=12)
    print("layout (200 training maps): mean row of 256, and the other class most often 6 px above")
    for k, name in enumerate(names):
        others = [j for j in above[k].argsort()[::-1] if j != k]
        print(f"  {name:<10} row {np.concatenate(rows[k]).mean():5.1f}  above it: {names[others[0]]} "
              f"({above[k][others[0]] / above[k].sum() * 100:.0f}%)")


if __name__ == "__main__":
    main()
