"""save_pretrained / from_pretrained / push_to_hub, and the faults of local weights."""

import inspect
import json

import huggingface_hub
import pytest
import torch
from safetensors.torch import save_file

import imgtrans
from imgtrans.models.pix2pix import pix2pix
from imgtrans.store.factory import from_pretrained, push_to_hub, save_pretrained
from imgtrans.store.reference import load_reference
from imgtrans.registry import entry
from imgtrans.store.weights import CorruptWeightsError
from imgtrans.store.zoo import published

from conftest import shared_path
from zoo_fixtures import hub_server, hub_settings, zoo_env  # noqa: F401  (fixtures)

PARTS = [name for name in imgtrans.list_models() if entry(name).target is not pix2pix]
TINY_PIX2PIX = {
    "generator_args": {"base_channels": 4},
    "discriminator_args": {"base_channels": 4},
}


def tiny(name: str) -> torch.nn.Module:
    """``name`` at a small width, its weights and running statistics randomised."""
    overrides = {"base_channels": 4} if "base_channels" in entry(name).parameters() else {}
    overrides.update(entry(name).weight_arguments)  # parts with pretrained backbones: random weights, no download
    model = imgtrans.build(name, **overrides)
    randomise(model)
    return model.eval()


def randomise(model: torch.nn.Module) -> None:
    """Random values in every floating tensor, so that a tensor left unloaded shows."""
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                # perturb every element, keeping scales sane so deep backbones stay finite
                tensor.mul_(1 + 0.1 * torch.rand_like(tensor)).add_(0 if key.endswith("running_var") else 0.01 * torch.randn_like(tensor))


def example_input(model: torch.nn.Module) -> torch.Tensor:
    return torch.rand(1, model.config.arguments.get("in_channels", 3), 128, 128) * 2 - 1


def test_every_registered_part_is_covered():
    assert {"unet256", "unet128", "resnet9", "patchgan70", "pixelgan"} <= set(PARTS)
    assert not any(name.startswith("pix2pix-") for name in PARTS)


@pytest.mark.parametrize("name", PARTS)
def test_round_trip_reproduces_every_part_exactly(name, tmp_path):
    model = tiny(name)
    x = example_input(model)
    folder = save_pretrained(model, tmp_path / name)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = from_pretrained(folder).eval()
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.untrained_parts == ()
    inputs = (x, x.flip(-1)) if "target" in inspect.signature(model.forward).parameters else (x,)  # losses
    with torch.no_grad():
        expected = flat(model(*inputs))
        assert torch.isfinite(expected).all() and torch.equal(flat(loaded(*inputs)), expected)


def flat(output) -> torch.Tensor:
    """A part's output as one tensor: a multi-scale discriminator returns lists (per scale) of feature maps."""
    if isinstance(output, torch.Tensor):
        return output.flatten()
    return torch.cat([flat(o) for o in output])


def test_round_trip_of_a_full_pix2pix_model(tmp_path):
    model = imgtrans.build("pix2pix-facades", **TINY_PIX2PIX)
    randomise(model)
    folder = save_pretrained(model, tmp_path / "facades")
    loaded = from_pretrained(str(folder))
    x, y = torch.rand(2, 3, 64, 96) * 2 - 1, torch.rand(2, 3, 64, 96) * 2 - 1
    assert torch.equal(loaded.translate(x), model.translate(x))
    with torch.no_grad():
        pair = model.discriminator_input(x, y)
        assert torch.equal(loaded.eval().discriminator(pair), model.eval().discriminator(pair))
    assert loaded.state_dict().keys() == model.state_dict().keys()  # zip below would stop at the shorter
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == "pix2pix-facades"
    assert config["arguments"]["generator_args"] == {"base_channels": 4}


def test_saving_the_generator_alone(tmp_path, caplog):
    model = imgtrans.build("pix2pix-facades", **TINY_PIX2PIX)
    randomise(model)
    folder = save_pretrained(model, tmp_path / "g", parts=["generator"])
    with caplog.at_level("INFO", logger="imgtrans"):
        loaded = from_pretrained(folder)
    assert loaded.untrained_parts == ("discriminator",)
    assert "discriminator keep their initial weights" in caplog.text
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(loaded.translate(x), model.translate(x))
    assert "not included: discriminator" in (folder / "README.md").read_text()
    with pytest.raises(ValueError, match="the model has no part 'generatr'; its parts are generator, discriminator"):
        save_pretrained(model, tmp_path / "bad", parts=["generatr"])


def test_model_card_of_a_zoo_model_says_what_it_translates(tmp_path):
    model = imgtrans.build("pix2pix-map2sat", **TINY_PIX2PIX)
    card = (save_pretrained(model, tmp_path, published=published("pix2pix-map2sat")) / "README.md")
    text = card.read_text()
    for expected in ("license: bsd-2-clause", "map -> aerial photo", "BtoA", "Google Maps", "256 x 256", "CVPR 2017"):
        assert expected in text
    generic = (save_pretrained(imgtrans.build("unet128", base_channels=4), tmp_path / "u") / "README.md").read_text()
    assert "not recorded: describe them here" in generic and "license:" not in generic


def test_saving_needs_a_built_model(tmp_path):
    with pytest.raises(ValueError, match="needs a model made by imgtrans.build"):
        save_pretrained(torch.nn.Conv2d(1, 1, 1), tmp_path)


def test_build_with_local_weights(tmp_path):
    model = tiny("unet128")
    x = example_input(model)
    folder = save_pretrained(model, tmp_path / "u")
    for weights in (folder, folder / "model.safetensors"):
        loaded = imgtrans.build("unet128", weights=weights, base_channels=4).eval()  # weights imply pretrained
        assert torch.equal(loaded(x), model(x))


def test_build_with_a_reference_checkpoint():
    checkpoint = shared_path("reference", "unet128-f8.pth")
    arguments = {"in_channels": 1, "out_channels": 2, "base_channels": 8}
    model = imgtrans.build("unet128", pretrained=True, weights=checkpoint, **arguments)
    expected = load_reference(checkpoint, "unet128")
    assert model.state_dict().keys() == expected.state_dict().keys()  # zip below would stop at the shorter
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values()))


def test_corrupted_weights_are_detected(tmp_path):
    folder = save_pretrained(tiny("pixelgan"), tmp_path / "p")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in a tensor: still valid safetensors, caught by the checksum
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptWeightsError, match=r"model.safetensors is corrupted: its SHA-256 is \w{64}, expected"):
        from_pretrained(folder)
    weights.write_bytes(b"not safetensors at all")
    with pytest.raises(CorruptWeightsError, match="is not a readable safetensors file"):
        imgtrans.build("pixelgan", weights=weights)
    (folder / "config.json").write_text("{")
    with pytest.raises(ValueError, match="is not a readable config.json"):
        from_pretrained(folder)


def test_weights_that_do_not_fit_are_listed_by_name(tmp_path):
    state = tiny("patchgan16").state_dict()
    keys = list(state)
    del state[keys[0]]
    state["head.extra.weight"] = torch.zeros(1)
    state[keys[-1]] = torch.zeros(7)
    save_file(state, tmp_path / "w.safetensors")
    with pytest.raises(ValueError) as error:
        imgtrans.build("patchgan16", weights=tmp_path / "w.safetensors", base_channels=4)
    message = str(error.value)
    assert f"missing keys: {keys[0]}" in message
    assert "unexpected keys: head.extra.weight" in message
    assert f"mis-shaped: {keys[-1]} (7,) where the model has (1,)" in message
    # the right file into a model of the wrong width
    folder = save_pretrained(tiny("unet128"), tmp_path / "u")
    with pytest.raises(ValueError, match=r"mis-shaped: encoder\.0\.conv\.weight \(4, 3, 4, 4\) where the model has "
                       r"\(8, 3, 4, 4\)"):
        imgtrans.build("unet128", weights=folder, base_channels=8)


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_pth_needing_pickle_is_refused(tmp_path, capsys):
    torch.save({"weight": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="holds more than tensors .* never unpickles code"):
        imgtrans.build("unet256", weights=tmp_path / "evil.pth")
    assert "pickled code ran" not in capsys.readouterr().out


def test_unknown_sources_are_explained(tmp_path):
    zoo = r"The zoo has: .*cyclegan-horse2zebra, .*pix2pix-day2night, "
    with pytest.raises(KeyError, match=r"no published weights for 'pix2pix-l1'.* " + zoo):
        imgtrans.build("pix2pix-l1", pretrained=True)
    with pytest.raises(KeyError, match="Did you mean 'pix2pix-facades'"):
        published("pix2pix-facade")
    with pytest.raises(FileNotFoundError, match="neither a folder nor a Hub repository id"):
        from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="is not a save_pretrained folder: it has no config.json"):
        from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        imgtrans.build("unet256", weights=tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights at"):
        imgtrans.build("unet256", weights=tmp_path / "absent.safetensors")
    (tmp_path / "w.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="'pix2pix-l1' has no reference architecture"):
        imgtrans.build("pix2pix-l1", weights=tmp_path / "w.bin")


class RecordingHfApi:
    """Stands in for ``huggingface_hub.HfApi``: checks each call against the real signature, then
    "uploads" into the local Hub server, so that the pushed folder is read back through the Hub protocol."""

    calls: list = []
    hub = None

    def __init__(self, **kwargs):
        inspect.signature(huggingface_hub.HfApi).bind(**kwargs)
        self.calls.append(("HfApi", kwargs))

    def create_repo(self, *args, **kwargs):
        inspect.signature(huggingface_hub.HfApi.create_repo).bind(self, *args, **kwargs)
        self.calls.append(("create_repo", args, kwargs))

    def upload_folder(self, **kwargs):
        inspect.signature(huggingface_hub.HfApi.upload_folder).bind(self, **kwargs)
        files = sorted(p.name for p in __import__("pathlib").Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", kwargs["repo_id"], files))
        self.hub.publish(kwargs["repo_id"], kwargs["folder_path"], commit="c0ffee" * 6 + "c0ff")
        return "commit-info"


def test_push_to_hub_uploads_the_save_pretrained_folder(zoo_env, hub_server, monkeypatch):
    hub_settings(monkeypatch, endpoint=hub_server.url)
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHfApi)
    RecordingHfApi.calls, RecordingHfApi.hub = [], hub_server
    model = imgtrans.build("pix2pix-facades", **TINY_PIX2PIX)
    randomise(model)
    assert push_to_hub(model, "me/facades-tiny", private=True, token="hf_test") == "commit-info"
    assert RecordingHfApi.calls[0] == ("HfApi", {"endpoint": hub_server.url, "token": "hf_test"})
    assert RecordingHfApi.calls[1] == ("create_repo", ("me/facades-tiny",), {"private": True, "exist_ok": True})
    uploaded = ["README.md", "config.json", "model.safetensors"]
    assert RecordingHfApi.calls[2] == ("upload_folder", "me/facades-tiny", uploaded)
    loaded = from_pretrained("me/facades-tiny")  # back through hf_hub_download and the local Hub
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(loaded.translate(x), model.translate(x))
    hub_settings(monkeypatch, offline=True)
    with pytest.raises(ConnectionError, match="offline mode"):
        push_to_hub(model, "me/facades-tiny")
