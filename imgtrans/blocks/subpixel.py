r"""The decoder's transposed convolution as one ordinary convolution and a pixel interleave.

A ``4x4`` transposed convolution with stride 2 and padding 1 (every up-sampling layer of the
pix2pix decoder, paper 6.1.1) writes output row $2i + a$ ($a \in \{0, 1\}$) from input rows
$i - 1, i$ (for $a = 0$, kernel taps 3 and 1) or $i, i + 1$ (for $a = 1$, taps 2 and 0); columns
alike. So each of the four output phases $(a, b)$ is a ``2x2`` convolution of the input padded by
one zero on every side,

$$y_{2i+a,\,2j+b} = \sum_{u, v \in \{0, 1\}} K^{ab}_{uv}\, \tilde x_{i+a+u,\, j+b+v},
\qquad K^{ab}_{uv} = W_{T_a(u),\, T_b(v)}, \quad T_0 = (3, 1),\ T_1 = (2, 0),$$

and the four are computed as one ``2x2`` convolution with ``4 x out`` filters, then interleaved.
The arithmetic is the transposed convolution's (times $(h+1)(w+1)/hw$), the result the same up to
float rounding.

Why: runtimes quantise ordinary convolutions to int8 but not transposed ones (onnxruntime's CPU
provider has no int8 ``ConvTranspose``), and the decoder holds two thirds of the U-Net's
arithmetic. Written this way, the whole generator runs in int8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TAPS = ((3, 1), (2, 0))  # kernel rows (and columns) read by output phase 0 and phase 1


class SubpixelConvTranspose2d(nn.Module):
    """``ConvTranspose2d(in, out, 4, stride=2, padding=1)`` as a ``2x2`` convolution with ``4 x out`` filters.

    Build it from an existing layer with [from_transposed][imgtrans.blocks.subpixel.SubpixelConvTranspose2d.from_transposed].

    Args:
        weight: the ``4 out x in x 2 x 2`` filters, phases ``(a, b)`` outermost.
        bias: the ``out`` biases of the transposed convolution, or ``None``.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_channels = weight.shape[0] // 4
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.repeat(4), requires_grad=False)

    @classmethod
    def from_transposed(cls, conv: nn.ConvTranspose2d) -> SubpixelConvTranspose2d:
        """The same function as ``conv``, which must be a ``4x4``, stride-2, padding-1 transposed convolution."""
        if not supports(conv):
            raise ValueError(
                "SubpixelConvTranspose2d computes 4x4 transposed convolutions with stride 2, padding 1, no groups, "
                f"dilation or output padding; got {conv}"
            )
        bias = None if conv.bias is None else conv.bias.detach().clone()
        return cls(phase_weight(conv.weight.detach()), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N x in x H x W`` to ``N x out x 2H x 2W``, as the transposed convolution it was made from."""
        return subpixel_forward(x, self.weight, self.bias, self.out_channels)


def phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """The ``4 out x in x 2 x 2`` filters of the four phases, from the ``in x out x 4 x 4`` transposed ones."""
    phases = [weight[:, :, TAPS[a]][:, :, :, TAPS[b]].transpose(0, 1) for a in (0, 1) for b in (0, 1)]
    return torch.cat(phases).contiguous()


def subpixel_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out_channels: int
) -> torch.Tensor:
    """The four output phases of ``x`` (``N x in x H x W``) by ``weight``, interleaved: ``N x out x 2H x 2W``.

    ``weight`` as [phase_weight][imgtrans.blocks.subpixel.phase_weight] gives it.
    ``bias`` holds one value per phase and channel (``4 out``). The convolution's own zero padding,
    not a padded copy of ``x``: the input is the largest tensor of the layer.
    """
    n, _, h, w = x.shape
    z = F.conv2d(x, weight, bias, padding=1)  # N x (2 2 out) x (H+1) x (W+1)
    z = z.reshape(n, 2, 2, out_channels, h + 1, w + 1)
    rows = [torch.stack([z[:, a, b, :, a : a + h, b : b + w] for b in (0, 1)], -1) for a in (0, 1)]
    return torch.stack(rows, 3).reshape(n, out_channels, 2 * h, 2 * w)  # N out H 2 W 2 -> N out 2H 2W


def supports(conv: nn.Module) -> bool:
    """Whether ``conv`` is a transposed convolution that [SubpixelConvTranspose2d][imgtrans.blocks.subpixel.SubpixelConvTranspose2d] can replace."""
    return (
        isinstance(conv, nn.ConvTranspose2d)
        and conv.kernel_size == (4, 4)
        and conv.stride == (2, 2)
        and conv.padding == (1, 1)
        and conv.output_padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )
