#!/usr/bin/env python3
"""Latency of the page's translation endpoint for a 256x256 drawing, as a browser sees it.

    python benchmarks/app_latency.py [--model pix2pix-facades] [--runs 10] [--threads N]

Starts the `imgtrans app` server on 127.0.0.1 with the full-size model (random weights: the
time does not depend on them), POSTs the PNG of a 256x256 CMP label map ``runs`` times after one
warm-up, and prints one JSON line: the median and range of the round trip (HTTP, PNG decoding and
encoding, the model) and of the model's part as the server reports it (``X-Translate-Ms``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import urllib.request

import torch

import imgtrans
from imgtrans.app import FACADES, make_server
from imgtrans.app.palettes import drawn_facade, png_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pix2pix-facades")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = imgtrans.build(args.model).eval()
    server = make_server(model, "127.0.0.1", 0, palette=FACADES, model_name=args.model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = png_bytes(drawn_facade(256))
    trips, models = [], []
    for i in range(args.runs + 1):
        request = urllib.request.Request(server.url + "api/translate", data=body, headers={"Content-Type": "image/png"})
        start = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            response.read()
            model_ms = float(response.headers["X-Translate-Ms"])
        if i:  # the first call warms up
            trips.append((time.perf_counter() - start) * 1000)
            models.append(model_ms)
    server.shutdown()
    print(json.dumps({
        "model": args.model, "size": "256x256", "runs": args.runs, "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "round_trip_ms_median": round(statistics.median(trips), 1),
        "round_trip_ms_min": round(min(trips), 1), "round_trip_ms_max": round(max(trips), 1),
        "model_ms_median": round(statistics.median(models), 1),
    }))


if __name__ == "__main__":
    main()
