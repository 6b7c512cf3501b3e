"""The pix2pixHD model: its step against NVIDIA's logic, label maps, the trainer, the two phases."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

import imgtrans
from imgtrans.data.labels import LabelMapDataset, encode_labels, instance_edges, one_hot
from imgtrans.losses.perceptual import VGG19Loss, vgg19_features
from imgtrans.store.checkpoint import load_checkpoint
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train.datasets import model_arguments
from imgtrans.train.objective import StepContext
from imgtrans.train.settings import SettingError

TINY_GLOBAL = {"base_channels": 4, "n_downsampling": 2, "n_blocks": 1}
TINY = {"generator_args": TINY_GLOBAL, "discriminator_args": {"base_channels": 4, "n_layers": 2}, "vgg": None}
TINY_LOCAL = {  # its global part is 2 * 2 = 4 filters wide: TINY's generator
    "generator_args": {"base_channels": 2, "n_downsampling": 2, "n_blocks": 1, "n_blocks_local": 1},
    "discriminator_args": {"base_channels": 4, "n_layers": 2},
    "vgg": None,
}
LABEL_NC = 4


# ------------------------------------------------------------------------------- label maps
def test_one_hot_of_a_small_label_map():
    labels = torch.tensor([[[0, 2], [3, 2]]])
    encoded = one_hot(labels, 4)
    expected = torch.zeros(4, 2, 2)
    expected[0, 0, 0] = expected[2, 0, 1] = expected[3, 1, 0] = expected[2, 1, 1] = 1
    assert torch.equal(encoded, expected)
    assert one_hot(labels[None], 4).shape == (1, 4, 2, 2)
    with pytest.raises(ValueError, match="ids from 0 to 3, but label_nc is 3"):
        one_hot(labels, 3)


def test_instance_edges_as_get_edges():
    inst = torch.tensor([[[5, 5, 7], [5, 5, 7], [9, 9, 9]]])
    expected = torch.tensor([[[0, 1, 1], [1, 1, 1], [1, 1, 1]]], dtype=torch.float32)
    assert torch.equal(instance_edges(inst), expected)
    uniform = torch.full((1, 1, 3, 4), 26001)
    assert not instance_edges(uniform).any()


def test_instance_edges_equal_the_reference_get_edges_on_random_maps():
    t = torch.randint(0, 3, (2, 1, 7, 9))
    edge = torch.zeros(t.size(), dtype=torch.uint8)  # NVIDIA's get_edges, on the CPU
    edge[:, :, :, 1:] = edge[:, :, :, 1:] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    edge[:, :, :, :-1] = edge[:, :, :, :-1] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    edge[:, :, 1:, :] = edge[:, :, 1:, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    edge[:, :, :-1, :] = edge[:, :, :-1, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    assert torch.equal(instance_edges(t), edge.float())
    assert torch.equal(encode_labels(t, 3, t), torch.cat([one_hot(t, 3), edge.float()], 1))


def write_label_folder(root: Path, count: int = 4, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for sub in ("label", "img", "inst"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        labels = np.zeros((size, size), np.uint8)
        labels[:, size // 2 :] = 1 + i % (LABEL_NC - 1)
        labels[size // 4 : size // 2, : size // 4] = 3
        inst = (labels.astype(np.int32) * 1000 + (np.arange(size)[None, :] >= 3 * size // 4)).astype(np.int32)
        image = (np.stack([labels * 60, 255 - labels * 60, rng.integers(0, 255, (size, size))], -1)).astype(np.uint8)
        Image.fromarray(labels, "L").save(root / "label" / f"{i:02d}.png")
        Image.fromarray(inst.astype(np.uint16)).save(root / "inst" / f"{i:02d}.png")  # 16-bit, as Cityscapes
        Image.fromarray(image, "RGB").save(root / "img" / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def label_data(tmp_path_factory) -> Path:
    return write_label_folder(tmp_path_factory.mktemp("labels") / "train")


def test_label_dataset_encodes_labels_and_instance_boundaries(label_data):
    data = LabelMapDataset(label_data, LABEL_NC, instance=True, load_size=None, crop_size=None, train=False)
    item = data[1]
    labels = np.array(Image.open(label_data / "label" / "01.png"))
    inst = torch.from_numpy(np.array(Image.open(label_data / "inst" / "01.png")).astype(np.int64))[None]
    assert item["input"].shape == (LABEL_NC + 1, 32, 32)
    assert torch.equal(item["input"][:LABEL_NC].argmax(0), torch.from_numpy(labels.astype(np.int64)))
    assert torch.equal(item["input"][LABEL_NC], instance_edges(inst)[0])
    assert item["preview"].shape == item["target"].shape == (3, 32, 32)
    flipped = LabelMapDataset(label_data, LABEL_NC, instance=True, load_size=None, crop_size=16, seed=3)
    a = flipped[0]
    assert a["input"].shape == (LABEL_NC + 1, 16, 16) and a["target"].shape == (3, 16, 16)


def test_label_dataset_errors_are_one_line(label_data, tmp_path):
    with pytest.raises(ValueError, match="label_nc is 2"):
        LabelMapDataset(label_data, 2, load_size=None, crop_size=None)[0]
    (tmp_path / "label").mkdir()
    with pytest.raises(ValueError, match="no label/ and img/ folders"):
        LabelMapDataset(tmp_path, 4)
    (tmp_path / "img").mkdir()
    with pytest.raises(ValueError, match="does not exist"):
        LabelMapDataset(tmp_path, 4, instance=True)


def test_label_settings_set_the_model_channels_and_are_checked():
    c = TrainConfig(model="pix2pixhd", model_args=dict(TINY), label_nc=35, instance=True)
    assert model_arguments(c)["in_channels"] == 36
    assert "in_channels" not in model_arguments(TrainConfig(model="pix2pixhd", model_args=dict(TINY)))
    with pytest.raises(SettingError, match="in_channels to 35"):
        model_arguments(TrainConfig(model_args={"in_channels": 3}, label_nc=35))
    with pytest.raises(SettingError, match="--label-nc") as error:
        TrainConfig(instance=True)
    assert error.value.cli_message.startswith("--instance")


# ------------------------------------------------------------------------- the objective
def vgg_reference(vgg: VGG19Loss, x, y):
    """NVIDIA's VGGLoss.forward, on the same slices."""
    features = [m for s in vgg.slices for m in s]
    loss, fx, fy = 0, x, y
    for a, b, w in zip((0, 2, 7, 12, 21), (2, 7, 12, 21, 30), (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)):
        for m in features[a:b]:
            fx, fy = m(fx), m(fy)
        loss = loss + w * F.l1_loss(fx, fy.detach())
    return loss


def test_vgg19_loss_is_nvidias_and_reads_timm_and_torchvision_names(tmp_path):
    torch.manual_seed(0)
    features = vgg19_features(37)
    path = tmp_path / "vgg19.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}, str(path))
    vgg = VGG19Loss(vgg_weights=str(path))
    assert torch.equal(vgg.slices[0][0].weight, features[0].weight)
    assert torch.equal(vgg.slices[4][-2].weight, features[28].weight)  # relu5_1's convolution
    x, y = torch.rand(2, 3, 24, 24) * 2 - 1, torch.rand(2, 3, 24, 24) * 2 - 1
    torch.testing.assert_close(vgg(x, y), vgg_reference(vgg, x, y), rtol=1e-6, atol=0)
    assert not any(p.requires_grad for p in vgg.parameters())
    save_file({"classifier.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="does not hold VGG-19"):
        VGG19Loss(vgg_weights=str(tmp_path / "other.safetensors"))


def nvidia_step(model, x, y, opt_g, opt_d, lambda_feat=10.0):
    """pix2pixHD_model.forward and train.py's updates, written from NVIDIA's code with plain torch."""
    net_g, net_d = model.generator, model.discriminator
    num_d, n_layers = len(net_d.scales), len(net_d.scales[0].layers) - 2
    mse = torch.nn.MSELoss()

    def gan(pred, real):
        return sum(mse(p[-1], torch.full_like(p[-1], 1.0 if real else 0.0)) for p in pred)

    fake = net_g(x)
    pred_fake_pool = net_d(torch.cat([x, fake.detach()], 1))
    loss_d_fake = gan(pred_fake_pool, False)
    pred_real = net_d(torch.cat([x, y], 1))
    loss_d_real = gan(pred_real, True)
    pred_fake = net_d(torch.cat([x, fake], 1))
    loss_g_gan = gan(pred_fake, True)
    loss_g_feat = 0
    feat_weights, d_weights = 4.0 / (n_layers + 1), 1.0 / num_d
    for i in range(num_d):
        for j in range(len(pred_fake[i]) - 1):
            loss_g_feat += d_weights * feat_weights * F.l1_loss(pred_fake[i][j], pred_real[i][j].detach()) * lambda_feat
    loss_g_vgg = vgg_reference(model.vgg, fake, y) * lambda_feat if model.vgg is not None else 0
    loss_d = (loss_d_fake + loss_d_real) * 0.5
    loss_g = loss_g_gan + loss_g_feat + loss_g_vgg
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    return {"g_gan": loss_g_gan, "g_feat": loss_g_feat, "g_vgg": loss_g_vgg, "d_loss": loss_d}


def adam(parameters):
    return torch.optim.Adam(parameters, lr=2e-4, betas=(0.5, 0.999))


@pytest.mark.parametrize("generator", ["pix2pixhd-global", "pix2pixhd-local"])
def test_one_step_equals_nvidias_step(generator):
    torch.manual_seed(0)
    args = TINY if generator == "pix2pixhd-global" else TINY_LOCAL
    ours = imgtrans.build("pix2pixhd", generator=generator, in_channels=5, **{**args, "vgg": "perceptual-vgg19"},
                          pretrained_vgg=False)  # fmt: skip
    theirs, initial = copy.deepcopy(ours), copy.deepcopy(ours.state_dict())
    x = encode_labels(torch.randint(0, 4, (2, 1, 32, 32)), 4, torch.randint(0, 2, (2, 1, 32, 32)))
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    optimizers = {"g": adam(ours.generator.parameters()), "d": adam(ours.discriminator.parameters())}
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    terms = ours.training_step({"input": x, "target": y}, StepContext(optimizers, scaler, torch.device("cpu")))
    expected = nvidia_step(theirs, x, y, adam(theirs.generator.parameters()), adam(theirs.discriminator.parameters()))
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value.detach(), rtol=1e-6, atol=1e-7)
    g_total = sum(float(expected[k].detach()) for k in ("g_gan", "g_feat", "g_vgg"))
    assert terms["g_loss"] == pytest.approx(g_total, rel=1e-6)
    a, b = ours.state_dict(), theirs.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)
    changed = {k.split(".")[0] for k in a if not torch.equal(a[k], initial[k])}
    assert changed == {"generator", "discriminator"}  # both updated; the VGG stays fixed


def test_the_recipe_and_its_shrinking_convention():
    model = imgtrans.build("pix2pixhd", pretrained_vgg=False,
                           generator_args={"base_channels": 8}, discriminator_args={"base_channels": 8})  # fmt: skip
    assert model.generator.stem[0].out_channels == 8 and model.discriminator.scales[0].layers[0].conv.out_channels == 8
    assert len(model.discriminator.scales) == 2  # NVIDIA's --num_D default; the paper's 3 in pix2pixhd-enhancer
    assert model.gan_loss.mode == "lsgan" and model.lambda_feat == 10 and model.lambda_vgg == 10
    assert model.discriminator.scales[0].in_channels == 6  # conditional: input beside image
    assert "pretrained_vgg" not in model.config.arguments  # a weight choice, not architecture
    local = imgtrans.build("pix2pixhd-enhancer", **TINY_LOCAL)
    assert len(local.discriminator.scales) == 3
    with pytest.raises(ValueError, match="use pix2pixhd-enhancer"):
        imgtrans.build("pix2pixhd", niter_fix_global=2, **TINY)


# ----------------------------------------------------------------------------- the trainer
def hd_config(out: Path, data: Path, model="pix2pixhd", model_args=TINY, **overrides) -> TrainConfig:
    settings = dict(
        model=model, model_args=dict(model_args), data=str(data), direction="AtoB", out=str(out), label_nc=LABEL_NC,
        instance=True, epochs=3, epochs_decay=1, batch_size=2, load_size=None, crop_size=None, workers=0,
        log_every=1, sample_every=0, checkpoint_every=0, num_samples=2,
    )  # fmt: skip
    settings.update(overrides)
    return TrainConfig(**settings)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_trainer_trains_on_label_maps_logs_every_term_and_resumes_exactly(tmp_path, label_data):
    args = {**TINY, "vgg": "perceptual-vgg19", "pretrained_vgg": False}
    full = Trainer(hd_config(tmp_path / "full", label_data, model_args=args, max_steps=4))
    summary = full.fit()
    lines = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert {"d_loss", "d_real", "d_fake", "g_loss", "g_gan", "g_feat", "g_vgg"} <= lines[0].keys()
    assert full.model.generator.in_channels == LABEL_NC + 1
    assert load_checkpoint(summary.checkpoint).meta["train_config"]["label_nc"] == LABEL_NC
    first = Trainer(hd_config(tmp_path / "split", label_data, model_args=args, max_steps=1))
    first.fit()
    second = Trainer(hd_config(tmp_path / "split", label_data, model_args=args, max_steps=4))
    assert second.fit(resume=True).steps == 4
    assert states_equal(full.model.state_dict(), second.model.state_dict())
    assert Image.open(summary.samples[-1]).size[0] == 3 * (32 + 4)  # preview | output | target


def global_run(tmp_path: Path, data: Path) -> Path:
    return Trainer(hd_config(tmp_path / "global", data, max_steps=2)).fit().model


def test_the_local_phase_fixes_the_global_part_then_trains_all_and_resumes_across(tmp_path, label_data):
    model_dir = global_run(tmp_path, label_data)
    trained = imgtrans.load(model_dir).generator.state_dict()
    trained_global = {k: v for k, v in trained.items() if not k.startswith("head.")}
    args = {**TINY_LOCAL, "niter_fix_global": 1, "global_weights": str(model_dir)}

    def trainer(run: str, steps: int) -> Trainer:
        return Trainer(hd_config(tmp_path / run, label_data, "pix2pixhd-enhancer", args, max_steps=steps))

    full = trainer("all", 4)
    assert states_equal(full.model.generator.global_generator.state_dict(), trained_global)
    full.fit()  # epoch 0 (2 steps) trains the finest enhancer only, epoch 1 all of G
    assert not states_equal(full.model.generator.global_generator.state_dict(), trained_global)
    for stop in (1, 2, 3):  # resumed inside the fixed phase, at the change, after it
        first = trainer(f"split{stop}", stop)
        g = first.model.generator
        start = {k: v.clone() for k, v in g.state_dict().items()}
        first.fit()
        if stop <= 2:  # still the fixed phase: the global part is the trained G1, and Adam never saw it
            changed = {k for k, v in g.state_dict().items() if not torch.equal(v, start[k])}
            assert changed and all(k.startswith(("enhancers.0.", "head.")) for k in changed)
            assert states_equal(g.global_generator.state_dict(), trained_global)
            assert {id(p) for p in first.optimizers["g"].state} == {id(p) for p in first.model.finest_parameters()}
        else:  # the first step of epoch 1 started a fresh Adam over all of G (NVIDIA's update_fixed_params)
            assert {float(s["step"]) for s in first.optimizers["g"].state.values()} == {1.0}
        resumed = trainer(f"split{stop}", 4)
        resumed.fit(resume=True)
        assert states_equal(full.model.state_dict(), resumed.model.state_dict()), stop
        a, b = full.optimizers["g"].state_dict()["state"], resumed.optimizers["g"].state_dict()["state"]
        assert a.keys() == b.keys() and all(states_equal(a[i], b[i]) for i in a)


def test_global_weights_that_do_not_fit_are_refused_in_one_line(tmp_path, label_data):
    model_dir = global_run(tmp_path, label_data)
    wider = {**TINY_LOCAL, "generator_args": {**TINY_LOCAL["generator_args"], "base_channels": 4}}
    with pytest.raises(ValueError, match="does not fit this local enhancer's global part"):
        imgtrans.build("pix2pixhd-enhancer", in_channels=LABEL_NC + 1, global_weights=str(model_dir), **wider)
    with pytest.raises(FileNotFoundError, match="global_weights"):
        imgtrans.build("pix2pixhd-enhancer", global_weights=str(tmp_path / "nothing"), **TINY_LOCAL)


@pytest.mark.parametrize("name, arguments", [
    ("pix2pixhd", {**TINY, "vgg": "perceptual-vgg19"}),
    ("pix2pix-facades", {"perceptual": "perceptual-vgg16"}),  # the same class of part arguments
    ("pix2pix-facades", {"perceptual": "perceptual-vgg16", "perceptual_args": {}}),
])  # fmt: skip
def test_a_configuration_reads_back_equal_when_a_part_has_only_weight_arguments(name, arguments):
    from imgtrans.store.config import ModelConfig

    config = ModelConfig.create(name, arguments)
    assert ModelConfig.from_dict(config.to_dict()) == config  # what resuming compares


DDP_SCRIPT = """
import json, sys
from safetensors.torch import save_file
from imgtrans.train import TrainConfig, Trainer
trainer = Trainer(TrainConfig.from_dict(json.loads(sys.argv[1])))
trainer.fit(resume=len(sys.argv) > 2)
state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
save_file(state, f"{trainer.config.out}/rank{trainer.dist.rank}.safetensors")
trainer.dist.close()
"""


def test_the_fixed_phase_trains_under_torchrun_with_gradients_averaged(tmp_path, label_data):
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    args = {**TINY_LOCAL, "niter_fix_global": 1}
    run = tmp_path / "run"

    def torchrun(steps: int, resume: bool) -> list:
        settings = hd_config(run, label_data, "pix2pixhd-enhancer", args, batch_size=1, max_steps=steps).to_dict()
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
             json.dumps(settings), *(["resume"] if resume else [])],
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        ranks = [load_file(run / f"rank{r}.safetensors") for r in (0, 1)]
        assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # the same updates on both processes
        return ranks[0]

    torch.manual_seed(0)  # the trainer's seed: the weights it starts from
    start = imgtrans.build("pix2pixhd-enhancer", in_channels=LABEL_NC + 1, **args).state_dict()
    fixed = torchrun(2, resume=False)  # epoch 0: 2 steps per process
    changed = {k for k, v in start.items() if not torch.equal(fixed[k], v)}
    trained = ("generator.enhancers.0.", "generator.head.", "discriminator.")
    assert changed and all(k.startswith(trained) for k in changed)
    released = torchrun(3, resume=True)  # then all of G
    stem = "generator.global_generator.stem.conv.weight"
    assert not torch.equal(released[stem], start[stem])
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_the_two_phase_commands_of_the_doc_page_train_at_a_tiny_size(tmp_path, label_data, monkeypatch):
    import re
    import shlex

    from imgtrans.cli import main

    page = (Path(__file__).resolve().parents[1] / "docs" / "pix2pixhd.md").read_text()
    commands = [shlex.split(line) for block in re.findall(r"```bash\n(.*?)```", page, flags=re.S)
                for line in block.splitlines() if line.startswith("imgtrans train")]  # fmt: skip
    assert [c[2] for c in commands] == ["pix2pixhd", "pix2pixhd-enhancer"]
    monkeypatch.chdir(tmp_path)
    for argv, tiny in zip(commands, (TINY, TINY_LOCAL)):
        argv = argv[1:]
        argv[argv.index("--data") + 1] = str(label_data)  # LABEL_NC classes: ids below the page's 35
        given = json.loads(argv[argv.index("--model-args") + 1]) if "--model-args" in argv else {}
        if "--model-args" in argv:
            del argv[argv.index("--model-args") : argv.index("--model-args") + 2]
        assert main([*argv, "--model-args", json.dumps({**tiny, **given, "niter_fix_global": 1} if given else tiny),
                     "--max-steps", "3", "--batch-size", "2", "--workers", "0", "--sample-every", "0"]) == 0
    local = imgtrans.load(tmp_path / "runs" / "hd-local" / "model")
    assert local.generator.in_channels == 36 and type(local.generator).__name__ == "LocalEnhancer"
