r"""Sharpness relative to the target: the paper's claim that L1 blurs and the GAN term sharpens.

Section 4.2 and Figure 4: L1 alone "leads to reasonable but blurry results", while the cGAN
"produces much sharper results", restoring high frequencies. Gradient energy measures the
high-frequency content of an image; its ratio to the target's says how much of it an output
restored.
"""

from __future__ import annotations

import torch

from imgtrans.metrics.images import check_pair, to_unit_range


def _energy(u: torch.Tensor) -> torch.Tensor:
    dx = u[..., :, 1:] - u[..., :, :-1]
    dy = u[..., 1:, :] - u[..., :-1, :]
    return dx.square().mean(dim=(1, 2, 3)) + dy.square().mean(dim=(1, 2, 3))


def gradient_energy(images: torch.Tensor) -> torch.Tensor:
    r"""Mean squared forward difference of each image, on the $[0, 1]$ scale.

    $$E(u) = \frac{1}{CH(W-1)} \sum_{c,i,j} (u_{c,i,j+1} - u_{c,i,j})^2
    + \frac{1}{C(H-1)W} \sum_{c,i,j} (u_{c,i+1,j} - u_{c,i,j})^2.$$

    Args:
        images: ``(N, C, H, W)`` in $[-1, 1]$, $H, W \geq 2$.

    Returns:
        Shape ``(N,)``, float64; 0 for a constant image.
    """
    u = to_unit_range(images)
    if min(u.shape[-2:]) < 2:
        raise ValueError(f"gradient energy needs images of at least 2x2 pixels; got {tuple(u.shape[-2:])}")
    return _energy(u)


def relative_sharpness(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Gradient energy of each output relative to its target's: $S = E(\text{output}) / E(\text{target})$.

    $S = 1$: as much high-frequency energy as the target ("as sharp as the target");
    $S < 1$: blurrier; $S > 1$: more than the target, from over-sharpening, noise or artefacts.
    The ratio does not depend on the $[0, 1]$ vs $[-1, 1]$ scale. A constant target has no
    energy: $S = 1$ if the output is constant too, else $+\infty$ (written ``"inf"`` in
    ``metrics.json``).

    Args:
        output: Generated images ``(N, C, H, W)`` in $[-1, 1]$, $H, W \geq 2$.
        target: Ground-truth images of the same shape, in $[-1, 1]$.

    Returns:
        Shape ``(N,)``, float64, in $[0, +\infty]$.
    """
    u, v = check_pair(output, target)
    if min(u.shape[-2:]) < 2:
        raise ValueError(f"sharpness needs images of at least 2x2 pixels; got {tuple(u.shape[-2:])}")
    energy_out, energy_target = _energy(u), _energy(v)
    ratio = energy_out / energy_target  # x / 0 = inf for x > 0; 0 / 0 = nan, set to 1 below
    return torch.where((energy_out == 0) & (energy_target == 0), torch.ones_like(ratio), ratio)
