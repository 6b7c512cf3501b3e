"""Assembled models: the registered parts and the pix2pix model with its named configurations."""

from imgtrans.models import parts, timm_parts  # noqa: F401  (register the parts)
from imgtrans.models.pix2pix import CONFIGURATIONS, Pix2Pix, pix2pix

__all__ = ["CONFIGURATIONS", "Pix2Pix", "pix2pix"]
