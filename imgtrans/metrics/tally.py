"""The tally of an evaluation: per-image scores, their means and the Lab histograms, added up batch by batch.

[Evaluator][imgtrans.metrics.tally.Evaluator] needs no model and no dataset: feed it batches
of outputs, targets and image names, however they were produced, then read its
[summary][imgtrans.metrics.tally.Evaluator.summary]. The loop that runs a model over a dataset
and feeds it is [imgtrans.metrics.scoring][imgtrans.metrics.scoring].

```python
import torch
from imgtrans.metrics import Evaluator

evaluator = Evaluator()
target = torch.rand(2, 3, 32, 32) * 2 - 1
evaluator.update((target + 0.1).clamp(-1, 1), target, ["a.png", "b.png"])
print(evaluator.summary()["mean"]["l1"])
```
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from imgtrans.metrics.color import LAB_AXES, histogram_intersection, lab_histograms
from imgtrans.metrics.pixel import l1_error, psnr
from imgtrans.metrics.sharpness import relative_sharpness
from imgtrans.metrics.ssim import ssim

# The per-image metrics, in the order reports show them: name -> function(output, target) -> (N,).
METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": l1_error,
    "psnr": psnr,
    "ssim": ssim,
    "sharpness": relative_sharpness,
}


def image_scores(output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric of ``METRICS`` for each image of a batch.

    Args:
        output: Generated images ``(N, C, H, W)`` in $[-1, 1]$, $H, W \\geq 11$ (for SSIM).
        target: Ground-truth images of the same shape, in $[-1, 1]$.

    Returns:
        ``{"l1": ..., "psnr": ..., "ssim": ..., "sharpness": ...}``, each of shape ``(N,)``:
            see [l1_error][imgtrans.metrics.pixel.l1_error], [psnr][imgtrans.metrics.pixel.psnr],
            [ssim][imgtrans.metrics.ssim.ssim] and
            [relative_sharpness][imgtrans.metrics.sharpness.relative_sharpness].
    """
    return {name: metric(output, target) for name, metric in METRICS.items()}


def mean_scores(images: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The mean of each metric of ``METRICS`` over per-image records.

    The mean PSNR is the mean of per-image PSNRs (not the PSNR of the mean squared error), as
    is usual for image translation. A non-finite value (PSNR of an exact match) makes its mean
    non-finite too.

    Args:
        images: Records holding a float under each metric name, such as
            [Evaluator.images][imgtrans.metrics.tally.Evaluator].

    Raises:
        ValueError: No records.
    """
    images = list(images)
    if not images:
        raise ValueError("no images were evaluated: there is nothing to average")
    return {name: math.fsum(float(record[name]) for record in images) / len(images) for name in METRICS}


class Evaluator:
    """Accumulates per-image scores and Lab histograms over batches of one evaluation.

    On paired data each output has its target: every metric of ``METRICS`` is scored per image.
    On unpaired data (CycleGAN's ``testA/``, ``testB/``) there are no targets: outputs come
    without them, the real images of the target domain come through
    [update_real][imgtrans.metrics.tally.Evaluator.update_real], and only distributions are
    compared (the Lab marginals here, FID and KID in [imgtrans.metrics.fid][]).

    Attributes:
        images: One record per image in the order seen: ``{"name": ..., "l1": ...,
            "psnr": ..., "ssim": ..., "sharpness": ...}`` with Python floats (only ``"name"`` on
            unpaired data).
        output_histograms: Lab counts of every output pixel so far, per channel name.
        target_histograms: The same for the targets (the real images, on unpaired data).
        paired: whether the outputs have targets (``None`` until the first batch).
        real_images: real images given to ``update_real`` (unpaired data).
    """

    def __init__(self) -> None:
        self.images: list[dict[str, Any]] = []
        self.output_histograms: dict[str, torch.Tensor] = {}
        self.target_histograms: dict[str, torch.Tensor] = {}
        self.paired: bool | None = None
        self.real_images = 0
        self._names: set[str] = set()
        self._channels: int | None = None

    def __len__(self) -> int:
        return len(self.images)

    def update(
        self, outputs: torch.Tensor, targets: torch.Tensor | None, names: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Score one batch and add it to the running histograms.

        Args:
            outputs: Generated images ``(N, C, H, W)`` in $[-1, 1]$, with 1 (gray) or 3 (RGB)
                channels and $H, W \\geq 11$.
            targets: Ground-truth images of the same shape, in $[-1, 1]$; ``None`` on unpaired
                data (no score per image; give the real images to ``update_real``).
            names: ``N`` names, unique over the whole evaluation (file names, typically).

        Returns:
            The new per-image records, also appended to ``images``.

        Raises:
            ValueError: Names missing, repeated or of the wrong count; shapes that differ from
                each other or, in channels, from earlier batches; images outside the
                convention of [imgtrans.metrics.images][imgtrans.metrics.images]; batches with
                and without targets in one evaluation.
        """
        self._check_layout(targets is not None)
        scores = image_scores(outputs, targets) if targets is not None else {}  # checks the images first
        output_counts = lab_histograms(outputs)  # (checks unpaired outputs)
        target_counts = lab_histograms(targets) if targets is not None else {}
        names = self._check_names(names, len(outputs))
        self._check_channels(outputs.shape[1])  # the last check: it records the channels
        # Only now, with the whole batch known to be valid, does the state change.
        _add_counts(self.output_histograms, output_counts)
        _add_counts(self.target_histograms, target_counts)
        self.paired = targets is not None
        records = [
            {"name": image, **{metric: values[k].item() for metric, values in scores.items()}}
            for k, image in enumerate(names)
        ]
        self.images.extend(records)
        self._names.update(names)
        return records

    def update_real(self, images: torch.Tensor) -> None:
        """Add real images of the target domain ``(N, C, H, W)`` in $[-1, 1]$: what unpaired outputs are compared with.

        Raises:
            ValueError: The evaluation is of paired data (its targets are the real images), or
                the images are not in the convention, or not of the outputs' channels.
        """
        self._check_layout(False)
        counts = lab_histograms(images)
        self._check_channels(images.shape[1])
        _add_counts(self.target_histograms, counts)
        self.paired, self.real_images = False, self.real_images + len(images)

    def _check_layout(self, paired: bool) -> None:
        if self.paired is not None and paired != self.paired:
            raise ValueError(
                "one evaluation is either paired (every output with its target) or unpaired (outputs without targets, "
                "and real images of the target domain): got both"
            )

    def _check_channels(self, channels: int) -> None:
        if self._channels is not None and channels != self._channels:
            raise ValueError(f"every batch must have the same channels; got {channels} after {self._channels}")
        self._channels = channels

    def _check_names(self, names: Sequence[str], count: int) -> list[str]:
        if isinstance(names, str) or not all(isinstance(name, str) for name in names):
            raise ValueError("names must be a sequence of strings, one per image")
        names = list(names)
        if len(names) != count:
            raise ValueError(f"got {len(names)} names for a batch of {count} images; give one name per image")
        repeated = sorted({name for name in names if name in self._names or names.count(name) > 1})
        if repeated:
            raise ValueError(f"image names must be unique within an evaluation; repeated: {', '.join(repeated)}")
        return names

    def lab_intersection(self) -> dict[str, float]:
        """Histogram intersection of the outputs' Lab marginals with the targets', per channel.

        See [histogram_intersection][imgtrans.metrics.color.histogram_intersection]; ``"L"``
        only for gray images.
        """
        return {
            channel: histogram_intersection(counts, self.target_histograms[channel])
            for channel, counts in self.output_histograms.items()
        }

    def lab_distributions(self) -> dict[str, Any]:
        """The Lab marginals as probabilities per bin, with their bins: what Figure 7 plots.

        Returns:
            ``{"axes": {"L": {"low": ..., "high": ..., "bins": ...}, ...},
                "output": {"L": [p, ...], ...}, "target": {...}}``, the probabilities of each
                channel summing to 1.
        """
        axes = {axis.name: axis for axis in LAB_AXES if axis.name in self.output_histograms}

        def probabilities(histograms: dict[str, torch.Tensor]) -> dict[str, list[float]]:
            return {channel: (counts / counts.sum()).tolist() for channel, counts in histograms.items()}

        return {
            "axes": {name: {"low": axis.low, "high": axis.high, "bins": axis.bins} for name, axis in axes.items()},
            "output": probabilities(self.output_histograms),
            "target": probabilities(self.target_histograms),
        }

    def summary(self) -> dict[str, Any]:
        """The evaluation in numbers: ``{"images": n, "mean": {...}, "lab_intersection": {...}}``.

        ``mean`` is [mean_scores][imgtrans.metrics.tally.mean_scores] of ``images``, on paired data
        only: unpaired data has no per-image score, so its summary has no ``mean`` and has
        ``real_images`` instead. ``lab_intersection`` is
        [lab_intersection][imgtrans.metrics.tally.Evaluator.lab_intersection].

        Raises:
            ValueError: Nothing was evaluated, or unpaired outputs without real images.
        """
        if not self.images:
            raise ValueError("no images were evaluated: there is nothing to average")
        if not self.paired and not self.target_histograms:
            raise ValueError("unpaired outputs need real images of the target domain to compare with: call update_real")
        counts = {"mean": mean_scores(self.images)} if self.paired else {"real_images": self.real_images}
        return {"images": len(self.images), **counts, "lab_intersection": self.lab_intersection()}


def _add_counts(running: dict[str, torch.Tensor], counts: Mapping[str, torch.Tensor]) -> None:
    for channel, count in counts.items():
        running[channel] = running[channel] + count if channel in running else count
