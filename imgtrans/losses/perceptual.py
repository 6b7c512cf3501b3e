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

[VGG19Loss][imgtrans.losses.perceptual.VGG19Loss] is NVIDIA's pix2pixHD ``VGGLoss`` itself: VGG-19's
``relu1_1``, ``relu2_1``, ``relu3_1``, ``relu4_1`` and ``relu5_1`` (``features[:2]``, ``[2:7]``,
``[7:12]``, ``[12:21]``, ``[21:30]``) with the same weights, on the images in [-1, 1] as they are,
without ImageNet normalisation, as that code feeds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imgtrans.blocks.backbone import BackboneInput, create_backbone

VGG19_SLICES: tuple[int, ...] = (2, 7, 12, 21, 30)
"""Ends of pix2pixHD's ``Vgg19`` slices in VGG-19's ``features``: after ``relu1_1`` ... ``relu5_1``."""

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
        return feature_distance(self.features, self.layer_weights, output, target)

    def extra_repr(self) -> str:
        return f"backbone={self.backbone_name!r}, layers={self.layers}, layer_weights={self.layer_weights}"


class VGG19Loss(nn.Module):
    r"""pix2pixHD's VGG loss: $\sum_i w_i \lVert \phi_i(x) - \phi_i(y) \rVert_1$ on VGG-19 ``relu1_1..relu5_1``.

    Equal to NVIDIA's ``networks.VGGLoss`` given the same VGG-19 weights (torchvision's
    ``vgg19(pretrained=True)``, which timm's ``vgg19.tv_in1k`` is): the images go in unnormalised,
    the weights are $\frac{1}{32}, \frac{1}{16}, \frac{1}{8}, \frac{1}{4}, 1$ and the target's
    features are detached. The network is frozen and has no dropout or BatchNorm.

    Args:
        pretrained_vgg: load timm's ``vgg19`` ImageNet weights (from the Hugging Face cache, else
            downloaded once, see [imgtrans.hub.timm_weights][]); ``False`` leaves random weights (tests).
        vgg_weights: a local weights file instead (safetensors or a ``.pth`` state dict, read with
            ``torch.load(weights_only=True)``), with timm's or torchvision's names (``features.N.*``).
    """

    weight_arguments = {"pretrained_vgg": False, "vgg_weights": None}  # not architecture

    def __init__(self, pretrained_vgg: bool = True, vgg_weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        features = vgg19_features(VGG19_SLICES[-1])
        if vgg_weights is None and pretrained_vgg:
            from imgtrans.hub import timm_weights  # the network only when the weights are asked for

            vgg_weights = timm_weights("vgg19", ("pretrained_vgg", "vgg_weights"))
        if vgg_weights is not None:
            load_vgg_features(features, Path(vgg_weights))
        starts = (0, *VGG19_SLICES[:-1])
        self.slices = nn.ModuleList(features[a:b] for a, b in zip(starts, VGG19_SLICES))
        self.layer_weights = PIX2PIXHD_WEIGHTS
        self.requires_grad_(False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``relu1_1 .. relu5_1`` of ``images``, fed as they are."""
        out = []
        for block in self.slices:
            images = block(images)
            out.append(images)
        return out

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted sum of L1 distances between the features of ``output`` and of ``target``."""
        return feature_distance(self.features, self.layer_weights, output, target)


VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
"""VGG-19's ``features`` (configuration "E" of Simonyan and Zisserman): 3x3 convolutions, "M" a 2x2 max pooling."""


def feature_distance(features, layer_weights, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""$\sum_l w_l \lVert \phi_l(output) - \phi_l(target) \rVert_1$ (means), the target's features without gradients.

    ``features`` maps images to the list of feature maps $\phi_l$; both perceptual losses use it.
    """
    if output.shape != target.shape:
        raise ValueError(
            f"output and target must have the same shape; got {tuple(output.shape)} and {tuple(target.shape)}"
        )
    with torch.no_grad():
        target_features = features(target)
    return sum(w * F.l1_loss(a, b) for w, a, b in zip(layer_weights, features(output), target_features))


def vgg19_features(length: int) -> nn.Sequential:
    """The first ``length`` modules of VGG-19's ``features``, numbered as torchvision and timm number them."""
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG19_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return nn.Sequential(*layers[:length])


def load_vgg_features(features: nn.Sequential, path: Path) -> None:
    """Fill VGG-19's first layers from a state dict file with ``features.N.weight`` keys (timm's, torchvision's)."""
    if not path.is_file():
        raise FileNotFoundError(f"no VGG-19 weights file at {path} (given as vgg_weights)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read {path} as VGG-19 weights: {type(error).__name__}: {error}") from None
    wanted = features.state_dict()
    found = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    found = {k: v for k, v in found.items() if k in wanted}
    if set(found) != set(wanted) or any(found[k].shape != wanted[k].shape for k in wanted):
        raise ValueError(f"{path} does not hold VGG-19's convolutions as features.N.weight/bias (timm or torchvision)")
    features.load_state_dict(found)
