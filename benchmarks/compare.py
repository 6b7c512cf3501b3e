#!/usr/bin/env python3
"""Run imgtrans and the textbook pix2pix alternately, in one run, and print the ratio.

    python benchmarks/compare.py --mode train --size 256 --batch 1 --rounds 5
    python benchmarks/compare.py --mode infer --size 1024 --batch 1 --compile
    python benchmarks/compare.py --mode infer --size 256 --batch 8 --backend torch --precision bf16
    python benchmarks/compare.py --mode infer --size 256 --batch 8 --backend onnxruntime --precision int8

Each round runs the textbook script (../shared/bench/textbook_pix2pix.py) and then imgtrans's
benchmark, each in a fresh process, so both see the same machine state. Every run prints its
JSON line (the textbook's gains its FLOPs, GFLOP/s and peak memory, measured around it); the last
line is a summary: the median over rounds of each side's ms per iteration, and
``speedup = textbook / imgtrans`` (above 1: imgtrans is faster); ``speedup_median_of_rounds`` is
the median of each round's own ratio, steadier when the machine's load drifts.

Each run also records the share of the machine's CPU time that went to other processes while it
ran (``others_share``: busy time minus the benchmark's own; ``others_nice_share``: niced jobs only),
and the summary the CPU's instruction set, since bf16 and int8 speeds depend on it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
TEXTBOOK = Path(__file__).resolve().parents[2] / "shared" / "bench" / "textbook_pix2pix.py"
# Runs the textbook script unchanged, then reports the process's peak resident memory.
WRAPPER = (
    "import json, resource, runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
    "print(json.dumps({'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))"
)
# The same, with glibc told to keep freed memory (imgtrans.devices.keep_freed_memory), for --textbook-malloc.
WRAPPER_MALLOC = (
    "import ctypes; libc = ctypes.CDLL('libc.so.6'); libc.mallopt(-3, 1 << 30); libc.mallopt(-1, (1 << 31) - 1); "
    + WRAPPER
)


def textbook_gflop(path: Path, mode: str, size: int, batch: int) -> float:
    """FLOPs of one textbook iteration, counted on its own networks and step."""
    spec = importlib.util.spec_from_file_location("textbook", path)
    textbook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(textbook)
    g, d = textbook.UNet256(), textbook.patch_gan()
    x, y = torch.rand(batch, 3, size, size) * 2 - 1, torch.rand(batch, 3, size, size) * 2 - 1
    bce = torch.nn.BCEWithLogitsLoss()
    with FlopCounterMode(display=False) as counter:
        if mode == "infer":
            with torch.no_grad():
                g.eval()(x)
        else:
            fake = g(x)
            pf, pr = d(torch.cat([x, fake.detach()], 1)), d(torch.cat([x, y], 1))
            (0.5 * (bce(pf, torch.zeros_like(pf)) + bce(pr, torch.ones_like(pr)))).backward()
            pf = d(torch.cat([x, fake], 1))
            (bce(pf, torch.ones_like(pf)) + 100 * (fake - y).abs().mean()).backward()
    return counter.get_total_flops() / 1e9


TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_ticks() -> list[int]:
    """The machine's CPU time counters (user, nice, system, idle, ...) from /proc/stat; empty elsewhere."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return []


def wait_until_quiet(limit_s: float, busy_max: float = 0.1) -> None:
    """Wait (at most ``limit_s``) until other processes use under ``busy_max`` of the CPU over 2 s."""
    waited = 0.0
    while waited < limit_s:
        before = cpu_ticks()
        time.sleep(2)
        after = cpu_ticks()
        if not before:
            return
        delta = [b - a for a, b in zip(before, after)]
        if sum(delta[:3]) / max(sum(delta[:8]), 1) < busy_max:
            return
        waited += 2


def json_lines(command: list[str]) -> dict:
    before, children = cpu_ticks(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    after, children_after = cpu_ticks(), resource.getrusage(resource.RUSAGE_CHILDREN)
    record: dict = {}
    for line in out.strip().splitlines():
        if line.startswith("{"):
            record.update(json.loads(line))
    if before and after:
        delta = [b - a for a, b in zip(before, after)]
        total = max(sum(delta[:8]), 1)
        ours = (children_after.ru_utime + children_after.ru_stime - children.ru_utime - children.ru_stime) * TICKS
        record["others_nice_share"] = round(delta[1] / total, 3)
        record["others_share"] = round(max(sum(delta[:3]) - ours, 0) / total, 3)
    return record


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--amp", default="fp32", help="imgtrans's mixed precision (the textbook is always fp32)")
    p.add_argument("--compile", action="store_true", help="imgtrans inference compiled with frozen weights")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], help="imgtrans inference through imgtrans.deploy.translators")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32", help="with --backend")
    p.add_argument("--textbook", default=str(TEXTBOOK))
    p.add_argument("--textbook-malloc", action="store_true",
                   help="run the textbook with glibc keeping freed memory too, as imgtrans translate runs")
    p.add_argument("--wait-quiet", type=float, default=0, help="before each run, wait up to this many seconds "
                   "for other processes to leave the CPU (under 10%% busy over 2 s)")
    a = p.parse_args()
    common = ["--mode", a.mode, "--size", str(a.size), "--batch", str(a.batch), "--iters", str(a.iters)]
    ours_flags = ["--amp", a.amp] + (["--compile"] if a.compile else [])
    if a.backend:
        ours_flags += ["--backend", a.backend, "--precision", a.precision]
        if a.backend == "onnxruntime":  # export (and calibrate) once, before the timed rounds
            subprocess.run([sys.executable, str(HERE / "pix2pix_step.py"), *common[:2], "--size", "64", "--batch", "1",
                            "--iters", "1", "--warmup", "0", *ours_flags], check=True, capture_output=True)
    gflop = textbook_gflop(Path(a.textbook), a.mode, a.size, a.batch)
    textbook, ours = [], []
    for _ in range(a.rounds):
        wait_until_quiet(a.wait_quiet)
        t = json_lines([sys.executable, "-c", WRAPPER_MALLOC if a.textbook_malloc else WRAPPER, a.textbook, *common])
        t.update(gflop_per_iter=round(gflop, 2), gflop_per_s=round(gflop * 1000 / t["ms_per_iter"], 1))
        print(json.dumps(t), flush=True)
        wait_until_quiet(a.wait_quiet)
        o = json_lines([sys.executable, str(HERE / "pix2pix_step.py"), *common, *ours_flags])
        print(json.dumps(o), flush=True)
        textbook.append(t)
        ours.append(o)
    t_ms = statistics.median(r["ms_per_iter"] for r in textbook)
    o_ms = statistics.median(r["ms_per_iter"] for r in ours)
    setting = f"backend={a.backend} precision={a.precision}" if a.backend else f"amp={a.amp}"
    print(json.dumps({
        "what": f"{a.mode} size={a.size} batch={a.batch}: imgtrans {setting}{' compiled' if a.compile else ''}"
        f" vs textbook fp32{' (freed memory kept)' if a.textbook_malloc else ''}",
        "textbook_ms": t_ms,
        "imgtrans_ms": o_ms,
        "textbook_img_per_s": round(a.batch * 1000 / t_ms, 3),
        "imgtrans_img_per_s": round(a.batch * 1000 / o_ms, 3),
        "speedup": round(t_ms / o_ms, 3),
        # each round's textbook run and imgtrans run are adjacent in time: their ratio cancels slow drifts in load
        "speedup_median_of_rounds": round(statistics.median(t["ms_per_iter"] / o["ms_per_iter"] for t, o in zip(textbook, ours)), 3),
        "textbook_gflop_per_s": round(gflop * 1000 / t_ms, 1),
        "imgtrans_gflop_per_s": round(ours[0]["gflop_per_iter"] * 1000 / o_ms, 1),
        "textbook_peak_rss_mb": max(r["peak_rss_mb"] for r in textbook),
        "imgtrans_peak_rss_mb": max(r["peak_rss_mb"] for r in ours),
        "rounds": a.rounds,
        "others_nice_share": [r.get("others_nice_share") for r in textbook + ours],
        "others_share": [r.get("others_share") for r in textbook + ours],
        "cpu": ours[0].get("cpu"),
    }))


if __name__ == "__main__":
    main()
