"""CycleGAN's datasets in the catalogue: sizes from the archives' real lengths, and ae_photos with the same safety."""

from __future__ import annotations

import io
import zipfile

import pytest

from imgtrans.data import SyntheticFacades, write_unpaired_folder
from imgtrans.data import downloads as datasets
from imgtrans.data.downloads import ArchiveTooLargeError, UnsafeArchiveError, download_dataset, resolve_data

from dataset_fixtures import range_server  # noqa: F401
from test_unpaired import zip_of
from zoo_fixtures import hub_settings, zoo_env  # noqa: F401

# The archives' lengths in bytes, as TensorFlow Datasets recorded them from the reference's server
# (tensorflow_datasets/url_checksums/cycle_gan.txt); the catalogue must bound each closely, not generously.
LENGTHS = {
    "apple2orange": 78456409, "cezanne2photo": 279885071, "cityscapes-unpaired": 279601602,
    "facades-unpaired": 35135868, "horse2zebra": 116867962, "iphone2dslr_flower": 339964458,
    "maps-unpaired": 1476754427, "monet2photo": 305231073, "summer2winter_yosemite": 132640856,
    "ukiyoe2photo": 292946532, "vangogh2photo": 306590349,
}  # fmt: skip


def test_every_cyclegan_size_is_its_archive_s_length_and_bounds_it_closely():
    unpaired = {name for name, entry in datasets.DATASETS.items() if entry.layout == "unpaired"}
    assert unpaired == {*LENGTHS, "ae_photos"}  # a new entry needs its length here
    for name, length in LENGTHS.items():
        entry = datasets.DATASETS[name]
        assert abs(entry.archive_bytes - length) <= 0.005 * length, (name, entry.size)  # three figures
        assert length < entry.max_download < 1.6 * length, name  # the real file passes; twice it does not
        assert length < entry.bounds.expanded  # its images expand to about its length


def test_ae_photos_is_the_reference_s_and_bounded_by_the_listing(monkeypatch):
    monkeypatch.delenv("IMGTRANS_DATASETS_URL", raising=False)
    entry = datasets.DATASETS["ae_photos"]
    assert entry.url == "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/ae_photos.zip" and entry.downloadable
    assert entry.root == "ae_photos" and entry.splits == ("testA",)
    assert 10 * 2**20 < entry.archive_bytes < entry.max_download < 18 * 10**6  # the listing's 10M (MiB), little more
    assert entry.bounds.members == 2 * 500 + 64


@pytest.fixture
def photos(tmp_path) -> bytes:
    write_unpaired_folder(SyntheticFacades(3, 20, seed=0), tmp_path / "p", split="test")  # testA/ and testB/
    for b in (tmp_path / "p" / "testB").iterdir():
        b.unlink()
    (tmp_path / "p" / "testB").rmdir()
    return zip_of(tmp_path / "p", "ae_photos")


@pytest.fixture
def served(zoo_env, range_server, monkeypatch):
    monkeypatch.setenv("IMGTRANS_DATASETS_URL", range_server.url)
    hub_settings(monkeypatch, timeout=5)
    return range_server


def test_ae_photos_downloads_and_its_photos_resolve_by_name(served, zoo_env, photos):
    served.files["cyclegan/ae_photos.zip"] = photos
    folder = download_dataset("ae_photos")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["testA"]
    assert resolve_data("ae_photos/testA") == folder / "testA" and len(list((folder / "testA").iterdir())) == 2
    with pytest.raises(FileNotFoundError, match=r"dataset 'ae_photos' has no split 'train' \(trainA/\); it has test"):
        resolve_data("ae_photos")


def test_the_domain_folders_of_a_training_set_resolve_too(served, zoo_env, tmp_path, monkeypatch):
    write_unpaired_folder(SyntheticFacades(4, 20, seed=0), tmp_path / "h")
    served.files["cyclegan/horse2zebra.zip"] = zip_of(tmp_path / "h", "horse2zebra")
    folder = download_dataset("horse2zebra")
    assert resolve_data("horse2zebra/trainB") == folder / "trainB"
    assert resolve_data("horse2zebra/train") == folder / "train"  # the split: trainA and trainB
    with pytest.raises(FileNotFoundError, match=r"has no split 'testA' \(testAA/\)"):
        resolve_data("horse2zebra/testA")  # not in this archive


@pytest.mark.parametrize("problem", ["members", "escape"])
def test_an_unsafe_ae_photos_is_refused_before_anything_is_written(served, zoo_env, photos, problem):
    buffer = io.BytesIO(photos)
    with zipfile.ZipFile(buffer, "a") as zf:
        if problem == "members":  # more files than 10 MB of photos can be: a zip bomb of members
            for i in range(1100):
                zf.writestr(f"ae_photos/testA/extra-{i}.png", b"")
        else:
            zf.writestr("ae_photos/../escape.png", b"x")
    served.files["cyclegan/ae_photos.zip"] = buffer.getvalue()
    error = ArchiveTooLargeError if problem == "members" else UnsafeArchiveError
    with pytest.raises(error):
        download_dataset("ae_photos")
    base = zoo_env / "imgtrans" / "datasets"
    assert not (base / "ae_photos").exists() and not (base / "escape.png").exists()
