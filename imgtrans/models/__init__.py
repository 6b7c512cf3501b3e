"""Assembled models: the registered parts, and pix2pix, pix2pixHD and CycleGAN with their named configurations."""

from imgtrans.models import parts, timm_parts  # noqa: F401  (register the parts)
from imgtrans.models.cyclegan import CycleGAN, cyclegan
from imgtrans.models.pix2pix import CONFIGURATIONS, Pix2Pix, pix2pix
from imgtrans.models.pix2pixhd import Pix2PixHD, pix2pixhd

__all__ = ["CONFIGURATIONS", "CycleGAN", "Pix2Pix", "Pix2PixHD", "cyclegan", "pix2pix", "pix2pixhd"]
