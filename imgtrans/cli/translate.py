"""``imgtrans translate``: translate image files or folders with a trained model, at any size."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from imgtrans.cli.common import MODEL_HELP, count, input_files, load_model, model_channels, model_direction
from imgtrans.inference import compile_for_inference, translate, translate_tiled
from imgtrans.datasets import resolve_data
from imgtrans.io import image_to_tensor, read_image, save_image


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "translate",
        help="translate images with a trained model",
        description="Translate images of any size (the generators are fully convolutional, paper 4.4). "
        "Images larger than --tile are processed in overlapping, blended tiles so memory stays bounded.",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("inputs", nargs="+", help="image files or folders of images, or a downloaded dataset: NAME[/SPLIT]")
    p.add_argument("--out", required=True, help="folder for the translated images (PNG)")
    p.add_argument("--batch-size", type=count(1), default=4, help="images (or tiles) per forward pass")
    p.add_argument("--tile", type=count(16), default=1024, help="largest side translated in one pass")
    p.add_argument("--overlap", type=count(0), default=128, help="overlap of neighbouring tiles, in pixels (< --tile)")
    p.add_argument(
        "--split",
        choices=["input", "left", "right"],
        help="the inputs are side-by-side (AB) pairs: translate their input half (by the model's direction, "
        "or --direction), or the left or right half",
    )
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="with --split input: which half is the input")
    p.add_argument("--paper-test-mode", action="store_true", help="dropout on and batch statistics (paper 3.3)")
    p.add_argument("--compile", action="store_true", help="torch.compile with frozen weights (for many same-size images)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(run=run)


def load_input(path: Path, channels: int, split: str | None) -> torch.Tensor:
    """One image as a ``1 x C x H x W`` tensor in [-1, 1], optionally one half of an AB file."""
    image = read_image(path, channels)
    if split is not None:
        w, h = image.size
        image = image.crop((0, 0, w // 2, h) if split == "left" else (w // 2, 0, 2 * (w // 2), h))
    return image_to_tensor(image, channels).unsqueeze(0)


def run(args: argparse.Namespace) -> int:
    model, device = load_model(args.model, args.device)
    channels = model_channels(model)[0]
    split = args.split
    if split == "input":
        split = "left" if model_direction(model, args.direction) == "AtoB" else "right"
    elif args.direction is not None:
        raise ValueError("--direction picks the input half of AB pairs: use it with --split input")
    files = input_files([str(resolve_data(name)) for name in args.inputs])
    writer = OutputFolder(Path(args.out))

    if args.compile and args.paper_test_mode:
        raise ValueError("--compile folds BatchNorm into the weights, which the paper's test mode cannot use; drop one")
    compiled = compile_for_inference(model) if args.compile else None

    def fn(x: torch.Tensor) -> torch.Tensor:
        if compiled is not None:
            return compiled(x.to(device)).cpu()
        return translate(model, x.to(device), paper_test_mode=args.paper_test_mode).cpu()

    batch: list[tuple[Path, torch.Tensor]] = []

    def flush() -> None:
        if batch:
            for (f, _), y in zip(batch, fn(torch.cat([x for _, x in batch]))):
                writer.save(y, f)
            batch.clear()

    for f in files:  # one batch of same-sized images in memory at a time
        x = load_input(f, channels, split)
        if max(x.shape[-2:]) > args.tile:
            writer.save(translate_tiled(fn, x, args.tile, args.overlap, args.batch_size)[0], f)
            continue
        if batch and (batch[0][1].shape != x.shape or len(batch) == args.batch_size):
            flush()
        batch.append((f, x))
    flush()
    print(f"translated {writer.count} image(s) into {writer.folder}")
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
        name, n = f"{source.stem}.png", 1
        while name in self.names:
            n += 1
            name = f"{source.stem}-{n}.png"
        self.names.add(name)
        save_image(image, self.folder / name)
