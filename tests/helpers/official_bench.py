"""What tests of the official workflow need around power-dev on one machine: port 123 for the
SNTP responder both sides ask (waiting for another test module that holds it), and where the
unmodified power-dev is (../shared/vendor/power-dev, see its README)."""

from __future__ import annotations

import socket
import time

import pytest

from powerdev_real import POWER_DEV


def need_powerdev_and_ntp_port(wait_s: float = 180.0) -> None:
    """Skip unless power-dev is there and 127.0.0.1:123 can be bound (waiting a while for a
    module that holds it: the power-dev agreement test serves SNTP there during its session)."""
    if not (POWER_DEV / "compliance" / "check.py").is_file():
        pytest.skip(f"power-dev is not at {POWER_DEV} (see ../shared/vendor/README.md)")
    deadline = time.monotonic() + wait_s
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", 123))
            return
        except PermissionError:
            pytest.skip("cannot serve SNTP on 127.0.0.1:123, which power-dev's client and server ask (not allowed)")
        except OSError:
            if time.monotonic() > deadline:
                pytest.skip("127.0.0.1:123 stayed taken: no SNTP responder of ours for power-dev's client and server")
        finally:
            s.close()
        time.sleep(1.0)
