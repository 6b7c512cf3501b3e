"""timm models as feature extractors: creation, pretrained weights, and input normalisation.

Both the [timm U-Net generator][imgtrans.blocks.timm_unet.TimmUNetGenerator] (its encoder) and the
[perceptual loss][imgtrans.losses.perceptual.PerceptualLoss] (its frozen feature network) take a
timm model created with ``features_only=True`` through
[create_backbone][imgtrans.blocks.backbone.create_backbone]. Its weights are always read from a
local file, through timm's own file loading (``pretrained_cfg_overlay=dict(file=PATH)``): it drops
the classifier, adapts the first convolution to the number of input channels and applies the
model's checkpoint filter, exactly as for weights from the Hub. The file is the caller's, or the
one [imgtrans.hub.timm_weights][] finds in the Hugging Face cache or downloads once (all network
policy, offline mode included, lives there).

timm is imported when a backbone is first created, so ``import imgtrans`` stays fast.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from imgtrans.registry import did_you_mean

_TIMM_BUILDER_LOGGER = "timm.models._builder"  # where timm reports keys of a weights file that fit nothing


def check_backbone_name(name: str) -> None:
    """Raise a ``ValueError`` naming the closest timm models unless timm knows ``name``.

    Names may carry a pretrained tag (``"resnet34.tv_in1k"``); ``hf-hub:`` names are passed on
    to timm unchecked.
    """
    import timm

    if name.startswith("hf-hub:") or timm.is_model(name):
        return
    hint = did_you_mean(name, timm.list_models(), cutoff=0.6)
    raise ValueError(f"timm has no model called {name!r}.{hint} `timm.list_models('*resnet*')` lists them.")


def check_out_indices(name: str, out_indices: Sequence[int]) -> None:
    """Raise a ``ValueError`` describing ``name``'s feature levels unless it has ``out_indices``.

    The levels are read from a copy of the model built on the ``meta`` device (no memory, no
    initialisation), so this costs milliseconds.
    """
    import timm

    if name.startswith("hf-hub:"):
        return
    try:
        with torch.device("meta"):
            info = timm.create_model(name, features_only=True).feature_info
    except Exception:  # a model whose construction needs real tensors
        info = timm.create_model(name, features_only=True).feature_info
    count = len(info.reduction())
    if not out_indices or any(not -count <= i < count for i in out_indices):
        raise ValueError(
            f"timm's {name!r} has {count} feature levels, 0 to {count - 1}, at reductions {info.reduction()} "
            f"with channels {info.channels()}; got {tuple(out_indices)}"
        )


def create_backbone(
    name: str,
    *,
    in_channels: int = 3,
    out_indices: Sequence[int] | None = None,
    pretrained: bool = False,
    weights_file: str | os.PathLike | None = None,
    argument_names: tuple[str, str] = ("pretrained", "weights_file"),
) -> nn.Module:
    """Create timm's ``name`` with ``features_only=True``, with weights as described above.

    Args:
        name: a timm model name, optionally with a pretrained tag (``"convnext_tiny.fb_in1k"``).
        in_channels: channels of the images it will see (timm's ``in_chans``); pretrained first
            convolutions are adapted by timm.
        out_indices: which of the model's feature levels to return (timm's ``out_indices``);
            all of them by default.
        pretrained: load timm's pretrained weights (see [imgtrans.hub.timm_weights][]).
        weights_file: load the weights from this local file instead (implies ``pretrained``).
        argument_names: what the caller calls ``pretrained`` and ``weights_file``, for error messages.

    Returns:
        timm's feature extractor: calling it returns one feature map per level, and its
        ``feature_info`` gives their channels and reductions.

    Raises:
        ValueError: unknown model name, or a weights file that does not fit the model.
        FileNotFoundError: ``weights_file`` does not exist.
        ConnectionError: pretrained weights are needed and cannot be downloaded.
    """
    import timm

    check_backbone_name(name)
    kwargs: dict[str, Any] = {"features_only": True, "in_chans": in_channels}
    if out_indices is not None:
        check_out_indices(name, out_indices)
        kwargs["out_indices"] = tuple(out_indices)
    if weights_file is None and pretrained:
        from imgtrans.hub import timm_weights  # the network, only when weights are asked for (as timm, above)

        weights_file = timm_weights(name, argument_names)
    if weights_file is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    return _from_file(name, Path(weights_file), kwargs, argument_names[1])


def _from_file(name: str, path: Path, kwargs: dict[str, Any], argument: str) -> nn.Module:
    """Create the model and load ``path`` through timm's file loading, checking that it fits."""
    import timm

    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path} (given as {argument})")
    with _timm_load_warnings() as warnings:
        try:
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        except Exception as error:  # unreadable file, pickled code, or tensors of the wrong shapes
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise ValueError(
                f"cannot load {path} into timm's {name!r}: {type(error).__name__}: {first_line}. "
                f"{_FILE_FORMAT}"
            ) from error
    unexpected = [message for message in warnings if message.startswith("Unexpected keys")]
    if unexpected:
        message = unexpected[0] if len(unexpected[0]) <= 300 else unexpected[0][:300] + "..."
        raise ValueError(f"{path} does not fit timm's {name!r}: {message} {_FILE_FORMAT}")
    return model


_FILE_FORMAT = (
    "The file must hold the model's state dict with timm's names, as a timm checkpoint from the Hub "
    "(model.safetensors) or timm.create_model(NAME).state_dict() saved with safetensors has; "
    ".pth files are read with torch.load(weights_only=True), which refuses pickled code."
)


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _timm_load_warnings() -> Iterator[list[str]]:
    """Collect the warnings timm logs while it loads weights (it reports unused keys only there)."""
    logger = logging.getLogger(_TIMM_BUILDER_LOGGER)
    messages: list[str] = []
    handler, level = _Collect(messages), logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.WARNING):
        logger.setLevel(logging.WARNING)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def normalization_stats(pretrained_cfg: dict[str, Any], channels: int) -> tuple[list[float], list[float]]:
    """Per-channel ``(mean, std)`` of a backbone's pretrained configuration, for ``channels`` inputs.

    For ``channels`` other than the configuration's (3 for RGB), the statistics follow the way
    timm adapts pretrained first convolutions: with 1 channel timm sums the RGB filters, so the
    means of the RGB statistics are used; with more channels timm repeats the RGB filters, so
    channel ``i`` gets the statistics of RGB channel ``i % 3``.
    """
    mean = list(pretrained_cfg.get("mean", (0.485, 0.456, 0.406)))
    std = list(pretrained_cfg.get("std", (0.229, 0.224, 0.225)))
    if channels == len(mean):
        return mean, std
    if channels == 1:
        return [sum(mean) / len(mean)], [sum(std) / len(std)]
    return [mean[i % len(mean)] for i in range(channels)], [std[i % len(std)] for i in range(channels)]


class BackboneInput(nn.Module):
    """Maps images in [-1, 1] (pix2pix's range) to the input a pretrained backbone expects.

    ``x`` in [-1, 1] becomes ``((x + 1) / 2 - mean) / std``, with ``mean`` and ``std`` from
    the backbone's ``pretrained_cfg`` (see [normalization_stats][imgtrans.blocks.backbone.normalization_stats]).
    The statistics are buffers that are not saved in state dicts: they follow from the backbone's name.

    Args:
        mean: per-channel mean of the backbone's [0, 1] inputs.
        std: per-channel standard deviation.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel; got {len(mean)} and {len(std)}")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @classmethod
    def for_backbone(cls, backbone: nn.Module, channels: int) -> "BackboneInput":
        """The normalisation of a timm ``backbone`` seeing images with ``channels`` channels."""
        return cls(*normalization_stats(getattr(backbone, "pretrained_cfg", {}) or {}, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images in [-1, 1] to the backbone's normalised input."""
        return ((x + 1) / 2 - self.mean) / self.std

    def extra_repr(self) -> str:
        mean, std = ([round(v, 4) for v in t.flatten().tolist()] for t in (self.mean, self.std))
        return f"mean={mean}, std={std}"
