"""The faults a TCP emulator can be switched into, for tests and operator training: a meter
that stops answering, one that answers garbage, one that goes away and comes back."""

from __future__ import annotations

import threading
from typing import Any, Callable


class TcpFaults:
    """Mixin for the TCP emulators (WT310E, PTDaemon): the switches, and what they mean.

    The serve loops read `_silent`, `_mangle` and `_online`; an emulator provides
    `_close_listener()`, `_listen_again()` (the same address) and `_drop_clients()`.
    """

    def _init_faults(self) -> None:
        self._silent = threading.Event()
        self._online = threading.Event()
        self._online.set()
        self._mangle: Callable[..., bytes | None] | None = None

    def set_silent(self, silent: bool) -> None:
        """An instrument that hangs: commands are read and dropped, connections stay open."""
        if silent:
            self._silent.set()
        else:
            self._silent.clear()

    def set_mangler(self, mangle: Callable[[str, Any], bytes | None] | None) -> None:
        """An instrument that answers garbage: `mangle(command, reply)` gives the bytes sent
        instead (None: nothing), where `reply` is what would have been sent (the WT310E's reply
        line, PTD's reply lines); None restores the real replies."""
        self._mangle = mangle

    def set_offline(self, offline: bool) -> None:
        """The instrument goes away: every connection drops and nothing listens; back online,
        it listens on the same address again (its measurement state is kept)."""
        if offline:
            self._online.clear()
            self._close_listener()
            self._drop_clients()
            return
        self._listen_again()
        self._online.set()

    def _close_listener(self) -> None:  # pragma: no cover - each emulator's own
        raise NotImplementedError

    def _listen_again(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _drop_clients(self) -> None:  # pragma: no cover
        raise NotImplementedError
