"""Nothing silently trains or scores the wrong thing, resources stay bounded, and every bad input gets
one clear line: hostile configurations, odd images, damaged weights, wrong directions, shell use."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import imgtrans
from imgtrans.store.checkpoint import load_checkpoint
from imgtrans.cli import main
from imgtrans.store.config import ModelConfig
from imgtrans.data import PairedImageDataset, SyntheticFacades, write_ab_folder
from imgtrans.store.factory import from_pretrained, load, save_pretrained
from imgtrans.images import image_to_tensor, read_image

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def error_line(capsys) -> str:
    """The one line a failed command printed (progress bars aside)."""
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("imgtrans ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def tiny_run_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "pix2pix-facades", "--data", str(data), "--out", str(out), "--model-args", json.dumps(TINY_MODEL),
            "--load-size", "36", "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--sample-every", "0",
            *extra]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_ab_folder(SyntheticFacades(4, 36, seed=0), tmp_path_factory.mktemp("bad") / "train")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ------------------------------------------------------------------------------- configurations
@pytest.mark.parametrize(
    "name, arguments, message",
    [
        ("unet256", {"num_downs": 1e6}, "num_downs=1000000.0 (float) is not of type int"),
        ("unet256", {"num_downs": 10**6}, "num_downs must be between 5 and 12"),
        ("patchgan70", {"n_layers": 10**5}, "n_layers must be between 0 and 8"),
        ("unet256", {"base_channels": 1e9}, "base_channels=1000000000.0 (float) is not of type int"),
        ("unet256", {"base_channels": 10**9}, "base_channels must be between 1 and 1024"),
        ("unet256", {"base_channels": 1024}, "parameters, more than the 1,073,741,824 imgtrans builds"),
        ("resnet9", {"in_channels": 10**12}, "3,136,000,011,384,538 parameters, more than"),
        ("resnet9", {"n_blocks": 10**7}, "n_blocks must be between 0 and 64"),
        ("unet256", {"norm": 3}, "norm=3 (int) is not of type"),
        ("unet265", {}, "Did you mean 'unet256'"),
        ("unet256", {"num_down": 8}, "did you mean 'num_downs'"),
        ("pix2pix-facades", {"generator_args": {"base_channels": 10**9}}, "base_channels must be between 1 and 1024"),
        ("pix2pix-facades", {"generator_args": {"num_downs": "8"}}, "num_downs='8' (str) is not of type int"),
        ("pix2pix-facades", {"pretrained": True}, "no argument 'pretrained'"),
        ("pix2pix-facades", {"weights": "/etc/passwd"}, "no argument 'weights'"),
    ],
)
def test_a_hostile_configuration_fails_in_well_under_a_second(tmp_path, name, arguments, message):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"name": name, "arguments": arguments}))
    save_file({}, folder / "model.safetensors")
    start = time.monotonic()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("'", ".")):
        from_pretrained(folder)
    assert time.monotonic() - start < 1.0


def test_a_hostile_checkpoint_record_fails_the_same_way(tmp_path):
    run = tmp_path / "run"
    assert main(tiny_run_argv(write_ab_folder(SyntheticFacades(2, 36), tmp_path / "d"), run, "--direction", "BtoA",
                              "--max-steps", "1")) == 0  # fmt: skip
    checkpoint = run / "checkpoints" / "last.safetensors"
    tensors = load_file(checkpoint)
    meta = load_checkpoint(checkpoint).meta
    meta["model"]["arguments"]["generator_args"] = dict(TINY_MODEL["generator_args"], num_downs=10**6)
    save_file(tensors, checkpoint, metadata={"imgtrans": json.dumps(meta)})
    with pytest.raises(ValueError, match=r"last.safetensors: .*num_downs must be between 5 and 12"):
        load(checkpoint)


def test_loading_a_folder_never_reaches_out_whatever_its_configuration_says(tmp_path, no_network):
    model = imgtrans.build("unet-timm", encoder="resnet18", pretrained_encoder=False)
    folder = save_pretrained(model, tmp_path / "saved")
    config = json.loads((folder / "config.json").read_text())
    assert "pretrained_encoder" not in config["arguments"] and "encoder_weights" not in config["arguments"]
    # A file edited (or written by an older imgtrans) to fetch weights or open another file:
    config["arguments"].update(pretrained_encoder=True, encoder_weights=str(tmp_path / "elsewhere.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    loaded = from_pretrained(folder)  # neither downloads nor opens elsewhere.safetensors (which does not exist)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(loaded.eval()(x), model.eval()(x))
    config["arguments"]["encoder"] = "hf-hub:timm/resnet18.a1_in1k"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="names a backbone on the Hugging Face Hub .* never reaches the network"):
        from_pretrained(folder)


def test_weights_of_the_wrong_kind_or_a_diverged_run_are_refused(tmp_path):
    model = imgtrans.build("unet128", base_channels=4)
    folder = save_pretrained(model, tmp_path / "saved")
    state = load_file(folder / "model.safetensors")
    name = next(k for k, v in state.items() if v.is_floating_point())
    for bad, message in ((state[name].to(torch.int32), "not floating point"), (state[name].bool(), "not floating point"),
                         (torch.full_like(state[name], float("nan")), "NaN or infinite .* diverged")):  # fmt: skip
        save_file({**state, name: bad}, folder / "model.safetensors")
        config = json.loads((folder / "config.json").read_text())
        config.pop("sha256", None)
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=message):
            from_pretrained(folder)


# ------------------------------------------------------------------------------------ directions
def test_the_configuration_knows_its_direction_and_the_run_records_it(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert main(tiny_run_argv(data, run, "--max-steps", "1")) == 0  # no --direction
    assert "(BtoA," in capsys.readouterr().out  # pix2pix-facades is labels -> photo
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").meta["model"]["direction"] == "BtoA"
    assert json.loads((run / "model" / "config.json").read_text())["direction"] == "BtoA"
    assert load(run).config.direction == "BtoA" and load(run / "checkpoints" / "last.safetensors").config.direction == "BtoA"

    assert main(["eval", str(run), "--data", str(data), "--out", str(tmp_path / "eval"), "--modes", "eval"]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["info"]["direction"] == "BtoA"
    # translate --split input takes the labels half (the right one in facades' photo | labels files)
    assert main(["translate", str(run), str(data / "1.png"), "--split", "input", "--out", str(tmp_path / "t")]) == 0
    assert main(["translate", str(run), str(data / "1.png"), "--split", "right", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "t" / "1.png").read_bytes() == (tmp_path / "r" / "1.png").read_bytes()


def test_a_configuration_without_a_direction_needs_one(tmp_path, data, capsys):
    argv = tiny_run_argv(data, tmp_path / "run", "--max-steps", "1")
    argv[1] = "pix2pix-l1"
    assert main(argv) == 2
    assert "--direction is needed: pix2pix-l1 is not made for one dataset" in error_line(capsys)


def test_published_models_know_their_direction():
    pix2pix = imgtrans.list_models("pix2pix-*", pretrained=True)  # CycleGAN's: tests/test_cyclegan.py
    assert {n: imgtrans.registry.entry(n).direction for n in pix2pix} == {
        "pix2pix-day2night": "BtoA", "pix2pix-edges2shoes": "AtoB", "pix2pix-facades": "BtoA",
        "pix2pix-map2sat": "BtoA", "pix2pix-sat2map": "AtoB"}  # fmt: skip
    assert ModelConfig.create("pix2pix-sat2map").direction == "AtoB"


# ---------------------------------------------------------------------------------------- images
def test_a_folder_of_single_photos_is_not_trained_as_pairs(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    argv = tiny_run_argv(photos, tmp_path / "run", "--direction", "AtoB", "--max-steps", "1", "--load-size", "32")
    assert main(argv) == 2
    message = error_line(capsys)
    assert "0.png is 40x40, so its halves would be 20x40" in message and "--no-check-pairs" in message
    assert not (tmp_path / "run" / "log.jsonl").exists()
    assert main([*argv, "--no-check-pairs", "--overwrite"]) == 0


def sixteen_bit(path: Path) -> np.ndarray:
    values = np.linspace(0, 65535, 40 * 80).reshape(40, 80).astype(np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    return values


def test_16_bit_images_are_scaled_not_saturated(tmp_path):
    values = sixteen_bit(tmp_path / "deep.png")
    x = image_to_tensor(read_image(tmp_path / "deep.png", 3), 3)
    assert x.shape == (3, 40, 80)
    torch.testing.assert_close(x[0], torch.from_numpy(values / 65535 * 2 - 1).float(), atol=1e-6, rtol=0)
    assert (x > 0.99).float().mean() < 0.05  # not 98% white
    item = PairedImageDataset(tmp_path, "AtoB", load_size=None, crop_size=None, train=False)[0]
    torch.testing.assert_close(item["input"][0], x[0, :, :40])


def test_translate_reads_16_bit_images_as_the_8_bit_image_they_show(tmp_path):
    folder = save_pretrained(imgtrans.build("unet128", base_channels=4), tmp_path / "model")
    values = sixteen_bit(tmp_path / "deep.png")
    Image.fromarray((values / 257).round().astype(np.uint8)).save(tmp_path / "shallow.png")
    for name in ("deep", "shallow"):
        assert main(["translate", str(folder), str(tmp_path / f"{name}.png"), "--out", str(tmp_path / name)]) == 0
    deep, shallow = (np.asarray(Image.open(tmp_path / n / f"{n}.png"), dtype=float) for n in ("deep", "shallow"))
    assert np.abs(deep - shallow).max() <= 2


MODES = {
    "1": ".png", "L": ".png", "LA": ".png", "P": ".png", "RGB": ".png", "RGBA": ".png", "I;16": ".png", "I": ".tif",
    "CMYK": ".jpg", "YCbCr": ".jpg", "F": ".tif", "I;16B": ".tif", "LAB": ".tif",
}  # fmt: skip


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_mode_pillow_opens_becomes_a_valid_tensor(tmp_path, mode, channels):
    gradient = np.linspace(0, 1, 16 * 24).reshape(16, 24)
    if mode == "I;16B":
        image = Image.frombytes("I;16B", (24, 16), (gradient * 65535).astype(">u2").tobytes())
    elif mode in ("I;16", "I"):
        image = Image.fromarray((gradient * 65535).astype(np.uint16))
        image = image if mode == "I;16" else Image.fromarray((gradient * 65535).astype(np.int32))
    elif mode == "F":
        image = Image.fromarray(gradient.astype(np.float32), mode="F")
    else:
        image = Image.fromarray((gradient * 255).astype(np.uint8)).convert(mode)
    path = tmp_path / f"image{MODES[mode]}"
    image.save(path)
    x = image_to_tensor(read_image(path, channels), channels)
    assert x.shape == (channels, 16, 24) and torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    if mode not in ("1", "P", "CMYK", "YCbCr", "LAB"):  # those quantise or re-map the gradient
        assert x[0, 0, 0] < -0.9 and x[0, -1, -1] > 0.9


def test_float_images_outside_the_unit_range_are_refused(tmp_path):
    Image.fromarray(np.full((8, 8), 3.0, np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"floating-point image with values outside \[0, 1\]"):
        read_image(tmp_path / "f.tif", 3)


def test_a_decompression_bomb_is_one_line_that_says_how_to_allow_it(tmp_path, monkeypatch, capsys):
    folder = save_pretrained(imgtrans.build("unet128", base_channels=4), tmp_path / "model")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setenv("IMGTRANS_MAX_IMAGE_PIXELS", "100")  # 1600 pixels is more than twice that
    assert main(["translate", str(folder), str(tmp_path / "big.png"), "--out", str(tmp_path / "t")]) == 2
    message = error_line(capsys)
    assert "larger than the 100 pixels imgtrans opens" in message and "IMGTRANS_MAX_IMAGE_PIXELS=N" in message
    monkeypatch.setenv("IMGTRANS_MAX_IMAGE_PIXELS", "10000")
    assert main(["translate", str(folder), str(tmp_path / "big.png"), "--out", str(tmp_path / "t")]) == 0


def test_the_decompression_bomb_limit_is_pillows_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGTRANS_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # as if the file were 15000x15000
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match="larger than the 1,000 pixels"):
        read_image(tmp_path / "big.png", 3)
    assert Image.MAX_IMAGE_PIXELS == 500  # the global setting is left as it was


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_damaged_image_is_found_before_the_first_step(tmp_path, data, workers, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    for p in data.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "3.png").write_bytes((data / "3.png").read_bytes()[:200])  # truncated
    argv = tiny_run_argv(folder, tmp_path / "run", "--max-steps", "2", "--workers", workers)
    assert main(argv) == 2
    message = error_line(capsys)
    assert "cannot read image" in message and "3.png" in message
    assert not (tmp_path / "run" / "log.jsonl").exists()  # before step 1


def test_an_error_in_a_loading_process_is_one_line(tmp_path, data, capsys):
    # A crop larger than the images is found only when an item is made, in a worker.
    argv = tiny_run_argv(data, tmp_path / "run", "--max-steps", "2", "--workers", "2")
    argv[argv.index("--load-size") + 1] = "none"  # no resize: 36x36 images, and a 48x48 crop
    argv[argv.index("--crop-size") + 1] = "48"
    assert main(argv) == 2
    message = error_line(capsys)
    assert "gives 36x36 images, smaller than the 48x48 crop" in message


# ---------------------------------------------------------------------------------------- shell
def test_a_closed_pipe_is_not_an_error(tmp_path):
    result = subprocess.run(f"{sys.executable} -m imgtrans models | head -1", shell=True, env=ENV,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.stdout.strip() and result.stderr == ""


def test_ctrl_c_says_so_once_whatever_the_loading_processes(tmp_path, data):
    argv = tiny_run_argv(data, tmp_path / "run", "--max-steps", "100000", "--workers", "2", "--log-every", "1")
    process = subprocess.Popen([sys.executable, "-m", "imgtrans", *argv], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "run" / "log.jsonl").exists():
        time.sleep(0.1)
    time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: to the whole process group, workers too
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert out.count("stopping after this step") == 1 and "KeyboardInterrupt" not in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["eval", "m", "--data", "d", "--batch-size", "0"], ["demo", "--steps", "-1"],
                                  ["train", "pix2pix-facades", "--workers", "-2"], ["translate", "m", "x", "--out", "o", "--nope"]])
def test_flags_argparse_refuses_are_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err and "--help" in err, err


def test_an_unknown_configuration_suggests_the_closest(capsys):
    assert main(["train", "pix2pix-facade", "--data", "."]) == 2
    assert "Did you mean 'pix2pix-facades'" in error_line(capsys)


def test_a_damaged_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "last.safetensors").write_bytes(b"\x00" * 100)
    assert main(["translate", str(tmp_path / "last.safetensors"), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "is not a readable checkpoint" in error_line(capsys)
