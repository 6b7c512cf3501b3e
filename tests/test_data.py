import numpy as np
import pytest
import torch
from PIL import Image

from imgtrans.data import PairedImageDataset, SyntheticFacades, write_ab_folder


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def gradient(h, w, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)


@pytest.fixture
def ab_folder(tmp_path):
    for i in range(3):
        a, b = gradient(40, 40, seed=i), gradient(40, 40, seed=100 + i)
        save(tmp_path / "ab" / f"{i}.png", np.concatenate([a, b], axis=1))
    return tmp_path / "ab"


def test_ab_layout_and_direction(ab_folder):
    a_to_b = PairedImageDataset(ab_folder, "AtoB", load_size=None, crop_size=None, train=False)
    b_to_a = PairedImageDataset(ab_folder, "BtoA", load_size=None, crop_size=None, train=False)
    item, swapped = a_to_b[1], b_to_a[1]
    expected_a = torch.from_numpy(gradient(40, 40, seed=1)).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(item["input"], expected_a)
    torch.testing.assert_close(swapped["target"], expected_a)
    torch.testing.assert_close(swapped["input"], item["target"])
    assert item["name"] == "1.png" and len(a_to_b) == 3


def test_folder_layout_matches_names_across_extensions(tmp_path):
    for name in ("x", "y"):
        save(tmp_path / "A" / f"{name}.png", gradient(20, 30))
        save(tmp_path / "B" / f"{name}.jpg", gradient(20, 30, seed=5))
    data = PairedImageDataset(tmp_path, load_size=None, crop_size=None, train=False)
    assert len(data) == 2 and data[0]["input"].shape == (3, 20, 30)


@pytest.mark.parametrize("in_ch, out_ch", [(1, 3), (3, 1), (4, 3), (3, 4)])
def test_channel_counts_follow_the_model(tmp_path, in_ch, out_ch):
    save(tmp_path / "A" / "a.png", gradient(16, 16, 4))  # RGBA
    save(tmp_path / "B" / "a.png", gradient(16, 16, 1))  # grayscale
    data = PairedImageDataset(tmp_path, in_channels=in_ch, out_channels=out_ch, load_size=None, crop_size=None)
    assert data[0]["input"].shape[0] == in_ch and data[0]["target"].shape[0] == out_ch


def test_augmentation_is_identical_for_both_images(tmp_path):
    """Target = input mirrored in colour; crop, resize and flip must keep that relation."""
    for i in range(4):
        a = gradient(64, 64, seed=i)
        save(tmp_path / "A" / f"{i}.png", a)
        save(tmp_path / "B" / f"{i}.png", 255 - a)
    data = PairedImageDataset(tmp_path, load_size=48, crop_size=32, seed=3)
    for epoch in range(6):
        data.set_epoch(epoch)
        for i in range(4):
            item = data[i]
            assert item["input"].shape == (3, 32, 32)
            # equal up to uint8 rounding of the bicubic resize; a misaligned crop or flip of
            # random pixels would differ by about 0.67 on average
            assert (item["target"] + item["input"]).abs().mean() < 0.01


def test_augmentation_depends_on_seed_epoch_and_index_only(ab_folder):
    data = PairedImageDataset(ab_folder, load_size=40, crop_size=24, seed=7)
    data.set_epoch(2)
    first = data[0]["input"]
    data.set_epoch(3)
    other_epoch = data[0]["input"]
    data.set_epoch(2)
    assert torch.equal(first, data[0]["input"])
    assert not torch.equal(first, other_epoch)
    again = PairedImageDataset(ab_folder, load_size=40, crop_size=24, seed=7)
    again.set_epoch(2)
    assert torch.equal(first, again[0]["input"])


def test_mirroring_happens_about_half_the_time(tmp_path):
    save(tmp_path / "A" / "a.png", gradient(8, 8))
    save(tmp_path / "B" / "a.png", gradient(8, 8))
    data = PairedImageDataset(tmp_path, load_size=None, crop_size=None)
    plain = PairedImageDataset(tmp_path, load_size=None, crop_size=None, train=False)[0]["input"]
    flipped = 0
    for epoch in range(200):
        data.set_epoch(epoch)
        flipped += torch.equal(data[0]["input"], plain.flip(-1))
    assert 70 < flipped < 130


def test_evaluation_mode_centre_crops_without_flip(ab_folder):
    data = PairedImageDataset(ab_folder, load_size=None, crop_size=20, train=False)
    full = PairedImageDataset(ab_folder, load_size=None, crop_size=None, train=False)
    torch.testing.assert_close(data[0]["input"], full[0]["input"][:, 10:30, 10:30])


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=r"no images in .*A and B side by side"):
        PairedImageDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no dataset folder"):
        PairedImageDataset(tmp_path / "missing")


def test_unmatched_names(tmp_path):
    save(tmp_path / "A" / "one.png", gradient(8, 8))
    save(tmp_path / "B" / "two.png", gradient(8, 8))
    with pytest.raises(ValueError, match=r"2 file\(s\) .* no partner .* one, two"):
        PairedImageDataset(tmp_path)


def test_truncated_and_unreadable_images_are_named(tmp_path):
    path = save(tmp_path / "ab" / "cut.jpg", gradient(64, 128))
    path.write_bytes(path.read_bytes()[:200])
    (tmp_path / "ab" / "text.png").write_text("not an image")
    data = PairedImageDataset(tmp_path / "ab", load_size=None, crop_size=None)
    for i in range(2):
        with pytest.raises(ValueError, match=r"cannot read image .*(cut.jpg|text.png).*truncated or not an image"):
            data[i]


def test_images_smaller_than_the_crop(tmp_path):
    save(tmp_path / "ab" / "small.png", gradient(20, 40))
    data = PairedImageDataset(tmp_path / "ab", load_size=None, crop_size=32)
    with pytest.raises(ValueError, match=r"small.png gives 20x20 images, smaller than the 32x32 crop"):
        data[0]
    with pytest.raises(ValueError, match="crop_size .* cannot exceed load_size"):
        PairedImageDataset(tmp_path / "ab", load_size=16, crop_size=32)


def test_pair_size_mismatch(tmp_path):
    save(tmp_path / "A" / "a.png", gradient(8, 8))
    save(tmp_path / "B" / "a.png", gradient(9, 8))
    with pytest.raises(ValueError, match="must have the same size"):
        PairedImageDataset(tmp_path, load_size=None, crop_size=None)[0]


def test_synthetic_facades_are_deterministic_and_learnable_pairs():
    a, b, c = SyntheticFacades(4, 64, seed=0), SyntheticFacades(4, 64, seed=0), SyntheticFacades(4, 64, seed=1)
    assert torch.equal(a[2]["input"], b[2]["input"]) and torch.equal(a[2]["target"], b[2]["target"])
    assert not torch.equal(a[2]["input"], c[2]["input"])
    item = a[0]
    assert item["input"].shape == item["target"].shape == (3, 64, 64)
    assert item["input"].min() >= -1 and item["target"].max() <= 1
    with pytest.raises(IndexError):
        a[4]


def test_synthetic_written_as_ab_files_reads_back_with_btoa(tmp_path):
    data = SyntheticFacades(3, 32, seed=0)
    folder = write_ab_folder(data, tmp_path / "synth")
    back = PairedImageDataset(folder, "BtoA", load_size=None, crop_size=None, train=False)
    assert len(back) == 3
    torch.testing.assert_close(back[0]["input"], data[0]["input"], atol=1 / 127.5, rtol=0)
    torch.testing.assert_close(back[0]["target"], data[0]["target"], atol=1 / 127.5, rtol=0)
