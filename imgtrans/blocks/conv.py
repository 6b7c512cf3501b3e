"""The paper's layer notation: ``Ck`` and ``CDk`` (pix2pix, section 6.1).

``Ck`` is a Convolution-BatchNorm-ReLU layer with ``k`` filters; ``CDk`` is a
Convolution-BatchNorm-Dropout-ReLU layer with a dropout rate of 50%. All convolutions are
4x4 spatial filters applied with stride 2. Encoders and discriminators use leaky ReLUs
(slope 0.2), decoders plain ReLUs.

A stack of such layers can be written exactly as the appendix writes it::

    stack("C64-C128-C256-C512", in_channels=6, first_norm=False)
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Literal, Sequence

from torch import nn

from imgtrans.blocks.dropout import Dropout
from imgtrans.blocks.init import init_weights
from imgtrans.blocks.transposed import MatmulConvTranspose2d
from imgtrans.blocks.unfolded import MatmulConv2d

Norm = Literal["batch", "instance", "none"]
Activation = Literal["leaky", "relu", "none"]

NORMS: tuple[str, ...] = ("batch", "instance", "none")
ACTIVATIONS: tuple[str, ...] = ("leaky", "relu", "none")
LEAKY_SLOPE = 0.2


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_range(name: str, value: int, low: int, high: int | None = None) -> None:
    """Raise a ``ValueError`` unless ``low <= value <= high``: sizes are checked before any layer is made."""
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bounds}; got {value}")


MAX_WIDTH = 1024
"""The most filters a network's first layer may have (the paper's is 64): deeper layers have up to 8 times more."""


def norm_layer(norm: Norm, channels: int) -> nn.Module | None:
    """The normalisation layer for ``norm``, or ``None`` for ``"none"``.

    Instance norm has no affine parameters and no running statistics, as in the reference
    implementation (``InstanceNorm2d(affine=False, track_running_stats=False)``).
    """
    check_choice("norm", norm, NORMS)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels)
    return None


def activation_layer(activation: Activation) -> nn.Module | None:
    """``LeakyReLU(0.2)`` for ``"leaky"``, ``ReLU`` for ``"relu"``, ``None`` for ``"none"``."""
    check_choice("activation", activation, ACTIVATIONS)
    if activation == "leaky":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    if activation == "relu":
        return nn.ReLU(inplace=True)
    return None


class Ck(nn.Sequential):
    """``Ck``: 4x4 convolution with ``k`` filters, stride 2, then norm, [dropout], ReLU (6.1).

    Args:
        in_channels: channels of the input.
        k: number of filters (output channels).
        stride: convolution stride; 2 in the paper, 1 for the last layers of a PatchGAN.
        kernel_size: 4 in the paper; 1 for the PixelGAN's 1x1 convolutions.
        norm: ``"batch"`` (paper), ``"instance"`` or ``"none"``.
        dropout: dropout probability placed between the norm and the ReLU (``CDk`` uses 0.5).
        activation: ``"leaky"`` (slope 0.2, encoders and discriminators), ``"relu"``
            (decoders) or ``"none"``.
        transposed: use a transposed convolution that doubles the resolution (decoders).
        bias: whether the convolution has a bias; by default only when there is no
            BatchNorm to absorb it.

    Submodules are named ``conv``, ``norm``, ``dropout`` and ``act``; absent parts are left out.
    """

    def __init__(
        self,
        in_channels: int,
        k: int,
        *,
        stride: int = 2,
        kernel_size: int = 4,
        norm: Norm = "batch",
        dropout: float = 0.0,
        activation: Activation = "leaky",
        transposed: bool = False,
        bias: bool | None = None,
    ) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        check_range("in_channels", in_channels, 1)
        check_range("k (filters)", k, 1)
        conv_type = MatmulConvTranspose2d if transposed else MatmulConv2d
        padding = (kernel_size - 1) // 2
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=conv_type(
                in_channels, k, kernel_size, stride, padding, bias=norm != "batch" if bias is None else bias
            )
        )
        for name, layer in (
            ("norm", norm_layer(norm, k)),
            ("dropout", Dropout(dropout) if dropout > 0 else None),
            ("act", activation_layer(activation)),
        ):
            if layer is not None:
                layers[name] = layer
        super().__init__(layers)
        init_weights(self)  # each layer initialises itself, once: networks only initialise what they add


class CDk(Ck):
    """``CDk``: a [Ck][imgtrans.blocks.Ck] layer with ``Dropout(0.5)`` before the ReLU (6.1).

    Takes the same arguments as [Ck][imgtrans.blocks.Ck]; ``dropout`` defaults to 0.5.
    """

    def __init__(self, in_channels: int, k: int, *, dropout: float = 0.5, **kwargs: Any) -> None:
        super().__init__(in_channels, k, dropout=dropout, **kwargs)


_TOKEN = re.compile(r"^C(D?)(\d+)$")


def parse_notation(spec: str) -> list[tuple[int, bool]]:
    """Parse the paper's notation into ``(k, has_dropout)`` pairs.

    >>> parse_notation("CD512-C256")
    [(512, True), (256, False)]
    """
    layers = []
    for token in spec.replace(" ", "").split("-"):
        match = _TOKEN.match(token)
        if match is None:
            raise ValueError(
                f"cannot read {token!r} in {spec!r}: write layers as 'Ck' or 'CDk' joined by '-', "
                "for example 'C64-C128-CD512'"
            )
        layers.append((int(match.group(2)), bool(match.group(1))))
    return layers


def stack(
    spec: str,
    in_channels: int,
    *,
    strides: Sequence[int] | None = None,
    first_norm: bool = True,
    norm: Norm = "batch",
    dropout: float = 0.5,
    **kwargs: Any,
) -> nn.Sequential:
    """Build a chain of ``Ck``/``CDk`` layers from the paper's notation, e.g. ``"C64-C128-C256"``.

    Args:
        spec: layers joined by ``-``; ``Ck`` has ``k`` filters, ``CDk`` adds dropout.
        in_channels: channels of the input to the first layer.
        strides: one stride per layer; every layer has stride 2 by default, as in 6.1.
        first_norm: ``False`` leaves out the norm of the first layer, as the paper does for
            the first ``C64`` of the encoder and the discriminators.
        norm: the norm of every other layer.
        dropout: the rate used by ``CDk`` layers.
        **kwargs: passed on to every [Ck][imgtrans.blocks.Ck] (``activation``, ``transposed``, ``kernel_size``).
    """
    layers = parse_notation(spec)
    strides = [2] * len(layers) if strides is None else list(strides)
    if len(strides) != len(layers):
        raise ValueError(f"{spec!r} has {len(layers)} layers but {len(strides)} strides were given")
    modules = []
    for i, ((k, has_dropout), stride) in enumerate(zip(layers, strides)):
        layer_norm = norm if (i > 0 or first_norm) else "none"
        modules.append(
            Ck(in_channels, k, stride=stride, norm=layer_norm, dropout=dropout if has_dropout else 0.0, **kwargs)
        )
        in_channels = k
    return nn.Sequential(*modules)
