import pytest
import torch
from torch import nn

import imgtrans
from imgtrans.store.config import ModelConfig
from imgtrans.registry import entry

PARTS = {
    "unet256": "generator",
    "unet128": "generator",
    "encoder-decoder256": "generator",
    "resnet9": "generator",
    "resnet6": "generator",
    "patchgan70": "discriminator",
    "patchgan16": "discriminator",
    "patchgan286": "discriminator",
    "pixelgan": "discriminator",
}


def test_required_parts_are_registered():
    assert set(PARTS) <= set(imgtrans.list_models())
    assert imgtrans.list_models("patchgan*") == ["patchgan16", "patchgan286", "patchgan70"]
    assert "pix2pix-facades" in imgtrans.list_models("pix2pix-*")


@pytest.mark.parametrize("name", sorted(PARTS))
@pytest.mark.parametrize("size", [(96, 128), (300, 450)])
def test_every_part_builds_and_runs(name, size):
    model = imgtrans.build(name, base_channels=4, in_channels=2).eval()
    x = torch.randn(1, 2, *size)
    y = model(x)
    if PARTS[name] == "generator":
        assert y.shape == (1, 3, *size)
    else:
        assert y.shape[:2] == (1, 1) and y.shape[-1] == model.output_size(size[1])


@pytest.mark.parametrize("name", imgtrans.list_models("pix2pix-*"))
def test_every_pix2pix_configuration_translates(name):
    model = imgtrans.build(name, in_channels=1, out_channels=2, generator_args={"base_channels": 4})
    assert model.translate(torch.rand(1, 1, 40, 72) * 2 - 1).shape == (1, 2, 40, 72)


def test_overrides_use_constructor_names_and_are_recorded():
    model = imgtrans.build("unet128", in_channels=1, out_channels=2, base_channels=8, norm="instance")
    assert model.num_downs == 7 and model.in_channels == 1
    assert isinstance(model.encoder[1].norm, nn.InstanceNorm2d)
    assert model.config == ModelConfig(
        "unet128",
        {
            "in_channels": 1,
            "out_channels": 2,
            "num_downs": 7,
            "base_channels": 8,
            "norm": "instance",
            "dropout": 0.5,
            "skips": True,
            "dropout_layout": "paper",
        },
    )
    rebuilt = imgtrans.build(model.config.name, **model.config.arguments)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]


def test_unknown_name_suggests_the_closest():
    with pytest.raises(KeyError, match="no model called 'unet265'. Did you mean 'unet256'"):
        imgtrans.build("unet265")
    with pytest.raises(KeyError, match="'patchgan70'"):
        imgtrans.build("patchgan-70")


def test_unknown_argument_is_named_with_a_hint():
    with pytest.raises(TypeError, match="'unet256' has no argument 'in_chanels'; did you mean 'in_channels'"):
        imgtrans.build("unet256", in_chanels=1)


def test_users_register_their_own_parts():
    @imgtrans.register("test-tiny-generator", description="a 1x1 conv")
    class Tiny(nn.Module):
        def __init__(self, in_channels: int = 3, out_channels: int = 3) -> None:
            super().__init__()
            self.conv = nn.Conv2d(in_channels, out_channels, 1)

        def forward(self, x):
            return torch.tanh(self.conv(x))

    assert entry("test-tiny-generator").description == "a 1x1 conv"
    # ...and swap them into pix2pix by name
    model = imgtrans.build("pix2pix-facades", generator="test-tiny-generator", in_channels=1)
    assert isinstance(model.generator, Tiny) and model.generator.conv.in_channels == 1
    with pytest.raises(ValueError, match="already registered"):
        imgtrans.register("test-tiny-generator", Tiny)


def test_registered_defaults_must_fit_the_target():
    with pytest.raises(TypeError, match="has no argument 'depth'"):
        imgtrans.register("test-bad-defaults", nn.ReLU, depth=3)
    assert "test-bad-defaults" not in imgtrans.list_models()
