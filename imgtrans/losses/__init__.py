"""Losses of the pix2pix objective (adversarial variants, the L1 term, an optional perceptual term), pix2pixHD's
feature matching."""

from imgtrans.losses.feature_matching import feature_matching_loss
from imgtrans.losses.gan import GAN_MODES, GANLoss, gradient_penalty
from imgtrans.losses.perceptual import PerceptualLoss, VGG19Loss
from imgtrans.losses.reconstruction import l1_loss

__all__ = ["GAN_MODES", "GANLoss", "PerceptualLoss", "VGG19Loss", "feature_matching_loss", "gradient_penalty", "l1_loss"]
