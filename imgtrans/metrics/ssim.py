r"""Structural similarity (SSIM) of Wang, Bovik, Sheikh and Simoncelli (IEEE TIP 2004).

The paper's reference implementation (``ssim_index.m``) with its default parameters: a
Gaussian window of $11 \times 11$ pixels with $\sigma = 1.5$, $K_1 = 0.01$, $K_2 = 0.03$ and
data range $L = 1$ on $[0, 1]$ images (see [imgtrans.metrics.images][imgtrans.metrics.images]).

**Borders.** As in ``ssim_index.m`` (``filter2(..., 'valid')``), the window is only placed
where it lies wholly inside the image: the SSIM map of an $H \times W$ image is
$(H - 10) \times (W - 10)$, and no padding value enters the score. Images must therefore be at
least $11 \times 11$. The automatic down-sampling that Wang et al.'s later script applies to
images larger than 256 pixels is not done here.

**Colour.** SSIM is computed on each channel separately and the maps are averaged over
channels and positions, giving one score per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imgtrans.metrics.images import check_pair

WINDOW_SIZE = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = SIGMA, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The 1-D Gaussian $g_k \propto \exp\left(-\frac{(k - (s-1)/2)^2}{2\sigma^2}\right)$, summing to 1.

    The 2-D window is the outer product $g g^\top$, applied as two 1-D convolutions.
    """
    offsets = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-offsets.square() / (2 * sigma**2))
    return g / g.sum()


def ssim_map(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""The local SSIM of every channel at every window position, shape ``(N, C, H-10, W-10)``.

    With $\mu$, $\sigma^2$ and $\sigma_{uv}$ the Gaussian-weighted local means, variances and
    covariance of the output $u$ and target $v$ (on $[0, 1]$),

    $$\mathrm{SSIM}(u, v) = \frac{(2\mu_u\mu_v + C_1)(2\sigma_{uv} + C_2)}
    {(\mu_u^2 + \mu_v^2 + C_1)(\sigma_u^2 + \sigma_v^2 + C_2)}, \quad
    C_1 = (K_1 L)^2,\ C_2 = (K_2 L)^2,\ L = 1.$$

    Raises:
        ValueError: The shapes differ, break the image convention, or are smaller than
            $11 \times 11$.
    """
    u, v = check_pair(output, target)
    height, width = u.shape[-2:]
    if height < WINDOW_SIZE or width < WINDOW_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {WINDOW_SIZE}x{WINDOW_SIZE} pixels (its Gaussian window); "
            f"got {height}x{width}"
        )
    channels = u.shape[1]
    g = gaussian_window(dtype=u.dtype).to(u.device)
    rows = g.view(1, 1, 1, -1).expand(channels, 1, 1, WINDOW_SIZE)
    cols = g.view(1, 1, -1, 1).expand(channels, 1, WINDOW_SIZE, 1)

    def local_mean(x: torch.Tensor) -> torch.Tensor:  # Gaussian-weighted, 'valid' positions only
        return F.conv2d(F.conv2d(x, rows, groups=channels), cols, groups=channels)

    mu_u, mu_v = local_mean(u), local_mean(v)
    var_u = local_mean(u * u) - mu_u.square()
    var_v = local_mean(v * v) - mu_v.square()
    cov = local_mean(u * v) - mu_u * mu_v
    c1, c2 = K1**2, K2**2
    return ((2 * mu_u * mu_v + c1) * (2 * cov + c2)) / ((mu_u.square() + mu_v.square() + c1) * (var_u + var_v + c2))


def ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Mean SSIM of each image: the [ssim_map][imgtrans.metrics.ssim.ssim_map] averaged over channels and positions.

    Identical images give 1; a pair of constant images $a$ and $b$ (on $[0, 1]$) gives
    $\frac{2ab + C_1}{a^2 + b^2 + C_1}$, since their variances and covariance vanish.

    Args:
        output: Generated images ``(N, C, H, W)`` in $[-1, 1]$, $H, W \geq 11$.
        target: Ground-truth images of the same shape, in $[-1, 1]$.

    Returns:
        Shape ``(N,)``, float64, in $[-1, 1]$.
    """
    return ssim_map(output, target).mean(dim=(1, 2, 3))
