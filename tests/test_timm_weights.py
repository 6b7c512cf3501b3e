"""Pretrained backbone weights: local files, the Hugging Face cache, and failing fast offline."""

import socket
import time

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file

import imgtrans

BACKBONE = "resnet18"  # small and its feature extractor keeps timm's parameter names


@pytest.fixture(scope="module")
def backbone_state() -> dict[str, torch.Tensor]:
    """The state dict of a randomly initialised timm backbone, as a weights file would hold it."""
    torch.manual_seed(1)
    return {k: v.contiguous() for k, v in timm.create_model(BACKBONE).state_dict().items()}


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty Hugging Face cache and a Hub endpoint on a closed local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connections are refused
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    return tmp_path


def assert_loaded(encoder: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = encoder.state_dict()
    assert loaded.keys() <= state.keys() and len(loaded) > 100
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


def test_local_safetensors_file(backbone_state, tmp_path, no_network):
    path = tmp_path / "resnet18.safetensors"
    save_file(backbone_state, path)
    g = imgtrans.build("unet-timm", encoder=BACKBONE, encoder_weights=str(path))
    assert_loaded(g.encoder, backbone_state)
    assert "encoder_weights" not in g.config.arguments  # a weight choice, not architecture


def test_local_pth_file_and_timms_first_convolution_adaptation(backbone_state, tmp_path, no_network):
    path = tmp_path / "resnet18.pth"
    torch.save(backbone_state, path)
    g = imgtrans.TimmUNetGenerator(BACKBONE, in_channels=1, encoder_weights=path)
    state = dict(backbone_state, **{"conv1.weight": backbone_state["conv1.weight"].sum(1, keepdim=True)})
    assert_loaded(g.encoder, state)  # timm sums the RGB filters for one input channel


class CallsPrint:
    """Unpickling this calls ``print``: what a malicious checkpoint does with ``os.system``."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_pickled_code_is_refused(backbone_state, tmp_path, capsys):
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": backbone_state, "hook": CallsPrint()}, path)
    with pytest.raises(ValueError, match=r"cannot load .*checkpoint.pth.*weights_only"):
        imgtrans.TimmUNetGenerator(BACKBONE, encoder_weights=path)
    assert "unpickled code ran" not in capsys.readouterr().out


def test_a_file_that_does_not_fit_is_refused(backbone_state, tmp_path):
    prefixed = tmp_path / "generator.safetensors"  # e.g. a whole generator's state dict
    save_file({f"encoder.{k}": v for k, v in backbone_state.items()}, prefixed)
    with pytest.raises(ValueError, match=r"does not fit timm's 'resnet18': Unexpected keys \(encoder\."):
        imgtrans.TimmUNetGenerator(BACKBONE, encoder_weights=prefixed)
    other = tmp_path / "resnet10t.safetensors"  # same names, other shapes
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet10t").state_dict().items()}, other)
    with pytest.raises(ValueError, match="cannot load .*resnet10t.safetensors into timm's 'resnet18'"):
        imgtrans.TimmUNetGenerator(BACKBONE, encoder_weights=other)
    with pytest.raises(FileNotFoundError, match="no weights file at .*missing.safetensors"):
        imgtrans.TimmUNetGenerator(BACKBONE, encoder_weights=tmp_path / "missing.safetensors")


def test_offline_mode_fails_fast_and_says_how_to_give_a_file(no_network, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"offline mode \(HF_HUB_OFFLINE is set\) .* encoder_weights='PATH'"):
        imgtrans.build("unet-resnet34", pretrained_encoder=True)
    assert time.monotonic() - start < 10


def test_unreachable_hub_fails_fast_and_says_how_to_give_a_file(no_network):
    start = time.monotonic()
    with pytest.raises(ConnectionError) as error:
        imgtrans.build("unet-resnet34", pretrained_encoder=True)
    assert time.monotonic() - start < 10  # no minute of retries
    message = str(error.value)
    assert "timm/resnet34.a1_in1k" in message and "cannot download" in message
    assert "encoder_weights='PATH'" in message and "pretrained_encoder=False" in message
    with pytest.raises(ConnectionError, match=r"backbone_weights='PATH'.*pretrained_backbone=False"):
        imgtrans.PerceptualLoss("resnet18", layers=(1,))


def test_weights_in_the_hugging_face_cache_load_without_network(backbone_state, no_network):
    repo = no_network / "hub" / "models--timm--resnet18.a1_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(backbone_state, repo / "snapshots" / commit / "model.safetensors")
    g = imgtrans.TimmUNetGenerator(BACKBONE, pretrained_encoder=True)
    assert_loaded(g.encoder, backbone_state)
