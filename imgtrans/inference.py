"""Inference modes: the usual eval mode, and the paper's test-time mode (section 3.2 and 4.1).

The paper runs the generator at test time "in exactly the same manner as during the training
phase": dropout stays on, and BatchNorm normalises with the statistics of the test batch
rather than the running averages of training.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def paper_test_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` with dropout on and batch statistics, as the paper does at test time.

    Running statistics and every submodule's train/eval flag are restored on exit, so the
    model is left exactly as it was.
    """
    modes = [(m, m.training) for m in module.modules()]
    saved = [b.clone() for b in module.buffers()]
    module.train()
    try:
        yield module
    finally:
        with torch.no_grad():
            for buffer, value in zip(module.buffers(), saved):
                buffer.copy_(value)
        for m, training in modes:
            m.training = training


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in eval mode (no dropout, running statistics), restoring its mode after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
