r"""A convolution that computes small outputs as im2col and one matrix product.

The U-Net encoder's last layers map 16x16 down to 1x1 with 512 x 512 x 4 x 4 weights (16 MB in
float32): a great deal of weight for very little arithmetic (8 MFLOP at the bottleneck). oneDNN
reorders those weights into its blocked layout on every call, forward and backward, so that
reorder, not arithmetic, sets these layers' speed in training. For small outputs the layer is
computed from its definition,

$$Y = W \cdot \mathrm{im2col}(X), \qquad W \in \mathbb{R}^{k \times c\,h_k w_k},$$

with ``F.unfold`` for im2col (its backward is the overlap-add ``F.fold``), the batch's columns side by
side for one product ([product][imgtrans.blocks.product.product]: oneDNN's in float32). Measured on
2 AVX-512 cores (forward + backward of one layer, docs/performance.md): 7.4 against 2.9 ms at 2x2
inputs in float32 and 9.0 against 3.3 ms under bf16 autocast; 64 output pixels per batch is where
oneDNN's convolution starts to win (fp32) or draw level (bf16). The transposed counterpart is
[MatmulConvTranspose2d][imgtrans.blocks.transposed.MatmulConvTranspose2d].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgtrans.blocks.product import product
from imgtrans.blocks.taps import TAPS_MAX_OUT, fits_taps, taps_conv2d

MATMUL_MAX_OUTPUT_PIXELS = 64  # batch x height x width of the output up to which the matmul path wins (training)


def channels_last(t: torch.Tensor) -> bool:
    """Whether a 4-D tensor is stored channels-last (and not also contiguous, as 1x1 maps and 1-channel maps are)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


class MatmulConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same arguments, same parameters) with a faster path for small outputs in training.

    The matmul path is taken on the CPU while autograd is on, for outputs of at most
    ``MATMUL_MAX_OUTPUT_PIXELS`` pixels per batch, when the layer has no groups or dilation and pads
    with zeros; a layer of at most ``TAPS_MAX_OUT`` output channels, padded any way, is computed per
    kernel tap at any size whose taps fit in memory ([taps_conv2d][imgtrans.blocks.taps.taps_conv2d]).
    Otherwise (unbatched inputs and inputs of other channel counts too), and in exported graphs,
    the usual path. All compute the same function; results agree to float rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """As ``nn.Conv2d.forward``; small outputs take the matmul path in training."""
        simple = self.groups == 1 and self.dilation == (1, 1) and isinstance(self.padding, tuple)
        # Other inputs (unbatched, wrong channels) take the usual path: its errors name the problem.
        simple = simple and x.dim() == 4 and x.shape[1] == self.in_channels
        if not simple or not torch.is_grad_enabled() or x.device.type != "cpu" or torch.compiler.is_exporting():
            return super().forward(x)
        # Few outputs (the PatchGAN's last layer, CycleGAN's and pix2pixHD's 7x7 heads): oneDNN would pad them to 16.
        if self.out_channels <= TAPS_MAX_OUT and fits_taps(x, self.weight):
            if self.padding_mode == "zeros":
                return taps_conv2d(x, self.weight, self.bias, self.stride, self.padding)
            padded = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return taps_conv2d(padded, self.weight, self.bias, self.stride, (0, 0))
        if self.padding_mode != "zeros":
            return super().forward(x)
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        pixels = n * out_h * out_w
        if pixels > MATMUL_MAX_OUTPUT_PIXELS:
            return super().forward(x)
        # im2col as N x (c kh kw) x L, then the batch's columns side by side, (c kh kw) x (N L), for one
        # product, stored pixel-major: the whole step ran 3% faster than with row-major columns.
        columns = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        weight_channels_last = channels_last(self.weight)
        if weight_channels_last:
            # Stored (out, kh, kw, c): the matrix in that order is a view, where reshaping to (c kh kw)
            # would copy the whole weight (16 MB) at every call; the columns, far smaller, follow it.
            weight = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)
            columns = columns.view(n, c, kh * kw, -1).permute(0, 3, 2, 1).reshape(pixels, -1).t()
        else:
            weight = self.weight.reshape(self.out_channels, -1)
            columns = columns.transpose(1, 2).reshape(pixels, -1).t()
        y = product(weight, columns)
        y = y.reshape(self.out_channels, n, out_h, out_w).transpose(0, 1).contiguous()
        if channels_last(x) or weight_channels_last:  # as PyTorch's convolution lays out its output
            y = y.contiguous(memory_format=torch.channels_last)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)
