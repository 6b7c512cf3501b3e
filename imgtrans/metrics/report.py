"""An evaluation report on disk: ``metrics.json``, an HTML page of images and the Lab figure.

A report holds one or more evaluation *modes* evaluated on the same images, side by side:
typically the usual eval mode and the paper's test-time mode (dropout on, batch statistics;
section 3.3), which the paper reports. Feed it batches of ``(inputs, outputs, targets, names)``
per mode, however they were produced, then write it:

```python
import torch
from imgtrans.metrics import write_report, format_summary

x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
batches = {"eval": [(x, y.flip(-1), y, ["a.png", "b.png"])]}
metrics = write_report("/tmp/imgtrans-report", batches)
print(format_summary(metrics))
```

The directory then holds:

- ``metrics.json``: per mode, the summary (means, Lab histogram intersections, and FID and KID
  when they were computed: see [set_inception_scores][imgtrans.metrics.report.Report.set_inception_scores]),
  the Lab distributions and every image's scores; and every image's files. Non-finite numbers (the
  PSNR of an exact match) are written as the strings ``"inf"``, ``"-inf"`` or ``"nan"``, so
  the file is strict JSON; ``float()`` reads them back.
- ``index.html``: the summary, the figure, and one row per image: input | output of each
  mode with its scores | target.
- ``lab_histograms.png``: the Lab marginals of each mode's outputs against the targets
  (Figure 7 of the paper), see [draw_lab_histograms][imgtrans.metrics.figure.draw_lab_histograms].
- ``images/``: the PNGs the page shows, named by row number (``0000-input.png``,
  ``0000-output-eval.png``, ``0000-target.png``), so that any image name is safe.

A report of unpaired data (outputs given with ``targets=None``, and the target domain's real
images through [add_real][imgtrans.metrics.report.Report.add_real]) has no per-image scores, no
target column and no target images: only the distributions are compared (the Lab marginals here,
FID and KID when they are set).

Every file is written atomically (a temporary file, then ``os.replace``), and ``metrics.json``
last: when it exists, the report is complete. Files of an earlier report in the same directory
are replaced.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import torch
from PIL import Image

from imgtrans.io import atomic_write
from imgtrans.images import tensor_to_image
from imgtrans.metrics.tally import Evaluator
from imgtrans.metrics.figure import draw_lab_histograms
from imgtrans.metrics.images import to_unit_range
from imgtrans.metrics.rendering import render_html

PathLike = Union[str, os.PathLike]
Batch = tuple[torch.Tensor, torch.Tensor, Union[torch.Tensor, None], Sequence[str]]
"""One batch of a mode: ``(inputs, outputs, targets, names)``, images ``(N, C, H, W)`` in $[-1, 1]$; ``targets``
is ``None`` on unpaired data."""

METRICS_FILE = "metrics.json"
HTML_FILE = "index.html"
FIGURE_FILE = "lab_histograms.png"
IMAGE_DIR = "images"

FID_CONVENTION = (
    "outputs against targets (unpaired data: against the real images of the target domain), 2048-d pool "
    "features of the TF Inception 2015-12-05 (torch-fidelity's port, "
    "weights-inception-2015-12-05-6726825d.pth), 8-bit images resized to 299 with TF1 bilinear resampling; "
    "statistics by torchmetrics; KID: cubic polynomial kernel, mean and std over random subsets"
)
PIXEL_CONVENTIONS = {
    "psnr": "data range 1; +inf for identical images",
    "ssim": "Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, valid positions only",
    "sharpness": "gradient energy of the output / that of the target (1: as sharp, < 1: blurrier)",
}
UNPAIRED_CONVENTION = (
    "no targets (unpaired domains): no per-image score (L1, PSNR, SSIM, sharpness need targets); the Lab "
    "marginals, FID and KID compare the outputs with the real images of the target domain"
)
_MODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``"inf"``, ``"-inf"`` or ``"nan"``.

    ``json.dumps(float("inf"))`` writes ``Infinity``, which is not JSON; strings keep the file
    valid and read back with ``float()``.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def _dumps(value: Any, depth: int = 0) -> str:
    """JSON indented by two spaces, except lists of plain values, kept on one line."""
    pad, end = "  " * (depth + 1), "\n" + "  " * depth
    if isinstance(value, Mapping) and value:
        items = (f"{pad}{json.dumps(str(key))}: {_dumps(item, depth + 1)}" for key, item in value.items())
        return "{\n" + ",\n".join(items) + end + "}"
    if isinstance(value, (list, tuple)) and any(isinstance(item, (Mapping, list, tuple)) for item in value):
        return "[\n" + ",\n".join(pad + _dumps(item, depth + 1) for item in value) + end + "]"
    return json.dumps(value, allow_nan=False)


def write_json(path: PathLike, data: Any) -> None:
    """Write ``data`` as strict JSON, atomically.

    Non-finite numbers are written as strings (see [json_safe][imgtrans.metrics.report.json_safe]).
    Indented by two spaces; lists of plain values (histograms) stay on one line.
    """
    atomic_write(path, _dumps(json_safe(data)) + "\n")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


class Report:
    """Collects the batches of one or more evaluation modes, then writes the report.

    Args:
        directory: Where to write the report; created if absent.
        modes: The names of the modes, in display order, such as ``("eval", "paper")``:
            letters, digits, ``_``, ``.`` and ``-``, starting with a letter or a digit
            (they name files).
        title: The page's heading.
        info: Facts about the evaluation worth keeping with it (model, checkpoint, data,
            direction), written to ``metrics.json`` and listed on the page; values other than
            strings, numbers, booleans and ``None`` (paths, for instance) are kept as ``str(value)``.
    """

    def __init__(
        self,
        directory: PathLike,
        modes: Sequence[str] = ("eval",),
        title: str = "imgtrans evaluation",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        modes = [modes] if isinstance(modes, str) else list(modes)
        bad = [mode for mode in modes if not isinstance(mode, str) or not _MODE_NAME.fullmatch(mode)]
        if not modes or bad or len(set(modes)) != len(modes):
            raise ValueError(
                f"modes must be distinct names of letters, digits, '_', '.' and '-' (they name files); got {modes}"
            )
        self.directory = Path(directory)
        self.title = title
        self.info = {str(key): _plain(value) for key, value in (info or {}).items()}
        self.evaluators = {mode: Evaluator() for mode in modes}
        self._rows: dict[str, int] = {}  # image name -> row number, in order of first appearance
        self.inception_scores: dict[str, dict[str, Any]] = {}  # mode -> FID/KID, when computed
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"{self.directory} exists and is not a directory; choose another output directory")
        (self.directory / IMAGE_DIR).mkdir(parents=True, exist_ok=True)

    def image_file(self, row: int, kind: str) -> str:
        """The path, relative to the report's directory, of one image of a row.

        Args:
            row: The row number.
            kind: ``"input"``, ``"target"`` or ``"output-MODE"``.
        """
        return f"{IMAGE_DIR}/{row:04d}-{kind}.png"

    def add(
        self,
        mode: str,
        inputs: torch.Tensor,
        outputs: torch.Tensor,
        targets: torch.Tensor | None,
        names: Sequence[str],
    ) -> list[dict[str, Any]]:
        """Score one batch of ``mode`` and save its images.

        Args:
            mode: One of the report's modes.
            inputs: What the model was given, ``(N, C_in, H, W)`` in $[-1, 1]$, 1 or 3 channels.
            outputs: What it produced, ``(N, C, H, W)`` in $[-1, 1]$, 1 or 3 channels.
            targets: The ground truth, same shape as ``outputs``; ``None`` on unpaired data, whose
                outputs are compared with the real images of
                [add_real][imgtrans.metrics.report.Report.add_real] instead.
            names: One name per image, unique within the mode; the same image must have the
                same name in every mode.

        Returns:
            The batch's per-image records (see [Evaluator.update][imgtrans.metrics.tally.Evaluator.update]).

        Raises:
            ValueError: Unknown mode, or images the evaluation cannot use (the message says which).
        """
        if mode not in self.evaluators:
            raise ValueError(f"unknown mode {mode!r}; this report has {', '.join(map(repr, self.evaluators))}")
        unit_inputs = to_unit_range(inputs, "inputs")
        if unit_inputs.shape[1] not in (1, 3):
            raise ValueError(f"inputs must have 1 or 3 channels to be shown; got {unit_inputs.shape[1]}")
        if isinstance(outputs, torch.Tensor) and outputs.ndim == 4 and unit_inputs.shape[0] != outputs.shape[0]:
            raise ValueError(f"got {unit_inputs.shape[0]} inputs for {outputs.shape[0]} outputs")
        records = self.evaluators[mode].update(outputs, targets, names)  # checks outputs, targets and names
        unit_outputs = to_unit_range(outputs, "outputs")
        unit_targets = to_unit_range(targets, "targets") if targets is not None else None
        for k, record in enumerate(records):
            images = {f"output-{mode}": unit_outputs[k]}
            if record["name"] not in self._rows:  # first seen: its row's input and target too
                self._rows[record["name"]] = len(self._rows)
                images.update(input=unit_inputs[k], **({"target": unit_targets[k]} if unit_targets is not None else {}))
            row = self._rows[record["name"]]
            for kind, image in images.items():
                atomic_write(self.directory / self.image_file(row, kind), _png(tensor_to_image(image, (0.0, 1.0))))
        return records

    def add_real(self, images: torch.Tensor) -> None:
        """Add real images of the target domain, for every mode: what unpaired outputs are compared with.

        See [Evaluator.update_real][imgtrans.metrics.tally.Evaluator.update_real]; the images are
        counted in the summary (``real_images``), not shown.
        """
        for evaluator in self.evaluators.values():
            evaluator.update_real(images)

    def set_inception_scores(self, mode: str, scores: Mapping[str, Any]) -> None:
        """Attach a mode's FID and KID.

        ``scores`` is what [InceptionDistance.compute][imgtrans.metrics.fid.InceptionDistance.compute] returns.

        They go into the mode's summary under ``"fid"``, with the bias warning of
        [bias_note][imgtrans.metrics.fid.bias_note] under ``"warning"`` when there are few images.
        """
        if mode not in self.evaluators:
            raise ValueError(f"unknown mode {mode!r}; this report has {', '.join(map(repr, self.evaluators))}")
        from imgtrans.metrics.fid import bias_note

        scores = dict(scores)
        if (note := bias_note(int(scores["images"]))) is not None:
            scores["warning"] = note
        self.inception_scores[mode] = scores

    def _check_complete(self) -> None:
        names = {mode: {record["name"] for record in e.images} for mode, e in self.evaluators.items()}
        empty = [mode for mode, seen in names.items() if not seen]
        if empty:
            raise ValueError(f"no images were evaluated in mode {', '.join(map(repr, empty))}; nothing to report")
        first_mode, first = next(iter(names.items()))
        for mode, seen in names.items():
            if seen != first:
                missing = sorted(first ^ seen)[:5]
                raise ValueError(
                    f"modes {first_mode!r} and {mode!r} evaluated different images (e.g. {', '.join(missing)}); "
                    "every mode must evaluate the same images"
                )
        if len({evaluator.paired for evaluator in self.evaluators.values()}) > 1:
            raise ValueError("some modes were given targets and others not: every mode must evaluate the same data")
        reference = next(iter(self.evaluators.values())).target_histograms
        for mode, evaluator in self.evaluators.items():
            counts = evaluator.target_histograms
            if counts.keys() != reference.keys() or any(not torch.equal(counts[c], reference[c]) for c in reference):
                raise ValueError(f"mode {mode!r} was given different targets than {first_mode!r} for the same images")

    def metrics(self) -> dict[str, Any]:
        """Everything ``metrics.json`` holds, as a dict (non-finite numbers still floats).

        Returns:
            ``{"title", "info", "conventions", "modes": {mode: {"summary", "lab_distributions",
                "images"}}, "images": [{"name", "input", "target", "outputs": {mode: file}}],
                "files": {...}}``; ``summary`` is [Evaluator.summary][imgtrans.metrics.tally.Evaluator.summary].
                On unpaired data the images have no ``"target"``, their records no scores, and the
                conventions say so (``"unpaired"``) instead of describing the per-image metrics.

        Raises:
            ValueError: A mode has no images, or the modes evaluated different images or targets.
        """
        self._check_complete()
        paired = next(iter(self.evaluators.values())).paired
        return {
            "title": self.title,
            "info": self.info,
            "conventions": {
                "scale": "metrics on images mapped from [-1, 1] to [0, 1]",
                **(PIXEL_CONVENTIONS if paired else {"unpaired": UNPAIRED_CONVENTION}),
                "lab": "CIE Lab (D65); histograms of one Lab unit per bin centred on integers",
                "non_finite": "written as the strings 'inf', '-inf', 'nan'",
                **({"fid": FID_CONVENTION} if self.inception_scores else {}),
            },
            "modes": {
                mode: {
                    "summary": {**evaluator.summary(), **self._inception_summary(mode)},
                    "lab_distributions": evaluator.lab_distributions(),
                    "images": [dict(record) for record in evaluator.images],
                }
                for mode, evaluator in self.evaluators.items()
            },
            "images": [
                {
                    "name": name,
                    "input": self.image_file(row, "input"),
                    **({"target": self.image_file(row, "target")} if paired else {}),
                    "outputs": {mode: self.image_file(row, f"output-{mode}") for mode in self.evaluators},
                }
                for name, row in self._rows.items()
            ],
            "files": {"html": HTML_FILE, "lab_histograms": FIGURE_FILE},
        }

    def _inception_summary(self, mode: str) -> dict[str, Any]:
        return {"fid": dict(self.inception_scores[mode])} if mode in self.inception_scores else {}

    def write(self) -> dict[str, Any]:
        """Write the figure, the page and ``metrics.json`` (last), and return the metrics.

        Returns:
            The metrics as written, with non-finite numbers as strings (see
                [json_safe][imgtrans.metrics.report.json_safe]): what
                [format_summary][imgtrans.metrics.rendering.format_summary] takes.
        """
        metrics = json_safe(self.metrics())
        paired = next(iter(self.evaluators.values())).paired
        figure = draw_lab_histograms({mode: e.lab_distributions() for mode, e in self.evaluators.items()},
                                     "target" if paired else "real images (target domain)")  # fmt: skip
        atomic_write(self.directory / FIGURE_FILE, _png(figure))
        atomic_write(self.directory / HTML_FILE, render_html(metrics))
        write_json(self.directory / METRICS_FILE, metrics)
        return metrics


def write_report(
    directory: PathLike,
    runs: Mapping[str, Iterable[Batch]],
    title: str = "imgtrans evaluation",
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate batches of one or more modes and write the report.

    The one-call form of [Report][imgtrans.metrics.report.Report].

    Args:
        directory: Where to write the report.
        runs: For each mode, in display order, an iterable of batches
            ``(inputs, outputs, targets, names)``; consumed one batch at a time, so it can be
            a generator that runs a model lazily.
        title: The page's heading.
        info: Facts to keep with the report (model, checkpoint, data, direction).

    Returns:
        The metrics as written to ``metrics.json``.
    """
    report = Report(directory, list(runs), title=title, info=info)
    for mode, batches in runs.items():
        for batch in batches:
            if not isinstance(batch, (tuple, list)) or len(batch) != 4:
                raise ValueError(f"each batch of mode {mode!r} must be a tuple (inputs, outputs, targets, names)")
            report.add(mode, *batch)
    return report.write()
