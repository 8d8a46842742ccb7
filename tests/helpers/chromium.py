"""Real headless Chromium for tests (Debian's chromium + chromium-driver, driven by selenium).

`chromium_driver()` starts Chromium with a fresh profile and no background networking, with
the performance log on, so a test can list every network request a page made (CDP
Network.requestWillBeSent events). Tests skip, saying what to install, when it is absent.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--no-default-browser-check",
    "--disable-dev-shm-usage", "--window-size=1280,1000",
)


def find_chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (str(Path("/usr/bin/chromedriver")) if Path("/usr/bin/chromedriver").exists() else None)
    if browser is None or driver is None:
        return None
    return browser, driver


def require_chromium() -> tuple[str, str]:
    found = find_chromium()
    if found is None:
        pytest.skip("needs Chromium and its driver: apt-get install chromium chromium-driver (.ci/run installs them)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("needs selenium (pip install -e '.[test]')")
    return found


@contextlib.contextmanager
def chromium_driver():
    """A selenium WebDriver on a fresh headless Chromium; quit (browser and driver ended) on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = require_chromium()
    profile = tempfile.mkdtemp(prefix="labconsole-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(executable_path=driver_path)
    drv = webdriver.Chrome(options=opts, service=service)
    try:
        yield drv
    finally:
        drv.quit()  # ends Chromium and chromedriver, and waits for them
        shutil.rmtree(profile, ignore_errors=True)


def network_requests(drv) -> list[str]:
    """URLs of every request the pages made since the last call (CDP Network events)."""
    urls = []
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def screenshot_stats(drv) -> tuple[int, int]:
    """(distinct colours, non-background pixels) of a screenshot: a blank page has 1 colour."""
    from PIL import Image

    png = base64.b64decode(drv.get_screenshot_as_base64())
    img = Image.open(io.BytesIO(png)).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20)
    bg = max(colours)[1] if colours else None
    others = sum(n for n, c in colours if c != bg) if colours else 0
    return len(colours or []), others


# --- the console in a browser (labconsole serve) ----------------------------------------------

# Injected before the page's own scripts: keeps what the console sends over the WebSocket, so a
# test can read the screen (xterm.js draws on a canvas: the text is not in the DOM).
WEBSOCKET_TAP = r"""
(() => {
  const Native = window.WebSocket;
  window.__labconsole_rx = [];
  function Tapped(url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    ws.addEventListener('message', (e) => {
      if (typeof e.data !== 'string') window.__labconsole_rx.push(new TextDecoder().decode(new Uint8Array(e.data)));
    });
    return ws;
  }
  Tapped.prototype = Native.prototype;
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Tapped[k] = Native[k];
  window.WebSocket = Tapped;
})();
"""

_ANSI = None


def screen_text(drv) -> str:
    """Everything the console has drawn so far, escape sequences removed."""
    import re

    global _ANSI
    if _ANSI is None:
        _ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x1b[=>78]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1bP[^\x1b]*\x1b\\")
    raw = "".join(drv.execute_script("return window.__labconsole_rx || []"))
    return _ANSI.sub("", raw)


def wait_for_text(drv, wanted: str, timeout: float = 30.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    while True:
        text = screen_text(drv)
        if wanted in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{wanted!r} not drawn within {timeout:g} s; the screen so far ends with:\n{text[-2000:]}")
        time.sleep(0.25)


def press(drv, *keys: str, pause: float = 1.0) -> None:
    """Keys typed into the console's terminal, as a user at the browser would."""
    import time

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    drv.find_element(By.CSS_SELECTOR, ".xterm-screen").click()
    for k in keys:
        ActionChains(drv).send_keys(k).perform()
        time.sleep(pause)


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_process(*args: str, cwd: Path | None = None, env: dict | None = None):
    """`labconsole serve ARGS` in its own process group; yields (process, first line printed).

    On exit: SIGTERM to the server (it closes each console, which seals any run), a wait, and
    a SIGKILL to whatever of its group is still there, so no test leaves a process behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "labconsole", "serve", *args], cwd=str(cwd or ROOT), env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()
        if not first.startswith("labconsole serve:"):
            rest = proc.stdout.read() if proc.poll() is not None else ""
            raise AssertionError(f"serve did not start: {first}{rest}")
        yield proc, first.strip()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        deadline = time.monotonic() + 60  # consoles sealing a run end on their own
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
