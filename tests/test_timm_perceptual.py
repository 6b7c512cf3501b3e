"""The perceptual loss on timm features, and pix2pix with a timm encoder and a perceptual term."""

import json

import pytest
import torch

import imgtrans
from imgtrans import PerceptualLoss
from imgtrans.data import SyntheticFacades
from imgtrans.train import TrainConfig, Trainer

SMALL_D = {"discriminator_args": {"base_channels": 8}}
LIGHT = {"backbone": "resnet18", "layers": (0, 1, 2), "pretrained_backbone": False}


@pytest.fixture(scope="module")
def loss() -> PerceptualLoss:
    torch.manual_seed(0)
    return PerceptualLoss(**LIGHT)


def test_zero_for_identical_images_and_positive_otherwise(loss):
    y = torch.rand(2, 3, 48, 40) * 2 - 1
    assert loss(y, y.clone()).item() == 0
    assert loss(y + 0.1 * torch.randn_like(y), y).item() > 0
    assert loss(y.flip(-1), y).item() > 0  # the same pixels elsewhere


def test_gradients_reach_the_output_but_not_the_backbone(loss):
    loss.train()
    assert not loss.backbone.training and all(not p.requires_grad for p in loss.backbone.parameters())
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    fake = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    running = loss.backbone.bn1.running_mean.clone()
    loss(fake, y).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.backbone.parameters())
    assert torch.equal(loss.backbone.bn1.running_mean, running)  # eval mode: statistics untouched


def test_layers_are_selectable_and_weighted(loss):
    assert loss.backbone.feature_info.reduction() == [2, 4, 8]
    y, fake = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    per_layer = [torch.nn.functional.l1_loss(a, b) for a, b in zip(loss.features(fake), loss.features(y))]
    weighted = PerceptualLoss(**{**LIGHT, "layer_weights": (2.0, 0.0, 0.5)})
    weighted.load_state_dict(loss.state_dict())
    expected = 2 * per_layer[0] + 0.5 * per_layer[2]
    torch.testing.assert_close(weighted(fake, y), expected)
    torch.testing.assert_close(loss(fake, y), sum(per_layer))


def test_bad_configuration_is_explained():
    with pytest.raises(ValueError, match="one weight per layer"):
        PerceptualLoss(**{**LIGHT, "layer_weights": (1.0,)})
    with pytest.raises(ValueError, match=r"'resnet18' has 5 feature levels, 0 to 4, at reductions \[2, 4, 8, 16, 32\]"):
        PerceptualLoss(**{**LIGHT, "layers": (1, 7)})
    with pytest.raises(ValueError, match="same shape"):
        PerceptualLoss(**LIGHT)(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_registered_vgg16_recipe_uses_the_relu_outputs():
    loss = imgtrans.build("perceptual-vgg16", pretrained_backbone=False)
    modules = dict(loss.backbone.named_modules())
    names = loss.backbone.feature_info.module_name()
    assert names == ["features.3", "features.8", "features.15", "features.22", "features.29"]
    assert all(isinstance(modules[n.replace("features.", "features_")], torch.nn.ReLU) for n in names)
    assert loss.layer_weights == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(y, y).item() == 0 and loss(-y, y).item() > 0


def test_pix2pix_with_a_timm_generator_and_the_perceptual_term():
    model = imgtrans.build(
        "pix2pix-facades",
        generator="unet-efficientnet_b0",
        perceptual="perceptual-timm",
        perceptual_args=LIGHT,
        lambda_perceptual=5.0,
        **SMALL_D,
    )
    json.dumps(model.config.to_dict())  # saved models can rebuild themselves
    x, y = torch.rand(1, 3, 40, 56) * 2 - 1, torch.rand(1, 3, 40, 56) * 2 - 1
    fake = model(x)
    model.discriminator_loss(x, y, fake)["loss"].backward()
    losses = model.generator_loss(x, y, fake)
    assert set(losses) == {"loss", "l1", "gan", "perceptual"}
    assert all(torch.isfinite(v) for v in losses.values())
    expected = losses["gan"] + 100 * losses["l1"] + 5.0 * losses["perceptual"]
    torch.testing.assert_close(losses["loss"].detach(), expected)
    assert losses["perceptual"].item() == pytest.approx(model.perceptual(fake, y).item())


def test_the_perceptual_term_is_off_by_default():
    model = imgtrans.build("pix2pix-l1-cgan", generator="unet-efficientnet_b0", **SMALL_D)
    assert model.perceptual is None
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert "perceptual" not in model.generator_loss(x, x, model(x))


@pytest.mark.slow
def test_trainer_steps_with_a_timm_encoder_on_the_embedded_dataset(tmp_path):
    """The trainer, a timm-encoder U-Net, a frozen encoder for 2 steps, the synthetic facades."""
    config = TrainConfig(
        model="pix2pix-l1-cgan",
        model_args={"generator": "unet-resnet34", "generator_args": {"dropout": 0.0}, **SMALL_D},
        out=str(tmp_path / "run"),
        epochs=1,
        epochs_decay=0,
        batch_size=2,
        load_size=None,
        crop_size=None,
        workers=0,
        log_every=1,
        sample_every=0,
        freeze_encoder_steps=2,
    )
    data = SyntheticFacades(8, 64, seed=0)
    trainer = Trainer(config, data, data)
    encoder = {k: v.clone() for k, v in trainer.model.generator.encoder.state_dict().items()}
    trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor([r["g_loss"], r["d_loss"]])).all() for r in log)
    assert log[-1]["g_l1"] < log[0]["g_l1"]
    after = trainer.model.generator.encoder.state_dict()
    assert any(not torch.equal(encoder[k], after[k]) for k in encoder)  # released after 2 steps
