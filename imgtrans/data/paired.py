"""Paired image datasets in the two layouts people have, with the paper's augmentation.

- **AB layout** (the pix2pix distribution, e.g. CMP Facades): each file holds image A on the
  left and image B on the right, side by side.
- **Folder layout**: ``root/A/`` and ``root/B/`` hold files with matching names (extensions may
  differ).

``direction="AtoB"`` translates A into B; ``"BtoA"`` the other way (facades labels -> photo is
``BtoA``). Training augmentation is the paper's random jitter and mirroring (section 6.2):
resize both images to ``load_size``, crop the same random ``crop_size`` window from both, and
flip both horizontally half of the time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

Direction = Literal["AtoB", "BtoA"]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image(path: Path, channels: int) -> Image.Image:
    """Open ``path`` fully and convert it to 1 (L), 3 (RGB) or 4 (RGBA) channels."""
    if channels not in MODES:
        raise ValueError(f"images can have 1, 3 or 4 channels; the model asks for {channels}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(MODES[channels])
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"cannot read image {path}: {error}. Remove or replace the file (it may be truncated or not an image)"
        ) from None


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image as a ``C x H x W`` float tensor in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy()) / 127.5 - 1.0


def augmentation_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one example in one epoch: independent of workers and of resuming."""
    return np.random.default_rng([seed, epoch, index])


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
    ) -> None:
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be 'AtoB' or 'BtoA'; got {direction!r}")
        if load_size is not None and crop_size is not None and crop_size > load_size:
            raise ValueError(f"crop_size ({crop_size}) cannot exceed load_size ({load_size})")
        self.root = Path(root)
        self.direction, self.in_channels, self.out_channels = direction, in_channels, out_channels
        self.load_size, self.crop_size, self.train, self.flip = load_size, crop_size, train, flip
        self.seed, self.epoch = seed, 0
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

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops and flips the items use."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def read_pair(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The (input, target) images of ``index`` at file resolution, in the model's channels."""
        a_path, b_path = self.pairs[index]
        if b_path is None:  # AB layout: split the file down the middle
            ab = read_image(a_path, 4 if 4 in (self.in_channels, self.out_channels) else 3)
            w, h = ab.size
            if w < 2:
                raise ValueError(f"{a_path} is {w} pixel(s) wide: an AB file holds A and B side by side")
            a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, 2 * (w // 2), h))
            source, target = (a, b) if self.direction == "AtoB" else (b, a)
            return source.convert(MODES[self.in_channels]), target.convert(MODES[self.out_channels])
        source_path, target_path = (a_path, b_path) if self.direction == "AtoB" else (b_path, a_path)
        source, target = read_image(source_path, self.in_channels), read_image(target_path, self.out_channels)
        if source.size != target.size:
            raise ValueError(
                f"{source_path} is {source.size[0]}x{source.size[1]} but {target_path} is "
                f"{target.size[0]}x{target.size[1]}: the two images of a pair must have the same size"
            )
        return source, target

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        source, target = self.read_pair(index)
        rng = augmentation_rng(self.seed, self.epoch, index)
        if self.load_size is not None:
            size = (self.load_size, self.load_size)
            source, target = source.resize(size, Image.BICUBIC), target.resize(size, Image.BICUBIC)
        if self.crop_size is not None:
            w, h = source.size
            if w < self.crop_size or h < self.crop_size:
                raise ValueError(
                    f"{self.pairs[index][0]} gives {w}x{h} images, smaller than the {self.crop_size}x{self.crop_size} "
                    "crop; lower crop_size or set load_size to resize first"
                )
            if self.train:
                x, y = int(rng.integers(0, w - self.crop_size + 1)), int(rng.integers(0, h - self.crop_size + 1))
            else:
                x, y = (w - self.crop_size) // 2, (h - self.crop_size) // 2
            box = (x, y, x + self.crop_size, y + self.crop_size)
            source, target = source.crop(box), target.crop(box)
        source_t, target_t = to_tensor(source), to_tensor(target)
        if self.train and self.flip and rng.random() < 0.5:
            source_t, target_t = source_t.flip(-1), target_t.flip(-1)
        return {"input": source_t, "target": target_t, "name": self.pairs[index][0].name}
