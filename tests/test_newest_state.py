"""Loading a run (translate, eval, export and the app all go through imgtrans.store.factory.load) uses its
newest state and says which step it is; resuming with settings that change what a step means is said
and recorded in the run's history."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imgtrans.cli import main
from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.store.checkpoint import load_checkpoint
from imgtrans.store.factory import load as load_model

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_ab_folder(SyntheticFacades(4, 36, seed=0), tmp_path_factory.mktemp("newest") / "train")


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "pix2pix-facades", "--data", str(data), "--out", str(out), "--model-args", json.dumps(TINY_MODEL),
            "--load-size", "36", "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--log-every", "1",
            "--sample-every", "0", "--checkpoint-every", "1", *extra]  # fmt: skip


SAVE_THEN_STOP = """
import os, signal, sys
import imgtrans.store.checkpoint
from imgtrans.cli import main
save, calls = imgtrans.store.checkpoint.save_checkpoint, []

def save_then_stop(*args, **kwargs):
    save(*args, **kwargs)
    calls.append(1)
    if len(calls) == int(os.environ["STOP_AT_SAVE"]):
        os.kill(os.getpid(), signal.SIGTERM)

imgtrans.train.trainer.save_checkpoint = save_then_stop
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def interrupted_resume(tmp_path_factory, data) -> Path:
    """A finished 2-step run, resumed for more steps and stopped by SIGTERM after its checkpoint of step 4."""
    run = tmp_path_factory.mktemp("resumed") / "run"
    assert main(train_argv(data, run, "--max-steps", "2")) == 0
    result = subprocess.run([sys.executable, "-c", "import imgtrans.train.trainer\n" + SAVE_THEN_STOP, "train",
                             "--resume", "--out", str(run), "--max-steps", "50"], env={**ENV, "STOP_AT_SAVE": "2"},
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 143, result.stderr
    return run


def test_a_run_resumed_then_interrupted_loads_its_checkpoint_not_the_older_export(interrupted_resume, caplog):
    run = interrupted_resume
    step = load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"]
    assert step > 2 and json.loads((run / "model" / "config.json").read_text())["step"] == 2
    with caplog.at_level(logging.INFO, logger="imgtrans"):
        model = load_model(run)
    assert model.loaded_step == step and model.loaded_from == run / "checkpoints" / "last.safetensors"
    assert f"checkpoints/last.safetensors at step {step}, newer than model/ (step 2)" in caplog.text
    saved = load_checkpoint(run / "checkpoints" / "last.safetensors").section("model")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_the_command_line_says_which_state_it_loads(interrupted_resume, tmp_path):
    step = load_checkpoint(interrupted_resume / "checkpoints" / "last.safetensors").meta["step"]
    result = subprocess.run([sys.executable, "-m", "imgtrans", "export", str(interrupted_resume), "--out",
                             str(tmp_path / "m.onnx")], env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    said = f"imgtrans export: loading {interrupted_resume}: checkpoints/last.safetensors at step {step}"
    assert said in result.stderr


def test_a_finished_run_loads_its_export_and_says_its_step(tmp_path, data, caplog):
    run = tmp_path / "run"
    assert main(train_argv(data, run, "--max-steps", "3")) == 0
    with caplog.at_level(logging.DEBUG, logger="imgtrans"):
        model = load_model(run)
    assert model.loaded_step == 3 and model.loaded_from == run / "model"
    assert "model at step 3" in caplog.text and caplog.records[-1].levelno == logging.DEBUG
    shutil.rmtree(run / "model")  # a run stopped before its export: the checkpoint
    assert load_model(run).loaded_step == 3


# ---------------------------------------------------------------------- resumes that change a step
def test_resuming_with_another_batch_size_or_data_is_said_recorded_and_keeps_the_epochs(tmp_path, data, capsys):
    run = tmp_path / "run"
    argv = train_argv(data, run, "--epochs", "4", "--epochs-decay", "2")
    assert main([*argv, "--max-steps", "4"]) == 0  # batch 2, 4 images: 2 steps an epoch, 2 epochs done
    capsys.readouterr()
    # batch 4: 1 step an epoch now
    assert main(["train", "--resume", "--out", str(run), "--batch-size", "4", "--max-steps", "none"]) == 0
    err = capsys.readouterr().err
    assert "resuming at step 4 (epoch 2) with changed settings: batch_size 2 -> 4" in err
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history == [{**history[0], "step": 4, "epoch": 2.0, "steps_per_epoch": 1, "changed": {"batch_size": [2, 4]}}]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]  # 2 more epochs of 1 step: 4 epochs in all, not 8
    assert [r["epoch"] for r in log] == [0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    assert log[-1]["lr"] == pytest.approx(2e-4 / 3)  # the schedule's last epoch, as in an unchanged run

    more = write_ab_folder(SyntheticFacades(8, 36, seed=2), tmp_path / "more")
    assert main(["train", "--resume", "--out", str(run), "--epochs", "6", "--data", str(more)]) == 0
    err = capsys.readouterr().err
    assert "with changed settings: data" in err and "epochs 4 -> 6" in err
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and history[1]["step"] == 6 and history[1]["steps_per_epoch"] == 2
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").meta["step"] == 6 + 2 * 2  # 2 epochs of 2 steps


def test_validation_data_that_overlaps_the_training_data_is_warned(tmp_path, data, capsys):
    val = tmp_path / "val"
    val.mkdir()
    for name in sorted(p.name for p in data.iterdir())[:2]:
        shutil.copy(data / name, val / name)  # copies: other paths, the same files
    assert main([*train_argv(data, tmp_path / "run", "--max-steps", "1"), "--val-data", str(val)]) == 0
    assert "2 of the 2 validation images are also training images" in capsys.readouterr().err
    assert main([*train_argv(data, tmp_path / "run2", "--max-steps", "1"), "--val-data", str(data)]) == 0
    assert "4 of the 4 validation images are also training images" in capsys.readouterr().err
