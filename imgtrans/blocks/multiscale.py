"""pix2pixHD's multi-scale discriminators (Wang et al., CVPR 2018, section 3.2), as NVIDIA's code builds them.

$D_1, D_2, D_3$ have one structure and see the image at full, half and quarter resolution: the
coarsest has the largest receptive field (global consistency), the finest guides details. Each is
pix2pix's 70x70 PatchGAN ``C64-C128-C256-C512`` with two differences in NVIDIA's code: every
convolution pads by 2 (``ceil((4 - 1) / 2)``, so maps are one pixel larger) and keeps its bias, and
the width is capped at 512 filters rather than at 8 times the first layer's.

The output is one list per scale, full resolution first, each holding every layer's features and
ending with the patch logits: what feature matching ([imgtrans.losses.feature_matching_loss][])
and the multi-scale [GANLoss][imgtrans.losses.GANLoss] read.

Defaults: 3 scales is the paper's (and ``MultiscaleDiscriminator``'s own default in the code), while
the code's training option ``--num_D`` defaults to 2 (its 512x1024 recipe; the 1024x2048 one passes
``--num_D 3``). ``n_layers=3`` and instance norm are both's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from imgtrans.blocks.conv import LEAKY_SLOPE, MAX_WIDTH, Norm, check_range, norm_layer
from imgtrans.blocks.pad import check_input
from imgtrans.blocks.pix2pixhd import init_like_pix2pixhd, pyramid_downsample
from imgtrans.blocks.unfolded import MatmulConv2d

KERNEL = 4
PADDING = 2  # int(np.ceil((kw - 1.0) / 2)) in NVIDIA's code; pix2pix's PatchGAN pads by 1
MAX_FILTERS = 512  # nf = min(nf * 2, 512)

Features = list[torch.Tensor]
"""One discriminator's output: every layer's feature map, the patch logits last."""


def layer(in_channels: int, out_channels: int, stride: int, norm: Norm, activation: bool = True) -> nn.Sequential:
    """One stage: 4x4 convolution padded by 2 (with bias), norm, LeakyReLU(0.2).

    The convolution is a [MatmulConv2d][imgtrans.blocks.unfolded.MatmulConv2d]: the 1-channel
    output stage trains as one product over its taps rather than a convolution padded to 16 outputs.
    """
    conv = MatmulConv2d(in_channels, out_channels, KERNEL, stride, PADDING)
    stages: OrderedDict[str, nn.Module] = OrderedDict(conv=conv)
    norm_module = norm_layer(norm, out_channels)
    if norm_module is not None:
        stages["norm"] = norm_module
    if activation:
        stages["act"] = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    return nn.Sequential(stages)


class HDPatchDiscriminator(nn.Module):
    """pix2pixHD's ``NLayerDiscriminator``: ``n_layers + 2`` stages, the last one producing the logits.

    Stage 0 has no norm; stages ``1 .. n_layers - 1`` stride 2, stage ``n_layers`` stride 1, then
    the 1-channel output convolution. Returns every stage's output (the logits last).
    """

    def __init__(
        self, in_channels: int = 6, base_channels: int = 64, n_layers: int = 3, norm: Norm = "instance"
    ) -> None:
        super().__init__()
        check_range("n_layers", n_layers, 1, 8)
        check_range("base_channels", base_channels, 1, MAX_WIDTH)
        self.in_channels = in_channels
        widths = [base_channels]
        for _ in range(n_layers):
            widths.append(min(widths[-1] * 2, MAX_FILTERS))
        stages = [layer(in_channels, widths[0], 2, "none")]
        stages += [layer(widths[n - 1], widths[n], 2 if n < n_layers else 1, norm) for n in range(1, n_layers + 1)]
        stages.append(layer(widths[n_layers], 1, 1, "none", activation=False))
        self.layers = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> Features:
        """Every stage's output for ``N x in_channels x H x W`` inputs; the last is ``N x 1 x H' x W'``."""
        features = []
        for stage in self.layers:
            x = stage(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_scales`` [HDPatchDiscriminator][imgtrans.blocks.multiscale.HDPatchDiscriminator]s on an image pyramid.

    The input is halved between scales with ``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``.

    Args:
        in_channels: channels it sees: the label map (plus the instance-boundary map) and the image
            concatenated, as for the conditional PatchGAN.
        base_channels: filters of the first layer, ``ndf`` (64).
        n_layers: depth of each scale's PatchGAN, ``n_layers_D`` (3, the 70x70 PatchGAN at full resolution).
        num_scales: discriminators, ``num_D`` (3 as in the paper; see the module's notes).
        norm: ``"instance"`` (pix2pixHD's), ``"batch"`` or ``"none"``.
        features: ``True`` returns every layer's features at each scale (``getIntermFeat``, which
            feature matching needs); ``False`` only the logits, still one list per scale.
    """

    def __init__(
        self,
        in_channels: int = 6,
        base_channels: int = 64,
        n_layers: int = 3,
        num_scales: int = 3,
        norm: Norm = "instance",
        features: bool = True,
    ) -> None:
        super().__init__()
        check_range("num_scales", num_scales, 1, 8)
        self.in_channels = in_channels
        self.features = features
        self.scales = nn.ModuleList(
            HDPatchDiscriminator(in_channels, base_channels, n_layers, norm) for _ in range(num_scales)
        )
        self.downsample = pyramid_downsample()
        init_like_pix2pixhd(self)

    def forward(self, x: torch.Tensor) -> list[Features]:
        """One list per scale, full resolution first: each stage's features and the logits last."""
        check_input(x, self.in_channels, type(self).__name__)
        outputs = []
        for i, discriminator in enumerate(self.scales):
            if i:
                x = self.downsample(x)
            result = discriminator(x)
            outputs.append(result if self.features else result[-1:])
        return outputs
