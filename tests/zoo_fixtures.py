"""Local servers and an isolated environment for the zoo's tests: nothing here touches the internet.

- [FileServer]: plain HTTP on 127.0.0.1, like the reference implementation's download site; it can
  also send a truncated body.
- [HubServer]: the part of the Hugging Face Hub protocol that ``hf_hub_download`` speaks
  (``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` answered with ``X-Repo-Commit``,
  ``ETag`` and ``Content-Length``), checked against huggingface_hub 2.4's ``get_hf_file_metadata``.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dataclasses import replace

import huggingface_hub.constants
import pytest

from imgtrans import registry



def hub_settings(monkeypatch, **settings) -> None:
    """Set huggingface_hub's settings for this process (as its variables would at import) and its children.

    ``offline``, ``endpoint``, ``timeout``, ``home`` stand for ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``,
    ``HF_HUB_DOWNLOAD_TIMEOUT`` and ``HF_HOME`` (with ``HF_HUB_CACHE`` under it).
    """
    constants = huggingface_hub.constants
    for key, value in settings.items():
        if key == "home":
            for name, path in (("HF_HOME", Path(value)), ("HF_HUB_CACHE", Path(value) / "hub")):
                monkeypatch.setattr(constants, name, str(path))
                monkeypatch.setenv(name, str(path))
        elif key == "offline":
            monkeypatch.setattr(constants, "HF_HUB_OFFLINE", bool(value))
            monkeypatch.setenv("HF_HUB_OFFLINE", "1" if value else "0")
        elif key == "timeout":
            monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", value)
            monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", str(value))
        else:  # endpoint: huggingface_hub derives its URL template from HF_ENDPOINT at import, too
            monkeypatch.setattr(constants, "ENDPOINT", value)
            monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", value.rstrip("/") + "/{repo_id}/resolve/{revision}/{filename}")
            monkeypatch.setenv("HF_ENDPOINT", value)


def publish(monkeypatch, name: str, published, direction: str | None = "AtoB") -> None:
    """Give the registered ``name`` published weights, for one test."""
    monkeypatch.setitem(registry._ENTRIES, name, replace(registry.entry(name), published=published, direction=direction))


@pytest.fixture
def zoo_env(tmp_path, monkeypatch) -> Path:
    """A private ``HF_HOME``, online, with no mirror or endpoint that would reach the network; returns ``HF_HOME``."""
    monkeypatch.delenv("IMGTRANS_REFERENCE_URL", raising=False)
    hub_settings(monkeypatch, home=tmp_path / "hf", offline=False, endpoint="https://huggingface.co", timeout=10)
    return tmp_path / "hf"


class _Server:
    """An HTTP server on 127.0.0.1 in a background thread; ``url`` is its address."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.requests: list[tuple[str, str]] = []
        handler.server_state = self  # type: ignore[attr-defined]
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _FileHandler(BaseHTTPRequestHandler):
    server_state: "FileServer"

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        state = self.server_state
        state.requests.append(("GET", self.path))
        body = state.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # close early, as a dropped connection does
        else:
            self.wfile.write(body)


class FileServer(_Server):
    """Serves ``files`` (name -> bytes) at ``/NAME``; ``truncate`` sends half of each body, then closes."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.truncate = False
        super().__init__(type("Handler", (_FileHandler,), {}))


class _HubHandler(BaseHTTPRequestHandler):
    server_state: "HubServer"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, with_body: bool) -> None:
        state = self.server_state
        state.requests.append((self.command, self.path))
        # /{organisation}/{name}/resolve/{revision}/{filename}
        parts = self.path.split("?")[0].lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self.send_error(404)
            return
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repo = state.repos.get(repo_id)
        if repo is None or revision not in ("main", repo["commit"]) or filename not in repo["files"]:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound" if repo is None else "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = repo["files"][filename]
        self.send_response(200)
        self.send_header("X-Repo-Commit", repo["commit"])
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)


class HubServer(_Server):
    """A Hub that serves ``repos``: repo id -> ``{"commit": 40 hex digits, "files": {name: bytes}}``."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        super().__init__(type("Handler", (_HubHandler,), {}))

    def publish(self, repo_id: str, folder: Path, commit: str) -> None:
        """Serve every file of ``folder`` as repository ``repo_id`` at ``commit``."""
        files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
        self.repos[repo_id] = {"commit": commit, "files": files}


@pytest.fixture
def file_server():
    server = FileServer({})
    yield server
    server.stop()


@pytest.fixture
def hub_server():
    server = HubServer()
    yield server
    server.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers (the kernel queues them; nobody reads)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]
