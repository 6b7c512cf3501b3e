r"""The paper's Figure 7, drawn with Pillow: Lab marginals of outputs against targets.

Three panels (L, a, b). Each plots $\log_{10} P$ per bin, as the paper does ("log probability
... emphasize[s] differences in the low probability regions"): the target's distribution as a
dashed black line, as the paper's dotted ground truth, and one coloured line per evaluation
mode. Empty bins ($P = 0$, $\log P = -\infty$) leave gaps. Each panel's title gives the
histogram intersection of every mode with the target, the number the paper tabulates.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from imgtrans.metrics.color import histogram_intersection

PANEL_SIZE = (440, 320)
LEFT, RIGHT, TOP, BOTTOM = 70, 18, 40, 50  # margins of the plot area inside a panel
HEADER = 34  # the legend row above the panels
TARGET_COLOR = (0, 0, 0)
MODE_COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189))
GRID_COLOR = (225, 225, 225)

Point = tuple[float, float]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _nice_step(span: float, ticks: int = 6) -> float:
    """A step of 1, 2 or 5 times a power of ten giving about ``ticks`` ticks over ``span``."""
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _dashed(draw: ImageDraw.ImageDraw, points: Sequence[Point], fill: tuple[int, int, int], width: int) -> None:
    """A polyline drawn as 7-pixel dashes with 5-pixel gaps, continuing across its vertices."""
    dash, period, travelled = 7.0, 12.0, 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        position = 0.0
        while position < length:
            phase = (travelled + position) % period
            step = min((dash - phase) if phase < dash else (period - phase), length - position)
            if phase < dash:
                a, b = position / length, (position + step) / length
                draw.line([(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))],
                          fill=fill, width=width)  # fmt: skip
            position += step
        travelled += length


def _polyline(draw: ImageDraw.ImageDraw, points: Sequence[Point], color: tuple[int, int, int], dashed: bool) -> None:
    if len(points) == 1:
        draw.point(points, fill=color)
    elif dashed:
        _dashed(draw, points, color, 2)
    else:
        draw.line(points, fill=color, width=2)


def _runs(xs: Sequence[float], ys: Sequence[float | None]) -> list[list[Point]]:
    """Split a curve into runs of consecutive bins with a value (empty bins are gaps)."""
    runs: list[list[Point]] = [[]]
    for x, y in zip(xs, ys):
        if y is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y))
    return [run for run in runs if run]


def _vertical_text(text: str, font: Any) -> Image.Image:
    left, top, right, bottom = font.getbbox(text)
    label = Image.new("RGBA", (right - left + 2, bottom - top + 2), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((1 - left, 1 - top), text, fill=(0, 0, 0), font=font)
    return label.rotate(90, expand=True)


def _panel(channel: str, axis: Mapping[str, Any], target: Sequence[float],
           outputs: Mapping[str, Sequence[float]]) -> Image.Image:  # fmt: skip
    width, height = PANEL_SIZE
    panel = Image.new("RGB", PANEL_SIZE, "white")
    draw = ImageDraw.Draw(panel)
    font, small = _font(14), _font(12)
    bin_width = (axis["high"] - axis["low"]) / axis["bins"]
    centers = [axis["low"] + bin_width * (k + 0.5) for k in range(axis["bins"])]
    curves = [(target, TARGET_COLOR, True)] + [
        (probs, MODE_COLORS[k % len(MODE_COLORS)], False) for k, probs in enumerate(outputs.values())
    ]
    logs = [[math.log10(p) if p > 0 else None for p in probs] for probs, _, _ in curves]

    # x range: the bin centres any curve uses, widened to whole ticks; y range: whole decades.
    used = [k for k in range(axis["bins"]) if any(probs[k] > 0 for probs, _, _ in curves)]
    x_low, x_high = centers[used[0]], centers[used[-1]]
    x_step = _nice_step(max(x_high - x_low, 1.0))
    x_low, x_high = math.floor(x_low / x_step) * x_step, math.ceil(x_high / x_step) * x_step
    values = [y for ys in logs for y in ys if y is not None]
    y_low, y_high = math.floor(min(values)), math.ceil(max(values))
    if y_low == y_high:
        y_low -= 1
    y_step = max(1, math.ceil((y_high - y_low) / 6))

    plot_left, plot_right, plot_top, plot_bottom = LEFT, width - RIGHT, TOP, height - BOTTOM

    def to_pixel(x: float, y: float) -> Point:
        return (plot_left + (x - x_low) / (x_high - x_low) * (plot_right - plot_left),
                plot_bottom - (y - y_low) / (y_high - y_low) * (plot_bottom - plot_top))  # fmt: skip

    for k in range(round((x_high - x_low) / x_step) + 1):  # x ticks and grid
        x = x_low + k * x_step
        px = to_pixel(x, y_low)[0]
        draw.line([(px, plot_top), (px, plot_bottom)], fill=GRID_COLOR)
        draw.line([(px, plot_bottom), (px, plot_bottom + 4)], fill="black")
        draw.text((px, plot_bottom + 6), f"{x:g}", fill="black", font=small, anchor="mt")
    for y in range(y_low, y_high + 1, y_step):  # y ticks and grid, one per decade
        py = to_pixel(x_low, y)[1]
        draw.line([(plot_left, py), (plot_right, py)], fill=GRID_COLOR)
        draw.line([(plot_left - 4, py), (plot_left, py)], fill="black")
        draw.text((plot_left - 6, py), f"{y}", fill="black", font=small, anchor="rm")
    draw.rectangle([plot_left, plot_top, plot_right, plot_bottom], outline="black")

    for ys, (_, color, dashed) in zip(logs, curves):
        for run in _runs(centers, ys):
            _polyline(draw, [to_pixel(x, y) for x, y in run], color, dashed)

    draw.text(((plot_left + plot_right) / 2, height - 6), channel, fill="black", font=font, anchor="md")
    y_label = _vertical_text(f"log10 P({channel})", font)
    panel.paste(y_label, (4, (plot_top + plot_bottom - y_label.height) // 2), y_label)
    scores = ", ".join(
        f"{name} {histogram_intersection(torch.tensor(probs), torch.tensor(target)):.3f}"
        for name, probs in outputs.items()
    )
    draw.text(((plot_left + plot_right) / 2, 8), f"intersection: {scores}", fill="black", font=small, anchor="mt")
    return panel


def draw_lab_histograms(distributions: Mapping[str, Mapping[str, Any]], reference: str = "target") -> Image.Image:
    """Draw the Lab marginals of each mode's outputs against the targets' (Figure 7).

    Args:
        distributions: One entry per evaluation mode, in legend order, each as returned by
            [Evaluator.lab_distributions][imgtrans.metrics.tally.Evaluator.lab_distributions].
            The targets are taken from the first mode: every mode must have evaluated the same
            images.
        reference: the legend of the dashed line: ``"target"``, or what else the outputs are
            compared with (unpaired data: the real images of the target domain).

    Returns:
        An RGB image: a legend row, then one panel per channel (L, a, b; only L for gray).

    Raises:
        ValueError: No mode, or modes with different channels.
    """
    if not distributions:
        raise ValueError("nothing to draw: give the Lab distributions of at least one mode")
    first = next(iter(distributions.values()))
    channels = list(first["axes"])
    if any(list(d["axes"]) != channels for d in distributions.values()):
        raise ValueError("every mode must have the same Lab channels to be drawn together")
    panels = [
        _panel(channel, first["axes"][channel], first["target"][channel],
               {mode: d["output"][channel] for mode, d in distributions.items()})  # fmt: skip
        for channel in channels
    ]
    figure = Image.new("RGB", (PANEL_SIZE[0] * len(panels), PANEL_SIZE[1] + HEADER), "white")
    for k, panel in enumerate(panels):
        figure.paste(panel, (k * PANEL_SIZE[0], HEADER))

    draw, font = ImageDraw.Draw(figure), _font(14)
    entries = [(reference, TARGET_COLOR, True)] + [
        (f"output ({mode})", MODE_COLORS[k % len(MODE_COLORS)], False) for k, mode in enumerate(distributions)
    ]
    x = LEFT
    for label, color, dashed in entries:
        segment = [(x, HEADER / 2), (x + 36, HEADER / 2)]
        _polyline(draw, segment, color, dashed)
        draw.text((x + 44, HEADER / 2), label, fill="black", font=font, anchor="lm")
        x += 44 + draw.textlength(label, font=font) + 28
    return figure
