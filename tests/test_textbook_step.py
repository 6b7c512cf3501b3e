"""imgtrans's training step computes the textbook's (benchmarks/textbook_equal.py), with every speed path on.

At 256x256 with width-8 networks every path the full model takes at batch 1 is taken (the matmul paths
depend on pixels, not channels). A different function (lambda 99 instead of 100) is the control that
the comparison can fail.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("textbook_equal", ROOT / "benchmarks" / "textbook_equal.py")
textbook_equal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(textbook_equal)

pytestmark = pytest.mark.skipif(not textbook_equal.TEXTBOOK.is_file(), reason=f"{textbook_equal.TEXTBOOK} is absent")


def test_three_steps_equal_the_textbook_within_float_rounding():
    # The textbook's own float32 run, against float64, is the yardstick of float rounding: imgtrans
    # (whose PatchGAN output layer sums its taps in float32, more exactly than oneDNN's convolution)
    # must be no further from float64 than it, in the first G update's gradient and over 3 steps.
    result = textbook_equal.compare(steps=3, base_channels=8)
    assert result["textbook_fp32_error"] > 0 and result["first_gradient_textbook_fp32_error"] > 0, result
    assert result["first_gradient_imgtrans_error"] < 2 * result["first_gradient_textbook_fp32_error"], result
    assert result["imgtrans_error"] < 1.5 * result["textbook_fp32_error"], result


def test_a_different_objective_is_told_apart():
    # lambda 99 instead of 100: its first gradient is 66 times the textbook's rounding off float64.
    result = textbook_equal.compare(steps=1, base_channels=8, model_args={"lambda_l1": 99.0})
    assert result["first_gradient_imgtrans_error"] > 10 * result["first_gradient_textbook_fp32_error"], result
