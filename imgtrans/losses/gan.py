r"""Adversarial losses on discriminator logits (pix2pix section 3.1 and 3.3, and variants).

With $D$ producing logits $d$ (one per patch) and $\sigma$ the sigmoid, the modes are:

| mode | discriminator loss | generator loss |
| --- | --- | --- |
| `vanilla` | $-\log\sigma(d_{real}) - \log(1-\sigma(d_{fake}))$ | $-\log\sigma(d_{fake})$ (non-saturating, 3.3) |
| `lsgan` | $(d_{real}-1)^2 + d_{fake}^2$ | $(d_{fake}-1)^2$ |
| `hinge` | $\max(0, 1-d_{real}) + \max(0, 1+d_{fake})$ | $-d_{fake}$ |
| `wgan` | $d_{fake} - d_{real}$ (add [gradient_penalty][imgtrans.losses.gradient_penalty]) | $-d_{fake}$ |

Each term is averaged over patches and batch. The paper's halving of the discriminator's
objective is applied by the pix2pix model, not here.

A multi-scale discriminator's output (pix2pixHD, [imgtrans.blocks.multiscale][]: one list per scale,
each ending with the logits) gives the sum over scales of each scale's term, as pix2pixHD's
``GANLoss`` computes it; one discriminator's list of features counts by its last entry, the logits.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from imgtrans.blocks.conv import check_choice

GANMode = Literal["vanilla", "lsgan", "hinge", "wgan"]
GAN_MODES: tuple[str, ...] = ("vanilla", "lsgan", "hinge", "wgan")

Logits = Union[torch.Tensor, Sequence[torch.Tensor], Sequence[Sequence[torch.Tensor]]]
"""A discriminator's output: logits, one discriminator's features ending with them, or one such list per scale."""


def scale_logits(output: Logits) -> list[torch.Tensor]:
    """The logits of each scale: ``[output]`` for a tensor, the last entry of each list otherwise."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)) and output:
        if all(isinstance(o, torch.Tensor) for o in output):
            return [output[-1]]
        if all(isinstance(o, (list, tuple)) and o and isinstance(o[-1], torch.Tensor) for o in output):
            return [o[-1] for o in output]
    raise ValueError(
        "a GAN loss takes a discriminator's logits: a tensor, a list of feature maps ending with the "
        f"logits, or one such list per scale; got {type(output).__name__}"
    )


class GANLoss(nn.Module):
    r"""The adversarial objective in one of four ``mode``s (see the table above).

    ``vanilla`` is the paper's: binary cross-entropy on logits, with the generator trained to
    maximise $\log D(x, G(x))$ rather than minimise $\log(1 - D(x, G(x)))$.

    Example:
        >>> loss = GANLoss("vanilla")
        >>> d_loss = loss.discriminator(D(real), D(fake.detach()))
        >>> g_loss = loss.generator(D(fake))
    """

    def __init__(self, mode: GANMode = "vanilla") -> None:
        super().__init__()
        check_choice("gan_mode", mode, GAN_MODES)
        self.mode = mode

    def discriminator(self, real: Logits, fake: Logits) -> torch.Tensor:
        """Loss of the discriminator given its logits on real and on generated pairs (summed over scales)."""
        reals, fakes = scale_logits(real), scale_logits(fake)
        if len(reals) != len(fakes):
            raise ValueError(f"real and fake outputs have {len(reals)} and {len(fakes)} scales; they must match")
        return _sum(self._discriminator(r, f) for r, f in zip(reals, fakes))

    def generator(self, fake: Logits) -> torch.Tensor:
        """Adversarial loss of the generator given the discriminator's logits on its output (summed over scales)."""
        return _sum(self._generator(f) for f in scale_logits(fake))

    def _discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.mode == "vanilla":
            return F.softplus(-real).mean() + F.softplus(fake).mean()
        if self.mode == "lsgan":
            return (real - 1).square().mean() + fake.square().mean()
        if self.mode == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return fake.mean() - real.mean()

    def _generator(self, fake: torch.Tensor) -> torch.Tensor:
        if self.mode == "vanilla":
            return F.softplus(-fake).mean()
        if self.mode == "lsgan":
            return (fake - 1).square().mean()
        return -fake.mean()

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def _sum(terms) -> torch.Tensor:
    """Sum without the ``0 +`` that ``sum()`` starts from (one scale gives its term unchanged)."""
    terms = iter(terms)
    total = next(terms)
    for term in terms:
        total = total + term
    return total


def gradient_penalty(
    discriminator: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
) -> torch.Tensor:
    r"""WGAN-GP penalty $\lambda\,\mathbb{E}[(\lVert\nabla_{\hat x} D(\hat x)\rVert_2 - 1)^2]$.

    $\hat x$ mixes ``real`` and ``fake`` with one uniform weight per sample (Gulrajani et al.
    2017). Pass the discriminator's inputs, i.e. the concatenated pairs for a conditional one.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape; got {tuple(real.shape)} and {tuple(fake.shape)}")
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(mixed).sum(), mixed, create_graph=True)
    return weight * (grad.flatten(1).norm(dim=1) - 1).square().mean()
