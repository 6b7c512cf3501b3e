"""Assembled models: the registered parts, pix2pix and CycleGAN with their named configurations."""

from imgtrans.models import parts, timm_parts  # noqa: F401  (register the parts)
from imgtrans.models.cyclegan import CycleGAN, cyclegan
from imgtrans.models.pix2pix import CONFIGURATIONS, Pix2Pix, pix2pix

__all__ = ["CONFIGURATIONS", "CycleGAN", "Pix2Pix", "cyclegan", "pix2pix"]
