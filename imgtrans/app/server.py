"""The page's server: Python's own ``http.server``, a JSON/PNG endpoint, and the model behind a lock.

Routes:

| route | answers |
| --- | --- |
| ``GET /`` | the page (``static/index.html``; its script and style are ``/static/app.js``, ``/static/app.css``) |
| ``GET /api/config`` | JSON: the model, its palette, the canvas size, the upload limits |
| ``GET /api/example`` | PNG: the canvas's starting example |
| ``POST /api/translate`` | body: an image file (PNG, JPEG, WebP, BMP, GIF, TIFF); answer: the translation as PNG |

Refusals are JSON ``{"error": "..."}`` with a status the page shows as it is: ``413`` for a body
over the upload limit or an image over the side limit, ``415`` for a body that is not an image,
``411`` without a ``Content-Length``. Every answer carries a ``Content-Security-Policy`` that only
allows this server's own address, so the page cannot load anything from elsewhere.

The translation is [translate][imgtrans.inference.translate] (eval mode) on the uploaded pixels,
converted to the model's channels as ``imgtrans translate`` reads files, then quantised to 8 bits
as [save_image][imgtrans.io.save_image] does: the page shows exactly what
``imgtrans translate`` would write for the same file. Images larger than ``tile`` pixels on a side
are translated in blended tiles, as there.
"""

from __future__ import annotations

import errno
import json
import threading
import time
import warnings
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from io import BytesIO

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from imgtrans.app.palettes import Palette, example_image, png_bytes
from imgtrans.io import CHANNEL_MODES, as_channels, image_to_tensor, tensor_to_image, upright
from imgtrans.inference import generator_of, translate, translate_tiled

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Default limit on an upload's size: 10 MiB."""

MAX_SIDE = 4096
"""Largest side of an image the server translates, in pixels."""

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
"""Image formats the server decodes (with Pillow)."""

STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self' blob:"
# An oversized body up to this size is read and dropped, so that the browser gets the answer.
DISCARD_LIMIT = 64 * 1024 * 1024


class RefusedUpload(ValueError):
    """An upload the server will not translate; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: HTTPStatus) -> None:
        super().__init__(message)
        self.status = status


def decode_upload(body: bytes, max_side: int = MAX_SIDE) -> Image.Image:
    """The image an upload holds, fully decoded; else [RefusedUpload][imgtrans.app.server.RefusedUpload] says why."""
    if not body:
        raise RefusedUpload("the upload is empty: choose an image file", HTTPStatus.BAD_REQUEST)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(body))
            if image.format not in FORMATS:
                raise RefusedUpload(
                    f"{image.format} images are not accepted; upload a {', '.join(FORMATS)} image",
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                )
            w, h = image.size
            if max(w, h) > max_side:  # checked before decoding the pixels
                raise RefusedUpload(
                    f"the image is {w}x{h} pixels; the largest side accepted is {max_side} pixels: scale it down",
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                )
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise RefusedUpload(
            f"the upload is not an image that can be read; upload a {', '.join(FORMATS)} file",
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, RefusedUpload):
            raise
        raise RefusedUpload(
            f"the image could not be decoded ({error}); it may be truncated: upload it again or another one",
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        ) from None
    return upright(image)  # as the browser shows it: EXIF orientation applied


def translate_image(
    model: nn.Module, image: Image.Image, device: str | torch.device = "cpu", tile: int = 1024, overlap: int = 128
) -> Image.Image:
    """Translate one PIL image with ``model`` in eval mode; the result as an 8-bit PIL image.

    The image is converted to the generator's channels (``L``, ``RGB`` or ``RGBA``) as
    ``imgtrans translate`` converts files, and the output is quantised as ``save_image`` does.
    """
    channels = getattr(generator_of(model), "in_channels", 3)
    if channels not in CHANNEL_MODES:
        raise ValueError(f"the model expects {channels}-channel inputs; images give 1, 3 or 4 channels")
    x = image_to_tensor(as_channels(image, channels), channels).unsqueeze(0).to(device)

    def run(batch: torch.Tensor) -> torch.Tensor:
        return translate(model, batch)

    y = translate_tiled(run, x, tile, overlap, batch_size=1) if max(x.shape[-2:]) > tile else run(x)
    return tensor_to_image(y[0])


class AppServer(ThreadingHTTPServer):
    """The page's HTTP server for one model; see [make_server][imgtrans.app.server.make_server]."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        model: nn.Module,
        palette: Palette,
        model_name: str,
        max_upload_bytes: int,
        max_side: int,
        device: str | torch.device,
    ) -> None:
        self.model, self.palette, self.model_name = model, palette, model_name  # translate() runs it in eval mode
        self.max_upload_bytes, self.max_side, self.device = max_upload_bytes, max_side, device
        self.lock = threading.Lock()  # one translation at a time: torch already uses every core
        example, self.example_source = example_image(palette)
        self.example_png = png_bytes(example)
        self.example_size = example.size
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        """The page's address."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def config(self) -> dict:
        """What ``GET /api/config`` answers."""
        generator = generator_of(self.model)
        return {
            "model": self.model_name,
            "channels": [getattr(generator, "in_channels", 3), getattr(generator, "out_channels", 3)],
            "palette": self.palette.as_json(),
            "canvas": list(self.example_size),
            "example": self.example_source,
            "max_upload_bytes": self.max_upload_bytes,
            "max_side": self.max_side,
            "formats": list(FORMATS),
        }

    def translate_png(self, body: bytes) -> bytes:
        """The translation of an uploaded image, as PNG bytes."""
        image = decode_upload(body, self.max_side)
        with self.lock:
            return png_bytes(translate_image(self.model, image, self.device))


class _Handler(BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # one quiet line per request, not stderr noise
        pass

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            page = resources.files("imgtrans.app").joinpath("static/index.html").read_bytes()
            self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        elif path.startswith("/static/") and path.removeprefix("/static/") in STATIC:
            name = path.removeprefix("/static/")
            self._send(HTTPStatus.OK, resources.files("imgtrans.app").joinpath(f"static/{name}").read_bytes(),
                       f"{STATIC[name]}; charset=utf-8")  # fmt: skip
        elif path == "/api/config":
            self._send(HTTPStatus.OK, json.dumps(self.server.config()).encode(), "application/json")
        elif path == "/api/example":
            self._send(HTTPStatus.OK, self.server.example_png, "image/png")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"nothing at {path}")

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/api/translate":
            self._error(HTTPStatus.NOT_FOUND, f"nothing to post at {self.path}")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length header")
            return
        size, limit = int(length), self.server.max_upload_bytes
        if size > limit:
            if size <= DISCARD_LIMIT:  # read it, so that the browser sees the answer rather than a reset
                for _ in range(0, size, 1 << 20):
                    self.rfile.read(min(1 << 20, size))
            else:
                self.close_connection = True
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the upload is {size / 2**20:.1f} MiB; the limit is {limit / 2**20:.1f} MiB: upload a smaller image",
            )
            return
        body = self.rfile.read(size)
        start = time.perf_counter()
        try:
            png = self.server.translate_png(body)
        except RefusedUpload as refusal:
            self._error(refusal.status, str(refusal))
            return
        except Exception as error:  # the page shows one line; the server keeps running
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"translation failed: {type(error).__name__}: {error}")
            return
        elapsed = f"{(time.perf_counter() - start) * 1000:.0f}"
        self._send(HTTPStatus.OK, png, "image/png", {"X-Translate-Ms": elapsed})


def make_server(
    model: nn.Module,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    palette: Palette,
    model_name: str = "",
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_side: int = MAX_SIDE,
    device: str | torch.device = "cpu",
) -> AppServer:
    """A bound, not yet serving, page server for ``model``; call ``serve_forever()`` on it.

    Args:
        model: a pix2pix model or a bare generator, already on ``device``.
        host: the address to listen on; ``127.0.0.1`` keeps the page to this machine.
        port: the port; ``0`` picks a free one (see ``server.url``).
        palette: what the canvas paints with (see [palettes][imgtrans.app.palettes]).
        model_name: shown on the page.
        max_upload_bytes: uploads larger than this are refused (413).
        max_side: images with a longer side are refused (413).
        device: where the model runs.

    Raises:
        OSError: the port is taken, or the address cannot be bound.
    """
    try:
        return AppServer((host, port), model, palette, model_name, max_upload_bytes, max_side, device)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {host} is already in use; pass another port (0 picks a free one)") from None
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
