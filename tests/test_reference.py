"""Exactness against the reference implementation's checkpoints and golden outputs."""

import json

import pytest
import torch
from safetensors.torch import load_file

import imgtrans
from imgtrans.store.reference import ARCHS, convert_reference, load_reference, read_reference, reference_arguments

from conftest import SHARED, shared_path

GOLDEN = sorted(p.name.removesuffix("-f8.pth") for p in (SHARED / "reference").glob("*-f8.pth"))


def test_golden_files_are_found_or_skipped_with_a_reason():
    shared_path("reference")
    assert {"unet256", "unet128", "patchgan70", "patchgan16", "patchgan286", "pixelgan"} <= set(GOLDEN)


@pytest.mark.parametrize("arch", GOLDEN or ["(none)"])
def test_golden_outputs_reproduced_to_1e_5(arch):
    checkpoint = shared_path("reference", f"{arch}-f8.pth")
    golden = load_file(shared_path("reference", f"{arch}-f8.io.safetensors"))
    state = read_reference(checkpoint)
    model = imgtrans.build(arch, **reference_arguments(state, arch))
    model.load_state_dict(convert_reference(checkpoint, arch), strict=True)
    model.eval()
    with torch.no_grad():
        output = model(golden["input"])
    assert output.shape == golden["output"].shape
    assert (output - golden["output"]).abs().max().item() < 1e-5


def test_full_width_layouts_of_the_published_checkpoints():
    layouts = json.loads(shared_path("reference", "layouts.json").read_text())
    for arch, layout in layouts.items():
        fake = {key: torch.empty(shape, device="meta") for key, shape in layout.items()}
        converted = convert_reference(fake, arch)
        arguments = reference_arguments(fake, arch)
        assert arguments["base_channels"] == 64 and arguments["norm"] == "batch"
        with torch.device("meta"):
            expected = imgtrans.build(arch, **arguments).state_dict()
        assert list(converted) == list(expected), arch
        assert all(converted[k].shape == expected[k].shape for k in expected), arch


def reference_like(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict with reference-style names (numbered modules) for ``model``'s tensors."""
    return {f"model.{i}.{key.rsplit('.', 1)[-1]}": v for i, (key, v) in enumerate(model.state_dict().items())}


def test_conversion_ignores_the_order_of_the_keys():
    model = imgtrans.build("patchgan16", base_channels=4)
    state = reference_like(model)
    shuffled = dict(reversed(list(state.items())))
    assert list(convert_reference(shuffled, "patchgan16")) == list(model.state_dict())


def test_dataparallel_prefix_and_wrapped_state_dicts(tmp_path):
    model = imgtrans.build("pixelgan", base_channels=4)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in reference_like(model).items()}}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    loaded = load_reference(tmp_path / "wrapped.pth", "pixelgan")
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_wrong_architecture_names_the_tensor_and_the_fitting_one():
    state = reference_like(imgtrans.build("patchgan16", base_channels=4))
    fits = r"holds 10 tensors, where patchgan70 \(.*\) holds 22: .*\(its layout fits patchgan16\)"
    with pytest.raises(ValueError, match=fits):
        convert_reference(state, "patchgan70")
    with pytest.raises(ValueError, match=r"unknown reference architecture 'patchgan71'"):
        convert_reference(state, "patchgan71")


def test_same_count_but_wrong_shapes_are_named():
    state = reference_like(imgtrans.build("patchgan70", base_channels=4))
    key = next(k for k, v in state.items() if v.ndim == 4 and k != next(iter(state)))
    state[key] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(ValueError, match=rf"does not fit patchgan70: its {key} \(3, 3, 3, 3\)"):
        convert_reference(state, "patchgan70")


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(ValueError, match="holds more than tensors .* never unpickles code"):
        read_reference(path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(imgtrans.build("pixelgan", base_channels=4).state_dict(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        read_reference(path)
    with pytest.raises(FileNotFoundError, match="no reference checkpoint at"):
        read_reference(tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        convert_reference({"a": 1}, "pixelgan")


def test_all_reference_archs_are_registered():
    assert set(ARCHS) <= set(imgtrans.list_models())
