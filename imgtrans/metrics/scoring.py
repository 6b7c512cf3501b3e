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
from tqdm.auto import tqdm

from imgtrans.inference import translate
from imgtrans.metrics import Report

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
    fid: bool = False,
    inception_weights: str | os.PathLike | None = None,
    kid_subset_size: int | None = None,
    progress: bool | None = None,
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
        fid: also compute FID and KID of each mode's outputs against the targets (see
            [imgtrans.metrics.fid][imgtrans.metrics.fid]; needs ``pip install "imgtrans[fid]"``).
        inception_weights: the Inception weights file for ``fid`` (default: the cached one).
        kid_subset_size: images per KID subset (default: 1000, or all images when fewer).
        progress: show a progress bar on stderr (``None``: only on a terminal).

    Returns:
        The metrics as written to ``metrics.json``.
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be among {', '.join(MODES)}; got {list(modes)}")
    # The Inception network first: a missing file or library fails in seconds, before any translation.
    distances: dict[str, Any] = {}
    if fid and len(dataset) < 2:
        raise ValueError(f"FID and KID need at least 2 images; the data has {len(dataset)}")
    if fid and kid_subset_size is not None and kid_subset_size > len(dataset):
        raise ValueError(f"kid_subset_size ({kid_subset_size}) is larger than the {len(dataset)} images; "
                         f"give at most {len(dataset)} (--kid-subset-size on the command line)")  # fmt: skip
    if fid:
        from imgtrans.metrics.fid import InceptionDistance

        first = InceptionDistance(inception_weights, kid_subset_size=kid_subset_size, device=device)
    model = model.to(device)
    bar = tqdm(total=len(dataset) * len(modes), unit="image", disable=None if progress is None else not progress)

    def run(mode: str) -> Iterator[tuple]:
        # The first mode encodes the targets for FID; later modes copy their features.
        encode_real = not distances
        distance = distances[mode] = (first if encode_real else first.spawn()) if fid else None
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_same_size)
        bar.set_description(f"evaluating ({mode})")
        seen = 0
        for batch in loader:
            # The paper's mode runs image by image and draws dropout masks: one seed per image (its
            # index), so each image's output is reproducible and independent of the batch size.
            seeds = range(seen, seen + len(batch["name"]))
            seen += len(batch["name"])
            x = batch["input"].to(device)
            outputs = translate(model, x, paper_test_mode=mode == "paper", seeds=seeds).float().cpu()
            if distance is not None:
                distance.update_fake(outputs)
                if encode_real:
                    distance.update_real(batch["target"])
            bar.update(len(outputs))
            yield batch["input"][:, :3], outputs, batch["target"], batch["name"]

    info = {**(info or {}), "batch_size": batch_size}
    report = Report(directory, list(modes), title="imgtrans evaluation", info=info)
    try:
        for mode in modes:
            for batch in run(mode):
                report.add(mode, *batch)
            if fid:
                bar.set_description(f"FID and KID ({mode})")  # seconds on a CPU, whatever the images
                report.set_inception_scores(mode, distances[mode].compute())
    finally:
        bar.close()
    return report.write()
