"""imgtrans: composable parts for image-to-image translation GANs, built around pix2pix.

Isola, Zhu, Zhou, Efros, "Image-to-Image Translation with Conditional Adversarial Networks",
CVPR 2017.

The public names below are imported when first used (PEP 562), so that importing one module
(``imgtrans.registry``, ``imgtrans.blocks``) loads only what that module needs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
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
    "ModelConfig": "imgtrans.store.config",
    "Pix2Pix": "imgtrans.models",
    "build": "imgtrans.store.factory",
    "from_pretrained": "imgtrans.store.factory",
    "load": "imgtrans.store.factory",
    "save_pretrained": "imgtrans.store.factory",
    "list_models": "imgtrans.registry",
    "register": "imgtrans.registry",
    "translate_image": "imgtrans.inference",
}
__all__ = sorted(_PUBLIC)

# Modules that moved when the package grew into layers (store/, deploy/, data/, metrics/, train/);
# their old import paths keep working, as the very same module objects, without a file each.
MOVED = {
    "imgtrans.config": "imgtrans.store.config",
    "imgtrans.weights": "imgtrans.store.weights",
    "imgtrans.checkpoint": "imgtrans.store.checkpoint",
    "imgtrans.card": "imgtrans.store.card",
    "imgtrans.reference": "imgtrans.store.reference",
    "imgtrans.zoo": "imgtrans.store.zoo",
    "imgtrans.factory": "imgtrans.store.factory",
    "imgtrans.datasets": "imgtrans.data.downloads",
    "imgtrans.evaluation": "imgtrans.metrics.scoring",
    "imgtrans.metrics.evaluate": "imgtrans.metrics.tally",
    "imgtrans.runtime": "imgtrans.deploy.translators",
    "imgtrans.export": "imgtrans.deploy.onnx",
    "imgtrans.quantization": "imgtrans.deploy.int8",
    "imgtrans.fusion": "imgtrans.deploy.fusion",
    "imgtrans.train.config": "imgtrans.train.settings",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path (``imgtrans.factory``) as the module now at its new one (``imgtrans.store.factory``)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name in MOVED else None

    def create_module(self, spec):
        module = import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # the import system sets __spec__ to the old name's; put it back
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = module.__spec__.loader_state  # the module itself ran under its new name


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())


def __getattr__(name: str) -> Any:
    if f"imgtrans.{name}" in MOVED:
        return import_module(f"imgtrans.{name}")
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
    from imgtrans.store.config import ModelConfig
    from imgtrans.store.factory import build, from_pretrained, load, save_pretrained
    from imgtrans.losses import GANLoss, PerceptualLoss, gradient_penalty, l1_loss
    from imgtrans.models import Pix2Pix
    from imgtrans.registry import list_models, register
