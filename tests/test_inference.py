import pytest
import torch

import imgtrans
from imgtrans.inference import blend_window, compile_for_inference, translate, translate_tiled


def test_blend_window_ramps_to_one_inside():
    w = blend_window(16, 4)
    assert w.shape == (16, 16) and w.min() > 0 and w.max() == 1
    assert torch.equal(w, w.t()) and w[8, 8] == 1 and w[0, 8] == 0.25


def test_tiles_reproduce_a_pointwise_function_exactly():
    x = torch.randn(1, 3, 300, 170)
    out = translate_tiled(lambda t: torch.tanh(2 * t), x, tile=64, overlap=16, batch_size=3)
    torch.testing.assert_close(out, torch.tanh(2 * x), rtol=0, atol=1e-6)


def test_tiles_of_a_unet_match_the_whole_image_closely():
    g = imgtrans.build("unet128", base_channels=4, num_downs=5).eval()
    x = torch.rand(1, 3, 150, 200) * 2 - 1
    whole = translate(g, x)
    tiled = translate_tiled(lambda t: translate(g, t), x, tile=96, overlap=32)
    assert tiled.shape == whole.shape and (tiled - whole).abs().mean() < 0.01


def test_tiling_arguments_are_checked():
    with pytest.raises(ValueError, match="one image shaped"):
        translate_tiled(lambda t: t, torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="overlap must be in"):
        translate_tiled(lambda t: t, torch.zeros(1, 3, 8, 8), tile=8, overlap=8)


def test_compiled_inference_matches_eager():
    g = imgtrans.build("unet128", base_channels=4, num_downs=5).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    compiled = compile_for_inference(g)
    torch.testing.assert_close(compiled(x), translate(g, x), rtol=1e-4, atol=1e-4)
