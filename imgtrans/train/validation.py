"""Validation during training: held-out images scored at intervals, and the best model kept.

Every ``every`` steps (and at the last step) the generator translates the validation images in
eval mode (no dropout, BatchNorm running statistics; no augmentation), and the outputs are
scored against the targets with L1, PSNR (see [imgtrans.metrics.pixel][imgtrans.metrics.pixel])
and SSIM (see [imgtrans.metrics.ssim][imgtrans.metrics.ssim]), and with FID when it is the
chosen metric (see [imgtrans.metrics.fid][imgtrans.metrics.fid]). Unpaired validation data
(CycleGAN's ``testA/`` and ``testB/``) has no targets: the translations of one domain are scored
by FID alone, against the other domain's real images. When the chosen metric
improves on the best so far, the model is written to ``RUN/best/`` with
[save_pretrained][imgtrans.store.factory.save_pretrained], with ``best.json`` beside its
weights:

```json
{"step": 1000, "metric": "l1", "score": 0.18598, "better": "lower",
 "scores": {"l1": 0.18598, "psnr": 12.94, "ssim": 0.2227}, "images": 50, "data": "facades-split/val"}
```

``best/`` is replaced whole: the new model is written to a temporary folder, and only when it is
complete are the folders swapped by two renames; a crash between them leaves the previous best
as ``.best.old/``, which the next run puts back. A resumed run reads ``best/best.json`` back, so
the best so far survives interruptions.

Validation leaves training untouched: the model's train/eval flags are restored, no gradient or
BatchNorm statistic changes, and the random number generators are forked, so a run with
validation follows the same random stream as one without (and resumes exactly).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from imgtrans.inference import translate
from imgtrans.metrics import METRICS
from imgtrans.metrics.scoring import dataset_batches, translated_batches
from imgtrans.store.factory import save_pretrained
from imgtrans.train.run import RunSummary

BETTER: dict[str, Literal["lower", "higher"]] = {"l1": "lower", "psnr": "higher", "ssim": "higher", "fid": "lower"}
"""Which way each validation metric is better: ``metric -> "lower" or "higher"``."""
VAL_METRICS = tuple(BETTER)
BEST_DIR = "best"
BEST_FILE = "best.json"
PIXEL_METRICS = ("l1", "psnr", "ssim")  # computed at every validation: they cost little beside the translation
RESIZE_HINT = "give crop_size (--crop-size) so that they are resized to it, or resize them beforehand"


@dataclass
class Best:
    """The best model so far: when it was validated, and its scores."""

    step: int
    metric: str
    score: float
    better: Literal["lower", "higher"]
    scores: dict[str, float] = field(default_factory=dict)
    images: int = 0
    data: str | None = None

    def improved_by(self, score: float) -> bool:
        """Whether ``score`` is strictly better than this one (ties keep the earlier model)."""
        if not math.isfinite(score):
            return False
        return score < self.score if self.better == "lower" else score > self.score


class Validator:
    """Scores held-out pairs at intervals and keeps the best model in ``out/best``.

    Args:
        dataset: items with ``input``, ``target`` and ``name``, without augmentation (e.g. a
            [PairedImageDataset][imgtrans.data.paired.PairedImageDataset] with ``train=False``).
        out: the run folder; the best model goes to ``out/best``.
        metric: ``"l1"``, ``"psnr"``, ``"ssim"`` or ``"fid"``: the score that decides the best model.
        every: steps between validations (0: only at the end of training).
        batch_size: images per forward pass.
        device: where the model is.
        data: a description of the validation data, recorded in ``best.json``.
        inception_weights: the Inception weights for ``metric="fid"`` (see
            [InceptionFeatures][imgtrans.metrics.fid.InceptionFeatures]); loaded now, so that a
            missing file fails before training starts.
        real: for unpaired data, the target domain's real images (items with ``input``), which
            FID compares the translations of ``dataset`` with; ``dataset``'s items then have no
            ``target``, and ``metric`` must be ``"fid"``.

    Attributes:
        best: the best model so far, or ``None`` before the first validation.
        last: the scores of the latest validation (with its ``step``), or ``None``.
        seconds: time spent validating in this process, for the overhead report.
    """

    def __init__(
        self,
        dataset: Dataset,
        out: str | os.PathLike,
        metric: str = "l1",
        every: int = 500,
        batch_size: int = 8,
        device: torch.device | str = "cpu",
        data: str | None = None,
        inception_weights: str | os.PathLike | None = None,
        real: Dataset | None = None,
    ) -> None:
        if metric not in BETTER:
            raise ValueError(f"the validation metric must be one of {', '.join(VAL_METRICS)}; got {metric!r}")
        if every < 0 or batch_size < 1:
            raise ValueError(f"every must be >= 0 and batch_size >= 1; got {every} and {batch_size}")
        if len(dataset) == 0:
            raise ValueError("the validation data holds no images")
        if metric == "fid" and len(dataset) < 2:
            raise ValueError(f"validating by FID needs at least 2 images; the validation data has {len(dataset)}")
        if real is not None and metric != "fid":
            raise ValueError(f"unpaired validation data has no targets for {metric}: use metric='fid'")
        self.dataset, self.metric, self.every, self.batch_size = dataset, metric, every, batch_size
        self.real = real
        self.device, self.data = torch.device(device), data
        self.directory = Path(out) / BEST_DIR
        self.best: Best | None = None
        self.last: dict[str, Any] | None = None
        self.seconds = 0.0
        self._distance = None
        if metric == "fid":
            from imgtrans.metrics.fid import InceptionDistance

            self._distance = InceptionDistance(inception_weights, kid=False, device=self.device)
            self._real_encoded = False

    def due(self, step: int) -> bool:
        """Whether step ``step`` is one to validate at (the last step is the trainer's to add)."""
        return self.every > 0 and step > 0 and step % self.every == 0

    # ------------------------------------------------------------------------------- scores
    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """Scores of ``model`` on the validation images: mean ``l1``, ``psnr``, ``ssim`` and ``fid`` (alone if unpaired)."""
        sums = dict.fromkeys(PIXEL_METRICS if self.real is None else (), 0.0)
        count = 0
        distance = self._distance
        if distance is not None:
            distance.reset_fake()
        # Forked generators: neither the loading nor anything else here draws from training's stream.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            def run(x: torch.Tensor, indices: range) -> torch.Tensor:
                return translate(model, x.to(self.device))  # eval mode

            for _, outputs, targets, _ in translated_batches(run, self.dataset, self.batch_size, RESIZE_HINT):
                for name in sums:
                    sums[name] += math.fsum(METRICS[name](outputs, targets).tolist())
                count += len(outputs)
                if distance is not None:
                    distance.update_fake(outputs)
                    if not self._real_encoded and self.real is None:
                        distance.update_real(targets)
            if distance is not None and not self._real_encoded and self.real is not None:
                for _, batch in dataset_batches(self.real, self.batch_size, RESIZE_HINT):
                    distance.update_real(batch["input"])
            scores: dict[str, Any] = {name: total / count for name, total in sums.items()}
            if distance is not None:
                self._real_encoded = True
                scores["fid"] = distance.compute()["fid"]
        scores["images"] = count
        return scores

    def validate(self, model: nn.Module, step: int) -> dict[str, Any]:
        """Score ``model`` at ``step``, keep it in ``best/`` if it is the best so far.

        Returns:
            A log record: ``{"step", "val_l1", "val_psnr", "val_ssim", ["val_fid",]
                "val_images", "val_seconds", "val_best": bool, "best_step", "best_<metric>"}``.
        """
        start = time.perf_counter()
        scores = self.evaluate(model)
        score = scores[self.metric]
        improved = self.best is None and math.isfinite(score) or self.best is not None and self.best.improved_by(score)
        if improved:
            self.best = Best(
                step, self.metric, score, BETTER[self.metric],
                {k: v for k, v in scores.items() if k != "images"}, scores["images"], self.data,
            )  # fmt: skip
            self._save_best(model)
        seconds = time.perf_counter() - start
        self.seconds += seconds
        self.last = {"step": step, **scores}
        record = {"step": step, **{f"val_{k}": round(v, 6) if isinstance(v, float) else v for k, v in scores.items()}}
        record.update(val_seconds=round(seconds, 3), val_best=improved)
        if self.best is not None:
            record.update({"best_step": self.best.step, f"best_{self.metric}": round(self.best.score, 6)})
        return record

    # ------------------------------------------------------------------------- best on disk
    def _save_best(self, model: nn.Module) -> None:
        """Write ``best/`` whole, through a temporary folder and two renames."""
        assert self.best is not None
        parent = self.directory.parent
        parent.mkdir(parents=True, exist_ok=True)
        fresh, old = parent / f".{BEST_DIR}.tmp-{os.getpid()}", parent / f".{BEST_DIR}.old"
        shutil.rmtree(fresh, ignore_errors=True)
        try:
            save_pretrained(model, fresh)
            (fresh / BEST_FILE).write_text(json.dumps(asdict(self.best), indent=2) + "\n")
            _carry_over(self.directory, fresh)  # the user's own files in best/ stay
            shutil.rmtree(old, ignore_errors=True)
            if self.directory.exists():
                os.replace(self.directory, old)
            os.replace(fresh, self.directory)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)

    def restore(self) -> Best | None:
        """Read the best so far back from ``best/best.json`` (after a resume); ``None`` if there is none.

        A crash in the middle of replacing ``best/`` left the previous one as ``.best.old/``: it
        is put back first.

        Raises:
            ValueError: ``best/`` was chosen by another metric or on other data than this run's.
        """
        old = self.directory.parent / f".{BEST_DIR}.old"
        if not self.directory.exists() and (old / BEST_FILE).is_file():
            os.replace(old, self.directory)
        record = self.directory / BEST_FILE
        if not record.is_file():
            return None
        try:
            best = Best(**json.loads(record.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{record} is not a best-model record ({error}); move {self.directory} away") from None
        if best.metric != self.metric or best.data != self.data:
            raise ValueError(
                f"{self.directory} holds the best model by {best.metric} on {best.data}, but this run validates by "
                f"{self.metric} on {self.data}; keep the same validation settings, or move {self.directory} away"
            )
        self.best = best
        return best


def format_validation_summary(summary: RunSummary) -> str:
    """The end of a run: the last and the best model with their scores, and validation's share of the time.

    Args:
        summary: a [RunSummary][imgtrans.train.run.RunSummary] of a run with validation.
    """
    metric = summary.val_metric

    def scores(values: dict | None) -> str:
        shown = [f"{k} {values[k]:.4g}" for k in ("l1", "psnr", "ssim", "fid") if values and k in values]
        return ", ".join(shown) or "not validated"

    last, where = summary.last_scores, summary.model or summary.checkpoint
    if last is not None and last["step"] == summary.steps:
        lines = [f"last:       step {summary.steps} ({where}): {scores(last)}"]
    else:  # interrupted: the last validation was earlier
        earlier = f" (latest validation, step {last['step']}: {scores(last)})" if last is not None else ""
        lines = [f"last:       step {summary.steps} ({where}): not validated{earlier}"]
    if summary.best is not None:
        best = scores(summary.best_scores)
        lines.append(f"best:       step {summary.best_step} ({summary.best}) by {metric}: {best}")
    total = summary.train_seconds + summary.val_seconds
    if total > 0:
        share = 100 * summary.val_seconds / total
        lines.append(f"validation: {summary.val_seconds:.1f} s of {total:.1f} s ({share:.1f}%)")
    return "\n".join(lines)


def _carry_over(old: Path, fresh: Path) -> None:
    """Hard-link (else copy) into ``fresh`` what ``old`` holds that ``fresh`` lacks: files imgtrans did not write."""
    if not old.is_dir():
        return
    for path in old.iterdir():
        target = fresh / path.name
        if target.exists():
            continue
        if path.is_dir():
            shutil.copytree(path, target, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(path, target)


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)
