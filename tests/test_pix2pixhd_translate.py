"""translate, eval, the app and Python on pix2pixHD runs trained on label maps (``--label-nc``, ``--instance``).

The outputs are compared with the generator called on the one-hot tensor directly, so a wrong
encoding (channels, instance boundaries, values read as pixels) fails.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import imgtrans
from imgtrans.app.server import RefusedUpload
from imgtrans.app.server import translate_image as app_translate
from imgtrans.cli import main
from imgtrans.data.labels import encode_labels, label_input
from imgtrans.images import tensor_to_image
from imgtrans.inference import eval_mode
from imgtrans.store.checkpoint import load_checkpoint, model_config
from imgtrans.store.config import ModelConfig
from imgtrans.train import TrainConfig, Trainer

LABEL_NC, SIZE = 4, 32
TINY = {
    "generator_args": {"base_channels": 8, "n_downsampling": 2, "n_blocks": 1},
    "discriminator_args": {"base_channels": 8, "n_layers": 2},
    "vgg": None,
}


def label_map(seed: int, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.uint8)
    labels[:, size // 2 :] = 1 + seed % (LABEL_NC - 1)
    labels[rng.integers(0, size // 2) :, : size // 4] = 3
    labels[: size // 4, size // 4 : size // 2] = 2
    return labels


def instance_map(labels: np.ndarray) -> np.ndarray:
    """Instance ids (16-bit, as Cityscapes): class * 1000, with the right quarter a second instance."""
    size = labels.shape[1]
    return (labels.astype(np.int32) * 1000 + (np.arange(size)[None, :] >= 3 * size // 4)).astype(np.uint16)


def write_folder(root: Path, count: int = 3, size: int = SIZE) -> Path:
    for sub in ("label", "img", "inst"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        labels = label_map(i, size)
        Image.fromarray(labels, "L").save(root / "label" / f"{i:02d}.png")
        Image.fromarray(instance_map(labels)).save(root / "inst" / f"{i:02d}.png")
        image = np.stack([labels * 60, 255 - labels * 60, rng.integers(0, 255, labels.shape)], -1).astype(np.uint8)
        Image.fromarray(image, "RGB").save(root / "img" / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("labels") / "train")


def train(out: Path, data: Path, instance: bool) -> Path:
    config = TrainConfig(
        model="pix2pixhd", model_args=dict(TINY), data=str(data), direction="AtoB", out=str(out), label_nc=LABEL_NC,
        instance=instance, epochs=2, epochs_decay=1, max_steps=2, batch_size=2, load_size=None, crop_size=None,
        workers=0, log_every=1, sample_every=0, checkpoint_every=0, num_samples=1,
    )  # fmt: skip
    Trainer(config).fit()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data) -> dict[bool, Path]:
    """Two tiny runs of 2 steps: without (``False``) and with (``True``) instance maps."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("runs")
    return {instance: train(root / f"run-{instance}", data, instance) for instance in (False, True)}


def direct(run: Path, labels: np.ndarray, instances: np.ndarray | None = None) -> np.ndarray:
    """The generator called on the one-hot tensor (and the boundary map), in eval mode: the expected pixels."""
    model = imgtrans.load(run)
    ids = torch.from_numpy(labels.astype(np.int64))[None]
    inst = None if instances is None else torch.from_numpy(instances.astype(np.int64))[None]
    x = encode_labels(ids, LABEL_NC, inst)[None]
    assert x.shape[1] == LABEL_NC + (instances is not None)
    with torch.no_grad(), eval_mode(model.generator):
        return np.array(tensor_to_image(model.generator(x)[0]))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def labels_of(folder: Path, name: str) -> np.ndarray:
    return np.array(Image.open(folder / "label" / name))


# ------------------------------------------------------------------------------ what a run records
def test_the_run_records_its_input_and_folders_without_the_record_read_images(runs, tmp_path):
    for instance, run in runs.items():
        recorded = json.loads((run / "model" / "config.json").read_text())["labels"]
        assert recorded == {"label_nc": LABEL_NC, "instance": instance}
        meta = load_checkpoint(run / "checkpoints" / "last.safetensors").meta
        assert meta["model"]["labels"] == recorded
        for source in (run, run / "model", run / "checkpoints" / "last.safetensors"):
            model = imgtrans.load(source)
            assert (model.config.label_nc, model.config.instance) == (LABEL_NC, instance)
            assert label_input(model).channels == LABEL_NC + instance == model.generator.in_channels
    old = json.loads((runs[False] / "model" / "config.json").read_text())
    del old["labels"]
    config = ModelConfig.from_dict(old)
    assert config.label_nc == 0 and "labels" not in config.to_dict() and label_input(config.instantiate()) is None
    # a checkpoint written before the record: the run's settings say what its input is
    meta = load_checkpoint(runs[True] / "checkpoints" / "last.safetensors").meta
    before = {k: v for k, v in meta["model"].items() if k != "labels"}
    config = model_config({**meta, "model": before})
    assert (config.label_nc, config.instance) == (LABEL_NC, True)
    # a run's model/ written before the record: loading the run reads its settings too
    copy = tmp_path / "before"
    shutil.copytree(runs[True], copy)
    written = json.loads((copy / "model" / "config.json").read_text())
    del written["labels"]
    (copy / "model" / "config.json").write_text(json.dumps(written))
    loaded = imgtrans.load(copy)
    assert loaded.loaded_from == copy / "model" and (loaded.config.label_nc, loaded.config.instance) == (LABEL_NC, True)
    assert imgtrans.load(copy / "model").config.label_nc == 0  # the folder alone: images, as it says
    with pytest.raises(ValueError, match="'labels' must be"):
        ModelConfig.from_dict({**old, "labels": {"label_nc": "4"}})
    with pytest.raises(ValueError, match="in_channels 4"):
        ModelConfig.from_dict({**old, "labels": {"label_nc": 4, "instance": True}})


# ------------------------------------------------------------------------------ imgtrans translate
def test_translate_a_label_map_equals_the_generator_on_its_one_hot_encoding(runs, data, tmp_path, capsys):
    run = runs[False]
    out = tmp_path / "out"
    assert main(["translate", str(run), str(data / "label" / "01.png"), "--out", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    written = np.array(Image.open(out / "01.png"))
    assert written.shape == (SIZE, SIZE, 3)
    assert np.array_equal(written, direct(run, labels_of(data, "01.png")))
    # values read as pixels (the label map as a gray image, as a model of images reads it) give something else
    model = imgtrans.load(run)
    with torch.no_grad(), eval_mode(model.generator):
        gray = torch.from_numpy(labels_of(data, "01.png")).float()[None, None] / 127.5 - 1
        as_pixels = np.array(tensor_to_image(model.generator(gray.expand(1, LABEL_NC, -1, -1).contiguous())[0]))
    assert not np.array_equal(written, as_pixels)


def test_translate_a_folder_with_a_folder_of_instance_maps(runs, data, tmp_path, capsys):
    run = runs[True]
    out = tmp_path / "out"
    assert main(["translate", str(run), str(data / "label"), "--instances", str(data / "inst"), "--out", str(out)]) == 0
    assert "translated 3 image(s)" in capsys.readouterr().out
    for name in ("00.png", "01.png", "02.png"):
        labels = labels_of(data, name)
        expected = direct(run, labels, np.array(Image.open(data / "inst" / name)))
        written = np.array(Image.open(out / name)).astype(int)
        assert np.abs(written - expected).max() <= 1, name  # batched, so float sums may round differently
        no_edges = direct(run, labels, np.full(labels.shape, 7, np.uint16))  # the same labels, no boundary
        assert np.abs(written - no_edges).max() > 1, name
    one = tmp_path / "one"
    assert main(["translate", str(run), str(data / "label" / "02.png"), "--instances", str(data / "inst" / "02.png"),
                 "--out", str(one)]) == 0  # fmt: skip
    labels = labels_of(data, "02.png")
    assert np.array_equal(np.array(Image.open(one / "02.png")), direct(run, labels, instance_map(labels)))


def test_a_label_beyond_label_nc_is_refused_naming_the_file_the_value_and_label_nc(runs, data, tmp_path, capsys):
    folder = tmp_path / "labels"
    folder.mkdir()
    Image.fromarray(labels_of(data, "00.png")).save(folder / "a.png")
    bad = labels_of(data, "01.png").copy()
    bad[3, 5] = 7
    Image.fromarray(bad).save(folder / "b.png")
    out = tmp_path / "out"
    for argv in (["translate", str(runs[False]), str(folder), "--out", str(out)],
                 ["translate", str(runs[False]), str(folder / "b.png"), "--out", str(out)]):  # fmt: skip
        assert main(argv) == 2
        err = one_line_error(capsys)
        assert str(folder / "b.png") in err and "label 7" in err and "label_nc 4" in err
        assert not out.exists()  # a.png is fine, but nothing is written before every file is checked
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(folder / "b.png")  # a colour image: not a label map
    assert main(["translate", str(runs[False]), str(folder), "--out", str(out)]) == 2
    assert "RGB image" in one_line_error(capsys) and not out.exists()


def test_instance_maps_missing_or_not_read_are_refused_naming_instances(runs, data, tmp_path, capsys):
    out, labels = tmp_path / "out", str(data / "label")
    assert main(["translate", str(runs[True]), labels, "--out", str(out)]) == 2
    assert "--instances" in one_line_error(capsys)
    partial = tmp_path / "inst"
    partial.mkdir()
    (partial / "00.png").write_bytes((data / "inst" / "00.png").read_bytes())
    assert main(["translate", str(runs[True]), labels, "--instances", str(partial), "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert "--instances" in err and "01.png" in err
    assert main(["translate", str(runs[True]), labels, "--instances", str(partial / "00.png"), "--out", str(out)]) == 2
    assert "--instances" in one_line_error(capsys)
    assert main(["translate", str(runs[False]), labels, "--instances", str(data / "inst"), "--out", str(out)]) == 2
    assert "drop --instances" in one_line_error(capsys)
    assert not out.exists()


def test_the_python_api_reads_label_maps_as_translate_does(runs, data, tmp_path):
    model = imgtrans.load(runs[True])
    labels = labels_of(data, "00.png")
    expected = direct(runs[True], labels, instance_map(labels))
    from_files = imgtrans.translate_image(model, data / "label" / "00.png", instances=data / "inst" / "00.png")
    from_images = imgtrans.translate_image(model, Image.fromarray(labels), instances=Image.fromarray(instance_map(labels)))
    assert np.array_equal(np.array(from_files), expected) and np.array_equal(np.array(from_images), expected)
    with pytest.raises(ValueError, match="with instances"):
        imgtrans.translate_image(model, data / "label" / "00.png")
    with pytest.raises(ValueError, match="drop instances"):
        imgtrans.translate_image(imgtrans.load(runs[False]), data / "label" / "00.png", instances=data / "inst" / "00.png")
    with pytest.raises(ValueError, match="label 9"):
        imgtrans.translate_image(imgtrans.load(runs[False]), Image.fromarray(np.full((8, 8), 9, np.uint8)))


# ----------------------------------------------------------------------------------- imgtrans eval
def test_eval_on_a_label_map_folder_scores_against_img(runs, data, tmp_path, capsys):
    for instance, run in runs.items():
        out = tmp_path / f"report-{instance}"
        assert main(["eval", str(run), "--data", str(data), "--out", str(out), "--modes", "eval"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        images = metrics["modes"]["eval"]["images"]
        assert len(images) == 3
        for i, scores in enumerate(images):
            labels = labels_of(data, f"{i:02d}.png")
            made = direct(run, labels, instance_map(labels) if instance else None) / 255.0
            target = np.array(Image.open(data / "img" / f"{i:02d}.png")) / 255.0
            # the report scores the float output; the written pixels are within half a level of it
            assert scores["l1"] == pytest.approx(np.abs(made - target).mean(), abs=2 / 255)
            assert scores["psnr"] == pytest.approx(10 * np.log10(1 / ((made - target) ** 2).mean()), abs=0.1)
    capsys.readouterr()
    assert main(["eval", str(runs[False]), "--data", str(data), "--out", str(tmp_path / "x"), "--direction", "BtoA"]) == 2
    assert "drop --direction" in one_line_error(capsys)


# ------------------------------------------------------------------------------------------- the app
def test_the_app_translates_an_uploaded_label_map_and_refuses_what_it_cannot(runs, data):
    model = imgtrans.load(runs[False])
    labels = labels_of(data, "02.png")
    assert np.array_equal(np.array(app_translate(model, Image.fromarray(labels))), direct(runs[False], labels))
    with pytest.raises(RefusedUpload, match="RGB image"):  # a drawing: colours, not classes
        app_translate(model, Image.new("RGB", (SIZE, SIZE), "white"))
    with pytest.raises(RefusedUpload, match="label 5"):
        app_translate(model, Image.fromarray(np.full((SIZE, SIZE), 5, np.uint8)))
    with pytest.raises(RefusedUpload, match="--instances"):
        app_translate(imgtrans.load(runs[True]), Image.fromarray(labels))


def test_the_app_s_page_answers_a_label_map_upload_and_says_why_it_refuses_a_drawing(runs, data):
    import threading
    import urllib.error
    import urllib.request
    from io import BytesIO

    from imgtrans.app import FREE, make_server

    def post(body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(server.url + "api/translate", data=body, headers={"Content-Type": "image/png"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def png(image: Image.Image) -> bytes:
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    server = make_server(imgtrans.load(runs[False]), "127.0.0.1", 0, palette=FREE, model_name="hd")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, body = post((data / "label" / "01.png").read_bytes())
        assert status == 200
        assert np.array_equal(np.array(Image.open(BytesIO(body))), direct(runs[False], labels_of(data, "01.png")))
        status, body = post(png(Image.new("RGB", (SIZE, SIZE), "white")))
        error = json.loads(body)["error"]
        assert status == 400 and "RGB image" in error and "4 classes" in error and "\n" not in error
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------ not yet: ONNX
def test_export_and_the_onnxruntime_backend_refuse_label_map_models_in_one_line(runs, data, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    onnx_file = tmp_path / "hd.onnx"
    assert main(["export", str(runs[False]), "--out", str(onnx_file)]) == 2
    assert "reads label maps" in one_line_error(capsys) and not onnx_file.exists()
    out = tmp_path / "out"
    assert main(["translate", str(runs[False]), str(data / "label"), "--backend", "onnxruntime", "--out", str(out)]) == 2
    assert "drop --backend" in one_line_error(capsys) and not out.exists()
