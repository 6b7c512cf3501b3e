"""The evaluation core and the report on disk: metrics.json, the HTML page, the Lab figure."""

import json
import math
import re

import pytest
import torch
from PIL import Image

import imgtrans
from imgtrans.inference import eval_mode, paper_eval_mode
from imgtrans.metrics import Evaluator, Report, format_summary, mean_scores, write_json, write_report
from imgtrans.metrics.report import json_safe


def images(n: int, c: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, c, size, size) * 1.6 - 0.8


def strict_json(path):
    """Parse as strict JSON: Infinity and NaN are refused."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


# --- Evaluator ----------------------------------------------------------------------------------


def test_evaluator_accumulates_over_batches():
    evaluator = Evaluator()
    targets = images(5)
    outputs = (targets + 0.1).clamp(-1, 1)
    first = evaluator.update(outputs[:3], targets[:3], ["a", "b", "c"])
    evaluator.update(outputs[3:], targets[3:], ("d", "e"))
    assert len(evaluator) == 5 and [r["name"] for r in evaluator.images] == list("abcde")
    assert first == evaluator.images[:3]
    summary = evaluator.summary()
    assert summary["images"] == 5
    for metric in ("l1", "psnr", "ssim", "sharpness"):
        values = [r[metric] for r in evaluator.images]
        assert summary["mean"][metric] == pytest.approx(sum(values) / 5)
    assert set(summary["lab_intersection"]) == {"L", "a", "b"}
    assert all(0 < v < 1 for v in summary["lab_intersection"].values())
    # The histograms count the whole set: the same as counting it in one batch.
    whole = Evaluator()
    whole.update(outputs, targets, list("abcde"))
    assert whole.lab_intersection() == pytest.approx(evaluator.lab_intersection(), abs=1e-12)


def test_evaluator_perfect_outputs():
    evaluator = Evaluator()
    x = images(2)
    evaluator.update(x, x, ["a", "b"])
    summary = evaluator.summary()
    assert summary["mean"] == {"l1": 0.0, "psnr": math.inf, "ssim": pytest.approx(1.0), "sharpness": 1.0}
    assert summary["lab_intersection"] == {"L": pytest.approx(1.0), "a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    distributions = evaluator.lab_distributions()
    assert distributions["axes"]["L"] == {"low": -0.5, "high": 100.5, "bins": 101}
    assert sum(distributions["output"]["a"]) == pytest.approx(1.0)


def test_evaluator_refuses_bad_batches_and_keeps_its_state():
    evaluator = Evaluator()
    evaluator.update(images(2), images(2), ["a", "b"])
    with pytest.raises(ValueError, match="unique.*repeated: a"):
        evaluator.update(images(1), images(1), ["a"])
    with pytest.raises(ValueError, match="unique.*repeated: c"):
        evaluator.update(images(2), images(2), ["c", "c"])
    with pytest.raises(ValueError, match="got 1 names for a batch of 2"):
        evaluator.update(images(2), images(2), ["c"])
    with pytest.raises(ValueError, match="sequence of strings"):
        evaluator.update(images(1), images(1), "c")
    with pytest.raises(ValueError, match="same channels"):
        evaluator.update(images(1, c=1), images(1, c=1), ["c"])
    with pytest.raises(ValueError, match="RGB \\(3 channels\\) or gray"):
        Evaluator().update(images(1, c=2), images(1, c=2), ["c"])
    assert len(evaluator) == 2 and evaluator.output_histograms["L"].sum().item() == 2 * 16 * 16


def test_mean_scores_needs_images():
    with pytest.raises(ValueError, match="no images"):
        mean_scores([])
    with pytest.raises(ValueError, match="no images"):
        Evaluator().summary()


# --- JSON ---------------------------------------------------------------------------------------


def test_non_finite_numbers_stay_valid_json(tmp_path):
    data = {"psnr": math.inf, "nested": [{"x": -math.inf}, [math.nan, 1.5]], "ok": 2}
    assert json_safe(data) == {"psnr": "inf", "nested": [{"x": "-inf"}, ["nan", 1.5]], "ok": 2}
    write_json(tmp_path / "m.json", data)
    parsed = strict_json(tmp_path / "m.json")
    assert parsed == json_safe(data)
    assert float(parsed["psnr"]) == math.inf


# --- the report on disk -------------------------------------------------------------------------


def two_mode_runs(names):
    inputs, targets = images(len(names)), images(len(names))
    split = 3
    runs = {}
    for mode, scale in (("eval", 0.5), ("paper", 0.9)):
        outputs = targets * scale
        runs[mode] = [
            (inputs[:split], outputs[:split], targets[:split], names[:split]),
            (inputs[split:], outputs[split:], targets[split:], names[split:]),
        ]
    return runs


def test_write_report(tmp_path):
    names = ["1.jpg", "<b>&2.jpg", "sub/3.jpg", "4.jpg", "5.jpg"]
    info = {"direction": "BtoA", "data": tmp_path / "facades"}
    metrics = write_report(tmp_path / "report", two_mode_runs(names), title="facades", info=info)
    report = tmp_path / "report"

    parsed = strict_json(report / "metrics.json")
    assert parsed == metrics
    assert list(parsed["modes"]) == ["eval", "paper"]
    assert [r["name"] for r in parsed["modes"]["paper"]["images"]] == names
    assert parsed["info"] == {"direction": "BtoA", "data": str(tmp_path / "facades")}  # paths kept as strings
    # Lower contrast (eval: 0.5) is blurrier and further from the target than 0.9.
    eval_mean, paper_mean = parsed["modes"]["eval"]["summary"]["mean"], parsed["modes"]["paper"]["summary"]["mean"]
    assert eval_mean["sharpness"] == pytest.approx(0.25) and paper_mean["sharpness"] == pytest.approx(0.81)
    assert eval_mean["l1"] > paper_mean["l1"] and eval_mean["psnr"] < paper_mean["psnr"]

    page = (report / "index.html").read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="image">.*?</tr>', page)
    assert len(rows) == len(names)
    assert "&lt;b&gt;&amp;2.jpg" in page and "<b>&2.jpg" not in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == 1 + 4 * len(names)  # the figure, then input, two outputs and target per row
    for source in sources:
        assert (report / source).is_file(), source
        with Image.open(report / source) as image:
            image.verify()
    for image in parsed["images"]:
        assert (report / image["outputs"]["paper"]).is_file()
    with Image.open(report / "images/0000-target.png") as png:
        assert png.size == (16, 16) and png.mode == "RGB"

    with Image.open(report / "lab_histograms.png") as figure:
        assert figure.format == "PNG" and figure.width == 3 * 440 and figure.height > 300
    assert not list(report.rglob("*.tmp"))  # atomic writes leave no temporary files

    table = format_summary(metrics)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "eval", "paper"]
    assert any(line.startswith("sharpness") and line.split()[-2:] == ["0.250", "0.810"] for line in lines)
    assert any(line.startswith("Lab intersection b") for line in lines)


def test_report_of_perfect_outputs_writes_infinity_as_a_string(tmp_path):
    x, y = images(2), images(2)
    metrics = write_report(tmp_path, {"eval": [(x, y, y, ["a", "b"])]})
    parsed = strict_json(tmp_path / "metrics.json")
    assert parsed["modes"]["eval"]["summary"]["mean"]["psnr"] == "inf"
    assert parsed["modes"]["eval"]["images"][0]["psnr"] == "inf"
    assert re.search(r"PSNR \(dB\)\s+inf", format_summary(metrics))


def test_gray_report(tmp_path):
    x, y = images(2, c=1), images(2, c=1)
    metrics = write_report(tmp_path, {"eval": [(x, y * 0.5, y, ["a", "b"])]})
    assert list(metrics["modes"]["eval"]["summary"]["lab_intersection"]) == ["L"]
    with Image.open(tmp_path / "lab_histograms.png") as figure:
        assert figure.width == 440  # one panel: lightness only
    with Image.open(tmp_path / "images/0001-input.png") as png:
        assert png.mode == "L"


def test_report_refuses_inconsistent_modes(tmp_path):
    x, y = images(2), images(2)
    report = Report(tmp_path, ["eval", "paper"])
    report.add("eval", x, y, y, ["a", "b"])
    with pytest.raises(ValueError, match="no images were evaluated in mode 'paper'"):
        report.write()
    report.add("paper", x[:1], y[:1], y[:1], ["a"])
    with pytest.raises(ValueError, match="evaluated different images"):
        report.write()
    report.add("paper", x[1:], y[1:], torch.zeros_like(y[1:]), ["b"])
    with pytest.raises(ValueError, match="different targets"):
        report.write()
    with pytest.raises(ValueError, match="unknown mode 'train'"):
        report.add("train", x, y, y, ["c", "d"])
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("modes", [[], ["eval", "eval"], ["../up"], ["a b"]])
def test_mode_names_must_be_file_names(tmp_path, modes):
    with pytest.raises(ValueError, match="modes must be distinct names"):
        Report(tmp_path, modes)


def test_report_refuses_bad_inputs(tmp_path):
    report = Report(tmp_path)
    y = images(2)
    with pytest.raises(ValueError, match="inputs must have 1 or 3 channels"):
        report.add("eval", images(2, c=2), y, y, ["a", "b"])
    with pytest.raises(ValueError, match="got 1 inputs for 2 outputs"):
        report.add("eval", images(1), y, y, ["a", "b"])
    with pytest.raises(ValueError, match=r"inputs must lie in \[-1, 1\]"):
        report.add("eval", images(2) * 255, y, y, ["a", "b"])
    with pytest.raises(ValueError, match="tuple \\(inputs, outputs, targets, names\\)"):
        write_report(tmp_path, {"eval": [(y, y, y)]})
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        Report(tmp_path / "file")


def test_report_of_a_model_in_both_modes(tmp_path):
    """The two inference modes of a (tiny, untrained) pix2pix generator, batches produced lazily."""
    generator = imgtrans.build("unet256", base_channels=4)
    data = [(images(2, size=32), images(2, size=32), [f"{k}a", f"{k}b"]) for k in range(2)]

    def run(mode):
        for inputs, targets, names in data:
            with torch.no_grad(), mode(generator):
                yield inputs, generator(inputs), targets, names

    metrics = write_report(tmp_path, {"eval": run(eval_mode), "paper": run(paper_eval_mode)})
    eval_scores = [r["l1"] for r in metrics["modes"]["eval"]["images"]]
    paper_scores = [r["l1"] for r in metrics["modes"]["paper"]["images"]]
    assert len(eval_scores) == len(paper_scores) == 4
    assert eval_scores != paper_scores  # dropout and batch statistics change the outputs
    assert generator.training  # the modes restored the generator's own state
