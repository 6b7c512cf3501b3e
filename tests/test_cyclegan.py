"""CycleGAN from the package's parts (Zhu et al. 2017): the reference's step, exact resume, both directions, the zoo."""

import copy
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import imgtrans
from imgtrans.data import SyntheticFacades, UnpairedImageDataset, write_unpaired_folder
from imgtrans.models.cyclegan import PUBLISHED, CycleGAN, cyclegan
from imgtrans.models.pool import ImagePool
from imgtrans.store.checkpoint import load_checkpoint
from imgtrans.store.factory import load as load_model
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train.objective import StepContext, TrainableModel

from zoo_fixtures import file_server, publish, zoo_env  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("textbook_cyclegan_step", ROOT / "benchmarks" / "textbook_cyclegan_step.py")
textbook = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(textbook)

TINY = {"generator_args": {"base_channels": 4, "n_blocks": 2}, "discriminator_args": {"base_channels": 4}}


def tiny(**overrides) -> CycleGAN:
    return imgtrans.build("cyclegan", **{**TINY, **overrides})


def test_the_recipe_is_the_papers():
    model = imgtrans.build("cyclegan")
    assert isinstance(model, TrainableModel) and model.data_layout == "unpaired"
    for g in (model.generator_a, model.generator_b):
        assert type(g).__name__ == "ResnetGenerator" and len(g.blocks) == 9
        assert not any(isinstance(m, torch.nn.Dropout) for m in g.modules())
        norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
        assert norms and not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    for d in (model.discriminator_a, model.discriminator_b):
        assert d.receptive_field == 70 and d.in_channels == 3  # unconditional: one image
        assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in d.modules())
    assert model.gan_loss.mode == "lsgan" and (model.lambda_a, model.lambda_b, model.lambda_identity) == (10, 10, 0.5)
    assert model.fake_a_pool.size == model.fake_b_pool.size == 50
    settings = TrainConfig(model="cyclegan")  # 100 epochs at 2e-4, then 100 of linear decay; 286 -> 256, mirrored
    assert (settings.epochs, settings.decay_epochs, settings.lr, settings.betas) == (200, 100, 2e-4, (0.5, 0.999))
    assert (settings.load_size, settings.crop_size, settings.flip) == (286, 256, True)


def test_parts_swap_through_the_registry_and_one_convention_shrinks_them():
    swapped = imgtrans.build("cyclegan", generator="unet256", gan_mode="hinge")
    assert type(swapped.generator_b).__name__ == "UNetGenerator" and swapped.gan_loss.mode == "hinge"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in swapped.modules())  # instance norm, as the reference
    small = imgtrans.build("cyclegan", generator_args={"base_channels": 8}, discriminator_args={"base_channels": 8})
    assert small.generator_a.stem.conv.out_channels == 8 and small.discriminator_b.layers[0].conv.out_channels == 8
    with pytest.raises(ValueError, match=r"in_channels \(1\) must equal out_channels \(3\)"):
        imgtrans.build("cyclegan", in_channels=1)
    gray_to_rgb = imgtrans.build("cyclegan", in_channels=1, lambda_identity=0, **TINY)
    assert gray_to_rgb(torch.zeros(1, 1, 16, 16)).shape == (1, 3, 16, 16)
    assert gray_to_rgb.translate(torch.zeros(1, 3, 16, 16), direction="BtoA").shape == (1, 1, 16, 16)


def test_the_image_pool_follows_the_reference_draw_for_draw():
    ours = ImagePool(3, seed=5)
    draws = torch.Generator().manual_seed(5)
    theirs = textbook.TextbookPool(
        3, uniform=lambda: float(torch.rand((), generator=draws)),
        randint=lambda low, high: low + int(torch.randint(high - low + 1, (), generator=draws)),
    )  # fmt: skip
    returned_old = 0
    for i in range(12):
        batch = torch.full((2, 1, 2, 2), float(i)) + torch.arange(2.0).view(2, 1, 1, 1) / 10
        a, b = ours.query(batch), theirs.query(batch)
        assert torch.equal(a, b), i
        returned_old += int((a[:, 0, 0, 0] < i).sum())
    assert len(ours) == 3 and 0 < returned_old < 18  # full, and it did hand back earlier fakes, not always
    assert torch.equal(ImagePool(0).query(batch), batch)


def reference_copy(model: CycleGAN):
    nets = [copy.deepcopy(n) for n in (model.generator_a, model.generator_b, model.discriminator_a, model.discriminator_b)]
    opt_g = torch.optim.Adam([*nets[0].parameters(), *nets[1].parameters()], lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*nets[2].parameters(), *nets[3].parameters()], lr=2e-4, betas=(0.5, 0.999))
    pools = []
    for pool in (model.fake_a_pool, model.fake_b_pool):  # the same draws as imgtrans's pools
        draws = torch.Generator()
        draws.set_state(pool.rng.get_state())
        pools.append(textbook.TextbookPool(
            pool.size, uniform=lambda g=draws: float(torch.rand((), generator=g)),
            randint=lambda low, high, g=draws: low + int(torch.randint(high - low + 1, (), generator=g)),
        ))  # fmt: skip
    return nets, opt_g, opt_d, pools


def before_instance_norm(network: torch.nn.Module, key: str) -> bool:
    """Whether ``key`` is the bias of a convolution that an instance norm follows (a ``conv``/``norm`` pair)."""
    parent, _, leaf = key.rpartition(".")
    owner, _, role = parent.rpartition(".")
    sibling = getattr(network.get_submodule(owner), "norm", None) if role == "conv" and leaf == "bias" else None
    return isinstance(sibling, torch.nn.InstanceNorm2d)


@pytest.mark.parametrize("pool_size", [2, 0])
def test_imgtrans_steps_equal_the_reference_logic_within_float_rounding(pool_size):
    torch.manual_seed(0)
    model = tiny(pool_size=pool_size)
    nets, opt_g, opt_d, (pool_a, pool_b) = reference_copy(model)
    optimizers = {k: torch.optim.Adam(v, lr=2e-4, betas=(0.5, 0.999), fused=True)
                  for k, v in model.optimizer_parameters().items()}  # as the trainer makes them # fmt: skip
    context = StepContext(optimizers, torch.amp.GradScaler(enabled=False), torch.device("cpu"))
    for i in range(4):  # the pool fills after one step of 2 images and then swaps
        a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
        ours = model.training_step({"input": a, "target": b}, context)
        theirs = textbook.textbook_step(*nets, opt_g, opt_d, pool_a, pool_b, a, b)
        for name in ("g_loss", "cycle_a", "d_a", "d_b"):
            assert ours[name].item() == pytest.approx(theirs[name], rel=1e-5, abs=1e-6), (i, name)
    probe = torch.rand(2, 3, 32, 32) * 2 - 1
    for mine, reference in zip(model.networks().values(), nets):
        torch.testing.assert_close(mine(probe), reference(probe), rtol=0, atol=1e-5)
        for key, value in mine.state_dict().items():
            if before_instance_norm(mine, key):
                continue  # its gradient is 0 up to rounding, which Adam scales up to lr: the outputs do not see it
            torch.testing.assert_close(value, reference.state_dict()[key], rtol=1e-4, atol=1e-6, msg=key)
    start = tiny(pool_size=pool_size)  # the weights did move: the comparison is not of untrained networks
    assert any(not torch.equal(v, start.state_dict()[k]) for k, v in model.state_dict().items())
    for pool, reference in ((model.fake_a_pool, pool_a), (model.fake_b_pool, pool_b)):
        assert len(pool.images) == len(reference.images) == pool_size
        assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(pool.images, reference.images))


@pytest.fixture
def unpaired(tmp_path) -> Path:
    return write_unpaired_folder(SyntheticFacades(10, 24, seed=0), tmp_path / "data")


def settings(out, data, **overrides) -> TrainConfig:
    base = dict(model="cyclegan", model_args={**TINY, "pool_size": 3}, data=str(data), out=str(out), epochs=2,
                epochs_decay=1, batch_size=2, load_size=26, crop_size=24, workers=0, log_every=1, sample_every=0,
                checkpoint_every=0)  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def test_the_trainer_reads_unpaired_folders_and_resumes_exactly_pools_included(tmp_path, unpaired):
    whole = Trainer(settings(tmp_path / "whole", unpaired, max_steps=6))
    assert isinstance(whole.train_data, UnpairedImageDataset) and len(whole.train_data) == 5
    summary = whole.fit()
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert {"g_a", "g_b", "cycle_a", "cycle_b", "idt_a", "idt_b", "d_a", "d_b", "g_loss", "d_loss"} <= log[0].keys()
    checkpoint = load_checkpoint(summary.checkpoint)
    assert checkpoint.section("train")["fake_b_pool.images"].shape == (3, 3, 24, 24)

    Trainer(settings(tmp_path / "parts", unpaired, max_steps=4)).fit()  # into the second epoch: pools full
    resumed = Trainer(settings(tmp_path / "parts", unpaired, max_steps=6))
    assert resumed.fit(resume=True).steps == 6
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for pool in ("fake_a_pool", "fake_b_pool"):
        x, y = getattr(whole.model, pool), getattr(resumed.model, pool)
        assert torch.equal(x.rng.get_state(), y.rng.get_state())
        assert all(torch.equal(p, q) for p, q in zip(x.images, y.images)) and len(x) == len(y) == 3

    rebuilt = load_model(summary.out)  # the exported run, both directions
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    for direction, net in (("AtoB", whole.model.generator_a), ("BtoA", whole.model.generator_b)):
        torch.testing.assert_close(rebuilt.translate(x, direction=direction), imgtrans.inference.translate(net, x))
    assert rebuilt.generator_for() is rebuilt.generator_a  # the run's direction, AtoB by default


def test_a_resume_without_the_pools_would_differ(tmp_path, unpaired):
    """The check above can fail: a resume that forgot the pools does not reproduce the whole run."""
    whole = Trainer(settings(tmp_path / "whole", unpaired, max_steps=6))
    whole.fit()
    Trainer(settings(tmp_path / "parts", unpaired, max_steps=4)).fit()
    resumed = Trainer(settings(tmp_path / "parts", unpaired, max_steps=6))
    resumed.model.load_training_state = lambda state: None  # forget them
    resumed.fit(resume=True)
    assert any(not torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()))


def test_bf16_autocast_trains(tmp_path, unpaired):
    summary = Trainer(settings(tmp_path / "bf16", unpaired, max_steps=2, amp="bf16")).fit()
    log = [json.loads(line) for line in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()]
    assert summary.steps == 2 and all(torch.isfinite(torch.tensor(r["g_loss"])) for r in log)


def test_serial_batches_pair_b_in_order(unpaired):
    serial = UnpairedImageDataset(unpaired, load_size=None, crop_size=None, serial=True)
    assert [serial[i]["target_name"] for i in range(5)] == [p.name for p in serial.b_files]
    random_b = UnpairedImageDataset(unpaired, load_size=None, crop_size=None)
    drawn = {random_b[i]["target_name"] for e in range(4) for i in range(5) if not random_b.set_epoch(e)}
    assert len(drawn) > 1


def test_a_published_model_fills_one_generator_and_refuses_the_other_direction():
    assert len(PUBLISHED) == 18
    for name, (direction, item) in PUBLISHED.items():
        assert item.part == {"AtoB": "generator_a", "BtoA": "generator_b"}[direction], name
        assert item.reference_arch == "resnet9" and "Zhu" in item.citation and item.license
    assert PUBLISHED["cyclegan-zebra2horse"][1].part == "generator_b"
    model = tiny()
    model.untrained_parts = ("generator_b", "discriminator_a", "discriminator_b")
    assert model.generator_for("AtoB") is model.generator_a
    with pytest.raises(ValueError, match="direction BtoA needs generator_b, which these weights do not hold"):
        model.translate(torch.zeros(1, 3, 16, 16), direction="BtoA")
    with pytest.raises(ValueError, match="direction must be AtoB or BtoA"):
        model.generator_for("AB")


ZOO_NAME = "test-cyclegan-f4"  # a CycleGAN at the width of tests/fixtures/family/resnet9-2017 (a 2017-style file)
if ZOO_NAME not in imgtrans.list_models():
    imgtrans.register(ZOO_NAME, cyclegan, description="CycleGAN at width 4, for the zoo's tests",
                      generator_args={"base_channels": 4}, discriminator_args={"base_channels": 4})  # fmt: skip


def test_the_zoo_fetches_a_2017_generator_into_its_direction_and_translate_uses_it(
    zoo_env, file_server, monkeypatch, tmp_path, capsys
):
    from imgtrans.cli import main
    from imgtrans.store.zoo import CYCLEGAN_URL, reference_url
    from test_reference_family import golden, saved

    state, io = golden("resnet9-2017")  # as the reference saved it in 2017: with InstanceNorm buffers
    file_server.files["cyclegan/zebra2horse.pth"] = saved(state, tmp_path).read_bytes()
    monkeypatch.setenv("IMGTRANS_REFERENCE_URL", file_server.url)
    item = replace(PUBLISHED["cyclegan-zebra2horse"][1])
    publish(monkeypatch, ZOO_NAME, item, "BtoA")
    model = imgtrans.build(ZOO_NAME, pretrained=True)
    assert set(model.untrained_parts) == {"generator_a", "discriminator_a", "discriminator_b"}
    with torch.no_grad():  # the golden input is N(0, 1), beyond translate's [-1, 1]: the network itself, in eval mode
        output = model.generator_for(model.config.direction).eval()(io["input"])
    torch.testing.assert_close(output, io["output"], rtol=0, atol=1e-5)  # its direction: G_B
    with pytest.raises(ValueError, match="direction AtoB needs generator_a, which these weights do not hold"):
        model.translate(io["input"].clamp(-1, 1), direction="AtoB")

    image = tmp_path / "zebra.png"
    imgtrans.images.save_image(io["input"][0], image)
    assert main(["translate", ZOO_NAME, str(image), "--out", str(tmp_path / "out"), "--direction", "BtoA"]) == 0
    assert main(["translate", ZOO_NAME, str(image), "--out", str(tmp_path / "wrong"), "--direction", "AtoB"]) == 2
    assert "direction AtoB needs generator_a" in capsys.readouterr().err
    assert [p for p, _ in file_server.requests if p == "GET"] == ["GET"]  # fetched once, then the cache
    monkeypatch.delenv("IMGTRANS_REFERENCE_URL")
    assert reference_url(item.reference_file) == f"{CYCLEGAN_URL}/zebra2horse.pth"
    assert CYCLEGAN_URL == "https://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"


def test_translate_and_export_pick_the_generator_of_a_trained_run(tmp_path, unpaired, capsys):
    from imgtrans.cli import main
    from imgtrans.deploy.translators import load_translator

    summary = Trainer(settings(tmp_path / "run", unpaired, max_steps=1)).fit()
    x = torch.rand(1, 3, 24, 24) * 2 - 1
    for direction in ("AtoB", "BtoA"):
        translator = load_translator(summary.out, direction=direction)
        generator = getattr(load_model(summary.out), {"AtoB": "generator_a", "BtoA": "generator_b"}[direction])
        assert translator.two_way and translator.direction == direction
        torch.testing.assert_close(translator(x), imgtrans.inference.translate(generator, x))
    assert not torch.allclose(load_translator(summary.out, direction="AtoB")(x), load_translator(summary.out, direction="BtoA")(x))
    image = tmp_path / "a.png"
    imgtrans.images.save_image(x[0], image)
    assert main(["translate", str(summary.out), str(image), "--out", str(tmp_path / "b"), "--direction", "BtoA"]) == 0
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "g_b.onnx"
    assert main(["export", str(summary.out), "--out", str(onnx), "--direction", "BtoA"]) == 0
    exported = load_translator(onnx, backend="onnxruntime")
    assert exported.direction == "BtoA"
    torch.testing.assert_close(exported(x), load_translator(summary.out, direction="BtoA")(x), rtol=0, atol=1e-4)


def test_each_direction_reads_and_writes_its_domain_s_channels():
    from imgtrans.cli.common import model_channels
    from imgtrans.deploy.translators import directed

    gray_to_rgb = imgtrans.build("cyclegan", in_channels=1, lambda_identity=0, **TINY)
    assert model_channels(gray_to_rgb) == (1, 3) == gray_to_rgb.channels_for("AtoB")
    assert model_channels(directed(gray_to_rgb, "BtoA")) == (3, 1)
    assert directed(gray_to_rgb, "BtoA").config.direction == "BtoA" and gray_to_rgb.config.direction == "AtoB"
