"""A dataset server on 127.0.0.1 that speaks HTTP ``Range``, and archives built in the test.

[RangeServer] serves ``files`` (name -> bytes) at ``/NAME``. Each request may be given a
behaviour from the queue ``plans[NAME]`` (the first request takes the first entry, and so on;
an empty queue means "answer normally"):

- ``("cut", n)``: announce the full length, send ``n`` bytes, then drop the connection;
- ``("ignore-range",)``: answer ``200`` with the whole body even when a ``Range`` was asked for;
- ``("body", data)``: serve ``data`` instead of the file, once (a corrupt copy, say).

Every request is recorded as ``(path, Range header or None)``.
"""

from __future__ import annotations

import io
import socket
import tarfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from zoo_fixtures import _Server


class _RangeHandler(BaseHTTPRequestHandler):
    server_state: "RangeServer"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server_state
        name = self.path.lstrip("/")
        asked = self.headers.get("Range")
        state.requests.append((self.path, asked))
        body = state.files.get(name)
        if body is None:
            self.send_error(404)
            return
        plan = state.plans.get(name, [])
        step = plan.pop(0) if plan else ("normal",)
        if step[0] == "body":
            body = step[1]
        start = 0
        if asked and step[0] != "ignore-range":
            start = int(asked.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if step[0] == "cut":
            self.wfile.write(body[start : start + step[1]])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # as a dropped connection does
        else:
            self.wfile.write(body[start:])


class RangeServer(_Server):
    """Serves ``files`` at ``/NAME`` with ``Range`` support; ``plans`` script misbehaviour per request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.plans: dict[str, list[tuple]] = {}
        super().__init__(type("Handler", (_RangeHandler,), {}))


@pytest.fixture
def range_server():
    server = RangeServer()
    yield server
    server.stop()


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A ``.tar.gz`` in memory holding ``members`` (``TarInfo``, data or ``None``) as given, unchecked."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def link_member(name: str, target: str, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def dataset_archive(folder: Path, name: str = "facades") -> bytes:
    """``NAME/SPLIT/FILE`` for every file of ``folder/SPLIT/``, as the reference archives are laid out."""
    members = [
        file_member(f"{name}/{path.parent.name}/{path.name}", path.read_bytes())
        for path in sorted(folder.glob("*/*"))
        if path.is_file()
    ]
    return tar_gz(members)
