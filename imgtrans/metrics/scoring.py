"""The scoring loop: a model run over test images, batch by batch, and the evaluation report (paper section 4).

[translated_batches][imgtrans.metrics.scoring.translated_batches] is the one loop that runs a
translation over a dataset: ``imgtrans eval`` and
[evaluate_model][imgtrans.metrics.scoring.evaluate_model] feed its batches to a
[Report][imgtrans.metrics.report.Report], and validation during training
([Validator][imgtrans.train.validation.Validator]) adds up their pixel scores.

Paired data (pix2pix's AB images) gives each output its target, and every metric applies.
Unpaired data (CycleGAN's ``testA/``, ``testB/``) has no targets: the images of the source domain
are translated and compared, as a distribution, with the real images of the target domain (FID,
KID and the Lab marginals); per-image scores (L1, PSNR, SSIM, sharpness) are left out of its report.

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


UNPAIRED_NEEDS_FID = (
    "unpaired data has no targets, so only distribution metrics apply (L1, PSNR, SSIM need targets): "
    "pass fid=True for FID and KID (--fid on the command line)"
)
"""What an evaluation of unpaired data without FID says: nothing else would be measured."""


def collate_pairs(items: Sequence[Mapping[str, Any]], resize_hint: str = RESIZE_HINT, first: int = 0) -> dict[str, Any]:
    """Stack items ``{"input", "target", "name"}`` into one batch; images of different sizes are refused.

    Args:
        items: dataset items; an item without ``name`` is named by its index in the dataset. Items
            of unpaired data have no ``target``: the batch's ``target`` is then ``None``.
        resize_hint: how the caller's user makes the sizes agree, said after the sizes found.
        first: the dataset index of the first item.
    """
    paired = ["target" in item for item in items]
    if any(paired) and not all(paired):
        raise ValueError("some items have a target and others not: a dataset is either paired or unpaired")
    keys = ("input", "target") if all(paired) else ("input",)
    sizes = {tuple(item[key].shape[1:]) for item in items for key in keys}
    names = [str(item.get("name", first + k)) for k, item in enumerate(items)]
    if len(sizes) > 1:
        raise ValueError(f"the images of one batch differ in size ({', '.join(names)}: {sorted(sizes)}); {resize_hint}")
    stacked = {key: torch.stack([item[key] for item in items]) for key in keys}
    return {"input": stacked["input"], "target": stacked.get("target"), "name": names}


def dataset_batches(
    dataset: Dataset, batch_size: int, resize_hint: str = RESIZE_HINT
) -> Iterator[tuple[range, dict[str, Any]]]:
    """Every item of ``dataset`` in order, ``batch_size`` at a time: ``(indices, collated batch)``.

    Read in this process (no loading workers, no random draw), collated by
    [collate_pairs][imgtrans.metrics.scoring.collate_pairs]. The translated images and the real
    images an unpaired evaluation compares them with are both read through it.
    """
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        yield indices, collate_pairs([dataset[i] for i in indices], resize_hint, start)


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
            loading workers, no random draw: validation forks no generator for them); items of
            unpaired data have no ``target``, and their batches' targets are ``None``.
        batch_size: images per call of ``run``.
        resize_hint: passed to [collate_pairs][imgtrans.metrics.scoring.collate_pairs].

    Outputs come back as float32 on the CPU; names are the items' ``name`` (or their index).
    """
    for indices, batch in dataset_batches(dataset, batch_size, resize_hint):
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
    real: Dataset | None = None,
    direction: str | None = None,
) -> dict[str, Any]:
    """Translate every image of ``dataset`` in each mode, score it, and write the report.

    On paired data (items with a ``target``) every metric applies. On unpaired data (``dataset``
    of the source domain without targets, ``real`` the images of the target domain, e.g.
    [evaluation_domains][imgtrans.data.unpaired.evaluation_domains]) only distribution metrics
    do: FID and KID (so ``fid=True`` is required) and the Lab marginals, of the translations
    against the real images; L1, PSNR, SSIM and sharpness are absent from the report.

    The report is written into a fresh folder beside ``directory`` and moved into place when it is
    complete, so a report never mixes with the images of an earlier one, and a failed evaluation
    leaves an earlier report as it was.

    Args:
        model: a pix2pix or CycleGAN model, or a bare generator.
        dataset: items with ``input``, ``target`` and ``name`` (e.g. a
            [PairedImageDataset][imgtrans.data.paired.PairedImageDataset] with ``train=False``);
            or, with ``real``, items with ``input`` and ``name`` only (a
            [DomainImageDataset][imgtrans.data.unpaired.DomainImageDataset]: ``testA/`` for AtoB).
        directory: where ``metrics.json``, ``index.html`` and ``lab_histograms.png`` go.
        modes: ``"eval"`` and/or ``"paper"``.
        batch_size: images per forward pass (the paper's mode runs them one at a time, each with its own
            statistics, so its scores do not depend on it); also images per batch read from ``real``.
        info: facts to keep in the report.
        device: where to run the model.
        fid: also compute FID and KID of each mode's outputs against the targets, or against ``real``
            (see [imgtrans.metrics.fid][imgtrans.metrics.fid]; needs ``pip install "imgtrans[fid]"``).
        inception_weights: the Inception weights file for ``fid`` (default: the cached one).
        kid_subset_size: images per KID subset (default: 1000, or all images when fewer).
        progress: show a progress bar on stderr (``None``: only on a terminal).
        overwrite: replace an earlier report in ``directory`` (by default it is refused). Only a
            report is replaced: a folder holding other files is always refused.
        real: unpaired data: the real images of the target domain (items with ``input``, in the
            model's output channels), all of them compared with the translations (``testB/`` for AtoB).
        direction: for a model with a generator per direction (CycleGAN), the one evaluated:
            ``"AtoB"`` (G_A) or ``"BtoA"`` (G_B); ``None``: the direction the model records. Other
            models ignore it (the dataset decides which half of an AB pair is the input).

    Returns:
        The metrics as written to ``metrics.json``.

    Raises:
        FileExistsError: ``directory`` holds a report and ``overwrite`` is false, or holds files
            that are not a report's.
        ValueError: unpaired data without ``fid`` (one line: only distribution metrics apply),
            ``real`` beside a dataset that has targets, or too few images for FID and KID.
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be among {', '.join(MODES)}; got {list(modes)}")
    directory = Path(directory).resolve()  # its name names the fresh folder beside it, even for "."
    check_report_folder(directory, overwrite)
    paired = _has_targets(dataset)
    if real is not None and paired:
        raise ValueError("the dataset has targets (paired data): evaluate it without real=, which is for unpaired "
                         "data (a dataset of the source domain without targets)")  # fmt: skip
    if not paired and real is None:
        raise ValueError("the dataset's items have no target: for unpaired data pass real= (the real images of the "
                         "target domain, e.g. from imgtrans.data.evaluation_domains)")  # fmt: skip
    if not paired and not fid:
        raise ValueError(UNPAIRED_NEEDS_FID)
    model = _directed(model, direction)
    # The Inception network first: a missing file or library fails in seconds, before any translation.
    distances: dict[str, Any] = {}
    fewest = min(len(dataset), len(real)) if real is not None else len(dataset)
    if fid and fewest < 2:
        raise ValueError(f"FID and KID need at least 2 images; the data has {fewest}")
    if fid and kid_subset_size is not None and kid_subset_size > fewest:
        raise ValueError(f"kid_subset_size ({kid_subset_size}) is larger than the {fewest} images; "
                         f"give at most {fewest} (--kid-subset-size on the command line)")  # fmt: skip
    if fid:
        from imgtrans.metrics.fid import InceptionDistance

        first = InceptionDistance(inception_weights, kid_subset_size=kid_subset_size, device=device)
    model = model.to(device)
    total = len(dataset) * len(modes) + (len(real) if real is not None else 0)
    bar = tqdm(total=total, unit="image", disable=None if progress is None else not progress)

    def scored(mode: str) -> Iterator[Batch]:
        # The first mode encodes the targets for FID; later modes copy their features (as the real images').
        encode_real = not distances and paired
        distance = distances[mode] = (first if not distances else first.spawn()) if fid else None
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
        if real is not None:  # unpaired: the target domain's real images, read once for every mode
            bar.set_description("reading the real images")
            for _, batch in dataset_batches(real, batch_size):
                report.add_real(batch["input"])
                first.update_real(batch["input"])
                bar.update(len(batch["input"]))
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


def _has_targets(dataset: Dataset) -> bool:
    """Whether the items of ``dataset`` (its first, which stands for all: see collate_pairs) have targets."""
    if len(dataset) == 0:
        raise ValueError("the dataset is empty: there is nothing to evaluate")
    return "target" in dataset[0]


def _directed(model: nn.Module, direction: str | None) -> nn.Module:
    """The generator of ``direction`` for a model with one per direction (CycleGAN); any other model as it is."""
    pick = getattr(model, "generator_for", None)
    return pick(direction) if direction is not None and callable(pick) else model


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
