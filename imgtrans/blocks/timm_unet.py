"""A U-Net generator whose encoder is any timm model: the paper's decoder on a pretrained backbone.

The paper's U-Net (6.1.1) is an encoder of stride-2 ``Ck`` layers, a decoder of transposed
``Ck``/``CDk`` layers that mirrors it, and skips that concatenate each encoder level onto the
decoder level of the same resolution. [TimmUNetGenerator][imgtrans.blocks.timm_unet.TimmUNetGenerator]
keeps that decoder and those skips and swaps the encoder for a timm model created with
``features_only=True`` (a ResNet, ConvNeXt, EfficientNet, RegNet, MobileNet...):

- **skips at every feature level timm reports** (``feature_info.channels()`` and
  ``.reduction()``): the decoder layer that reaches a level's resolution has as many filters as
  that level has channels, as the paper's decoder mirrors its encoder;
- **up to the input's resolution**: backbones whose first level is at 1/4 (ConvNeXt) get
  decoder layers without skips below it, each with half the filters of the one before (see
  [decoder_plan][imgtrans.blocks.timm_unet.decoder_plan]). Like
  the paper's U-Net, there is no skip at full resolution: the last transposed convolution maps
  1/2 resolution to the output, then ``Tanh``;
- **dropout** (``CDk``) on the first two decoder layers, the deepest ones, as the paper puts
  it on the first three of its eight (``CD512-CD1024-CD1024-C1024-...``), at the lowest
  resolutions;
- **input normalisation of the backbone's pretraining**: images in [-1, 1] are mapped to
  [0, 1] and normalised with the mean and std of timm's ``pretrained_cfg``;
- **any image size**: sides are padded (reflection) to a multiple of the deepest reduction,
  and to at least twice it so that the deepest features have 2x2 pixels (BatchNorm needs more
  than one value per channel in training, even for a batch of one), then cropped back.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from imgtrans.blocks.backbone import BackboneInput, create_backbone
from imgtrans.blocks.conv import Ck, Norm
from imgtrans.blocks.init import init_weights
from imgtrans.blocks.pad import check_input, crop_padding, pad_to_multiple

DROPOUT_LAYERS = 2
"""How many decoder layers, counted from the deepest, are ``CDk`` layers (with dropout)."""


def decoder_plan(channels: list[int], reductions: list[int]) -> list[tuple[int, bool]]:
    """``(filters, concatenates_a_skip)`` for each decoder layer of a U-Net on these feature levels.

    Starting from the deepest level, each layer doubles the resolution; it has as many filters
    as the encoder level at its output resolution, and is followed by that level's skip. Where
    no level has its output resolution, it has no skip, and the filters of the next finer
    level, or, below the first level, half those of the layer before. The layers stop at 1/2
    resolution, where the final transposed convolution takes over.

    >>> decoder_plan([96, 192, 384, 768], [4, 8, 16, 32])  # ConvNeXt
    [(384, True), (192, True), (96, True), (48, False)]
    """
    ratios = [deeper / shallower for shallower, deeper in zip(reductions, reductions[1:])]
    if reductions[0] < 2 or any(r < 2 or not math.log2(r).is_integer() for r in [reductions[0], *ratios]):
        raise ValueError(
            "a U-Net needs feature levels at 1/2 resolution or coarser, each at twice (or a power of two "
            f"times) the reduction of the one before; this backbone reports reductions {reductions}. Choose a "
            "convolutional backbone whose first level is at 1/2 or 1/4 (ResNet, ConvNeXt, EfficientNet, RegNet, "
            "MobileNet...)"
        )
    by_reduction = dict(zip(reductions, channels))
    plan, reduction, filters = [], reductions[-1], channels[-1]
    while reduction > 2:
        reduction //= 2
        finer = [r for r in reductions if r <= reduction]  # levels at this resolution or finer
        filters = by_reduction[max(finer)] if finer else filters // 2
        plan.append((filters, reduction in by_reduction))
    return plan


class TimmUNetGenerator(nn.Module):
    """U-Net generator with a timm backbone as its encoder (``unet-timm``, ``unet-resnet34``...).

    Args:
        encoder: any timm model name that supports ``features_only=True``, optionally with a
            pretrained tag (``"resnet34"``, ``"convnext_tiny.fb_in1k"``).
        in_channels: channels of the input image (timm's ``in_chans``; pretrained first
            convolutions are adapted by timm).
        out_channels: channels of the translated image.
        pretrained_encoder: load the encoder's pretrained weights through timm's Hugging Face
            Hub loading (from the local cache when it holds them).
        encoder_weights: path of a local weights file for the encoder instead (safetensors, or a
            ``.pth`` state dict read with ``torch.load(weights_only=True)``); no network is used.
        norm: norm of the decoder layers: ``"batch"`` (paper), ``"instance"`` or ``"none"``.
            The encoder keeps its own.
        dropout: dropout rate of the decoder's ``CDk`` layers; 0 disables them.

    The encoder is the attribute ``encoder`` (freeze it with ``encoder.requires_grad_(False)``);
    the decoder layers are ``decoder`` and ``final``. See [the module][imgtrans.blocks.timm_unet]
    for the layout.
    """

    weight_arguments = {"pretrained_encoder": False, "encoder_weights": None}  # not architecture

    def __init__(
        self,
        encoder: str = "resnet34",
        in_channels: int = 3,
        out_channels: int = 3,
        pretrained_encoder: bool = False,
        encoder_weights: str | os.PathLike | None = None,
        norm: Norm = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.in_channels, self.encoder_name = in_channels, encoder
        self.encoder = create_backbone(
            encoder,
            in_channels=in_channels,
            pretrained=pretrained_encoder,
            weights_file=encoder_weights,
            argument_names=("pretrained_encoder", "encoder_weights"),
        )
        self.normalize = BackboneInput.for_backbone(self.encoder, in_channels)
        channels, reductions = self.feature_channels, self.feature_reductions
        plan = decoder_plan(list(channels), list(reductions))
        layers, width = [], channels[-1]
        for i, (filters, has_skip) in enumerate(plan):
            layers.append(
                Ck(
                    width,
                    filters,
                    transposed=True,
                    norm=norm,
                    dropout=dropout if i < DROPOUT_LAYERS else 0.0,
                    activation="relu",
                )
            )
            width = filters * 2 if has_skip else filters
        self.decoder = nn.ModuleList(layers)
        self.skip_after = [has_skip for _, has_skip in plan]
        self.final = nn.ConvTranspose2d(width, out_channels, 4, 2, 1)
        init_weights(self.final)

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channels of each encoder level, shallowest first (timm's ``feature_info.channels()``)."""
        return tuple(self.encoder.feature_info.channels())

    @property
    def feature_reductions(self) -> tuple[int, ...]:
        """Reduction (stride) of each encoder level, shallowest first (``feature_info.reduction()``)."""
        return tuple(self.encoder.feature_info.reduction())

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this (the deepest level's reduction)."""
        return self.feature_reductions[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``N x in_channels x H x W`` images in [-1, 1] to ``N x out_channels x H x W`` in [-1, 1]."""
        check_input(x, self.in_channels, type(self).__name__)
        x, pad = pad_to_multiple(x, self.multiple, minimum=2 * self.multiple)
        features = list(self.encoder(self.normalize(x)))
        y = features.pop()  # the deepest level starts the decoder
        for layer, has_skip in zip(self.decoder, self.skip_after):
            y = layer(y)
            if has_skip:
                y = torch.cat([features.pop(), y], dim=1)
        return crop_padding(torch.tanh(self.final(y)), pad)
