"""Named parts built on timm backbones: U-Net generators with pretrained encoders, perceptual losses.

Not in the paper. Each ``unet-*`` generator is a
[TimmUNetGenerator][imgtrans.blocks.timm_unet.TimmUNetGenerator]; swap it into pix2pix with
``imgtrans.build("pix2pix-l1-cgan", generator="unet-resnet34")`` (configurations that set
``generator_args`` for the paper's U-Net, such as ``pix2pix-facades``, need them replaced:
``generator_args={}``). The ``perceptual-*`` losses are
[PerceptualLoss][imgtrans.losses.perceptual.PerceptualLoss]es, added to pix2pix's objective with
``perceptual="perceptual-vgg16"``.
"""

from __future__ import annotations

from imgtrans.blocks import TimmUNetGenerator
from imgtrans.losses.perceptual import PIX2PIXHD_WEIGHTS, VGG16_LAYERS, PerceptualLoss, VGG19Loss
from imgtrans.registry import register

ENCODERS: dict[str, str] = {
    "resnet34": "ResNet-34",
    "convnext_tiny": "ConvNeXt-T",
    "efficientnet_b0": "EfficientNet-B0",
    "mobilenetv3_large_100": "MobileNetV3-Large",
}
"""The timm backbones registered as ``unet-NAME``, with the family they stand for."""

register(
    "unet-timm",
    TimmUNetGenerator,
    description="U-Net generator with any timm backbone as its encoder (encoder='NAME')",
)
for _encoder, _family in ENCODERS.items():
    register(
        f"unet-{_encoder}",
        TimmUNetGenerator,
        encoder=_encoder,
        description=f"U-Net generator with a timm {_family} encoder ({_encoder})",
    )

register(
    "perceptual-vgg16",
    PerceptualLoss,
    backbone="vgg16",
    layers=VGG16_LAYERS,
    layer_weights=PIX2PIXHD_WEIGHTS,
    description="perceptual loss: L1 on VGG-16 relu1_2..relu5_3 features, pix2pixHD's layer weights",
)
register(
    "perceptual-vgg19",
    VGG19Loss,
    description="pix2pixHD's VGG loss: L1 on VGG-19 relu1_1..relu5_1 of unnormalised images, weights 1/32..1",
)
register(
    "perceptual-timm",
    PerceptualLoss,
    description="perceptual loss on any timm backbone (backbone='NAME', layers=..., layer_weights=...)",
)
