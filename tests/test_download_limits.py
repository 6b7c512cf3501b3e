"""Downloads held to their catalogues: bombs, over-long bodies, changed archives, no network, plain http.

Everything is served from 127.0.0.1 by a server started here; nothing reaches the internet.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from imgtrans.cli import main
from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.data import downloads
from imgtrans.data.downloads import MARKER, ArchiveTooLargeError, download_dataset, is_downloaded
from imgtrans.hub import ChangedDownloadError, DownloadError, check_first_seen, checksums_file, download

from dataset_fixtures import dataset_archive
from zoo_fixtures import _Server, closed_port, hub_settings, zoo_env  # noqa: F401


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.0: ``modes[NAME]`` is ``"normal"``, ``"no-length"`` (the body ends when the connection
    closes) or an int: the ``Content-Length`` announced, whatever the body."""

    server_state: "Server"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        state, name = self.server_state, self.path.lstrip("/")
        state.requests.append(self.path)
        if name not in state.files:
            self.send_error(404)
            return
        body, mode = state.files[name], state.modes.get(name, "normal")
        self.send_response(200)
        if mode != "no-length":
            self.send_header("Content-Length", str(len(body) if mode == "normal" else mode))
        self.end_headers()
        try:
            self.wfile.write(body)
        except ConnectionError:  # the client stopped reading: what a refusal does
            pass


class Server(_Server):
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, object] = {}
        super().__init__(type("Handler", (_Handler,), {}))


@pytest.fixture
def server():
    server = Server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def facades_archive(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("facades-src")
    write_ab_folder(SyntheticFacades(3, 36, seed=0), folder / "train")
    write_ab_folder(SyntheticFacades(2, 36, seed=1), folder / "test")
    return dataset_archive(folder)


@pytest.fixture(scope="module")
def other_archive(tmp_path_factory) -> bytes:
    """Another valid facades.tar.gz: what a server that changed its file would serve."""
    folder = tmp_path_factory.mktemp("facades-other")
    write_ab_folder(SyntheticFacades(3, 36, seed=5), folder / "train")
    write_ab_folder(SyntheticFacades(2, 36, seed=6), folder / "test")
    return dataset_archive(folder)


@pytest.fixture
def served(zoo_env, server, facades_archive, monkeypatch):
    server.files["facades.tar.gz"] = facades_archive
    monkeypatch.setenv("IMGTRANS_DATASETS_URL", server.url)
    hub_settings(monkeypatch, timeout=5)
    return server


def root_of(zoo_env) -> Path:
    return zoo_env / "imgtrans" / "datasets"


def nothing_stayed(zoo_env) -> None:
    """No dataset folder, no staging folder, no archive or part, and no recorded checksum for facades."""
    root = root_of(zoo_env)
    assert not (root / "facades").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".facades.extracting")]
    assert not (root / ".downloads").exists() or not list((root / ".downloads").iterdir())
    record = checksums_file()
    assert not record.exists() or "datasets/facades.tar.gz" not in json.loads(record.read_text())


def small_catalogue(monkeypatch, size: str = "20 kB", splits=("train (3)", "test (2)")) -> None:
    """Make the catalogue's facades entry small, so that its bounds are reached with small archives."""
    monkeypatch.setitem(downloads.DATASETS, "facades", replace(downloads.DATASETS["facades"], size=size, splits=splits))


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read in pieces (a member of any size without holding it in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def bomb(members: list[tuple[str, int]]) -> bytes:
    """A ``.tar.gz`` whose members (name, size) hold zeros: it compresses about a thousandfold."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
        for name, size in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = size, 0o644
            tar.addfile(info, Zeros(size))
    return out.getvalue()


@pytest.mark.parametrize(
    "kind, members, small, words",
    [
        ("one member of 400 MB in a 29 MB dataset", [("facades/train/1.jpg", 400 * 10**6)], False, "expands to more"),
        ("1400 members where 606 images are catalogued", [(f"facades/train/{i}.jpg", 0) for i in range(1400)], False,
         "holds more than 1,276 members"),  # fmt: skip
        ("twelve modest members beyond 4x a small entry", [(f"facades/train/{i}.jpg", 100_000) for i in range(12)],
         True, "expands to more"),  # fmt: skip
    ],
)
def test_an_archive_far_beyond_its_catalogue_entry_is_refused_and_nothing_stays(
    served, zoo_env, monkeypatch, kind, members, small, words
):
    if small:
        small_catalogue(monkeypatch)
    served.files["facades.tar.gz"] = archive = bomb(members)
    assert len(archive) < 2 * 10**6, kind  # small on the wire
    start = time.monotonic()
    with pytest.raises(ArchiveTooLargeError, match=words):
        download_dataset("facades")
    assert time.monotonic() - start < 30  # refused from the headers, not after expanding it
    nothing_stayed(zoo_env)


def test_the_cli_refuses_a_bomb_in_one_line(served, zoo_env, capsys):
    served.files["facades.tar.gz"] = bomb([(f"facades/test/{i}.png", 0) for i in range(1300)])
    assert main(["data", "download", "facades"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "far more than its catalogue entry (29 MB, 606 images)" in err
    nothing_stayed(zoo_env)


def zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("facades/train/1.jpg", bytes(50 * 10**6))
    return out.getvalue()


def gzip_of_zeros() -> bytes:
    import gzip

    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as stream:
        for _ in range(50):
            stream.write(bytes(10**6))
    return out.getvalue()


@pytest.mark.parametrize("make", [zip_bomb, gzip_of_zeros], ids=["a zip bomb", "a gzip of zeros"])
def test_bombs_that_are_no_tar_gz_are_refused_and_nothing_stays(served, zoo_env, make):
    served.files["facades.tar.gz"] = make()
    with pytest.raises(DownloadError, match="corrupt archive twice"):
        download_dataset("facades")
    nothing_stayed(zoo_env)


@pytest.mark.parametrize("mode", ["no-length", 5 * 10**9], ids=["no Content-Length", "announced 5 GB"])
def test_a_dataset_download_longer_than_its_catalogue_allows_is_cut_off(served, zoo_env, monkeypatch, mode):
    small_catalogue(monkeypatch)  # at most 1.5 x 20 kB + 1 MiB
    served.files["facades.tar.gz"] = bytes(3 * 2**20)
    served.modes["facades.tar.gz"] = mode
    expected = r"(announces|sent more than) [\d,]+ bytes, more than the 1,078,576 expected"
    with pytest.raises(DownloadError, match=expected):
        download_dataset("facades")
    nothing_stayed(zoo_env)


@pytest.mark.parametrize("mode", ["no-length", 10**12, 1500], ids=["no Content-Length", "announced 1 TB", "announced"])
def test_a_file_download_longer_than_expected_is_cut_off(server, zoo_env, tmp_path, mode):
    server.files["model.pth"] = bytes(1500)
    server.modes["model.pth"] = mode
    with pytest.raises(DownloadError, match="more than the 1,000 expected of it"):
        download(f"{server.url}/model.pth", tmp_path / "model.pth", max_bytes=1000)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a part


def test_a_body_within_its_bounds_is_downloaded(server, zoo_env, tmp_path):
    server.files["model.pth"] = b"x" * 1000
    server.modes["model.pth"] = "no-length"
    assert download(f"{server.url}/model.pth", tmp_path / "model.pth", max_bytes=1000).read_bytes() == b"x" * 1000


def test_a_changed_archive_is_refused_on_a_later_download(served, zoo_env, other_archive, capsys):
    folder = download_dataset("facades")
    before = sorted(p.name for p in (folder / "train").iterdir())
    marker = json.loads((folder / MARKER).read_text())
    recorded = json.loads(checksums_file().read_text())["datasets/facades.tar.gz"]
    assert recorded["sha256"] == marker["sha256"] and recorded["source"].endswith("/facades.tar.gz")

    served.files["facades.tar.gz"] = other_archive  # the server (or a mirror) now serves another file
    with pytest.raises(ChangedDownloadError, match=r"is not the file first downloaded on .* it was not used"):
        download_dataset("facades", overwrite=True)
    assert json.loads((folder / MARKER).read_text()) == marker  # the copy there is untouched
    assert sorted(p.name for p in (folder / "train").iterdir()) == before
    assert not list((root_of(zoo_env) / ".downloads").iterdir())

    assert main(["data", "download", "facades", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "remove the entry 'datasets/facades.tar.gz' from that file" in err


def test_a_kept_archive_changed_on_disk_is_refused(served, zoo_env, other_archive):
    folder = download_dataset("facades", keep_archive=True)
    kept = root_of(zoo_env) / ".downloads" / "facades.tar.gz"
    kept.write_bytes(other_archive)
    shutil.rmtree(folder)
    requests = len(served.requests)
    with pytest.raises(ChangedDownloadError, match="not the file first downloaded"):
        download_dataset("facades")
    assert len(served.requests) == requests  # the kept archive was the one checked
    nothing_stayed_but_the_record = not (root_of(zoo_env) / "facades").exists() and not kept.exists()
    assert nothing_stayed_but_the_record


def test_the_same_archive_again_is_accepted(served, zoo_env):
    download_dataset("facades")
    download_dataset("facades", overwrite=True)
    assert is_downloaded("facades") and len(served.requests) == 2


def test_check_first_seen_records_once_and_compares_after(zoo_env, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    sha = check_first_seen("reference/x.pth", a, "http://one/x.pth", "Do this.")
    assert check_first_seen("reference/x.pth", a, "http://mirror/x.pth", "Do this.") == sha  # any source, same file
    with pytest.raises(ChangedDownloadError, match=r"from http://mirror/x.pth is not the file first .* Do this\.$"):
        check_first_seen("reference/x.pth", b, "http://mirror/x.pth", "Do this.")
    assert check_first_seen("reference/y.pth", b, "http://one/y.pth", "") != sha  # another name: recorded apart


@pytest.mark.parametrize("network", ["offline", "unreachable"])
def test_without_network_the_download_says_what_to_do_and_from_works(
    zoo_env, tmp_path, facades_archive, monkeypatch, capsys, network
):
    if network == "offline":
        hub_settings(monkeypatch, offline=True)
    else:
        monkeypatch.setenv("IMGTRANS_DATASETS_URL", f"http://127.0.0.1:{closed_port()}")
    url = downloads.dataset_entry("facades").url
    assert main(["data", "download", "facades"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"fetch {url} on a connected machine, then run `imgtrans data download facades --from FILE`" in err
    with pytest.raises(DownloadError, match=r"download_dataset\('facades', archive=FILE\)"):
        download_dataset("facades")

    fetched = tmp_path / "facades.tar.gz"
    fetched.write_bytes(facades_archive)
    assert main(["data", "download", "facades", "--from", str(fetched)]) == 0
    assert is_downloaded("facades") and fetched.read_bytes() == facades_archive  # the user's file stays
    assert json.loads((root_of(zoo_env) / "facades" / MARKER).read_text())["url"] == str(fetched)


def test_from_a_damaged_or_changed_file_is_one_line(zoo_env, tmp_path, facades_archive, other_archive, capsys):
    damaged = tmp_path / "cut.tar.gz"
    damaged.write_bytes(facades_archive[: len(facades_archive) // 2])
    assert main(["data", "download", "facades", "--from", str(damaged)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a complete facades.tar.gz" in err and damaged.exists()
    good, other = tmp_path / "good.tar.gz", tmp_path / "other.tar.gz"
    good.write_bytes(facades_archive)
    other.write_bytes(other_archive)
    assert main(["data", "download", "facades", "--from", str(good)]) == 0
    assert main(["data", "download", "facades", "--from", str(other), "--overwrite"]) == 2
    assert "not the file first downloaded" in capsys.readouterr().err and other.exists()


def test_data_list_says_which_sources_are_plain_http(zoo_env, monkeypatch, capsys):
    monkeypatch.delenv("IMGTRANS_DATASETS_URL", raising=False)
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "from: https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz\n" in out
    assert "plain http" not in out
    monkeypatch.setenv("IMGTRANS_DATASETS_URL", "http://mirror.example/pix2pix")
    assert main(["data", "list"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "from: " in line]
    from imgtrans.data.downloads import DATASETS

    downloadable = sum(entry.downloadable for entry in DATASETS.values())  # pix2pix's 5, CycleGAN's 10, ae_photos
    assert len(lines) == downloadable == 16
    assert all("http://mirror.example/" in line and "plain http" in line for line in lines)


ZOO_NAME = "test-download-limits-f8"  # a pix2pix at the width of ../shared/reference/unet256-f8.pth


@pytest.fixture
def zoo_entry(zoo_env, server, monkeypatch):
    """A zoo entry published without a checksum, its reference file served by ``server``."""
    import imgtrans
    from imgtrans.models.pix2pix import pix2pix
    from imgtrans.registry import Published

    from conftest import shared_path
    from zoo_fixtures import publish

    if ZOO_NAME not in imgtrans.list_models():
        imgtrans.register(ZOO_NAME, pix2pix, description="pix2pix at width 8, for the download tests",
                          generator_args={"base_channels": 8}, discriminator_args={"base_channels": 8})  # fmt: skip
    server.files["unet256-f8.pth"] = shared_path("reference", "unet256-f8.pth").read_bytes()
    monkeypatch.setenv("IMGTRANS_REFERENCE_URL", server.url)
    publish(monkeypatch, ZOO_NAME, Published(task="labels -> photo", dataset="a test", reference_file="unet256-f8.pth"))
    return zoo_env / "imgtrans" / ZOO_NAME


def test_a_zoo_checkpoint_without_a_published_checksum_is_held_to_its_first_download(zoo_entry, server):
    import imgtrans

    imgtrans.build(ZOO_NAME, pretrained=True)
    assert "reference/unet256-f8.pth" in json.loads(checksums_file().read_text())
    shutil.rmtree(zoo_entry)  # the cache is gone: the next build downloads again
    server.files["unet256-f8.pth"] += b"\x00"  # and the server's file changed
    with pytest.raises(ChangedDownloadError, match="remove the entry 'reference/unet256-f8.pth' from that file"):
        imgtrans.build(ZOO_NAME, pretrained=True)
    assert not (zoo_entry / "unet256-f8.pth").exists()


@pytest.mark.parametrize("mode", ["no-length", 10**12], ids=["no Content-Length", "announced 1 TB"])
def test_a_zoo_download_is_bounded_by_the_models_size(zoo_entry, server, mode):
    import imgtrans

    server.files["unet256-f8.pth"] = bytes(64 * 2**20)  # far more than a width-8 U-Net's float32 weights
    server.modes["unet256-f8.pth"] = mode
    with pytest.raises(DownloadError, match="expected of it"):
        imgtrans.build(ZOO_NAME, pretrained=True)
    assert not zoo_entry.exists() or not list(zoo_entry.iterdir())
