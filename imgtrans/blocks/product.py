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

One case is neither's strength: a large matrix against a vector, as at the U-Net's 1x1 bottleneck
(the 2x2 -> 1x1 layer and the 1x1 -> 2x2 one, 512 x 8192 weights). There the work is streaming the
matrix, and oneDNN's matmul does it at half the memory's speed: an outer product (a weight's gradient
at one pixel) is one broadcast multiply, and $v^\top W$ with $W$ row-major is MKL's gemv. These
products are taken in float32 under autocast too: the weight then needs no bfloat16 copy and its
gradient no cast back.
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
VECTOR_MIN_ELEMENTS = 1 << 20  # a matrix of 4 MB in float32, from which a product with a vector is memory-bound


def _column_major(m: torch.Tensor) -> bool:
    return m.shape[0] > 1 and m.shape[1] > 1 and m.stride(0) == 1


def _with_vector(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a @ b`` pairs a matrix of at least ``VECTOR_MIN_ELEMENTS`` with a vector (one size 1)."""
    (m, k), n = a.shape, b.shape[1]
    return min(m, k, n) == 1 and max(m * k, k * n, m * n) >= VECTOR_MIN_ELEMENTS


def _vector_product(a: torch.Tensor, b: torch.Tensor, like: torch.Tensor | None) -> torch.Tensor | None:
    """``a @ b`` with a vector, at the memory's speed where oneDNN's matmul is not; ``None`` where it is.

    Measured with a 512 x 8192 float32 matrix out of cache (2 AVX-512 cores): the outer product 2.55
    -> 1.08 ms, $v^\top W$ 1.93 -> 0.86 ms; the 1x1 bottleneck's two layers, forward and backward,
    6.0 -> 4.5 and 5.8 -> 4.3 ms (float32), 5.4 -> 4.4 and 5.5 -> 4.3 ms (bfloat16 autocast).
    """
    if a.shape[1] == 1:  # the outer product: written once, in the layout asked for
        return (b.t() * a.t()).t() if like is not None and _column_major(like) else a * b
    if a.shape[0] == 1 and b.stride(1) == 1:  # v^T W, W row-major
        return a @ b
    if b.shape[1] == 1 and a.stride(0) == 1:  # W^T v, the same
        return (b.t() @ a.t()).t()
    return None  # W v: oneDNN's matmul streams a row-major W as fast as gemv


def _onednn_product(a: torch.Tensor, b: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` as ``linear(x, w) = x w^T``: ``(x, w) = (a, b^T)`` gives it row-major, ``(b^T, a)`` column-major.

    oneDNN copies a column-major ``x`` before multiplying (8 ms for the 8192 x 512 transposed weight of
    a 2x2 layer's input gradient, against 0.6 ms for the same product the other way round), while a
    column-major ``w`` costs nothing. A gradient should come out in the layout of its operand
    ``like``: autograd copies a weight's gradient into the weight's layout otherwise (13 ms for a
    16 MB weight whose layer takes channels-last inputs). The orientation that copies fewer elements wins.
    """
    if _with_vector(a, b) and (vector := _vector_product(a, b, like)) is not None:
        return vector
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

    Under autocast, a large matrix times a vector is computed in float32 (the result is float32).

    ``like``: a tensor whose layout (row- or column-major) the result should take where that is cheap.
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        return a @ b  # whose error names the shapes (the kernels below would broadcast or fail obscurely)
    # torch.compile writes its own products, and lowers oneDNN's only for constant weights.
    cpu = _LINEAR is not None and a.device.type == b.device.type == "cpu" and not torch.compiler.is_compiling()
    autocast = torch.is_autocast_enabled("cpu")
    if cpu and autocast and _with_vector(a, b) and {a.dtype, b.dtype} <= {torch.float32, torch.bfloat16}:
        # With a vector, float32 is faster even under autocast: the weight is not cast either way.
        with torch.autocast("cpu", enabled=False):
            return _OneDNNProduct.apply(a.float(), b.float(), like)
    # Autocast's other bfloat16 products are oneDNN's already (this path measured no faster, nor did
    # float32 for the smallest).
    if not cpu or autocast or a.dtype != torch.float32 or b.dtype != torch.float32:
        return a @ b
    return _OneDNNProduct.apply(a, b, like)
