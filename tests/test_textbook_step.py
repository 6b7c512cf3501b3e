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
    result = textbook_equal.compare(steps=3, base_channels=8)
    assert result["textbook_fp32_error"] > 0  # float32 rounding is visible against float64 ...
    assert result["ratio"] < 0.05, result  # ... and imgtrans is far closer to the textbook than that


def test_a_different_objective_is_told_apart():
    result = textbook_equal.compare(steps=3, base_channels=8, model_args={"lambda_l1": 99.0})
    assert result["ratio"] > 0.3, result
