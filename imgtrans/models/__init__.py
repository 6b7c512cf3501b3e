"""Assembled models: the registered parts, and the pix2pix and pix2pixHD models with their named configurations."""

from imgtrans.models import parts, timm_parts  # noqa: F401  (register the parts)
from imgtrans.models.pix2pix import CONFIGURATIONS, Pix2Pix, pix2pix
from imgtrans.models.pix2pixhd import Pix2PixHD, pix2pixhd

__all__ = ["CONFIGURATIONS", "Pix2Pix", "Pix2PixHD", "pix2pix", "pix2pixhd"]
