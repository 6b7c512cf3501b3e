r"""The image convention of every metric: batches in $[-1, 1]$, measured on $[0, 1]$.

Every function of `imgtrans.metrics` takes batches of shape
``(N, C, H, W)`` with values in $[-1, 1]$, as imgtrans generators output them (their last
layer is a $\tanh$, section 6.1) and as the datasets normalise targets. Each metric first maps
them to $[0, 1]$ with $u = (x + 1) / 2$ and measures there, in float64: an L1 error of $d$, a
PSNR with data range 1 and SSIM constants $K_1, K_2$ all refer to that $[0, 1]$ scale. (The
training loss [l1_loss][imgtrans.losses.l1_loss] works on $[-1, 1]$, so it is twice the L1
error reported here.)
"""

from __future__ import annotations

import torch

# Values this far outside [-1, 1] are rounding noise of a tanh or a resize, and are clamped.
RANGE_TOLERANCE = 1e-3


def to_unit_range(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Check that ``images`` follow the convention and map them to $[0, 1]$, as float64.

    Args:
        images: A batch ``(N, C, H, W)`` of floating-point values in $[-1, 1]$; values up to
            ``RANGE_TOLERANCE`` outside are clamped.
        name: What to call the tensor in error messages.

    Raises:
        ValueError: Not a 4-D floating-point tensor, not finite, or outside $[-1, 1]$
            (for instance images in $[0, 255]$).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W); got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must be a batch of shape (N, C, H, W); got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"{name} must be floating point in [-1, 1]; got dtype {images.dtype} "
            "(convert 8-bit images with x.float() / 127.5 - 1)"
        )
    if images.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    low, high = images.min().item(), images.max().item()
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(
            f"{name} must lie in [-1, 1] as imgtrans models output them; got values in [{low:.4g}, {high:.4g}] "
            "(map [0, 1] images with x * 2 - 1, and 8-bit ones with x / 127.5 - 1)"
        )
    return ((images.double() + 1) / 2).clamp(0, 1)


def check_pair(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check an output batch against its target batch and map both to $[0, 1]$.

    Raises:
        ValueError: The shapes differ, or either tensor breaks the convention of
            [to_unit_range][imgtrans.metrics.images.to_unit_range].
    """
    if isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor) and output.shape != target.shape:
        raise ValueError(
            f"output and target must have the same shape; got {tuple(output.shape)} and {tuple(target.shape)}"
        )
    output = to_unit_range(output, "output")
    return output, to_unit_range(target, "target").to(output.device)
