"""``imgtrans translate``: translate image files or folders with a trained model, at any size.

A model trained on label maps (pix2pixHD with ``--label-nc``) reads label-map files instead, one-hot
encoded by the model's [LabelInput][imgtrans.data.labels.LabelInput], with ``--instances`` when it
reads instance maps; every label map is checked (its values, its instance map) before anything is written.

The inputs are the user's: every output name is planned and checked before the first is written.
``--out`` may not be an input's folder, no output replaces an input, an existing file is replaced
only with ``--overwrite``, and inputs that would share an output name are kept apart (mirrored
folders for inputs from different folders, the source's extension kept for ``a.png`` and ``a.jpg``).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from imgtrans.cli.common import CALIBRATION_IMAGES, MODEL_HELP, input_files, load_input, model_channels, warn_direction
from imgtrans.data.downloads import resolve_data
from imgtrans.data.labels import LabelInput, check_instances, pair_instances
from imgtrans.data.paired import pair_shape_problem
from imgtrans.deploy.translators import BACKENDS, Translator, load_translator
from imgtrans.devices import keep_freed_memory
from imgtrans.inference import translate_tiled
from imgtrans.images import CHANNEL_MODES, image_to_tensor, read_image, save_image, save_pixels
from imgtrans.images import image_size as image_size_of

IMAGE_BATCH, TILE_BATCH = 4, 2  # default --batch-size for whole images and for tiles
MIN_TILE = 64
"""The smallest --tile for any generator: below it, tiles are mostly overlap and padding (and 1 runs for ever)."""
PAIR_LIKE = (1.8, 2.2)
"""Widths of this many heights look like AB pairs (two squares side by side): translated whole, a warning."""
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "translate",
        help="translate images with a trained model",
        description="Translate images of any size (the generators are fully convolutional, paper 4.4). "
        "Images larger than --tile are processed in overlapping, blended tiles so memory stays bounded. "
        "Inputs are never replaced, existing outputs only with --overwrite.",
    )
    p.add_argument("model", help=MODEL_HELP + ", or an .onnx file written by imgtrans export")
    p.add_argument("inputs", nargs="+", help="image files or folders of images, or a downloaded dataset: NAME[/SPLIT]; "
                   "for a model trained on label maps (imgtrans train --label-nc), label-map files or folders")  # fmt: skip
    p.add_argument("--instances", metavar="INST.png|DIR", help="a model trained with imgtrans train --instance: the "
                   "instance map of the one label map, or a folder of instance maps named as the label maps")  # fmt: skip
    p.add_argument("--out", required=True, help="folder for the translated images (PNG), not an input's folder; inputs "
                   "of different folders that share a name go to subfolders named after their folders")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace output files that exist already (never an input)")
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"images per forward pass (default {IMAGE_BATCH}), or tiles for images larger than --tile "
        f"(default {TILE_BATCH}: each 1024-pixel tile of a U-Net 256 takes about 0.3 GB in float32)",
    )
    p.add_argument("--tile", type=int, default=1024, help="largest side translated in one pass (default 1024; at least "
                   f"the generator's padding multiple and {MIN_TILE})")  # fmt: skip
    p.add_argument("--overlap", type=int, default=128, help="overlap of neighbouring tiles, in pixels "
                   "(default 128; at most half of --tile)")  # fmt: skip
    p.add_argument(
        "--split",
        choices=["input", "left", "right"],
        help="the inputs are side-by-side (AB) pairs: translate their input half (by the model's direction, "
        "or --direction), or the left or right half",
    )
    p.add_argument("--no-check-pairs", dest="check_pairs", action="store_false",
                   help="with --split: accept files that do not look like two images side by side")  # fmt: skip
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="a CycleGAN's generator: AtoB (G_A) or BtoA (G_B); "
                   "with --split input, also which half is the input (default: the one the model records)")  # fmt: skip
    p.add_argument("--paper-test-mode", action="store_true", help="dropout on and batch statistics (paper 3.3)")
    p.add_argument("--compile", action="store_true", help="torch.compile with frozen weights (for many same-size images)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (torch backend; default auto)")
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
    """Refuse sizes and combinations that make no sense, naming the flag, before anything is loaded."""
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1; got {args.batch_size}")
    if args.tile < 1:
        raise ValueError(f"--tile must be a positive number of pixels; got {args.tile}")
    if not 0 <= args.overlap <= args.tile // 2:
        raise ValueError(f"--overlap must be at least 0 and at most half of --tile ({args.tile // 2} of {args.tile}), "
                         f"or tiles would step by a few pixels; got {args.overlap}")  # fmt: skip


def check_direction_flag(args: argparse.Namespace, translator: Translator) -> None:
    """``--direction`` picks a CycleGAN's generator; for a one-way model it only picks the half of AB pairs."""
    if args.direction is not None and args.split != "input" and not translator.two_way:
        raise ValueError("--direction picks the input half of AB pairs for this model (it translates one way): "
                         "use it with --split input")  # fmt: skip


def check_tile(args: argparse.Namespace, translator: Translator) -> None:
    """Refuse a --tile below what the generator can use: each pass is padded to its multiple anyway."""
    minimum = max(translator.multiple, MIN_TILE)
    if args.tile < minimum:
        raise ValueError(
            f"--tile must be at least {minimum} for this model; got {args.tile}: its generator pads every pass to a "
            f"multiple of {translator.multiple} pixels, and tiles below {MIN_TILE} are mostly overlap, so smaller "
            "tiles cost more than whole images"
        )


def make_translator(args: argparse.Namespace) -> Translator:
    """The translator the flags ask for, from [load_translator][imgtrans.deploy.translators.load_translator]."""
    calibration = None
    if args.calibration is not None:

        def calibration(model: torch.nn.Module) -> list[torch.Tensor]:
            split = input_half(args, args.direction or getattr(getattr(model, "config", None), "direction", None))
            files = input_files([args.calibration])[:CALIBRATION_IMAGES]
            return [load_input(f, model_channels(model)[0], split) for f in files]

    return load_translator(
        args.model, backend=args.backend, precision=args.precision, device=args.device,
        paper_test_mode=args.paper_test_mode, compile=args.compile, calibration=calibration, words="translate",
        direction=args.direction,
    )  # fmt: skip


def input_half(args: argparse.Namespace, direction: str | None) -> str | None:
    """The half of AB files to translate: ``--split input`` is the half the direction reads."""
    if args.split == "input":
        if direction is None:
            raise ValueError(
                "the model does not record which half of AB images is its input; give --direction AtoB or BtoA"
            )
        return "left" if direction == "AtoB" else "right"
    return args.split


def plan_outputs(inputs: list[Path], out: Path, overwrite: bool) -> list[tuple[Path, Path]]:
    """``(input file, output file)`` for every image named, checked before anything is written.

    Outputs are ``OUT/<stem>.png``. Inputs from different folders that share a stem go to
    ``OUT/<folder>/<stem>.png``, their folders relative to the folders' common parent; two files
    of one folder that share a stem (``a.png``, ``a.jpg``) keep their extension (``a.png.png``,
    ``a.jpg.png``). The same file named twice is translated once.
    """
    files: list[tuple[Path, Path]] = []  # (the folder it was found in, file)
    seen: set[Path] = set()
    for name in inputs:
        for file in input_files([str(name)]):
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(((name if name.is_dir() else file.parent).resolve(), file))
    folders = {folder for folder, _ in files}
    stems: dict[str, set[Path]] = {}
    for folder, file in files:
        stems.setdefault(file.stem.casefold(), set()).add(folder)
    mirrored = any(len(where) > 1 for where in stems.values())
    common = Path(os.path.commonpath([str(f) for f in folders])) if mirrored else None
    stems_out = [(folder.relative_to(common) if common else Path()) / file.stem for folder, file in files]
    counts = Counter(str(s).casefold() for s in stems_out)
    plan = [
        (file, out / (stem.parent / f"{file.name}.png" if counts[str(stem).casefold()] > 1 else f"{stem}.png"))
        for (_, file), stem in zip(files, stems_out)
    ]
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the translations")
    outputs = Counter(_key(o) for _, o in plan)
    if clash := next((o for _, o in plan if outputs[_key(o)] > 1), None):
        sources = [str(f) for f, o in plan if _key(o) == _key(clash)]
        raise ValueError(f"{' and '.join(sources)} would both be written to {clash}; rename one of them")
    if out.resolve() in folders:
        example = next(f for folder, f in files if folder == out.resolve())
        raise ValueError(f"--out {out} is the folder of the input {example}: the translations would replace or mix "
                         "with the inputs; choose another --out")  # fmt: skip
    for file, output in plan:
        if output.resolve() in seen:
            raise ValueError(f"the translation of {file} would replace the input {output}; choose another --out")
    existing = [o for _, o in plan if o.exists() or o.is_symlink()]
    if folder_clash := next((o for o in existing if o.is_dir()), None):
        raise ValueError(f"{folder_clash} is a folder, where the translation of an input would go; "
                         "choose another --out")  # fmt: skip
    if existing and not overwrite:
        raise FileExistsError(f"{len(existing)} of the {len(plan)} output file(s) exist already in {out} (e.g. "
                              f"{existing[0]}); add --overwrite to replace them, or choose another --out")  # fmt: skip
    return plan


def _key(path: Path) -> str:
    """A path as the file system may compare it (some ignore case)."""
    return str(path.resolve()).casefold()


def check_pairs(args: argparse.Namespace, sizes: dict[Path, tuple[int, int]]) -> None:
    """With --split, refuse files that are not AB pairs (as train does); without, warn about files that look so."""
    if args.split is None:
        pairs = [(f, w, h) for f, (w, h) in sizes.items() if PAIR_LIKE[0] * h <= w <= PAIR_LIKE[1] * h]
        if pairs:
            f, w, h = pairs[0]
            print(f"warning: {len(pairs)} of the {len(sizes)} input(s) (e.g. {f}, {w}x{h}) are twice as wide as high, "
                  "as AB pairs are, and are translated whole; add --split input to translate the model's input half",
                  file=sys.stderr)  # fmt: skip
        return
    for f, (w, h) in sizes.items():
        if problem := pair_shape_problem(w, h, args.check_pairs):
            cure = "" if w < 2 else "; if these really are pairs, add --no-check-pairs"
            raise ValueError(f"{f} {problem}. Drop --split to translate whole images{cure}")


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
    out = Path(args.out)
    translator = make_translator(args)
    check_direction_flag(args, translator)
    check_tile(args, translator)
    plan = plan_outputs([Path(resolve_data(name)) for name in args.inputs], out, args.overwrite)
    channels = translator.in_channels
    if translator.labels is None and channels not in CHANNEL_MODES:
        raise ValueError(f"the model expects {channels}-channel inputs; only 1, 3 or 4 channels can be read from images")
    warn_direction(args.direction, translator.direction)
    split = input_half(args, args.direction or translator.direction)
    sizes = {f: image_size_of(f) for f, _ in plan}  # headers only: every file is checked before any is written
    instances = plan_instances(args, translator.labels, [f for f, _ in plan])
    if translator.labels is None:
        check_pairs(args, sizes)
    tiled = {f for f, (w, h) in sizes.items() if max(h, w // 2 if split else w) > args.tile}
    if not tiled:
        # Large activations are reused rather than page-faulted in at every batch. Not when tiling:
        # memory kept after each tile's peak would add up, and bounded memory matters more there.
        keep_freed_memory()
    if args.paper_test_mode and tiled:
        raise ValueError(
            f"{sorted(tiled)[0]} is larger than --tile {args.tile}, and --paper-test-mode normalises each image with "
            "its own statistics, which tiles of it cannot reproduce: raise --tile to its largest side (memory "
            "permitting) or drop --paper-test-mode"
        )
    written = write_translations(args, translator, plan, tiled, split, instances)
    mode = "paper test mode" if args.paper_test_mode else "eval mode"
    print(f"translated {written} image(s) into {out} ({translator.describe()}, {mode})")
    apart = [(f, o) for f, o in plan if o != out / f"{f.stem}.png"]
    if apart:
        more = f" and {len(apart) - 1} more" if len(apart) > 1 else ""
        print(f"inputs that share a name were kept apart: {apart[0][0]} -> {apart[0][1]}{more}")
    return 0


def plan_instances(args: argparse.Namespace, labels: LabelInput | None, files: list[Path]) -> dict[Path, Path | None]:
    """The instance map of each label map (``None`` without); every label map checked, for a model of label maps.

    Each label map is read once here, so that a value beyond ``label_nc``, a colour image or a missing
    or mismatched instance map is refused before the first translation is written.
    """
    given = args.instances is not None
    if labels is None:
        check_instances(None, given, "", "--instances")
        return {}
    if args.split is not None:
        raise ValueError("label maps are read whole, not as halves of AB pairs: drop --split")
    check_instances(labels, given, files[0] if len(files) == 1 else "each label map", "--instances")
    paired = dict(zip(files, pair_instances(files, Path(args.instances) if given else None)))
    for label_file, instance_file in paired.items():
        labels.encode(label_file, instance_file, option="--instances")
    return paired


def read_input(translator: Translator, f: Path, split: str | None, instances: dict[Path, Path | None]) -> torch.Tensor:
    """The generator's input for the file ``f``: its label map one-hot encoded, or its image (or half) in [-1, 1]."""
    if translator.labels is not None:
        return translator.labels.encode(f, instances.get(f), option="--instances")
    return load_input(f, translator.in_channels, split)


def write_translations(
    args: argparse.Namespace, translator: Translator, plan: list[tuple[Path, Path]], tiled: set[Path],
    split: str | None, instances: dict[Path, Path | None] | None = None,
) -> int:
    """Translate and save every planned image, one batch of same-sized images in memory at a time; returns the count."""
    written, batch, instances = 0, [], instances or {}

    def save(function, image: torch.Tensor, output: Path) -> None:
        nonlocal written
        try:
            function(image, output)  # atomic: a full disk leaves the earlier file, if any, whole
        except OSError as error:
            full = error.errno in DISK_ERRORS
            what = "the disk is full" if full else f"writing failed ({error.strerror or error})"
            then = "Free space" if full else "Fix that"
            raise OSError(
                f"{what}: wrote {written} of {len(plan)} translation(s) into {args.out}; {output} was not written and "
                f"no earlier file was replaced by a partial one; the inputs are untouched. {then} and run again "
                "(with --overwrite to replace those written)"
            ) from None
        written += 1

    def flush() -> None:
        if batch:
            for (_, output, _), y in zip(batch, translator(torch.cat([x for _, _, x in batch]))):
                save(save_image, y, output)
            batch.clear()

    for f, output in plan:
        if f in tiled:
            # Pixels in and out as uint8; only the tile batch is in floats (label maps: their one-hot input).
            if translator.labels is not None:
                pixels = read_input(translator, f, split, instances)
            else:
                pixels = load_pixels(f, translator.in_channels, split)
            tiles = args.batch_size or TILE_BATCH
            result = translate_tiled(translator, pixels, args.tile, args.overlap, tiles, dtype=torch.uint8)
            del pixels
            save(save_pixels, result[0], output)
            continue
        x = read_input(translator, f, split, instances)
        if batch and (batch[0][2].shape != x.shape or len(batch) == (args.batch_size or IMAGE_BATCH)):
            flush()
        batch.append((f, output, x))
    flush()
    return written
