"""What the emulators share: the load model's utilisation names (profiles and `--utilisation`), and their listening socket."""

from __future__ import annotations

import argparse

import pytest

from conftest import run_cli
from labconsole.instruments.load_model import utilisation_arg, utilisation_source


def test_utilisation_arg_takes_names_and_numbers_in_range():
    assert [utilisation_arg(t) for t in ("workload", "host", "active", "0", "0.25", "1")] == ["workload", "host", "active", 0.0, 0.25, 1.0]
    for bad in ("2", "-0.1", "nan", "inf", "busy", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="a number in \\[0, 1\\]"):
            utilisation_arg(bad)
    assert utilisation_source(utilisation_arg("0.25"))() == 0.25


@pytest.mark.parametrize("emulator", ["wt310", "ptd", "lpm01a"])
def test_emulators_refuse_a_bad_utilisation_before_starting(emulator):
    r = run_cli("emulate", emulator, "--utilisation", "1.5", timeout=60)
    assert r.returncode == 2
    assert "argument --utilisation: must be workload, host, active or a number in [0, 1], not '1.5'" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("emulator,flag", [("wt310", "--port"), ("ptd", "-p")])
def test_emulators_name_a_port_in_use(emulator, flag):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run_cli("emulate", emulator, flag, str(port), timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.stderr and "[Errno" not in r.stderr


def test_an_emulators_lines_are_whole_writes_so_threads_cannot_split_them():
    """The PTD emulator's accept thread prints "Waiting for a connection..." while its main
    thread warns on stderr; print() writes a text and its newline apart, and on CI the warning
    once landed mid-line. `say` hands each line to the stream in one write."""
    from labconsole.emulators.registry import say

    class Writes:
        def __init__(self):
            self.calls: list[str] = []

        def write(self, text: str) -> int:
            self.calls.append(text)
            return len(text)

        def flush(self) -> None:
            self.calls.append("<flush>")

    out = Writes()
    say("warning: listening on 0.0.0.0: other machines can reach this emulator", out)
    assert out.calls == ["warning: listening on 0.0.0.0: other machines can reach this emulator\n", "<flush>"]
