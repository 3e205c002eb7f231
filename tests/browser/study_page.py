#!/usr/bin/env python3
"""The local rating page in headless Chromium, driven by selenium.

A rater opens an invitation link and votes through every item, with mouse
clicks on the radio buttons and the Submit button, with the keys 1/2/0, and
with both mixed. For every vote the expected arm is worked out from what the
browser actually displayed (which image, by content hash, was on the left),
and the database must then hold exactly those votes, un-swapped. A screenshot
of the page is kept in the build tree as a test artifact.

Fails (never skips) when chromium, chromedriver or selenium is missing:
scripts/setup.sh installs them. Environment: DPO (the binary), DPO_SOURCE_DIR,
DPO_BUILD_DIR (as ctest sets them).

No step depends on how fast the machine is: every wait is for a condition
(the server's port file, the next page fully loaded with its script run),
and the time limits only bound how long a broken run takes to fail.
"""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:
    sys.exit(f"FAIL: selenium is missing ({e}); run scripts/setup.sh")

DPO = os.environ.get("DPO") or sys.exit("FAIL: DPO must point at the dpo binary")
SOURCE = os.environ.get("DPO_SOURCE_DIR") or sys.exit("FAIL: DPO_SOURCE_DIR is not set")
BUILD = os.environ.get("DPO_BUILD_DIR") or sys.exit("FAIL: DPO_BUILD_DIR is not set")
HELPERS = os.path.join(SOURCE, "tests", "e2e", "study_helpers")
# Upper bounds for a broken run to fail in, far above what a loaded 2-core
# machine needs; a passing run never waits them out.
DEADLINE_S = 120
# The page starts its work-time clock before it is ready (rate.js runs before
# readyState is "complete"); waiting this long after readiness makes every
# measured work time at least this long, however fast the clicks are.
MIN_WORK_S = 0.02
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def find_browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        sys.exit("FAIL: chromium and chromedriver are needed (Debian chromium chromium-driver; scripts/setup.sh)")
    return chromium, driver


def start_browser(tmp):
    chromium, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # A profile of our own in this test's temp dir, removed with it.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900", "--disable-extensions", "--no-first-run",
                f"--user-data-dir={os.path.join(tmp, 'chromium-profile')}"):
        options.add_argument(arg)
    # selenium picks chromedriver's port by binding port 0 and closing it
    # again; another process can take the port before chromedriver binds it.
    # Only that start-up is tried again: nothing of the test has run yet.
    for attempt in range(3):
        try:
            return webdriver.Chrome(service=Service(executable_path=driver), options=options)
        except WebDriverException as e:
            print(f"chromedriver did not start (attempt {attempt + 1}): {e.msg}")
    sys.exit("FAIL: chromedriver did not start")


def start_server(tmp, db):
    port_file = os.path.join(tmp, "port.txt")
    log_path = os.path.join(tmp, "server.log")
    log = open(log_path, "w")
    server = subprocess.Popen([DPO, "study", "serve", "--db", db, "--port", "0", "--port-file", port_file],
                              stdout=log, stderr=log)
    # The server writes the port file atomically once it listens.
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and server.poll() is None:
        if os.path.exists(port_file):
            return server, int(open(port_file).read())
        time.sleep(0.05)
    server.kill()
    server.wait()
    sys.exit(f"FAIL: the rating server did not start (exit status {server.returncode}); log:\n"
             + open(log_path).read())


def image_hash(driver, element_id):
    return driver.find_element(By.ID, element_id).get_attribute("src").rsplit("/", 1)[1]


def page_state(driver):
    # One script call, so that the progress text and the load state are read
    # from the same document (a vote replaces the page).
    return driver.execute_script("var p = document.getElementById('progress');"
                                 "return [p ? p.textContent : '', document.readyState];")


def wait_for_page(driver, done):
    """Waits until the page after `done` votes is the current document and has
    finished loading. Its progress line alone is not enough: the line is in
    the HTML, but rate.js (which handles the keys 1/2/0 and starts the
    work-time clock) is fetched separately and has not run until readyState
    is "complete"; a key pressed before then is lost, so the vote never
    happens. Then waits MIN_WORK_S more, so the page's clock has advanced."""
    last = []

    def ready(d):
        try:
            last[:] = page_state(d)
        except WebDriverException:   # mid-navigation: no document to run in yet
            return False
        return last[0].startswith(f"{done} of ") and last[1] == "complete"

    try:
        WebDriverWait(driver, DEADLINE_S, poll_frequency=0.05).until(ready)
    except TimeoutException:
        sys.exit(f"FAIL: the page after {done} votes did not load within {DEADLINE_S} s (last seen: {last})")
    time.sleep(MIN_WORK_S)


def main():
    tmp = tempfile.mkdtemp(prefix="dpo-browser-")
    server = driver = None
    try:
        os.chdir(tmp)
        for run, model in (("runA", "base"), ("runB", "tuned")):
            subprocess.run([sys.executable, os.path.join(HELPERS, "make_run.py"), run, model, "--prompts", "2",
                            "--seeds", "2", "--size", "96", "--prompt-text", "p001=<b>bold</b> & a fox"], check=True)
        db = os.path.join(tmp, "s.db")
        subprocess.run([DPO, "-q", "study", "create", "--db", db, "--name", "s", "--a", "runA", "--b", "runB",
                        "--questions", "q1,q3", "--votes", "1", "--allow-tie", "--seed", "9"], check=True)
        invite = subprocess.run([DPO, "study", "invite", "--db", db, "--study", "s", "--raters", "1"], check=True,
                                capture_output=True, text=True).stdout.strip()
        token = invite.rsplit("/", 1)[1]
        con = sqlite3.connect(db)
        arm_of = {}
        for a, b in con.execute("SELECT ia.sha256, ib.sha256 FROM items i JOIN images ia ON ia.id = i.image_a "
                                "JOIN images ib ON ib.id = i.image_b"):
            arm_of[a], arm_of[b] = "a", "b"
        n_items = con.execute("SELECT count(*) FROM items").fetchone()[0]
        check(n_items == 4, f"4 items, got {n_items}")

        server, port = start_server(tmp, db)
        driver = start_browser(tmp)
        driver.get(f"http://127.0.0.1:{port}/r/{token}")
        # How each item is answered: ('click', q1, q3) clicks both radios and
        # Submit; ('keys', k1, k3) presses two keys (the form sends itself);
        # ('mixed', q1, k3) clicks q1 and answers q3 with a key.
        plans = [("click", "left", "right"), ("keys", "2", "1"), ("keys", "0", "0"), ("mixed", "right", "2")]
        key_side = {"1": "left", "2": "right", "0": "tie"}
        expected = {}
        seen = set()
        prompts_checked = 0
        for i, plan in enumerate(plans):
            wait_for_page(driver, i)
            check(f"{i} of {n_items} rated" in driver.find_element(By.ID, "progress").text, f"progress on item {i}")
            item = driver.find_element(By.NAME, "item").get_attribute("value")
            check(item not in seen, f"item {item} shown twice")
            seen.add(item)
            left, right = image_hash(driver, "left"), image_hash(driver, "right")
            check({arm_of.get(left), arm_of.get(right)} == {"a", "b"}, f"item {item}: one image of each arm")
            # The prompt is shown as text, never as markup.
            check(not driver.find_elements(By.CSS_SELECTOR, "#prompt b"), "prompt markup rendered")
            prompt = driver.find_element(By.ID, "prompt").text
            if "bold" in prompt:
                check(prompt == "<b>bold</b> & a fox", f"prompt shown as text: {prompt!r}")
                prompts_checked += 1
            kind, first, second = plan
            if kind == "click":
                driver.find_element(By.CSS_SELECTOR, f"input[name=q1][value={first}]").click()
                driver.find_element(By.CSS_SELECTOR, f"input[name=q3][value={second}]").click()
                if i == 0:
                    # Written under a name of its own and renamed into place,
                    # so that two runs at once never see each other's half file.
                    os.makedirs(os.path.join(BUILD, "artifacts"), exist_ok=True)
                    shot = os.path.join(BUILD, "artifacts", "study_page.png")
                    part = f"{shot}.{os.getpid()}.part"
                    saved = driver.save_screenshot(part) and os.path.getsize(part) > 1000
                    check(saved, "screenshot saved")
                    if saved:
                        os.replace(part, shot)
                    print("screenshot:", shot)
                driver.find_element(By.ID, "submit").click()
                shown = (first, second)
            elif kind == "keys":
                ActionChains(driver).send_keys(first).perform()
                check(driver.find_element(By.CSS_SELECTOR, f"input[name=q1][value={key_side[first]}]").is_selected(),
                      f"key {first} answers q1")
                ActionChains(driver).send_keys(second).perform()
                shown = (key_side[first], key_side[second])
            else:
                driver.find_element(By.CSS_SELECTOR, f"input[name=q1][value={first}]").click()
                ActionChains(driver).send_keys(second).perform()
                shown = (first, key_side[second])
            arms = {"left": arm_of[left], "right": arm_of[right], "tie": "tie"}
            expected[(item, "q1")] = (shown[0], arms[shown[0]])
            expected[(item, "q3")] = (shown[1], arms[shown[1]])
        wait_for_page(driver, n_items)
        check("All items are rated" in driver.find_element(By.ID, "done").text, "done page")

        got = {(item, q): (shown, choice) for item, q, shown, choice in con.execute(
            "SELECT item, question, shown, choice FROM study_votes WHERE rater_source = 'local'")}
        check(got == expected, f"votes in the database\n  got      {sorted(got.items())}\n  expected {sorted(expected.items())}")
        check(sum(1 for s, c in expected.values() if c == "tie") == 2, "two ties cast")
        check(prompts_checked == 2, f"the markup prompt (2 items) was checked {prompts_checked} times")
        work = [w for (w,) in con.execute("SELECT work_seconds FROM assignments")]
        check(len(work) == 4 and all(w > 0 for w in work), f"work time measured by the page: {work}")
        print(f"{len(got)} votes checked against what the browser displayed")
    finally:
        if driver:
            driver.quit()
        if server:
            # It commits and closes its database on SIGTERM; a slow disk may
            # take a while, which is no failure.
            server.terminate()
            try:
                server.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                failures.append(f"the rating server did not stop within {DEADLINE_S} s of SIGTERM")
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("all checks passed")


if __name__ == "__main__":
    main()
