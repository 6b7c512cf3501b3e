r"""Semantic label maps as generator inputs, as pix2pixHD encodes them (Wang et al., CVPR 2018, section 3.3).

A label map holds one integer class per pixel. The generator sees it one-hot encoded, ``label_nc``
channels of 0 and 1 (``encode_input`` in NVIDIA's ``pix2pixHD_model.py``: ``scatter_(1, label, 1.0)``),
and, for datasets with instance maps (Cityscapes), one more channel: the instance-boundary map
$E$, 1 where a pixel's instance id differs from one of its 4 neighbours (``get_edges``), so that
objects of one class stay apart. The discriminator sees the same channels beside the image.

Folders, as NVIDIA's ``AlignedDataset`` reads them: ``label/``, ``img/`` and (with instance maps)
``inst/`` with files of the same names, or its own ``train_label/``, ``train_img/``, ``train_inst/``.
Label and instance files are single-band PNGs (8-bit, palette or 32-bit integer) whose values are
the ids; they are resized with nearest-neighbour sampling, images bicubically, and all three get
the same crop and flip (section 6.2 of pix2pix, as [PairedImageDataset][imgtrans.data.paired.PairedImageDataset]).

A trained model records what it reads ([ModelConfig][imgtrans.store.config.ModelConfig]'s ``label_nc``
and ``instance``); [label_input][imgtrans.data.labels.label_input] reads that record, and its
[LabelInput][imgtrans.data.labels.LabelInput] turns files into the generator's input, for
``imgtrans translate``, ``imgtrans eval``, the app and [translate_image][imgtrans.inference.translate_image] alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from imgtrans.data.paired import augmentation_rng, crop_box
from imgtrans.images import image_files, image_to_tensor, read_image

LAYOUTS: tuple[tuple[str, str, str], ...] = (("label", "img", "inst"), ("train_label", "train_img", "train_inst"))
"""Folder names of label maps, images and instance maps: imgtrans's, then pix2pixHD's training split."""


def one_hot(labels: torch.Tensor, label_nc: int) -> torch.Tensor:
    """``N x 1 x H x W`` (or ``1 x H x W``) integer labels as ``label_nc`` channels of 0 and 1."""
    if label_nc < 1:
        raise ValueError(f"label_nc must be at least 1 to one-hot encode label maps; got {label_nc}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= label_nc):
        raise ValueError(
            f"label maps hold ids from {int(labels.min())} to {int(labels.max())}, but label_nc is {label_nc}: "
            f"ids must be in 0 .. label_nc - 1 (give the dataset's number of classes, --label-nc)"
        )
    shape = (*labels.shape[:-3], label_nc, *labels.shape[-2:])
    return torch.zeros(shape).scatter_(-3, labels, 1.0)


def instance_edges(instances: torch.Tensor) -> torch.Tensor:
    """pix2pixHD's ``get_edges``: 1 on both sides of every change of instance id, horizontal or vertical."""
    t = instances
    edge = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    horizontal = t[..., :, 1:] != t[..., :, :-1]
    vertical = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= horizontal
    edge[..., :, :-1] |= horizontal
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    return edge.float()


def encode_labels(labels: torch.Tensor, label_nc: int, instances: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's input: one-hot ``labels``, then the boundary map of ``instances`` when given."""
    encoded = one_hot(labels, label_nc)
    if instances is None:
        return encoded
    return torch.cat([encoded, instance_edges(instances)], dim=-3)


def read_ids(path: Path) -> Image.Image:
    """A single-band label or instance map, its pixel values the ids (palettes are not expanded)."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read the id map {path}: {error}") from None
    return as_ids(image, str(path))


def as_ids(image: Image.Image, name: str) -> Image.Image:
    """``image`` as an id map (mode ``L``, ``P`` or ``I``); a colour image is refused, naming ``name``."""
    if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise ValueError(
            f"{name} is a {image.mode} image; label and instance maps are single-band images whose values are ids "
            "(8-bit gray or palette, or 16/32-bit integer PNGs)"
        )
    return image if image.mode in ("L", "P", "I") else image.convert("I")


def ids_to_tensor(image: Image.Image) -> torch.Tensor:
    """``1 x H x W`` int64 ids of a map from [read_ids][imgtrans.data.labels.read_ids]."""
    return torch.from_numpy(np.array(image).astype(np.int64))[None]


def preview(labels: torch.Tensor) -> torch.Tensor:
    """A ``3 x H x W`` picture in [-1, 1] of integer ``labels``: one fixed colour per id (for sample grids)."""
    ids = labels[0].long()
    palette = torch.tensor([[(i * 67) % 256, (i * 151 + 80) % 256, (i * 211 + 160) % 256] for i in range(256)])
    return palette[ids % 256].permute(2, 0, 1).float() / 127.5 - 1


IdMap = Union[Image.Image, str, os.PathLike]
"""A label or instance map: a single-band PIL image, or the path of one."""


@dataclass(frozen=True)
class LabelInput:
    """What a model of label maps reads, and how a file becomes its input.

    Attributes:
        label_nc: the classes; a label map's values are 0 to ``label_nc - 1``.
        instance: the model also reads the boundary map of an instance map (one more channel).
    """

    label_nc: int
    instance: bool = False

    @property
    def channels(self) -> int:
        """The generator's input channels: ``label_nc``, +1 with instance maps."""
        return self.label_nc + int(self.instance)

    def ids(self, labels: IdMap, name: str | None = None) -> torch.Tensor:
        """``1 x H x W`` ids of a label map, each checked to be below ``label_nc`` (else a ``ValueError`` naming it)."""
        name = name or _name(labels, "the label map")
        ids = ids_to_tensor(_open(labels, name))
        low, high = (int(v) for v in torch.aminmax(ids))
        if low < 0 or high >= self.label_nc:
            bad = low if low < 0 else high
            raise ValueError(
                f"{name} holds the label {bad}, but the model has label_nc {self.label_nc} (labels 0 to "
                f"{self.label_nc - 1}): give label maps of the classes it was trained on"
            )
        return ids

    def encode(self, labels: IdMap, instances: IdMap | None = None, *, option: str = "instances") -> torch.Tensor:
        """The generator's input ``1 x C x H x W`` (0 and 1): the one-hot labels, then the instance boundaries.

        ``option`` names the instance maps in the caller's words (``--instances`` on the command line);
        a missing one, or one the model does not read, is refused in one line that names it.
        """
        name = _name(labels, "the label map")
        check_instances(self, instances is not None, name, option)
        ids = self.ids(labels, name)
        edges = None
        if instances is not None:
            inst_name = _name(instances, "the instance map")
            edges = ids_to_tensor(_open(instances, inst_name))
            if edges.shape != ids.shape:
                w, h = ids.shape[-1], ids.shape[-2]
                raise ValueError(f"{inst_name} is {edges.shape[-1]}x{edges.shape[-2]} but {name} is {w}x{h}: an "
                                 "instance map must match its label map")  # fmt: skip
        return encode_labels(ids, self.label_nc, edges)[None]


def label_input(model: object) -> LabelInput | None:
    """The label maps ``model`` reads, as its configuration records them; ``None``: it reads images (the default)."""
    config = getattr(model, "config", None)
    label_nc = getattr(config, "label_nc", 0)
    return LabelInput(int(label_nc), bool(getattr(config, "instance", False))) if label_nc else None


def check_instances(labels: LabelInput | None, given: bool, name: str, option: str) -> None:
    """Refuse an instance map the model does not read, or a missing one it does, naming ``option``."""
    if given and (labels is None or not labels.instance):
        reads = "images" if labels is None else "label maps without instance maps"
        raise ValueError(f"the model reads {reads}, not instance maps: drop {option}")
    if not given and labels is not None and labels.instance:
        raise ValueError(
            f"the model reads an instance map beside each label map (it was trained with --instance): give the one "
            f"of {name} with {option}"
        )


def pair_instances(labels: list[Path], instances: Path | None, option: str = "--instances") -> list[Path | None]:
    """The instance map of each label file: ``instances`` itself for one file, or its file of that name in a folder."""
    if instances is None:
        return [None] * len(labels)
    if not instances.is_dir():
        if not instances.is_file():
            raise FileNotFoundError(f"{option} {instances}: no such file or folder")
        if len(labels) != 1:
            raise ValueError(f"{option} {instances} is one file for {len(labels)} label maps: give a folder of "
                             "instance maps named as the label maps")  # fmt: skip
        return [instances]
    found = {p.stem: p for p in image_files(instances)}
    if missing := [p for p in labels if p.stem not in found]:
        raise ValueError(f"{option} {instances} has no instance map for {missing[0]} ({len(missing)} label map(s) "
                         "without one): name each instance map as its label map")  # fmt: skip
    return [found[p.stem] for p in labels]


def _name(source: IdMap, default: str) -> str:
    return default if isinstance(source, Image.Image) else str(source)


def _open(source: IdMap, name: str) -> Image.Image:
    if isinstance(source, Image.Image):
        return as_ids(source, name)
    if isinstance(source, (str, os.PathLike)):
        return read_ids(Path(source))
    raise TypeError(f"{name} must be a single-band PIL image or the path of one; got {type(source).__name__}")


class LabelMapDataset(Dataset):
    """Label maps (with instance maps) and their images, as pix2pixHD trains on them.

    Args:
        root: a folder with ``label/`` and ``img/`` (and ``inst/``), or pix2pixHD's ``train_*`` folders.
        label_nc: the number of classes: ids run from 0 to ``label_nc - 1``.
        instance: read ``inst/`` and add the instance-boundary channel.
        out_channels: channels of the images (the model's ``out_channels``).
        load_size: side the maps and the image are resized to before cropping; ``None`` keeps them.
        crop_size: side of the crop; ``None`` does not crop.
        train: random crop and mirroring when ``True``; a centre crop and no flip otherwise.
        flip: mirror horizontally half of the time (training only).
        seed: seed of the augmentation, as for [PairedImageDataset][imgtrans.data.paired.PairedImageDataset].

    Items are ``input`` (``label_nc (+1) x H x W``, 0 and 1), ``target`` (the image in [-1, 1]),
    ``preview`` (the label map in colour, for sample grids) and the label file's ``name``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        label_nc: int,
        instance: bool = False,
        out_channels: int = 3,
        load_size: int | None = 286,
        crop_size: int | None = 256,
        train: bool = True,
        flip: bool = True,
        seed: int = 0,
    ) -> None:
        if label_nc < 1:
            raise ValueError(f"label_nc must be at least 1 for label maps; got {label_nc}")
        if load_size is not None and crop_size is not None and crop_size > load_size:
            raise ValueError(f"crop_size ({crop_size}) cannot exceed load_size ({load_size})")
        self.root, self.label_nc, self.instance, self.out_channels = Path(root), label_nc, instance, out_channels
        self.load_size, self.crop_size, self.train, self.flip = load_size, crop_size, train, flip
        self.seed, self.epoch = seed, 0
        self.items = self._find_items()

    def _find_items(self) -> list[tuple[Path, Path, Path | None]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"no dataset folder at {self.root}")
        for label_name, image_name, inst_name in LAYOUTS:
            labels, images, insts = self.root / label_name, self.root / image_name, self.root / inst_name
            if labels.is_dir() and images.is_dir():
                break
        else:
            raise ValueError(
                f"{self.root} has no label/ and img/ folders (nor pix2pixHD's train_label/ and train_img/): label "
                "maps need them; for images side by side (AB files) leave label_nc at 0 (--label-nc 0)"
            )
        folders = {"label": labels, "image": images}
        if self.instance:
            if not insts.is_dir():
                raise ValueError(f"instance maps were asked for (--instance) but {insts} does not exist")
            folders["instance"] = insts
        found = {k: {p.stem: p for p in image_files(v)} for k, v in folders.items()}
        names = sorted(found["label"])
        if not names:
            raise ValueError(f"no label maps in {labels}")
        for kind, files in found.items():
            if missing := sorted(set(names) ^ set(files)):
                raise ValueError(
                    f"{len(missing)} file(s) of {labels} and {folders[kind]} have no partner with the same name, "
                    f"e.g. {', '.join(missing[:5])}"
                )
        return [(found["label"][n], found["image"][n], found.get("instance", {}).get(n)) for n in names]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops and flips the items use."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def verify(self) -> None:
        """Read every file once, so that a damaged one or an id beyond ``label_nc`` is reported before training."""
        for index in range(len(self)):
            self[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        label_path, image_path, inst_path = self.items[index]
        maps = [read_ids(label_path)] + ([read_ids(inst_path)] if inst_path is not None else [])
        image = read_image(image_path, self.out_channels)
        for path, m in zip((label_path, inst_path), maps):
            if m.size != image.size:
                w, h = image.size
                raise ValueError(f"{path} is {m.size[0]}x{m.size[1]} but {image_path} is {w}x{h}: they must match")
        rng = augmentation_rng(self.seed, self.epoch, index)
        if self.load_size is not None:
            size = (self.load_size, self.load_size)
            maps, image = [m.resize(size, Image.NEAREST) for m in maps], image.resize(size, Image.BICUBIC)
        if self.crop_size is not None:
            box = crop_box(image.size, self.crop_size, self.train, rng, f"{label_path} gives")
            maps, image = [m.crop(box) for m in maps], image.crop(box)
        ids = [ids_to_tensor(m) for m in maps]
        target = image_to_tensor(image, self.out_channels)
        if self.train and self.flip and rng.random() < 0.5:
            ids, target = [t.flip(-1) for t in ids], target.flip(-1)
        try:
            encoded = encode_labels(ids[0], self.label_nc, ids[1] if self.instance else None)
        except ValueError as error:
            raise ValueError(f"{label_path}: {error}") from None
        return {"input": encoded, "target": target, "preview": preview(ids[0]), "name": label_path.name}
