"""``train --overwrite`` removes only what the earlier run wrote: the user's files in the run folder stay,
at the top and in each of the folders a run writes (checkpoints/, samples/, model/, best/, tensorboard/)."""

import importlib.util
import json
from pathlib import Path

import pytest

from imgtrans.cli import main
from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.store.checkpoint import load_checkpoint
from imgtrans.train.manifest import MANIFEST

from conftest import TINY_MODEL

USER_FILES = ["notes.txt", "checkpoints/keep-me.safetensors", "samples/favourite.png", "model/NOTES.md",
              "best/comparison.png", "tensorboard/my-run-notes.txt", "model/extra/deep.txt"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("overwrite")
    return write_ab_folder(SyntheticFacades(4, 36, seed=0), folder / "train"), write_ab_folder(
        SyntheticFacades(2, 36, seed=1), folder / "val")


def train_argv(data, out: Path, *extra: str) -> list[str]:
    train, val = data
    argv = ["train", "pix2pix-facades", "--data", str(train), "--out", str(out), "--model-args", json.dumps(TINY_MODEL),
            "--load-size", "36", "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--log-every", "1",
            "--sample-every", "1", "--checkpoint-every", "1", "--val-data", str(val), "--val-every", "1", *extra]
    if importlib.util.find_spec("tensorboard") is not None:
        argv += ["--log-to", "tensorboard"]
    return argv


def write_user_files(run: Path) -> dict[str, bytes]:
    files = {}
    for i, name in enumerate(USER_FILES):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        files[name] = f"the user's own file {i}".encode()
        (run / name).write_bytes(files[name])
    return files


@pytest.mark.parametrize("when", ["before the first run", "after the first run"])
def test_overwrite_removes_only_the_files_the_run_wrote(tmp_path, data, when, capsys):
    run = tmp_path / "run"
    run.mkdir()
    user = write_user_files(run) if when == "before the first run" else {}
    assert main(train_argv(data, run, "--max-steps", "3")) == 0  # user files alone are no run: not refused
    user = user or write_user_files(run)
    written = json.loads((run / MANIFEST).read_text())["files"]
    assert {"checkpoints/last.safetensors", "checkpoints/previous.safetensors", "log.jsonl", "model/config.json",
            "samples/step-000003.png", "best/best.json"} <= set(written)  # fmt: skip
    assert not set(written) & set(USER_FILES)
    capsys.readouterr()

    assert main(train_argv(data, run, "--max-steps", "1")) == 2  # refused, nothing changed
    assert "removes only the files the run wrote" in capsys.readouterr().err

    assert main(train_argv(data, run, "--max-steps", "1", "--overwrite")) == 0
    out = capsys.readouterr().out
    assert f"replaced the run in {run}: removed the" in out and f"kept {len(USER_FILES)} other files" in out
    assert {name: (run / name).read_bytes() for name in USER_FILES} == user
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"] == 1
    assert not (run / "samples" / "step-000003.png").exists()  # the old run's files are gone
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()
            if "val_l1" not in line] == [1]  # fmt: skip


def test_a_folder_from_before_the_record_is_replaced_by_imgtrans_names(tmp_path, data):
    run = tmp_path / "run"
    assert main(train_argv(data, run, "--max-steps", "2")) == 0
    (run / MANIFEST).unlink()  # as imgtrans 0.2 left it
    user = write_user_files(run)
    (run / "samples" / "step-1.png").write_bytes(b"not imgtrans's name: six digits")
    user["samples/step-1.png"] = b"not imgtrans's name: six digits"
    assert main(train_argv(data, run, "--max-steps", "1", "--overwrite")) == 0
    assert {name: (run / name).read_bytes() for name in user} == user
    assert not (run / "samples" / "step-000002.png").exists()
