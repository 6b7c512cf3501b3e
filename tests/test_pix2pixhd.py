"""pix2pixHD's parts on their own: shapes, the pyramid, the layer details that differ from pix2pix, the losses.

Exactness against NVIDIA's code is in test_reference_family.py; these check the behaviour around it.
"""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import imgtrans
from imgtrans.blocks import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator, PatchDiscriminator
from imgtrans.losses import GAN_MODES, GANLoss, feature_matching_loss

TINY_GLOBAL = dict(base_channels=4, n_downsampling=2, n_blocks=1)
TINY_LOCAL = dict(base_channels=2, n_downsampling=1, n_blocks=1, n_local_enhancers=2, n_blocks_local=1)


@pytest.mark.parametrize("name, arguments", [("pix2pixhd-global", TINY_GLOBAL), ("pix2pixhd-local", TINY_LOCAL)])
@pytest.mark.parametrize("size", [(32, 48), (37, 50), (5, 9)])
def test_generators_take_any_size_and_keep_it(name, arguments, size):
    model = imgtrans.build(name, in_channels=4, out_channels=2, **arguments).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 4, *size))
    assert y.shape == (1, 2, *size) and y.abs().max() <= 1


def test_the_local_enhancer_holds_a_twice_as_wide_global_generator_without_its_head():
    local = LocalEnhancer(base_channels=4, n_downsampling=2, n_blocks=1, n_local_enhancers=1, n_blocks_local=1)
    assert local.global_generator.stem.conv.out_channels == 8 and local.global_generator.head is None
    global_ = GlobalGenerator(base_channels=8, n_downsampling=2, n_blocks=1)
    # the coarse-to-fine schedule: a trained G1 loads into G2's global part (all but its head)
    weights = {k: v for k, v in global_.state_dict().items() if not k.startswith("head.")}
    local.global_generator.load_state_dict(weights, strict=True)
    with pytest.raises(ValueError, match=r"with_head=False: call features\(x\)"):
        local.global_generator(torch.randn(1, 3, 16, 16))


def test_the_local_enhancer_runs_the_global_generator_on_the_coarsest_level():
    local = LocalEnhancer(**TINY_LOCAL).eval()
    x = torch.randn(1, 3, 32, 32)
    seen = []
    local.global_generator.stem.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    with torch.no_grad():
        local(x)
    assert seen == [(1, 3, 8, 8)]  # 2 enhancers: 32 -> 16 -> 8


def test_every_convolution_keeps_its_bias_even_with_batch_norm():
    for model in (
        GlobalGenerator(norm="batch", **TINY_GLOBAL),
        LocalEnhancer(norm="batch", **TINY_LOCAL),
        MultiscaleDiscriminator(base_channels=4, num_scales=2, norm="batch"),
    ):
        convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert convs and all(m.bias is not None for m in convs)
        assert any(m.bias.abs().sum() > 0 for m in convs)  # NVIDIA's init leaves PyTorch's default biases


def test_pix2pixhd_s_patchgan_pads_by_2_and_caps_at_512_filters():
    d = MultiscaleDiscriminator(base_channels=64, n_layers=5, num_scales=1)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert {m.padding for m in convs} == {(2, 2)}
    assert [m.out_channels for m in convs] == [64, 128, 256, 512, 512, 512, 1]
    # pix2pix's PatchGAN of the same depth pads by 1 and caps at 8 times its first layer
    pix2pix = PatchDiscriminator(base_channels=4, n_layers=3)
    assert {m.padding for m in pix2pix.modules() if isinstance(m, nn.Conv2d)} == {(1, 1)}


def test_the_multiscale_output_is_full_resolution_first_and_each_scale_sees_the_pooled_image():
    d = MultiscaleDiscriminator(in_channels=2, base_channels=4, n_layers=2, num_scales=3).eval()
    x = torch.randn(1, 2, 64, 64)
    with torch.no_grad():
        outputs = d(x)
        assert [len(scale) for scale in outputs] == [4, 4, 4]  # n_layers + 2 stages, the logits last
        assert [scale[-1].shape[-1] for scale in outputs] == [19, 11, 7]
        pooled = F.avg_pool2d(F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), 3, 2, 1, count_include_pad=False)
        assert torch.equal(d.scales[2](pooled)[-1], outputs[2][-1])
        logits_only = MultiscaleDiscriminator(in_channels=2, base_channels=4, n_layers=2, num_scales=3, features=False)
        logits_only.load_state_dict(d.state_dict())
        assert [[t.shape for t in s] for s in logits_only.eval()(x)] == [[s[-1].shape] for s in outputs]


def test_wrong_channels_are_named():
    with pytest.raises(ValueError, match="built for 6 input channels but got 3"):
        MultiscaleDiscriminator(base_channels=4)(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="build it with in_channels=5"):
        LocalEnhancer(**TINY_LOCAL)(torch.randn(1, 5, 32, 32))
    with pytest.raises(ValueError, match="num_scales must be between 1 and 8; got 0"):
        MultiscaleDiscriminator(num_scales=0)


def logits(*shapes):
    return [torch.randn(*s) for s in shapes]


@pytest.mark.parametrize("mode", GAN_MODES)
def test_the_gan_loss_sums_a_multiscale_output_over_scales(mode):
    loss = GANLoss(mode)
    real = [[torch.randn(2, 4, 8, 8), r] for r in logits((2, 1, 9, 9), (2, 1, 5, 5))]
    fake = [[torch.randn(2, 4, 8, 8), f] for f in logits((2, 1, 9, 9), (2, 1, 5, 5))]
    per_scale_d = sum(loss.discriminator(r[-1], f[-1]) for r, f in zip(real, fake))
    assert torch.allclose(loss.discriminator(real, fake), per_scale_d)
    assert torch.allclose(loss.generator(fake), sum(loss.generator(f[-1]) for f in fake))
    # one discriminator's features count by their last entry, the logits
    assert torch.equal(loss.generator(fake[0]), loss.generator(fake[0][-1]))


def test_the_gan_loss_refuses_outputs_it_cannot_read():
    loss = GANLoss("lsgan")
    with pytest.raises(ValueError, match="takes a discriminator's logits"):
        loss.generator([])
    with pytest.raises(ValueError, match="takes a discriminator's logits"):
        loss.generator("logits")
    with pytest.raises(ValueError, match="2 and 1 scales"):
        loss.discriminator([logits((1, 1, 4, 4))] * 2, [logits((1, 1, 4, 4))])


def test_feature_matching_weights_layers_and_scales_as_pix2pixhd():
    # two scales of n_layers = 1: three outputs each, two of them intermediate features
    fake = [[torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0), torch.zeros(1, 1, 1, 1)] for _ in range(2)]
    real = [[torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 1, 1)] for _ in range(2)]
    # each scale: 1/num_D * 4/(n_layers+1) * (|1| + |3|) * 10 = 1/2 * 2 * 4 * 10; the logits do not count
    assert feature_matching_loss(fake, real).item() == pytest.approx(2 * 0.5 * 2 * 4 * 10)
    assert feature_matching_loss(fake, real, weight=1.0).item() == pytest.approx(8.0)


def test_feature_matching_does_not_train_the_real_side():
    d = MultiscaleDiscriminator(in_channels=2, base_channels=4, n_layers=1, num_scales=2)
    real_in, fake_in = torch.randn(1, 2, 16, 16, requires_grad=True), torch.randn(1, 2, 16, 16, requires_grad=True)
    feature_matching_loss(d(fake_in), d(real_in)).backward()
    assert real_in.grad is None and fake_in.grad.abs().sum() > 0


def test_feature_matching_refuses_mismatched_outputs():
    a = [logits((1, 1, 4, 4), (1, 1, 3, 3))]
    with pytest.raises(ValueError, match="same number of scales"):
        feature_matching_loss(a, a * 2)
    with pytest.raises(ValueError, match="build the discriminator with features=True"):
        feature_matching_loss([a[0][-1:]], [a[0][-1:]])
    with pytest.raises(ValueError, match="differ in shape"):
        feature_matching_loss(a, [logits((1, 1, 5, 5), (1, 1, 3, 3))])


def test_the_parts_are_registered_and_shrink_with_base_channels():
    assert {"pix2pixhd-global", "pix2pixhd-local", "multiscale-patchgan"} <= set(imgtrans.list_models())
    for name in ("pix2pixhd-global", "pix2pixhd-local", "multiscale-patchgan"):
        with torch.device("meta"):
            small, large = imgtrans.build(name, base_channels=4), imgtrans.build(name, base_channels=8)
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert count(small) < count(large)


PAGE = Path(__file__).resolve().parents[1] / "docs" / "pix2pixhd.md"


def test_the_doc_page_s_snippets_run_and_its_commands_parse():
    import shlex

    from imgtrans.cli import build_parser

    text = PAGE.read_text()
    scope: dict = {"__name__": "pix2pixhd_docs"}
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(snippets) == 2
    for index, code in enumerate(snippets):  # the second uses the first's G
        exec(compile(code, f"docs/pix2pixhd.md snippet {index}", "exec"), scope)
    assert scope["g_loss"].ndim == 0 and scope["d_loss"].item() > 0
    commands = [line for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) for line in block.splitlines()]
    assert len(commands) == 7  # three conversions, the two phases of training, translate and eval
    for command in commands:
        assert callable(build_parser().parse_args(shlex.split(command)[1:]).run)
