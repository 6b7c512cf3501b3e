"""The metrics against hand-computed cases: L1, PSNR, SSIM, Lab, histogram intersection, sharpness."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imgtrans.metrics import (
    LAB_AXES,
    gradient_energy,
    histogram_intersection,
    l1_error,
    lab_histograms,
    psnr,
    relative_sharpness,
    rgb_to_lab,
    ssim,
    ssim_map,
    to_unit_range,
)
from imgtrans.metrics.ssim import K1, K2

C1, C2 = K1**2, K2**2


def texture(n: int = 2, c: int = 3, size: int = 32, amplitude: float = 0.8) -> torch.Tensor:
    """Random images in [-amplitude, amplitude] (the [-1, 1] convention)."""
    return (torch.rand(n, c, size, size) * 2 - 1) * amplitude


def from_unit(u: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> the [-1, 1] convention."""
    return u * 2 - 1


# --- identical images -------------------------------------------------------------------------


def test_identical_images():
    x = texture()
    assert l1_error(x, x).tolist() == [0.0, 0.0]
    assert psnr(x, x).tolist() == [math.inf, math.inf]  # no cap: documented as +inf
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert relative_sharpness(x, x).tolist() == [1.0, 1.0]
    for channel, counts in lab_histograms(x).items():
        assert histogram_intersection(counts, counts) == pytest.approx(1.0), channel


def test_every_metric_returns_one_value_per_image():
    x, y = texture(n=3), texture(n=3)
    for metric in (l1_error, psnr, ssim, relative_sharpness):
        assert metric(x, y).shape == (3,)
    assert gradient_energy(x).shape == (3,)


# --- L1 and PSNR --------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [0.01, 0.05, 0.2])
def test_constant_shift(d):
    target = texture(amplitude=0.5).double()  # float64 so that the shift is exact to 1e-12
    output = target + 2 * d  # a shift of 2d on [-1, 1] is a shift of d on [0, 1]
    assert l1_error(output, target).tolist() == pytest.approx([d, d], abs=1e-12)
    expected = 10 * math.log10(1 / d**2)
    assert psnr(output, target).tolist() == pytest.approx([expected, expected], abs=1e-9)
    assert psnr(target, output).tolist() == pytest.approx([expected, expected], abs=1e-9)  # symmetric


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_gaussian_noise_psnr(sigma):
    target = torch.zeros(2, 3, 64, 64)  # mid-grey: noise of 4 sigma stays far from the range's ends
    output = target + 2 * sigma * torch.randn_like(target)
    # 12288 samples per image: the estimated MSE is within about 1.3% of sigma^2, i.e. 0.06 dB.
    assert psnr(output, target).tolist() == pytest.approx([-20 * math.log10(sigma)] * 2, abs=0.2)


def test_l1_is_half_the_training_loss_on_minus_one_to_one():
    from imgtrans.losses import l1_loss

    x, y = texture(), texture()
    assert l1_error(x, y).mean().item() == pytest.approx(l1_loss(x, y).item() / 2)


# --- SSIM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b", [(0.2, 0.7), (0.5, 0.5), (0.0, 1.0), (0.9, 0.1)])
def test_ssim_of_constant_images_by_hand(a, b):
    output = torch.full((1, 3, 16, 16), 2 * a - 1, dtype=torch.float64)
    target = torch.full((1, 3, 16, 16), 2 * b - 1, dtype=torch.float64)
    # Constant images: variances and covariance vanish, leaving the luminance term.
    expected = (2 * a * b + C1) / (a**2 + b**2 + C1)
    assert ssim(output, target).item() == pytest.approx(expected, rel=1e-9)


def test_ssim_of_one_window_against_an_independent_computation():
    # An 11x11 image holds exactly one window position: compute its SSIM with NumPy.
    u, v = torch.rand(1, 1, 11, 11, dtype=torch.float64), torch.rand(1, 1, 11, 11, dtype=torch.float64)
    k = np.arange(11) - 5.0
    g = np.exp(-(k**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    x, y = u[0, 0].numpy(), v[0, 0].numpy()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    expected = ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    assert ssim_map(from_unit(u), from_unit(v)).shape == (1, 1, 1, 1)
    assert ssim(from_unit(u), from_unit(v)).item() == pytest.approx(expected, rel=1e-9)


def test_ssim_borders_are_not_padded():
    x, y = texture(size=20), texture(size=20)
    assert ssim_map(x, y).shape == (2, 3, 10, 10)  # valid positions only: H - 10, W - 10
    # Changing a corner pixel only affects the windows covering it.
    z = y.clone()
    z[:, :, 0, 0] = -z[:, :, 0, 0]
    changed = (ssim_map(x, y) != ssim_map(x, z))[0, 0]
    assert changed[0, 0] and not changed[1:, :].any() and not changed[:, 1:].any()


def test_ssim_decreases_with_noise_and_is_symmetric():
    target = texture(n=1, amplitude=0.5)
    scores = [ssim((target + s * torch.randn_like(target)).clamp(-1, 1), target).item() for s in (0.01, 0.1, 0.3)]
    assert scores[0] > scores[1] > scores[2]
    x = texture(n=1)
    assert ssim(x, target).item() == pytest.approx(ssim(target, x).item(), rel=1e-12)


def test_ssim_too_small():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(texture(size=10), texture(size=10))


# --- Lab ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rgb, lab",
    [
        ((1, 1, 1), (100.0, 0.0, 0.0)),
        ((0, 0, 0), (0.0, 0.0, 0.0)),
        ((1, 0, 0), (53.2408, 80.0925, 67.2032)),
        ((0, 1, 0), (87.7347, -86.1827, 83.1793)),
        ((0, 0, 1), (32.2970, 79.1875, -107.8602)),
        ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0)),
    ],
)
def test_lab_of_known_colours(rgb, lab):
    image = from_unit(torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1))
    assert rgb_to_lab(image).flatten().tolist() == pytest.approx(lab, abs=1e-3)


def test_lab_needs_rgb():
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_lab(texture(c=1))
    with pytest.raises(ValueError, match="RGB \\(3 channels\\) or gray \\(1\\)"):
        lab_histograms(texture(c=2))


def test_gray_images_have_only_lightness():
    gray = texture(c=1)
    histograms = lab_histograms(gray)
    assert list(histograms) == ["L"]
    assert torch.equal(histograms["L"], lab_histograms(gray.expand(-1, 3, -1, -1))["L"])


def test_lab_histograms_count_every_pixel_in_unit_bins():
    x = texture(n=2, size=8)
    histograms = lab_histograms(x)
    assert [axis.bins for axis in LAB_AXES] == [101, 257, 257]
    for counts in histograms.values():
        assert counts.sum().item() == 2 * 8 * 8
    white, black = torch.ones(1, 3, 2, 2), -torch.ones(1, 3, 2, 2)
    assert lab_histograms(white)["L"][100].item() == 4  # L = 100 in the last bin, centred on 100
    assert lab_histograms(black)["L"][0].item() == 4
    assert lab_histograms(white)["a"][128].item() == 4  # a = 0 in the middle of bin 128, not on an edge


def test_bins_centred_on_integers_keep_neutral_colours_together():
    axis = LAB_AXES[1]
    counts = axis.count(torch.tensor([-1e-6, 0.0, 1e-6, 0.49, -0.49, 0.51, -200.0, 200.0]))
    assert counts[128].item() == 5 and counts[129].item() == 1
    assert counts[0].item() == 1 and counts[-1].item() == 1  # beyond the range: the end bins


def test_histogram_intersection_by_hand():
    assert histogram_intersection(torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0, 1])) == 0.0  # disjoint
    assert histogram_intersection(torch.tensor([1, 1, 0]), torch.tensor([0, 1, 1])) == pytest.approx(0.5)
    # Normalised first: counts and probabilities of the same distributions agree.
    assert histogram_intersection(torch.tensor([2, 6, 2]), torch.tensor([0.5, 0.25, 0.25])) == pytest.approx(
        0.2 + 0.25 + 0.2
    )


def test_disjoint_colours_intersect_nowhere():
    red = from_unit(torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1).expand(1, 3, 4, 4))
    blue = from_unit(torch.tensor([0.0, 0, 1]).view(1, 3, 1, 1).expand(1, 3, 4, 4))
    r, b = lab_histograms(red), lab_histograms(blue)
    assert [histogram_intersection(r[c], b[c]) for c in "Lab"] == [0.0, 0.0, 0.0]


def test_histogram_intersection_errors():
    with pytest.raises(ValueError, match="same bins"):
        histogram_intersection(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="empty"):
        histogram_intersection(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="negative"):
        histogram_intersection(torch.tensor([1.0, -1.0, 1.0]), torch.ones(3))


# --- sharpness ----------------------------------------------------------------------------------


def blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def test_gradient_energy_of_a_ramp_by_hand():
    ramp = from_unit(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).view(1, 1, 1, 5).expand(1, 1, 4, 5))
    assert gradient_energy(ramp).item() == pytest.approx(0.25**2)  # dx = 0.25 everywhere, dy = 0
    assert gradient_energy(torch.zeros(1, 3, 4, 4)).item() == 0.0


def test_sharpness_of_lower_contrast_by_hand():
    target = texture(amplitude=0.5)
    assert relative_sharpness(0.5 * target, target).tolist() == pytest.approx([0.25, 0.25])  # energy scales as k^2


def test_blur_is_below_one_and_sharpening_above():
    target = blur(texture(amplitude=0.3))  # smooth enough to sharpen without leaving [-1, 1]
    sharpened = target + 1.5 * (target - blur(target))
    assert (relative_sharpness(blur(target), target) < 0.8).all()
    assert (relative_sharpness(sharpened, target) > 1.2).all()


def test_sharpness_of_a_flat_target():
    flat = torch.zeros(2, 3, 8, 8)
    assert relative_sharpness(flat, flat).tolist() == [1.0, 1.0]
    assert relative_sharpness(texture(size=8), flat).tolist() == [math.inf, math.inf]


# --- the image convention -----------------------------------------------------------------------


def test_images_outside_minus_one_to_one_are_refused():
    x = texture()
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\].*x / 127.5 - 1"):
        psnr(x * 255, x)
    with pytest.raises(ValueError, match="floating point"):
        l1_error(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        ssim(torch.full((1, 3, 16, 16), math.nan), torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        l1_error(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="same shape"):
        relative_sharpness(texture(c=3), texture(c=1))


def test_rounding_noise_at_the_range_ends_is_clamped():
    x = torch.full((1, 1, 2, 2), 1.0005)
    assert to_unit_range(x).max().item() == 1.0
    assert to_unit_range(x).dtype == torch.float64
