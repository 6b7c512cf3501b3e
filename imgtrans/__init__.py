"""imgtrans: composable parts for image-to-image translation GANs, built around pix2pix.

Isola, Zhu, Zhou, Efros, "Image-to-Image Translation with Conditional Adversarial Networks",
CVPR 2017.
"""

from imgtrans import models  # noqa: F401  (registers the named parts and configurations)
from imgtrans.blocks import (
    CDk,
    Ck,
    PatchDiscriminator,
    ResnetGenerator,
    TimmUNetGenerator,
    UNetGenerator,
    init_weights,
    stack,
)
from imgtrans.losses import GANLoss, PerceptualLoss, gradient_penalty, l1_loss
from imgtrans.models import Pix2Pix
from imgtrans.registry import build, list_models, register
from imgtrans.zoo import from_pretrained, save_pretrained

__version__ = "0.1.0"

__all__ = [
    "CDk",
    "Ck",
    "GANLoss",
    "PerceptualLoss",
    "PatchDiscriminator",
    "Pix2Pix",
    "ResnetGenerator",
    "TimmUNetGenerator",
    "UNetGenerator",
    "build",
    "from_pretrained",
    "gradient_penalty",
    "init_weights",
    "l1_loss",
    "list_models",
    "register",
    "save_pretrained",
    "stack",
]
