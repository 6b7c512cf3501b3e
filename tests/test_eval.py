import json
from pathlib import Path

import pytest
from PIL import Image

from imgtrans.cli import main
from imgtrans.data import SyntheticFacades, write_ab_folder

from conftest import TINY_MODEL

TINY = json.dumps(TINY_MODEL)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    data = write_ab_folder(SyntheticFacades(5, 32, seed=3), root / "test")
    run = root / "run"
    argv = ["train", "pix2pix-facades", "--data", str(data), "--direction", "BtoA", "--out", str(run),
            "--model-args", TINY, "--load-size", "32", "--crop-size", "32", "--workers", "0", "--max-steps", "2"]  # fmt: skip
    assert main(argv) == 0
    return run, data


def test_eval_end_to_end_in_both_modes(trained, tmp_path, capsys):
    run, data = trained
    out = tmp_path / "report"
    assert main(["eval", str(run), "--data", str(data), "--direction", "BtoA", "--out", str(out), "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "psnr" in printed.lower() and "eval" in printed and "paper" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["modes"]) == {"eval", "paper"}
    assert metrics["info"]["images"] == 5 and metrics["info"]["batch_size"] == 2
    eval_images = metrics["modes"]["eval"]["images"]
    assert len(eval_images) == 5 and {"l1", "psnr", "ssim", "sharpness"} <= set(eval_images[0])
    assert metrics["modes"]["eval"]["summary"]["mean"] != metrics["modes"]["paper"]["summary"]["mean"]
    html = (out / "index.html").read_text()
    assert html.count("<tr") >= 5
    assert Image.open(out / "lab_histograms.png").size[0] > 100
    # the paper's mode is seeded: a second evaluation gives the same numbers
    assert main(["eval", str(run), "--data", str(data), "--direction", "BtoA", "--out", str(tmp_path / "again"),
                 "--batch-size", "2"]) == 0  # fmt: skip
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["modes"]["paper"]["summary"] == metrics["modes"]["paper"]["summary"]


def test_eval_limit_size_and_single_mode(trained, tmp_path):
    run, data = trained
    out = tmp_path / "r"
    argv = ["eval", str(run), "--data", str(data), "--direction", "BtoA", "--out", str(out), "--limit", "2",
            "--size", "48", "--modes", "eval"]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["modes"]) == ["eval"] and len(metrics["modes"]["eval"]["images"]) == 2


def test_eval_mixed_sizes_explain_the_fix(trained, tmp_path, capsys):
    run, data = trained
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, w in enumerate((64, 80)):
        Image.new("RGB", (w, 32), (i * 50, 10, 10)).save(mixed / f"{i}.png")
    assert main(["eval", str(run), "--data", str(mixed), "--out", str(tmp_path / "o")]) == 2
    assert "differ in size" in capsys.readouterr().err
    assert main(["eval", str(run), "--data", str(mixed), "--out", str(tmp_path / "o"), "--modes", "best"]) == 2
