"""``imgtrans app`` answers only its own address and its own page: the DNS-rebinding and cross-site defences."""

from __future__ import annotations

import http.client
import json
import threading
from io import BytesIO

import pytest
from PIL import Image

from imgtrans.app import FACADES, make_server
from imgtrans.app.guard import Guard, split_host
from imgtrans.cli import build_parser


def png(size=(24, 16)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, (0, 48, 254)).save(buffer, format="PNG")
    return buffer.getvalue()


def serve(model, host="127.0.0.1", **options):
    server = make_server(model, host, 0, palette=FACADES, log=lambda line: None, **options)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(tiny_facades):
    server = serve(tiny_facades)
    yield server
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, host: str | None, headers: dict | None = None, body: bytes | None = None):
    """``method path`` with exactly the ``Host`` given (``None``: no Host header at all); ``(status, body)``."""
    address, port = server.server_address[:2]
    connection = http.client.HTTPConnection(address, port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host)
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def port(server) -> int:
    return server.server_address[1]


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.evil.example:{port}",  # a name that starts like the address
        "localhost.evil.example:{port}",
        "127.0.0.1:{other}",  # the right name on another port: what a rebinding attack to port 80 sends
        "localhost",  # no port: port 80, not this server's
        "[::2]:{port}",
        "127.0.0.1:{port}@evil.example",
        "127.0.0.1:{port}/x",
        "",
        None,  # no Host header at all
    ],
)
def test_a_foreign_host_is_refused(server, host):
    if host is not None:
        host = host.format(port=port(server), other=port(server) + 1)
    for method, path, body in (("GET", "/", None), ("GET", "/api/config", None), ("POST", "/api/translate", png())):
        status, answer = request(server, method, path, host, body=body)
        assert status == 403, (method, path, host)
        message = json.loads(answer)["error"]
        assert "--allow-host NAME" in message and f"127.0.0.1:{port(server)}" in message
        assert b"<html" not in answer.lower()


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}", "[::1]:{port}"])
def test_the_names_of_this_machine_are_answered(server, host):
    host = host.format(port=port(server))
    assert request(server, "GET", "/", host)[0] == 200
    assert request(server, "POST", "/api/translate", host, body=png())[0] == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a file: page
        {"Origin": "http://127.0.0.1:{other}"},  # another local server's page
        {"Origin": "http://localhost:{port}"},  # another name than the one the request is for
        {"Referer": "http://evil.example/page.html"},
        {"Origin": "http://evil.example", "Referer": "http://127.0.0.1:{port}/"},  # Origin wins
    ],
)
def test_a_post_from_another_site_is_refused(server, headers):
    headers = {k: v.format(port=port(server), other=port(server) + 1) for k, v in headers.items()}
    status, answer = request(server, "POST", "/api/translate", f"127.0.0.1:{port(server)}", headers, png())
    assert status == 403
    assert "requests from other sites are refused" in json.loads(answer)["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, a script
        {"Origin": "http://127.0.0.1:{port}"},
        {"Referer": "http://127.0.0.1:{port}/"},
        {"Origin": "http://127.0.0.1:{port}", "Referer": "http://127.0.0.1:{port}/?x=1"},
    ],
)
def test_same_origin_and_headerless_posts_are_answered(server, headers):
    headers = {k: v.format(port=port(server)) for k, v in headers.items()}
    status, answer = request(server, "POST", "/api/translate", f"127.0.0.1:{port(server)}", headers, png())
    assert status == 200 and answer.startswith(b"\x89PNG")


def test_the_host_given_and_allowed_names_are_answered(tiny_facades):
    server = serve(tiny_facades, "127.0.0.2", allow_hosts=("proxy.example",))
    try:
        own = f"127.0.0.2:{port(server)}"
        assert request(server, "GET", "/", own)[0] == 200
        assert request(server, "GET", "/", "proxy.example")[0] == 200  # a proxy's name, on any port
        assert request(server, "GET", "/", "PROXY.example:443")[0] == 200
        assert request(server, "GET", "/", "evil.example")[0] == 403
        assert request(server, "POST", "/api/translate", own, {"Origin": f"http://{own}"}, png())[0] == 200
        origin = {"Origin": "http://evil.example"}
        assert request(server, "POST", "/api/translate", "proxy.example", origin, png())[0] == 403
        origin = {"Origin": "https://proxy.example"}  # behind a proxy that speaks TLS
        assert request(server, "POST", "/api/translate", "proxy.example", origin, png())[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_every_interface_answers_any_name_but_still_refuses_other_sites():
    guard = Guard("0.0.0.0", 7860)
    assert guard.host_problem("myspace.hf.space") is None and guard.host_problem("10.0.0.3:7860") is None
    assert guard.origin_problem("myspace.hf.space", "https://myspace.hf.space", None) is None
    assert "other sites" in guard.origin_problem("myspace.hf.space", "https://evil.example", None)
    narrowed = Guard("0.0.0.0", 7860, ("myspace.hf.space",))
    assert narrowed.host_problem("myspace.hf.space") is None and narrowed.host_problem("evil.example") is not None


def test_host_headers_are_parsed_strictly():
    assert split_host("LocalHost:80") == ("localhost", 80)
    assert split_host("[::1]:7860") == ("::1", 7860)
    assert split_host("example.org") == ("example.org", None)
    for bad in ("::1:7860", "a:b", "a:80:90", "[::1", "a@b:80", "a b", ":80"):
        assert split_host(bad) is None, bad


def test_the_cli_takes_allowed_names():
    args = build_parser().parse_args(["app", "m", "--allow-host", "a.example", "--allow-host", "b.example"])
    assert args.allow_host == ["a.example", "b.example"]
