"""The paper's building blocks, usable one by one: plain ``nn.Module``s with no global state."""

from imgtrans.blocks.conv import CDk, Ck, parse_notation, stack
from imgtrans.blocks.init import init_weights
from imgtrans.blocks.multiscale import HDPatchDiscriminator, MultiscaleDiscriminator
from imgtrans.blocks.patchgan import PatchDiscriminator
from imgtrans.blocks.pix2pixhd import GlobalGenerator, LocalEnhancer
from imgtrans.blocks.resnet import ResnetBlock, ResnetGenerator
from imgtrans.blocks.timm_unet import TimmUNetGenerator
from imgtrans.blocks.unet import UNetGenerator

__all__ = [
    "CDk",
    "Ck",
    "GlobalGenerator",
    "HDPatchDiscriminator",
    "LocalEnhancer",
    "MultiscaleDiscriminator",
    "PatchDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "TimmUNetGenerator",
    "UNetGenerator",
    "init_weights",
    "parse_notation",
    "stack",
]
