"""The ResNet generator offered beside the U-Net by the reference code (Johnson et al. 2016).

``c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-out``: a 7x7 stem, two stride-2
downsamplings, residual blocks, two transposed-convolution upsamplings and a 7x7 head with
``Tanh``. Reflection padding throughout, as in the reference implementation.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from imgtrans.blocks.conv import MAX_WIDTH, Norm, check_range, norm_layer
from imgtrans.blocks.dropout import Dropout
from imgtrans.blocks.init import init_weights
from imgtrans.blocks.pad import check_input, crop_padding, pad_to_multiple
from imgtrans.blocks.unfolded import MatmulConv2d


def conv_norm_relu(conv: nn.Module, norm: Norm, relu: bool = True) -> nn.Sequential:
    """``conv`` followed by a norm layer and, optionally, a ReLU."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(conv=conv)
    norm_module = norm_layer(norm, conv.out_channels)
    if norm_module is not None:
        layers["norm"] = norm_module
    if relu:
        layers["act"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class ResnetBlock(nn.Module):
    """``x + conv-norm-relu-[dropout]-conv-norm(x)`` with 3x3 reflection-padded convolutions.

    ``bias``: whether the convolutions have biases; by default only without BatchNorm (the reference
    pix2pix code), pix2pixHD's blocks always have them.
    """

    def __init__(self, channels: int, norm: Norm = "batch", dropout: float = 0.0, bias: bool | None = None) -> None:
        super().__init__()
        bias = norm != "batch" if bias is None else bias
        body = [conv_norm_relu(nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect", bias=bias), norm)]
        if dropout > 0:
            body.append(Dropout(dropout))
        body.append(
            conv_norm_relu(nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect", bias=bias), norm, relu=False)
        )
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual connection: ``x + body(x)``."""
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """ResNet generator with ``n_blocks`` residual blocks (``resnet9``, ``resnet6``).

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the translated image.
        n_blocks: residual blocks at 1/4 resolution (9 for 256x256, 6 for 128x128).
        base_channels: filters of the stem (64).
        norm: ``"batch"``, ``"instance"`` or ``"none"``.
        dropout: dropout inside each residual block (the reference enables 0.5 for pix2pix
            unless ``--no_dropout``; 0 here, as for CycleGAN).

    Inputs of any size work: sides are padded to a multiple of 4 (and at least 8 pixels, which
    the reflection padding at 1/4 resolution needs) and the output is cropped back.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        n_blocks: int = 9,
        base_channels: int = 64,
        norm: Norm = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_range("n_blocks", n_blocks, 0, 64)
        check_range("base_channels", base_channels, 1, MAX_WIDTH)
        self.in_channels = in_channels
        bias = norm != "batch"
        c = base_channels
        self.stem = conv_norm_relu(nn.Conv2d(in_channels, c, 7, padding=3, padding_mode="reflect", bias=bias), norm)
        self.down = nn.Sequential(
            *(conv_norm_relu(nn.Conv2d(c * m, c * m * 2, 3, 2, 1, bias=bias), norm) for m in (1, 2))
        )
        self.blocks = nn.Sequential(*(ResnetBlock(c * 4, norm, dropout) for _ in range(n_blocks)))
        self.up = nn.Sequential(
            *(conv_norm_relu(nn.ConvTranspose2d(c * m, c * m // 2, 3, 2, 1, output_padding=1, bias=bias), norm) for m in (4, 2))
        )
        # Few outputs: in training it is one product over its 49 taps (imgtrans.blocks.taps).
        self.head = MatmulConv2d(c, out_channels, 7, padding=3, padding_mode="reflect")
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``N x in_channels x H x W`` images in [-1, 1] to ``N x out_channels x H x W`` in [-1, 1]."""
        check_input(x, self.in_channels, type(self).__name__)
        x, pad = pad_to_multiple(x, 4, minimum=8)
        x = self.up(self.blocks(self.down(self.stem(x))))
        return crop_padding(torch.tanh(self.head(x)), pad)
