import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.store.factory import load as load_model
from imgtrans.train import NonFiniteLossError, TrainConfig, Trainer
from imgtrans.store.checkpoint import load_checkpoint
from imgtrans.devices import native_bf16
from imgtrans.train.trainer import lr_factor

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ab_data(tmp_path_factory) -> Path:
    return write_ab_folder(SyntheticFacades(6, 36, seed=0), tmp_path_factory.mktemp("data") / "train")


def config(out: Path, data: Path | None = None, **overrides) -> TrainConfig:
    settings = dict(
        model="pix2pix-facades",
        model_args=TINY_MODEL,
        data=str(data) if data else None,
        direction="BtoA",
        out=str(out),
        epochs=3,
        epochs_decay=2,
        batch_size=2,
        load_size=36,
        crop_size=32,
        workers=0,
        log_every=1,
        sample_every=0,
        checkpoint_every=0,
    )
    return TrainConfig(**{**settings, **overrides})


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lr_schedule_is_the_reference_linear_decay():
    f = lr_factor(epochs=100, epochs_decay=100)
    assert [f(e) for e in (0, 99)] == [1.0, 1.0]
    assert f(100) == pytest.approx(1 - 1 / 101) and f(199) == pytest.approx(1 / 101)


def test_training_writes_log_samples_checkpoint_and_model(tmp_path, ab_data):
    trainer = Trainer(config(tmp_path / "run", ab_data, sample_every=3))
    assert trainer.steps_per_epoch() == 3 and trainer.total_steps() == 9
    summary = trainer.fit()
    assert summary.steps == 9 and not summary.interrupted
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 10))
    assert {"d_loss", "d_real", "d_fake", "g_loss", "g_gan", "g_l1", "lr", "img_per_s"} <= lines[0].keys()
    assert [r["lr"] for r in lines[2::3]] == pytest.approx([2e-4, 2e-4 * 2 / 3, 2e-4 / 3])  # 1 + 2 decay epochs
    assert [p.name for p in summary.samples] == ["step-000000.png", "step-000003.png", "step-000006.png", "step-000009.png"]
    meta = load_checkpoint(summary.checkpoint).meta
    assert meta["step"] == 9 and meta["model"]["name"] == "pix2pix-facades"
    exported = load_model(summary.out).eval()
    assert states_equal(exported.state_dict(), trainer.model.state_dict())  # values; layouts may differ
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    # Bit for bit where the layouts agree; a channels-last U-Net (AMX CPUs) rounds in another order.
    exact = all(p.is_contiguous() for p in trainer.model.generator.parameters())
    tolerance = 0 if exact else 1e-6
    torch.testing.assert_close(exported.translate(x), trainer.model.translate(x), rtol=tolerance, atol=tolerance)


# The CPU trains the PatchGAN channels-last by default, and --channels-last makes every network so: checkpoints hold
# contiguous optimiser state, which the fused Adam kernel would pair with channels-last weights element by element.
@pytest.mark.parametrize("channels_last", [False, True])
def test_resuming_two_plus_two_steps_equals_four(tmp_path, ab_data, channels_last):
    full = Trainer(config(tmp_path / "full", ab_data, max_steps=4, channels_last=channels_last))
    full.fit()
    assert full.model.discriminator.layers[1].conv.weight.is_contiguous(memory_format=torch.channels_last)
    first = Trainer(config(tmp_path / "split", ab_data, max_steps=2, channels_last=channels_last))
    first.fit()
    second = Trainer(config(tmp_path / "split", ab_data, max_steps=4, channels_last=channels_last))
    assert second.fit(resume=True).steps == 4
    assert states_equal(full.model.state_dict(), second.model.state_dict())
    for name in ("g", "d"):
        a, b = full.optimizers[name].state_dict()["state"], second.optimizers[name].state_dict()["state"]
        assert a and a.keys() == b.keys() and all(states_equal(a[i], b[i]) for i in a)  # an empty state proves nothing
    assert full.optimizers["g"].param_groups[0]["lr"] == second.optimizers["g"].param_groups[0]["lr"]


@pytest.mark.parametrize("amx", [False, True])
def test_the_unet_trains_channels_last_where_the_cpu_has_amx(tmp_path, ab_data, monkeypatch, amx):
    # AMX's convolutions run up to twice as fast channels-last; elsewhere the U-Net measured slower so.
    monkeypatch.setattr("imgtrans.train.setup.has_amx", lambda: amx)
    trainer = Trainer(config(tmp_path / "run", ab_data))
    weights = [m.weight for m in trainer.model.generator.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert len(weights) == 10 and all(w.is_contiguous(memory_format=torch.channels_last) == amx for w in weights)
    monkeypatch.setattr("imgtrans.train.setup.has_amx", lambda: not amx)
    other = Trainer(config(tmp_path / "other", ab_data))
    # The same function either way: the same weights and seed give the same gradients, to float rounding, in
    # training mode (blocks.dropout draws the same masks in both layouts).
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for generator in (trainer.model.generator.train(), other.model.generator.train()):
        torch.manual_seed(5)
        generator(x).square().mean().backward()
    for (name, mine), theirs in zip(trainer.model.generator.named_parameters(), other.model.generator.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


def test_validation_changes_neither_training_nor_its_exact_resumption(tmp_path, ab_data):
    plain = Trainer(config(tmp_path / "plain", ab_data, max_steps=4))
    plain.fit()
    validated = dict(val_data=str(ab_data), val_every=1)  # validation at every step, on the training folder
    full = Trainer(config(tmp_path / "full", ab_data, max_steps=4, **validated))
    full.fit()
    assert states_equal(plain.model.state_dict(), full.model.state_dict())  # no draw from the training stream
    Trainer(config(tmp_path / "split", ab_data, max_steps=2, **validated)).fit()
    second = Trainer(config(tmp_path / "split", ab_data, max_steps=4, **validated))
    second.fit(resume=True)
    assert states_equal(full.model.state_dict(), second.model.state_dict())
    best = [json.loads((tmp_path / run / "best" / "best.json").read_text()) for run in ("full", "split")]
    assert best[0] == best[1]


def test_data_loading_processes_do_not_change_the_result(tmp_path, ab_data):
    a = Trainer(config(tmp_path / "a", ab_data, max_steps=3, workers=0))
    a.fit()
    b = Trainer(config(tmp_path / "b", ab_data, max_steps=3, workers=2))
    b.fit()
    assert states_equal(a.model.state_dict(), b.model.state_dict())


class Signalling(torch.utils.data.Dataset):
    """Sends SIGINT to this process when item ``at`` is loaded, as a user's Ctrl-C would."""

    def __init__(self, data, at: int) -> None:
        self.data, self.at, self.calls = data, at, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.data[i]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resumes_exactly(tmp_path):
    data = SyntheticFacades(6, 32, seed=0)
    reference = Trainer(config(tmp_path / "ref", load_size=None, crop_size=None), data, data)
    reference.fit()
    cut = Trainer(config(tmp_path / "cut", load_size=None, crop_size=None), Signalling(data, at=5), data)
    summary = cut.fit()
    assert summary.interrupted and summary.steps == 3  # the step loading item 5 finished, then it stopped
    assert load_checkpoint(summary.checkpoint).meta["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    rest = Trainer(config(tmp_path / "cut", load_size=None, crop_size=None), data, data)
    rest.fit(resume=True)
    assert states_equal(reference.model.state_dict(), rest.model.state_dict())


def test_resume_after_a_crash_logs_each_step_once(tmp_path):
    data = SyntheticFacades(6, 32, seed=0)
    run = config(tmp_path / "run", load_size=None, crop_size=None, checkpoint_every=2, max_steps=3)
    Trainer(run, data, data).fit()  # checkpoint at step 3, log up to step 3
    log = tmp_path / "run" / "log.jsonl"
    with log.open("a") as f:  # what a crash after two more steps leaves behind: their records, a cut line
        f.write('{"step": 4, "g_l1": 0.5}\n{"step": 5, "g_l1": 0.4}\n{"step": 6, "g_')
    Trainer(config(tmp_path / "run", load_size=None, crop_size=None), data, data).fit(resume=True)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, 10))


class Poisoned(torch.utils.data.Dataset):
    """Targets become NaN after ``after`` items."""

    def __init__(self, data, after: int) -> None:
        self.data, self.after, self.calls = data, after, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.calls += 1
        item = dict(self.data[i])
        if self.calls > self.after:
            item["target"] = torch.full_like(item["target"], float("nan"))
        return item


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data = SyntheticFacades(6, 32, seed=0)
    trainer = Trainer(config(tmp_path / "run", load_size=None, crop_size=None, checkpoint_every=1), Poisoned(data, 4), data)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss before step 3 .*g_l1=nan.* last good checkpoint is"):
        trainer.fit()
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert checkpoint.meta["step"] == 2
    assert all(torch.isfinite(t).all() for t in checkpoint.section("model").values())


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    data = SyntheticFacades(4, 32, seed=0)
    trainer = Trainer(config(tmp_path / "run", load_size=None, crop_size=None, max_steps=1), data, data)
    trainer.fit()
    good = trainer.checkpoint_path.read_bytes()

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr("imgtrans.store.checkpoint.save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        trainer.save()
    assert trainer.checkpoint_path.read_bytes() == good
    assert [p.name for p in trainer.checkpoint_path.parent.iterdir()] == ["last.safetensors"]


def test_encoder_frozen_for_the_first_steps(tmp_path):
    data = SyntheticFacades(4, 32, seed=0)
    trainer = Trainer(config(tmp_path / "run", load_size=None, crop_size=None, freeze_encoder_steps=2), data, data)
    encoder, decoder = trainer.model.generator.encoder, trainer.model.generator.decoder
    start = {k: v.clone() for k, v in encoder.state_dict().items()}
    decoder_start = [p.clone() for p in decoder.parameters()]
    batch = {"input": torch.stack([data[i]["input"] for i in range(2)]), "target": torch.stack([data[i]["target"] for i in range(2)])}
    for _ in range(2):
        trainer.train_step(batch)
        trainer.step += 1
    assert states_equal(start, encoder.state_dict())  # weights and BatchNorm statistics untouched
    assert not all(torch.equal(a, b) for a, b in zip(decoder_start, decoder.parameters()))
    trainer.train_step(batch)
    assert encoder.training and all(p.requires_grad for p in encoder.parameters())
    assert not states_equal(start, encoder.state_dict())


def test_resume_needs_a_checkpoint_of_the_same_model(tmp_path):
    data = SyntheticFacades(4, 32, seed=0)
    fresh = Trainer(config(tmp_path / "fresh", load_size=None, crop_size=None, max_steps=1), data, data)
    assert fresh.fit(resume=True).steps == 1  # stopped before its first checkpoint: starts from the beginning
    Trainer(config(tmp_path / "run", load_size=None, crop_size=None, max_steps=1), data, data).fit()
    other = dict(TINY_MODEL, discriminator="pixelgan")
    with pytest.raises(ValueError, match="holds a different model"):
        Trainer(config(tmp_path / "run", load_size=None, crop_size=None, model_args=other), data, data).fit(resume=True)


def test_bf16_autocast_on_cpu_trains(tmp_path):
    data = SyntheticFacades(4, 32, seed=0)
    settings = config(tmp_path / "run", load_size=None, crop_size=None, max_steps=2, amp="bf16")
    if native_bf16():
        trainer = Trainer(settings, data, data)
    else:  # emulated bf16 is correct but very slow: the user is told
        with pytest.warns(UserWarning, match="no native bfloat16"):
            trainer = Trainer(settings, data, data)
    trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log and all(torch.isfinite(torch.tensor(r["g_loss"])) for r in log)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32


def test_bad_settings_are_explained(tmp_path):
    with pytest.raises(ValueError, match="amp must be"):
        config(tmp_path, amp="fp8")
    with pytest.raises(ValueError, match="no training data"):
        Trainer(config(tmp_path))


def fp16_trainer(out, data, **settings):
    with pytest.warns(UserWarning, match="fp16 autocast on the CPU"):
        return Trainer(config(out, load_size=None, crop_size=None, amp="fp16", **settings), data, data)


def test_fp16_and_its_gradient_scaler_on_the_cpu_skip_overflowing_steps(tmp_path):
    data = SyntheticFacades(4, 32, seed=0)
    trainer = fp16_trainer(tmp_path / "run", data, max_steps=1)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # fp16 gradients overflow at this scale
    # The generator's fp16 products overflow; this tiny PatchGAN's gradients stay finite (its output layer's
    # taps are float32 even under autocast), and the scaler judges each optimiser's gradients on their own.
    before = [p.detach().clone() for p in trainer.model.generator.parameters()]
    trainer.fit()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.generator.parameters()))  # G's step was skipped
    assert trainer.scaler.get_scale() == 2.0**99  # and the scale backed off
    assert load_checkpoint(trainer.checkpoint_path).meta["scaler"]["scale"] == 2.0**99


def test_fp16_on_the_cpu_resumes_exactly_with_its_scaler_state(tmp_path):
    data = SyntheticFacades(4, 32, seed=0)
    whole = fp16_trainer(tmp_path / "whole", data, max_steps=4)
    whole.fit()
    fp16_trainer(tmp_path / "parts", data, max_steps=2).fit()
    resumed = fp16_trainer(tmp_path / "parts", data, max_steps=4)
    resumed.fit(resume=True)
    assert resumed.scaler.state_dict() == whole.scaler.state_dict()
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["fp16", "bf16", "fp32"])
def test_cuda_amp_paths(tmp_path, amp):
    data = SyntheticFacades(4, 32, seed=0)
    trainer = Trainer(config(tmp_path / amp, load_size=None, crop_size=None, max_steps=3, amp=amp, device="cuda"), data, data)
    trainer.fit()
    assert trainer.device.type == "cuda"
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    log = [json.loads(line) for line in (tmp_path / amp / "log.jsonl").read_text().splitlines()]
    assert log and all(torch.isfinite(torch.tensor(r["g_loss"])) for r in log)
    if amp == "fp16":
        assert load_checkpoint(trainer.checkpoint_path).meta["scaler"]["scale"] > 0


DDP_SCRIPT = """
import sys, torch
from safetensors.torch import save_file
import torch.distributed as dist
from imgtrans.train import TrainConfig, Trainer
config = TrainConfig.from_dict(__import__("json").loads(sys.argv[1]))
trainer = Trainer(config)
trainer.fit()
rank = trainer.dist.rank
save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, f"{config.out}/rank{rank}.safetensors")
trainer.dist.close()
"""


def test_two_cpu_processes_with_torchrun(tmp_path, ab_data):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    settings = config(tmp_path / "run", ab_data, max_steps=3).to_dict()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), json.dumps(settings)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    ranks = [load_file(run / f"rank{r}.safetensors") for r in (0, 1)]
    parameters = [k for k in ranks[0] if k.endswith(("weight", "bias"))]  # not the per-process BN statistics
    assert parameters and all(torch.equal(ranks[0][k], ranks[1][k]) for k in parameters)  # gradients were averaged
    lines = (run / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]  # rank 0 alone logs
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").meta["world_size"] == 2


def test_sync_bn_under_torchrun_on_the_cpu_is_refused_with_the_reason(tmp_path, ab_data):
    # torch synchronises BatchNorm only between GPUs; the CUDA path itself is not exercised here.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    argv = ["train", "pix2pix-facades", "--data", str(ab_data), "--out", str(tmp_path / "run"), "--model-args",
            json.dumps(TINY_MODEL), "--max-steps", "1", "--workers", "0", "--sync-bn", "--device", "cpu"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "imgtrans", *argv],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "imgtrans train: error: --sync-bn needs CUDA: torch synchronises BatchNorm statistics only between GPUs" in result.stderr
