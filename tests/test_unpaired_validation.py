"""Validation of CycleGAN runs on unpaired data: FID of one domain's translations against the other's real images."""

import json
import warnings

import pytest
import torch

from imgtrans.cli import main
from imgtrans.data import SyntheticFacades
from imgtrans.data.unpaired import write_unpaired_folder
from imgtrans.metrics.fid import random_inception_state
from imgtrans.train import TrainConfig, Trainer

TINY = {"generator_args": {"base_channels": 8, "n_blocks": 2}, "discriminator_args": {"base_channels": 8}}
INCEPTION = "weights-inception-2015-12-05-6726825d.pth"


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory):
    root = tmp_path_factory.mktemp("unpaired")
    write_unpaired_folder(SyntheticFacades(6, 36), root / "synth")
    write_unpaired_folder(SyntheticFacades(6, 36, seed=3), root / "synth", split="test")
    weights = root / INCEPTION
    torch.save(random_inception_state(seed=0), weights)  # random weights: offline, and the test reads no score
    return root / "synth", weights


def config(out, data, weights, **kw):
    return TrainConfig(model="cyclegan", model_args=TINY, data=str(data), val_data=str(data), out=str(out),
                       load_size=36, crop_size=32, workers=0, max_steps=4, val_every=2, sample_every=0,
                       checkpoint_every=0, val_metric="fid", inception_weights=str(weights), **kw)  # fmt: skip


def test_pixel_metrics_are_refused_in_one_line(tmp_path, unpaired, capsys):
    data, _ = unpaired
    argv = ["train", "cyclegan", "--data", str(data), "--val-data", str(data), "--out", str(tmp_path / "run"),
            "--max-steps", "2", "--model-args", json.dumps(TINY), "--workers", "0"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--val-metric is l1" in err[0] and "unpaired" in err[0] and "fid" in err[0], err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("direction, source, real", [("AtoB", "testA", "testB"), ("BtoA", "testB", "testA")])
def test_fid_compares_one_domains_translations_with_the_others_real_images(tmp_path, unpaired, direction, source, real):
    data, weights = unpaired
    trainer = Trainer(config(tmp_path / "run", data, weights, direction=direction))
    v = trainer.validator
    assert v.dataset.folder == data / source and v.real.folder == data / real
    summary = trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val_fid" in r]
    assert [r["step"] for r in validations] == [2, 4]
    assert not any(k in r for r in validations for k in ("val_l1", "val_psnr", "val_ssim"))  # no targets: absent
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    assert best["metric"] == "fid" and set(best["scores"]) == {"fid"} and best["images"] == len(v.dataset)
    scores = {r["step"]: r["val_fid"] for r in validations}
    assert best["step"] == min(scores, key=scores.get) and summary.steps == 4


def test_validating_on_the_training_domains_is_warned_about(tmp_path, unpaired):
    data, weights = unpaired
    train_only = tmp_path / "train-only"
    write_unpaired_folder(SyntheticFacades(6, 36), train_only)  # the same images as data's trainA/ trainB/
    cfg = config(tmp_path / "run", data, weights)
    cfg = TrainConfig(**{**cfg.__dict__, "val_data": str(train_only)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(cfg)
    assert any("also training images" in str(w.message) for w in caught), [str(w.message) for w in caught]
