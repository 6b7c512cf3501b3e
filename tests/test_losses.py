import math

import pytest
import torch
from torch import nn

from imgtrans.losses import GANLoss, gradient_penalty, l1_loss

LOG2 = math.log(2)


def full(value: float) -> torch.Tensor:
    return torch.full((2, 1, 3, 3), value)


@pytest.mark.parametrize(
    "mode, real, fake, d_expected, g_expected",
    [
        ("vanilla", 0.0, 0.0, 2 * LOG2, LOG2),
        ("vanilla", math.log(3), -math.log(3), 2 * math.log(4 / 3), math.log(4)),
        ("lsgan", 1.0, 0.0, 0.0, 1.0),
        ("lsgan", 0.5, 0.5, 0.5, 0.25),
        ("hinge", 2.0, -2.0, 0.0, 2.0),
        ("hinge", 0.0, 0.0, 2.0, 0.0),
        ("wgan", 3.0, 1.0, -2.0, -1.0),
    ],
)
def test_loss_values_by_hand(mode, real, fake, d_expected, g_expected):
    loss = GANLoss(mode)
    assert loss.discriminator(full(real), full(fake)).item() == pytest.approx(d_expected, abs=1e-6)
    assert loss.generator(full(fake)).item() == pytest.approx(g_expected, abs=1e-6)


def test_vanilla_is_bce_on_logits_and_non_saturating():
    real, fake = torch.randn(4, 1, 5, 5), torch.randn(4, 1, 5, 5)
    bce = nn.BCEWithLogitsLoss()
    loss = GANLoss("vanilla")
    expected_d = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
    torch.testing.assert_close(loss.discriminator(real, fake), expected_d)
    # G maximises log D(G(x)) instead of minimising log(1 - D(G(x)))
    torch.testing.assert_close(loss.generator(fake), bce(fake, torch.ones_like(fake)))
    # ...which keeps strong gradients where D confidently rejects the fake (section 3.3 / Goodfellow 2014)
    confident = torch.full((1,), -10.0, requires_grad=True)
    loss.generator(confident).backward()
    assert confident.grad.abs().item() > 0.99


def test_unknown_mode():
    with pytest.raises(ValueError, match="gan_mode must be one of 'vanilla', 'lsgan', 'hinge', 'wgan'; got 'bce'"):
        GANLoss("bce")


def test_gradient_penalty_of_a_linear_critic():
    w = torch.tensor([3.0, 4.0])  # |grad| = 5 everywhere

    def critic(x: torch.Tensor) -> torch.Tensor:
        return x @ w

    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(10 * (5 - 1) ** 2)
    assert gradient_penalty(critic, real, fake, weight=1.0).item() == pytest.approx(16.0)


def test_gradient_penalty_backpropagates_to_the_critic():
    critic = nn.Conv2d(6, 1, 3)
    penalty = gradient_penalty(critic, torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8))
    penalty.backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_l1_by_hand_and_shape_check():
    assert l1_loss(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), -0.5)).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        l1_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2))
