"""The pix2pix generator: a U-Net, or the encoder-decoder it is compared with (paper 6.1.1).

Encoder ``C64-C128-C256-C512-C512-C512-C512-C512`` (leaky ReLUs, no norm on the first
layer nor, per the errata, at the bottleneck). U-Net decoder
``CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128`` (plain ReLUs; the widths count the
concatenated skip), then a transposed convolution to the output channels and ``Tanh``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from imgtrans.blocks.conv import MAX_WIDTH, Ck, Norm, check_choice, check_range
from imgtrans.blocks.init import init_weights
from imgtrans.blocks.pad import check_input, crop_padding, pad_to_multiple
from imgtrans.blocks.transposed import MatmulConvTranspose2d

DropoutLayout = Literal["paper", "reference"]
MAX_DOWNS = 12  # inputs are padded to multiples of 2**num_downs: 4096 pixels at most


def dropout_layers(num_downs: int, layout: DropoutLayout) -> range:
    """Indices of the decoder layers that carry dropout, counted from the bottleneck.

    ``"paper"``: the first three (``CD512-CD1024-CD1024``, 6.1.1). ``"reference"``: the
    reference code's placement, one layer further out (the ``num_downs - 5`` intermediate
    blocks of 512 filters), which its published checkpoints were trained with.
    """
    check_choice("dropout_layout", layout, ("paper", "reference"))
    return range(0, 3) if layout == "paper" else range(1, num_downs - 4)


class UNetGenerator(nn.Module):
    """U-Net generator of pix2pix (6.1.1), for inputs of any height and width.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the translated image.
        num_downs: number of stride-2 layers; 8 for 256x256 images (``unet256``), 7 for 128x128.
        base_channels: filters of the first layer (64 in the paper); deeper layers double it
            up to 8x.
        norm: ``"batch"`` (paper), ``"instance"`` or ``"none"``.
        dropout: dropout rate of the ``CDk`` decoder layers; 0 disables them.
        skips: ``False`` gives the encoder-decoder of Table 2 (a U-Net without skips).
        dropout_layout: where the dropout layers sit, see [dropout_layers][imgtrans.blocks.unet.dropout_layers].

    Inputs whose sides are not multiples of ``2 ** num_downs`` are padded (reflection) to the
    next multiple and the output is cropped back, so the output always has the input's size.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        base_channels: int = 64,
        norm: Norm = "batch",
        dropout: float = 0.5,
        skips: bool = True,
        dropout_layout: DropoutLayout = "paper",
    ) -> None:
        super().__init__()
        check_range("num_downs", num_downs, 5, MAX_DOWNS)  # 8 in the paper, for 256x256
        check_range("base_channels", base_channels, 1, MAX_WIDTH)
        check_range("out_channels", out_channels, 1)
        self.in_channels, self.num_downs, self.skips = in_channels, num_downs, skips
        widths = [base_channels * min(2**i, 8) for i in range(num_downs)]
        bias = norm != "batch"  # as the reference: no conv bias anywhere BatchNorm is used
        last = num_downs - 1
        # The bottleneck's output is read only by the decoder, whose first ReLU is plain.
        self.encoder = nn.ModuleList(
            Ck(
                widths[i - 1] if i else in_channels,
                widths[i],
                norm="none" if i in (0, last) else norm,
                activation="relu" if i == last else "leaky",
                bias=bias,
            )
            for i in range(num_downs)
        )
        with_dropout = dropout_layers(num_downs, dropout_layout)
        concat = 2 if skips else 1
        self.decoder = nn.ModuleList(
            Ck(
                widths[last - j] * (concat if j else 1),
                widths[last - j - 1],
                transposed=True,
                norm=norm,
                dropout=dropout if j in with_dropout else 0.0,
                activation="relu",
                bias=bias,
            )
            for j in range(last)
        )
        self.final = MatmulConvTranspose2d(widths[0] * concat, out_channels, 4, 2, 1)
        init_weights(self.final)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``N x in_channels x H x W`` images in [-1, 1] to ``N x out_channels x H x W`` in [-1, 1]."""
        check_input(x, self.in_channels, type(self).__name__)
        x, pad = pad_to_multiple(x, 2**self.num_downs, 0, type(self).__name__, ", or build it with a smaller num_downs")
        features = []
        for layer in self.encoder:
            x = layer(x)
            features.append(x)
        features.pop()  # the bottleneck is not a skip
        for layer in self.decoder:
            x = layer(x)
            if self.skips:
                # The decoder's plain ReLU also applies to the skip: relu(leaky(s)) == relu(s).
                x = torch.cat([F.relu(features.pop()), x], dim=1)
        return crop_padding(torch.tanh(self.final(x)), pad)
