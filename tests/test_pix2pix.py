import copy
import math

import pytest
import torch
from torch import nn

import imgtrans
from imgtrans import Pix2Pix, UNetGenerator

SMALL = {"generator_args": {"base_channels": 4}, "discriminator_args": {"base_channels": 4}}


class ConstantCritic(nn.Module):
    """A discriminator that outputs zero logits but keeps the graph to its input."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return 0 * x[:, :1]


def test_objective_by_hand():
    critic = ConstantCritic()
    model = Pix2Pix(UNetGenerator(base_channels=4), critic, lambda_l1=100.0)
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    fake = model(x)
    d = model.discriminator_loss(x, y, fake)
    assert d["loss"].item() == pytest.approx(0.5 * 2 * math.log(2))  # D's objective is halved
    g = model.generator_loss(x, y, fake)
    l1 = (fake - y).abs().mean().item()
    assert g["l1"].item() == pytest.approx(l1, rel=1e-5)
    assert g["gan"].item() == pytest.approx(math.log(2))
    assert g["loss"].item() == pytest.approx(math.log(2) + 100 * l1, rel=1e-5)
    # conditional: D saw (x, y), (x, fake) and (x, fake) concatenated
    assert [t.shape[1] for t in critic.seen] == [6, 6, 6]
    torch.testing.assert_close(critic.seen[0][:, :3], x)
    torch.testing.assert_close(critic.seen[0][:, 3:], y)
    assert not critic.seen[1].requires_grad  # D's step does not reach G
    assert critic.seen[2].requires_grad


def test_unconditional_discriminator_sees_only_the_output():
    model = imgtrans.build("pix2pix-l1-gan", **SMALL)
    assert model.discriminator.in_channels == 3 and not model.conditional
    x, y = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    model.discriminator_loss(x, y, model(x))["loss"].backward()


def test_one_training_step_moves_both_networks():
    torch.manual_seed(0)
    model = imgtrans.build("pix2pix-facades", **SMALL)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x, y = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    before = [p.clone() for p in model.parameters()]
    fake = model(x)
    opt_d.zero_grad()
    model.discriminator_loss(x, y, fake)["loss"].backward()
    assert all(p.grad is None for p in model.generator.parameters())
    opt_d.step()
    opt_g.zero_grad()
    model.generator_loss(x, y, fake)["loss"].backward()
    opt_g.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()) if a.ndim == 4)


@pytest.mark.parametrize(
    "name, discriminator, lambda_l1, conditional",
    [
        ("pix2pix-l1", None, 100.0, True),
        ("pix2pix-gan", "patchgan70", 0.0, False),
        ("pix2pix-cgan", "patchgan70", 0.0, True),
        ("pix2pix-l1-gan", "patchgan70", 100.0, False),
        ("pix2pix-l1-cgan", "patchgan70", 100.0, True),
        ("pix2pix-pixelgan", "pixelgan", 100.0, True),
        ("pix2pix-patchgan16", "patchgan16", 100.0, True),
        ("pix2pix-patchgan286", "patchgan286", 100.0, True),
    ],
)
def test_ablation_configurations(name, discriminator, lambda_l1, conditional):
    entry_args = imgtrans.registry.entry(name).arguments({})
    assert entry_args["discriminator"] == discriminator
    assert entry_args["lambda_l1"] == lambda_l1 and entry_args["conditional"] == conditional
    model = imgtrans.build(name, **SMALL)
    assert (model.discriminator is None) == (discriminator is None)
    x, y = torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128)
    fake = model(x)
    if model.discriminator is not None:
        assert torch.isfinite(model.discriminator_loss(x, y, fake)["loss"])
    losses = model.generator_loss(x, y, fake)
    assert torch.isfinite(losses["loss"]) and ("gan" in losses) == (discriminator is not None)


def test_table2_generators():
    assert imgtrans.build("pix2pix-encoder-decoder-l1", **SMALL).generator.skips is False
    assert imgtrans.build("pix2pix-encoder-decoder-l1-cgan", **SMALL).discriminator is not None
    assert imgtrans.build("pix2pix-l1-cgan", **SMALL).generator.skips is True


def test_l1_only_model_refuses_a_discriminator_step_and_needs_l1():
    model = imgtrans.build("pix2pix-l1", **SMALL)
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(RuntimeError, match="no discriminator"):
        model.discriminator_loss(x, x, model(x))
    with pytest.raises(ValueError, match="lambda_l1 > 0"):
        Pix2Pix(UNetGenerator(base_channels=4), None, lambda_l1=0)


def test_translate_eval_mode_is_deterministic_and_leaves_the_mode_alone():
    model = imgtrans.build("pix2pix-facades", **SMALL)
    model.train()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    a, b = model.translate(x), model.translate(x)
    assert torch.equal(a, b) and not a.requires_grad
    assert model.generator.training


def test_paper_test_mode_uses_dropout_and_per_image_statistics_without_touching_the_model():
    model = imgtrans.build("pix2pix-facades", **SMALL)
    model.generator.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    a, b = model.translate(x, paper_test_mode=True), model.translate(x, paper_test_mode=True)
    assert not torch.equal(a, b)  # dropout is on
    assert not model.generator.training
    for k, v in model.state_dict().items():  # running statistics untouched
        assert torch.equal(v, state[k]), k
    # each image's own statistics: without dropout, the paper's mode equals a train-mode forward pass
    # of each image alone (batch size 1 at test time, as in the paper)
    g = UNetGenerator(base_channels=4, dropout=0.0).eval()
    with torch.no_grad():
        reference = torch.cat([copy.deepcopy(g).train()(x[i : i + 1]) for i in range(len(x))])
    paper = Pix2Pix(g, None).translate(x, paper_test_mode=True)
    torch.testing.assert_close(paper, reference)
    assert not torch.allclose(Pix2Pix(g, None).translate(x), reference)
