"""``imgtrans app``: the server's endpoint gives what ``translate`` gives, refusals, the palette, no CDN."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

import imgtrans
from imgtrans.app import EDGES, FACADES, FREE, make_server, palette_for
from imgtrans.app.palettes import drawn_facade, example_image
from imgtrans.cli import main
from imgtrans.images import image_to_tensor as to_tensor
from imgtrans.inference import translate

from zoo_fixtures import hub_settings

from conftest import shared_path


@pytest.fixture(scope="module")
def model(tiny_facades):
    return tiny_facades


@pytest.fixture(scope="module")
def server(model):
    server = make_server(model, "127.0.0.1", 0, palette=FACADES, model_name="tiny",
                         max_upload_bytes=200_000, max_side=600)  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def post(server, body: bytes, content_type: str = "image/png") -> tuple[int, bytes, dict]:
    request = urllib.request.Request(server.url + "api/translate", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def get(server, path: str) -> tuple[bytes, dict]:
    with urllib.request.urlopen(server.url + path, timeout=30) as response:
        return response.read(), dict(response.headers)


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def expected(model, image: Image.Image) -> np.ndarray:
    """``translate`` on the same pixels, in [0, 255] floats (not yet rounded)."""
    y = translate(model, to_tensor(image.convert("RGB")).unsqueeze(0))[0]
    return ((y.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("size", [(256, 256), (77, 45), (300, 131)])
def test_the_endpoint_gives_the_translation_of_the_same_pixels(server, model, size):
    rng = np.random.default_rng(size[0])
    labels = rng.integers(0, 12, (size[1] // 8 + 1, size[0] // 8 + 1))
    colours = np.array([c for _, c in FACADES.classes], dtype=np.uint8)
    image = Image.fromarray(colours[labels]).resize(size, Image.NEAREST)
    status, body, headers = post(server, encode(image))
    assert status == 200 and headers["Content-Type"] == "image/png"
    out = np.asarray(Image.open(BytesIO(body)), dtype=np.float32)
    want = expected(model, image)
    assert out.shape == want.shape == (size[1], size[0], 3)
    # 8-bit PNG: each value is the float output rounded, so they differ by at most half a level
    assert np.abs(out - want).max() <= 0.5 + 1e-3
    assert float(headers["X-Translate-Ms"]) >= 0


def test_jpeg_and_grey_uploads_are_converted_like_imgtrans_translate(server, model):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 80), dtype=np.uint8), "L")
    jpeg = encode(image, "JPEG")
    status, body, _ = post(server, jpeg, "image/jpeg")
    assert status == 200
    decoded = Image.open(BytesIO(jpeg)).convert("RGB")  # the pixels the server saw
    assert np.abs(np.asarray(Image.open(BytesIO(body)), np.float32) - expected(model, decoded)).max() <= 0.5 + 1e-3


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"this is a text file, not an image", 415, "not an image that can be read"),
        (b"", 400, "the upload is empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, 415, "not an image"),
        (bytes(250_000), 413, "the limit is 0.2 MiB"),
    ],
)
def test_refusals_say_what_was_wrong(server, body, status, words):
    code, answer, headers = post(server, body)
    assert code == status and headers["Content-Type"] == "application/json"
    assert words in json.loads(answer)["error"]


def test_an_image_over_the_side_limit_is_refused_before_decoding(server):
    big = encode(Image.new("RGB", (601, 20), (0, 48, 254)))
    code, answer, _ = post(server, big)
    assert code == 413 and "601x20 pixels; the largest side accepted is 600" in json.loads(answer)["error"]


def test_a_truncated_png_is_refused(server):
    png = encode(drawn_facade(128))
    code, answer, _ = post(server, png[: len(png) // 2])
    assert code == 415 and "truncated" in json.loads(answer)["error"]


def test_the_page_loads_nothing_from_elsewhere(server):
    page, headers = get(server, "")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    texts = [page.decode()] + [get(server, f"static/{name}")[0].decode() for name in ("app.js", "app.css")]
    for text in texts:
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), "an external address in the page"
        assert "@import" not in text and "url(" not in text
    assert '<script src="/static/app.js">' in texts[0]


def test_config_and_example(server):
    config = json.loads(get(server, "api/config")[0])
    assert [c["name"] for c in config["palette"]["classes"]] == [
        "background", "facade", "window", "door", "cornice", "sill",
        "balcony", "blind", "deco", "molding", "pillar", "shop",
    ]  # fmt: skip
    assert config["max_upload_bytes"] == 200_000 and config["canvas"] == [256, 256]
    example = Image.open(BytesIO(get(server, "api/example")[0]))
    assert example.size == (256, 256)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        get(server, "static/../server.py")


def test_the_drawn_example_uses_only_palette_colours():
    pixels = np.asarray(drawn_facade(256)).reshape(-1, 3)
    used = {tuple(p) for p in np.unique(pixels, axis=0)}
    names = {c: n for n, c in FACADES.classes}
    assert used <= set(names) and {"facade", "window", "sill", "door", "shop"} <= {names[c] for c in used}


def test_the_example_comes_from_the_downloaded_test_split(tmp_path, monkeypatch):
    hub_settings(monkeypatch, home=tmp_path)
    assert "drawn with the CMP palette" in example_image(FACADES)[1]
    folder = tmp_path / "imgtrans" / "datasets" / "facades"
    (folder / "test").mkdir(parents=True)
    ab = np.zeros((20, 40, 3), np.uint8)
    ab[:, 20:] = (6, 125, 255)
    Image.fromarray(ab).save(folder / "test" / "1.png")
    (folder / ".imgtrans-dataset.json").write_text("{}")
    image, source = example_image(FACADES)
    assert source == "facades/test/1.png (right half)" and image.getpixel((3, 3)) == (6, 125, 255)


def test_palettes_are_guessed_from_the_model_names():
    assert palette_for("pix2pix-facades") is FACADES
    assert palette_for("runs/x", "pix2pix-edges2shoes") is EDGES
    assert palette_for("pix2pix-sat2map") is FREE


def test_the_facades_palette_is_the_colours_of_the_real_label_maps():
    """Each colour is the centre of a cluster of pixels in the pix2pix facades label maps."""
    files = sorted(shared_path("data", "facades", "test").glob("*.jpg"))[:40]
    pixels = np.concatenate([np.asarray(Image.open(f).convert("RGB"))[:, 256:].reshape(-1, 3) for f in files])
    colours = np.array([c for _, c in FACADES.classes], dtype=np.float32)
    distance = np.linalg.norm(pixels[:, None, :].astype(np.float32) - colours[None], axis=-1)
    nearest, close = distance.argmin(1), distance.min(1) < 40
    assert close.mean() > 0.75  # most pixels are near a palette colour (the rest: JPEG edges)
    for k, (name, colour) in enumerate(FACADES.classes):
        mine = pixels[(nearest == k) & close]
        assert len(mine) > 1000, name
        assert np.abs(np.median(mine, 0) - colour).max() <= 4, (name, np.median(mine, 0), colour)


def test_the_cli_says_when_the_port_is_taken(tmp_path, capsys, model):
    imgtrans.save_pretrained(model, tmp_path / "tiny")
    blocker = make_server(model, "127.0.0.1", 0, palette=FACADES)
    port = blocker.server_address[1]
    try:
        assert main(["app", str(tmp_path / "tiny"), "--port", str(port)]) == 2
    finally:
        blocker.server_close()
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use; choose another with --port" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["app", str(tmp_path / "tiny"), "--port", "70000"]) == 2
    assert "--port must be between 0 and 65535" in capsys.readouterr().err
    assert main(["app", str(tmp_path / "tiny"), "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_the_space_files_run_the_app_on_the_port_they_declare():
    from pathlib import Path

    from imgtrans.cli import build_parser

    space = Path(__file__).resolve().parents[1] / "spaces" / "facades"
    front = (space / "README.md").read_text().split("---")[1]
    settings = dict(line.split(": ", 1) for line in front.strip().splitlines())
    assert settings["sdk"] == "docker" and settings["app_port"] == "7860"
    command = next(line for line in (space / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    argv = json.loads(command.removeprefix("CMD "))
    assert argv[0] == "imgtrans"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "app" and args.port == 7860 and args.host == "0.0.0.0" and args.model == "pix2pix-facades"


def test_a_model_in_training_mode_is_translated_in_eval_mode_and_left_as_it_was(server, model):
    image = drawn_facade(64)
    model.train()
    try:
        status, body, _ = post(server, encode(image))
        assert model.training and model.generator.training
    finally:
        model.eval()
    assert status == 200
    assert np.abs(np.asarray(Image.open(BytesIO(body)), np.float32) - expected(model, image)).max() <= 0.5 + 1e-3
