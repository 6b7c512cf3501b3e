"""Losses of the pix2pix objective: adversarial variants, the L1 term, and an optional perceptual term."""

from imgtrans.losses.gan import GAN_MODES, GANLoss, gradient_penalty
from imgtrans.losses.perceptual import PerceptualLoss
from imgtrans.losses.reconstruction import l1_loss

__all__ = ["GAN_MODES", "GANLoss", "PerceptualLoss", "gradient_penalty", "l1_loss"]
