"""The Gradio app in a real headless browser (Debian's chromium and chromium-driver, driven by Selenium): upload
RG1_UNCR.dcm, generate, step the fixation slider, screenshot; the page loads nothing from outside the app."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from modeling_gaze2report.app import Gaze2ReportApp
from modeling_gaze2report.data.render import PREDICTED_COLOUR

from .test_app import free_port, save_app_model

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        message = "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1200",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def app_url(tmp_path, tiny_processor):
    app = Gaze2ReportApp(save_app_model(tmp_path / "model", tiny_processor))
    port = free_port()
    app.launch(host="127.0.0.1", port=port, block=False)
    yield f"http://127.0.0.1:{port}"
    app.close()


def requested_urls(driver) -> set[str]:
    """Every URL the page requested, from chromium's performance log."""
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


def test_upload_generate_step_and_screenshot(browser, app_url, rg1_uncr, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def text_of(selector):
        return browser.find_element(By.CSS_SELECTOR, selector).text

    def overlay_source():
        images = browser.find_elements(By.CSS_SELECTOR, "#overlay img")
        loaded = images and browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", images[0]
        )
        return images[0].get_attribute("src") if loaded else None

    wait = WebDriverWait(browser, 60)
    browser.get(app_url)
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#image-file input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#image-file input[type=file]").send_keys(str(rg1_uncr))
    preview = wait.until(lambda driver: overlay_source())
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    report = wait.until(lambda driver: driver.find_element(By.CSS_SELECTOR, "#report textarea").get_attribute("value"))
    assert report.strip()
    wait.until(lambda driver: text_of("#fixation-detail").startswith("Fixation 16 of 16"))
    generated = overlay_source()
    assert generated and generated != preview

    slider = browser.find_element(By.CSS_SELECTOR, "#fixations-shown input[type=range]")
    for _ in range(3):
        slider.send_keys(Keys.ARROW_LEFT)
    wait.until(lambda driver: text_of("#fixation-detail").startswith("Fixation 13 of 16"))
    wait.until(lambda driver: overlay_source() not in (None, generated))

    screenshot = tmp_path / "app.png"
    assert browser.save_screenshot(str(screenshot))
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.int16)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000, "blank screenshot"
    box = browser.find_element(By.CSS_SELECTOR, "#overlay img").rect  # CSS pixels; the screenshot's scale is 1
    shown = pixels[round(box["y"]) : round(box["y"] + box["height"]), round(box["x"]) : round(box["x"] + box["width"])]
    assert shown.size and (np.abs(shown - PREDICTED_COLOUR).max(axis=-1) < 40).sum() > 300, "no scanpath on screen"

    outside = [url for url in requested_urls(browser) if not url.startswith((app_url, "data:", "blob:"))]
    assert outside == [], f"the page requested resources outside the app: {outside}"
