"""The scoring loop: a model run over paired images, batch by batch, and the evaluation report (paper section 4).

[translated_batches][imgtrans.metrics.scoring.translated_batches] is the one loop that runs a
translation over a dataset of pairs: ``imgtrans eval`` and
[evaluate_model][imgtrans.metrics.scoring.evaluate_model] feed its batches to a
[Report][imgtrans.metrics.report.Report], and validation during training
([Validator][imgtrans.train.validation.Validator]) adds up their pixel scores.

Each mode is a way of running the generator: ``"eval"`` (no dropout, BatchNorm running
statistics) and ``"paper"`` (dropout on and the test batch's statistics, as the paper does at
test time, section 3.3). Both see the same images and are reported side by side.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from imgtrans.inference import translate
from imgtrans.metrics.report import FIGURE_FILE, HTML_FILE, IMAGE_DIR, METRICS_FILE, Batch, Report

MODES = ("eval", "paper")
RESIZE_HINT = "resize them all (size=..., --size on the command line), or evaluate one at a time (batch_size=1)"
"""What [collate_pairs][imgtrans.metrics.scoring.collate_pairs] suggests for images of different sizes, by default."""


def collate_pairs(items: Sequence[Mapping[str, Any]], resize_hint: str = RESIZE_HINT, first: int = 0) -> dict[str, Any]:
    """Stack items ``{"input", "target", "name"}`` into one batch; images of different sizes are refused.

    Args:
        items: dataset items; an item without ``name`` is named by its index in the dataset.
        resize_hint: how the caller's user makes the sizes agree, said after the sizes found.
        first: the dataset index of the first item.
    """
    sizes = {tuple(item[key].shape[1:]) for item in items for key in ("input", "target")}
    names = [str(item.get("name", first + k)) for k, item in enumerate(items)]
    if len(sizes) > 1:
        raise ValueError(f"the images of one batch differ in size ({', '.join(names)}: {sorted(sizes)}); {resize_hint}")
    return {
        "input": torch.stack([item["input"] for item in items]),
        "target": torch.stack([item["target"] for item in items]),
        "name": names,
    }


def translated_batches(
    run: Callable[[torch.Tensor, range], torch.Tensor],
    dataset: Dataset,
    batch_size: int,
    resize_hint: str = RESIZE_HINT,
) -> Iterator[Batch]:
    """Every pair of ``dataset`` in order, ``batch_size`` at a time, translated: ``(inputs, outputs, targets, names)``.

    Args:
        run: translates a batch of inputs (on the CPU, in [-1, 1]); it is also given the batch's
            indices in the dataset (seeds for the paper's mode, so that each image's dropout
            masks do not depend on the batching).
        dataset: items with ``input``, ``target`` and ``name``, read in order in this process (no
            loading workers, no random draw: validation forks no generator for them).
        batch_size: images per call of ``run``.
        resize_hint: passed to [collate_pairs][imgtrans.metrics.scoring.collate_pairs].

    Outputs come back as float32 on the CPU; names are the items' ``name`` (or their index).
    """
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        batch = collate_pairs([dataset[i] for i in indices], resize_hint, start)
        outputs = run(batch["input"], indices).float().cpu()
        yield batch["input"], outputs, batch["target"], batch["name"]


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
    overwrite: bool = False,
) -> dict[str, Any]:
    """Translate every pair of ``dataset`` in each mode, score it, and write the report.

    The report is written into a fresh folder beside ``directory`` and moved into place when it is
    complete, so a report never mixes with the images of an earlier one, and a failed evaluation
    leaves an earlier report as it was.

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
        overwrite: replace an earlier report in ``directory`` (by default it is refused). Only a
            report is replaced: a folder holding other files is always refused.

    Returns:
        The metrics as written to ``metrics.json``.

    Raises:
        FileExistsError: ``directory`` holds a report and ``overwrite`` is false, or holds files
            that are not a report's.
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be among {', '.join(MODES)}; got {list(modes)}")
    directory = Path(directory).resolve()  # its name names the fresh folder beside it, even for "."
    check_report_folder(directory, overwrite)
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

    def scored(mode: str) -> Iterator[Batch]:
        # The first mode encodes the targets for FID; later modes copy their features.
        encode_real = not distances
        distance = distances[mode] = (first if encode_real else first.spawn()) if fid else None
        bar.set_description(f"evaluating ({mode})")

        def run(x: torch.Tensor, indices: range) -> torch.Tensor:
            # The paper's mode runs image by image and draws dropout masks: one seed per image (its
            # index), so each image's output is reproducible and independent of the batch size.
            return translate(model, x.to(device), paper_test_mode=mode == "paper", seeds=indices)

        for inputs, outputs, targets, names in translated_batches(run, dataset, batch_size):
            if distance is not None:
                distance.update_fake(outputs)
                if encode_real:
                    distance.update_real(targets)
            bar.update(len(outputs))
            yield inputs[:, :3], outputs, targets, names

    info = {**(info or {}), "batch_size": batch_size}
    fresh = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    try:
        report = Report(fresh, list(modes), title="imgtrans evaluation", info=info)
        for mode in modes:
            for batch in scored(mode):
                report.add(mode, *batch)
            if fid:
                bar.set_description(f"FID and KID ({mode})")  # seconds on a CPU, whatever the images
                report.set_inception_scores(mode, distances[mode].compute())
        metrics = report.write()
        _move_into_place(fresh, directory)
    finally:
        bar.close()
        shutil.rmtree(fresh, ignore_errors=True)
    return metrics


REPORT_FILES = frozenset({METRICS_FILE, HTML_FILE, FIGURE_FILE, IMAGE_DIR})
"""What a report folder holds (see [imgtrans.metrics.report][imgtrans.metrics.report])."""


class ReportExistsError(FileExistsError):
    """A report folder that may not be written: an earlier report, or someone else's files."""

    def __init__(self, message: str, cli_message: str) -> None:
        super().__init__(message)
        self.cli_message = cli_message


def check_report_folder(directory: Path, overwrite: bool) -> None:
    """Refuse a report folder that holds an earlier report (unless ``overwrite``) or files of anything else."""
    if directory.exists() and not directory.is_dir():
        raise ReportExistsError(
            f"{directory} is a file, not a report folder; choose another directory",
            f"--out {directory} is a file, not a report folder; choose another --out",
        )
    held = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    foreign = [name for name in held if name not in REPORT_FILES]
    if foreign:
        raise ReportExistsError(
            f"{directory} holds files that are not an evaluation report's (e.g. {foreign[0]}); a report is written "
            "only into a new folder or over an earlier report: choose another directory",
            f"--out {directory} holds files that are not an evaluation report's (e.g. {foreign[0]}); a report "
            "is written only into a new folder or over an earlier report: choose another --out",
        )
    if held and not overwrite:
        raise ReportExistsError(
            f"{directory} holds an earlier report; pass overwrite=True to replace it, or choose another directory",
            f"--out {directory} holds an earlier report; add --overwrite to replace it, or choose another --out",
        )


def _move_into_place(fresh: Path, directory: Path) -> None:
    """Put the finished report ``fresh`` at ``directory``, the earlier one (if any) removed only after."""
    old = directory.parent / f".{directory.name}.old-{os.getpid()}"
    if directory.exists():
        os.replace(directory, old)
    os.replace(fresh, directory)
    shutil.rmtree(old, ignore_errors=True)
