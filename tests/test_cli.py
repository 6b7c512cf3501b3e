import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgtrans.cli import main
from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.store.factory import load as load_model

from conftest import TINY_MODEL

TINY = json.dumps(TINY_MODEL)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_ab_folder(SyntheticFacades(4, 36, seed=0), tmp_path_factory.mktemp("cli") / "train")


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "pix2pix-facades", "--data", str(data), "--direction", "BtoA", "--out", str(out),
            "--model-args", TINY, "--load-size", "36", "--crop-size", "32", "--batch-size", "2",
            "--workers", "0", "--log-every", "1", *extra]  # fmt: skip


def test_models_lists_the_registry(capsys):
    assert main(["models", "patchgan*"]) == 0
    out = capsys.readouterr().out
    assert "patchgan70" in out and "70x70 PatchGAN" in out and "unet256" not in out


def test_train_then_resume_from_the_command_line(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert main(train_args(data, out, "--epochs", "2", "--max-steps", "2")) == 0
    printed = capsys.readouterr().out
    assert "4 images" in printed and f"model:      {out / 'model'}" in printed
    # resume with only --out: settings come from the checkpoint, flags given override them
    assert main(["train", "--resume", "--out", str(out), "--max-steps", "4"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_flags_and_settings_mean_the_same(tmp_path, data):
    from imgtrans.cli import build_parser
    from imgtrans.cli.train import config_from_args

    args = build_parser().parse_args(train_args(data, tmp_path, "--epochs", "10"))
    config = config_from_args(args)
    assert (config.epochs, config.decay_epochs) == (10, 5)  # --epochs is epochs in all, as TrainConfig.epochs
    args = build_parser().parse_args(train_args(data, tmp_path, "--epochs", "10", "--epochs-decay", "2", "--no-flip"))
    config = config_from_args(args)
    assert (config.epochs, config.epochs_decay, config.flip, config.batch_size) == (10, 2, False, 2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "pix2pix-nope", "--data", "."], "is not a model configuration imgtrans trains"),
        (["train", "pix2pix-facades"], "--data is required"),
        (["train", "--resume", "--out", "/nonexistent/run"], "nothing to resume"),
        (["translate", "/nonexistent/model", "x.png", "--out", "o"], "neither a file, a folder, nor a published model"),
    ],
)
def test_user_errors_are_one_line_with_status_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_translate_files_folders_odd_sizes_and_tiles(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert main(train_args(data, out, "--max-steps", "1")) == 0
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"odd": (45, 77), "small": (20, 20), "big": (150, 230)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"{name}.png")
    extra = tmp_path / "extra.jpg"
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(extra)
    argv = ["translate", str(out), str(images), str(extra), "--out", str(tmp_path / "t"), "--tile", "96", "--overlap", "32"]
    assert main(argv) == 0
    assert "translated 4 image(s)" in capsys.readouterr().out
    sizes = {p.name: Image.open(p).size for p in (tmp_path / "t").iterdir()}
    assert sizes == {"odd.png": (77, 45), "small.png": (20, 20), "big.png": (230, 150), "extra.png": (20, 20)}
    # the tiled translation matches translating the whole image at once
    model = load_model(out)
    x = torch.from_numpy(np.asarray(Image.open(images / "big.png"), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    whole = ((model.translate(x)[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    tiled = np.asarray(Image.open(tmp_path / "t" / "big.png"), dtype=np.float32)
    assert np.abs(whole - tiled).mean() < 2.0


def test_translate_splits_ab_files(tmp_path, data):
    out = tmp_path / "run"
    assert main(train_args(data, out, "--max-steps", "1")) == 0
    assert main(["translate", str(out), str(data), "--split", "right", "--out", str(tmp_path / "t")]) == 0
    assert Image.open(tmp_path / "t" / "1.png").size == (36, 36)


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--steps", "2", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "held-out L1" in out and str(tmp_path / "demo" / "before_after.png") in out
    grid = Image.open(tmp_path / "demo" / "before_after.png")
    assert grid.size == (4 * 36, 4 * 36)  # input | untrained | trained | target, 4 rows, 2 px borders
    assert len(list((tmp_path / "demo" / "translations").iterdir())) == 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(train_args(data, out, "--max-steps", "1")) == 0
    return out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch-size", "0"], "--batch-size must be at least 1; got 0"),
        (["--batch-size", "-3"], "--batch-size must be at least 1; got -3"),
        (["--tile", "0"], "--tile must be a positive number of pixels; got 0"),
        (["--tile", "-64"], "--tile must be a positive number of pixels"),
        (["--overlap", "-1"], "--overlap must be at least 0 and at most half of --tile (512 of 1024)"),
        (["--tile", "64", "--overlap", "64"], "--overlap must be at least 0 and at most half of --tile (32 of 64)"),
        (["--tile", "1024", "--overlap", "1000"], "at most half of --tile (512 of 1024), or tiles would step by a few"),
        # below the generator's padding multiple (32 for the tiny U-Net) and the floor: refused, not run for ever
        (["--tile", "1", "--overlap", "0"], "--tile must be at least 64 for this model; got 1"),
        (["--tile", "40", "--overlap", "8"], "--tile must be at least 64 for this model; got 40"),
    ],
)
def test_translate_refuses_nonsense_sizes_naming_the_flag(trained, tmp_path, flags, message, capsys):
    assert main(["translate", str(trained), str(trained), "--out", str(tmp_path / "t"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t").exists()


def test_translate_refuses_nan_weights_instead_of_writing_black_images(trained, tmp_path, capsys):
    import imgtrans

    model = load_model(trained)
    with torch.no_grad():
        model.generator.decoder[2].conv.weight[0, 0, 0, 0] = float("inf")
    imgtrans.save_pretrained(model, tmp_path / "broken")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    assert main(["translate", str(tmp_path / "broken"), str(image), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite values in 1 tensor(s) (generator.decoder.2.conv.weight)" in err  # refused at load
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_translate_refuses_to_tile_the_papers_mode(trained, tmp_path, capsys):
    image = tmp_path / "wide.png"
    Image.fromarray(np.zeros((40, 200, 3), dtype=np.uint8)).save(image)
    argv = ["translate", str(trained), str(image), "--out", str(tmp_path / "t"), "--tile", "96", "--overlap", "16"]
    assert main(argv + ["--paper-test-mode"]) == 2
    err = capsys.readouterr().err
    assert "larger than --tile 96" in err and "its own statistics" in err and len(err.strip().splitlines()) == 1
    assert main(argv) == 0
    assert "translated 1 image(s)" in capsys.readouterr().out
    assert main(["translate", str(trained), str(image), "--out", str(tmp_path / "p"), "--paper-test-mode"]) == 0
    assert f"into {tmp_path / 'p'} (torch fp32, paper test mode)" in capsys.readouterr().out
