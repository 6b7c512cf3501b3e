"""A run is never lost: overwrite protection, the run folder's lock, good checkpoints only, leftovers,
full and read-only disks, restarts, and SIGKILL at any moment followed by an exact resume."""

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imgtrans.store.checkpoint import load_checkpoint
from imgtrans.cli import main
from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.train import NonFiniteLossError, TrainConfig, Trainer
from imgtrans.train.manifest import MANIFEST
from imgtrans.train.run import RunExistsError, RunFolder, RunInUseError

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_ab_folder(SyntheticFacades(4, 36, seed=0), tmp_path_factory.mktemp("safety") / "train")


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "pix2pix-facades", "--data", str(data), "--out", str(out), "--model-args", json.dumps(TINY_MODEL),
            "--load-size", "36", "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--log-every", "1",
            "--sample-every", "0", *extra]  # fmt: skip


def run_cli(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgtrans", *argv], env=ENV, capture_output=True, text=True, **kwargs)


def logged_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def one_error_line(stderr: str) -> str:
    """The one line of the error (progress bars aside), checking there is no traceback."""
    bar = re.compile(r"\d+/\d+ \[")  # tqdm's "3/6 [00:02<00:07, ...]"
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and not bar.search(line)]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ------------------------------------------------------------------------------------- overwrite
def test_a_run_folder_with_history_is_never_overwritten_unless_asked(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert main(train_argv(data, run, "--max-steps", "4")) == 0
    checkpoint = (run / "checkpoints" / "last.safetensors").read_bytes()
    model, log = (run / "model" / "model.safetensors").read_bytes(), (run / "log.jsonl").read_text()
    capsys.readouterr()

    assert main(train_argv(data, run, "--max-steps", "2")) == 2  # the finished 4-step run is not replaced
    message = one_error_line(capsys.readouterr().err)
    assert "already holds a run" in message and all(f in message for f in ("--resume", "--overwrite", "another --out"))
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == checkpoint
    assert (run / "model" / "model.safetensors").read_bytes() == model and (run / "log.jsonl").read_text() == log

    with pytest.raises(RunExistsError, match=r"fit\(resume=True\).*fit\(overwrite=True\)"):  # Python's words
        settings = TrainConfig(model="pix2pix-facades", model_args=TINY_MODEL, out=str(run), max_steps=1, workers=0)
        Trainer(settings, train_data=SyntheticFacades(2, 32)).fit()

    assert main(train_argv(data, run, "--max-steps", "2", "--overwrite")) == 0  # asked for: replaced
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"] == 2
    assert logged_steps(run) == [1, 2]


# ------------------------------------------------------------------------------------------ lock
HOLD_LOCK = """
import sys, time
from imgtrans.train.run import RunFolder
with RunFolder(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_into_the_same_folder_fails_at_once_and_names_the_holder(tmp_path, data, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        assert main(train_argv(data, run, "--max-steps", "1")) == 2
        assert time.monotonic() - start < 30
        message = one_error_line(capsys.readouterr().err)
        assert f"in use by another training run (process {holder.pid} on " in message
        with pytest.raises(RunInUseError):
            RunFolder(run).lock()
        holder.send_signal(signal.SIGKILL)  # the holder dies without cleaning up; its lock file stays
        holder.wait()
        assert (run / ".lock").exists()
        assert main(train_argv(data, run, "--max-steps", "1")) == 0  # and the next run simply takes it
    finally:
        holder.kill()


# ----------------------------------------------------------------------------- good checkpoints
def test_a_diverging_run_keeps_the_last_good_checkpoint(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert main(train_argv(data, run, "--max-steps", "2", "--checkpoint-every", "1")) == 0
    good = (run / "checkpoints" / "last.safetensors").read_bytes()
    capsys.readouterr()
    # Continue with an absurd learning rate: the weights become infinite within a step.
    assert main(["train", "--resume", "--out", str(run), "--max-steps", "6", "--lr", "1e39"]) == 2
    message = one_error_line(capsys.readouterr().err)
    assert "non-finite" in message and f"the last good checkpoint is {run / 'checkpoints' / 'last.safetensors'} (step 2)" in message
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == good
    assert all(torch.isfinite(t).all() for t in load_file(run / "checkpoints" / "last.safetensors").values() if t.is_floating_point())


def test_weights_are_checked_not_only_losses(tmp_path):
    data = SyntheticFacades(2, 32, seed=0)
    settings = TrainConfig(model="pix2pix-l1", model_args=TINY_MODEL, out=str(tmp_path / "run"), direction="BtoA",
                           load_size=None, crop_size=None, max_steps=1, workers=0, sample_every=0)  # fmt: skip
    trainer = Trainer(settings, data, data)
    with torch.no_grad():
        next(trainer.model.generator.parameters())[0] = float("nan")  # losses of the logged steps were finite
    with pytest.raises(NonFiniteLossError, match=r"non-finite values at step 0 .*model.generator.*no checkpoint was written"):
        trainer.save()
    assert not trainer.checkpoint_path.exists()


# ------------------------------------------------------------------------------------ leftovers
def test_unfinished_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path, data):
    run = tmp_path / "run"
    assert main(train_argv(data, run, "--max-steps", "1")) == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = run / "checkpoints" / f".last.safetensors.tmp-{dead_pid}"
    stale.write_bytes(b"x" * 1000)
    part = run / "model" / f".model.safetensors.part-{dead_pid}"
    part.write_bytes(b"x")
    live = run / "checkpoints" / f".last.safetensors.tmp-{os.getppid()}"  # a process that is alive
    live.write_bytes(b"x")
    assert main(["train", "--resume", "--out", str(run), "--max-steps", "2"]) == 0
    assert not stale.exists() and not part.exists() and live.exists()


# ------------------------------------------------------------------------- full and read-only disks
FAULTY_DISK = """
import errno, os, sys
import imgtrans.store.checkpoint, imgtrans.store.weights
from imgtrans.cli import main
code = getattr(errno, sys.argv[1])

def fail(*args, **kwargs):
    raise OSError(code, os.strerror(code))

imgtrans.{module}.save_file = fail
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
@pytest.mark.parametrize("module, what", [("checkpoint", "the checkpoint"), ("weights", "the exported model")])
def test_a_full_or_read_only_disk_is_one_line_exit_2_and_loses_nothing(tmp_path, data, code, module, what):
    run = tmp_path / "run"
    assert main(train_argv(data, run, "--max-steps", "2")) == 0
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    script = FAULTY_DISK.replace("{module}", module)
    result = subprocess.run([sys.executable, "-c", script, code, "train", "--resume", "--out", str(run), "--max-steps", "3"],
                            env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2
    message = one_error_line(result.stderr)
    assert f"cannot write {what}" in message and os.strerror(getattr(errno, code)) in message
    if module == "checkpoint":
        assert "the last good checkpoint is" in message and "(step 2)" in message
        assert (run / "checkpoints" / "last.safetensors").read_bytes() == before
    assert not [p for p in run.rglob(".*") if p.name not in (".lock", MANIFEST)]  # no temporary file left behind


# ------------------------------------------------------------------------------------ restarts
def test_a_run_restarted_before_its_first_checkpoint_logs_each_step_once(tmp_path, data):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "imgtrans", *train_argv(data, run, "--max-steps", "400",
                                "--checkpoint-every", "0")], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len((run / "log.jsonl").read_text().splitlines() if (run / "log.jsonl").exists() else []) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "checkpoints" / "last.safetensors").exists() and len(logged_steps(run)) >= 3
    result = run_cli(train_argv(data, run, "--max-steps", "5", "--resume"), timeout=300)
    assert result.returncode == 0, result.stderr
    assert logged_steps(run) == [1, 2, 3, 4, 5]


# -------------------------------------------------------------------------------- SIGKILL, resume
KILL_MID_CHECKPOINT = """
import os, signal, sys
import imgtrans.store.checkpoint
from imgtrans.cli import main
save = imgtrans.store.checkpoint.save_file
calls = 0

def save_then_die(tensors, path, metadata=None):
    global calls
    calls += 1
    save(tensors, path, metadata=metadata)  # the temporary file is complete, the rename has not happened
    if calls == int(os.environ["KILL_AT_SAVE"]):
        os.kill(os.getpid(), signal.SIGKILL)

imgtrans.store.checkpoint.save_file = save_then_die
sys.exit(main(sys.argv[1:]))
"""


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(run / "checkpoints" / "last.safetensors").items() if not k.startswith("rng.")}


@pytest.mark.slow
def test_sigkill_at_random_moments_and_mid_checkpoint_then_resume_equals_the_uninterrupted_run(tmp_path, data):
    steps, argv = 12, lambda run: train_argv(data, run, "--max-steps", "12", "--checkpoint-every", "1")
    reference = tmp_path / "reference"  # in a process like the others: the same threads, the same arithmetic
    assert run_cli(argv(reference), timeout=300).returncode == 0

    run = tmp_path / "killed"
    # Killed inside a checkpoint write: after the temporary file, before the rename.
    result = subprocess.run([sys.executable, "-c", KILL_MID_CHECKPOINT, *argv(run)], env={**ENV, "KILL_AT_SAVE": "3"},
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == -signal.SIGKILL
    assert list((run / "checkpoints").glob(".last.safetensors.tmp-*"))  # the half-done write is there
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"] == 2  # the previous one is intact
    # Then killed at random moments, resuming each time.
    rng = random.Random(0)
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-m", "imgtrans", *argv(run)[:1], "--resume", "--out", str(run)],
                                   env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(1.0, 6.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
    result = run_cli(["train", "--resume", "--out", str(run)], timeout=300)
    assert result.returncode == 0, result.stderr
    assert not list(run.rglob(".*.tmp-*"))  # the leftovers were cleared
    assert logged_steps(run) == list(range(1, steps + 1))  # each step logged once
    expected, got = final_weights(reference), final_weights(run)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), [k for k in expected if not torch.equal(expected[k], got[k])]
