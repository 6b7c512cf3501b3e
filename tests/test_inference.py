import pytest
import torch

import imgtrans
from imgtrans.deploy.fusion import compile_for_inference
from imgtrans.inference import blend_window, translate, translate_tiled


def test_blend_window_ramps_to_one_inside():
    w = blend_window(16, 4)
    assert w.shape == (16, 16) and w.min() > 0 and w.max() == 1
    assert torch.equal(w, w.t()) and w[8, 8] == 1 and w[0, 8] == 0.25


def test_tiles_reproduce_a_pointwise_function_exactly():
    x = torch.randn(1, 3, 300, 170)
    out = translate_tiled(lambda t: torch.tanh(2 * t), x, tile=64, overlap=16, batch_size=3)
    torch.testing.assert_close(out, torch.tanh(2 * x), rtol=0, atol=1e-6)


def test_tiles_of_a_convolutional_network_match_the_whole_image_and_blending_hides_the_seams():
    # A network whose receptive field (5 px) is well inside the overlap, with outputs that vary (std ~0.4):
    # an untrained U-Net's outputs hardly vary (std 0.005), so any tiling, even a constant, was "close".
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 3, 3, padding=1, padding_mode="reflect"), torch.nn.Tanh())  # fmt: skip
    with torch.no_grad():
        net[2].weight.mul_(3)
        x = torch.rand(1, 3, 150, 200) * 2 - 1
        whole = net(x)
        tiled = translate_tiled(net, x, tile=96, overlap=32)
        seamed = translate_tiled(net, x, tile=96, overlap=0)  # tiles side by side, no blending
    assert tiled.shape == whole.shape and whole.std() > 0.3
    # Away from the image's own 2-pixel border (extending the input by reflection is not each layer's padding):
    inside = (..., slice(2, -2), slice(2, -2))
    assert (tiled - whole)[inside].abs().max() < 0.1  # a tile border weighs 1/33 beside its neighbour's inside
    assert (seamed - whole)[inside].abs().max() > 0.5  # without blending the tile borders show


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


def test_compiled_inference_is_exact_for_batch_norm_after_a_transposed_convolution_of_one_pixel():
    # The U-Net's innermost decoder layer: inductor's freezing folded this BatchNorm wrongly (5% off).
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.ConvTranspose2d(64, 64, 4, 2, 1, bias=False),
                                torch.nn.BatchNorm2d(64)).eval()  # fmt: skip
    norm = layer[2]
    with torch.no_grad():
        norm.running_mean.normal_(0, 1), norm.running_var.uniform_(0.5, 2)
        norm.weight.normal_(1, 0.2), norm.bias.normal_(0, 0.2)
    x = torch.randn(2, 64, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(compile_for_inference(layer)(x), layer(x), rtol=1e-5, atol=1e-5)


def tiny_generator() -> torch.nn.Module:
    """A 5-level U-Net with BatchNorm and dropout, BatchNorm statistics far from (0, 1)."""
    g = imgtrans.build("unet128", base_channels=4, num_downs=5)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2)
    return g


def test_paper_mode_gives_each_image_what_it_gets_alone():
    # The paper evaluates one image at a time: a batch must not share BatchNorm statistics.
    g = tiny_generator()
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    torch.manual_seed(5)
    batched = translate(g, x, paper_test_mode=True)
    torch.manual_seed(5)
    alone = torch.cat([translate(g, x[i : i + 1], paper_test_mode=True) for i in range(4)])
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    # with a seed per image, the result does not depend on the batching at all
    seeded = translate(g, x, paper_test_mode=True, seeds=[10, 11, 12, 13])
    pairs = [translate(g, x[i : i + 2], paper_test_mode=True, seeds=[10 + i, 11 + i]) for i in (0, 2)]
    torch.testing.assert_close(seeded, torch.cat(pairs), rtol=0, atol=1e-5)


def test_paper_mode_evaluation_does_not_depend_on_the_batch_size(tmp_path):
    from imgtrans.data import SyntheticFacades
    from imgtrans.metrics.scoring import evaluate_model

    g, data = tiny_generator(), SyntheticFacades(4, 32, seed=3)
    scores = [
        evaluate_model(g, data, tmp_path / str(b), modes=["paper"], batch_size=b)["modes"]["paper"]["summary"]["mean"]
        for b in (1, 3)
    ]
    for key in scores[0]:
        assert scores[0][key] == pytest.approx(scores[1][key], abs=1e-5), key


def test_non_finite_inputs_are_refused_naming_the_image():
    g = tiny_generator()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    x[1, 0, 5, 5] = float("nan")
    x[2, 2, 0, 0] = float("inf")
    for paper in (False, True):
        with pytest.raises(ValueError, match=r"input image\(s\) \[1, 2\] of the batch hold NaN or inf"):
            translate(g, x, paper_test_mode=paper)


def test_weights_that_cannot_give_an_image_are_refused():
    from imgtrans.deploy.translators import TorchTranslator

    g = tiny_generator()
    g.encoder[1].conv.weight.data[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"weight encoder.1.conv.weight holds 1 NaN or inf"):
        TorchTranslator(g)
    g = tiny_generator()
    g.encoder[1].norm.running_var = torch.ones(8, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"encoder.1.norm.running_var is torch.int64, not floating point"):
        TorchTranslator(g)
    g = tiny_generator()
    g.encoder[1].norm.running_var[3] = -1
    with pytest.raises(ValueError, match=r"negative variances"):
        TorchTranslator(g)


def test_non_finite_outputs_are_an_error_not_a_black_image():
    from imgtrans.deploy.translators import NonFiniteOutputError, TorchTranslator

    g = tiny_generator()
    with torch.no_grad():
        for layer in g.encoder:
            layer.conv.weight.mul_(1e12)  # finite weights whose activations overflow float32
    translator = TorchTranslator(g)
    with pytest.raises(NonFiniteOutputError, match=r"torch fp32 output for image\(s\) \[0, 1\].*likely cause"):
        translator(torch.rand(2, 3, 32, 32) * 2 - 1)


def test_tiles_stream_into_pixels_as_whole_images_are_saved():
    x = torch.randint(0, 256, (1, 3, 150, 230), dtype=torch.uint8)
    def fn(t):
        return torch.tanh(2 * t)

    pixels = translate_tiled(fn, x, tile=64, overlap=16, batch_size=3, dtype=torch.uint8)
    expected = ((fn(x.float() / 127.5 - 1).clamp(-1, 1) + 1) * 127.5).round()
    assert pixels.dtype == torch.uint8 and torch.equal(pixels.float(), expected)


def test_tiles_are_cut_one_batch_at_a_time():
    sizes = []

    def fn(t):
        sizes.append(tuple(t.shape))
        return t

    x = torch.rand(1, 3, 200, 300) * 2 - 1
    out = translate_tiled(fn, x, tile=64, overlap=16, batch_size=2)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)
    assert max(s[0] for s in sizes) == 2 and all(s[1:] == (3, 64, 64) for s in sizes)
