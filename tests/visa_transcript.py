"""Transcript tests for VISA drivers, in the style of pymeasure's `expected_protocol`.

A scripted stand-in for a PyVISA resource: every command the driver writes must be the next
one in the transcript, every reply is handed back in order, a reply left unread or a command
left unsent fails the test. A reply may be an exception instance, raised by the read (a
timeout, a broken link).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

Exchange = tuple[str, "str | BaseException | None"]


class ScriptedResource:
    def __init__(self, exchanges: Sequence[Exchange]):
        self.exchanges = list(exchanges)
        self.done: list[Exchange] = []
        self._pending: str | BaseException | None = None
        self.timeout = 2000
        self.closed = False
        self.read_termination = "\n"
        self.write_termination = "\n"

    def write(self, command: str) -> None:
        assert self._pending is None, f"the driver sent {command!r} before reading the reply {self._pending!r}"
        assert self.exchanges, f"the driver sent {command!r} after the end of the transcript (sent so far: {[c for c, _ in self.done]})"
        expected, reply = self.exchanges.pop(0)
        assert command == expected, f"exchange {len(self.done) + 1}: expected {expected!r}, the driver sent {command!r}"
        self.done.append((expected, reply))
        self._pending = reply

    def read(self) -> str:
        reply, self._pending = self._pending, None
        assert reply is not None, f"the driver read a reply after {self.done[-1][0] if self.done else 'nothing'!r}, which has none"
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def query(self, command: str) -> str:
        self.write(command)
        return self.read()

    def clear(self) -> None:  # device clear: nothing to script
        pass

    def close(self) -> None:
        self.closed = True

    def assert_done(self) -> None:
        assert self._pending is None, f"reply {self._pending!r} was never read"
        assert not self.exchanges, f"{len(self.exchanges)} exchange(s) never happened, first {self.exchanges[0]!r}"


@contextmanager
def expected_protocol(driver_cls: Any, exchanges: Sequence[Exchange], options: dict | None = None, sample_interval_s: float = 1.0) -> Iterator[Any]:
    """A driver instance wired to a scripted resource; on exit every exchange must have happened."""
    res = ScriptedResource(exchanges)
    src = driver_cls("meter", driver_cls.Options.model_validate({"resource": "SCRIPTED::INSTR", **(options or {})}), sample_interval_s, resource=res)
    yield src
    res.assert_done()


def visa_timeout() -> BaseException:
    """What pyvisa raises when a reply does not come in time."""
    from pyvisa import constants, errors

    return errors.VisaIOError(constants.StatusCode.error_timeout)
