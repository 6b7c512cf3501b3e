#!/usr/bin/env python3
"""Run imgtrans and the textbook pix2pix alternately, in one run, and print the ratio.

    python benchmarks/compare.py --mode train --size 256 --batch 1 --amp fp32 --rounds 3

Each round runs the textbook script (../shared/bench/textbook_pix2pix.py) and then imgtrans's
benchmark in fresh processes, so both see the same machine state. Every run prints its JSON
line; the last line is a summary with the median over rounds of each side's ms per iteration
and textbook / imgtrans (above 1: imgtrans is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEXTBOOK = Path(__file__).resolve().parents[2] / "shared" / "bench" / "textbook_pix2pix.py"


def run(command: list[str]) -> dict:
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(record), flush=True)
    return record


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--amp", default="fp32", help="imgtrans's mixed precision (the textbook is always fp32)")
    p.add_argument("--textbook", default=str(TEXTBOOK))
    a = p.parse_args()
    common = ["--mode", a.mode, "--size", str(a.size), "--batch", str(a.batch), "--iters", str(a.iters)]
    textbook, ours = [], []
    for _ in range(a.rounds):
        textbook.append(run([sys.executable, a.textbook, *common])["ms_per_iter"])
        ours.append(run([sys.executable, str(HERE / "pix2pix_step.py"), *common, "--amp", a.amp])["ms_per_iter"])
    t, o = statistics.median(textbook), statistics.median(ours)
    print(json.dumps({
        "what": f"{a.mode} size={a.size} batch={a.batch} imgtrans amp={a.amp} vs textbook fp32",
        "textbook_ms": t, "imgtrans_ms": o, "textbook_img_per_s": round(a.batch * 1000 / t, 3),
        "imgtrans_img_per_s": round(a.batch * 1000 / o, 3), "speedup": round(t / o, 3), "rounds": a.rounds,
    }))


if __name__ == "__main__":
    main()
