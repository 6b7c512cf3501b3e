"""The named generators and discriminators of the paper and the reference code, and pix2pixHD's."""

from __future__ import annotations

from imgtrans.blocks import (
    GlobalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
    PatchDiscriminator,
    ResnetGenerator,
    UNetGenerator,
)
from imgtrans.registry import register

register("unet256", UNetGenerator, num_downs=8, description="U-Net generator, 8 downsamplings, for 256x256 (6.1.1)")
register(
    "unet256-reference",
    UNetGenerator,
    num_downs=8,
    dropout_layout="reference",
    description="U-Net 256 with the reference code's dropout placement (its published checkpoints)",
)
register("unet128", UNetGenerator, num_downs=7, description="U-Net generator, 7 downsamplings, for 128x128")
register(
    "encoder-decoder256",
    UNetGenerator,
    num_downs=8,
    skips=False,
    description="encoder-decoder generator: the U-Net 256 without skips (Table 2)",
)
register("resnet9", ResnetGenerator, n_blocks=9, description="ResNet generator, 9 residual blocks (reference code)")
register("resnet6", ResnetGenerator, n_blocks=6, description="ResNet generator, 6 residual blocks (reference code)")
register("pixelgan", PatchDiscriminator, n_layers=0, description="1x1 PixelGAN discriminator (6.1.2)")
register("patchgan16", PatchDiscriminator, n_layers=1, description="16x16 PatchGAN discriminator (6.1.2)")
register("patchgan70", PatchDiscriminator, n_layers=3, description="70x70 PatchGAN discriminator, the paper's default")
register("patchgan286", PatchDiscriminator, n_layers=5, description="286x286 'ImageGAN' discriminator (6.1.2)")
register("pix2pixhd-global", GlobalGenerator, description="pix2pixHD global generator G1 (Wang et al. 2018, 3.2)")
register(
    "pix2pixhd-local",
    LocalEnhancer,
    description="pix2pixHD coarse-to-fine generator: G1 plus local enhancers on an image pyramid (3.2)",
)
register(
    "multiscale-patchgan",
    MultiscaleDiscriminator,
    description="pix2pixHD multi-scale discriminator: PatchGANs on an average-pooled pyramid (3.2)",
)

REFERENCE_ARCHS: tuple[str, ...] = (
    "unet256",
    "unet128",
    "encoder-decoder256",
    "resnet9",
    "resnet6",
    "patchgan70",
    "patchgan16",
    "patchgan286",
    "pixelgan",
    "pix2pixhd-global",
    "pix2pixhd-local",
    "multiscale-patchgan",
)
"""The parts whose checkpoints of the reference implementations (pix2pix/CycleGAN, pix2pixHD)
[imgtrans.store.reference][] converts."""
