"""Exactness against CycleGAN's and pix2pixHD's reference networks: golden tensors in tests/fixtures/family.

The fixtures were made by tools/make_family_golden.py from the reference code (junyanz's/CUT's
networks.py, NVIDIA's pix2pixHD networks.py): each holds the network's state dict under the
reference's key names, its inputs and its eval-mode outputs. Here each state dict is saved as a
``.pth`` (as the reference's checkpoints are), converted without pickle and compared to 1e-5.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import imgtrans
from imgtrans.cli import main
from imgtrans.losses import GANLoss, feature_matching_loss
from imgtrans.store.reference import convert_reference, load_reference, reference_arguments

FIXTURES = Path(__file__).parent / "fixtures" / "family"
TOLERANCE = 1e-5


def golden(name: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(reference state dict, other tensors)`` of one fixture."""
    tensors = load_file(FIXTURES / f"{name}.safetensors")
    state = {k.removeprefix("reference."): v for k, v in tensors.items() if k.startswith("reference.")}
    return state, {k: v for k, v in tensors.items() if not k.startswith("reference.")}


def nested(tensors: dict[str, torch.Tensor], prefix: str) -> list[list[torch.Tensor]]:
    """``prefix.SCALE.LAYER`` tensors back into one list per scale."""
    scales: dict[int, dict[int, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            scale, layer = map(int, key[len(prefix) + 1 :].split("."))
            scales.setdefault(scale, {})[layer] = value
    return [[scales[s][j] for j in sorted(scales[s])] for s in sorted(scales)]


def saved(state: dict[str, torch.Tensor], tmp_path: Path, name: str = "latest_net_G.pth") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def largest_difference(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> float:
    assert [[t.shape for t in s] for s in a] == [[t.shape for t in s] for s in b]
    return max((x - y).abs().max().item() for sa, sb in zip(a, b) for x, y in zip(sa, sb))


GENERATORS = {
    # fixture: (arch, the arguments the file describes)
    "resnet9-instance": ("resnet9", dict(in_channels=3, out_channels=3, base_channels=4, norm="instance")),
    "resnet9-2017": ("resnet9", dict(in_channels=3, out_channels=3, base_channels=4, norm="instance")),
    "global-instance": (
        "pix2pixhd-global",
        dict(in_channels=5, out_channels=3, base_channels=8, n_downsampling=2, n_blocks=2, norm="instance"),
    ),
    "global-batch-0.4": (
        "pix2pixhd-global",
        dict(in_channels=3, out_channels=2, base_channels=4, n_downsampling=1, n_blocks=1, norm="batch"),
    ),
    "local-instance": (
        "pix2pixhd-local",
        dict(
            in_channels=5, out_channels=3, base_channels=4, n_downsampling=1, n_blocks=1,
            n_local_enhancers=2, n_blocks_local=1, norm="instance",
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_reproduce_the_reference_to_1e_5(name, tmp_path):
    arch, expected = GENERATORS[name]
    state, io = golden(name)
    path = saved(state, tmp_path)
    assert reference_arguments(state, arch).items() >= expected.items()
    model = load_reference(path, arch).eval()
    with torch.no_grad():
        output = model(io["input"])
    assert output.shape == io["output"].shape
    assert (output - io["output"]).abs().max().item() < TOLERANCE


def test_the_2017_checkpoint_holds_instance_norm_buffers_that_are_ignored():
    state, io = golden("resnet9-2017")
    buffers = [k for k in state if k.endswith(("running_mean", "running_var"))]
    assert len(buffers) == 2 * 23  # one pair per InstanceNorm2d, as PyTorch 0.3 saved them
    converted = convert_reference(state, "resnet9")
    assert not any(k.endswith(("running_mean", "running_var")) for k in converted)
    assert len(converted) == len(state) - len(buffers)


@pytest.mark.parametrize("legacy", [True, False], ids=["as-2017-saved", "as-saved-today"])
def test_the_cyclegan_discriminator_with_instance_norm_and_3_channels(legacy, tmp_path):
    state, io = golden("cyclegan-d-2017")
    if not legacy:  # today's reference saves no buffers for InstanceNorm2d(track_running_stats=False)
        state = {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var"))}
    arguments = reference_arguments(state, "patchgan70")
    assert arguments == dict(in_channels=3, base_channels=8, norm="instance")
    model = load_reference(saved(state, tmp_path, "latest_net_D_A.pth"), "patchgan70").eval()
    with torch.no_grad():
        assert (model(io["input"]) - io["output"]).abs().max().item() < TOLERANCE


def test_the_multiscale_discriminator_features_at_every_scale(tmp_path):
    state, io = golden("multiscale-d")
    assert reference_arguments(state, "multiscale-patchgan") == dict(
        in_channels=8, base_channels=8, norm="instance", num_scales=3, n_layers=2
    )
    model = load_reference(saved(state, tmp_path, "latest_net_D.pth"), "multiscale-patchgan").eval()
    with torch.no_grad():
        for side in ("real", "fake"):
            outputs = model(io[side])
            assert len(outputs) == 3 and all(len(scale) == 4 for scale in outputs)  # n_layers + 2 each
            assert largest_difference(outputs, nested(io, f"output_{side}")) < TOLERANCE


def test_the_multiscale_discriminator_saved_without_intermediate_features(tmp_path):
    state, io = golden("multiscale-d-logits")  # getIntermFeat=False: keys layerI.K.*
    assert all(k.startswith(("layer0.", "layer1.")) for k in state)
    arguments = reference_arguments(state, "multiscale-patchgan")
    assert arguments == dict(in_channels=4, base_channels=4, norm="instance", num_scales=2, n_layers=1)
    model = imgtrans.build("multiscale-patchgan", **arguments, features=False).eval()
    model.load_state_dict(convert_reference(saved(state, tmp_path), "multiscale-patchgan"), strict=True)
    with torch.no_grad():
        assert largest_difference(model(io["input"]), nested(io, "output")) < TOLERANCE


def test_feature_matching_and_the_multiscale_lsgan_terms_equal_pix2pixhd():
    _, io = golden("multiscale-d")
    real, fake = nested(io, "output_real"), nested(io, "output_fake")
    assert abs(feature_matching_loss(fake, real).item() - io["loss_G_GAN_Feat"].item()) < TOLERANCE
    gan = GANLoss("lsgan")
    assert abs(gan.generator(fake).item() - io["loss_G_GAN"].item()) < TOLERANCE
    d_loss = gan.discriminator(real, fake).item()
    assert abs(d_loss - (io["loss_D_real"] + io["loss_D_fake"]).item()) < TOLERANCE


def test_the_losses_on_the_converted_discriminator_s_own_outputs(tmp_path):
    state, io = golden("multiscale-d")
    model = load_reference(state, "multiscale-patchgan").eval()
    with torch.no_grad():
        real, fake = model(io["real"]), model(io["fake"])
    assert abs(feature_matching_loss(fake, real).item() - io["loss_G_GAN_Feat"].item()) < TOLERANCE
    assert abs(GANLoss("lsgan").generator(fake).item() - io["loss_G_GAN"].item()) < TOLERANCE


def test_scales_are_paired_by_resolution_not_by_the_reference_s_numbering():
    state, io = golden("multiscale-d")
    model = load_reference(state, "multiscale-patchgan")
    # NVIDIA's scale0 runs on the coarsest image: it must land on imgtrans's last scale.
    assert torch.equal(model.scales[2].layers[0].conv.weight, state["scale0_layer0.0.weight"])
    assert torch.equal(model.scales[0].layers[0].conv.weight, state["scale2_layer0.0.weight"])


@pytest.mark.parametrize(
    "name, arch, shown",
    [
        ("local-instance", "pix2pixhd-local", "n_local_enhancers 2, n_blocks_local 1"),
        ("resnet9-2017", "resnet9", "base_channels 4, norm instance, 3 -> 3 channels"),
        ("multiscale-d", "multiscale-patchgan", "num_scales 3, n_layers 2"),
    ],
)
def test_the_convert_command(name, arch, shown, tmp_path, capsys):
    state, io = golden(name)
    path = saved(state, tmp_path)
    assert main(["convert", str(path), str(tmp_path / "out"), "--arch", arch]) == 0
    assert shown in capsys.readouterr().out
    model = imgtrans.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        if "input" in io:
            assert (model(io["input"]) - io["output"]).abs().max().item() < TOLERANCE
        else:
            assert largest_difference(model(io["real"]), nested(io, "output_real")) < TOLERANCE


def test_the_count_message_names_the_checkpoint_s_count_and_the_layout_it_was_compared_with(tmp_path, capsys):
    state, _ = golden("resnet9-2017")  # 94 tensors: 48 of the network and 46 InstanceNorm buffers
    assert len(state) == 94
    assert main(["convert", str(saved(state, tmp_path)), str(tmp_path / "out"), "--arch", "resnet6"]) == 2
    err = capsys.readouterr().err
    assert "the checkpoint holds 48 tensors, after dropping 46 InstanceNorm buffers of an old PyTorch" in err
    assert "where resnet6 (in_channels 3, base_channels 4, norm instance, out_channels 3) holds 36" in err
    assert "(its layout fits resnet9, pix2pixhd-global)" in err  # a ResNet generator is a global generator
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, arch",
    [("global-instance", "pix2pixhd-local"), ("local-instance", "multiscale-patchgan"), ("multiscale-d", "resnet9")],
)
def test_a_checkpoint_of_another_network_is_refused_in_one_line(name, arch, tmp_path, capsys):
    state, _ = golden(name)
    assert main(["convert", str(saved(state, tmp_path)), str(tmp_path / "out"), "--arch", arch]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


LAYOUTS = {
    # layouts.json entry: (arch, what the converter must read from it)
    "cyclegan_2017_G": ("resnet9", dict(in_channels=3, out_channels=3, base_channels=64, norm="instance")),
    "cyclegan_2017_D": ("patchgan70", dict(in_channels=3, base_channels=64, norm="instance")),
    "label2city_512p_G": ("pix2pixhd-global", dict(in_channels=36, base_channels=64, n_downsampling=4, n_blocks=9)),
    "label2city_1024p_G": (
        "pix2pixhd-local",
        dict(in_channels=36, base_channels=32, n_downsampling=4, n_blocks=9, n_local_enhancers=1, n_blocks_local=3),
    ),
    "label2city_D": ("multiscale-patchgan", dict(in_channels=39, base_channels=64, n_layers=3, num_scales=3)),
    "deep_D_512_cap": ("multiscale-patchgan", dict(in_channels=39, base_channels=64, n_layers=5, num_scales=2)),
    "global_batch_G": ("pix2pixhd-global", dict(in_channels=36, norm="batch", n_downsampling=4, n_blocks=9)),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_full_width_layouts_of_cyclegan_s_and_pix2pixhd_s_published_networks(name):
    layout = json.loads((FIXTURES / "layouts.json").read_text())[name]
    arch, expected = LAYOUTS[name]
    fake = {key: torch.empty(shape, device="meta") for key, shape in layout.items()}
    arguments = reference_arguments(fake, arch)
    assert arguments.items() >= expected.items()
    converted = convert_reference(fake, arch)
    with torch.device("meta"):
        target = imgtrans.build(arch, **arguments).state_dict()
    assert list(converted) == list(target)
    assert all(converted[k].shape == target[k].shape for k in target)


def test_the_paper_s_defaults_are_the_cityscapes_recipe_s_sizes():
    layout = json.loads((FIXTURES / "layouts.json").read_text())
    for name, arch in (("label2city_512p_G", "pix2pixhd-global"), ("label2city_1024p_G", "pix2pixhd-local")):
        with torch.device("meta"):
            ours = imgtrans.build(arch, in_channels=36).state_dict()
        assert [tuple(v.shape) for v in ours.values()] == [tuple(s) for s in layout[name].values()], name
    with torch.device("meta"):
        ours = imgtrans.build("multiscale-patchgan", in_channels=39).state_dict()
    assert [tuple(v.shape) for v in ours.values()] == [tuple(s) for s in layout["label2city_D"].values()]


def test_build_with_weights_reads_a_pix2pixhd_checkpoint(tmp_path):
    state, io = golden("local-instance")
    _, expected = GENERATORS["local-instance"]
    model = imgtrans.build("pix2pixhd-local", **expected, weights=saved(state, tmp_path)).eval()
    with torch.no_grad():
        assert (model(io["input"]) - io["output"]).abs().max().item() < TOLERANCE
