"""Checkpoints carry a checksum of their contents: a damaged one is refused in one line and the previous
good one is used; one is always kept (``checkpoints/previous.safetensors``), rotated atomically."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from imgtrans.cli import main
from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.store.checkpoint import CHECKSUM_KEY, DamagedCheckpointError, load_checkpoint, load_good_checkpoint
from imgtrans.store.factory import load as load_model

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_ab_folder(SyntheticFacades(4, 36, seed=0), tmp_path_factory.mktemp("damaged") / "train")


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "pix2pix-facades", "--data", str(data), "--out", str(out), "--model-args", json.dumps(TINY_MODEL),
            "--load-size", "36", "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--log-every", "1",
            "--sample-every", "0", "--checkpoint-every", "1", *extra]  # fmt: skip


def run_cli(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgtrans", *argv], env=ENV, capture_output=True, text=True,
                          timeout=300)


def header_size(path: Path) -> int:
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


def zero_data_bytes(path: Path) -> None:
    """64 KB of zeros (or all the tensor bytes, if fewer) after the header: the file still parses."""
    raw = bytearray(path.read_bytes())
    start = header_size(path)
    end = min(len(raw), start + 65536)
    raw[start:end] = bytes(end - start)
    path.write_bytes(bytes(raw))


def flip_one_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[(header_size(path) + len(raw)) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def zero_the_header(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[8:64] = bytes(56)
    path.write_bytes(bytes(raw))


DAMAGE = {"zeroed 64 KB": zero_data_bytes, "one flipped bit": flip_one_byte, "zeroed header": zero_the_header}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(train_argv(data, run, "--max-steps", "3")) == 0
    return run


def copy_run(trained: Path, to: Path) -> Path:
    subprocess.run(["cp", "-a", str(trained), str(to)], check=True)
    return to


def test_the_previous_checkpoint_is_kept_and_both_carry_checksums(trained):
    last, previous = trained / "checkpoints" / "last.safetensors", trained / "checkpoints" / "previous.safetensors"
    assert load_checkpoint(last).meta["step"] == 3 and load_checkpoint(previous).meta["step"] == 2
    for path in (last, previous):
        with safe_open(str(path), framework="pt") as f:
            assert len(f.metadata()[CHECKSUM_KEY]) == 64


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_refused_and_the_run_resumes_from_the_previous(tmp_path, trained, data, damage):
    run = copy_run(trained, tmp_path / "run")
    last = run / "checkpoints" / "last.safetensors"
    DAMAGE[damage](last)
    with pytest.raises(DamagedCheckpointError, match="last.safetensors"):
        load_checkpoint(last)
    result = run_cli(["train", "--resume", "--out", str(run), "--max-steps", "5"])
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(last) in warning[0] and "previous.safetensors (step 2)" in warning[0]
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert load_checkpoint(last).meta["step"] == 5  # replaced by a good one
    assert load_checkpoint(run / "checkpoints" / "previous.safetensors").meta["step"] == 4


@pytest.mark.parametrize("damage", ["zeroed 64 KB", "zeroed header"])
def test_with_both_checkpoints_damaged_resuming_is_one_line_and_changes_nothing(tmp_path, trained, damage):
    run = copy_run(trained, tmp_path / "run")
    for name in ("last", "previous"):
        DAMAGE[damage](run / "checkpoints" / f"{name}.safetensors")
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    result = run_cli(["train", "--resume", "--out", str(run), "--max-steps", "5"])
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "damaged too" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before


@pytest.mark.parametrize("damage", ["zeroed 64 KB", "one flipped bit"])
def test_loading_a_damaged_checkpoint_file_is_refused(tmp_path, trained, damage):
    file = tmp_path / "copy.safetensors"
    file.write_bytes((trained / "checkpoints" / "last.safetensors").read_bytes())
    DAMAGE[damage](file)
    with pytest.raises(DamagedCheckpointError, match="damaged"):
        load_model(file)
    assert main(["export", str(file), "--out", str(tmp_path / "exported.onnx")]) == 2
    assert not (tmp_path / "exported.onnx").exists()


def test_a_checkpoint_without_a_checksum_still_loads(tmp_path, trained):
    """Files of imgtrans 0.2, written before checksums."""
    source = trained / "checkpoints" / "last.safetensors"
    with safe_open(str(source), framework="pt") as f:
        meta = json.loads(f.metadata()["imgtrans"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert "sha256" not in meta  # the checksum is a header entry of its own (CHECKSUM_KEY), left out below
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={"imgtrans": json.dumps(meta)})
    assert load_good_checkpoint(old).meta["step"] == 3
    assert load_model(old) is not None
