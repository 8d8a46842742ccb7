"""The transcript: the exchanges a driver must have with its instrument, checked one by one.

A transcript is a list of exchanges `(command, reply)`. Each command the driver sends must be
the next one in the list; its reply is what the instrument answers. When the test is over,
`assert_done()` fails on an exchange that never happened and on anything that went wrong on
the way (a wrong command, a command after the end), naming the exchange by its number:

    exchange 3 of 12: expected ':RATE?', got ':RATE 1S'

A mismatch raises `TranscriptError` (an AssertionError) where it happens, and is also kept:
drivers that turn every exception of their link into their own error (as they should) cannot
hide it, because `assert_done()` reports it again.

Replies. What a transport makes of each kind is in its own module; in short:

* a str: one reply (a line on line-based links); a list of str: several lines;
* bytes: sent exactly as they are (garbage, a truncated line, a binary frame; see GARBAGE);
* None: the command has no reply (a setting that is only written);
* TIMEOUT: a reply is due and never comes (a hung instrument);
* CLOSE: the instrument drops the link instead of answering;
* an exception instance: raised where the driver reads (VISA);
* a callable: called when the command arrives, returning any of the above (a reply that
  depends on the time it is sent, say).

The transports (`labconsole.testing.visa`, `.tcp`, `.serial_port`) take a list of exchanges or
a `Transcript`; a test of your own driver looks like this (VISA):

    from labconsole.testing.transcript import TIMEOUT
    from labconsole.testing.visa import expected_protocol

    def test_my_meter_reads_once_per_update():
        transcript = [("*IDN?", "ACME,PM1,123,1.0"), ("MEAS:POW?", "12.5"), ("MEAS:POW?", TIMEOUT)]
        with expected_protocol(MyMeterSource, transcript) as src:
            src.open()
            assert src.read(1.0)[0].samples[0]["watts"] == 12.5
            with pytest.raises(SourceError, match="did not answer"):
                src.read(1.0)
        # leaving the block asserted that all three exchanges happened, and nothing else
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Sequence


class Fault:
    """A sentinel reply: a fault the instrument injects instead of answering."""

    def __init__(self, name: str, meaning: str):
        self.name = name
        self.meaning = meaning

    def __repr__(self) -> str:
        return self.name


TIMEOUT = Fault("TIMEOUT", "no reply ever comes")
CLOSE = Fault("CLOSE", "the instrument drops the link instead of answering")

# Bytes that are no valid reply in any of the console's protocols: not ASCII, a NUL, no number.
GARBAGE = b"\xff\xfe\x00garbage\r\n"

Exchange = tuple[Any, Any]


class TranscriptError(AssertionError):
    """The driver did something the transcript does not allow."""


class Transcript:
    """The expected exchanges, consumed in order by a transport; `assert_done()` at the end.

    `label` names the transcript in messages (a TCP peer has one transcript per connection:
    "connection 2"). Thread-safe: a transport may play it from its own thread.
    """

    def __init__(self, exchanges: Iterable[Exchange] = (), label: str = ""):
        self.label = label
        self.expected: list[Exchange] = [tuple(e) for e in exchanges]  # type: ignore[misc]
        self.position = 0  # exchanges that happened
        self.received: list[Any] = []  # every command that arrived, matching or not
        self.problems: list[str] = []
        self._lock = threading.Lock()

    # --- the transport's side -------------------------------------------------------------------
    def expect(self, command: Any) -> Any:
        """The reply to `command`, which must be the next expected command (else TranscriptError)."""
        with self._lock:
            self.received.append(command)
            if self.position >= len(self.expected):
                self._fail(f"{self._where(self.position + 1)}: got {command!r} after the end of the transcript")
            expected, reply = self.expected[self.position]
            if command != expected:
                self._fail(f"{self._where(self.position + 1)}: expected {expected!r}, got {command!r}")
            self.position += 1
        return reply() if callable(reply) and not isinstance(reply, BaseException) else reply

    def fail(self, message: str, exchange: int | None = None) -> None:
        """Record a problem and raise it. `exchange`: the number it is about (default: the next one)."""
        with self._lock:
            self._fail(f"{self._where(exchange or self.position + 1)}: {message}")

    def note(self, message: str, exchange: int | None = None) -> None:
        """Record a problem without raising (a transport's thread, where nobody would catch it)."""
        with self._lock:
            self.problems.append(f"{self._where(exchange or self.position + 1)}: {message}")

    @property
    def left(self) -> list[Exchange]:
        """The exchanges that have not happened yet."""
        return self.expected[self.position :]

    @property
    def last_command(self) -> Any:
        return self.expected[self.position - 1][0] if self.position else None

    # --- the test's side ------------------------------------------------------------------------
    def extend(self, exchanges: Sequence[Exchange]) -> None:
        """Expect more exchanges (a test feeding replies a few at a time)."""
        with self._lock:
            self.expected.extend(tuple(e) for e in exchanges)  # type: ignore[misc]

    def forget_rest(self) -> None:
        """Drop the exchanges that have not happened (a test that feeds replies a few at a time
        and does not care whether the driver asked for all of them). Problems are kept."""
        with self._lock:
            del self.expected[self.position :]

    def assert_done(self) -> None:
        """Fail on any problem on the way and on any exchange that never happened."""
        with self._lock:
            messages = list(self.problems)
            left = self.expected[self.position :]
            if left:
                messages.append(
                    f"{self._where(self.position + 1)}: never happened ({len(left)} exchange(s) left, first {left[0][0]!r} -> {left[0][1]!r}); "
                    f"received so far: {self.received}"
                )
        if messages:
            raise TranscriptError("\n".join(messages))

    # --- messages -------------------------------------------------------------------------------
    def _where(self, number: int) -> str:
        where = f"exchange {number} of {len(self.expected)}"
        return f"{self.label}, {where}" if self.label else where

    def _fail(self, message: str) -> None:
        self.problems.append(message)
        raise TranscriptError(message)


def as_transcript(exchanges: Transcript | Iterable[Exchange], label: str = "") -> Transcript:
    """A transport's argument as a Transcript (a list of exchanges, or a Transcript as is)."""
    return exchanges if isinstance(exchanges, Transcript) else Transcript(exchanges, label)
