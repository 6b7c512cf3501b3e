"""The one translator factory: the same checks on every backend, messages in the caller's words."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import imgtrans
from imgtrans.cli import main
from imgtrans.deploy.translators import OnnxTranslator, TorchTranslator, check_finite, load_translator

from conftest import TINY_MODEL

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A tiny model folder, its ONNX export, and the export with one weight turned to NaN."""
    import onnx
    from onnx import numpy_helper

    from imgtrans.deploy.onnx import export_onnx

    root = tmp_path_factory.mktemp("translators")
    torch.manual_seed(0)
    model = imgtrans.build("pix2pix-facades", **TINY_MODEL).eval()
    imgtrans.save_pretrained(model, root / "model")
    export_onnx(model, root / "model.onnx")
    proto = onnx.load_model(str(root / "model.onnx"))
    weight = next(i for i in proto.graph.initializer if numpy_helper.to_array(i).dtype.kind == "f" and i.dims)
    array = numpy_helper.to_array(weight).copy()
    array.flat[0] = np.nan
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save_model(proto, str(root / "nan.onnx"))
    image = root / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    return {"model": root / "model", "onnx": root / "model.onnx", "nan": root / "nan.onnx", "image": image}


def test_every_source_and_backend_gives_a_checked_translator(folders):
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch_fp32 = load_translator(folders["model"])
    assert isinstance(torch_fp32, TorchTranslator) and torch_fp32.direction == "BtoA" and torch_fp32.multiple == 32
    exported = load_translator(folders["model"], backend="onnxruntime")
    from_file = load_translator(folders["onnx"], backend="onnxruntime")
    for translator in (exported, from_file):
        assert isinstance(translator, OnnxTranslator) and translator.direction == "BtoA" and translator.multiple == 32
        assert (translator(x) - torch_fp32(x)).abs().max() <= 1e-4


def test_an_onnx_file_with_non_finite_weights_is_refused_at_load(folders, tmp_path, capsys):
    with pytest.raises(ValueError, match="holds 1 NaN or inf value"):
        load_translator(folders["nan"], backend="onnxruntime")
    argv = ["translate", str(folders["nan"]), str(folders["image"]), "--backend", "onnxruntime",
            "--out", str(tmp_path / "t")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "NaN or inf" in err and "export it again" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_non_finite_weights_in_a_model_are_refused_by_check_finite():
    model = imgtrans.build("pix2pix-facades", **TINY_MODEL)
    check_finite(model)
    with torch.no_grad():
        next(model.generator.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        check_finite(model)


@pytest.mark.parametrize(
    "options, python, flags",
    [
        ({"backend": "onnxruntime", "paper_test_mode": True}, "drop paper_test_mode", "drop --paper-test-mode"),
        ({"backend": "onnxruntime", "compile": True}, "drop compile", "drop --compile"),
        ({"backend": "onnxruntime", "precision": "int8"}, "calibration=[", "--precision int8 needs --calibration DIR"),
        ({"calibration": "DIR"}, "calibration images are for precision='int8'", "--calibration is for --precision int8"),
        ({"precision": "int8"}, "(backend='onnxruntime')", "(--backend onnxruntime)"),
        ({"source": "onnx"}, "backend='onnxruntime'", "add --backend onnxruntime"),
    ],
)
def test_messages_use_the_words_of_the_interface_called(folders, tmp_path, options, python, flags, capsys):
    options = dict(options)
    source = folders[options.pop("source", "model")]
    with pytest.raises(ValueError) as raised:
        load_translator(source, **options)
    assert python in str(raised.value) and "--" not in str(raised.value)
    argv = ["translate", str(source), str(folders["image"]), "--out", str(tmp_path / "t")]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flags in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", [["eval", "--data", "."], ["app"]])
def test_eval_and_the_app_refuse_an_onnx_file_saying_what_to_give(folders, command, capsys):
    assert main([command[0], str(folders["onnx"]), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert "give the model" in err and "exported from" in err and len(err.strip().splitlines()) == 1
