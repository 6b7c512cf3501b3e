r"""The paper's colour analysis (section 4.2, Figure 7): Lab marginals and histogram intersection.

The paper argues that L1 alone "encourages average, grayish colors" and that the cGAN pushes
the output's colour distribution towards the ground truth's. It plots, over a whole test set,
the marginal distributions of the L, a and b values of the output pixels against those of the
targets (as log probabilities), and scores each marginal by its histogram intersection with
the target's (for instance L1: 0.81, 0.69, 0.70; L1+cGAN: 0.86, 0.84, 0.82 on Cityscapes).

Here: sRGB images are converted to CIE Lab (D65) by
[rgb_to_lab][imgtrans.metrics.color.rgb_to_lab]; each channel is counted into bins one Lab
unit wide, centred on the integers (``LAB_AXES``), so that neutral colours ($a = b = 0$) sit in
the middle of a bin rather than on an edge where rounding noise would split them; and
[histogram_intersection][imgtrans.metrics.color.histogram_intersection] compares the
normalised histograms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from imgtrans.metrics.images import to_unit_range

# Linear sRGB -> CIE XYZ, D65 white (IEC 61966-2-1).
SRGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)


@dataclass(frozen=True)
class HistogramAxis:
    """The bins of one Lab channel: ``bins`` bins of equal width spanning ``[low, high]``."""

    name: str
    low: float
    high: float
    bins: int

    @property
    def width(self) -> float:
        """The width of one bin."""
        return (self.high - self.low) / self.bins

    def centers(self) -> torch.Tensor:
        """The centre of every bin, shape ``(bins,)``."""
        return self.low + self.width * (torch.arange(self.bins, dtype=torch.float64) + 0.5)

    def count(self, values: torch.Tensor) -> torch.Tensor:
        """How many ``values`` fall in each bin, shape ``(bins,)``, int64.

        Values below ``low`` or above ``high`` (only rounding noise for sRGB colours) are
        counted in the first or last bin.
        """
        index = torch.floor((values.reshape(-1) - self.low) / self.width).clamp(0, self.bins - 1).long()
        return torch.bincount(index, minlength=self.bins).cpu()


# One Lab unit per bin, centred on the integers: L in 0..100, a and b in -128..128 (which holds
# every sRGB colour: a spans about [-86, 98] and b about [-108, 95]).
LAB_AXES: tuple[HistogramAxis, ...] = (
    HistogramAxis("L", -0.5, 100.5, 101),
    HistogramAxis("a", -128.5, 128.5, 257),
    HistogramAxis("b", -128.5, 128.5, 257),
)


def srgb_to_linear(u: torch.Tensor) -> torch.Tensor:
    r"""Undo the sRGB transfer curve on $[0, 1]$ values.

    $c_{lin} = c / 12.92$ if $c \leq 0.04045$, else $\left(\frac{c + 0.055}{1.055}\right)^{2.4}$.
    """
    return torch.where(u <= 0.04045, u / 12.92, ((u + 0.055) / 1.055).pow(2.4))


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    r"""Convert sRGB images in $[-1, 1]$ to CIE Lab with the D65 white point.

    After mapping to $[0, 1]$ and undoing the sRGB curve
    ([srgb_to_linear][imgtrans.metrics.color.srgb_to_linear]), $(X, Y, Z) = M (R, G, B)$ with the
    sRGB matrix ``SRGB_TO_XYZ``, normalised by the white $(X_n, Y_n, Z_n) = M (1, 1, 1)$
    (D65: 0.95047, 1, 1.08883), then

    $$L = 116 f(Y/Y_n) - 16, \quad a = 500\,[f(X/X_n) - f(Y/Y_n)], \quad b = 200\,[f(Y/Y_n) - f(Z/Z_n)],$$

    $f(t) = t^{1/3}$ if $t > \delta^3$, else $\frac{t}{3\delta^2} + \frac{4}{29}$, with
    $\delta = 6/29$. White gives $(100, 0, 0)$, black $(0, 0, 0)$, pure red about
    $(53.24, 80.09, 67.20)$.

    Args:
        images: ``(N, 3, H, W)`` sRGB in $[-1, 1]$.

    Returns:
        ``(N, 3, H, W)`` float64: $L \in [0, 100]$, then $a$ and $b$.

    Raises:
        ValueError: Not 3 channels (for gray images use
            [lab_histograms][imgtrans.metrics.color.lab_histograms], which handles them), or
            outside the image convention.
    """
    u = to_unit_range(images)
    if u.shape[1] != 3:
        raise ValueError(f"Lab conversion needs RGB images with 3 channels; got {u.shape[1]} channels")
    matrix = torch.tensor(SRGB_TO_XYZ, dtype=u.dtype, device=u.device)
    white = matrix.sum(dim=1)
    xyz = torch.einsum("kc,nchw->nkhw", matrix, srgb_to_linear(u)) / white.view(1, 3, 1, 1)
    delta = 6 / 29
    f = torch.where(xyz > delta**3, xyz.clamp(min=delta**3).pow(1 / 3), xyz / (3 * delta**2) + 4 / 29)
    fx, fy, fz = f.unbind(dim=1)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim=1)


def lab_histograms(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Counts of the L, a and b values of every pixel of a batch, binned as ``LAB_AXES``.

    Gray images (1 channel) are read as $R = G = B$: their $a$ and $b$ are zero by
    construction and carry no information, so only ``"L"`` is returned for them.

    Args:
        images: ``(N, 3, H, W)`` sRGB or ``(N, 1, H, W)`` gray, in $[-1, 1]$.

    Returns:
        ``{"L": counts, "a": counts, "b": counts}`` (only ``"L"`` for gray), int64 tensors of
            shape ``(bins,)`` on the CPU, summed over the batch.

    Raises:
        ValueError: Neither 1 nor 3 channels, or outside the image convention.
    """
    channels = images.shape[1] if isinstance(images, torch.Tensor) and images.ndim == 4 else None
    if channels == 1:
        lab = rgb_to_lab(images.expand(-1, 3, -1, -1))[:, :1]
    elif channels == 3:
        lab = rgb_to_lab(images)
    else:
        to_unit_range(images)  # a clear message for tensors that are not image batches at all
        raise ValueError(f"the Lab colour analysis needs RGB (3 channels) or gray (1) images; got {channels} channels")
    return {axis.name: axis.count(lab[:, k]) for k, axis in enumerate(LAB_AXES[: lab.shape[1]])}


def histogram_intersection(p: torch.Tensor, q: torch.Tensor) -> float:
    r"""Histogram intersection of two histograms after normalising each to sum 1.

    $\cap(p, q) = \sum_k \min\left(\frac{p_k}{\sum_j p_j}, \frac{q_k}{\sum_j q_j}\right)$: 1 for
    identical distributions, 0 for disjoint ones; it equals $1 - \mathrm{TV}(p, q)$, one minus
    their total variation distance.

    Args:
        p: Counts or probabilities, shape ``(bins,)``, non-negative.
        q: The same for the other distribution, same shape.

    Raises:
        ValueError: Shapes differ, a value is negative, or a histogram is empty.
    """
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"histograms must be 1-D with the same bins; got shapes {tuple(p.shape)} and {tuple(q.shape)}")
    p, q = p.double(), q.double()
    if (p < 0).any() or (q < 0).any():
        raise ValueError("histograms must not hold negative counts")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("cannot intersect an empty histogram (no values were counted)")
    return torch.minimum(p / p.sum(), q / q.sum()).sum().item()
