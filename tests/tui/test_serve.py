"""`labconsole serve`: the console in a real headless Chromium, through textual-serve.

Each test starts the real server on a free loopback port in its own process group and ends it
(and every console it started) before returning. Who may connect: loopback without a token;
any other bind (127.0.0.2 here: a loopback alias, but not the default, so it takes the same
path as 0.0.0.0 or a LAN address) only with the token printed at start. `--watch` consoles
follow the operator's run and refuse to start one."""

from __future__ import annotations

import http.client
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SIM_PROFILE, run_cli, write_profile
from helpers.chromium import chromium_driver, free_port, network_requests, press, screen_text, serve_process, wait_for_text, WEBSOCKET_TAP

pytest.importorskip("textual_serve")


@pytest.fixture
def bench(tmp_path) -> Path:
    return write_profile(tmp_path, SIM_PROFILE.format(recordings=tmp_path / "recordings", scenario="Offline", duration=3, sut="matmul",
                                                      sut_options="{size: 128, threads: 0}", idle=0.5, interval=0.05, workload_extra=""))


def _bundles(profile: Path) -> list[Path]:
    rec = profile.parent / "recordings"
    return sorted(p for p in rec.iterdir() if p.is_dir()) if rec.is_dir() else []


def _open(drv, url: str) -> None:
    drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WEBSOCKET_TAP})
    drv.get(url)


def _get(host: str, port: int, path: str, headers: dict | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


# --- who may connect, without a browser --------------------------------------------------------------


def test_token_needed_for_any_bind_but_the_default_loopback_names():
    from labconsole.tui.serve import DEFAULT_HOST, console_command, needs_token

    assert DEFAULT_HOST == "127.0.0.1"
    assert not needs_token("127.0.0.1") and not needs_token("localhost") and not needs_token("::1")
    for host in ("0.0.0.0", "::", "192.168.1.20", "127.0.0.2", "lab-pc.local"):
        assert needs_token(host)
    cmd = console_command("/tmp/a b/$(touch x);.yaml", watch=True)
    argv = shlex.split(cmd)
    assert argv[-3:] == ["--profile", "/tmp/a b/$(touch x);.yaml", "--watch"] and argv[1:4] == ["-m", "labconsole", "tui"]


def test_http_guard_on_loopback_and_with_a_token(bench):
    port = free_port()
    with serve_process("--port", str(port), "--profile", str(bench)) as (_, first):
        assert first == f"labconsole serve: http://127.0.0.1:{port}/ (this machine only; the full console: whoever opens it can start and abort runs)"
        assert _get("127.0.0.1", port, "/")[0] == 200
        with pytest.raises(ConnectionRefusedError):  # bound to 127.0.0.1 itself, not to every address
            _get("127.0.0.2", port, "/")
        assert _get("127.0.0.1", port, "/static/js/textual.js")[0] == 200
        # DNS rebinding: a page from elsewhere reaching 127.0.0.1 carries its own Host
        assert _get("127.0.0.1", port, "/", {"Host": f"attacker.example:{port}"})[0] == 403
        # another site's page opening the console's WebSocket (cross-site WebSocket hijacking)
        ws = {"Origin": "http://attacker.example", "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        assert _get("127.0.0.1", port, "/ws", ws)[0] == 403
    port = free_port("127.0.0.2")
    with serve_process("--host", "127.0.0.2", "--port", str(port), "--profile", str(bench)) as (_, first):
        assert first.startswith(f"labconsole serve: http://127.0.0.2:{port}/?token=")
        token = first.rsplit("token=", 1)[1]
        assert len(token) >= 32
        for path in ("/", "/static/js/textual.js", "/ws", f"/?token={token[:-1]}x"):
            status, body = _get("127.0.0.2", port, path)
            assert status == 403 and "token" in body, path
        status, body = _get("127.0.0.2", port, f"/?token={token}")
        assert status == 200 and "textual-terminal" in body and "fonts.googleapis" not in body


def test_serve_refuses_bad_arguments(bench, tmp_path):
    out = run_cli("serve", "--port", "0", "--profile", str(bench))
    assert out.returncode == 2 and "--port" in out.stderr
    out = run_cli("serve", "--profile", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "no such file" in out.stderr


# --- in a real browser ---------------------------------------------------------------------------------


def test_browser_sees_the_bench_and_starts_a_run_with_r_s(bench):
    port = free_port()
    with serve_process("--port", str(port), "--profile", str(bench)):
        with chromium_driver() as drv:
            _open(drv, f"http://127.0.0.1:{port}/")
            text = wait_for_text(drv, "BENCH", 60)
            assert "test-bench" in text
            assert _bundles(bench) == []
            press(drv, "r", "s")
            wait_for_text(drv, "run started", 30)
            deadline = time.monotonic() + 30
            while not _bundles(bench) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(_bundles(bench)) == 1, "no bundle: the run did not start"
            wait_for_text(drv, "[calibration]", 60)  # the Run screen's event log follows the run
            requests = {u.split("?")[0] for u in network_requests(drv) if u.startswith(("http", "ws"))}
            assert requests and all(u.startswith((f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/")) for u in requests), requests
        # the browser has gone: its console aborts the run and seals what was recorded
    (bundle,) = _bundles(bench)
    assert (bundle / "tagmanifest-sha256.txt").exists(), "the run was left unsealed"


def test_watch_follows_the_operators_run_and_r_s_start_nothing(bench):
    port = free_port()
    with serve_process("--port", str(port), "--profile", str(bench), "--watch") as (_, first):
        assert "observers" in first
        with chromium_driver() as drv:
            _open(drv, f"http://127.0.0.1:{port}/")
            wait_for_text(drv, "WATCH", 60)
            # the operator starts a run at the bench (here: headless, same profile)
            env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
            operator = subprocess.Popen([sys.executable, "-m", "labconsole", "run", "--profile", str(bench), "--quiet"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
            try:
                deadline = time.monotonic() + 30
                while not _bundles(bench) and time.monotonic() < deadline:
                    time.sleep(0.2)
                (bundle,) = _bundles(bench)
                wait_for_text(drv, f"watching {bundle.name}", 30)
                wait_for_text(drv, "[testing]", 90)  # the phase as the operator's run reaches it
                # the operator's meter, live: polled, since a browser behind on a loaded machine may
                # show the reading a frame after the phase name; four significant digits and a unit
                # ("138.2 W", "61.25 W", "1.002 kW")
                reading = re.compile(r"wall \d+(?:\.\d+)? k?W")
                deadline = time.monotonic() + 20
                while not reading.search(screen_text(drv)) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert reading.search(screen_text(drv)), "no live reading of the operator's meter"
                press(drv, "r", "s", "x", "g")
                out, err = operator.communicate(timeout=180)
            finally:
                if operator.poll() is None:
                    operator.kill()
                    operator.wait(timeout=30)
            assert operator.returncode == 0, err
            assert _bundles(bench) == [bundle], "an observer's keys started a run"
            text = wait_for_text(drv, "completed", 30)
            assert "run started" not in text and "Abort the run?" not in text
            # once the operator's run is over, r s still start nothing
            press(drv, "r", "s")
            time.sleep(4)
            assert _bundles(bench) == [bundle] and "run started" not in screen_text(drv)


def test_browser_without_the_token_is_refused_on_another_bind(bench):
    port = free_port("127.0.0.2")
    with serve_process("--host", "127.0.0.2", "--port", str(port), "--profile", str(bench)) as (_, first):
        token = first.rsplit("token=", 1)[1]
        with chromium_driver() as drv:
            _open(drv, f"http://127.0.0.2:{port}/")
            body = drv.find_element("tag name", "body").text
            assert "a token is needed" in body
            assert not drv.find_elements("css selector", ".xterm-screen")
            _open(drv, f"http://127.0.0.2:{port}/?token={token}")
            wait_for_text(drv, "BENCH", 60)  # the page's own requests (files, WebSocket) carry the cookie
