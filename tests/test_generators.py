import pytest
import torch
from torch import nn

from imgtrans.blocks import ResnetGenerator, UNetGenerator
from imgtrans.blocks.unet import dropout_layers


def small_unet(**kwargs) -> UNetGenerator:
    return UNetGenerator(base_channels=4, **kwargs)


def test_unet256_has_the_papers_layers():
    g = UNetGenerator()
    assert [layer.conv.out_channels for layer in g.encoder] == [64, 128, 256, 512, 512, 512, 512, 512]
    # no norm on the first layer nor (errata) at the bottleneck
    assert [hasattr(layer, "norm") for layer in g.encoder] == [False] + [True] * 6 + [False]
    assert [layer.act.__class__.__name__ for layer in g.encoder] == ["LeakyReLU"] * 7 + ["ReLU"]
    # decoder inputs count the concatenated skips: CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128
    inputs = [layer.conv.in_channels for layer in g.decoder] + [g.final.in_channels]
    assert inputs == [512, 1024, 1024, 1024, 1024, 512, 256, 128]
    assert [hasattr(layer, "dropout") for layer in g.decoder] == [True] * 3 + [False] * 4
    assert all(isinstance(layer.act, nn.ReLU) for layer in g.decoder)
    assert sum(p.numel() for p in g.parameters()) == 54_413_955  # the reference unet_256's count


def test_encoder_decoder_has_no_skips():
    g = UNetGenerator(skips=False)
    inputs = [layer.conv.in_channels for layer in g.decoder] + [g.final.in_channels]
    assert inputs == [512, 512, 512, 512, 512, 256, 128, 64]


def test_dropout_layouts():
    assert list(dropout_layers(8, "paper")) == [0, 1, 2]
    assert list(dropout_layers(8, "reference")) == [1, 2, 3]
    assert list(dropout_layers(7, "reference")) == [1, 2]
    g = small_unet(num_downs=7, dropout_layout="reference")
    assert [hasattr(layer, "dropout") for layer in g.decoder] == [False, True, True, False, False, False]
    assert not any(isinstance(m, nn.Dropout) for m in small_unet(dropout=0).modules())


@pytest.mark.parametrize("size", [(256, 256), (300, 450), (1, 1), (17, 255), (513, 64)])
@pytest.mark.parametrize("skips", [True, False])
def test_unet_accepts_any_size(size, skips):
    g = small_unet(skips=skips).eval()
    x = torch.randn(1, 3, *size)
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1


def test_unet_trains_on_odd_sizes_with_batch_one():
    g = small_unet(num_downs=7)
    y = g(torch.randn(1, 3, 100, 130))
    y.mean().backward()
    assert all(p.grad is not None for p in g.parameters())


def unpadded(g: UNetGenerator, x: torch.Tensor) -> torch.Tensor:
    """The U-Net's layers alone on ``x``: its forward with the padding step replaced by none."""
    import imgtrans.blocks.unet as unet

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(unet, "pad_to_multiple", lambda x, *args, **kwargs: (x, (0, 0, 0, 0)))
        return g(x)


def test_padding_does_not_change_multiples_of_256():
    g = small_unet().eval()
    x = torch.randn(1, 3, 256, 512)
    assert torch.equal(g(x), unpadded(g, x))


def test_other_sizes_are_the_network_on_the_reflected_image_cropped_back():
    # 200 x 300 -> 256 x 512: 28 rows above and below, 106 columns left and right, by reflection.
    g = small_unet().eval()
    x = torch.randn(1, 3, 200, 300)
    expected = unpadded(g, torch.nn.functional.pad(x, (106, 106, 28, 28), mode="reflect"))[..., 28:228, 106:406]
    torch.testing.assert_close(g(x), expected, rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError):  # the layers alone cannot take this size: the padding is what makes it work
        unpadded(g, x)


@pytest.mark.parametrize("size", [(64, 64), (101, 77), (3, 5)])
@pytest.mark.parametrize("n_blocks", [6, 9])
def test_resnet_accepts_any_size(size, n_blocks):
    g = ResnetGenerator(base_channels=4, n_blocks=n_blocks).eval()
    assert g(torch.randn(2, 3, *size)).shape == (2, 3, *size)


def test_resnet_layers():
    g = ResnetGenerator(in_channels=1, out_channels=2, base_channels=8, dropout=0.5)
    assert g.stem.conv.kernel_size == (7, 7) and g.stem.conv.padding_mode == "reflect"
    assert len(g.blocks) == 9 and isinstance(g.blocks[0].body[1], nn.Dropout)
    assert g.head.out_channels == 2


@pytest.mark.parametrize("make", [lambda: UNetGenerator(base_channels=4), lambda: ResnetGenerator(base_channels=4)])
def test_wrong_channels_say_what_to_do(make):
    g = make()
    with pytest.raises(ValueError, match=r"built for 3 input channels but got 1 .* in_channels=1"):
        g(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"shaped \(N, C, H, W\); got \(3, 32, 32\)"):
        g(torch.randn(3, 32, 32))


def test_num_downs_must_be_meaningful():
    with pytest.raises(ValueError, match="num_downs must be between 5 and 12; got"):
        UNetGenerator(num_downs=3)


@pytest.mark.parametrize("size", [(5, 100), (45, 77), (64, 64), (130, 20), (1, 1), (300, 210)])
@pytest.mark.parametrize("multiple, minimum", [(32, 0), (4, 8), (256, 0)])
def test_padding_by_index_equals_f_pad(size, multiple, minimum):
    # The export path computes the same padding (reflection, or replication for small images) as eager.
    from imgtrans.blocks.pad import pad_by_index, pad_to_multiple

    x = torch.randn(2, 3, *size)
    padded, pad = pad_to_multiple(x, multiple, minimum)
    assert torch.equal(pad_by_index(x, pad), padded)
