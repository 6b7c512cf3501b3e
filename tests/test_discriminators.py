import pytest
import torch
from torch import nn

from imgtrans.blocks import PatchDiscriminator
from imgtrans.blocks.patchgan import notation

SIZES = {0: 1, 1: 16, 3: 70, 5: 286}


@pytest.mark.parametrize("n_layers, field", SIZES.items())
def test_receptive_field_is_computed_from_the_layers(n_layers, field):
    assert PatchDiscriminator(n_layers=n_layers).receptive_field == field


@pytest.mark.parametrize("n_layers, field", SIZES.items())
def test_receptive_field_gradient_probe(n_layers, field):
    """Back-propagate one logit from the middle of the map and measure the input it touches."""
    d = PatchDiscriminator(in_channels=2, base_channels=4, n_layers=n_layers).eval()
    size = field + 64
    x = torch.randn(1, 2, size, size, requires_grad=True)
    out = d(x)
    i, j = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, i, j].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)))
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)))
    assert rows.max() - rows.min() + 1 == field
    assert cols.max() - cols.min() + 1 == field


@pytest.mark.parametrize(
    "n_layers, spec, out_side",
    [(0, "C64-C128", 256), (1, "C64-C128", 126), (3, "C64-C128-C256-C512", 30), (5, "C64-C128-C256-C512-C512-C512", 6)],
)
def test_paper_notation_and_output_sizes(n_layers, spec, out_side):
    assert notation(n_layers) == spec
    d = PatchDiscriminator(base_channels=4, n_layers=n_layers)
    assert d(torch.randn(2, 6, 256, 256)).shape == (2, 1, out_side, out_side)


def test_pixelgan_uses_1x1_convolutions_and_no_norm_first():
    d = PatchDiscriminator(n_layers=0)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.kernel_size == (1, 1) for c in convs)
    assert not hasattr(d.layers[0], "norm") and isinstance(d.layers[1].norm, nn.BatchNorm2d)


def test_first_layer_has_no_norm_and_all_relus_are_leaky():
    d = PatchDiscriminator()
    assert not hasattr(d.layers[0], "norm")
    assert all(isinstance(layer.act, nn.LeakyReLU) for layer in d.layers)


def test_too_small_images_get_a_clear_error():
    d = PatchDiscriminator(base_channels=4)
    with pytest.raises(ValueError, match="16x16 image is too small .* at least 24 pixels"):
        d(torch.randn(1, 6, 16, 16))


def test_wrong_channels():
    with pytest.raises(ValueError, match="built for 6 input channels but got 3"):
        PatchDiscriminator(base_channels=4)(torch.randn(1, 3, 64, 64))
