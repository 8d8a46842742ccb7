"""The VISA transport: a scripted stand-in for a PyVISA resource (pymeasure's `expected_protocol`).

Every `write` must be the transcript's next command; `read` hands back its reply; `query` is
both. What a reply does at the read:

* str: returned as it is (PyVISA has already taken the termination off);
* bytes: decoded as PyVISA would (ASCII: non-ASCII bytes raise UnicodeDecodeError), the
  read termination taken off;
* None: the command is write-only; a read after it fails the test;
* TIMEOUT / CLOSE: PyVISA's VisaIOError for a timeout / a lost connection is raised;
* an exception instance: raised.

A reply left unread when the next command is written fails the test, and so does one never
read at the end. A driver that takes an open resource can be given a `ScriptedResource`
directly; `expected_protocol` does it for a labconsole source, whose constructor is
`(name, options, sample_interval_s, resource=...)`:

    from labconsole.testing.visa import expected_protocol

    def test_identify():
        with expected_protocol(MyMeterSource, [("*IDN?", "ACME,PM1,123,1.0")], options={"timeout_s": 0.5}) as src:
            src.open()
            assert src.identify().model == "PM1"

Without the context manager: `res = ScriptedResource(transcript)`, give `res` to the driver,
and call `res.assert_done()` at the end.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from pyvisa import constants, errors

from labconsole.testing.transcript import CLOSE, TIMEOUT, Exchange, Transcript, as_transcript

_NO_REPLY = object()


class ScriptedResource:
    """A PyVISA message-based resource that plays a transcript."""

    def __init__(self, exchanges: Transcript | Iterable[Exchange], encoding: str = "ascii"):
        self.transcript = as_transcript(exchanges)
        self.encoding = encoding
        self.timeout = 2000
        self.read_termination = "\n"
        self.write_termination = "\n"
        self.closed = False
        self._pending: Any = _NO_REPLY

    def write(self, command: str) -> None:
        if self._pending is not _NO_REPLY:
            self.transcript.fail(f"the driver sent {command!r} before reading the reply {self._pending!r}")
        reply = self.transcript.expect(command)
        self._pending = _NO_REPLY if reply is None else reply

    def read(self) -> str:
        reply, self._pending = self._pending, _NO_REPLY
        if reply is _NO_REPLY:
            self.transcript.fail(f"the driver read a reply after {self.transcript.last_command!r}, which has none", self.transcript.position)
        if reply is TIMEOUT:
            raise errors.VisaIOError(constants.StatusCode.error_timeout)
        if reply is CLOSE:
            raise errors.VisaIOError(constants.StatusCode.error_connection_lost)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, bytes):
            text = reply.decode(self.encoding)
            return text[: -len(self.read_termination)] if self.read_termination and text.endswith(self.read_termination) else text
        return reply

    def query(self, command: str) -> str:
        self.write(command)
        return self.read()

    def clear(self) -> None:  # device clear: nothing to script
        pass

    def close(self) -> None:
        self.closed = True

    def forget_rest(self) -> None:
        """Drop an unread reply and the exchanges still to come (a test feeding replies a few at a time)."""
        self._pending = _NO_REPLY
        self.transcript.forget_rest()

    def assert_done(self) -> None:
        if self._pending is not _NO_REPLY:
            self.transcript.note(f"the reply {self._pending!r} to {self.transcript.last_command!r} was never read", self.transcript.position)
            self._pending = _NO_REPLY
        self.transcript.assert_done()


@contextmanager
def expected_protocol(driver_cls: Any, exchanges: Transcript | Iterable[Exchange], options: dict | None = None, sample_interval_s: float = 1.0) -> Iterator[Any]:
    """A labconsole source built on a ScriptedResource; on leaving the block every exchange
    must have happened. `options` are the source's options (its `resource` is filled in)."""
    res = ScriptedResource(exchanges)
    src = driver_cls("meter", driver_cls.Options.model_validate({"resource": "SCRIPTED::INSTR", **(options or {})}), sample_interval_s, resource=res)
    yield src
    res.assert_done()
