"""Unpaired data (the CycleGAN layout): sampling as the reference, one-line errors, and CycleGAN's zip datasets."""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from imgtrans.data import SyntheticFacades, UnpairedImageDataset, write_unpaired_folder
from imgtrans.data import downloads as datasets
from imgtrans.data.downloads import UnsafeArchiveError, download_dataset, resolve_data
from imgtrans.data.unpaired import domain_folders

from dataset_fixtures import range_server  # noqa: F401
from zoo_fixtures import hub_settings, zoo_env  # noqa: F401


@pytest.fixture
def folder(tmp_path) -> Path:
    write_unpaired_folder(SyntheticFacades(7, 20, seed=0), tmp_path / "d")  # 4 images of A, 3 of B
    return write_unpaired_folder(SyntheticFacades(4, 20, seed=1), tmp_path / "d", split="test")


def test_an_epoch_is_the_larger_domain_and_every_a_is_seen(folder):
    data = UnpairedImageDataset(folder, load_size=None, crop_size=None)
    assert (len(data.a_files), len(data.b_files), len(data)) == (4, 3, 4)
    assert [data[i]["name"] for i in range(4)] == [p.name for p in data.a_files]
    swapped = UnpairedImageDataset(folder, load_size=None, crop_size=None)
    swapped.a_files, swapped.b_files = data.b_files, data.a_files
    assert len(swapped) == 4 and [swapped[i]["name"] for i in range(4)] == [data.b_files[i % 3].name for i in range(4)]


def test_b_is_drawn_per_item_and_epoch_reproducibly_or_in_order_with_serial(folder):
    data = UnpairedImageDataset(folder, load_size=24, crop_size=20, seed=3)
    again = UnpairedImageDataset(folder, load_size=24, crop_size=20, seed=3)
    drawn = []
    for epoch in range(6):
        data.set_epoch(epoch), again.set_epoch(epoch)
        for i in range(len(data)):
            x, y = data[i], again[i]
            assert x["target_name"] == y["target_name"] and torch.equal(x["target"], y["target"])
            drawn.append(x["target_name"])
    assert len(set(drawn)) == 3  # every image of B is drawn, not always the same
    serial = UnpairedImageDataset(folder, load_size=None, crop_size=None, serial=True)
    assert [serial[i]["target_name"] for i in range(4)] == [serial.b_files[i % 3].name for i in range(4)]
    test = UnpairedImageDataset(folder, split="test", train=False, load_size=None, crop_size=None)
    assert test.a_dir.name == "testA" and test.serial  # evaluation reads B in order


def test_a_and_b_get_their_own_crops_and_flips(folder):
    data = UnpairedImageDataset(folder, load_size=40, crop_size=20, seed=0)
    plain = UnpairedImageDataset(folder, load_size=40, crop_size=None, train=False)
    item, whole = data[0], plain[0]["input"]
    assert item["input"].shape == item["target"].shape == (3, 20, 20)
    windows = [whole[:, y : y + 20, x : x + 20] for y in range(21) for x in range(21)]
    assert any(torch.equal(item["input"], w) or torch.equal(item["input"], w.flip(-1)) for w in windows)


def test_the_split_may_be_named_in_the_path_and_a_b_folders_work(folder, tmp_path):
    assert domain_folders(folder / "train") == (folder / "trainA", folder / "trainB")
    assert domain_folders(folder, "test") == (folder / "testA", folder / "testB")
    (tmp_path / "ab" / "A").mkdir(parents=True)
    (tmp_path / "ab" / "B").mkdir()
    assert domain_folders(tmp_path / "ab") == (tmp_path / "ab" / "A", tmp_path / "ab" / "B")


def test_missing_and_empty_folders_are_one_line_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no unpaired images at .*: expected folders trainA/ and trainB/"):
        UnpairedImageDataset(tmp_path)
    (tmp_path / "half" / "trainA").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"trainA has no partner folder .*trainB: unpaired data needs both"):
        UnpairedImageDataset(tmp_path / "half")
    (tmp_path / "half" / "trainB").mkdir()
    (tmp_path / "half" / "trainA" / "x.png").write_bytes((folder / "trainA" / "1.png").read_bytes())
    with pytest.raises(ValueError, match=r"no images in .*trainB \("):
        UnpairedImageDataset(tmp_path / "half")
    with pytest.raises(FileNotFoundError, match="no dataset folder at"):
        UnpairedImageDataset(tmp_path / "nowhere" / "deeper")
    with pytest.raises(ValueError, match=r"smaller than the 64x64 crop"):
        UnpairedImageDataset(folder, load_size=None, crop_size=64)[0]


def zip_of(folder: Path, name: str, extra: dict[str, bytes] | None = None, link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:  # deflated: a bomb is small to download
        zf.writestr(f"{name}/", b"")
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{name}/{path.relative_to(folder)}")
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.fixture
def served(zoo_env, range_server, folder, monkeypatch):
    """horse2zebra.zip (the small folder) on 127.0.0.1 as the mirror, with a catalogue entry sized for it."""
    range_server.files["cyclegan/horse2zebra.zip"] = zip_of(folder, "horse2zebra")
    monkeypatch.setenv("IMGTRANS_DATASETS_URL", range_server.url)
    hub_settings(monkeypatch, timeout=5)
    entry = replace(datasets.DATASETS["horse2zebra"], size="1 MB", splits=("trainA (4)", "trainB (3)"), unlisted_images=8)
    monkeypatch.setitem(datasets.DATASETS, "horse2zebra", entry)
    return range_server


def test_a_cyclegan_zip_downloads_extracts_and_resolves_by_name(served, zoo_env):
    entry = datasets.DATASETS["horse2zebra"]
    assert entry.url == f"{served.url}/cyclegan/horse2zebra.zip" and entry.layout == "unpaired"
    folder = download_dataset("horse2zebra")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["testA", "testB", "trainA", "trainB"]
    assert resolve_data("horse2zebra") == folder / "train"
    assert len(UnpairedImageDataset(resolve_data("horse2zebra"), load_size=None, crop_size=None)) == 4
    assert UnpairedImageDataset(resolve_data("horse2zebra/test"), load_size=None, crop_size=None).a_dir == folder / "testA"
    with pytest.raises(FileNotFoundError, match="has no split 'val' \\(valA/\\); it has test, train"):
        resolve_data("horse2zebra/val")


def test_the_reference_addresses_and_the_name_beside_pix2pix_s(monkeypatch):
    monkeypatch.delenv("IMGTRANS_DATASETS_URL", raising=False)
    assert datasets.DATASETS["horse2zebra"].url == "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"
    unpaired = datasets.DATASETS["facades-unpaired"]
    assert unpaired.url.endswith("/cyclegan/datasets/facades.zip") and unpaired.root == "facades"
    assert datasets.DATASETS["facades"].url.endswith("/pix2pix/datasets/facades.tar.gz")
    names = {"apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo", "ukiyoe2photo",
             "vangogh2photo", "maps-unpaired", "cityscapes-unpaired", "facades-unpaired", "iphone2dslr_flower"}  # fmt: skip
    assert names <= set(datasets.DATASETS) and not datasets.DATASETS["cityscapes-unpaired"].downloadable


@pytest.mark.parametrize(
    "extra, link, message",
    [
        ({"horse2zebra/../escape.png": b"x"}, None, "climbs out of the target folder"),
        ({"elsewhere/x.png": b"x"}, None, "is not inside horse2zebra/"),
        ({}, "horse2zebra/trainA/link.png", "is a link"),
        ({"horse2zebra/trainA/big.png": b"\0" * (5 * 2**20)}, None, "expands to more than"),
    ],
    ids=["dotdot", "outside", "symlink", "bomb"],
)
def test_unsafe_zips_are_refused_before_anything_is_written(served, zoo_env, folder, extra, link, message):
    served.files["cyclegan/horse2zebra.zip"] = zip_of(folder, "horse2zebra", extra, link)
    with pytest.raises(UnsafeArchiveError, match=message):
        download_dataset("horse2zebra")
    base = zoo_env / "imgtrans" / "datasets"
    assert not (base / "horse2zebra").exists() and not (base / "escape.png").exists()
    assert not list(base.glob(".horse2zebra.extracting-*"))
