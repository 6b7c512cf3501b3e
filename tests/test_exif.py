"""EXIF orientation is applied wherever an image is read: training data, translate, eval, the app.

A phone stores a portrait photo as landscape pixels plus "rotate 90" in EXIF (orientation 6).
Each reader must see the picture its user sees: so each test compares reading such a JPEG with
reading a PNG of the same upright pixels (which has no EXIF), and the two must agree exactly.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import imgtrans
from conftest import TINY_MODEL
from imgtrans.cli import main
from imgtrans.images import image_size, read_image, upright

ROTATE_90 = 6  # EXIF orientation: the viewer turns the stored pixels 90 degrees clockwise


def upright_ab(w: int = 64, h: int = 32) -> Image.Image:
    """An AB pair as the user sees it: A red-ish on the left, B blue-ish on the right, with a gradient."""
    rng = np.random.default_rng(0)
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2] = (220, 30, 30)
    image[:, w // 2 :] = (30, 30, 220)
    image[: h // 4, :, 1] = 200  # a band at the top: a turn or a mirror moves it
    return Image.fromarray(np.clip(image.astype(int) + rng.integers(-5, 6, image.shape), 0, 255).astype(np.uint8))


def save_rotated_jpeg(picture: Image.Image, path):
    """``picture`` stored as a camera would: pixels turned back a quarter, EXIF saying to turn them."""
    exif = Image.Exif()
    exif[0x0112] = ROTATE_90
    picture.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    return path


def save_as_seen(jpeg, png):
    """The JPEG's decoded pixels, upright as a viewer shows them, in a PNG without EXIF."""
    with Image.open(jpeg) as image:
        ImageOps.exif_transpose(image).save(png)
    return png


@pytest.fixture
def folders(tmp_path):
    """``jpeg/`` with rotated JPEG AB pairs, ``png/`` with the same pictures upright."""
    (tmp_path / "jpeg").mkdir(), (tmp_path / "png").mkdir()
    for i in range(2):
        jpeg = save_rotated_jpeg(upright_ab(64 + 8 * i, 32 + 4 * i), tmp_path / "jpeg" / f"{i}.jpg")
        save_as_seen(jpeg, tmp_path / "png" / f"{i}.png")
    return tmp_path


def test_the_test_files_are_stored_turned(folders):
    # Without the orientation the stored pixels are portrait: a reader that ignores EXIF gets another picture.
    with Image.open(folders / "jpeg" / "0.jpg") as raw:
        assert raw.size == (32, 64) and raw.getexif()[0x0112] == ROTATE_90
    assert Image.open(folders / "png" / "0.png").size == (64, 32)


def test_read_image_and_image_size_give_the_picture_viewers_show(folders):
    for channels in (1, 3, 4):
        seen, expected = (
            read_image(folders / "jpeg" / "0.jpg", channels),
            read_image(folders / "png" / "0.png", channels),
        )
        assert seen.size == (64, 32) and np.array_equal(np.asarray(seen), np.asarray(expected))
    assert image_size(folders / "jpeg" / "0.jpg") == (64, 32)
    # the top band is at the top, the red half on the left
    pixels = np.asarray(read_image(folders / "jpeg" / "0.jpg", 3)).astype(int)
    assert pixels[:4, :, 1].mean() > 150 and pixels[-4:, :, 1].mean() < 60
    assert pixels[:, :8, 0].mean() > 180 and pixels[:, -8:, 2].mean() > 180


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_is_applied_as_pillow_defines_it(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright_ab().save(tmp_path / "o.png", exif=exif)  # PNG carries EXIF too; lossless, so exact
    with Image.open(tmp_path / "o.png") as image:
        expected = np.asarray(ImageOps.exif_transpose(image))
    seen = read_image(tmp_path / "o.png", 3)
    assert np.array_equal(np.asarray(seen), expected) and image_size(tmp_path / "o.png") == seen.size
    plain = Image.new("RGB", (3, 2))
    assert upright(plain) is plain  # no orientation: the same image, not a copy


def test_training_data_reads_the_turned_pairs_as_shown(folders):
    from imgtrans.data import PairedImageDataset

    kwargs = dict(direction="AtoB", load_size=None, crop_size=None, train=False)
    seen, expected = PairedImageDataset(folders / "jpeg", **kwargs), PairedImageDataset(folders / "png", **kwargs)
    for i in range(2):
        a, b = seen[i], expected[i]
        assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
    assert seen[0]["input"].shape == (3, 32, 32)  # a 64x32 pair, not a 32x64 file refused as "not a pair"
    # and with augmentation: the same crops of the same picture
    kwargs = dict(direction="BtoA", load_size=40, crop_size=32, train=True, seed=3)
    a, b = PairedImageDataset(folders / "jpeg", **kwargs)[1], PairedImageDataset(folders / "png", **kwargs)[1]
    assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    return imgtrans.save_pretrained(imgtrans.build("pix2pix-facades", **TINY_MODEL).eval(), tmp_path / "model")


def test_translate_writes_the_picture_as_shown(folders, model_dir):
    for kind, suffix in (("jpeg", "jpg"), ("png", "png")):
        assert (
            main(
                ["translate", str(model_dir), str(folders / kind / f"0.{suffix}"), "--out", str(folders / f"t-{kind}")]
            )
            == 0
        )
    seen, expected = Image.open(folders / "t-jpeg" / "0.png"), Image.open(folders / "t-png" / "0.png")
    assert seen.size == (64, 32) and np.array_equal(np.asarray(seen), np.asarray(expected))
    # the half of an AB pair too: the split is taken from the upright picture
    for kind, suffix in (("jpeg", "jpg"), ("png", "png")):
        argv = [
            "translate",
            str(model_dir),
            str(folders / kind / f"1.{suffix}"),
            "--split",
            "left",
            "--out",
            str(folders / f"s-{kind}"),
        ]
        assert main(argv) == 0
    seen, expected = Image.open(folders / "s-jpeg" / "1.png"), Image.open(folders / "s-png" / "1.png")
    assert seen.size == (36, 36) and np.array_equal(np.asarray(seen), np.asarray(expected))


def test_eval_scores_the_picture_as_shown(folders, model_dir):
    scores = {}
    for kind in ("jpeg", "png"):
        out = folders / f"eval-{kind}"
        argv = [
            "eval",
            str(model_dir),
            "--data",
            str(folders / kind),
            "--out",
            str(out),
            "--modes",
            "eval",
            "--batch-size",
            "1",
        ]
        assert main(argv) == 0
        scores[kind] = json.loads((out / "metrics.json").read_text())["modes"]["eval"]["summary"]["mean"]
    assert scores["jpeg"] == scores["png"]


def test_the_app_decodes_uploads_as_the_browser_shows_them(folders):
    from imgtrans.app.server import decode_upload

    seen = decode_upload((folders / "jpeg" / "0.jpg").read_bytes())
    with Image.open(folders / "png" / "0.png") as expected:
        assert seen.size == (64, 32) and np.array_equal(np.asarray(seen.convert("RGB")), np.asarray(expected))


def test_translate_image_takes_the_picture_as_shown(folders, model_dir):
    model = imgtrans.load(model_dir)
    with Image.open(folders / "jpeg" / "0.jpg") as turned, Image.open(folders / "png" / "0.png") as plain:
        seen, expected = imgtrans.translate_image(model, turned), imgtrans.translate_image(model, plain)
    assert seen.size == (64, 32) and np.array_equal(np.asarray(seen), np.asarray(expected))
