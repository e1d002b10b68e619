"""The operator console in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver, against `python -m deploy.local` in demo mode (its own process).

It loads the console, starts syncs with the page's buttons, watches the orders bar reach 100 %,
opens a previewed profile and checks the request body shown, and saves a screenshot to
tests/artifacts/console.png. Without chromium it skips locally; under CI (CI=true, where .ci/run
installs it) a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.demo import shop
from tests.demo_server import ROOT, LocalServer, start_local

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1400")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[LocalServer]:
    server = start_local(tmp_path)
    try:
        server.wait_for("console:")
        yield server
    finally:
        server.stop()


def test_console_runs_a_sync_to_100_percent_and_shows_a_previewed_profile(
    browser: Any, demo: LocalServer
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    browser.get(demo.url + "/")
    assert "commercetools → Klaviyo" in browser.title
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#card-orders .status").text
               == "no job yet")
    wait.until(ec.visibility_of_element_located((By.ID, "preview")))  # demo: the sink is there
    assert browser.find_element(By.ID, "mode").text == "demo mode"

    browser.find_element(By.ID, "start-customers").click()
    wait.until(lambda d: d.find_element(By.ID, "pct-customers").text == "100 %")
    browser.find_element(By.ID, "start-orders").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "msg"), "orders sync started"))
    seen: set[str] = set()

    def orders_done(d: Any) -> bool:
        seen.add(d.find_element(By.ID, "pct-orders").text)
        return d.find_element(By.CSS_SELECTOR, "#card-orders .status").text == "completed" \
            and d.find_element(By.ID, "pct-orders").text == "100 %"

    wait.until(orders_done)
    bar = browser.find_element(By.ID, "bar-orders")
    assert "done" in bar.get_attribute("class")
    track = browser.find_element(By.CSS_SELECTOR, "#card-orders .track")
    wait.until(lambda d: bar.size["width"] == track.size["width"])  # after its .3 s transition
    numbers = browser.find_element(By.ID, "nums-orders").text
    assert f"read {shop.ORDERS} / {shop.ORDERS}" in numbers, numbers
    assert "ETA done" in numbers and "failed 0" in numbers

    # the preview: open Anna's profile and read the request fragment that wrote it
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.profiles-row")) ==
               shop.CUSTOMERS)

    def open_anna(d: Any) -> bool:  # the list re-renders when the sink changes: find it afresh
        row = next(r for r in d.find_elements(By.CSS_SELECTOR, "tr.profiles-row")
                   if "anna.schmidt@example.com" in r.text)
        assert shop.doc_id("customer", 0) in row.text
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
        row.click()
        return True

    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        open_anna)
    body = wait.until(ec.visibility_of_element_located(
        (By.CSS_SELECTOR, "#detail pre.request-body")))
    assert '"external_id": "' + shop.doc_id("customer", 0) + '"' in body.text
    assert '"email": "anna.schmidt@example.com"' in body.text
    assert "POST /api/profile-bulk-import-jobs" in browser.find_element(By.ID, "detail").text
    assert "anna.schmidt@example.com" in browser.find_element(By.CSS_SELECTOR, "tr.sel").text
    browser.execute_script("window.scrollTo(0, 0)")
    wait.until(lambda d: f"{shop.CUSTOMERS} profiles" in d.find_element(By.ID, "counts").text
               and " 0 events" not in d.find_element(By.ID, "counts").text)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
