r"""The matrix product of the matmul convolutions, in float32 through oneDNN rather than MKL.

PyTorch computes a float32 ``a @ b`` on the CPU with MKL's sgemm, and bfloat16 with oneDNN's
matmul. The layers of [MatmulConv2d][imgtrans.blocks.unfolded.MatmulConv2d] and
[MatmulConvTranspose2d][imgtrans.blocks.transposed.MatmulConvTranspose2d] multiply large weights
(up to 8192 x 1024) by a few columns (1 to 256 pixels), and there sgemm is slow and erratic: a
product's speed swings by 3x with the operands' memory layout, and 4 columns cost as much as 4
products of one. oneDNN's matmul on the same operands (its ``linear`` primitive, which PyTorch
registers as ``mkldnn::_linear_pointwise``) computes the same float32 function,

$$C = A B, \qquad \partial A = \partial C\, B^\top, \qquad \partial B = A^\top \partial C,$$

faster. In a U-Net 256 training step (256x256, batch 1, 2 AVX-512 cores) its 27 products take 96
ms against MKL's 179, and the whole step 13% less (726 -> 634 ms; docs/performance.md). Other
dtypes, autocast (whose bfloat16 products are oneDNN's already), graphs being compiled, and builds
without oneDNN or off x86 use ``a @ b``.
"""

from __future__ import annotations

import platform

import torch


def _onednn_linear():
    """oneDNN's ``linear`` (``x @ w.T``) on x86 builds that register it (where it was measured), else ``None``."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return None


_LINEAR = _onednn_linear()


def _column_major(m: torch.Tensor) -> bool:
    return m.shape[0] > 1 and m.shape[1] > 1 and m.stride(0) == 1


def _onednn_product(a: torch.Tensor, b: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` as ``linear(x, w) = x w^T``: ``(x, w) = (a, b^T)`` gives it row-major, ``(b^T, a)`` column-major.

    oneDNN copies a column-major ``x`` before multiplying (8 ms for the 8192 x 512 transposed weight of
    a 2x2 layer's input gradient, against 0.6 ms for the same product the other way round), while a
    column-major ``w`` costs nothing. A gradient should come out in the layout of its operand
    ``like``: autograd copies a weight's gradient into the weight's layout otherwise (13 ms for a
    16 MB weight whose layer takes channels-last inputs). The orientation that copies fewer elements wins.
    """
    result = a.shape[0] * b.shape[1]
    wants_columns = like is not None and _column_major(like)
    row_copies = (a.numel() if _column_major(a) else 0) + (result if wants_columns else 0)
    column_copies = (b.numel() if _column_major(b.t()) else 0) + (result if like is not None and not wants_columns else 0)
    if column_copies < row_copies:
        return _LINEAR(b.t(), a, None, "none", [], "").t()
    return _LINEAR(a, b.t(), None, "none", [], "")


class _OneDNNProduct(torch.autograd.Function):
    """``a @ b`` and both of its gradients, each as one oneDNN product in its operand's layout."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, like: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return _onednn_product(a, b, like)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # Through product() again, so that a backward with create_graph (WGAN-GP's gradient penalty)
        # is differentiable in turn: oneDNN's linear has no derivative of its own.
        a, b = ctx.saved_tensors
        grad_a = product(grad, b.t(), like=a) if ctx.needs_input_grad[0] else None
        grad_b = product(a.t(), grad, like=b) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


def product(a: torch.Tensor, b: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` for 2-D ``a`` and ``b``; float32 CPU tensors outside autocast go through oneDNN.

    ``like``: a tensor whose layout (row- or column-major) the result should take where that is cheap.
    """
    onednn = _LINEAR is not None and a.dtype == b.dtype == torch.float32 and a.device.type == b.device.type == "cpu"
    # Autocast's bfloat16 products are oneDNN's already (this path measured no faster, nor did float32
    # for the smallest); torch.compile writes its own products and lowers oneDNN's only for constant weights.
    if not onednn or torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling():
        return a @ b
    return _OneDNNProduct.apply(a, b, like)
