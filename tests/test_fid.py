"""FID and KID through torchmetrics and torch-fidelity's Inception, with weights the tests make.

The real Inception weights cannot be downloaded here, so a file of the right layout with random
values stands in for them: it exercises the whole path from file to score, and the checks are
the properties every FID and KID have whatever the weights.
"""

import json
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from imgtrans.cli import main
from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.metrics import fid
from imgtrans.metrics.fid import InceptionDistance, InceptionFeatures, random_inception_state

from zoo_fixtures import hub_settings

from conftest import TINY_MODEL


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inception") / fid.WEIGHTS_FILE
    torch.save(random_inception_state(seed=0), path)
    return path


@pytest.fixture(scope="module")
def features(weights) -> InceptionFeatures:
    return InceptionFeatures(weights)


@pytest.fixture(scope="module")
def quick(weights) -> InceptionFeatures:
    """The network's 192 features (after its stem) instead of the 2048 pool features: far less CPU.

    The property tests run on them, through the same code; the end-to-end tests below keep 2048.
    """
    return InceptionFeatures(weights, feature=192)


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """Images of one distribution: coarse random patterns, upsampled (the network resizes to 299 anyway)."""
    coarse = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return F.interpolate(coarse, size=32, mode="bilinear", align_corners=False)


@pytest.mark.slow
def test_fid_is_zero_for_one_set_grows_with_noise_and_kid_is_zero_between_samples_of_one_set(quick):
    real, other = smooth_images(10, seed=1), smooth_images(10, seed=2)

    def noisy(amount: float) -> torch.Tensor:
        return (real + amount * torch.randn(real.shape, generator=torch.Generator().manual_seed(3))).clamp(-1, 1)

    fid_only, kid_only = InceptionDistance(features=quick, kid=False), InceptionDistance(features=quick, fid=False)
    assert quick.num_features == 192
    fid_only.update_real(real)
    kid_only.update_real(real)
    fids, kids = [], {}
    for fake in (real, noisy(0.25), noisy(0.6)):
        fid_only.reset_fake()
        fid_only.update_fake(fake)
        fids.append(fid_only.compute()["fid"])
    for name, fake in (("same", real), ("other sample", other), ("noisy", noisy(0.6))):
        kid_only.reset_fake()
        kid_only.update_fake(fake)
        kids[name] = kid_only.compute()
    assert abs(fids[0]) < 1e-4 * fids[2] and 0 < fids[1] < fids[2]
    assert abs(kids["same"]["kid"]) < 0.01 * kids["noisy"]["kid"]
    assert abs(kids["other sample"]["kid"]) < 0.05 * kids["noisy"]["kid"]
    assert kids["same"]["images"] == kids["same"]["real_images"] == 10 and "fid" not in kids["same"]
    assert kids["same"]["kid_subset_size"] == 10 and kids["same"]["kid_subsets"] == 100


def test_kid_is_reproducible_and_leaves_the_random_stream_alone(quick):
    distance = InceptionDistance(features=quick, kid_subset_size=3, fid=False)
    distance.update(smooth_images(4, seed=5), smooth_images(4, seed=6))
    state = torch.get_rng_state()
    first = distance.compute()
    assert torch.equal(state, torch.get_rng_state())
    assert distance.compute() == first and first["kid_subset_size"] == 3 and first["kid_std"] > 0
    spawned = distance.spawn()  # the real features are copied, not encoded again
    assert spawned.real_images == 4 and spawned.fake_images == 0


@pytest.mark.slow
def test_safetensors_and_pth_files_give_the_same_features(weights, features, tmp_path):
    converted = tmp_path / "inception.safetensors"
    save_file(torch.load(weights, weights_only=True), str(converted))
    images = smooth_images(2, seed=4)
    with torch.no_grad():
        assert torch.equal(InceptionFeatures(converted)(images), features(images))
        gray = features(images[:, :1])
    assert gray.shape == (2, 2048)


def test_bad_weights_files_are_explained_in_one_line(weights, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no Inception weights file at .*expected {fid.WEIGHTS_FILE}"):
        InceptionFeatures(tmp_path / "absent.pth")
    state = torch.load(weights, weights_only=True)
    del state["fc.bias"]
    state["Conv2d_1a_3x3.conv.weight"] = torch.zeros(8, 3, 3, 3)
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(ValueError) as error:
        InceptionFeatures(wrong)
    message = str(error.value)
    assert "\n" not in message and "does not hold the FID Inception weights" in message
    assert "1 missing (e.g. fc.bias)" in message and "Conv2d_1a_3x3.conv.weight: (8, 3, 3, 3)" in message
    pickled = tmp_path / "code.pth"
    torch.save({"fc.bias": torch.zeros(1), "hook": Path("x")}, pickled)  # an object: refused, never unpickled
    with pytest.raises(ValueError, match="is not a readable weights file"):
        InceptionFeatures(pickled)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a readable weights file"):
        InceptionFeatures(garbage)


@pytest.mark.parametrize("offline", [True, False])
def test_no_weights_and_no_network_fails_within_seconds(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if offline:
        hub_settings(monkeypatch, offline=True)
    else:  # a closed local port: the connection is refused at once
        hub_settings(monkeypatch, offline=False)
        monkeypatch.setattr(fid, "WEIGHTS_URL", f"http://127.0.0.1:9/{fid.WEIGHTS_FILE}")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        InceptionFeatures()
    assert time.perf_counter() - start < 10
    message = str(error.value)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / fid.WEIGHTS_FILE
    assert fid.default_weights_path() == expected
    assert str(expected) in message and "--inception-weights" in message and "\n" not in message
    assert ("offline mode" in message) == offline
    assert not expected.exists()


def test_too_few_images_and_too_large_kid_subsets(quick):
    distance = InceptionDistance(features=quick, kid_subset_size=5)
    distance.update(smooth_images(1, seed=7), smooth_images(1, seed=8))
    with pytest.raises(ValueError, match="need at least 2 generated and 2 real images; got 1 and 1"):
        distance.compute()
    distance.update(smooth_images(2, seed=9), smooth_images(2, seed=10))
    with pytest.raises(ValueError, match=r"kid_subset_size \(5\) is larger than the 3 images"):
        distance.compute()
    with pytest.raises(ValueError, match="kid_subset_size must be an integer >= 2"):
        InceptionDistance(features=quick, kid_subset_size=1)


def test_missing_libraries_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "imgtrans\[fid\]"'):
        InceptionFeatures(state={})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fid-eval")
    data = write_ab_folder(SyntheticFacades(5, 32, seed=3), root / "test")
    run = root / "run"
    argv = ["train", "pix2pix-facades", "--data", str(data), "--direction", "BtoA", "--out", str(run),
            "--model-args", json.dumps(TINY_MODEL), "--load-size", "32", "--crop-size", "32", "--workers", "0",
            "--max-steps", "2"]  # fmt: skip
    assert main(argv) == 0
    return run, data


@pytest.mark.slow
def test_eval_reports_fid_and_kid_with_the_bias_warning(trained, weights, tmp_path, capsys):
    run, data = trained
    out = tmp_path / "report"
    argv = ["eval", str(run), "--data", str(data), "--direction", "BtoA", "--out", str(out), "--fid",
            "--inception-weights", str(weights), "--modes", "eval,paper"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "FID (5 images)" in captured.out and "warning: FID on 5 images is biased upward" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    for mode in ("eval", "paper"):
        scores = metrics["modes"][mode]["summary"]["fid"]
        assert scores["images"] == scores["real_images"] == scores["kid_subset_size"] == 5
        assert scores["fid"] > 0 and "kid" in scores and "compare FIDs only" in scores["warning"]
    assert metrics["modes"]["eval"]["summary"]["fid"]["fid"] != metrics["modes"]["paper"]["summary"]["fid"]["fid"]
    assert "weights-inception-2015-12-05" in metrics["conventions"]["fid"]
    html = (out / "index.html").read_text()
    assert "FID (5 images)" in html and 'class="warning"' in html


def test_eval_fid_errors_are_one_line(trained, tmp_path, monkeypatch, capsys):
    run, data = trained
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    hub_settings(monkeypatch, offline=True)
    base = ["eval", str(run), "--data", str(data), "--direction", "BtoA", "--out", str(tmp_path / "r")]
    assert main([*base, "--fid"]) == 2
    assert "--inception-weights" in capsys.readouterr().err
    assert main([*base, "--fid", "--kid-subset-size", "50"]) == 2
    assert "kid_subset_size (50) is larger than the 5 images" in capsys.readouterr().err
    assert main([*base, "--inception-weights", "x.pth"]) == 2
    assert "add --fid" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_eval_shows_a_progress_bar(trained, tmp_path, capsys):
    from imgtrans.metrics.scoring import evaluate_model
    from imgtrans.data import PairedImageDataset
    from imgtrans.store.factory import load as load_model

    run, data = trained
    dataset = PairedImageDataset(data, "BtoA", load_size=None, crop_size=None, train=False)
    evaluate_model(load_model(run), dataset, tmp_path / "r", modes=["eval"], progress=True)
    assert "evaluating (eval)" in capsys.readouterr().err


@pytest.mark.slow
def test_training_validates_by_fid(trained, weights, tmp_path, monkeypatch):
    from imgtrans.train import TrainConfig, Trainer

    _, data = trained
    settings = dict(model="pix2pix-facades", model_args=TINY_MODEL, data=str(data), val_data=str(data),
                    direction="BtoA", out=str(tmp_path / "run"), load_size=32, crop_size=32, workers=0, max_steps=2,
                    val_every=0, val_metric="fid", inception_weights=str(weights))  # fmt: skip
    summary = Trainer(TrainConfig(**settings)).fit()
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    assert best["metric"] == "fid" and best["better"] == "lower" and best["step"] == 2 == summary.best_step
    assert best["score"] == best["scores"]["fid"] > 0 and {"l1", "psnr", "ssim"} <= best["scores"].keys()
    # without weights, offline: training does not start
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    hub_settings(monkeypatch, offline=True)
    with pytest.raises(FileNotFoundError, match="--inception-weights"):
        Trainer(TrainConfig(**{**settings, "inception_weights": None, "out": str(tmp_path / "other")}))
    assert not (tmp_path / "other").exists()
