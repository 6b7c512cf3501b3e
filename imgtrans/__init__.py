"""imgtrans: composable parts for image-to-image translation GANs, built around pix2pix.

Isola, Zhu, Zhou, Efros, "Image-to-Image Translation with Conditional Adversarial Networks",
CVPR 2017.

The public names below are imported when first used (PEP 562), so that importing one module
(``imgtrans.registry``, ``imgtrans.blocks``) loads only what that module needs.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("imgtrans")  # the one place it is written is pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_PUBLIC = {
    "CDk": "imgtrans.blocks",
    "Ck": "imgtrans.blocks",
    "PatchDiscriminator": "imgtrans.blocks",
    "ResnetGenerator": "imgtrans.blocks",
    "TimmUNetGenerator": "imgtrans.blocks",
    "UNetGenerator": "imgtrans.blocks",
    "init_weights": "imgtrans.blocks",
    "stack": "imgtrans.blocks",
    "GANLoss": "imgtrans.losses",
    "PerceptualLoss": "imgtrans.losses",
    "gradient_penalty": "imgtrans.losses",
    "l1_loss": "imgtrans.losses",
    "ModelConfig": "imgtrans.config",
    "Pix2Pix": "imgtrans.models",
    "build": "imgtrans.factory",
    "from_pretrained": "imgtrans.factory",
    "load": "imgtrans.factory",
    "save_pretrained": "imgtrans.factory",
    "list_models": "imgtrans.registry",
    "register": "imgtrans.registry",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'imgtrans' has no attribute {name!r}")
    import_module("imgtrans.models")  # the built-in names are registered before any is looked up
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


if TYPE_CHECKING:  # for type checkers and documentation tools, which do not run __getattr__
    from imgtrans.blocks import CDk, Ck, PatchDiscriminator, ResnetGenerator, TimmUNetGenerator, UNetGenerator, init_weights, stack
    from imgtrans.config import ModelConfig
    from imgtrans.factory import build, from_pretrained, load, save_pretrained
    from imgtrans.losses import GANLoss, PerceptualLoss, gradient_penalty, l1_loss
    from imgtrans.models import Pix2Pix
    from imgtrans.registry import list_models, register
