"""A run is never lost to the way it is stopped: signals to the whole process group (loading processes
running), closed output pipes, data that goes bad mid-run, and full disks at a sample grid.

Each case is the user's path: a real ``imgtrans train`` process, real signals sent as a terminal,
``timeout`` or a scheduler send them (to the process group), real pipes.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.store.checkpoint import load_checkpoint

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
SIGNALS = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_ab_folder(SyntheticFacades(4, 36, seed=0), tmp_path_factory.mktemp("stopping") / "train")


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "imgtrans", "train", "pix2pix-facades", "--data", str(data), "--out", str(out),
            "--model-args", json.dumps(TINY_MODEL), "--load-size", "36", "--crop-size", "32", "--batch-size", "2",
            "--log-every", "1", "--sample-every", "0", "--checkpoint-every", "0", *extra]  # fmt: skip


def logged(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_steps(run: Path, count: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(logged(run)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.02)


def checkpoint_seconds(checkpoint: Path, since: float, process: subprocess.Popen, timeout: float = 120) -> float:
    """Seconds from ``since`` until the checkpoint is on disk."""
    deadline = since + timeout
    while not checkpoint.exists():
        assert time.monotonic() < deadline, "no checkpoint after the signal"
        time.sleep(0.005)
    return time.monotonic() - since


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SIGNALS))
def test_a_signal_to_the_process_group_with_loading_processes_saves_the_last_step(tmp_path, data, name):
    """Several tries at random moments (loading processes are forked at each epoch: 2 steps here)."""
    rng, seconds = random.Random(name), []
    for attempt in range(4):
        run = tmp_path / f"run{attempt}"
        process = subprocess.Popen(train_argv(data, run, "--max-steps", "100000", "--workers", "2"), env=ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            wait_for_steps(run, 2, process)
            time.sleep(rng.uniform(0, 0.6))
            sent = time.monotonic()
            os.killpg(process.pid, getattr(signal, name))  # the trainer and its loading processes alike
            seconds.append(checkpoint_seconds(run / "checkpoints" / "last.safetensors", sent, process))
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        assert process.returncode == SIGNALS[name], err
        assert "Traceback" not in err and "DataLoader worker" not in err, err
        assert out.count(f"{name}: stopping after this step") == 1, out
        step = load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"]
        assert step == logged(run)[-1]["step"]  # the last finished step, each step logged once
        assert [r["step"] for r in logged(run)] == list(range(1, step + 1))
        assert f"interrupted: saved {run / 'checkpoints' / 'last.safetensors'} at step {step}" in out
    print(f"\n{name}: seconds from the signal to the checkpoint on disk: {', '.join(f'{s:.2f}' for s in seconds)}")


# ---------------------------------------------------------------------------------- closed pipes
def finished(run: Path, steps: int) -> None:
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"] == steps
    assert [r["step"] for r in logged(run)] == list(range(1, steps + 1))  # log.jsonl kept recording
    assert (run / "model" / "config.json").is_file()


@pytest.mark.parametrize("streams, buffered", [("1", False), ("2>&1", False), ("1", True)])
def test_train_piped_into_head_finishes_its_run(tmp_path, data, streams, buffered):
    run = tmp_path / "run"
    command = " ".join(f"'{a}'" for a in train_argv(data, run, "--max-steps", "8", "--workers", "0"))
    env = {k: v for k, v in ENV.items() if not (buffered and k == "PYTHONUNBUFFERED")}
    redirect = "2>&1" if streams == "2>&1" else ""
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {command} {redirect} | head -c 20; echo; exit ${{PIPESTATUS[0]}}"],
                            env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    finished(run, 8)


@pytest.mark.parametrize("closed", ["stdout", "stderr", "both"])
def test_a_reader_that_goes_away_mid_run_loses_nothing(tmp_path, data, closed):
    """As a killed ``tee``: the pipe's reading end closes while the run writes to it."""
    run = tmp_path / "run"
    process = subprocess.Popen(train_argv(data, run, "--max-steps", "12", "--workers", "0"), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    wait_for_steps(run, 2, process)
    for name in ("stdout", "stderr"):
        if closed in (name, "both"):
            getattr(process, name).close()
    kept = process.stderr if closed == "stdout" else process.stdout if closed == "stderr" else None
    text = kept.read().decode() if kept is not None else ""
    assert process.wait(timeout=300) == 0, text
    assert "Traceback" not in text, text
    if closed == "stdout":
        assert text.count("the standard output was closed") == 1
    finished(run, 12)


# ------------------------------------------------------------------------- data that goes bad
def delete(path: Path) -> None:
    path.unlink()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))


BREAK = {"deleted": delete, "truncated": truncate, "corrupted": corrupt}


def break_mid_run(tmp_path: Path, data: Path, how: str, workers: str, *extra: str):
    """Train on a copy of ``data``, break one file after some steps; returns (process result, run, file)."""
    copy = tmp_path / "data"
    subprocess.run(["cp", "-a", str(data), str(copy)], check=True)
    run, victim = tmp_path / "run", sorted(copy.iterdir())[1]
    process = subprocess.Popen(train_argv(copy, run, "--max-steps", "40", "--workers", workers, *extra), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for_steps(run, 3, process)
    BREAK[how](victim)
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err, run, victim


@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize("how", list(BREAK))
def test_a_file_that_goes_bad_mid_run_saves_the_steps_then_names_it(tmp_path, data, how, workers):
    status, out, err, run, victim = break_mid_run(tmp_path, data, how, workers)
    assert status == 2, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(victim) in lines[0] and "Training stopped after step" in lines[0] and "--skip-bad-images" in lines[0]
    step = load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"]
    assert step == logged(run)[-1]["step"] >= 3 and f"(step {step})" in lines[0]


@pytest.mark.parametrize("how", ["deleted", "corrupted"])
def test_skip_bad_images_counts_and_logs_each_skip_and_finishes(tmp_path, data, how):
    status, out, err, run, victim = break_mid_run(tmp_path, data, how, "2", "--skip-bad-images")
    assert status == 0, err
    skips = [r for r in logged(run) if "skipped" in r]
    assert skips and all(str(victim) in r["skipped"] for r in skips)
    assert [r["skipped_images"] for r in skips] == list(range(1, len(skips) + 1))
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"] == 40


# ---------------------------------------------------------------------------------- full disks
FAULTY = """
import errno, os, sys
import imgtrans.train.loggers, imgtrans.train.samples, imgtrans.store.checkpoint
from safetensors import SafetensorError
from imgtrans.cli import main
what, code, after = sys.argv[1], getattr(errno, sys.argv[2], None), int(sys.argv[3])
calls = []

def failing(real):
    def fail(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            if code is None:
                raise SafetensorError("Error while serializing: IoError(No space left on device)")
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)
    return fail

if what == "samples":
    imgtrans.train.samples.save_image = failing(imgtrans.train.samples.save_image)
elif what == "log":
    imgtrans.train.loggers.JsonlLogger.record = failing(imgtrans.train.loggers.JsonlLogger.record)
else:
    imgtrans.store.checkpoint.save_file = failing(imgtrans.store.checkpoint.save_file)
sys.exit(main(sys.argv[4:]))
"""


def faulty_run(run: Path, data: Path, what: str, code: str, after: int, *extra: str) -> subprocess.CompletedProcess:
    argv = train_argv(data, run, "--workers", "0", *extra)[3:]  # without "python -m imgtrans"
    return subprocess.run([sys.executable, "-c", FAULTY, what, code, str(after), *argv], env=ENV,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize("code, after", [("ENOSPC", 1), ("EROFS", 0)])
def test_a_full_disk_at_a_sample_grid_is_said_once_and_training_goes_on(tmp_path, data, code, after):
    run = tmp_path / "run"
    result = faulty_run(run, data, "samples", code, after, "--max-steps", "6", "--sample-every", "1")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "cannot write the sample grid" in line]
    assert len(said) == 1 and os.strerror(getattr(__import__("errno"), code)) in said[0], result.stderr
    assert "training goes on" in said[0] and "Traceback" not in result.stderr
    finished(run, 6)
    assert len(list((run / "samples").glob("*.png"))) == after  # the grids written before the disk filled


@pytest.mark.parametrize("what, code, expected", [("log", "ENOSPC", "cannot write the log"),
                                                  ("checkpoint", "SafetensorError", "cannot write the checkpoint")])
def test_a_full_disk_at_the_log_or_a_safetensors_error_is_one_line_with_what_was_kept(tmp_path, data, what, code,
                                                                                      expected):
    run = tmp_path / "run"
    result = faulty_run(run, data, what, code, 3, "--max-steps", "8", "--checkpoint-every", "2")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0] and "Nothing was lost: the last good checkpoint is" in lines[0]
    step = load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"]
    assert f"(step {step})" in lines[0]
