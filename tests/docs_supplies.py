"""What the pages' commands name, made small: the data, runs and files tests/test_docs_commands.py supplies.

Tiny synthetic facades (``SyntheticFacades``) as AB files or as CycleGAN's unpaired ``trainA/`` and
``trainB/`` folders, Cityscapes-style label, instance and image maps as pix2pixHD reads them, two-step
runs of pix2pix, CycleGAN and pix2pixHD, and the options that shrink a training command to them.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import SHARED, TINY_MODEL

FAMILY = Path(__file__).resolve().parent / "fixtures" / "family"

TINY = json.dumps(TINY_MODEL)
TRAIN_SHORTER = ["--max-steps", "2", "--model-args", TINY, "--load-size", "36", "--crop-size", "32", "--workers", "0"]
# CycleGAN: both ResNet generators 8 filters wide with 2 residual blocks (resnet9 takes base_channels and
# n_blocks), both 70x70 PatchGANs 8 wide (patchgan70 takes base_channels).
TINY_CYCLEGAN = {"generator_args": {"base_channels": 8, "n_blocks": 2}, "discriminator_args": {"base_channels": 8}}
CYCLEGAN_SHORTER = ["--max-steps", "2", "--model-args", json.dumps(TINY_CYCLEGAN), "--load-size", "36",
                    "--crop-size", "32", "--workers", "0"]  # fmt: skip
# pix2pixHD: a global generator 8 wide with 2 downsamplings and one residual block, discriminators of 2 layers
# 8 wide; VGG-19 with random weights (its ImageNet weights are a 548 MB download; the term is still computed).
# The local enhancer is 4 wide, so that its global part (twice as wide, the same downsamplings and blocks) is
# the supplied runs/hd-global's generator. Label maps are supplied at 64x32 (enhancer: 128x64), which both
# take uncropped, as the page's --load-size none --crop-size none says.
HD_DISCRIMINATOR = {"base_channels": 8, "n_layers": 2}
TINY_HD = {"generator_args": {"base_channels": 8, "n_downsampling": 2, "n_blocks": 1},
           "discriminator_args": HD_DISCRIMINATOR, "pretrained_vgg": False}  # fmt: skip
TINY_HD_LOCAL = {"generator_args": {"base_channels": 4, "n_downsampling": 2, "n_blocks": 1, "n_blocks_local": 1},
                 "discriminator_args": HD_DISCRIMINATOR, "pretrained_vgg": False}  # fmt: skip
HD_SHORTER = ["--max-steps", "2", "--model-args", json.dumps(TINY_HD), "--workers", "0"]
HD_LOCAL_SHORTER = ["--max-steps", "2", "--model-args", json.dumps(TINY_HD_LOCAL), "--workers", "0"]


# ------------------------------------------------------------------------------ data and runs
def ab_folder(path: Path, n: int = 3, seed: int = 0) -> None:
    from imgtrans.data import SyntheticFacades, write_ab_folder

    write_ab_folder(SyntheticFacades(n, 36, seed=seed), path)


def unpaired_folder(path: Path, n: int = 6, seed: int = 0) -> None:
    """CycleGAN's layout: ``trainA/``, ``trainB/`` (n / 2 images each), ``testA/``, ``testB/`` (one each)."""
    from imgtrans.data import SyntheticFacades, write_unpaired_folder

    write_unpaired_folder(SyntheticFacades(n, 36, seed=seed), path)
    write_unpaired_folder(SyntheticFacades(2, 36, seed=seed + 1), path, split="test")


def label_folder(path: Path, n: int = 3, size: tuple[int, int] = (64, 32), label_nc: int = 35) -> None:
    """Cityscapes-style maps, as imgtrans.data.labels reads them: ``label/`` (8-bit ids below ``label_nc``),
    ``inst/`` (16-bit instance ids, class * 1000 + instance, as Cityscapes'), ``img/`` (photos), same names."""
    import numpy as np
    from PIL import Image

    width, height = size
    rng = np.random.default_rng(n * width)
    for sub in ("label", "img", "inst"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        labels = rng.integers(0, label_nc, (4, 8)).repeat(height // 4, 0).repeat(width // 8, 1).astype(np.uint8)
        instances = labels.astype(np.uint16) * 1000 + (np.arange(width)[None, :] >= width // 2)
        photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(labels, "L").save(path / "label" / f"city_{i}.png")
        Image.fromarray(instances).save(path / "inst" / f"city_{i}.png")
        Image.fromarray(photo, "RGB").save(path / "img" / f"city_{i}.png")


@functools.lru_cache(maxsize=None)
def hf_home(store: Path) -> Path:
    """``$HF_HOME`` where it is by default, ``~/.cache/huggingface`` (``$HOME`` is ``store/home``), with a tiny
    facades (train 3, val 2, test 2) and a tiny horse2zebra (trainA/B 3 each, testA/B 1) "downloaded", as
    ``imgtrans data download`` would leave them."""
    from imgtrans.data.downloads import MARKER

    home = store / "home" / ".cache" / "huggingface"
    datasets = home / "imgtrans" / "datasets"
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        ab_folder(datasets / "facades" / split, n, seed=len(split))
    unpaired_folder(datasets / "horse2zebra")
    for name in ("facades", "horse2zebra"):
        (datasets / name / MARKER).write_text(json.dumps({"name": name, "test": "a tiny synthetic stand-in"}))
    return home


def train_tiny(store: Path, model: str, data: Path, run: str, *options: str) -> Path:
    """``imgtrans train MODEL --data DATA --out STORE/RUN OPTIONS`` without sample grids; the run's folder."""
    from imgtrans.cli import main

    out = store / run
    assert main(["train", model, "--data", str(data), "--out", str(out), *options, "--sample-every", "0"]) == 0
    return out


@functools.lru_cache(maxsize=None)
def tiny_run(store: Path) -> Path:
    ab_folder(store / "run-data")
    return train_tiny(store, "pix2pix-facades", store / "run-data", "run", *TRAIN_SHORTER)


@functools.lru_cache(maxsize=None)
def int8_model(store: Path) -> Path:
    from imgtrans.cli import main

    out = store / "facades.int8.onnx"
    argv = ["export", str(tiny_run(store)), "--out", str(out), "--precision", "int8",
            "--calibration", str(store / "run-data"), "--split", "input"]  # fmt: skip
    assert main(argv) == 0
    return out


@functools.lru_cache(maxsize=None)
def tiny_cyclegan_run(store: Path) -> Path:
    unpaired_folder(store / "unpaired-data")
    return train_tiny(store, "cyclegan", store / "unpaired-data", "cyclegan-run", *CYCLEGAN_SHORTER)


@functools.lru_cache(maxsize=None)
def tiny_hd_run(store: Path) -> Path:
    """docs/pix2pixhd.md's first phase, as its command trains it here (HD_SHORTER): the local enhancer's start."""
    label_folder(store / "label-data")
    return train_tiny(store, "pix2pixhd", store / "label-data", "hd-run", "--label-nc", "35", "--instance",
                      "--direction", "AtoB", "--load-size", "none", "--crop-size", "none", *HD_SHORTER)  # fmt: skip


def image_file(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (120, 30, 200)).save(path)


def copy_run(store: Path, path: Path) -> None:
    shutil.copytree(tiny_run(store), path)


def reference_checkpoint(store: Path, path: Path) -> None:
    source = SHARED / "reference" / "unet256-f8.pth"
    if not source.is_file():
        pytest.skip(f"{source} is absent: the reference checkpoint of ../shared stands in for latest_net_G.pth")
    shutil.copy(source, path)


def family_checkpoint(fixture: str, path: Path) -> None:
    """A reference ``.pth`` of a pix2pixHD network: a golden fixture's ``reference.`` tensors, saved as torch does."""
    from safetensors.torch import load_file

    state = {k.removeprefix("reference."): v for k, v in load_file(FAMILY / f"{fixture}.safetensors").items()
             if k.startswith("reference.")}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
