#!/usr/bin/env python3
"""Opens report.html in headless Chromium (Debian's chromium + chromedriver,
driven by selenium from .venv) and fails on any console error, on charts
that did not render, or on gallery images that did not decode. Saves a
full-page screenshot.

usage: report_browser.py REPORT_HTML SCREENSHOT_PNG
"""
import os, shutil, sys, tempfile


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def main():
    html, shot = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        fail("chromium and chromedriver are required (Debian: chromium chromium-driver; scripts/setup.sh installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        fail("selenium is not installed in this Python (run scripts/setup.sh --no-build for .venv)")
    profile = tempfile.mkdtemp(prefix="dpo-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1300,1000", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.get("file://" + html)
        state = driver.execute_script("return document.readyState")
        if state != "complete":
            fail(f"document not loaded: {state}")
        errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
        for e in errors:
            print("console:", e.get("level"), e.get("message"))
        if errors:
            fail(f"{len(errors)} console error(s)")
        charts = driver.execute_script(
            "return Array.from(document.querySelectorAll('svg.chart')).map(s => s.getBoundingClientRect().height)")
        if len(charts) < 4 or min(charts) < 50:
            fail(f"charts did not render: heights {charts}")
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        if not images or not all(c and w > 0 for c, w in images):
            fail(f"gallery images did not decode: {images}")
        title = driver.title
        if title != "Win-rate report":
            fail(f"title {title!r}")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1300, min(max(height + 40, 1000), 16000))
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        if not driver.save_screenshot(shot):
            fail("screenshot not written")
        print(f"{len(charts)} charts, {len(images)} images, no console errors; screenshot: {shot}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
