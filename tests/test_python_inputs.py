"""What Python users pass to a model: anything but a float batch in [-1, 1] is refused saying what to pass.

Both entries are covered: ``model.translate(x)`` (every check, values included) and ``model(x)``
(the training hot path: only the checks that cost nothing, type, dtype and shape).
"""

import numpy as np
import pytest
import torch
from PIL import Image

import imgtrans
from conftest import TINY_MODEL
from imgtrans.blocks import ResnetGenerator, UNetGenerator
from imgtrans.inference import translate, translate_image


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return imgtrans.build("pix2pix-facades", **TINY_MODEL).eval()


def good(n=1, size=32):
    return torch.rand(n, 3, size, size) * 2 - 1  # the seed (conftest) makes its range the same on every run


# (what a user passes, the error, a part of its message that says what to pass instead)
ANY_ENTRY = {
    "uint8 pixels": (lambda: (good() * 127.5 + 127.5).to(torch.uint8), TypeError,
        r"uint8 tensor \(pixels\?\): pass x.float\(\) / 127.5 - 1"),
    "int64": (lambda: torch.zeros(1, 3, 8, 8, dtype=torch.int64), TypeError, r"int64 tensor: pass x.float\(\)"),
    "bool": (lambda: torch.ones(1, 3, 8, 8, dtype=torch.bool), TypeError, r"bool tensor"),
    "float64": (lambda: good().double(), TypeError,
        r"got torch.float64 images but the model's weights are torch.float32: pass x.to\(torch.float32\)"),
    "empty batch": (lambda: torch.zeros(0, 3, 32, 32), ValueError, r"\(0, 3, 32, 32\): the batch is empty"),
    "zero-pixel height": (lambda: torch.zeros(1, 3, 0, 32), ValueError, r"\(1, 3, 0, 32\): the images have no pixels"),
    "zero-pixel width": (lambda: torch.zeros(2, 3, 16, 0), ValueError,
        r"the images have no pixels; pass at least one image"),
    "one image without a batch": (lambda: good()[0], ValueError,
        r"got \(3, 32, 32\): one image\? add the batch dimension, x\[None\]"),
    "numpy array": (lambda: np.zeros((32, 32, 3), np.uint8), TypeError,
        r"numpy array shaped \(32, 32, 3\): pass torch.from_numpy"),
    "PIL image": (lambda: Image.new("RGB", (32, 32)), TypeError,
        r"a PIL image: use imgtrans.translate_image\(model, image\)"),
    "list of images": (lambda: [good()[0], good()[0]], TypeError, r"a list of 2 items: .*torch.stack\(images\)"),
    "tuple of images": (lambda: (good()[0],), TypeError, r"a tuple of 1 item: stack"),
    "a string": (lambda: "photo.png", TypeError, r"takes a torch.Tensor .*; got str"),
}  # fmt: skip
VALUES = {
    "0-255 floats": (lambda: (good() + 1) * 127.5, r"span \[[0-9.]+, 2[0-9.]+\]: 0-255 pixels\? pass x / 127.5 - 1"),
    "[0, 2]: not pixels": (lambda: good() + 1, r"span \[\S+, (1.9\d*|2)\]: normalised with other statistics"),
    "ImageNet-normalised": (
        lambda: (good() * 0.5 + 0.5 - 0.45) / 0.225,
        r"span \[-2.*normalised with other statistics",
    ),
    "slightly above 1": (
        lambda: good().clamp(-1, 1).index_put_((torch.tensor(0),), torch.tensor(1.01)),
        r"span .*1.01",
    ),
    "slightly below -1": (lambda: torch.full((1, 3, 8, 8), -1.1), r"span \[-1.1, -1.1\]"),
}


@pytest.mark.parametrize("case", sorted(ANY_ENTRY))
def test_translate_refuses_what_is_not_a_batch_saying_what_to_pass(model, case):
    make, error, message = ANY_ENTRY[case]
    with pytest.raises(error, match=message):
        model.translate(make())
    with pytest.raises(error, match=message):  # the function, with a bare generator
        translate(model.generator, make())


@pytest.mark.parametrize("case", sorted(ANY_ENTRY))
def test_calling_the_model_refuses_the_same_with_the_same_words(model, case):
    make, error, message = ANY_ENTRY[case]
    with pytest.raises(error, match=message):
        model(make())


@pytest.mark.parametrize("make_generator", [lambda: UNetGenerator(base_channels=4, num_downs=5),
                                            lambda: ResnetGenerator(base_channels=4, n_blocks=1)])  # fmt: skip
@pytest.mark.parametrize("case", ["uint8 pixels", "empty batch", "zero-pixel width", "numpy array", "list of images"])
def test_bare_generators_refuse_them_too(make_generator, case):
    make, error, message = ANY_ENTRY[case]
    with pytest.raises(error, match=message):
        make_generator()(make())


@pytest.mark.parametrize("case", sorted(VALUES))
def test_values_outside_minus_one_one_are_refused_not_saturated(model, case):
    make, message = VALUES[case]
    with pytest.raises(ValueError, match=r"takes images in \[-1, 1\] \(pixel / 127.5 - 1\); these " + message):
        model.translate(make())


def test_the_edges_of_the_range_and_float_rounding_are_accepted(model):
    pixels = torch.tensor([0, 255], dtype=torch.float32).repeat(1, 3, 16, 8)
    assert model.translate(pixels / 127.5 - 1).shape == (1, 3, 16, 16)
    assert model.translate(torch.full((1, 3, 16, 16), 1 + 1e-6)).shape == (1, 3, 16, 16)


def test_a_model_in_float64_takes_float64_and_refuses_float32():
    double = imgtrans.build("pix2pix-facades", **TINY_MODEL).double().eval()
    assert double.translate(good().double()).dtype == torch.float64
    with pytest.raises(TypeError, match=r"got torch.float32 images but the model's weights are torch.float64"):
        double.translate(good())


def test_the_checks_on_the_training_path_cost_no_pass_over_the_values(model):
    # model(x) is the training hot path: it checks type, dtype and shape only, so values outside
    # [-1, 1] (e.g. a noise batch) still run there, while translate refuses them.
    x = torch.randn(1, 3, 32, 32) * 3
    assert model(x).shape == x.shape
    with pytest.raises(ValueError, match=r"takes images in \[-1, 1\]"):
        model.translate(x)


# ------------------------------------------------------------------------------ translate_image
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "I;16"])
def test_translate_image_takes_any_mode_and_returns_the_same_size(model, mode):
    image = Image.new("RGB", (45, 30), (200, 40, 90)).convert(mode)
    out = translate_image(model, image)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (45, 30)


def test_translate_image_equals_translate_on_the_same_pixels(model):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    expected = ((model.translate(x)[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(translate_image(model, image)), expected)


def test_translate_image_reads_a_file_and_is_exported(model, tmp_path):
    Image.new("RGB", (20, 36), "blue").save(tmp_path / "a.png")
    assert imgtrans.translate_image is translate_image
    assert translate_image(model, tmp_path / "a.png").size == (20, 36)
    assert translate_image(model, str(tmp_path / "a.png")).size == (20, 36)


def test_translate_image_tiles_large_images(model):
    image = Image.new("RGB", (150, 70), (10, 200, 30))
    tiled = translate_image(model, image, tile=64, overlap=16)
    assert tiled.size == (150, 70)


def test_translate_image_refuses_tensors_and_numpy_saying_what_to_use(model):
    for wrong in (good(), np.zeros((8, 8, 3), np.uint8)):
        with pytest.raises(
            TypeError, match=r"takes a PIL image or an image file's path; got .*imgtrans.inference.translate"
        ):
            translate_image(model, wrong)


# ---------------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("num_downs, size, needed", [(12, (1, 1), 1024), (11, (8, 300), 512), (12, (600, 2048), 1024)])
def test_padding_a_small_image_to_thousands_of_pixels_is_refused_with_the_size_needed(num_downs, size, needed):
    g = UNetGenerator(base_channels=1, num_downs=num_downs).eval()
    side = 2**num_downs
    with pytest.raises(ValueError, match=(
        rf"UNetGenerator pads image sides to multiples of {side}: this {size[1]}x{size[0]} image would be computed "
        rf"at \d+x\d+, [\d,]+ times its pixels. Give images whose sides are at least {needed} pixels, or build it "
        r"with a smaller num_downs"
    )):  # fmt: skip
        g(torch.zeros(1, 3, *size))


def test_padding_within_the_limits_runs():
    from imgtrans.blocks.pad import FREE_SIDE, MAX_GROWTH, pad_to_multiple

    # up to FREE_SIDE pixels, any growth: a 1x1 image on the paper's 8-level U-Net (256x256)
    padded, _ = pad_to_multiple(torch.zeros(1, 1, 1, 1), 256)
    assert padded.shape[-2:] == (256, 256)
    padded, _ = pad_to_multiple(torch.zeros(1, 1, 1, 3), FREE_SIDE)
    assert padded.shape[-2:] == (FREE_SIDE, FREE_SIDE)
    # beyond, at most MAX_GROWTH times a side: exactly at the limit runs, one pixel less does not
    side = 2 * FREE_SIDE // MAX_GROWTH
    padded, _ = pad_to_multiple(torch.zeros(1, 1, side, side), 2 * FREE_SIDE)
    assert padded.shape[-2:] == (2 * FREE_SIDE, 2 * FREE_SIDE)
    with pytest.raises(ValueError, match=rf"at least {side} pixels"):
        pad_to_multiple(torch.zeros(1, 1, side - 1, side), 2 * FREE_SIDE, owner="net")


def test_reflection_beyond_what_a_side_allows_replicates_instead():
    # F.pad refuses reflection wider than the side; the padding falls back to replication.
    from imgtrans.blocks.pad import crop_padding, pad_to_multiple

    for shape in [(1, 1, 1, 1), (1, 1, 2, 30), (1, 1, 3, 3)]:
        x = torch.rand(*shape)
        padded, pad = pad_to_multiple(x, 32)
        assert padded.shape[-2:] == (32, 32) and torch.equal(crop_padding(padded, pad), x)
