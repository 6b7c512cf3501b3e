"""The training seam: a model that defines its own objective trains through the unchanged Trainer.

The toy here is CycleGAN-shaped (Zhu et al., ICCV 2017): two generators G_AB, G_BA, two
discriminators D_A, D_B, one optimiser over both generators and one over both discriminators.
It is defined in this file, registered by name (so checkpoints and exports rebuild it), and the
trainer learns nothing about it beyond imgtrans.train.objective's three methods.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
import torch
from torch import nn

import imgtrans
from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.inference import translate
from imgtrans.registry import register
from imgtrans.store.checkpoint import load_checkpoint
from imgtrans.store.factory import load as load_model
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train.objective import StepContext, TrainableModel
from imgtrans.train.settings import SettingError


def conv_net(in_channels: int, out_channels: int, width: int, final: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, out_channels, 3, padding=1), final,
    )  # fmt: skip


class ToyCycle(nn.Module):
    """Two generators and two discriminators, adversarial plus cycle-consistency losses."""

    def __init__(self, width: int = 4, lambda_cycle: float = 10.0) -> None:
        super().__init__()
        self.g_ab, self.g_ba = conv_net(3, 3, width, nn.Tanh()), conv_net(3, 3, width, nn.Tanh())
        self.d_a, self.d_b = conv_net(3, 1, width, nn.Identity()), conv_net(3, 1, width, nn.Identity())
        self.lambda_cycle = lambda_cycle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g_ab(x)

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        return translate(self, x)

    def networks(self) -> dict[str, nn.Module]:
        return {"g_ab": self.g_ab, "g_ba": self.g_ba, "d_a": self.d_a, "d_b": self.d_b}

    def optimizer_parameters(self) -> dict:
        return {
            "g": [*self.g_ab.parameters(), *self.g_ba.parameters()],
            "d": [*self.d_a.parameters(), *self.d_b.parameters()],
        }

    def training_step(self, batch: dict, step: StepContext) -> dict[str, torch.Tensor]:
        a, b = step.to_device(batch["input"]), step.to_device(batch["target"])
        def mse(prediction: torch.Tensor, target: float) -> torch.Tensor:  # least-squares GAN loss
            return ((prediction - target) ** 2).mean()

        for d in (self.d_a, self.d_b):
            d.requires_grad_(False)
        # The generators' update (LSGAN); D frozen, and under torchrun not synchronised for it.
        with step.autocast(), step.no_sync(self.d_a), step.no_sync(self.d_b):
            fake_b, fake_a = self.g_ab(a), self.g_ba(b)
            gan = mse(self.d_b(fake_b).float(), 1.0) + mse(self.d_a(fake_a).float(), 1.0)
            cycle = (self.g_ba(fake_b) - a).abs().mean() + (self.g_ab(fake_a) - b).abs().mean()
            g_loss = gan + self.lambda_cycle * cycle.float()
        step.update("g", g_loss)
        for d in (self.d_a, self.d_b):
            d.requires_grad_(True)
        with step.autocast():  # the discriminators' update
            d_loss = sum(
                0.5 * (mse(d(real).float(), 1.0) + mse(d(fake.detach()).float(), 0.0))
                for d, real, fake in ((self.d_a, a, fake_a), (self.d_b, b, fake_b))
            )
        step.update("d", d_loss)
        return {"g_loss": g_loss.detach(), "cycle": cycle.detach(), "d_loss": d_loss.detach()}


register("test-toy-cycle", ToyCycle, description="a CycleGAN-shaped toy for the training seam's tests")


def settings(out, **overrides) -> TrainConfig:
    base = dict(model="test-toy-cycle", out=str(out), epochs=2, epochs_decay=1, batch_size=2, load_size=None,
                crop_size=None, workers=0, log_every=1, sample_every=0, checkpoint_every=0)  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def test_a_model_with_four_networks_and_two_optimisers_trains_and_resumes_exactly(tmp_path):
    data = SyntheticFacades(6, 16, seed=0)
    assert isinstance(imgtrans.build("test-toy-cycle"), TrainableModel)
    whole = Trainer(settings(tmp_path / "whole", max_steps=4), data, data)
    assert set(whole.optimizers) == {"g", "d"}
    start = {k: v.clone() for k, v in whole.model.state_dict().items()}
    summary = whole.fit()
    assert summary.steps == 4 and summary.model is not None
    changed = {k.split(".")[0] for k, v in whole.model.state_dict().items() if not torch.equal(v, start[k])}
    assert changed == {"g_ab", "g_ba", "d_a", "d_b"}  # every network was trained
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and {"g_loss", "cycle", "d_loss", "lr"} <= log[0].keys()
    checkpoint = load_checkpoint(summary.checkpoint)
    assert {k.split(".")[1] for k in checkpoint.tensors if k.startswith("optim.")} == {"g", "d"}

    Trainer(settings(tmp_path / "parts", max_steps=2), data, data).fit()
    resumed = Trainer(settings(tmp_path / "parts", max_steps=4), data, data)
    assert resumed.fit(resume=True).steps == 4
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for name in ("g", "d"):
        a, b = whole.optimizers[name].state_dict()["state"], resumed.optimizers[name].state_dict()["state"]
        assert a.keys() == b.keys() and all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)

    for source in (summary.out, summary.checkpoint):  # the run rebuilds the toy by its registered name
        rebuilt = load_model(source).eval()
        x = torch.rand(1, 3, 16, 16) * 2 - 1
        torch.testing.assert_close(rebuilt.translate(x), whole.model.translate(x), rtol=0, atol=0)


def test_a_model_without_an_objective_is_refused_in_one_line(tmp_path):
    data = SyntheticFacades(2, 16, seed=0)
    plain = settings(tmp_path / "run", model="unet128", model_args={"base_channels": 4, "num_downs": 5})
    with pytest.raises(TypeError, match=r"UNetGenerator defines no training objective: it needs networks\(\)"):
        Trainer(plain, data, data)


def test_freezing_an_encoder_needs_a_model_that_has_one(tmp_path):
    data = SyntheticFacades(2, 16, seed=0)
    trainer = Trainer(settings(tmp_path / "run", freeze_encoder_steps=1, max_steps=1), data, data)
    with pytest.raises(SettingError, match="freeze_encoder_steps needs a model with an encoder to freeze; ToyCycle"):
        trainer.fit()


DDP_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[2])
import test_objective  # registers the toy
from safetensors.torch import save_file
from imgtrans.train import TrainConfig, Trainer
config = TrainConfig.from_dict(json.loads(sys.argv[1]))
trainer = Trainer(config)
trainer.fit()
state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
save_file(state, f"{config.out}/rank{trainer.dist.rank}.safetensors")
trainer.dist.close()
"""


@pytest.mark.slow
def test_the_four_networks_train_under_torchrun_with_gradients_averaged(tmp_path):
    data = write_ab_folder(SyntheticFacades(4, 16, seed=0), tmp_path / "data")
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    run = settings(tmp_path / "run", data=str(data), direction="AtoB", max_steps=2, batch_size=1).to_dict()
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         json.dumps(run), str(root / "tests")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [load_file(tmp_path / "run" / f"rank{r}.safetensors") for r in (0, 1)]
    parameters = [k for k in ranks[0] if k.endswith(("weight", "bias"))]  # not the per-process BN statistics
    assert {k.split(".")[0] for k in parameters} == {"g_ab", "g_ba", "d_a", "d_b"}
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in parameters)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors").meta["world_size"] == 2
