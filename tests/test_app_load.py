"""``imgtrans app`` under load: bounded work, 503 beyond the queue, slow and vanished clients dropped in one line."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO

import pytest
import torch
from PIL import Image
from torch import nn

from imgtrans.app import FACADES, make_server


class Slow(nn.Module):
    """A stand-in generator: the identity, ``delay`` seconds a call, counting its calls (tiles)."""

    in_channels = out_channels = 3

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay, self.calls, self.running, self.most = delay, 0, 0, 0
        self.guard = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.guard:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self.guard:
            self.running -= 1
        return x.clone()


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)


def png(size) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, (0, 48, 254)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def start():
    servers = []

    def start(delay: float, **options):
        model, log = Slow(delay), Log()
        server = make_server(model, "127.0.0.1", 0, palette=FACADES, log=log, max_side=4096, **options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, model, log

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def post(server, body: bytes, timeout: float = 60) -> tuple[int, dict]:
    request = urllib.request.Request(server.url + "api/translate", data=body, headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, dict(error.headers)


def raw(server) -> socket.socket:
    connection = socket.create_connection(server.server_address[:2], timeout=30)
    return connection


def headers(server, length: int) -> bytes:
    host = f"127.0.0.1:{server.server_address[1]}"
    return f"POST /api/translate HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n\r\n".encode()


def wait_for(condition, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_burst_of_50_gets_answers_not_resets_with_one_translation_at_a_time(start):
    server, model, _ = start(0.05, max_waiting=3)
    body = png((64, 48))
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: post(server, body), range(50)))  # any reset raises here
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 4
    assert model.most == 1  # never two translations at once
    busy = [h for status, h in answers if status == 503]
    assert all(int(h["Retry-After"]) >= 1 for h in busy)
    assert model.calls == statuses.count(200)  # a refused upload costs no translation


def test_uploads_beyond_the_queue_get_503_and_the_queue_is_served(start):
    server, model, _ = start(0.3, max_waiting=1)
    body = png((64, 48))
    with ThreadPoolExecutor(6) as pool:
        first = [pool.submit(post, server, body) for _ in range(2)]  # one translated, one waiting
        assert wait_for(lambda: model.calls == 1)
        late = [pool.submit(post, server, body) for _ in range(4)]
        assert [f.result()[0] for f in late] == [503] * 4
        assert [f.result()[0] for f in first] == [200, 200]
    assert post(server, body)[0] == 200  # free again


@pytest.mark.parametrize("sent", [0, 500])
def test_a_client_that_stalls_mid_request_is_dropped_after_the_timeout(start, sent):
    server, model, log = start(0.01, client_timeout=0.5)
    connection = raw(server)
    began = time.monotonic()
    connection.sendall(headers(server, 1000) + b"\x00" * sent)  # promises 1000 bytes, sends `sent`, stalls
    connection.settimeout(10)
    assert connection.recv(1024) == b""  # the server closed it
    assert 0.4 < time.monotonic() - began < 5
    assert model.calls == 0
    assert wait_for(lambda: len(log) == 1) and "timed out" in log[0]
    connection.close()


def test_an_idle_connection_is_closed_after_the_timeout(start):
    server, _, log = start(0.01, client_timeout=0.5)
    connection = raw(server)
    connection.sendall(b"GET /api/config HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.server_address[1])  # unfinished
    connection.settimeout(10)
    assert connection.recv(1024) == b""
    connection.close()
    assert post(server, png((16, 16)))[0] == 200


def test_work_for_a_client_that_hung_up_before_its_turn_is_dropped(start):
    server, model, log = start(0.4)
    body = png((40, 40))
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(post, server, body)  # holds the model for 0.4 s
        assert wait_for(lambda: model.calls == 1)
        for _ in range(3):
            connection = raw(server)
            connection.sendall(headers(server, len(body)) + body)
            connection.close()  # hung up while waiting
        assert busy.result()[0] == 200
    assert wait_for(lambda: len(log) == 3)
    assert model.calls == 1
    assert all("left; its translation was dropped" in line for line in log)


def test_a_translation_in_tiles_stops_soon_after_the_client_hangs_up(start):
    server, model, log = start(0.3)
    body = png((2500, 2500))  # 9 tiles of 1024
    connection = raw(server)
    connection.sendall(headers(server, len(body)) + body)
    assert wait_for(lambda: model.calls >= 1)
    connection.close()
    assert wait_for(lambda: len(log) == 1)
    assert model.calls <= 3 and "dropped" in log[0]
    assert post(server, png((16, 16)))[0] == 200


def test_a_client_that_hangs_up_mid_body_is_one_quiet_line(start, capfd):
    server, model, log = start(0.01)
    for _ in range(5):
        connection = raw(server)
        connection.sendall(headers(server, 1000) + b"\x00" * 10)
        connection.close()
    assert wait_for(lambda: len(log) == 5)
    assert all("closed the connection" in line for line in log)
    assert "Traceback" not in capfd.readouterr().err
    assert model.calls == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--max-waiting", "-1"], "--max-waiting must be at least 0"),
        (["--client-timeout", "0"], "--client-timeout positive"),
    ],
)
def test_the_cli_checks_the_load_options(argv, words, capsys):
    from imgtrans.cli import main

    assert main(["app", "no-such-model", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
