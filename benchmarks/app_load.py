#!/usr/bin/env python3
"""The page's server under a burst of large uploads: peak memory, latency, status codes, work after hang-ups.

    python benchmarks/app_load.py [--clients 50] [--side 4096] [--wait 180] [--threads N]

Saves the full-size ``pix2pix-facades`` (random weights: size and speed do not depend on them) to
a temporary folder, starts ``imgtrans app FOLDER`` on 127.0.0.1 as its own process (so that its
memory is its own), and makes two runs, each against a fresh server:

1. **waiting clients**: ``clients`` connections at once, each POSTing the same ``side x side``
   PNG (a CMP label map scaled up) and waiting for the answer up to ``wait`` seconds, then
   hanging up;
2. **clients that hang up**: the same burst, each client closing its connection as soon as its
   upload is sent.

For each run it records the server's peak resident memory (``VmHWM`` of ``/proc/PID/status``),
the status codes, the latency (p50 and max) per status, and, for the second run, how long the
server kept computing after the last client had gone (its CPU time sampled every 0.2 s; busy
means more than a quarter of a core). Prints one JSON line per run. Bounded: ``clients``
requests, ``wait`` seconds, and at most ``idle_limit`` seconds of watching the server afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def memory(pid: int, field: str) -> int:
    """``field`` (VmHWM, VmRSS) of ``/proc/PID/status`` in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def start_server(folder: Path, threads: int | None) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "imgtrans", "app", str(folder), "--port", "0", "--device", "cpu"]
    if threads:
        command += ["--threads", str(threads)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in server.stdout:
        if match := re.search(r"open http://127\.0\.0\.1:(\d+)/", line):
            threading.Thread(target=server.stdout.read, daemon=True).start()  # drain
            return server, int(match.group(1))
    raise RuntimeError(f"the server did not start: {server.stderr.read()[-2000:]}")


def upload(port: int, body: bytes, wait: float, hang_up: bool, results: list, barrier: threading.Barrier) -> None:
    head = (f"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    barrier.wait()
    start = time.perf_counter()
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=wait)
        connection.sendall(head + body)
        if hang_up:
            connection.close()
            results.append(("hung up", time.perf_counter() - start))
            return
        answer = b""
        while chunk := connection.recv(1 << 16):
            answer += chunk
            if answer.startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in answer:
                length = re.search(rb"Content-Length: (\d+)", answer)
                if length and len(answer.partition(b"\r\n\r\n")[2]) >= int(length.group(1)):
                    break
        connection.close()
        status = answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
        results.append((status, time.perf_counter() - start))
    except (socket.timeout, TimeoutError):
        results.append((f"gave up after {wait:g} s", time.perf_counter() - start))
    except OSError as error:  # a reset would land here
        results.append((type(error).__name__, time.perf_counter() - start))


def burst(folder: Path, body: bytes, clients: int, wait: float, hang_up: bool, threads: int | None,
          idle_limit: float) -> dict:  # fmt: skip
    server, port = start_server(folder, threads)
    try:
        idle = memory(server.pid, "VmRSS")
        results: list = []
        barrier = threading.Barrier(clients)
        workers = [threading.Thread(target=upload, args=(port, body, wait, hang_up, results, barrier))
                   for _ in range(clients)]  # fmt: skip
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        gone = time.perf_counter()
        # how long does the server keep computing now that every client is gone?
        last_busy, before, at = gone, cpu_seconds(server.pid), time.perf_counter()
        while time.perf_counter() - last_busy < 3 and time.perf_counter() - gone < idle_limit:
            time.sleep(0.2)
            now, used = time.perf_counter(), cpu_seconds(server.pid)
            if (used - before) / (now - at) > 0.25:
                last_busy = now
            before, at = used, now
        peak = memory(server.pid, "VmHWM")
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    by_status: dict[str, list[float]] = {}
    for status, seconds in results:
        by_status.setdefault(status, []).append(seconds)
    lines = [line for line in errors.splitlines() if line.strip()]
    return {
        "run": "clients hang up after sending" if hang_up else f"clients wait up to {wait:g} s",
        "clients": clients, "upload_bytes": len(body),
        "idle_rss_mb": round(idle / 2**20), "peak_rss_mb": round(peak / 2**20),
        "statuses": {k: len(v) for k, v in sorted(by_status.items())},
        "latency_s": {k: {"p50": round(statistics.median(v), 2), "max": round(max(v), 2)}
                      for k, v in sorted(by_status.items())},  # fmt: skip
        "burst_s": round(gone - began, 1),
        "computing_after_last_client_left_s": round(max(0.0, last_busy - gone), 1),
        "server_log_lines": len(lines), "tracebacks": sum("Traceback" in line for line in lines),
        "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--wait", type=float, default=180, help="seconds a waiting client waits, then hangs up")
    parser.add_argument("--threads", type=int, help="the server's torch threads (default: torch's)")
    parser.add_argument("--idle-limit", type=float, default=120, help="longest watch of the server after a run")
    parser.add_argument("--runs", choices=["both", "wait", "hang-up"], default="both")
    args = parser.parse_args()

    import imgtrans
    from imgtrans.app.palettes import drawn_facade, png_bytes
    from PIL import Image

    body = png_bytes(drawn_facade(256).resize((args.side, args.side), Image.NEAREST))
    with tempfile.TemporaryDirectory() as temporary:
        folder = imgtrans.save_pretrained(imgtrans.build("pix2pix-facades").eval(), Path(temporary) / "facades")
        for hang_up in {"both": (False, True), "wait": (False,), "hang-up": (True,)}[args.runs]:
            report = burst(folder, body, args.clients, args.wait, hang_up, args.threads, args.idle_limit)
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
