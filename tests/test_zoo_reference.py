"""The zoo's reference route end to end, against a server on 127.0.0.1: download, convert, cache,
reload without the server; and every fault on the way, with its message."""

import hashlib
import shutil
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

import imgtrans
from imgtrans.cli import main
from imgtrans.models.pix2pix import pix2pix
from imgtrans.hub import DownloadError
from imgtrans.store.zoo import reference_url
from imgtrans.registry import Published

from conftest import shared_path
from zoo_fixtures import closed_port, file_server, hub_settings, publish, silent_port, zoo_env  # noqa: F401

NAME = "test-zoo-reference-f8"  # a pix2pix at the width of ../shared/reference/unet256-f8.pth
if NAME not in imgtrans.list_models():
    imgtrans.register(
        NAME,
        pix2pix,
        description="pix2pix at width 8, for the zoo's tests",
        generator_args={"base_channels": 8},
        discriminator_args={"base_channels": 8},
    )


@pytest.fixture
def checkpoint() -> bytes:
    return shared_path("reference", "unet256-f8.pth").read_bytes()


@pytest.fixture
def golden() -> dict[str, torch.Tensor]:
    return load_file(shared_path("reference", "unet256-f8.io.safetensors"))


@pytest.fixture
def zoo(zoo_env, file_server, checkpoint, monkeypatch):
    """A zoo entry whose reference file is served by ``file_server`` (the mirror variable points at it)."""
    file_server.files["unet256-f8.pth"] = checkpoint
    monkeypatch.setenv("IMGTRANS_REFERENCE_URL", file_server.url + "/")
    item = Published(
        task="labels -> photo",
        dataset="a test",
        reference_file="unet256-f8.pth",
        sha256=hashlib.sha256(checkpoint).hexdigest(),
    )
    publish(monkeypatch, NAME, item, "BtoA")
    return item


def cache(zoo_env):
    return zoo_env / "imgtrans" / NAME


def test_download_convert_cache_and_reload_offline(zoo, zoo_env, file_server, golden, monkeypatch):
    model = imgtrans.build(NAME, pretrained=True)
    assert (model.translate(golden["input"]) - golden["output"]).abs().max().item() < 1e-5
    assert model.untrained_parts == ("discriminator",)
    assert file_server.requests == [("GET", "/unet256-f8.pth")]
    assert sorted(p.name for p in cache(zoo_env).iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "not included: discriminator" in (cache(zoo_env) / "README.md").read_text()

    file_server.stop()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a cached load must read only safetensors"))
    again = imgtrans.build(NAME, pretrained=True)
    assert torch.equal(again.translate(golden["input"]), model.translate(golden["input"]))
    hub_settings(monkeypatch, offline=True)
    assert imgtrans.build(NAME, pretrained=True).untrained_parts == ("discriminator",)


def test_the_command_line(zoo, zoo_env, capsys):
    assert main(["zoo", "list"]) == 0
    listed = [line.split(None, 3) for line in capsys.readouterr().out.splitlines()]  # columns as wide as the names
    assert [NAME, "BtoA", "-", "labels -> photo"] in listed
    assert main(["zoo", "download", NAME]) == 0
    assert capsys.readouterr().out.strip() == str(cache(zoo_env) / "model.safetensors")
    assert main(["zoo", "info", NAME]) == 0
    info = capsys.readouterr().out
    assert reference_url(zoo.reference_file) in info and f"{cache(zoo_env)} (cached)" in info and zoo.sha256 in info
    assert main(["zoo", "info", "pix2pix-facade"]) == 2
    assert "Did you mean 'pix2pix-facades'" in capsys.readouterr().err


def test_convert_command(tmp_path, golden, capsys):
    checkpoint = shared_path("reference", "unet256-f8.pth")
    assert main(["convert", str(checkpoint), str(tmp_path / "out"), "--arch", "unet256"]) == 0
    assert "base_channels 8, norm batch, 3 -> 3 channels" in capsys.readouterr().out
    model = imgtrans.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert (model(golden["input"]) - golden["output"]).abs().max().item() < 1e-5
    assert main(["convert", str(checkpoint), str(tmp_path / "bad"), "--arch", "unet128"]) == 2
    assert "not a reference unet128 checkpoint (its layout fits unet256)" in capsys.readouterr().err


def test_a_truncated_download_leaves_nothing_and_the_next_call_recovers(zoo, zoo_env, file_server):
    file_server.truncate = True
    with pytest.raises(DownloadError, match=r"was cut short: got \d+ of \d+ bytes"):
        imgtrans.build(NAME, pretrained=True)
    assert list(cache(zoo_env).iterdir()) == []  # no partial file, no .pth, no cache
    file_server.truncate = False
    assert imgtrans.build(NAME, pretrained=True).untrained_parts == ("discriminator",)


def test_a_checksum_mismatch_is_refused(zoo, zoo_env, monkeypatch):
    publish(monkeypatch, NAME, replace(zoo, sha256="0" * 64), "BtoA")
    expected = r"checksum mismatch for .*unet256-f8.pth: its SHA-256 is \w{64}, expected 0{64}"
    with pytest.raises(DownloadError, match=expected):
        imgtrans.build(NAME, pretrained=True)
    assert list(cache(zoo_env).iterdir()) == []


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_checkpoint_that_needs_pickle_is_refused_and_removed(zoo, zoo_env, file_server, tmp_path, capsys,
                                                                monkeypatch):
    torch.save({"weight": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.pth")
    file_server.files["unet256-f8.pth"] = (tmp_path / "evil.pth").read_bytes()
    publish(monkeypatch, NAME, replace(zoo, sha256=None), "BtoA")
    with pytest.raises(ValueError, match=r"holds more than tensors .*\n.*unet256-f8.pth was removed; the next call"):
        imgtrans.build(NAME, pretrained=True)
    assert "pickled code ran" not in capsys.readouterr().out
    assert list(cache(zoo_env).iterdir()) == []


def test_a_checkpoint_that_does_not_fit_lists_the_keys(zoo, zoo_env, monkeypatch):
    if "test-zoo-reference-f16" not in imgtrans.list_models():
        imgtrans.register("test-zoo-reference-f16", pix2pix, generator_args={"base_channels": 16})
    publish(monkeypatch, "test-zoo-reference-f16", zoo, "BtoA")
    with pytest.raises(ValueError, match=r"do not fit the model; mis-shaped: generator\.encoder\.0\.conv\.weight \(8, 3, 4, 4\) "
                       r"where the model has \(16, 3, 4, 4\), generator\.encoder\.1\.conv\.weight"):
        imgtrans.build("test-zoo-reference-f16", pretrained=True)
    shutil.copy(shared_path("reference", "patchgan70-f8.pth"), tmp := zoo_env / "patchgan70-f8.pth")
    refused = r"holds 22 tensors, where unet256 \(.*\) holds \d+: it is not a reference unet256"
    with pytest.raises(ValueError, match=refused):
        imgtrans.build(NAME, weights=tmp)


def test_a_corrupted_cache_is_reported_and_downloaded_again(zoo, zoo_env, golden, monkeypatch):
    model = imgtrans.build(NAME, pretrained=True)
    weights = cache(zoo_env) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"model.safetensors is corrupted: its SHA-256 is \w{64}, expected \w{64}; "
                      "downloading it again"):
        again = imgtrans.build(NAME, pretrained=True)
    assert torch.equal(again.translate(golden["input"]), model.translate(golden["input"]))

    weights.write_bytes(b"\x00" * 64)
    hub_settings(monkeypatch, offline=True)
    with pytest.warns(UserWarning, match="corrupted"), pytest.raises(DownloadError, match="offline mode"):
        imgtrans.build(NAME, pretrained=True)


def test_offline_fails_fast_and_says_where_to_put_the_file(zoo, zoo_env, file_server, checkpoint, golden, monkeypatch, capsys):
    hub_settings(monkeypatch, offline=True)
    target = cache(zoo_env) / "unet256-f8.pth"
    start = time.monotonic()
    with pytest.raises(DownloadError) as error:
        imgtrans.build(NAME, pretrained=True)
    assert time.monotonic() - start < 2
    message = str(error.value)
    assert "offline mode (HF_HUB_OFFLINE is set)" in message
    assert f"download {reference_url(zoo.reference_file)} on a connected machine and put it at {target}" in message
    assert f"or pass build('{NAME}', pretrained=True, weights=PATH)" in message
    assert main(["zoo", "download", NAME]) == 2  # the command line says it in its own words
    err = capsys.readouterr().err
    assert "imgtrans convert FILE DIR --arch unet256" in err and "build(" not in err
    assert file_server.requests == []
    target.parent.mkdir(parents=True)
    target.write_bytes(checkpoint)  # as the message says
    model = imgtrans.build(NAME, pretrained=True)
    assert (model.translate(golden["input"]) - golden["output"]).abs().max().item() < 1e-5
    assert not target.exists()  # converted to safetensors, the .pth is gone


def test_an_unreachable_host_fails_fast(zoo, monkeypatch):
    monkeypatch.setenv("IMGTRANS_REFERENCE_URL", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    expected = r"cannot reach http://127.0.0.1:\d+/unet256-f8.pth: .*refused.* To work offline"
    with pytest.raises(DownloadError, match=expected):
        imgtrans.build(NAME, pretrained=True)
    assert time.monotonic() - start < 5


def test_a_server_that_never_answers_times_out(zoo, silent_port, monkeypatch):
    monkeypatch.setenv("IMGTRANS_REFERENCE_URL", f"http://127.0.0.1:{silent_port}")
    hub_settings(monkeypatch, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"did not answer within 0.5 s \(HF_HUB_DOWNLOAD_TIMEOUT\)"):
        imgtrans.build(NAME, pretrained=True)
    assert time.monotonic() - start < 5


def test_a_missing_file_on_the_server(zoo, file_server):
    del file_server.files["unet256-f8.pth"]
    with pytest.raises(DownloadError, match="unet256-f8.pth answered HTTP 404"):
        imgtrans.build(NAME, pretrained=True)


def test_zoo_download_never_replaces_a_damaged_cache_silently(zoo, zoo_env, file_server, capsys):
    assert main(["zoo", "download", NAME]) == 0
    weights = cache(zoo_env) / "model.safetensors"
    good = weights.read_bytes()  # its header varies from one write to the next: safetensors orders the metadata at will
    expected = {k: v.clone() for k, v in load_file(weights).items()}  # (not views of the file, which is damaged next)
    assert main(["zoo", "download", NAME]) == 0 and file_server.requests == [("GET", "/unet256-f8.pth")]  # cached: kept
    weights.write_bytes(good[: len(good) // 2])
    capsys.readouterr()
    assert main(["zoo", "download", NAME]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the cached copy was left as it is: pass --overwrite to download it again" in err
    assert weights.read_bytes() == good[: len(good) // 2] and len(file_server.requests) == 1
    assert main(["zoo", "download", NAME, "--overwrite"]) == 0
    restored = load_file(weights)
    assert restored.keys() == expected.keys() and all(torch.equal(restored[k], v) for k, v in expected.items())
    assert len(file_server.requests) == 2
    assert sorted(p.name for p in cache(zoo_env).iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert not [p for p in cache(zoo_env).parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
