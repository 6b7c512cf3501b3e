"""Paired image datasets in the two layouts people have, with the paper's augmentation.

- **AB layout** (the pix2pix distribution, e.g. CMP Facades): each file holds image A on the
  left and image B on the right, side by side.
- **Folder layout**: ``root/A/`` and ``root/B/`` hold files with matching names (extensions may
  differ).

``direction="AtoB"`` translates A into B; ``"BtoA"`` the other way (facades labels -> photo is
``BtoA``). Training augmentation is the paper's random jitter and mirroring (section 6.2):
resize both images to ``load_size``, crop the same random ``crop_size`` window from both, and
flip both horizontally half of the time.

Files are read by [read_image][imgtrans.images.read_image]: upright (their EXIF orientation applied, as
viewers show them), in the model's channels, whatever their mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from imgtrans.images import IMAGE_EXTENSIONS, convert_channels, image_files, image_to_tensor, read_image
from imgtrans.registry import Direction, DirectionError, check_direction

MIN_HALF_ASPECT = 2 / 3
"""An AB file's halves may be at most 1.5 times taller than wide: a single square photo is not a pair."""


class BadImageError(ValueError):
    """An image of the dataset that cannot be read (missing, truncated, not an image); the message names it."""


def augmentation_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one example in one epoch: independent of workers and of resuming."""
    return np.random.default_rng([seed, epoch, index])


def crop_box(size: tuple[int, int], crop: int, train: bool, rng: np.random.Generator, source: str) -> tuple:
    """The ``crop x crop`` box of an image of ``size``: random in training (the jitter of section 6.2), else central.

    ``source`` begins the message for an image smaller than the crop (``"a.png gives"``). The box is
    drawn with two integers from ``rng``, left then top, as every dataset of imgtrans draws it.
    """
    w, h = size
    if w < crop or h < crop:
        raise ValueError(
            f"{source} {w}x{h} images, smaller than the {crop}x{crop} crop; lower the crop size (crop_size, "
            "--crop-size) or resize first (load_size, --load-size)"
        )
    if train:
        x, y = int(rng.integers(0, w - crop + 1)), int(rng.integers(0, h - crop + 1))
    else:
        x, y = (w - crop) // 2, (h - crop) // 2
    return x, y, x + crop, y + crop


def pair_shape_problem(width: int, height: int, check: bool = True) -> str | None:
    """Why a ``width x height`` file cannot be an AB pair (A and B side by side), in words; ``None`` if it can.

    One pixel wide cannot be cut in two; with ``check``, halves more than 1.5 times taller than wide
    (``MIN_HALF_ASPECT``) are a single photo rather than a pair. ``train`` and ``translate --split`` ask this.
    """
    if width < 2:
        return f"is {width} pixel(s) wide: an AB file holds A and B side by side"
    if check and (width // 2) < MIN_HALF_ASPECT * height:
        return (f"is {width}x{height}, so its halves would be {width // 2}x{height}: it does not look like two "
                "images side by side (the pix2pix AB layout, e.g. 512x256)")  # fmt: skip
    return None


class PairedImageDataset(Dataset):
    """Pairs of images for translation, in the AB or the A/B-folder layout.

    Args:
        root: a folder of AB files, or a folder holding ``A/`` and ``B/``.
        direction: ``"AtoB"`` or ``"BtoA"``.
        in_channels: channels of the input images (the model's ``in_channels``).
        out_channels: channels of the target images (the model's ``out_channels``).
        load_size: side both images are resized to before cropping (286 in the paper);
            ``None`` keeps the files' size.
        crop_size: side of the random crop (256 in the paper); ``None`` does not crop.
        train: random crop and mirroring when ``True``; when ``False``, a centre crop and no flip.
        flip: mirror horizontally half of the time (training only).
        seed: seed of the augmentation; with [set_epoch][imgtrans.data.paired.PairedImageDataset.set_epoch]
            every example's crop and flip are a function of ``(seed, epoch, index)``.
        check_pairs: refuse AB files whose halves would be more than 1.5 times taller than wide
            (a folder of single photos, say); ``False`` accepts any shape.
        skip_bad_images: when a file cannot be read (deleted, truncated or damaged after the
            start), use the next readable pair instead and say so in the item's ``skipped``
            (``""`` when nothing was skipped); by default a [BadImageError][imgtrans.data.paired.BadImageError].

    Items are dictionaries with ``input`` and ``target`` (``C x H x W`` tensors in [-1, 1]) and
    the file's ``name``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        direction: Direction = "AtoB",
        in_channels: int = 3,
        out_channels: int = 3,
        load_size: int | None = 286,
        crop_size: int | None = 256,
        train: bool = True,
        flip: bool = True,
        seed: int = 0,
        check_pairs: bool = True,
        skip_bad_images: bool = False,
    ) -> None:
        if direction is None:
            raise DirectionError("direction", None)
        check_direction(direction)
        if load_size is not None and crop_size is not None and crop_size > load_size:
            raise ValueError(f"crop_size ({crop_size}) cannot exceed load_size ({load_size})")
        self.root = Path(root)
        self.direction, self.in_channels, self.out_channels = direction, in_channels, out_channels
        self.load_size, self.crop_size, self.train, self.flip = load_size, crop_size, train, flip
        self.seed, self.epoch, self.check_pairs, self.skip_bad_images = seed, 0, check_pairs, skip_bad_images
        self.pairs = self._find_pairs()

    def _find_pairs(self) -> list[tuple[Path, Path | None]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"no dataset folder at {self.root}")
        a_dir, b_dir = self.root / "A", self.root / "B"
        if a_dir.is_dir() and b_dir.is_dir():
            a = {p.stem: p for p in image_files(a_dir)}
            b = {p.stem: p for p in image_files(b_dir)}
            unmatched = sorted(set(a) ^ set(b))
            if unmatched:
                raise ValueError(
                    f"{len(unmatched)} file(s) in {a_dir} and {b_dir} have no partner with the same name, "
                    f"e.g. {', '.join(unmatched[:5])}; every A/x.png needs a B/x.png (any image extension)"
                )
            pairs = [(a[k], b[k]) for k in sorted(a)]
        else:
            pairs = [(p, None) for p in image_files(self.root)]
        if not pairs:
            raise ValueError(
                f"no images in {self.root}: expected files with A and B side by side (the pix2pix AB layout), "
                f"or folders A/ and B/ with matching names ({', '.join(IMAGE_EXTENSIONS)})"
            )
        return pairs

    def _check_pair_shape(self, path: Path, w: int, h: int) -> None:
        if problem := pair_shape_problem(w, h, self.check_pairs):
            raise ValueError(
                f"{path} {problem}. Give a folder of AB pairs, or A/ and B/ folders; if these really are pairs, "
                "turn the check off (check_pairs=False, --no-check-pairs)"
            )

    def verify(self, progress: bool | None = None) -> list[str]:
        """Read every file once, in threads, so that a damaged one is reported before training starts.

        Raises the first problem [read_pair][imgtrans.data.paired.PairedImageDataset.read_pair]
        would raise, naming the file; with ``skip_bad_images``, returns the unreadable files' messages
        instead (those pairs will be skipped). ``progress``: a progress bar (by default when stderr
        is a terminal and there are more than 100 pairs).
        """
        from concurrent.futures import ThreadPoolExecutor

        def check(index: int) -> str | None:
            try:
                self.read_pair(index)
            except BadImageError as error:
                if not self.skip_bad_images:
                    raise
                return str(error)
            return None

        disable = len(self) <= 100 if progress is None else not progress
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            # Pillow releases the GIL while it decodes, so threads check files in parallel.
            found = list(tqdm(pool.map(check, range(len(self))), total=len(self), desc="checking images",
                              unit="image", disable=disable or None, leave=False))  # fmt: skip
        bad = [problem for problem in found if problem is not None]
        if len(bad) == len(self):
            raise BadImageError(f"none of the {len(self)} images in {self.root} can be read: {bad[0]}")
        return bad

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops and flips the items use."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def read_pair(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The (input, target) images of ``index`` at file resolution, in the model's channels.

        Raises:
            BadImageError: a file cannot be read (the message names it).
        """
        a_path, b_path = self.pairs[index]
        if b_path is None:  # AB layout: split the file down the middle
            ab = _read(a_path, 4 if 4 in (self.in_channels, self.out_channels) else 3)
            w, h = ab.size
            self._check_pair_shape(a_path, w, h)
            a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, 2 * (w // 2), h))
            source, target = (a, b) if self.direction == "AtoB" else (b, a)
            return convert_channels(source, self.in_channels), convert_channels(target, self.out_channels)
        source_path, target_path = (a_path, b_path) if self.direction == "AtoB" else (b_path, a_path)
        source, target = _read(source_path, self.in_channels), _read(target_path, self.out_channels)
        if source.size != target.size:
            raise ValueError(
                f"{source_path} is {source.size[0]}x{source.size[1]} but {target_path} is "
                f"{target.size[0]}x{target.size[1]}: the two images of a pair must have the same size"
            )
        return source, target

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not self.skip_bad_images:
            return self._item(index)
        skipped = []
        for offset in range(len(self)):  # the next readable pair stands in for an unreadable one
            try:
                return {**self._item((index + offset) % len(self)), "skipped": "\n".join(skipped)}
            except BadImageError as error:
                skipped.append(str(error))
        raise BadImageError(f"none of the {len(self)} images in {self.root} can be read now: {skipped[0]}")

    def _item(self, index: int) -> dict[str, torch.Tensor | str]:
        source, target = self.read_pair(index)
        rng = augmentation_rng(self.seed, self.epoch, index)
        if self.load_size is not None:
            size = (self.load_size, self.load_size)
            source, target = source.resize(size, Image.BICUBIC), target.resize(size, Image.BICUBIC)
        if self.crop_size is not None:
            box = crop_box(source.size, self.crop_size, self.train, rng, f"{self.pairs[index][0]} gives")
            source, target = source.crop(box), target.crop(box)
        source_t, target_t = image_to_tensor(source, self.in_channels), image_to_tensor(target, self.out_channels)
        if self.train and self.flip and rng.random() < 0.5:
            source_t, target_t = source_t.flip(-1), target_t.flip(-1)
        return {"input": source_t, "target": target_t, "name": self.pairs[index][0].name}


def _read(path: Path, channels: int) -> Image.Image:
    """[read_image][imgtrans.io.read_image], its refusals of the file (unreadable, too large...) as BadImageError."""
    if channels not in (1, 3, 4):
        return read_image(path, channels)  # the model's setting, not the file, is wrong: read_image says so
    try:
        return read_image(path, channels)
    except ValueError as error:
        raise BadImageError(str(error)) from None
