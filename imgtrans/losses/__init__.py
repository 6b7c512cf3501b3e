"""Losses of the pix2pix objective: adversarial variants and the L1 reconstruction term."""

from imgtrans.losses.gan import GAN_MODES, GANLoss, gradient_penalty
from imgtrans.losses.reconstruction import l1_loss

__all__ = ["GAN_MODES", "GANLoss", "gradient_penalty", "l1_loss"]
