r"""Per-pixel errors against the target: L1 and PSNR.

Both are computed per image on the $[0, 1]$ scale (see
[imgtrans.metrics.images][imgtrans.metrics.images]) and averaged over channels and pixels;
each returns one value per image, a tensor of shape ``(N,)``.
"""

from __future__ import annotations

import torch

from imgtrans.metrics.images import check_pair


def l1_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Mean absolute error of each image, on the $[0, 1]$ scale.

    $\mathrm{L1}(u, v) = \frac{1}{CHW} \sum_{c,i,j} \lvert u_{c,i,j} - v_{c,i,j} \rvert$, where
    $u$ and $v$ are the output and the target mapped to $[0, 1]$: a constant shift of $d$
    gives $d$. It is half the paper's $\mathcal{L}_{L1}$ (section 3.1, equation 3), which the
    training loss computes on $[-1, 1]$.

    Args:
        output: Generated images ``(N, C, H, W)`` in $[-1, 1]$.
        target: Ground-truth images of the same shape, in $[-1, 1]$.

    Returns:
        Shape ``(N,)``, float64.
    """
    u, v = check_pair(output, target)
    return (u - v).abs().mean(dim=(1, 2, 3))


def psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Peak signal-to-noise ratio of each image, in decibels, with data range 1.

    $\mathrm{PSNR}(u, v) = 10 \log_{10} \frac{1}{\mathrm{MSE}(u, v)}$ with
    $\mathrm{MSE}(u, v) = \frac{1}{CHW} \sum_{c,i,j} (u_{c,i,j} - v_{c,i,j})^2$ on the
    $[0, 1]$ scale. A constant shift of $d$ gives $-20 \log_{10} d$; Gaussian noise of standard
    deviation $\sigma$ gives about $-20 \log_{10} \sigma$.

    Identical images give $+\infty$ (no cap): a mean over images that contains one is
    $+\infty$ too. [write_json][imgtrans.metrics.report.write_json] writes it as the string
    ``"inf"`` so that ``metrics.json`` stays valid JSON.

    Args:
        output: Generated images ``(N, C, H, W)`` in $[-1, 1]$.
        target: Ground-truth images of the same shape, in $[-1, 1]$.

    Returns:
        Shape ``(N,)``, float64, in $(0, +\infty]$ dB.
    """
    u, v = check_pair(output, target)
    mse = (u - v).square().mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse)  # log10(0) = -inf, so identical images give +inf
