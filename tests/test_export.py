"""ONNX export checked against PyTorch, int8 quantisation, and the translate backends (issue 16)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import imgtrans
from imgtrans.cli import main
from imgtrans.deploy.onnx import ExportError, check_exportable, compare_with_pytorch, export_program, read_metadata
from imgtrans.inference import translate
from imgtrans.deploy.translators import OnnxTranslator, TorchTranslator, native_bf16, onnx_translator

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights whose outputs spread over [-1, 1], and BatchNorm statistics far from (0, 1), so errors show.

    The paper's N(0, 0.02) initialisation gives outputs within 1e-3 of 0, where any export would pass.
    """
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.reset_parameters()
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return model


def unet256_model() -> nn.Module:
    """The facades configuration (U-Net 256: pads to multiples of 256) at width 4."""
    return lively(imgtrans.build("pix2pix-facades", generator_args={"base_channels": 4}, discriminator_args={"base_channels": 4}))


def small_model() -> nn.Module:
    """A 5-level U-Net (multiples of 32) at width 4: the quickest to export and quantise."""
    return lively(imgtrans.build("pix2pix-facades", generator="unet128", generator_args={"base_channels": 4, "num_downs": 5},
                                 discriminator_args={"base_channels": 4}))  # fmt: skip


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) / 2).pow(2).mean()))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A saved U-Net 256 model, exported with ``imgtrans export``: (model, onnx path, printed line)."""
    folder = tmp_path_factory.mktemp("export")
    model = unet256_model()
    imgtrans.save_pretrained(model, folder / "saved")
    path = folder / "unet.onnx"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", str(folder / "saved"), "--out", str(path), "--direction", "BtoA"]) == 0
    return model, path, printed.getvalue()


@pytest.fixture(scope="module")
def calibration() -> list[torch.Tensor]:
    # Label-map-like inputs: flat colour blocks, as facades labels are.
    from imgtrans.data import SyntheticFacades

    return [item["input"][None] for item in SyntheticFacades(6, 64, seed=1)]


@pytest.fixture(scope="module")
def int8(tmp_path_factory, calibration):
    from imgtrans.deploy.int8 import quantize_onnx

    model = small_model()
    path = tmp_path_factory.mktemp("int8") / "small.int8.onnx"
    metadata = quantize_onnx(model, path, calibration, direction="AtoB")
    return model, path, metadata


@pytest.mark.parametrize("shape", [(1, 256, 256), (1, 300, 210), (4, 256, 256), (2, 45, 77), (1, 20, 20), (3, 512, 256)])
def test_onnx_matches_pytorch_at_any_size_and_batch(exported, shape):
    model, path, _ = exported
    errors = compare_with_pytorch(model, path, [shape], tolerance=None, seed=1)
    assert max(errors.values()) <= 1e-4, errors


def test_onnx_file_carries_its_metadata(exported):
    _, path, printed = exported
    meta = read_metadata(path)
    assert meta["imgtrans.model"] == "pix2pix-facades"
    assert json.loads(meta["imgtrans.arguments"])["generator_args"] == {"base_channels": 4}
    assert (meta["imgtrans.direction"], meta["imgtrans.in_channels"], meta["imgtrans.out_channels"]) == ("BtoA", "3", "3")
    assert (meta["imgtrans.input_range"], meta["imgtrans.mode"], meta["imgtrans.precision"]) == ("[-1, 1]", "eval", "fp32")
    assert meta["imgtrans.multiple"] == "256"
    errors = json.loads(meta["imgtrans.max_abs_error"])
    assert set(errors) == {"1x256x256", "1x300x210", "4x256x256"} and max(errors.values()) <= 1e-4
    assert f"to {path}" in printed and "direction BtoA" in printed and "max abs error" in printed


def test_translate_runs_the_onnx_file_as_pytorch_does(exported, tmp_path, capsys):
    _, path, _ = exported
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    for backend, source, out in (("onnxruntime", path, "o"), ("torch", None, "t")):
        argv = ["translate", str(source or path.parent / "saved"), str(tmp_path / "a.png"), "--out", str(tmp_path / out)]
        assert main(argv + ["--backend", backend]) == 0
    printed = capsys.readouterr().out
    assert "(onnxruntime fp32, eval mode)" in printed and "(torch fp32, eval mode)" in printed
    onnx_png, torch_png = (np.asarray(Image.open(tmp_path / d / "a.png"), dtype=int) for d in ("o", "t"))
    assert np.abs(onnx_png - torch_png).max() <= 1  # 1e-4 apart before rounding to pixels


def test_onnx_file_is_refused_on_the_torch_backend_and_in_other_precisions(exported, capsys):
    _, path, _ = exported
    assert main(["translate", str(path), str(path), "--out", "o"]) == 2
    assert "add --backend onnxruntime" in capsys.readouterr().err
    assert main(["translate", str(path), str(path), "--out", "o", "--backend", "onnxruntime", "--precision", "int8"]) == 2
    err = capsys.readouterr().err
    assert "holds a fp32 model" in err and len(err.strip().splitlines()) == 1


def test_paper_test_mode_is_refused_with_the_reason(tmp_path, capsys):
    model = small_model()
    with pytest.raises(ExportError, match="cannot be exported faithfully: it draws dropout masks"):
        check_exportable(model, paper_test_mode=True)
    imgtrans.save_pretrained(model, tmp_path / "saved")
    assert main(["export", str(tmp_path / "saved"), "--out", str(tmp_path / "m.onnx"), "--paper-test-mode"]) == 2
    err = capsys.readouterr().err
    assert "cannot be exported faithfully" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
    # Without dropout and BatchNorm, the paper's mode is eval mode, and exporting it is faithful.
    plain = imgtrans.build("unet128", base_channels=4, num_downs=5, norm="instance", dropout=0.0)
    check_exportable(plain, paper_test_mode=True)


def test_torch_export_program_runs_any_size():
    model = small_model()
    program = export_program(model)
    for shape in [(1, 3, 64, 64), (2, 3, 45, 77), (3, 3, 32, 32), (1, 3, 1, 1), (1, 3, 300, 210)]:
        x = torch.rand(*shape) * 2 - 1
        torch.testing.assert_close(program.module()(x), translate(model, x), rtol=0, atol=1e-5)


def test_subpixel_transposed_convolution_is_the_same_function():
    from imgtrans.blocks.subpixel import SubpixelConvTranspose2d

    for bias in (False, True):
        conv = nn.ConvTranspose2d(6, 5, 4, 2, 1, bias=bias)
        sub = SubpixelConvTranspose2d.from_transposed(conv)
        for shape in [(2, 6, 1, 1), (1, 6, 3, 7), (2, 6, 16, 9)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(sub(x), conv(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="4x4 transposed convolutions with stride 2"):
        SubpixelConvTranspose2d.from_transposed(nn.ConvTranspose2d(6, 5, 3, 1, 1))


def test_folded_copy_computes_eval_mode():
    from imgtrans.deploy.fusion import inference_copy

    model = unet256_model()
    x = torch.rand(2, 3, 100, 140) * 2 - 1
    for subpixel in (False, True):
        copy = inference_copy(model, subpixel=subpixel)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())
        torch.testing.assert_close(copy(x), translate(model, x), rtol=0, atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the model is left as it was


@pytest.mark.slow
def test_int8_is_calibrated_checked_and_labelled(int8, calibration):
    model, path, metadata = int8
    meta = read_metadata(path)
    assert meta == metadata
    assert meta["imgtrans.precision"] == "int8" and meta["imgtrans.direction"] == "AtoB"
    assert float(meta["imgtrans.psnr_vs_fp32"]) >= 30 and "6 image(s)" in meta["imgtrans.calibration"]
    translator = OnnxTranslator(path)
    assert translator.describe() == "onnxruntime int8"
    from imgtrans.data import SyntheticFacades

    x = torch.stack([item["input"] for item in SyntheticFacades(3, 96, seed=7)])  # not calibration images
    assert psnr(translator(x), translate(model, x)) >= 30
    import onnx

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "ConvTranspose" not in ops and "QuantizeLinear" in ops  # the decoder is quantised too


@pytest.mark.slow
def test_int8_is_refused_when_it_would_differ_visibly(calibration, tmp_path):
    from imgtrans.deploy.int8 import quantize_onnx

    # A bar no quantisation reaches stands for a model whose int8 output would differ visibly.
    with pytest.raises(ExportError, match=r"dB PSNR from float32 on the calibration images, below 1000 dB"):
        quantize_onnx(small_model(), tmp_path / "bad.onnx", calibration[:1], min_psnr=1000)
    assert not (tmp_path / "bad.onnx").exists()
    with pytest.raises(ValueError, match="needs calibration images"):
        quantize_onnx(small_model(), tmp_path / "bad.onnx", [])


def test_translate_int8_file_and_flags(int8, tmp_path, capsys):
    model, path, _ = int8
    imgtrans.save_pretrained(model, tmp_path / "saved")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    argv = ["translate", str(path), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--backend", "onnxruntime"]
    assert main(argv) == 0
    assert "(onnxruntime int8, eval mode)" in capsys.readouterr().out
    base = ["translate", str(tmp_path / "saved"), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]
    for extra, message in [
        (["--backend", "onnxruntime", "--precision", "int8"], "--precision int8 needs --calibration DIR"),
        (["--precision", "int8"], "the torch backend runs precision fp32 or bf16, not 'int8'; int8 runs on the onnxruntime"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "bf16 runs on the torch backend"),
        (["--backend", "onnxruntime", "--paper-test-mode"], "runs eval mode"),
        (["--calibration", str(tmp_path)], "--calibration is for --precision int8"),
    ]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_onnxruntime_backend_exports_on_the_fly():
    model = small_model()
    translator = onnx_translator(model)
    x = torch.rand(2, 3, 50, 70) * 2 - 1
    assert translator.describe() == "onnxruntime fp32"
    assert (translator(x) - translate(model, x)).abs().max() <= 1e-4


def test_bf16_runs_where_native_and_is_refused_elsewhere(monkeypatch):
    model = small_model()
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    if native_bf16():
        translator = TorchTranslator(model, "bf16")
        assert translator.describe() == "torch bf16"
        assert psnr(translator(x), translate(model, x)) >= 30
    with pytest.raises(ValueError, match="cannot run the paper's test mode"):
        TorchTranslator(model, "bf16", paper_test_mode=True)
    monkeypatch.setattr("imgtrans.deploy.translators.native_bf16", lambda device="cpu": False)
    with pytest.raises(ValueError, match="no native bfloat16 arithmetic"):
        TorchTranslator(model, "bf16")


def test_glibc_keeps_freed_memory_when_asked():
    import platform

    from imgtrans.devices import keep_freed_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("keep_freed_memory tunes glibc's allocator; this is not glibc")
    assert keep_freed_memory() is True
