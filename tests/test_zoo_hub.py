"""The Hub route: ``hf_hub_download`` against a local server speaking the Hub's download protocol,
the Hub's cache layout afterwards, offline mode, and the faults."""

import hashlib
from dataclasses import replace
import time

import pytest
import torch

import imgtrans
from imgtrans.cli import main
from imgtrans.store.factory import from_pretrained, save_pretrained
from imgtrans.hub import DownloadError
from imgtrans.registry import Published
from imgtrans.store.weights import CorruptWeightsError

from zoo_fixtures import closed_port, hub_server, hub_settings, publish, silent_port, zoo_env  # noqa: F401

NAME = "test-zoo-hub-unet"
COMMIT = "0123456789abcdef" * 2 + "01234567"
if NAME not in imgtrans.list_models():
    imgtrans.register(NAME, imgtrans.UNetGenerator, num_downs=5, base_channels=4, description="a small U-Net")


@pytest.fixture
def published(zoo_env, hub_server, tmp_path, monkeypatch):
    """A small model published on the local Hub as ``imgtrans-test/unet`` and a zoo entry pinned to it."""
    hub_settings(monkeypatch, endpoint=hub_server.url)
    model = imgtrans.build(NAME).eval()
    folder = save_pretrained(model, tmp_path / "published")
    hub_server.publish("imgtrans-test/unet", folder, COMMIT)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    item = Published(task="noise -> noise", dataset="none", hub=("imgtrans-test/unet", COMMIT, "model.safetensors"), sha256=digest, part=None)
    publish(monkeypatch, NAME, item)
    return model, item


def outputs(model):
    with torch.no_grad():
        return model.eval()(torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32))


def test_from_pretrained_reads_a_hub_repository_then_works_offline(published, zoo_env, hub_server, monkeypatch):
    model, _ = published
    loaded = from_pretrained("imgtrans-test/unet")
    assert torch.equal(outputs(loaded), outputs(model))
    snapshot = zoo_env / "hub" / "models--imgtrans-test--unet" / "snapshots" / COMMIT
    assert {p.name for p in snapshot.iterdir()} == {"config.json", "model.safetensors"}
    assert (zoo_env / "hub" / "models--imgtrans-test--unet" / "refs" / "main").read_text() == COMMIT

    hub_server.stop()
    with pytest.warns(UserWarning, match=r"cannot download (config.json|model.safetensors) of imgtrans-test/unet from "
                      r"http://127.0.0.1:\d+: ConnectError.*; using the copy in the Hub cache"):
        assert torch.equal(outputs(from_pretrained("imgtrans-test/unet")), outputs(model))
    assert torch.equal(outputs(from_pretrained("imgtrans-test/unet", revision=COMMIT)), outputs(model))  # pinned
    hub_settings(monkeypatch, offline=True)
    assert torch.equal(outputs(from_pretrained("imgtrans-test/unet")), outputs(model))


def test_a_zoo_entry_with_a_hub_source(published, zoo_env, hub_server, monkeypatch, capsys):
    model, item = published
    assert torch.equal(outputs(imgtrans.build(NAME, pretrained=True)), outputs(model))
    assert hub_server.requests[-1] == ("GET", f"/imgtrans-test/unet/resolve/{COMMIT}/model.safetensors")
    hub_server.stop()
    hub_settings(monkeypatch, offline=True)
    assert torch.equal(outputs(imgtrans.build(NAME, pretrained=True)), outputs(model))
    assert main(["zoo", "info", NAME]) == 0
    info = capsys.readouterr().out
    assert f"imgtrans-test/unet/model.safetensors @ {COMMIT}" in info
    assert f"{zoo_env / 'hub' / 'models--imgtrans-test--unet'} (cached)" in info


def test_offline_without_a_cached_copy_says_what_to_do(published, hub_server, monkeypatch):
    hub_settings(monkeypatch, offline=True)
    start = time.monotonic()
    with pytest.raises(DownloadError) as error:
        imgtrans.build(NAME, pretrained=True)
    assert time.monotonic() - start < 2
    message = str(error.value)
    assert "offline mode (HF_HUB_OFFLINE is set) and model.safetensors of imgtrans-test/unet" in message
    assert f"run `hf download imgtrans-test/unet model.safetensors --revision {COMMIT}`" in message
    assert "or pass build('test-zoo-hub-unet', pretrained=True, weights=PATH)" in message
    assert hub_server.requests == []
    with pytest.raises(DownloadError, match="is not in the Hub cache"):
        from_pretrained("imgtrans-test/unet")


def test_an_unreachable_hub_fails_fast(published, monkeypatch):
    hub_settings(monkeypatch, endpoint=f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"cannot download model.safetensors of imgtrans-test/unet .*ConnectError"):
        imgtrans.build(NAME, pretrained=True)
    assert time.monotonic() - start < 5


def test_a_hub_that_never_answers_times_out(published, silent_port, monkeypatch):
    hub_settings(monkeypatch, endpoint=f"http://127.0.0.1:{silent_port}")
    hub_settings(monkeypatch, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"cannot download config.json of imgtrans-test/unet .*Timeout"):
        from_pretrained("imgtrans-test/unet")
    assert time.monotonic() - start < 5


def test_missing_repository_or_file(published):
    with pytest.raises(DownloadError, match="the Hub has no config.json of imgtrans-test/absent"):
        from_pretrained("imgtrans-test/absent")
    with pytest.raises(DownloadError, match="the Hub has no config.json of imgtrans-test/unet at revision v2"):
        from_pretrained("imgtrans-test/unet", revision="v2")


def test_a_checksum_mismatch_downloads_again_then_fails(published, hub_server, monkeypatch):
    _, item = published
    publish(monkeypatch, NAME, replace(item, sha256="f" * 64))
    with pytest.warns(UserWarning, match="downloading it again"):
        with pytest.raises(CorruptWeightsError, match=r"is corrupted: its SHA-256 is \w{64}, expected f{64}"):
            imgtrans.build(NAME, pretrained=True)
    assert [r for r in hub_server.requests if r[0] == "GET"] == [
        ("GET", f"/imgtrans-test/unet/resolve/{COMMIT}/model.safetensors")
    ] * 2


def test_a_damaged_cached_copy_is_replaced(published, zoo_env, hub_server):
    model, _ = published
    imgtrans.build(NAME, pretrained=True)
    blob = next((zoo_env / "hub" / "models--imgtrans-test--unet" / "blobs").iterdir())
    blob.write_bytes(b"\x00" * blob.stat().st_size)
    with pytest.warns(UserWarning, match="is corrupted"):
        assert torch.equal(outputs(imgtrans.build(NAME, pretrained=True)), outputs(model))


def test_zoo_download_refuses_to_replace_a_damaged_hub_copy_without_overwrite(published, zoo_env, hub_server, capsys):
    assert main(["zoo", "download", NAME]) == 0
    blob = next((zoo_env / "hub" / "models--imgtrans-test--unet" / "blobs").iterdir())
    blob.write_bytes(b"\x00" * blob.stat().st_size)
    capsys.readouterr()
    assert main(["zoo", "download", NAME]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is corrupted" in err and "pass --overwrite to download it again" in err
    assert set(blob.read_bytes()) == {0}
    assert main(["zoo", "download", NAME, "--overwrite"]) == 0
    path = capsys.readouterr().out.strip()
    assert torch.equal(outputs(imgtrans.build(NAME, pretrained=True)), outputs(published[0])) and path.endswith("model.safetensors")
