"""``imgtrans app`` in a real browser: Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by selenium.

The test draws strokes with the mouse and uploads a facades label map, waits for the output
image, and checks that it is the translation ``translate`` gives for the very pixels the page
sent (read back from the page's own "Download input" link). It also checks the refusals shown on
the page. It is skipped only when Chromium or its driver is not installed (``.ci/run`` installs
them).
"""

from __future__ import annotations

import base64
import functools
import shutil
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from imgtrans.app import FACADES, make_server
from imgtrans.images import image_to_tensor as to_tensor
from imgtrans.inference import translate

from conftest import SHARED

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "Chromium or chromedriver is absent: `apt-get install chromium chromium-driver` to run the browser test",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402  (the dev extra installs selenium)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# The flags a closed network needs: without them Chromium stalls on its background requests.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000",
         "--host-resolver-rules=MAP rebind.test 127.0.0.1")  # fmt: skip
# (rebind.test resolves to this machine, as a DNS-rebinding site's name does once rebound)


@pytest.fixture(scope="module")
def model(tiny_facades):
    return tiny_facades


@pytest.fixture(scope="module")
def server(model):
    server = make_server(model, "127.0.0.1", 0, palette=FACADES, model_name="tiny facades", max_upload_bytes=300_000)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="imgtrans-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(browser, server):
    browser.get(server.url)
    body = browser.find_element(By.TAG_NAME, "body")
    WebDriverWait(browser, 30).until(lambda d: body.get_attribute("data-ready") == "true")
    wait_for_output(browser, 1)  # the example is translated on load


def wait_for_output(browser, seq: int) -> None:
    WebDriverWait(browser, 60).until(lambda d: int(d.find_element(By.ID, "output").get_attribute("data-seq")) >= seq)


def fetch_bytes(browser, url: str) -> bytes:
    """The bytes behind a URL of the page (a blob: URL of a download link or of the output image)."""
    encoded = browser.execute_async_script(
        """const [url, done] = arguments;
        fetch(url).then(r => r.arrayBuffer()).then(b => {
            let s = ""; const a = new Uint8Array(b);
            for (let i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);
            done(btoa(s));
        }).catch(e => done("ERROR " + e));""",
        url,
    )
    assert not encoded.startswith("ERROR"), f"the page could not read {url}: {encoded}"
    return base64.b64decode(encoded)


def check_translation(browser, model) -> tuple[Image.Image, np.ndarray]:
    """The input the page sent and the output it shows; asserts output == translate(input) up to 8-bit rounding."""
    link = browser.find_element(By.ID, "download-input").get_attribute("href")
    sent = Image.open(BytesIO(fetch_bytes(browser, link)))
    shown = Image.open(BytesIO(fetch_bytes(browser, browser.find_element(By.ID, "output").get_attribute("src"))))
    assert shown.size == sent.size
    y = translate(model, to_tensor(sent.convert("RGB")).unsqueeze(0))[0]
    want = ((y.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
    # The PNG holds each output value rounded to 8 bits: at most half a level from the float.
    assert np.abs(np.asarray(shown.convert("RGB"), np.float32) - want).max() <= 0.5 + 1e-3
    return sent.convert("RGB"), np.asarray(shown)


def test_drawing_strokes_shows_their_translation(browser, server, model):
    open_page(browser, server)
    before, _ = check_translation(browser, model)  # the example, translated on load
    canvas = browser.find_element(By.ID, "canvas")
    browser.find_element(By.ID, "label-balcony").click()
    size = browser.find_element(By.ID, "brush-size")
    browser.execute_script("arguments[0].value = 20; arguments[0].dispatchEvent(new Event('input'))", size)
    # the canvas is 256 px shown at 512: offsets are in screen pixels from its centre
    ActionChains(browser).move_to_element_with_offset(canvas, -200, -150).click_and_hold() \
        .move_by_offset(150, 0).move_by_offset(150, 40).move_by_offset(60, 200).release().perform()
    wait_for_output(browser, 2)
    drawn, _ = check_translation(browser, model)
    pixels = np.asarray(drawn).reshape(-1, 3)
    balcony = np.all(pixels == FACADES.colour("balcony"), axis=1).sum()
    assert balcony > 2000  # a stroke 20 px wide and about 200 px long, in the exact palette colour
    # no blended colours: every changed pixel is a palette colour (the example's own were already)
    palette = {c for _, c in FACADES.classes}
    changed = np.any(np.asarray(drawn) != np.asarray(before), axis=-1)
    assert {tuple(p) for p in np.asarray(drawn)[changed]} <= palette
    # a rectangle, then the eraser
    browser.find_element(By.ID, "tool-rect").click()
    browser.find_element(By.ID, "label-door").click()
    ActionChains(browser).move_to_element_with_offset(canvas, 100, 100).click_and_hold() \
        .move_by_offset(80, 120).release().perform()
    wait_for_output(browser, 3)
    drawn, _ = check_translation(browser, model)
    door = np.all(np.asarray(drawn) == FACADES.colour("door"), axis=-1)
    rows, cols = np.nonzero(door[128:, 128:])
    assert door[128:, 128:].sum() >= 38 * 58 and rows.max() - rows.min() >= 55
    browser.find_element(By.ID, "tool-eraser").click()
    ActionChains(browser).move_to_element_with_offset(canvas, 140, 160).click_and_hold() \
        .move_by_offset(0, 1).release().perform()
    wait_for_output(browser, 4)
    erased, _ = check_translation(browser, model)
    assert np.all(np.asarray(erased)[128 + 80, 128 + 70] == FACADES.colour("facade"))


def test_uploading_a_label_map_shows_its_translation(browser, server, model, tmp_path):
    labels = sorted((SHARED / "data" / "facades" / "test").glob("*.jpg"))
    if labels:  # a real CMP label map (the right half of a test pair), as a PNG of its own size
        with Image.open(labels[0]) as ab:
            label_map = ab.convert("RGB").crop((256, 0, 512, 256))
    else:
        from imgtrans.app.palettes import drawn_facade

        label_map = drawn_facade(200)
    label_map = label_map.resize((300, 220))  # any size: the U-Net pads and crops back
    path = tmp_path / "labels.png"
    label_map.save(path)
    open_page(browser, server)
    browser.find_element(By.ID, "mode-upload").click()
    browser.find_element(By.ID, "upload").send_keys(str(path))
    wait_for_output(browser, 2)
    sent, shown = check_translation(browser, model)
    assert sent.size == (300, 220) and shown.shape[:2] == (220, 300)
    assert np.array_equal(np.asarray(sent), np.asarray(label_map))


def test_refusals_appear_on_the_page(browser, server, tmp_path):
    open_page(browser, server)
    browser.find_element(By.ID, "mode-upload").click()
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    browser.find_element(By.ID, "upload").send_keys(str(text))
    message = browser.find_element(By.ID, "message")
    WebDriverWait(browser, 30).until(lambda d: message.is_displayed())
    assert "not an image that can be read" in message.text
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 300_000
    browser.find_element(By.ID, "upload").send_keys(str(big))
    WebDriverWait(browser, 30).until(lambda d: "limit is 0.3 MiB" in message.text)
    assert int(browser.find_element(By.ID, "output").get_attribute("data-seq")) == 1  # nothing new was shown


POST = """
const done = arguments[arguments.length - 1];
fetch(arguments[0], {method: "POST", mode: arguments[1], body: new Blob(["not even an image"])})
  .then(r => done(r.type === "opaque" ? "opaque" : String(r.status)), e => done("error " + e));
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_another_site_or_a_rebound_name_cannot_use_the_server(browser, server, tmp_path, monkeypatch):
    calls = []
    original = server.translate_png
    counted = lambda body, gone=lambda: False: calls.append(1) or original(body, gone)  # noqa: E731
    monkeypatch.setattr(server, "translate_png", counted)
    port = server.server_address[1]
    endpoint = f"{server.url}api/translate"

    browser.get(f"http://rebind.test:{port}/")  # DNS rebinding: the server's own address under the site's name
    assert "a guard against DNS rebinding" in browser.find_element(By.TAG_NAME, "body").text
    assert browser.execute_async_script(POST, f"http://rebind.test:{port}/api/translate", "same-origin") == "403"

    (tmp_path / "attack.html").write_text("<!doctype html><title>another site</title><p>hello</p>")
    other = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{other.server_address[1]}/attack.html")  # another origin: another port
        assert browser.execute_async_script(POST, endpoint, "no-cors") == "opaque"  # sent; the answer is hidden
        time.sleep(0.5)
        assert calls == []
    finally:
        other.shutdown()
        other.server_close()
    open_page(browser, server)  # the page itself: the same request reaches the model's door (415: it is no image)
    assert browser.execute_async_script(POST, endpoint, "same-origin") == "415" and calls
