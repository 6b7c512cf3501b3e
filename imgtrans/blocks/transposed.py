"""A transposed convolution that computes small inputs as one matrix product and an overlap-add.

``ConvTranspose2d`` on the CPU goes through oneDNN, which reorders the weights on every call.
In the U-Net decoder the deepest layers have large weights (1024 x 512 x 4 x 4 = 32 MB) and tiny
inputs (1x1 to 8x8), so that reorder, not arithmetic, sets their speed in training. For such inputs
the layer is computed directly from its definition: ``columns = W^T X`` (one matrix product) then
``F.fold`` adds each column's 4x4 patch into the output (col2im). Measured on 2 CPU cores
(fp32, forward + backward), this is 2 to 3 times faster up to 512 input pixels per batch and
slower beyond, where the oneDNN path is kept. Without autograd (inference) oneDNN is kept at every
size: there its convolution runs near the CPU's peak while the matrix product runs at half of it
(U-Net 256, 256x256 batch 8, fp32: 322 ms with the matmul path, 279 ms without; compiled with
frozen weights, 280 against 231 ms). One exception in inference: a layer with fewer output channels
than a vector register holds floats (the U-Net's last layer, 3) wastes most of oneDNN's arithmetic
on padding channels, so it runs as the ordinary convolution of its four output phases
([subpixel_forward][imgtrans.blocks.subpixel.subpixel_forward]): 20 against 8.5 ms at 256x256
batch 8. All paths compute the same function; results agree to float rounding (about 1e-5).
Exported models (``torch.export``, ONNX) keep the standard operator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgtrans.blocks.product import product
from imgtrans.blocks.subpixel import phase_weight, subpixel_forward, supports
from imgtrans.blocks.unfolded import channels_last

MATMUL_MAX_PIXELS = 512  # batch x height x width of the input up to which the matmul path wins (training)
SUBPIXEL_MAX_OUT = 8  # output channels up to which inference computes the four phases (oneDNN pads to 16)


class MatmulConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same arguments, same parameters) with a faster path for small inputs.

    The matmul path is taken while autograd is on, for inputs of at most ``MATMUL_MAX_PIXELS``
    pixels per batch, when the layer has no groups, dilation or output padding. Without autograd, a
    ``4x4`` stride-2 layer with at most ``SUBPIXEL_MAX_OUT`` output channels computes its phases.
    Otherwise the usual path.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """As ``nn.ConvTranspose2d.forward``; small inputs take the matmul path in training."""
        simple = self.groups == 1 and self.dilation == (1, 1) and self.output_padding == (0, 0) and output_size is None
        # Other inputs (unbatched, wrong channels) take the usual path: its errors name the problem.
        simple = simple and x.dim() == 4 and x.shape[1] == self.in_channels
        # An exported graph keeps the standard operator, which every runtime implements for any size;
        # inference (no autograd, including torch.compile's frozen graphs) is faster in oneDNN.
        if not simple or torch.compiler.is_exporting() or x.device.type != "cpu":
            return super().forward(x, output_size)
        n, _, h, w = x.shape
        if not torch.is_grad_enabled():
            if self.out_channels <= SUBPIXEL_MAX_OUT and supports(self):
                bias = None if self.bias is None else self.bias.repeat(4)
                return subpixel_forward(x, phase_weight(self.weight), bias, self.out_channels)
            return super().forward(x, output_size)
        if n * h * w > MATMUL_MAX_PIXELS:
            return super().forward(x, output_size)
        out_h = (h - 1) * self.stride[0] - 2 * self.padding[0] + self.kernel_size[0]
        out_w = (w - 1) * self.stride[1] - 2 * self.padding[1] + self.kernel_size[1]
        # One (N h w) x in by in x (out kh kw) product for the whole batch. Written as torch.matmul(W^T, X)
        # with a 3-D X, it is folded into one product only when autograd tracks W; for frozen weights or
        # autocast's bf16 copies it broadcasts W^T over the batch, and the batched product copies it N
        # times (8 copies of 16 MB per layer at batch 8).
        rows = x.reshape(n, self.in_channels, h * w).transpose(1, 2).reshape(n * h * w, self.in_channels)
        weight_channels_last = channels_last(self.weight)
        if weight_channels_last:
            # Stored (in, kh, kw, out): the matrix in that order is a view, where reshaping to (out kh kw)
            # would copy the whole weight (32 MB) at every call; the columns, far smaller, follow it.
            taps = self.kernel_size[0] * self.kernel_size[1]
            columns = product(rows, self.weight.permute(0, 2, 3, 1).reshape(self.in_channels, -1))
            columns = columns.reshape(n, h * w, taps, self.out_channels).permute(0, 3, 2, 1).reshape(n, -1, h * w)
        else:
            columns = product(rows, self.weight.reshape(self.in_channels, -1)).reshape(n, h * w, -1).transpose(1, 2)
        y = F.fold(columns, (out_h, out_w), self.kernel_size, padding=self.padding, stride=self.stride)
        if channels_last(x) or weight_channels_last:  # as PyTorch's: concatenating mixed layouts is slow
            y = y.contiguous(memory_format=torch.channels_last)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)
