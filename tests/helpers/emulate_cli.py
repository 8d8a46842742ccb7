"""`labconsole emulate NAME` started as an operator starts it (a real process on loopback, a free
port), for tests that add an instrument by its address; always stopped and waited for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT_LINES = {
    "wt310": re.compile(r"listening on 127\.0\.0\.1:(\d+)"),
    "ptd": re.compile(r"listener on port (\d+)"),
}
PORT_ARGS = {"wt310": ["--port", "0"], "ptd": ["-p", "0"]}


@contextmanager
def emulate(name: str, timeout_s: float = 30.0):
    """Yields the port the emulator listens on (127.0.0.1)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    drain = None
    proc = subprocess.Popen([sys.executable, "-u", "-m", "labconsole", "emulate", name, *PORT_ARGS[name]], cwd=str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = None
        deadline = time.monotonic() + timeout_s
        seen = []
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = PORT_LINES[name].search(line)
            if m:
                port = int(m.group(1))
        assert port is not None, f"labconsole emulate {name} did not say its port: {''.join(seen)[-2000:]}"
        # keep reading what it prints (PTD logs every command), so a full pipe never blocks it
        drain = threading.Thread(target=lambda: [None for _ in proc.stdout], name=f"drain-{name}", daemon=True)
        drain.start()
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if drain is not None:
            drain.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
