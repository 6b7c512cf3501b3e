r"""A perceptual (feature-matching) loss on the features of a frozen, pretrained timm network.

Beside the paper's per-pixel L1 term, image-to-image models since Johnson et al. (2016) and
pix2pixHD (Wang et al., 2018) compare output and target in the feature space of a network
pretrained for classification:

$$\mathcal{L}_{perc}(G) = \sum_l w_l \, \frac{1}{N_l} \lVert \phi_l(G(x)) - \phi_l(y) \rVert_1$$

where $\phi_l$ is level $l$ of the network's features, $N_l$ its number of elements and $w_l$
its weight. The distance is L1, as pix2pixHD's VGG loss and as the paper's own reconstruction
term.

The default network is VGG-16 (timm's ``vgg16``), the traditional choice: its feature levels are
``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3`` and ``relu5_3`` (the layers of Johnson et al.
and of LPIPS), weighted $\frac{1}{32}, \frac{1}{16}, \frac{1}{8}, \frac{1}{4}, 1$ as in pix2pixHD.
Any timm model with ``features_only=True`` works (``backbone="resnet18"`` is lighter).
[Pix2Pix][imgtrans.models.pix2pix.Pix2Pix] adds it to the objective with weight
``lambda_perceptual``.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imgtrans.blocks.backbone import BackboneInput, create_backbone

VGG16_LAYERS: tuple[int, ...] = (0, 1, 2, 3, 4)
"""timm's ``vgg16`` feature levels ``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``, ``relu5_3``."""

PIX2PIXHD_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
"""pix2pixHD's VGG loss weights, shallowest layer first."""


class PerceptualLoss(nn.Module):
    """Weighted L1 distance between a frozen timm network's features of output and target.

    Args:
        backbone: timm model name (with ``features_only=True`` support).
        layers: indices of the feature levels to compare (timm's ``out_indices``, shallowest
            level 0); the backbone is cut after the deepest one.
        layer_weights: one weight per layer; equal weights of 1 by default.
        in_channels: channels of the images compared (the generator's output channels).
        pretrained_backbone: load the backbone's pretrained weights (through timm's Hugging Face Hub
            loading, from the local cache when it holds them). A perceptual loss is meant to
            use them; ``False`` gives random features (for tests).
        backbone_weights: path of a local weights file for the backbone instead (safetensors,
            or a ``.pth`` state dict read with ``torch.load(weights_only=True)``).

    The backbone's parameters never receive gradients and it stays in eval mode (no dropout,
    BatchNorm running statistics) whatever mode the loss is put in; gradients flow to the
    output images. Images are in [-1, 1] and are normalised as the backbone was pretrained.
    The registered ``perceptual-vgg16`` is the VGG-16 / pix2pixHD recipe described above.
    """

    weight_arguments = {"pretrained_backbone": False, "backbone_weights": None}  # not architecture

    def __init__(
        self,
        backbone: str = "vgg16",
        layers: Sequence[int] = VGG16_LAYERS,
        layer_weights: Sequence[float] | None = None,
        in_channels: int = 3,
        pretrained_backbone: bool = True,
        backbone_weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        layers = tuple(layers)
        weights = (1.0,) * len(layers) if layer_weights is None else tuple(float(w) for w in layer_weights)
        if not layers or len(weights) != len(layers):
            raise ValueError(f"give one weight per layer; got layers {layers} and layer_weights {weights}")
        self.backbone_name, self.layers, self.layer_weights = backbone, layers, weights
        self.backbone = create_backbone(
            backbone,
            in_channels=in_channels,
            out_indices=layers,
            pretrained=pretrained_backbone,
            weights_file=backbone_weights,
            argument_names=("pretrained_backbone", "backbone_weights"),
        )
        self.backbone.requires_grad_(False)
        self.normalize = BackboneInput.for_backbone(self.backbone, in_channels)
        self.train(self.training)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """Set the module's mode; the backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's selected feature maps for images in [-1, 1]."""
        return list(self.backbone(self.normalize(images)))

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted sum over layers of the mean absolute feature difference."""
        if output.shape != target.shape:
            raise ValueError(
                f"output and target must have the same shape; got {tuple(output.shape)} and {tuple(target.shape)}"
            )
        with torch.no_grad():
            target_features = self.features(target)
        return sum(
            w * F.l1_loss(a, b) for w, a, b in zip(self.layer_weights, self.features(output), target_features)
        )

    def extra_repr(self) -> str:
        return f"backbone={self.backbone_name!r}, layers={self.layers}, layer_weights={self.layer_weights}"
