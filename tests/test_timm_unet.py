"""The U-Net generator on timm backbones: layout, sizes, gradients, normalisation, registry."""

import json

import pytest
import torch
from torch import nn

import imgtrans
from imgtrans.blocks import TimmUNetGenerator
from imgtrans.blocks.backbone import BackboneInput, normalization_stats
from imgtrans.blocks.timm_unet import decoder_plan
from imgtrans.models.timm_parts import ENCODERS

REGISTERED = [f"unet-{encoder}" for encoder in ENCODERS]
_BUILT: dict[str, nn.Module] = {}


def registered(name: str) -> nn.Module:
    """Each registered generator is built once per session (building ConvNeXt-T takes a while)."""
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = imgtrans.build(name, in_channels=1, out_channels=2)
    return _BUILT[name]


def test_registered_backbones_cover_several_families():
    assert set(REGISTERED) | {"unet-timm"} <= set(imgtrans.list_models("unet-*"))
    assert {"resnet34", "convnext_tiny", "efficientnet_b0"} <= set(ENCODERS)
    assert all(imgtrans.registry.entry(name).target is TimmUNetGenerator for name in REGISTERED)


@pytest.mark.parametrize("name", REGISTERED)
@pytest.mark.parametrize("size", [(33, 47), (70, 101)])
def test_every_registered_backbone_keeps_odd_sizes(name, size):
    g = registered(name).eval()
    x = torch.rand(1, 1, *size) * 2 - 1
    with torch.no_grad():
        y = g(x)
    assert y.shape == (1, 2, *size)
    assert y.abs().max() <= 1  # Tanh


def test_decoder_mirrors_the_encoder_with_a_skip_at_every_level():
    g = imgtrans.build("unet-resnet34")
    assert g.feature_channels == (64, 64, 128, 256, 512) and g.feature_reductions == (2, 4, 8, 16, 32)
    assert [layer.conv.out_channels for layer in g.decoder] == [256, 128, 64, 64]
    # inputs count the concatenated skips; the final layer reads 1/2 resolution: C64 + skip 64
    assert [layer.conv.in_channels for layer in g.decoder] + [g.final.in_channels] == [512, 512, 256, 128, 128]
    assert g.skip_after == [True] * 4
    assert all(isinstance(layer.conv, nn.ConvTranspose2d) and isinstance(layer.act, nn.ReLU) for layer in g.decoder)
    assert [hasattr(layer, "dropout") for layer in g.decoder] == [True, True, False, False]


def test_convnext_gets_a_layer_without_skip_below_its_first_level():
    assert decoder_plan([96, 192, 384, 768], [4, 8, 16, 32]) == [(384, True), (192, True), (96, True), (48, False)]
    # levels more than one doubling apart: the extra layer takes the finer level's width, no skip
    assert decoder_plan([16, 64], [2, 8]) == [(16, False), (16, True)]


@pytest.mark.parametrize("reductions", [[16, 16, 16], [1, 2, 4], [2, 6, 12]])
def test_backbones_without_a_pyramid_are_refused(reductions):
    with pytest.raises(ValueError, match=r"at 1/2 resolution or coarser, each at twice .* reports reductions"):
        decoder_plan([8] * len(reductions), reductions)


def test_gradients_reach_decoder_and_encoder_unless_frozen():
    g = imgtrans.build("unet-efficientnet_b0")
    x = torch.rand(2, 3, 45, 61) * 2 - 1
    g(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.decoder.parameters())
    assert g.final.weight.grad.abs().sum() > 0
    encoder_grads = [p.grad for p in g.encoder.parameters()]
    assert all(grad is not None for grad in encoder_grads) and sum(grad.abs().sum() for grad in encoder_grads) > 0

    g.zero_grad(set_to_none=True)
    g.encoder.requires_grad_(False)  # what the trainer does for the first N steps
    g(x).square().mean().backward()
    assert all(p.grad is None for p in g.encoder.parameters())
    assert all(p.grad is not None for p in g.decoder.parameters())


def test_trains_with_a_batch_of_one_on_tiny_images():
    g = imgtrans.build("unet-resnet34").train()
    y = g(torch.rand(1, 3, 5, 7) * 2 - 1)  # padded to 64x64: the deepest features are 2x2
    assert y.shape == (1, 3, 5, 7)
    y.mean().backward()


def test_input_is_mapped_to_the_backbones_pretrained_normalisation():
    g = imgtrans.build("unet-resnet34")
    mean, std = g.encoder.pretrained_cfg["mean"], g.encoder.pretrained_cfg["std"]
    black, white = torch.full((1, 3, 1, 1), -1.0), torch.ones(1, 3, 1, 1)
    torch.testing.assert_close(g.normalize(black).flatten(), -torch.tensor(mean) / torch.tensor(std))
    torch.testing.assert_close(g.normalize(white).flatten(), (1 - torch.tensor(mean)) / torch.tensor(std))
    assert not any(k.startswith("normalize.") for k in g.state_dict())  # they follow from the backbone


def test_other_channel_counts_follow_timms_first_convolution():
    cfg = {"mean": (0.4, 0.5, 0.6), "std": (0.1, 0.2, 0.3)}
    assert normalization_stats(cfg, 3) == ([0.4, 0.5, 0.6], [0.1, 0.2, 0.3])
    mean, std = normalization_stats(cfg, 1)  # timm sums the RGB filters
    assert mean == pytest.approx([0.5]) and std == pytest.approx([0.2])
    assert normalization_stats(cfg, 4) == ([0.4, 0.5, 0.6, 0.4], [0.1, 0.2, 0.3, 0.1])  # timm repeats them
    g = imgtrans.build("unet-efficientnet_b0", in_channels=4)
    assert g.encoder.conv_stem.in_channels == 4 and g.normalize.mean.shape == (1, 4, 1, 1)
    with pytest.raises(ValueError, match="one value per channel"):
        BackboneInput([0.5, 0.5], [0.5])


def test_wrong_input_says_what_to_do():
    g = imgtrans.build("unet-efficientnet_b0")
    with pytest.raises(ValueError, match=r"built for 3 input channels but got 1 .* in_channels=1"):
        g(torch.rand(1, 1, 32, 32))


def test_unknown_encoder_suggests_timm_names():
    with pytest.raises(ValueError, match="timm has no model called 'resnt34'. Did you mean 'resnet34'"):
        imgtrans.build("unet-timm", encoder="resnt34")


def test_build_config_is_json_and_rebuilds_the_same_architecture():
    g = imgtrans.build("unet-timm", encoder="efficientnet_b0", out_channels=1, norm="instance", dropout=0.0)
    config = json.loads(json.dumps(g.config.to_dict()))
    rebuilt = imgtrans.build(config["name"], **config["arguments"])
    assert rebuilt.encoder_name == "efficientnet_b0" and isinstance(rebuilt.decoder[0].norm, nn.InstanceNorm2d)
    assert not any(isinstance(m, nn.Dropout) for m in rebuilt.modules())
    rebuilt.load_state_dict(g.state_dict(), strict=True)
    x = torch.rand(1, 3, 40, 40) * 2 - 1
    torch.testing.assert_close(rebuilt.eval()(x), g.eval()(x))
