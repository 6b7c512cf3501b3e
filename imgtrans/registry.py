"""The name table: each registered name, what it builds, with which defaults, and its published weights.

A leaf module, as timm's ``_registry``: it imports nothing from imgtrans and builds nothing. An
[Entry][imgtrans.registry.Entry] is a class or function plus default arguments, a description,
the translation direction the configuration is meant for (when it has one) and, for the models
whose weights were published, a [Published][imgtrans.registry.Published] record written next to
the registration (see `imgtrans/models/pix2pix.py`). Building, validating and loading live in
[imgtrans.store.config][] and [imgtrans.store.factory][].

A target may declare two things about its arguments, as class (or function) attributes:

- ``weight_arguments``: ``{name: neutral value}`` for the arguments that only choose initial
  weights (``pretrained_encoder=False``, ``encoder_weights=None``). They are not architecture:
  saved configurations leave them out, and a model rebuilt to receive a state dict gets the
  neutral values, so that loading never downloads nor opens another file.
- ``part_arguments``: ``{arguments key: name key}`` for arguments that configure a registered
  part named by another argument (pix2pix's ``generator_args`` configure its ``generator``).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Mapping, TypeVar

T = TypeVar("T", bound=Callable[..., Any])
Direction = Literal["AtoB", "BtoA"]
"""Which half of a dataset's AB images is the input: ``"AtoB"`` reads A as the input, ``"BtoA"`` B."""
DIRECTIONS: tuple[str, ...] = ("AtoB", "BtoA")

PAPER = (
    "Isola, Zhu, Zhou, Efros, *Image-to-Image Translation with Conditional Adversarial Networks*, "
    "CVPR 2017 ([arXiv:1611.07004](https://arxiv.org/abs/1611.07004))"
)
REFERENCE_REPOSITORY = "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix"


@dataclass(frozen=True)
class Published:
    """Weights published for a registered model: where they are, what they translate, and their terms.

    Attributes:
        task: what the model translates, e.g. ``"architectural labels -> photo"``.
        dataset: the training data, with its origin.
        reference_file: file name of a reference-implementation checkpoint, fetched from the
            reference's address (``IMGTRANS_REFERENCE_URL`` picks a mirror) and converted.
        reference_arch: the reference architecture of that checkpoint (``"unet256"``...).
        part: the submodule of the built model that the published weights fill; ``None`` for all.
        hub: ``(repo_id, revision, filename)`` of an imgtrans-format copy on the Hugging Face
            Hub, pinned to a commit; used instead of ``reference_file`` when set.
        sha256: checksum of the downloaded file, when published.
        resolution: side of the square training crops, in pixels.
        license: licence of the weights (the training data has its own terms).
        source: who published them.
        citation: what to cite.
    """

    task: str
    dataset: str
    reference_file: str | None = None
    reference_arch: str = "unet256"
    part: str | None = "generator"
    hub: tuple[str, str, str] | None = None
    sha256: str | None = None
    resolution: int = 256
    license: str = "bsd-2-clause"
    source: str = f"reference PyTorch implementation, {REFERENCE_REPOSITORY}"
    citation: str = PAPER

    def __post_init__(self) -> None:
        if self.hub is None and self.reference_file is None:
            raise ValueError("published weights need a Hub source or a reference file")


@dataclass(frozen=True)
class Entry:
    """A registered name: what it builds, its defaults, description, direction and published weights."""

    name: str
    target: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    direction: Direction | None = None
    published: Published | None = None

    @property
    def weight_arguments(self) -> dict[str, Any]:
        """Arguments that choose initial weights only, with their neutral values (see the module)."""
        return dict(getattr(self.target, "weight_arguments", {}))

    @property
    def part_arguments(self) -> dict[str, str]:
        """``{arguments key: name key}`` for the registered parts this target builds."""
        return dict(getattr(self.target, "part_arguments", {}))

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The keyword arguments the target accepts."""
        return dict(inspect.signature(self.target).parameters)

    def arguments(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The full argument set (signature defaults, entry defaults, overrides); unknown names fail."""
        params = self.parameters()
        requested = {**self.defaults, **overrides}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [] if takes_any else [k for k in requested if k not in params]
        if unknown:
            hints = "".join(did_you_mean(k, params, n=1, cutoff=0.6, form=f"; did you mean {{}} for {k!r}?") for k in unknown)
            raise TypeError(
                f"{self.name!r} has no argument {', '.join(map(repr, unknown))}{hints}. "
                f"Its arguments are: {', '.join(params)}."
            )
        bound = inspect.signature(self.target).bind(**requested)
        bound.apply_defaults()
        return dict(bound.arguments)


_ENTRIES: dict[str, Entry] = {}


def register(
    name: str,
    target: T | None = None,
    *,
    description: str = "",
    direction: Direction | None = None,
    published: Published | None = None,
    **defaults: Any,
):
    """Register ``target`` (a class or a function returning a module) under ``name``.

    Use as a decorator, ``@register("my-generator")``, or call it with a target to register one
    class several times with different defaults::

        register("unet128", UNetGenerator, num_downs=7, description="U-Net for 128x128")

    Args:
        name: the name to build it by.
        target: the class or function; omitted when used as a decorator.
        description: one line for listings; defaults to the first line of the target's docstring.
        direction: ``"AtoB"`` or ``"BtoA"`` when the configuration is meant for one dataset
            layout (which half of its AB images is the input); ``None`` otherwise.
        published: the weights published for it, if any.
        **defaults: arguments that replace the target's own defaults.
    """
    check_direction(direction)

    def add(target: T) -> T:
        if name in _ENTRIES:
            raise ValueError(f"{name!r} is already registered; choose another name")
        doc = (inspect.getdoc(target) or "").split("\n")[0]
        item = Entry(name, target, dict(defaults), description or doc, direction, published)
        item.arguments({})  # the defaults must fit the signature
        _ENTRIES[name] = item
        return target

    return add if target is None else add(target)


class DirectionError(ValueError):
    """A direction that is neither ``"AtoB"`` nor ``"BtoA"``; ``str()`` names the parameter or flag."""

    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value = name, value
        self.problem = f"must be AtoB or BtoA; got {value!r}"
        super().__init__(f"{name} {self.problem}")


def check_direction(value: Any, name: str = "direction") -> Direction | None:
    """``value`` if it is a direction (or ``None``: not known); the one check of a direction in imgtrans.

    Args:
        value: the direction to check.
        name: how the caller calls it, for the message: ``"direction"`` in Python, ``"--direction"``
            on the command line, ``"config.json: direction"`` in a file.

    Raises:
        DirectionError: ``value`` is neither ``"AtoB"``, ``"BtoA"`` nor ``None``.
    """
    if value is not None and value not in DIRECTIONS:
        raise DirectionError(name, value)
    return value


def entry(name: str) -> Entry:
    """The entry called ``name``; an unknown name fails with the closest known ones."""
    try:
        return _ENTRIES[name]
    except (KeyError, TypeError):
        raise KeyError(
            f"no model called {name!r}.{did_you_mean(str(name), _ENTRIES)} "
            "`imgtrans models` (or imgtrans.list_models()) lists them all."
        ) from None


def list_models(pattern: str = "*", *, pretrained: bool = False) -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``"pix2pix-*"``), sorted.

    With ``pretrained=True``, only the names with published weights.
    """
    return sorted(
        n for n, e in _ENTRIES.items() if fnmatch.fnmatchcase(n, pattern) and (e.published or not pretrained)
    )


def did_you_mean(
    name: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.4, form: str = " Did you mean {}?"
) -> str:
    """``form`` filled with the known names closest to ``name`` (``'a' or 'b'``), or ``""``.

    The one place imgtrans suggests names: models, arguments, timm backbones, datasets.
    """
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)
    return form.format(" or ".join(map(repr, close))) if close else ""
