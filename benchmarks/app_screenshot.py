#!/usr/bin/env python3
"""A screenshot of the real `imgtrans app` page in headless Chromium, for the docs.

    python benchmarks/app_screenshot.py MODEL docs/figures/app.png

Serves MODEL (a zoo name, saved folder, run folder or checkpoint) on 127.0.0.1, opens the page in
Debian's Chromium with selenium, draws a balcony stroke over the starting example with the mouse,
waits for its translation, and saves the window.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from imgtrans.app import make_server, palette_for
from imgtrans.store.factory import load as load_model

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1340,960")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--name", help="the model's name shown on the page (default: MODEL)")
    args = parser.parse_args()
    model = load_model(args.model)
    server = make_server(model, "127.0.0.1", 0, palette=palette_for(args.model, model.config.name),
                         model_name=args.name or args.model)  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp()}")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(server.url)
        output = driver.find_element(By.ID, "output")
        WebDriverWait(driver, 60).until(lambda d: output.get_attribute("data-seq") == "1")
        driver.find_element(By.ID, "label-balcony").click()
        canvas = driver.find_element(By.ID, "canvas")
        ActionChains(driver).move_to_element_with_offset(canvas, -180, 40).click_and_hold() \
            .move_by_offset(120, 0).release().perform()
        WebDriverWait(driver, 60).until(lambda d: output.get_attribute("data-seq") == "2")
        driver.save_screenshot(args.out)
        print(f"wrote {args.out}: {driver.find_element(By.ID, 'status').text}")
    finally:
        driver.quit()
        server.shutdown()


if __name__ == "__main__":
    main()
