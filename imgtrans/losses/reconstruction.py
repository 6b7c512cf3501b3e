r"""The reconstruction term of the pix2pix objective (section 3.1, equation 3).

$\mathcal{L}_{L1}(G) = \mathbb{E}_{x,y,z}\left[\lVert y - G(x, z)\rVert_1\right]$, averaged over
pixels and channels; the paper weights it by $\lambda = 100$ against the cGAN term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between the generator's ``output`` and the ``target`` image."""
    if output.shape != target.shape:
        raise ValueError(
            f"output and target must have the same shape; got {tuple(output.shape)} and {tuple(target.shape)}"
        )
    return F.l1_loss(output, target)
