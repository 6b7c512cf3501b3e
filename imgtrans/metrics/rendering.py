"""The report as a reader sees it: the summary table (printed, and on the page) and the HTML page.

Both are drawn from the metrics a [Report][imgtrans.metrics.report.Report] writes (or
``metrics.json`` read back). A report of unpaired data (outputs without targets) has no per-image
scores and no target column: only the distribution metrics (Lab intersections, FID and KID).
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping

from imgtrans.metrics.tally import METRICS

# How each metric is labelled and printed, in tables and on the page.
METRIC_LABELS = {"l1": "L1 ([0, 1] scale)", "psnr": "PSNR (dB)", "ssim": "SSIM", "sharpness": "sharpness (target = 1)"}
METRIC_FORMATS = {"l1": ".4f", "psnr": ".2f", "ssim": ".4f", "sharpness": ".3f"}


def _format(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else str(value)


def _summary_rows(metrics: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    summaries = [mode["summary"] for mode in metrics["modes"].values()]
    rows = [("images", [str(s["images"]) for s in summaries])]
    if any("real_images" in s for s in summaries):  # unpaired: no per-image scores, the real images compared with
        rows.append(("real images (target domain)", [str(s.get("real_images", "-")) for s in summaries]))
    for metric in METRICS if all("mean" in s for s in summaries) else ():
        means = [float(s["mean"][metric]) for s in summaries]
        rows.append((METRIC_LABELS[metric], [_format(mean, METRIC_FORMATS[metric]) for mean in means]))
    for channel in summaries[0]["lab_intersection"]:
        intersections = [float(s["lab_intersection"][channel]) for s in summaries]
        rows.append((f"Lab intersection {channel}", [_format(value, ".3f") for value in intersections]))
    inception = [s.get("fid") for s in summaries]
    if any(inception):
        counts = sorted({int(i["images"]) for i in inception if i})
        label = f"FID ({', '.join(map(str, counts))} images)"
        rows.append((label, [_format(float(i["fid"]), ".2f") if i and "fid" in i else "-" for i in inception]))
        if any(i and "kid" in i for i in inception):
            rows.append(("KID (mean ± std)", [
                f"{_format(float(i['kid']), '.4f')} ± {_format(float(i['kid_std']), '.4f')}" if i and "kid" in i
                else "-" for i in inception
            ]))  # fmt: skip
    return rows


def inception_warnings(metrics: Mapping[str, Any]) -> list[str]:
    """The distinct FID warnings of a report's modes (the bias of FID on few images)."""
    notes = [mode["summary"].get("fid", {}).get("warning") for mode in metrics["modes"].values()]
    return list(dict.fromkeys(note for note in notes if note))


def format_summary(metrics: Mapping[str, Any]) -> str:
    """The means and Lab intersections of every mode as a plain-text table, one column per mode.

    Args:
        metrics: As returned by [Report.write][imgtrans.metrics.report.Report.write] or read
            from ``metrics.json``.
    """
    header = ("metric", list(metrics["modes"]))
    rows = [header, *_summary_rows(metrics)]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(row[1][k]) for row in rows) for k in range(len(header[1]))]
    lines = [
        "  ".join([label.ljust(label_width), *(cell.rjust(width) for cell, width in zip(cells, widths))])
        for label, cells in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines += [f"warning: {note}" for note in inception_warnings(metrics)]
    return "\n".join(lines)


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
td, th { padding: 4px 8px; border: 1px solid #ddd; vertical-align: top; text-align: center; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img.sample { width: 256px; image-rendering: pixelated; display: block; }
div.scores { font-size: 0.85em; margin-top: 4px; }
p.warning { background: #fff3cd; border-left: 4px solid #e0a800; padding: 6px 10px; max-width: 60em; }
"""


def _scores_html(record: Mapping[str, Any]) -> str:
    return "<br>".join(
        f"{html.escape(METRIC_LABELS[m])}: {_format(float(record[m]), METRIC_FORMATS[m])}"
        for m in METRICS
        if m in record  # unpaired data: no scores
    )


def render_html(metrics: Mapping[str, Any]) -> str:
    """The report's page: summary table, Lab figure, then input | outputs | target for every image.

    Args:
        metrics: As returned by [Report.write][imgtrans.metrics.report.Report.write]; image
            paths in it are relative to the page.
    """
    esc = html.escape
    modes = list(metrics["modes"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(metrics['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(metrics['title'])}</h1>",
    ]
    if metrics["info"]:
        items = "".join(f"<li>{esc(str(key))}: {esc(str(value))}</li>" for key, value in metrics["info"].items())
        parts.append(f"<ul>{items}</ul>")
    parts.append("<h2>Summary</h2><table><tr><th>metric</th>" + "".join(f"<th>{esc(m)}</th>" for m in modes) + "</tr>")
    for label, cells in _summary_rows(metrics):
        parts.append(f"<tr><td>{esc(label)}</td>" + "".join(f'<td class="number">{c}</td>' for c in cells) + "</tr>")
    parts.append("</table>")
    parts += [f'<p class="warning">{esc(note)}</p>' for note in inception_warnings(metrics)]
    parts.append(
        "<h2>Colour distributions (Lab)</h2>"
        f'<p><img src="{esc(metrics["files"]["lab_histograms"])}" alt="Lab histograms of outputs and targets"></p>'
    )
    scores = {mode: {r["name"]: r for r in metrics["modes"][mode]["images"]} for mode in modes}
    parts.append("<h2>Images</h2><table><tr><th>name</th><th>input</th>")
    paired = all("target" in image for image in metrics["images"])  # unpaired data: no target column
    parts.append("".join(f"<th>output ({esc(mode)})</th>" for mode in modes) + ("<th>target</th>" if paired else "")
                 + "</tr>")  # fmt: skip
    for image in metrics["images"]:
        name = image["name"]
        cells = [f"<td>{esc(name)}</td>", f'<td><img class="sample" src="{esc(image["input"])}" alt="input"></td>']
        for mode in modes:
            cells.append(
                f'<td><img class="sample" src="{esc(image["outputs"][mode])}" alt="output ({esc(mode)})">'
                f'<div class="scores">{_scores_html(scores[mode][name])}</div></td>'
            )
        if paired:
            cells.append(f'<td><img class="sample" src="{esc(image["target"])}" alt="target"></td>')
        parts.append('<tr class="image">' + "".join(cells) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"
