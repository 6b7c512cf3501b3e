r"""Dropout whose mask does not depend on how its input is stored.

``CDk`` drops half its units (``Dropout(0.5)``, section 6.1), in training and at test time alike
(section 3.3). PyTorch draws the mask in the input's memory order, so a channels-last input (the
U-Net on CPUs with AMX, where the trainer makes it so) would get another mask from the same random
seed than a contiguous one: runs from one seed would differ between machines, and a run could not
be checked step for step against another implementation (``benchmarks/textbook_equal.py``).
[Dropout][imgtrans.blocks.dropout.Dropout] draws it in the logical ``(N, C, H, W)`` order always,
the mask PyTorch draws for a contiguous input, bit for bit:

$$y = x \odot m / (1 - p), \qquad m_i \sim \mathrm{Bernoulli}(1 - p).$$
"""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments) drawing the same mask for an input in any memory layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """As ``nn.Dropout.forward``; a non-contiguous input gets the mask its contiguous copy would."""
        if not self.training or self.p in (0, 1) or x.is_contiguous():  # p = 1 draws no mask
            return super().forward(x)
        keep = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p).div_(1 - self.p)
        return x.mul_(keep) if self.inplace else x * keep  # PyTorch's own formula (its _dropout_impl)
