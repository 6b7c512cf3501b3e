"""Validation during training: scores at intervals, the best model kept, TensorBoard beside log.jsonl."""

import json
import math
from pathlib import Path

import pytest
import torch

from imgtrans.cli import main
from imgtrans.data import PairedImageDataset, SyntheticFacades, write_ab_folder
from imgtrans.metrics import l1_error
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train import validation as validation_module
from imgtrans.train.validation import Best, Validator
from imgtrans.store.factory import from_pretrained

from conftest import TINY_MODEL


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("val-data")
    train = write_ab_folder(SyntheticFacades(6, 36, seed=0), root / "train")
    val = write_ab_folder(SyntheticFacades(4, 32, seed=9), root / "val")
    return train, val


def config(out: Path, data: Path, val: Path | None, **overrides) -> TrainConfig:
    settings = dict(model="pix2pix-facades", model_args=TINY_MODEL, data=str(data), val_data=str(val) if val else None,
                    direction="BtoA", out=str(out), epochs=3, epochs_decay=2, batch_size=2, load_size=36,
                    crop_size=32, workers=0, log_every=1, sample_every=0, checkpoint_every=0, val_every=2)  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def val_l1(model, val: Path) -> float:
    data = PairedImageDataset(val, "BtoA", load_size=32, crop_size=32, train=False)
    x = torch.stack([data[i]["input"] for i in range(len(data))])
    y = torch.stack([data[i]["target"] for i in range(len(data))])
    return l1_error(model.translate(x), y).mean().item()


def test_validation_logs_scores_and_keeps_the_best_model(tmp_path, folders):
    train, val = folders
    run = tmp_path / "run"
    summary = Trainer(config(run, train, val, max_steps=5)).fit()
    validations = [r for r in records(run) if "val_l1" in r]
    assert [r["step"] for r in validations] == [2, 4, 5]  # every 2 steps, and the last
    assert all({"val_psnr", "val_ssim", "val_seconds", "epoch"} <= r.keys() for r in validations)
    assert all(r["val_images"] == 4 for r in validations)
    best_step = min(validations, key=lambda r: r["val_l1"])["step"]
    best = json.loads((run / "best" / "best.json").read_text())
    assert best["step"] == best_step == summary.best_step and best["metric"] == "l1" and best["better"] == "lower"
    assert best["data"] == str(val) and best["images"] == 4
    assert [r["val_best"] for r in validations] == [r["val_l1"] <= min(v["val_l1"] for v in validations[: k + 1])
                                                    for k, r in enumerate(validations)]  # fmt: skip
    # best/ is a save_pretrained folder holding the model that scored best_l1
    assert val_l1(from_pretrained(run / "best"), val) == pytest.approx(best["score"], abs=1e-6)
    assert summary.best == run / "best" and summary.last_scores["step"] == 5
    assert summary.last_scores["l1"] == pytest.approx(validations[-1]["val_l1"], abs=1e-6)
    assert summary.val_seconds > 0 and summary.train_seconds > summary.val_seconds
    assert sorted(p.name for p in run.iterdir()) == [".imgtrans-run.json", ".lock", "best", "checkpoints", "log.jsonl", "model", "samples"]


def test_psnr_picks_the_highest_and_a_failed_write_keeps_the_previous_best(tmp_path, folders, monkeypatch):
    _, val = folders
    dataset = PairedImageDataset(val, "BtoA", load_size=32, crop_size=32, train=False)
    model = Trainer(config(tmp_path / "x", folders[0], None)).model
    validator = Validator(dataset, tmp_path / "run", metric="psnr", every=2, data="val")
    first = validator.validate(model, 2)
    score = validator.best.score
    assert first["val_best"] and validator.best.better == "higher"
    assert score == pytest.approx(first["val_psnr"], abs=1e-6)
    assert validator.best.improved_by(score + 0.1) and not validator.best.improved_by(score)  # ties keep the earlier
    assert not validator.best.improved_by(score - 0.1) and not validator.best.improved_by(math.nan)
    assert Best(1, "l1", 0.2, "lower").improved_by(0.19) and not Best(1, "l1", 0.2, "lower").improved_by(0.21)
    before = (tmp_path / "run" / "best" / "model.safetensors").read_bytes()
    with torch.no_grad():
        for p in model.generator.parameters():
            p.zero_()  # outputs of 0 (gray): another PSNR
    def crash(model, directory, **kwargs):
        Path(directory).mkdir(parents=True)
        (Path(directory) / "model.safetensors").write_bytes(b"half")
        raise OSError("No space left on device")
    monkeypatch.setattr(validation_module, "save_pretrained", crash)
    validator.best.score = -math.inf  # any score is better now: a write is attempted
    with pytest.raises(OSError, match="No space left"):
        validator.validate(model, 4)
    assert (tmp_path / "run" / "best" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best"]  # no temporary folder left


def test_a_crash_between_the_renames_is_repaired(tmp_path, folders):
    _, val = folders
    dataset = PairedImageDataset(val, "BtoA", load_size=32, crop_size=32, train=False)
    model = Trainer(config(tmp_path / "x", folders[0], None)).model
    Validator(dataset, tmp_path / "run", every=2, data="val").validate(model, 2)
    (tmp_path / "run" / "best").rename(tmp_path / "run" / ".best.old")  # the old best moved, the new not yet in
    restored = Validator(dataset, tmp_path / "run", every=2, data="val").restore()
    assert restored.step == 2 and (tmp_path / "run" / "best" / "best.json").is_file()
    with pytest.raises(ValueError, match="holds the best model by l1 on val, but this run validates by ssim on val"):
        Validator(dataset, tmp_path / "run", metric="ssim", data="val").restore()


def test_resume_keeps_the_best_so_far(tmp_path, folders):
    train, val = folders
    run = tmp_path / "run"
    Trainer(config(run, train, val, max_steps=4)).fit()
    best = json.loads((run / "best" / "best.json").read_text())
    resumed = Trainer(config(run, train, val, max_steps=6))
    assert resumed.validator.best is None
    summary = resumed.fit(resume=True)
    after = json.loads((run / "best" / "best.json").read_text())
    validations = [r for r in records(run) if "val_l1" in r]
    assert [r["step"] for r in validations] == [2, 4, 6]
    if validations[-1]["val_l1"] < best["score"]:
        assert after["step"] == 6
    else:  # the earlier best was read back, not reset by the resumed run
        assert after == best and summary.best_step == best["step"]


def test_validation_settings_are_checked(tmp_path, folders):
    with pytest.raises(ValueError, match="val_metric must be"):
        config(tmp_path, *folders, val_metric="lpips")
    with pytest.raises(ValueError, match="val_every must be at least 0"):
        config(tmp_path, *folders, val_every=-1)
    with pytest.raises(ValueError, match="log_to takes tensorboard only"):
        config(tmp_path, *folders, log_to=["wandb"])


def test_tensorboard_gets_every_scalar_and_the_samples(tmp_path, folders):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, val = folders
    run = tmp_path / "run"
    Trainer(config(run, train, val, max_steps=4, sample_every=2, log_to=["tensorboard"])).fit()
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    assert {"loss/d_loss", "loss/g_l1", "loss/g_gan", "train/lr", "train/img_per_s", "val/l1", "val/psnr",
            "val/ssim", "val/best_l1", "val/seconds"} <= set(tags["scalars"])  # fmt: skip
    logged = [r for r in records(run) if "g_l1" in r]
    assert [e.value for e in events.Scalars("loss/g_l1")] == pytest.approx([r["g_l1"] for r in logged])
    assert [e.step for e in events.Scalars("val/l1")] == [2, 4]
    assert [e.step for e in events.Images("samples")] == [0, 2, 4]
    # a resumed run drops the events after its checkpoint, as log.jsonl drops its lines
    Trainer(config(run, train, val, max_steps=6, sample_every=2, log_to=["tensorboard"])).fit(resume=True)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in events.Scalars("loss/g_l1")] == list(range(1, 7))


def test_tensorboard_missing_is_one_line(tmp_path, folders, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r'pip install "imgtrans\[tensorboard\]"'):
        Trainer(config(tmp_path / "run", *folders, log_to=["tensorboard"]))


def test_train_command_names_the_last_and_the_best_model(tmp_path, folders, capsys):
    train, val = folders
    run = tmp_path / "run"
    argv = ["train", "pix2pix-facades", "--data", str(train), "--direction", "BtoA", "--out", str(run),
            "--model-args", json.dumps(TINY_MODEL), "--load-size", "36", "--crop-size", "32", "--workers", "0",
            "--max-steps", "3", "--val-data", str(val), "--val-every", "2", "--val-metric", "ssim"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    best = json.loads((run / "best" / "best.json").read_text())
    assert best["metric"] == "ssim" and best["better"] == "higher"
    assert f"last:       step 3 ({run / 'model'}): l1 " in out
    assert f"best:       step {best['step']} ({run / 'best'}) by ssim: " in out and "validation: " in out


def test_validation_flags_need_their_data(tmp_path, folders, capsys):
    train, val = folders
    base = ["train", "pix2pix-facades", "--data", str(train), "--out", str(tmp_path / "run"), "--max-steps", "1"]
    assert main([*base, "--val-every", "2"]) == 2
    assert "--val-every needs --val-data" in capsys.readouterr().err
    assert main([*base, "--val-data", str(val), "--inception-weights", "w.pth"]) == 2
    assert "--inception-weights is for --val-metric fid" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_interrupted_run_says_its_last_step_was_not_validated(tmp_path):
    from imgtrans.train.trainer import RunSummary
    from imgtrans.train.validation import format_validation_summary

    summary = RunSummary(tmp_path, 7, tmp_path / "last.safetensors", interrupted=True, best=tmp_path / "best",
                         best_step=4, best_scores={"l1": 0.2, "psnr": 12.0, "ssim": 0.3},
                         last_scores={"step": 6, "l1": 0.25, "psnr": 11.0, "ssim": 0.28}, val_metric="l1",
                         train_seconds=90.0, val_seconds=10.0)  # fmt: skip
    lines = format_validation_summary(summary).splitlines()
    assert lines[0].endswith("not validated (latest validation, step 6: l1 0.25, psnr 11, ssim 0.28)")
    assert lines[1] == f"best:       step 4 ({tmp_path / 'best'}) by l1: l1 0.2, psnr 12, ssim 0.3"
    assert lines[2] == "validation: 10.0 s of 100.0 s (10.0%)"
