"""The analysts' page in real headless Chromium: pick images, read each verdict, its plot and refusals from the DOM.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: apt-get install chromium chromium-driver); selenium uses
that driver (nothing is downloaded). Skipped without them.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from imgorigin.service import create_app, load_config
from test_service import build_world
from test_service_jobs import _free_port

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "no /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1000,800",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free 127.0.0.1 port, in a thread of this process."""
    root = tmp_path_factory.mktemp("service_page")
    config = load_config(build_world(root))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not (server.started and server.config.app.state.service.engines) and time.monotonic() < end:
        time.sleep(0.05)
    yield root, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def _verdict(driver, name: str) -> str:
    """The verdict the page shows for an image, once it is answered."""
    selector = f'.result[data-name="{name}"] .verdict'
    WebDriverWait(driver, 30).until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, selector)
            and d.find_element(By.CSS_SELECTOR, selector).text not in ("", "waiting…")
        )
    )
    return driver.find_element(By.CSS_SELECTOR, selector).text


def test_the_page_shows_verdicts_plots_and_refusals(server, browser, tmp_path):
    root, base = server
    for name, source in (("member.png", root / "members" / "0.png"), ("real.png", root / "real" / "0.png")):
        shutil.copy(source, tmp_path / name)
    (tmp_path / "empty.png").write_bytes(b"")
    browser.get(base + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option[value=tiny]"))
    assert "at most 5% of the model's own images are rejected" in browser.find_element(By.ID, "operating-point").text
    picker = browser.find_element(By.ID, "files")
    picker.send_keys("\n".join(str(tmp_path / n) for n in ("member.png", "real.png", "empty.png")))
    assert _verdict(browser, "member.png") == "member"
    assert _verdict(browser, "real.png") == "inconclusive"  # smoother than the tiny model's noise-like images
    assert _verdict(browser, "empty.png") == "refused: empty_file"
    member = browser.find_element(By.CSS_SELECTOR, '.result[data-name="member.png"]')
    assert "p = " in member.text and "(conformal)" in member.text and "at most 5%" in member.text
    bars = member.find_elements(By.CSS_SELECTOR, "svg.plot rect")
    assert len(bars) == 24 and member.find_elements(By.CSS_SELECTOR, "svg.plot line")
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=attribute]").click()
    assert "With confirm" in browser.find_element(By.ID, "operating-point").text
    browser.find_element(By.ID, "confirm").click()
    shutil.copy(root / "members" / "1.png", tmp_path / "second-member.png")
    browser.find_element(By.ID, "files").send_keys(str(tmp_path / "second-member.png"))
    assert _verdict(browser, "second-member.png") == "a"
    answer = browser.find_element(By.CSS_SELECTOR, '.result[data-name="second-member.png"]').text
    assert "rule: verification" in answer and "verified against a: member" in answer
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert [e["source"] for e in errors] == ["network"] and "422" in errors[0]["message"], errors  # the refusal only
