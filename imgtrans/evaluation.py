"""Running a model over a paired dataset and writing the evaluation report (paper section 4).

Each mode is a way of running the generator: ``"eval"`` (no dropout, BatchNorm running
statistics) and ``"paper"`` (dropout on and the test batch's statistics, as the paper does at
test time, section 3.3). Both see the same images and are reported side by side.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from imgtrans.inference import translate
from imgtrans.metrics import write_report

MODES = ("eval", "paper")


def collate_same_size(items: list[dict]) -> dict:
    """Stack a batch, with a clear error when its images differ in size."""
    sizes = {tuple(item[key].shape[1:]) for item in items for key in ("input", "target")}
    if len(sizes) > 1:
        names = ", ".join(item["name"] for item in items)
        raise ValueError(
            f"the images of one batch differ in size ({names}: {sorted(sizes)}); resize them all with --size, "
            "or evaluate one image at a time with --batch-size 1"
        )
    return {
        "input": torch.stack([item["input"] for item in items]),
        "target": torch.stack([item["target"] for item in items]),
        "name": [item["name"] for item in items],
    }


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    directory: str | os.PathLike,
    modes: Sequence[str] = MODES,
    batch_size: int = 8,
    info: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Translate every pair of ``dataset`` in each mode, score it, and write the report.

    Args:
        model: a pix2pix model or a bare generator.
        dataset: items with ``input``, ``target`` and ``name`` (e.g. a
            [PairedImageDataset][imgtrans.data.paired.PairedImageDataset] with ``train=False``).
        directory: where ``metrics.json``, ``index.html`` and ``lab_histograms.png`` go.
        modes: ``"eval"`` and/or ``"paper"``.
        batch_size: images per forward pass (the paper's mode runs them one at a time, each with its own
            statistics, so its scores do not depend on it).
        info: facts to keep in the report.
        device: where to run the model.

    Returns:
        The metrics as written to ``metrics.json``.
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be among {', '.join(MODES)}; got {list(modes)}")
    model = model.to(device)

    def run(mode: str) -> Iterator[tuple]:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_same_size)
        first = 0
        for batch in loader:
            # The paper's mode runs image by image and draws dropout masks: one seed per image (its
            # index), so each image's output is reproducible and independent of the batch size.
            seeds = range(first, first + len(batch["name"]))
            first += len(batch["name"])
            x = batch["input"].to(device)
            outputs = translate(model, x, paper_test_mode=mode == "paper", seeds=seeds).float().cpu()
            yield batch["input"][:, :3], outputs, batch["target"], batch["name"]

    info = {**(info or {}), "batch_size": batch_size}
    return write_report(directory, {mode: run(mode) for mode in modes}, title="imgtrans evaluation", info=info)
