"""Evaluation metrics: pixel errors, SSIM, the paper's Lab colour analysis, sharpness, FID and KID, and reports.

Every metric takes batches ``(N, C, H, W)`` in $[-1, 1]$, as imgtrans models output them, and
measures on $[0, 1]$ (see [imgtrans.metrics.images][imgtrans.metrics.images]); per-image
metrics return a tensor of shape ``(N,)``.
"""

from imgtrans.metrics.color import LAB_AXES, HistogramAxis, histogram_intersection, lab_histograms, rgb_to_lab
from imgtrans.metrics.tally import METRICS, Evaluator, image_scores, mean_scores
from imgtrans.metrics.fid import InceptionDistance, InceptionFeatures
from imgtrans.metrics.figure import draw_lab_histograms
from imgtrans.metrics.images import to_unit_range
from imgtrans.metrics.pixel import l1_error, psnr
from imgtrans.metrics.rendering import format_summary
from imgtrans.metrics.report import Report, write_json, write_report
from imgtrans.metrics.sharpness import gradient_energy, relative_sharpness
from imgtrans.metrics.ssim import ssim, ssim_map

__all__ = [
    "LAB_AXES",
    "METRICS",
    "Evaluator",
    "HistogramAxis",
    "InceptionDistance",
    "InceptionFeatures",
    "Report",
    "draw_lab_histograms",
    "format_summary",
    "gradient_energy",
    "histogram_intersection",
    "image_scores",
    "l1_error",
    "lab_histograms",
    "mean_scores",
    "psnr",
    "relative_sharpness",
    "rgb_to_lab",
    "ssim",
    "ssim_map",
    "to_unit_range",
    "write_json",
    "write_report",
]
