"""The zoo's catalogue: which pretrained weights exist, what they translate and where they come from.

A [ZooEntry][imgtrans.zoo.entries.ZooEntry] is named after the registry configuration it fills
(``build(entry.name, pretrained=True)``). Its weights come from one of two sources:

- a Hub repository in imgtrans's own format ([HubSource][imgtrans.zoo.entries.HubSource], pinned to a
  commit), fetched with ``huggingface_hub``;
- otherwise a checkpoint of the reference PyTorch implementation, downloaded once, converted with
  [convert_reference][imgtrans.zoo.convert_reference] and cached as safetensors.

The five pix2pix models published with the reference implementation (paper section 4 and its
appendix 6.2) have no imgtrans-format Hub copy, so they take the second route. Their checkpoints
hold the generator only (a U-Net 256 with BatchNorm and dropout); the discriminator of a pretrained
pix2pix model is freshly initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from imgtrans.registry import did_you_mean, list_models
from imgtrans.registry import entry as registry_entry

REFERENCE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"
"""Where the reference implementation publishes its pix2pix checkpoints; ``IMGTRANS_REFERENCE_URL`` overrides it."""

REFERENCE_REPOSITORY = "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix"
PAPER = (
    "Isola, Zhu, Zhou, Efros, *Image-to-Image Translation with Conditional Adversarial Networks*, "
    "CVPR 2017 ([arXiv:1611.07004](https://arxiv.org/abs/1611.07004))"
)


@dataclass(frozen=True)
class HubSource:
    """A weights file in a Hugging Face Hub repository, pinned so that its bytes cannot change.

    Attributes:
        repo_id: ``"organisation/name"``.
        revision: the commit hash (a branch name would let the weights change under the user).
        filename: the safetensors file in the repository, named as
            [save_pretrained][imgtrans.zoo.pretrained.save_pretrained] names it.
    """

    repo_id: str
    revision: str
    filename: str = "model.safetensors"


@dataclass(frozen=True)
class ZooEntry:
    """Pretrained weights for the registry configuration ``name``, and what they were trained for.

    Attributes:
        name: the registry name the weights fit, e.g. ``"pix2pix-facades"``.
        task: what it translates, e.g. ``"labels -> photo"``.
        direction: ``"AtoB"`` or ``"BtoA"``: which half of the dataset's AB images is the input.
        dataset: the training data, with its origin.
        resolution: side of the square training crops, in pixels.
        source: where the weights were published.
        license: licence of the weights (the training data may carry its own terms).
        reference_file: file name of the reference checkpoint under ``IMGTRANS_REFERENCE_URL``.
        reference_arch: reference architecture of that checkpoint, for
            [convert_reference][imgtrans.zoo.convert_reference].
        reference_part: the submodule of the built model that the reference checkpoint fills.
        hub: an imgtrans-format copy on the Hub; when set it is used instead of the reference file.
        sha256: checksum of the file downloaded (the Hub file, or else the reference checkpoint), when known.
    """

    name: str
    task: str
    direction: Literal["AtoB", "BtoA"]
    dataset: str
    resolution: int = 256
    source: str = f"reference PyTorch implementation, {REFERENCE_REPOSITORY}"
    license: str = "bsd-2-clause"
    reference_file: str | None = None
    reference_arch: str = "unet256"
    reference_part: str = "generator"
    hub: HubSource | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {self.direction!r}")
        if self.hub is None and self.reference_file is None:
            raise ValueError(f"zoo entry {self.name!r} needs a Hub source or a reference file")

    @property
    def arguments(self) -> dict[str, Any]:
        """The constructor arguments of the registry configuration the weights fit."""
        return registry_entry(self.name).arguments({})

    @property
    def channels(self) -> tuple[int, int]:
        """``(input channels, output channels)`` of the translation."""
        arguments = self.arguments
        return arguments.get("in_channels", 3), arguments.get("out_channels", 3)

    @property
    def url(self) -> str | None:
        """Where the reference checkpoint is downloaded from (``IMGTRANS_REFERENCE_URL`` picks a mirror)."""
        if self.reference_file is None:
            return None
        base = os.environ.get("IMGTRANS_REFERENCE_URL") or REFERENCE_URL
        return f"{base.rstrip('/')}/{self.reference_file}"


ZOO: dict[str, ZooEntry] = {}
"""Every zoo entry by name; [register_pretrained][imgtrans.zoo.entries.register_pretrained] adds to it."""


def register_pretrained(item: ZooEntry) -> ZooEntry:
    """Add ``item`` to the zoo, so that ``build(item.name, pretrained=True)`` finds its weights.

    The name must be a registered model (see [register][imgtrans.registry.register]).
    """
    registry_entry(item.name)  # fails with suggestions if the architecture is unknown
    if item.name in ZOO:
        raise ValueError(f"the zoo already has weights for {item.name!r}")
    ZOO[item.name] = item
    return item


def pretrained_entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; an unknown name fails with the closest ones and the full list."""
    try:
        return ZOO[name]
    except KeyError:
        hint = did_you_mean(name, ZOO, n=1)
        if name in list_models() and "pretrained_encoder" in registry_entry(name).parameters():
            hint += " For this part's pretrained timm encoder, build it with pretrained_encoder=True instead."
        raise KeyError(
            f"no pretrained weights for {name!r}.{hint} The zoo has: {', '.join(sorted(ZOO))}; "
            "for other models pass weights=PATH (a save_pretrained folder, a .safetensors file or a reference .pth)."
        ) from None


def list_pretrained() -> list[str]:
    """Names with pretrained weights in the zoo, sorted."""
    return sorted(ZOO)


for _entry in (
    ZooEntry(
        "pix2pix-facades",
        task="architectural labels -> photo",
        direction="BtoA",
        dataset="CMP Facades (Tylecek and Sara, 2013): 400 training pairs",
        reference_file="facades_label2photo.pth",
    ),
    ZooEntry(
        "pix2pix-edges2shoes",
        task="edges -> shoe photo",
        direction="AtoB",
        dataset="edges2shoes: 50k photos from UT Zappos50K (Yu and Grauman, 2014), edges by HED",
        reference_file="edges2shoes.pth",
    ),
    ZooEntry(
        "pix2pix-sat2map",
        task="aerial photo -> map",
        direction="AtoB",
        dataset="maps: 1096 training pairs scraped from Google Maps, in and around New York City",
        reference_file="sat2map.pth",
    ),
    ZooEntry(
        "pix2pix-map2sat",
        task="map -> aerial photo",
        direction="BtoA",
        dataset="maps: 1096 training pairs scraped from Google Maps, in and around New York City",
        reference_file="map2sat.pth",
    ),
    ZooEntry(
        "pix2pix-day2night",
        task="day photo -> night photo",
        direction="BtoA",
        dataset="night2day: about 20k webcam images from Transient Attributes (Laffont et al., 2014)",
        reference_file="day2night.pth",
    ),
):
    register_pretrained(_entry)
