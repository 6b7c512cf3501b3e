"""Weight initialisation of section 6.2: weights drawn from N(0, 0.02)."""

from __future__ import annotations

from torch import nn

_NORMS = (nn.BatchNorm2d, nn.InstanceNorm2d)


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise every convolution of ``module`` from N(0, ``std``) and its biases to zero.

    Norm layers with affine parameters get scales from N(1, ``std``) and zero shifts, as in the
    reference implementation's ``init_type="normal"``. Returns ``module`` for chaining.
    """
    for m in module.modules():
        if getattr(getattr(m, "weight", None), "is_meta", False):
            continue  # a layout on the meta device has no values (and torch's meta normal_ imports dynamo: 1 s)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module
