"""Text that came from a file (a bundle, a result folder, a meter's reply) made safe for a
terminal: control characters (ESC, BEL, CSI, the C1 range, bidirectional overrides) are shown
escaped (`\\x1b`), never sent. The console's screens escape Rich markup as well
(`rich.markup.escape`); headless commands print through `EscapingStream`, so nothing they
print can move the cursor, retitle the window or hide text.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

# C0 except TAB and LF, DEL, C1, the bidirectional marks, embeddings, overrides and isolates.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(m: re.Match) -> str:
    ch = m.group(0)
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: Any) -> str:
    """`text` with every control character escaped (newlines and tabs kept)."""
    return _CONTROL.sub(_escaped, str(text))


class EscapingStream:
    """A text stream that escapes control characters in everything written to it."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    @property
    def unescaped(self) -> TextIO:
        """The stream underneath, for a writer that escapes the file text it prints itself and
        adds control codes of its own (cli_render's rich output: colour, the progress bar)."""
        return self._stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
