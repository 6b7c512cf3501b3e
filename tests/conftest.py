"""Shared fixtures: the ``../shared`` reference folder, deterministic seeding, a tiny facades model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# A pix2pix-facades scaled down for fast tests: 5-down U-Net and 16x16 PatchGAN, width 4.
TINY_MODEL = {
    "generator": "unet128",
    "generator_args": {"base_channels": 4, "num_downs": 5},
    "discriminator": "patchgan16",
    "discriminator_args": {"base_channels": 4},
}

SHARED = Path(os.environ.get("IMGTRANS_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ``../shared``; skips the test with a reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the reference material in ../shared is not on this machine")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def tiny_facades():
    """``pix2pix-facades`` at ``TINY_MODEL`` size, seed 0, in eval mode (one per test module)."""
    import imgtrans

    torch.manual_seed(0)
    return imgtrans.build("pix2pix-facades", **TINY_MODEL).eval()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (CI and the README's test "
                     "command do); without it they are deselected, so a quick run takes a few minutes")  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
        config.hook.pytest_deselected(items=slow)
