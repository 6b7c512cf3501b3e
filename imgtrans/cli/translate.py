"""``imgtrans translate``: translate image files or folders with a trained model, at any size."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imgtrans.data.paired import IMAGE_EXTENSIONS, MODES, image_files, read_image, to_tensor
from imgtrans.inference import generator_of, translate_tiled
from imgtrans.loading import load_model
from imgtrans.runtime import (
    BACKENDS,
    OnnxTranslator,
    TorchTranslator,
    Translator,
    check_precision,
    keep_freed_memory,
    onnx_translator,
)
from imgtrans.train.samples import save_image
from imgtrans.train.trainer import resolve_device

CALIBRATION_IMAGES = 32  # first images (sorted) of --calibration used for int8 ranges
IMAGE_BATCH, TILE_BATCH = 4, 2  # default --batch-size for whole images and for tiles


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "translate",
        help="translate images with a trained model",
        description="Translate images of any size (the generators are fully convolutional, paper 4.4). "
        "Images larger than --tile are processed in overlapping, blended tiles so memory stays bounded.",
    )
    p.add_argument("model", help="zoo name, saved model folder, run folder, checkpoint file, or .onnx file")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--out", required=True, help="folder for the translated images (PNG)")
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"images per forward pass (default {IMAGE_BATCH}), or tiles for images larger than --tile "
        f"(default {TILE_BATCH}: each 1024-pixel tile of a U-Net 256 takes about 0.3 GB in float32)",
    )
    p.add_argument("--tile", type=int, default=1024, help="largest side translated in one pass")
    p.add_argument("--overlap", type=int, default=128, help="overlap of neighbouring tiles, in pixels")
    p.add_argument("--split", choices=["left", "right"], help="use one half of side-by-side (AB) images")
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


def input_files(inputs: list[str]) -> list[Path]:
    """Every image named, folders expanded; a missing path or an empty folder is an error."""
    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return files


def load_input(path: Path, channels: int, split: str | None) -> torch.Tensor:
    """One image as a ``1 x C x H x W`` tensor in [-1, 1], optionally one half of an AB file."""
    image = read_image(path, channels)
    if split is not None:
        w, h = image.size
        image = image.crop((0, 0, w // 2, h) if split == "left" else (w // 2, 0, 2 * (w // 2), h))
    return to_tensor(image).unsqueeze(0)


def input_channels(model: torch.nn.Module) -> int:
    """The channels the model's generator expects."""
    channels = getattr(generator_of(model), "in_channels", 3)
    if channels not in MODES:
        raise ValueError(f"the model expects {channels}-channel inputs; only 1, 3 or 4 channels can be read from images")
    return channels


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
    """The translator the flags ask for (see [imgtrans.runtime][])."""
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
        device = resolve_device(args.device)
        model = load_model(args.model, device=device)
        return TorchTranslator(model, precision, device, paper_test_mode=args.paper_test_mode, compile=args.compile)
    if args.paper_test_mode or args.compile:
        raise ValueError(
            "--backend onnxruntime runs eval mode, compiled by onnxruntime itself: drop --paper-test-mode and --compile"
        )
    model = load_model(args.model)
    calibration = None
    if precision == "int8":
        if args.calibration is None:
            raise ValueError("--precision int8 needs --calibration DIR: a folder of real input images to set its ranges")
        channels = input_channels(model)
        files = input_files([args.calibration])[:CALIBRATION_IMAGES]
        calibration = [load_input(f, channels, args.split) for f in files]
    return onnx_translator(model, precision, calibration=calibration)


def image_size(path: Path, split: str | None) -> tuple[int, int]:
    """``(height, width)`` of the image (or its half) at ``path``, read from its header only."""
    try:
        with Image.open(path) as image:
            w, h = image.size
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    return h, w // 2 if split else w


def load_pixels(path: Path, channels: int, split: str | None) -> torch.Tensor:
    """One image as ``1 x C x H x W`` uint8 pixels (a quarter of the memory of floats), optionally one half."""
    image = read_image(path, channels)
    if split is not None:
        w, h = image.size
        image = image.crop((0, 0, w // 2, h) if split == "left" else (w // 2, 0, 2 * (w // 2), h))
    array = np.array(image)  # one writable copy; the PIL image is then freed
    del image
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    translator = make_translator(args)
    channels = translator.in_channels
    if channels not in MODES:
        raise ValueError(f"the model expects {channels}-channel inputs; only 1, 3 or 4 channels can be read from images")
    files = input_files(args.inputs)
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
        path = self._name(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        array = pixels.permute(1, 2, 0).numpy()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else np.ascontiguousarray(array)).save(path)

    def _name(self, source: Path) -> Path:
        name, n = f"{source.stem}.png", 1
        while name in self.names:
            n += 1
            name = f"{source.stem}-{n}.png"
        self.names.add(name)
        return self.folder / name
