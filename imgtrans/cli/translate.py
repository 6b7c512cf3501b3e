"""``imgtrans translate``: translate image files or folders with a trained model, at any size."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import torch

from imgtrans.cli.common import CALIBRATION_IMAGES, MODEL_HELP, input_files, load_input, load_model, model_channels, model_direction
from imgtrans.data.downloads import resolve_data
from imgtrans.store.factory import load
from imgtrans.inference import translate_tiled
from imgtrans.io import CHANNEL_MODES, image_to_tensor, read_image, save_image, save_pixels
from imgtrans.io import image_size as image_size_of
from imgtrans.deploy.translators import (
    BACKENDS,
    OnnxTranslator,
    TorchTranslator,
    Translator,
    check_precision,
    keep_freed_memory,
    onnx_translator,
)

IMAGE_BATCH, TILE_BATCH = 4, 2  # default --batch-size for whole images and for tiles


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "translate",
        help="translate images with a trained model",
        description="Translate images of any size (the generators are fully convolutional, paper 4.4). "
        "Images larger than --tile are processed in overlapping, blended tiles so memory stays bounded.",
    )
    p.add_argument("model", help=MODEL_HELP + ", or an .onnx file written by imgtrans export")
    p.add_argument("inputs", nargs="+", help="image files or folders of images, or a downloaded dataset: NAME[/SPLIT]")
    p.add_argument("--out", required=True, help="folder for the translated images (PNG)")
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"images per forward pass (default {IMAGE_BATCH}), or tiles for images larger than --tile "
        f"(default {TILE_BATCH}: each 1024-pixel tile of a U-Net 256 takes about 0.3 GB in float32)",
    )
    p.add_argument("--tile", type=int, default=1024, help="largest side translated in one pass")
    p.add_argument("--overlap", type=int, default=128, help="overlap of neighbouring tiles, in pixels (< --tile)")
    p.add_argument(
        "--split",
        choices=["input", "left", "right"],
        help="the inputs are side-by-side (AB) pairs: translate their input half (by the model's direction, "
        "or --direction), or the left or right half",
    )
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="with --split input: which half is the input")
    p.add_argument("--paper-test-mode", action="store_true", help="dropout on and batch statistics (paper 3.3)")
    p.add_argument("--compile", action="store_true", help="torch.compile with frozen weights (for many same-size images)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (torch backend)")
    p.add_argument("--backend", choices=BACKENDS, default="torch", help="torch (default) or onnxruntime (CPU)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "int8"],
        help="fp32 (default); bf16 on torch where the device computes it natively; int8 on onnxruntime "
        "(needs --calibration). See docs/performance.md for what each does to the output",
    )
    p.add_argument("--calibration", help=f"int8: folder of real input images (the first {CALIBRATION_IMAGES} are used)")
    p.set_defaults(run=run)


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse sizes that make no sense, naming the flag."""
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1; got {args.batch_size}")
    if args.tile < 1:
        raise ValueError(f"--tile must be a positive number of pixels; got {args.tile}")
    if not 0 <= args.overlap < args.tile:
        raise ValueError(f"--overlap must be at least 0 and below --tile ({args.tile}); got {args.overlap}")
    if args.calibration is not None and args.precision != "int8":
        raise ValueError("--calibration is for --precision int8; drop it or add --precision int8")


def make_translator(args: argparse.Namespace) -> Translator:
    """The translator the flags ask for (see [imgtrans.deploy.translators][])."""
    if str(args.model).endswith(".onnx"):
        if args.backend != "onnxruntime":
            raise ValueError(f"{args.model} is an ONNX file: add --backend onnxruntime")
        if args.paper_test_mode or args.compile:
            raise ValueError("ONNX files run in eval mode on onnxruntime: drop --paper-test-mode and --compile")
        if not Path(args.model).is_file():
            raise FileNotFoundError(f"no such ONNX file: {args.model}")
        translator = OnnxTranslator(args.model)
        if args.precision not in (None, translator.precision):
            raise ValueError(
                f"{args.model} holds a {translator.precision} model; for {args.precision} export another with "
                f"imgtrans export MODEL --out FILE --precision {args.precision}"
            )
        return translator
    precision = args.precision or "fp32"
    check_precision(args.backend, precision)
    if args.backend == "torch":
        model, device = load_model(args.model, args.device)
        args.split = _split(args, model)
        return TorchTranslator(model, precision, device, paper_test_mode=args.paper_test_mode, compile=args.compile)
    if args.paper_test_mode or args.compile:
        raise ValueError(
            "--backend onnxruntime runs eval mode, compiled by onnxruntime itself: drop --paper-test-mode and --compile"
        )
    model = load(args.model)
    args.split = _split(args, model)
    calibration = None
    if precision == "int8":
        if args.calibration is None:
            raise ValueError("--precision int8 needs --calibration DIR: a folder of real input images to set its ranges")
        channels = model_channels(model)[0]
        files = input_files([args.calibration])[:CALIBRATION_IMAGES]
        calibration = [load_input(f, channels, args.split) for f in files]
    return onnx_translator(model, precision, calibration=calibration)


def _split(args: argparse.Namespace, model: torch.nn.Module) -> str | None:
    """The half of AB files to translate: ``--split input`` follows the model's direction (or ``--direction``)."""
    if args.split == "input":
        return "left" if model_direction(model, args.direction) == "AtoB" else "right"
    if args.direction is not None:
        raise ValueError("--direction picks the input half of AB pairs: use it with --split input")
    return args.split


def image_size(path: Path, split: str | None) -> tuple[int, int]:
    """``(height, width)`` of the image (or its half) at ``path``, read from its header only."""
    w, h = image_size_of(path)
    return h, w // 2 if split else w


def load_pixels(path: Path, channels: int, split: str | None) -> torch.Tensor:
    """One image as ``1 x C x H x W`` uint8 pixels (a quarter of the memory of floats), optionally one half."""
    image = read_image(path, channels)
    if split is not None:
        w, h = image.size
        image = image.crop((0, 0, w // 2, h) if split == "left" else (w // 2, 0, 2 * (w // 2), h))
    if image.mode == "F":  # a deep image, in [0, 1]: to the 8-bit pixels it shows
        return ((image_to_tensor(image, channels) + 1) * 127.5).round().to(torch.uint8).unsqueeze(0)
    array = np.array(image)  # one writable copy; the PIL image is then freed
    del image
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    translator = make_translator(args)
    channels = translator.in_channels
    if channels not in CHANNEL_MODES:
        raise ValueError(f"the model expects {channels}-channel inputs; only 1, 3 or 4 channels can be read from images")
    files = input_files([str(resolve_data(name)) for name in args.inputs])
    tiled = [f for f in files if max(image_size(f, args.split)) > args.tile]
    if not tiled:
        # Large activations are reused rather than page-faulted in at every batch. Not when tiling:
        # memory kept after each tile's peak would add up, and bounded memory matters more there.
        keep_freed_memory()
    if args.paper_test_mode and tiled:
        raise ValueError(
            f"{tiled[0]} is larger than --tile {args.tile}, and --paper-test-mode normalises each image with its own "
            "statistics, which tiles of it cannot reproduce: raise --tile to its largest side (memory permitting) "
            "or drop --paper-test-mode"
        )
    writer = OutputFolder(Path(args.out))
    batch: list[tuple[Path, torch.Tensor]] = []

    def flush() -> None:
        if batch:
            for (f, _), y in zip(batch, translator(torch.cat([x for _, x in batch]))):
                writer.save(y, f)
            batch.clear()

    tiled_set = set(tiled)
    for f in files:  # one batch of same-sized images in memory at a time
        if f in tiled_set:
            # Pixels in and out as uint8; only the tile batch is in floats.
            pixels = load_pixels(f, channels, args.split)
            tiles = args.batch_size or TILE_BATCH
            out = translate_tiled(translator, pixels, args.tile, args.overlap, tiles, dtype=torch.uint8)
            del pixels
            writer.save_pixels(out[0], f)
            continue
        x = load_input(f, channels, args.split)
        if batch and (batch[0][1].shape != x.shape or len(batch) == (args.batch_size or IMAGE_BATCH)):
            flush()
        batch.append((f, x))
    flush()
    mode = "paper test mode" if args.paper_test_mode else "eval mode"
    print(f"translated {writer.count} image(s) into {writer.folder} ({translator.describe()}, {mode})")
    return 0


class OutputFolder:
    """Saves translations as PNG named after their source, never overwriting one from this run."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.names = folder, set()

    @property
    def count(self) -> int:
        """Images saved so far."""
        return len(self.names)

    def save(self, image: torch.Tensor, source: Path) -> None:
        """Save ``image`` as ``<source stem>.png`` (``-2``, ``-3``... when the stem repeats)."""
        save_image(image, self._name(source))

    def save_pixels(self, pixels: torch.Tensor, source: Path) -> None:
        """Save ``C x H x W`` uint8 pixels as `save` saves an image."""
        save_pixels(pixels, self._name(source))

    def _name(self, source: Path) -> Path:
        name, n = f"{source.stem}.png", 1
        while name in self.names:
            n += 1
            name = f"{source.stem}-{n}.png"
        self.names.add(name)
        return self.folder / name
