"""The PatchGAN discriminator of pix2pix (paper 6.1.2), at the paper's four patch sizes.

| receptive field | `n_layers` | paper notation |
| --- | --- | --- |
| 1x1 (PixelGAN) | 0 | `C64-C128`, all 1x1 convolutions |
| 16x16 | 1 | `C64-C128` |
| 70x70 | 3 | `C64-C128-C256-C512` |
| 286x286 | 5 | `C64-C128-C256-C512-C512-C512` |

Every ``Ck`` has stride 2 except the last, which, like the final 1-channel convolution, has
stride 1: that is the layout of the reference code, and the one that gives the receptive
fields the paper quotes. The output is one logit per patch (the paper's sigmoid is folded
into the loss, see [imgtrans.losses.gan][]).
"""

from __future__ import annotations

import torch
from torch import nn

from imgtrans.blocks.conv import MAX_WIDTH, Norm, check_range, stack
from imgtrans.blocks.init import init_weights
from imgtrans.blocks.pad import check_input
from imgtrans.blocks.unfolded import MatmulConv2d

MAX_LAYERS = 8  # a receptive field of 4606 pixels: deeper sees beyond any image it could be given


def notation(n_layers: int, base_channels: int = 64) -> str:
    """The paper's notation for a discriminator of ``n_layers`` (see the table above)."""
    count = max(n_layers, 1) + 1
    return "-".join(f"C{base_channels * min(2**i, 8)}" for i in range(count))


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: classifies each ``N x N`` patch of an image as real or fake.

    Args:
        in_channels: channels it sees; for the conditional discriminator that is the input
            and the output concatenated (3 + 3 = 6 in the paper).
        base_channels: filters of the first layer (64 in the paper).
        n_layers: depth; 0, 1, 3 and 5 give receptive fields of 1, 16, 70 and 286 pixels.
        norm: ``"batch"`` (paper), ``"instance"`` or ``"none"``; never on the first layer.
    """

    def __init__(self, in_channels: int = 6, base_channels: int = 64, n_layers: int = 3, norm: Norm = "batch") -> None:
        super().__init__()
        check_range("n_layers", n_layers, 0, MAX_LAYERS)  # 0 is the 1x1 PixelGAN
        check_range("base_channels", base_channels, 1, MAX_WIDTH)
        self.in_channels = in_channels
        spec = notation(n_layers, base_channels)
        if n_layers == 0:  # PixelGAN: 1x1 convolutions throughout
            self.layers = stack(spec, in_channels, kernel_size=1, strides=[1, 1], first_norm=False, norm=norm)
            # The reference PixelGAN's output convolution has no bias when BatchNorm is used.
            self.out = MatmulConv2d(self.layers[-1].conv.out_channels, 1, 1, bias=norm != "batch")
        else:
            strides = [2] * n_layers + [1]
            self.layers = stack(spec, in_channels, strides=strides, first_norm=False, norm=norm)
            # One output channel: in training it is computed per kernel tap (imgtrans.blocks.taps).
            self.out = MatmulConv2d(self.layers[-1].conv.out_channels, 1, 4, 1, 1)
        init_weights(self.out)

    @property
    def receptive_field(self) -> int:
        """Side of the input patch that one output logit sees, computed from the layers."""
        field, jump = 1, 1
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                field += (m.kernel_size[0] - 1) * jump
                jump *= m.stride[0]
        return field

    def output_size(self, size: int) -> int:
        """Side of the logit map for an input side of ``size`` pixels."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                size = (size + 2 * m.padding[0] - m.kernel_size[0]) // m.stride[0] + 1
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One logit per patch, ``N x 1 x H' x W'``, for images ``N x in_channels x H x W``."""
        check_input(x, self.in_channels, type(self).__name__)
        if self.output_size(min(x.shape[-2:])) < 1:
            smallest = next(s for s in range(1, 4096) if self.output_size(s) >= 1)
            raise ValueError(
                f"a {x.shape[-2]}x{x.shape[-1]} image is too small for this discriminator "
                f"({self.receptive_field}x{self.receptive_field} receptive field): it needs sides of at "
                f"least {smallest} pixels; use a shallower one (n_layers) or larger images"
            )
        return self.out(self.layers(x))
