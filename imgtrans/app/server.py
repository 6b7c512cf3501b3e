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
``411`` without a ``Content-Length``, ``403`` for a request whose ``Host`` is not this server's or a
``POST`` from another site (see [guard][imgtrans.app.guard]), ``503`` with ``Retry-After`` when
``max_waiting`` uploads already wait for the model. Every answer carries a ``Content-Security-Policy`` that only
allows this server's own address, so the page cannot load anything from elsewhere.

The translation is [translate][imgtrans.inference.translate] (eval mode) on the uploaded pixels,
converted to the model's channels as ``imgtrans translate`` reads files, then quantised to 8 bits
as [save_image][imgtrans.images.save_image] does: the page shows exactly what
``imgtrans translate`` would write for the same file. Images larger than ``tile`` pixels on a side
are translated in blended tiles, as there.

Under load the server stays bounded: one translation at a time (torch already uses every core),
at most ``max_waiting`` more uploads held in memory while they wait, every other upload read
and dropped in 1 MiB pieces and answered ``503``; a client silent for ``client_timeout`` seconds
is dropped; a client that hangs up has its work dropped before decoding, before translating and
between tiles, and costs one line in the log, not a traceback.
"""

from __future__ import annotations

import errno
import json
import math
import select
import sys
import threading
import time
import warnings
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from io import BytesIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from imgtrans.app.guard import Guard
from imgtrans.app.palettes import Palette, example_image, png_bytes
from imgtrans.data.labels import label_input
from imgtrans.images import CHANNEL_MODES, as_channels, image_to_tensor, tensor_to_image, upright
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

MAX_WAITING = 4
"""Default number of uploads that may wait for the model while one is translated; more get ``503``."""

CLIENT_TIMEOUT = 30.0
"""Default seconds a client may stay silent (mid-body, or idle between requests) before it is dropped."""


class ClientGone(ConnectionError):
    """The client closed its connection: its translation is dropped."""


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
    model: nn.Module,
    image: Image.Image,
    device: str | torch.device = "cpu",
    tile: int = 1024,
    overlap: int = 128,
    check: Callable[[], None] | None = None,
) -> Image.Image:
    """Translate one PIL image with ``model`` in eval mode; the result as an 8-bit PIL image.

    The image is converted to the generator's channels (``L``, ``RGB`` or ``RGBA``), or one-hot encoded for a
    model of label maps (colour drawings, ids beyond ``label_nc``, needed instance maps refused), as ``imgtrans
    translate`` reads files; the output is quantised as ``save_image`` does. Images above ``tile`` pixels go
    through tiles as 8-bit pixels (a quarter of float32's memory); ``check`` is called before each tile.
    """

    def run(batch: torch.Tensor) -> torch.Tensor:
        if check is not None:
            check()
        return translate(model, batch)

    if (labels := label_input(model)) is not None:
        try:
            x = labels.encode(image, option="imgtrans translate --instances (the page sends one file)")
        except ValueError as error:
            raise RefusedUpload(f"{error}; the model reads {labels.label_nc} classes", HTTPStatus.BAD_REQUEST) from None
        return tensor_to_image(translate_tiled(run, x.to(device), tile, overlap, batch_size=1)[0])
    channels = getattr(generator_of(model), "in_channels", 3)
    if channels not in CHANNEL_MODES:
        raise ValueError(f"the model expects {channels}-channel inputs; images give 1, 3 or 4 channels")
    image = as_channels(image, channels)
    if max(image.size) <= tile or image.mode == "F":
        x = image_to_tensor(image, channels).unsqueeze(0).to(device)
        y = translate_tiled(run, x, tile, overlap, batch_size=1) if max(x.shape[-2:]) > tile else run(x)
        return tensor_to_image(y[0])
    array = np.array(image)  # writable, as torch wants
    pixels = torch.from_numpy(array[..., None] if array.ndim == 2 else array).permute(2, 0, 1)[None].to(device)
    y = translate_tiled(run, pixels, tile, overlap, batch_size=1, dtype=torch.uint8)[0].permute(1, 2, 0).cpu()
    return Image.fromarray(y[..., 0].numpy() if y.shape[-1] == 1 else y.contiguous().numpy())


def client_gone(connection, rfile) -> bool:
    """Whether the peer of ``connection`` has closed it: it is readable and the read finds its end.

    ``rfile.peek`` keeps whatever it reads in the buffer, so the next request of a client that is
    still there is not lost; ``select`` first makes sure the read does not wait.
    """
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and rfile.peek(1) == b""
    except (OSError, ValueError):  # reset, or already closed
        return True


class AppServer(ThreadingHTTPServer):
    """The page's HTTP server for one model; see [make_server][imgtrans.app.server.make_server]."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst of connections waits instead of being refused

    def __init__(
        self,
        address: tuple[str, int],
        model: nn.Module,
        palette: Palette,
        model_name: str,
        max_upload_bytes: int,
        max_side: int,
        device: str | torch.device,
        *,
        allow_hosts: tuple[str, ...] = (),
        max_waiting: int = MAX_WAITING,
        client_timeout: float = CLIENT_TIMEOUT,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model, self.palette, self.model_name = model, palette, model_name  # translate() runs it in eval mode
        self.max_upload_bytes, self.max_side, self.device = max_upload_bytes, max_side, device
        self.client_timeout = client_timeout
        self.lock = threading.Lock()  # one translation at a time: torch already uses every core
        self.capacity = max_waiting + 1
        self.admitted = threading.BoundedSemaphore(self.capacity)  # bodies in memory: the one translated + waiting
        self.seconds = 1.0  # the last translation's duration, for Retry-After
        self.log = log if log is not None else _to_stderr
        example, self.example_source = example_image(palette)
        self.example_png = png_bytes(example)
        self.example_size = example.size
        super().__init__(address, _Handler)
        self.guard = Guard(address[0], self.server_address[1], allow_hosts)

    @property
    def url(self) -> str:
        """The page's address."""
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def config(self) -> dict:
        """What ``GET /api/config`` answers."""
        generator = generator_of(self.model)
        domains = getattr(self.model, "channels_for", None)  # a CycleGAN: the channels of its direction's domains
        channels = domains() if callable(domains) else (getattr(generator, "in_channels", 3),
                                                         getattr(generator, "out_channels", 3))  # fmt: skip
        return {
            "model": self.model_name,
            "channels": list(channels),
            "palette": self.palette.as_json(),
            "canvas": list(self.example_size),
            "example": self.example_source,
            "max_upload_bytes": self.max_upload_bytes,
            "max_side": self.max_side,
            "formats": list(FORMATS),
        }

    def translate_png(self, body: bytes, gone: Callable[[], bool] = lambda: False) -> bytes:
        """The translation of an uploaded image, as PNG bytes; [ClientGone][imgtrans.app.server.ClientGone] once
        ``gone()`` says the client has left (checked before each expensive step)."""

        def check() -> None:
            if gone():
                raise ClientGone("the client closed the connection")

        with self.lock:
            check()
            image = decode_upload(body, self.max_side)
            check()
            start = time.perf_counter()
            result = translate_image(self.model, image, self.device, check=check)
            self.seconds = time.perf_counter() - start
            return png_bytes(result)

    def retry_after(self) -> int:
        """Seconds until a refused upload is worth sending again: the queue's length times the last translation."""
        return max(1, math.ceil(self.seconds * self.capacity))

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up or stalls is one line; anything else keeps socketserver's traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            why = "timed out" if isinstance(error, TimeoutError) else f"closed the connection ({type(error).__name__})"
            self.log(f"client {client_address[0]}:{client_address[1]} {why}")
        else:
            super().handle_error(request, client_address)


def _to_stderr(line: str) -> None:
    print(f"imgtrans app: {line}", file=sys.stderr, flush=True)


class _Handler(BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.client_timeout  # a socket timeout on every read and write of this client
        super().setup()

    reading_body = False

    def log_message(self, format: str, *args) -> None:  # one quiet line per request, not stderr noise
        pass

    def log_error(self, format: str, *args) -> None:
        """http.server's own errors; of them, a client silent mid-upload is one line (an idle one is not news)."""
        if self.reading_body and (format % args).startswith("Request timed out"):
            who = f"client {self.client_address[0]}:{self.client_address[1]}"
            self.server.log(f"{who} timed out: silent for {self.server.client_timeout:g} s in the middle of its upload")

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

    def _error(self, status: HTTPStatus, message: str, extra: dict | None = None) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json", extra)

    def _discard_body(self) -> None:
        """Read and drop the request's body in pieces, so that the client gets the answer rather than a reset."""
        length = self.headers.get("Content-Length")
        if length is None and self.command != "POST":
            return  # no body
        if length is None or not length.isdigit() or int(length) > DISCARD_LIMIT:
            self.close_connection = True  # too much to read through, or no way to know where it ends
            return
        size = int(length)
        while size > 0:
            size -= len(chunk := self.rfile.read(min(1 << 20, size)) or b"")
            if not chunk:
                break

    def _refused(self) -> bool:
        """Answer ``403`` (and ``True``) for a request the [guard][imgtrans.app.guard] refuses."""
        guard, host = self.server.guard, self.headers.get("Host")
        problem = guard.host_problem(host)
        if problem is None and self.command == "POST":
            problem = guard.origin_problem(host, self.headers.get("Origin"), self.headers.get("Referer"))
        if problem is None:
            return False
        self._discard_body()
        self._error(HTTPStatus.FORBIDDEN, problem)
        return True

    def do_GET(self) -> None:
        if self._refused():
            return
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
        if self._refused():
            return
        if self.path.split("?")[0] != "/api/translate":
            self._discard_body()
            self._error(HTTPStatus.NOT_FOUND, f"nothing to post at {self.path}")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length header")
            return
        size, limit = int(length), self.server.max_upload_bytes
        if size > limit:
            self._discard_body()
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the upload is {size / 2**20:.1f} MiB; the limit is {limit / 2**20:.1f} MiB: upload a smaller image",
            )
            return
        if not self.server.admitted.acquire(blocking=False):
            self._discard_body()
            wait = self.server.retry_after()
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"the server is busy with other uploads; try again in {wait} s",
                        {"Retry-After": str(wait)})  # fmt: skip
            return
        try:
            self._translate(size)
        finally:
            self.server.admitted.release()

    def _translate(self, size: int) -> None:
        self.reading_body = True
        body = self.rfile.read(size)
        self.reading_body = False
        if len(body) < size:
            raise ClientGone(f"the client closed the connection after {len(body)} of {size} bytes")
        start = time.perf_counter()
        try:
            png = self.server.translate_png(body, lambda: client_gone(self.connection, self.rfile))
        except RefusedUpload as refusal:
            self._error(refusal.status, str(refusal))
            return
        except ClientGone:
            self.close_connection = True
            host, port = self.client_address[:2]
            self.server.log(f"client {host}:{port} left; its translation was dropped")
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
    allow_hosts: tuple[str, ...] = (),
    max_waiting: int = MAX_WAITING,
    client_timeout: float = CLIENT_TIMEOUT,
    log: Callable[[str], None] | None = None,
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
        allow_hosts: more ``Host`` names to answer to (a proxy's); see [guard][imgtrans.app.guard].
        max_waiting: uploads that may wait while one is translated; more are answered 503.
        client_timeout: seconds a client may stay silent before it is dropped.
        log: where the server's lines go (default: stderr, prefixed ``imgtrans app:``).

    Raises:
        OSError: the port is taken, or the address cannot be bound.
        ValueError: ``max_waiting`` below 0 or ``client_timeout`` not positive.
    """
    if max_waiting < 0 or not client_timeout > 0:
        raise ValueError(
            f"max_waiting must be at least 0 and client_timeout positive; got {max_waiting}, {client_timeout}"
        )
    try:
        return AppServer((host, port), model, palette, model_name, max_upload_bytes, max_side, device,
                         allow_hosts=tuple(allow_hosts), max_waiting=max_waiting, client_timeout=client_timeout,
                         log=log)  # fmt: skip
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {host} is already in use; pass another port (0 picks a free one)") from None
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
