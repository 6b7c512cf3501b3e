"""CycleGAN runs and models in eval (FID and KID on unpaired domains), export and the app, in both directions.

Unpaired test images have no targets: eval translates the source domain (testA/ for AtoB) with the
generator of the direction and compares the translations, as a distribution, with the real images
of the other domain (testB/). FID runs offline on Inception weights of the right layout with random
values (as tests/test_fid.py does); the checks are on what the Inception network is given, which
does not depend on its weights.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import threading
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import imgtrans
from imgtrans.cli import main
from imgtrans.cli.eval import unpaired_split
from imgtrans.data import (DomainImageDataset, SyntheticFacades, evaluation_domains, write_ab_folder,
                           write_unpaired_folder)
from imgtrans.images import image_to_tensor, save_image
from imgtrans.inference import translate
from imgtrans.metrics import Evaluator, Report, format_summary
from imgtrans.metrics.fid import WEIGHTS_FILE, InceptionDistance, random_inception_state
from imgtrans.metrics.scoring import UNPAIRED_NEEDS_FID, evaluate_model
from imgtrans.store.factory import load as load_model
from imgtrans.train import TrainConfig, Trainer

from zoo_fixtures import hub_settings

TINY = {"generator_args": {"base_channels": 4, "n_blocks": 2}, "discriminator_args": {"base_channels": 4}}
GENERATOR = {"AtoB": "generator_a", "BtoA": "generator_b"}
DOMAINS = {"AtoB": ("testA", "testB"), "BtoA": ("testB", "testA")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A CycleGAN run after one step, its data (trainA/B, testA with 3 images, testB with 2) and a model folder."""
    root = tmp_path_factory.mktemp("unpaired-eval")
    data = write_unpaired_folder(SyntheticFacades(4, 24, seed=0), root / "data")
    write_unpaired_folder(SyntheticFacades(5, 24, seed=7), data, split="test")  # A: 1, 3, 5.png; B: 2, 4.png
    settings = TrainConfig(model="cyclegan", model_args={**TINY, "pool_size": 2}, data=str(data), out=str(root / "run"),
                           epochs=1, batch_size=2, load_size=26, crop_size=24, workers=0, log_every=1,
                           sample_every=0, checkpoint_every=0, max_steps=1)  # fmt: skip
    run = Path(Trainer(settings).fit().out)
    folder = root / "model"
    imgtrans.save_pretrained(load_model(run), folder)
    return run, data, folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inception") / WEIGHTS_FILE
    torch.save(random_inception_state(seed=0), path)
    return path


def stacked(folder: Path) -> torch.Tensor:
    dataset = DomainImageDataset(folder)
    return torch.stack([dataset[i]["input"] for i in range(len(dataset))])


# --- eval on unpaired domains --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("interface, direction", [("cli", "AtoB"), ("python", "BtoA")])  # the page's test: both
def test_eval_translates_the_source_domain_with_its_generator_and_scores_fid_against_the_other_domain(
    trained, weights, tmp_path, monkeypatch, capsys, interface, direction
):
    run, data, _ = trained
    given: dict[str, list[torch.Tensor]] = {"real": [], "fake": []}
    for side in given:
        original = getattr(InceptionDistance, f"update_{side}")

        def record(self, images, original=original, side=side):
            given[side].append(images.clone())
            return original(self, images)

        monkeypatch.setattr(InceptionDistance, f"update_{side}", record)
    out = tmp_path / "report"
    if interface == "cli":
        argv = ["eval", str(run), "--data", str(data), "--direction", direction, "--out", str(out), "--fid",
                "--inception-weights", str(weights), "--modes", "eval"]  # fmt: skip
        assert main(argv) == 0
        printed = capsys.readouterr().out
    else:
        source, real = evaluation_domains(data, direction)
        evaluate_model(load_model(run), source, out, modes=["eval"], fid=True, inception_weights=weights, real=real,
                       direction=direction)  # fmt: skip
        printed = format_summary(json.loads((out / "metrics.json").read_text()))
    source_folder, real_folder = (data / name for name in DOMAINS[direction])
    # What the Inception network saw: every real image of the other domain, and the translations by G_A or G_B.
    torch.testing.assert_close(torch.cat(given["real"]), stacked(real_folder), rtol=0, atol=0)
    generator = getattr(load_model(run), GENERATOR[direction])
    torch.testing.assert_close(torch.cat(given["fake"]), translate(generator, stacked(source_folder)))
    other = getattr(load_model(run), GENERATOR["BtoA" if direction == "AtoB" else "AtoB"])
    assert not torch.allclose(torch.cat(given["fake"]), translate(other, stacked(source_folder)), atol=1e-3)

    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["modes"]["eval"]["summary"]
    sources, reals = len(list(source_folder.iterdir())), len(list(real_folder.iterdir()))
    assert summary["images"] == summary["fid"]["images"] == sources and (sources, reals) != (reals, sources)
    assert summary["real_images"] == summary["fid"]["real_images"] == reals
    assert summary["fid"]["fid"] > 0 and summary["fid"]["kid_subset_size"] == min(sources, reals)
    assert set(summary) == {"images", "real_images", "lab_intersection", "fid"}  # no "mean": no L1, PSNR, SSIM
    assert [r["name"] for r in metrics["modes"]["eval"]["images"]] == sorted(p.name for p in source_folder.iterdir())
    assert all(set(record) == {"name"} for record in metrics["modes"]["eval"]["images"])
    assert all("target" not in row for row in metrics["images"])
    assert "unpaired" in metrics["conventions"] and "psnr" not in metrics["conventions"]
    assert not any(p.name.endswith("-target.png") for p in (out / "images").iterdir())
    page = (out / "index.html").read_text()
    for absent in ("PSNR", "SSIM", "L1 (", "<th>target</th>", "nan", "NaN"):
        assert absent not in page and absent not in printed, absent
    assert "FID (" in page and "FID (" in printed and "real images (target domain)" in printed
    if interface == "cli":
        assert metrics["info"]["source"] == str(source_folder) and metrics["info"]["real"] == str(real_folder)


PAGE = Path(__file__).resolve().parents[1] / "docs" / "cyclegan.md"


def page_commands(*prefixes: str) -> list[str]:
    """The command lines of docs/cyclegan.md's bash blocks that start with one of ``prefixes``."""
    blocks = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)
    lines = [" ".join(line.split()) for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line.startswith(prefixes)]


@pytest.mark.slow
def test_the_cyclegan_page_s_eval_and_export_commands_run_as_written(trained, weights, tmp_path, monkeypatch):
    from imgtrans.data.downloads import MARKER
    from imgtrans.deploy.translators import load_translator

    pytest.importorskip("onnxruntime")  # the export checks its file with it
    run, data, _ = trained
    commands = page_commands("imgtrans eval", "imgtrans export")
    assert len(commands) == 3, commands
    # What the page names: horse2zebra downloaded (the tiny test split), the FID weights cached, runs/cyclegan.
    folder = tmp_path / "hf" / "imgtrans" / "datasets" / "horse2zebra"
    for domain in ("testA", "testB"):
        shutil.copytree(data / domain, folder / domain)
    (folder / MARKER).write_text(json.dumps({"name": "horse2zebra", "test": "a tiny synthetic stand-in"}))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(weights, tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_FILE)
    hub_settings(monkeypatch, home=tmp_path / "hf", offline=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    work = tmp_path / "work"
    shutil.copytree(run, work / "runs" / "cyclegan")
    monkeypatch.chdir(work)
    for command in commands:
        assert main(shlex.split(command, comments=True)[1:]) == 0, command
    for direction in ("AtoB", "BtoA"):
        metrics = json.loads((work / f"eval-cyclegan-horse2zebra-test-{direction}" / "metrics.json").read_text())
        assert metrics["info"]["direction"] == direction and metrics["info"]["source"].endswith(DOMAINS[direction][0])
        assert all("fid" in mode["summary"] and "mean" not in mode["summary"] for mode in metrics["modes"].values())
    assert load_translator(work / "zebra2horse.onnx", backend="onnxruntime").direction == "BtoA"


def test_unpaired_data_without_fid_says_in_one_line_that_only_distribution_metrics_apply(trained, tmp_path, capsys):
    run, data, _ = trained
    assert main(["eval", str(run), "--data", str(data), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "only distribution metrics apply" in err and "add --fid" in err
    assert not (tmp_path / "r").exists()
    source, real = evaluation_domains(data, "AtoB")
    with pytest.raises(ValueError) as refused:
        evaluate_model(load_model(run), source, tmp_path / "p", real=real)
    assert str(refused.value) == UNPAIRED_NEEDS_FID and "fid=True" in UNPAIRED_NEEDS_FID
    with pytest.raises(ValueError, match="pass real="):
        evaluate_model(load_model(run), source, tmp_path / "p", fid=True)
    pairs = write_ab_folder(SyntheticFacades(2, 24, seed=1), tmp_path / "ab")
    paired = imgtrans.data.PairedImageDataset(pairs, "AtoB", load_size=None, crop_size=None, train=False)
    with pytest.raises(ValueError, match="paired data"):
        evaluate_model(load_model(run), paired, tmp_path / "p", fid=True, real=real)
    assert not (tmp_path / "p").exists()


def test_the_split_is_test_then_train_with_a_warning_or_the_one_asked_for(tmp_path, capsys):
    both = write_unpaired_folder(SyntheticFacades(2, 24), tmp_path / "both")
    write_unpaired_folder(SyntheticFacades(2, 24), both, split="test")
    train_only = write_unpaired_folder(SyntheticFacades(2, 24), tmp_path / "train-only")
    assert unpaired_split(both, None) == "test" and unpaired_split(both, "train") == "train"
    assert capsys.readouterr().err == ""
    assert unpaired_split(train_only, None) == "train"
    warning = capsys.readouterr().err
    assert "no testA/ or testB/" in warning and "--split train" in warning and len(warning.strip().splitlines()) == 1
    assert unpaired_split(train_only, "train") == "train" and capsys.readouterr().err == ""
    assert unpaired_split(both / "train", None) == "train"  # the split itself: both/trainA, both/trainB
    with pytest.raises(ValueError, match="drop one"):
        unpaired_split(both / "train", "test")
    with pytest.raises(FileNotFoundError, match="--split val: .* has no valA/ or valB/ folder; it has testA/, testB/"):
        unpaired_split(both, "val")
    pairs = write_ab_folder(SyntheticFacades(2, 24), tmp_path / "ab")
    assert unpaired_split(pairs, None) is None
    assert main(["eval", "m", "--data", str(pairs), "--split", "test", "--fid"]) == 2
    assert "--split is for unpaired folders" in capsys.readouterr().err


def test_a_cyclegan_on_paired_data_is_scored_per_image_by_the_generator_of_its_direction(trained, tmp_path):
    run, _, _ = trained
    pairs = write_ab_folder(SyntheticFacades(3, 24, seed=2), tmp_path / "ab")
    out = tmp_path / "report"
    argv = ["eval", str(run), "--data", str(pairs), "--direction", "BtoA", "--out", str(out), "--modes", "eval"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    dataset = imgtrans.data.PairedImageDataset(pairs, "BtoA", load_size=None, crop_size=None, train=False)
    inputs = torch.stack([dataset[i]["input"] for i in range(3)])
    targets = torch.stack([dataset[i]["target"] for i in range(3)])
    evaluator = Evaluator()
    evaluator.update(translate(load_model(run).generator_b, inputs), targets, [dataset[i]["name"] for i in range(3)])
    assert metrics["modes"]["eval"]["summary"]["mean"]["l1"] == pytest.approx(evaluator.summary()["mean"]["l1"])
    assert "target" in metrics["images"][0] and "psnr" in metrics["conventions"]


def test_a_report_is_paired_or_unpaired_never_both(tmp_path):
    x, y = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    evaluator = Evaluator()
    evaluator.update(x, None, ["a", "b"])
    with pytest.raises(ValueError, match="real images"):
        evaluator.summary()
    evaluator.update_real(y)
    with pytest.raises(ValueError, match="either paired .* or unpaired"):
        evaluator.update(x, y, ["c", "d"])
    with pytest.raises(ValueError, match="same channels"):
        evaluator.update_real(torch.zeros(1, 1, 16, 16))
    assert set(evaluator.summary()) == {"images", "real_images", "lab_intersection"}
    assert evaluator.summary()["lab_intersection"]["L"] < 1
    report = Report(tmp_path / "mixed", ["eval", "paper"])
    report.add("eval", x, x, y, ["a", "b"])
    report.add("paper", x, x, None, ["a", "b"])
    with pytest.raises(ValueError, match="some modes were given targets and others not"):
        report.metrics()


# --- export and the app, both directions, of a run and of a model folder -------------------------------------------
@pytest.mark.parametrize("source", ["run", "folder"])
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_export_writes_the_generator_of_each_direction(trained, tmp_path, capsys, source, direction):
    pytest.importorskip("onnxruntime")
    from imgtrans.deploy.translators import load_translator

    run, _, folder = trained
    model = {"run": run, "folder": folder}[source]
    onnx = tmp_path / f"{direction}.onnx"
    assert main(["export", str(model), "--out", str(onnx), "--direction", direction]) == 0
    assert f"direction {direction}" in capsys.readouterr().out
    exported = load_translator(onnx, backend="onnxruntime")
    assert exported.direction == direction
    x = torch.rand(2, 3, 24, 20) * 2 - 1
    generator = getattr(load_model(model), GENERATOR[direction])
    torch.testing.assert_close(exported(x), translate(generator, x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("source", ["run", "folder"])
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_the_app_translates_uploads_with_the_generator_of_each_direction(trained, monkeypatch, source, direction):
    import imgtrans.cli.app as app_command

    run, _, folder = trained
    model = {"run": run, "folder": folder}[source]
    started: list = []
    make_server = app_command.make_server

    def capture(*args, **kwargs):
        started.append(make_server(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(app_command, "make_server", capture)
    thread = threading.Thread(target=main, args=(["app", str(model), "--port", "0", "--direction", direction],))
    thread.start()
    try:
        for _ in range(600):
            if started:
                break
            thread.join(0.1)
        assert started, "the app did not start"
        server = started[0]
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8))
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        request = urllib.request.Request(server.url + "api/translate", data=buffer.getvalue(),
                                         headers={"Content-Type": "image/png"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as response:
            body = response.read()
        with urllib.request.urlopen(server.url + "api/config", timeout=30) as response:
            config = json.loads(response.read())
    finally:
        for server in started:
            server.shutdown()
        thread.join(60)
    got = np.asarray(Image.open(BytesIO(body)), dtype=np.float32)
    generator = getattr(load_model(model), GENERATOR[direction])
    want = ((translate(generator, image_to_tensor(image).unsqueeze(0))[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0)
    assert got.shape == (20, 28, 3) and np.abs(got - want.numpy()).max() <= 0.51  # rounding to 8 bits
    assert config["channels"] == [3, 3]


def test_each_direction_of_a_gray_to_colour_cyclegan_has_its_own_channels_in_the_app(tmp_path):
    from imgtrans.app import FREE, make_server
    from imgtrans.deploy.translators import directed

    model = imgtrans.build("cyclegan", in_channels=1, lambda_identity=0, **TINY)
    for direction, channels in (("AtoB", [1, 3]), ("BtoA", [3, 1])):
        server = make_server(directed(model, direction), "127.0.0.1", 0, palette=FREE)
        try:
            assert server.config()["channels"] == channels
            result = server.translate_png(_png(Image.new("RGB", (24, 24), "red")))
            assert len(Image.open(BytesIO(result)).getbands()) == channels[1]
        finally:
            server.server_close()


def _png(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_save_image_round_trip_for_domain_images(tmp_path):
    """DomainImageDataset reads each image once, in name order, in the channels asked for and resized if asked."""
    for k in range(3):
        save_image(torch.rand(3, 20, 18) * 2 - 1, tmp_path / "A" / f"{2 - k}.png")
    dataset = DomainImageDataset(tmp_path / "A", channels=1, load_size=16)
    assert len(dataset) == 3 and [dataset[i]["name"] for i in range(3)] == ["0.png", "1.png", "2.png"]
    assert dataset[0]["input"].shape == (1, 16, 16)
    with pytest.raises(FileNotFoundError, match="no image folder"):
        DomainImageDataset(tmp_path / "missing")
