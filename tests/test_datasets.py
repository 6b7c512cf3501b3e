"""``imgtrans data``: catalogue, resumable atomic download, corrupt and malicious archives, names as --data.

Everything is served from 127.0.0.1 (see dataset_fixtures.RangeServer); nothing reaches the internet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imgtrans.data import downloads as datasets
from imgtrans.cli import build_parser, main
from imgtrans.data import PairedImageDataset, SyntheticFacades, write_ab_folder
from imgtrans.data.downloads import (
    MARKER,
    UnsafeArchiveError,
    dataset_dir,
    download_dataset,
    is_downloaded,
    resolve_data,
)
from imgtrans.hub import DownloadError

from conftest import TINY_MODEL
from dataset_fixtures import dataset_archive, file_member, link_member, range_server, tar_gz  # noqa: F401
from zoo_fixtures import closed_port, hub_settings, zoo_env  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def facades_archive(tmp_path_factory) -> bytes:
    """A small facades.tar.gz: facades/train (4 AB files) and facades/test (2), 36x36 per half."""
    folder = tmp_path_factory.mktemp("facades-src")
    write_ab_folder(SyntheticFacades(4, 36, seed=0), folder / "train")
    write_ab_folder(SyntheticFacades(2, 36, seed=1), folder / "test")
    return dataset_archive(folder)


@pytest.fixture
def served(zoo_env, range_server, facades_archive, monkeypatch):
    """The server holding facades.tar.gz, set as the datasets mirror; HF_HOME is private."""
    range_server.files["facades.tar.gz"] = facades_archive
    monkeypatch.setenv("IMGTRANS_DATASETS_URL", range_server.url)
    hub_settings(monkeypatch, timeout=5)
    return range_server


def looks_complete(root: Path) -> bool:
    return (root / "facades").exists() or is_downloaded("facades", root)


def test_download_extracts_marks_and_resolves_names(served, zoo_env):
    folder = download_dataset("facades")
    assert folder == zoo_env / "imgtrans" / "datasets" / "facades"
    assert sorted(p.name for p in (folder / "train").iterdir()) == ["1.png", "2.png", "3.png", "4.png"]
    marker = json.loads((folder / MARKER).read_text())
    assert marker["files"] == 6 and marker["url"].endswith("/facades.tar.gz")
    assert not (folder.parent / ".downloads" / "facades.tar.gz").exists()  # the archive is not kept
    assert resolve_data("facades") == folder / "train"
    assert resolve_data("facades/test") == folder / "test"
    assert len(PairedImageDataset(resolve_data("facades/test"), "BtoA", load_size=None, crop_size=None)) == 2
    # a second call finds it complete and does not download again
    requests = len(served.requests)
    assert download_dataset("facades") == folder and len(served.requests) == requests


def test_names_that_are_not_datasets_pass_through_and_missing_ones_say_what_to_run(zoo_env, tmp_path, monkeypatch):
    assert resolve_data("runs/some/folder") == Path("runs/some/folder")
    assert resolve_data(str(tmp_path)) == tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "facades").mkdir()  # a local folder wins over the dataset name
    assert resolve_data("facades") == Path("facades")
    monkeypatch.chdir(ROOT)
    with pytest.raises(FileNotFoundError, match=r"run `imgtrans data download facades`"):
        resolve_data("facades")
    with pytest.raises(FileNotFoundError, match="registration"):
        resolve_data("cityscapes")


def test_a_missing_split_lists_the_splits(served):
    download_dataset("facades")
    with pytest.raises(FileNotFoundError, match=r"no split 'val'; it has test, train"):
        resolve_data("facades/val")


def test_a_dropped_connection_is_resumed_with_range(served, facades_archive, zoo_env):
    served.plans["facades.tar.gz"] = [("cut", 1000), ("cut", 700)]
    folder = download_dataset("facades")
    assert is_downloaded("facades")
    assert served.requests == [
        ("/facades.tar.gz", None),
        ("/facades.tar.gz", "bytes=1000-"),
        ("/facades.tar.gz", "bytes=1700-"),
    ]
    assert len(list((folder / "train").iterdir())) == 4


def test_a_part_file_from_an_earlier_run_is_continued(served, facades_archive, zoo_env):
    downloads = zoo_env / "imgtrans" / "datasets" / ".downloads"
    downloads.mkdir(parents=True)
    (downloads / "facades.tar.gz.part").write_bytes(facades_archive[:2048])
    download_dataset("facades", keep_archive=True)
    assert served.requests == [("/facades.tar.gz", "bytes=2048-")]
    assert (downloads / "facades.tar.gz").read_bytes() == facades_archive


def test_a_server_that_ignores_range_restarts_the_file(served, facades_archive, zoo_env):
    served.plans["facades.tar.gz"] = [("cut", 1000), ("ignore-range",)]
    download_dataset("facades", keep_archive=True)
    assert served.requests[1] == ("/facades.tar.gz", "bytes=1000-")
    assert (zoo_env / "imgtrans" / "datasets" / ".downloads" / "facades.tar.gz").read_bytes() == facades_archive


def test_every_try_cut_short_keeps_the_part_and_says_to_run_again(served, facades_archive, zoo_env):
    served.plans["facades.tar.gz"] = [("cut", 500)] * 3
    with pytest.raises(DownloadError, match=r"after 3 tries .* 1500 bytes are kept .* run the same command again"):
        download_dataset("facades")
    assert not looks_complete(zoo_env / "imgtrans" / "datasets")
    download_dataset("facades")  # the next call resumes at 1500
    assert served.requests[-1] == ("/facades.tar.gz", "bytes=1500-") and is_downloaded("facades")


def corrupt(archive: bytes) -> bytes:
    """The same length, with bytes flipped in the middle of the compressed stream."""
    middle = len(archive) // 2
    return archive[:middle] + bytes(b ^ 0xFF for b in archive[middle : middle + 64]) + archive[middle + 64 :]


def test_a_corrupt_archive_is_fetched_again(served, facades_archive, zoo_env, capsys):
    served.plans["facades.tar.gz"] = [("body", corrupt(facades_archive))]
    download_dataset("facades")
    assert "corrupt" in capsys.readouterr().out
    assert len(served.requests) == 2 and is_downloaded("facades")


def test_a_truncated_archive_is_detected_even_with_a_matching_length(served, facades_archive, zoo_env):
    truncated = facades_archive[: len(facades_archive) * 2 // 3]  # a whole, well-formed HTTP body
    served.files["facades.tar.gz"] = truncated
    with pytest.raises(DownloadError, match="corrupt archive twice"):
        download_dataset("facades")
    assert len(served.requests) == 2
    root = zoo_env / "imgtrans" / "datasets"
    assert not looks_complete(root)
    assert not list((root / ".downloads").iterdir())  # nothing kept that a later run would trust
    with pytest.raises(FileNotFoundError, match="not downloaded"):
        resolve_data("facades")


@pytest.mark.parametrize(
    "member, message",
    [
        (file_member("facades/../../evil.txt", b"x"), "climbs out"),
        (file_member("../evil.txt", b"x"), "climbs out"),
        (file_member("/tmp/imgtrans-evil.txt", b"x"), "absolute path"),
        (link_member("facades/train/passwd.png", "/etc/passwd"), "is a link"),
        (link_member("facades/train/escape", "../../../escape"), "is a link"),
        (link_member("facades/train/hard.png", "/etc/passwd", hard=True), "is a link"),
        (file_member("elsewhere/1.png", b"x"), "not inside facades/"),
    ],
)
def test_malicious_archives_are_refused_before_anything_is_written(served, zoo_env, tmp_path, member, message):
    good = file_member("facades/train/1.png", b"fine")
    served.files["facades.tar.gz"] = tar_gz([good, member])
    with pytest.raises(UnsafeArchiveError, match=message):
        download_dataset("facades")
    root = zoo_env / "imgtrans" / "datasets"
    assert not looks_complete(root)
    assert not (zoo_env / "imgtrans" / "evil.txt").exists() and not (root / "evil.txt").exists()
    assert not Path("/tmp/imgtrans-evil.txt").exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".facades.extracting")] == []


def test_the_cli_refuses_a_malicious_archive_in_one_line(served, capsys):
    served.files["facades.tar.gz"] = tar_gz([link_member("facades/train/x.png", "/etc/passwd")])
    assert main(["data", "download", "facades"]) == 2
    err = capsys.readouterr().err
    assert "is a link" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


KILLER = """
import os, signal, sys, tarfile
from imgtrans.data.downloads import download_dataset

written = 0
original = tarfile.TarFile.makefile

def makefile(self, tarinfo, targetpath):  # the process dies after two files are written
    global written
    original(self, tarinfo, targetpath)
    written += 1
    if written == 2:
        os.kill(os.getpid(), signal.SIGKILL)

tarfile.TarFile.makefile = makefile
download_dataset("facades")
"""


def test_a_process_killed_mid_extraction_leaves_nothing_that_looks_complete(served, zoo_env):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", KILLER], env=env, capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    root = zoo_env / "imgtrans" / "datasets"
    staging = [p for p in root.iterdir() if p.name.startswith(".facades.extracting-")]
    assert len(staging) == 1 and any(staging[0].rglob("*.png"))  # it really died half-way
    assert not looks_complete(root)
    with pytest.raises(FileNotFoundError, match="not downloaded"):
        resolve_data("facades")
    requests = len(served.requests)
    download_dataset("facades")  # the next run uses the complete archive and clears the leftovers
    assert len(served.requests) == requests
    assert is_downloaded("facades") and not staging[0].exists()
    assert len(list((root / "facades" / "train").iterdir())) == 4


def test_a_folder_imgtrans_did_not_make_is_never_overwritten(served, zoo_env):
    mine = zoo_env / "imgtrans" / "datasets" / "facades"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own")
    with pytest.raises(ValueError, match="was not made by `imgtrans data download`"):
        download_dataset("facades")
    with pytest.raises(ValueError, match="not even with --overwrite"):
        download_dataset("facades", overwrite=True)
    assert (mine / "notes.txt").read_text() == "my own"


def test_overwrite_replaces_a_complete_copy_and_nothing_else_does(served, zoo_env, capsys):
    folder = download_dataset("facades")
    (folder / "train" / "1.png").unlink()
    assert main(["data", "download", "facades"]) == 0  # a complete copy is left as it is, and said so
    assert "already there, unchanged (--overwrite downloads it again)" in capsys.readouterr().out
    assert not (folder / "train" / "1.png").exists()
    assert main(["data", "download", "facades", "--overwrite"]) == 0
    assert (folder / "train" / "1.png").is_file() and is_downloaded("facades")
    (folder / "train" / "1.png").unlink()
    download_dataset("facades", force=True)  # the old name of overwrite
    assert (folder / "train" / "1.png").is_file()


def test_cityscapes_offline_unknown_and_unreachable(zoo_env, monkeypatch):
    with pytest.raises(ValueError, match="cityscapes-dataset.com"):
        download_dataset("cityscapes")
    with pytest.raises(KeyError, match="Did you mean 'facades'"):
        download_dataset("facade")
    monkeypatch.setenv("IMGTRANS_DATASETS_URL", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(DownloadError, match="cannot reach"):
        download_dataset("maps")
    hub_settings(monkeypatch, offline=True)
    with pytest.raises(DownloadError, match="offline mode"):
        download_dataset("maps")
    assert not (zoo_env / "imgtrans" / "datasets" / "maps").exists()


def test_the_default_address_is_the_reference_servers(monkeypatch):
    monkeypatch.delenv("IMGTRANS_DATASETS_URL", raising=False)
    assert datasets.dataset_entry("facades").url == "https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz"
    assert not datasets.dataset_entry("facades").plain_http
    monkeypatch.setenv("IMGTRANS_DATASETS_URL", "http://mirror.example/pix2pix/")
    assert datasets.dataset_entry("maps").url == "http://mirror.example/pix2pix/maps.tar.gz"
    assert datasets.dataset_entry("maps").plain_http


def test_data_list_shows_size_direction_and_licence(zoo_env, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name, size, direction in [("facades", "29 MB", "BtoA"), ("maps", "239 MB", "AtoB"),
                                  ("edges2shoes", "2.0 GB", "AtoB"), ("edges2handbags", "8.0 GB", "AtoB"),
                                  ("night2day", "1.9 GB", "AtoB"), ("cityscapes", "99 MB", "BtoA")]:  # fmt: skip
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert size in line and direction in line
    assert "not downloadable" in out and "registration" in out


def test_the_facades_recipe_by_name_train_translate_eval(served, tmp_path, capsys):
    assert main(["data", "download", "facades"]) == 0
    assert "--data facades" in capsys.readouterr().out
    args = build_parser().parse_args(["train", "pix2pix-facades", "--data", "facades", "--out", str(tmp_path / "run")])
    from imgtrans.cli.train import config_from_args

    assert config_from_args(args).data == str(dataset_dir("facades") / "train")
    run = tmp_path / "run"
    assert main(["train", "pix2pix-facades", "--data", "facades", "--direction", "BtoA", "--out", str(run),
                 "--model-args", json.dumps(TINY_MODEL), "--load-size", "36", "--crop-size", "32",
                 "--workers", "0", "--max-steps", "2"]) == 0  # fmt: skip
    assert "4 images" in capsys.readouterr().out
    out = tmp_path / "eval"
    argv = ["eval", str(run), "--data", "facades/test", "--direction", "BtoA", "--out", str(out), "--modes", "eval"]
    assert main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["info"]["images"] == 2
    assert main(["translate", str(run), "facades/test", "--split", "right", "--out", str(tmp_path / "t")]) == 0
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["1.png", "2.png"]
    capsys.readouterr()
    assert main(["eval", str(run), "--data", "facades/val", "--out", str(out)]) == 2
    assert "no split 'val'" in capsys.readouterr().err
