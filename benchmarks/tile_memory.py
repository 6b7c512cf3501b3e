#!/usr/bin/env python3
"""Peak resident memory of ``imgtrans translate`` on huge images, which it translates in tiles.

    python benchmarks/tile_memory.py RUN_OR_MODEL --sizes 2000 4000 8000
    python benchmarks/tile_memory.py RUN_OR_MODEL --sizes 2000 --source /tmp/imgtrans-old   # another checkout

For each size, a square input is made from a facades label map scaled up (nearest neighbour), and
``imgtrans translate`` runs on it in a fresh process under ``/usr/bin/time -v``; one JSON line
gives the process's peak resident memory, its wall time, and for scale the sizes of the input and
output images as uint8 pixels and as float32.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades" / "test" / "1.jpg"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000])
    p.add_argument("--source", help="root of the imgtrans checkout to run (default: this one)")
    p.add_argument("--extra", default="", help="further flags for imgtrans translate, e.g. '--batch-size 2'")
    a = p.parse_args()
    root = Path(a.source or Path(__file__).resolve().parents[1])
    labels = Image.open(LABELS).convert("RGB")
    labels = labels.crop((256, 0, 512, 256))
    with tempfile.TemporaryDirectory(prefix="imgtrans-tiles-") as folder:
        for size in a.sizes:
            image = Path(folder) / f"labels{size}.png"
            labels.resize((size, size), Image.NEAREST).save(image)
            command = ["/usr/bin/time", "-v", sys.executable, "-m", "imgtrans", "translate", a.model, str(image),
                       "--out", str(Path(folder) / "out"), *a.extra.split()]  # fmt: skip
            # cwd: the temporary folder, since `python -m` puts the working directory before PYTHONPATH
            env = {**os.environ, "PYTHONPATH": str(root)}
            done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, cwd=folder)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                raise SystemExit(done.returncode)
            rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
            wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
            pixels = 3 * size * size
            print(json.dumps({
                "size": size,
                "peak_rss_mb": round(rss_kb / 1024, 1),
                "wall": wall,
                "image_uint8_mb": round(pixels / 2**20, 1),
                "image_float32_mb": round(4 * pixels / 2**20, 1),
                "source": str(root),
                "flags": a.extra,
                "printed": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "",
            }), flush=True)


if __name__ == "__main__":
    main()
