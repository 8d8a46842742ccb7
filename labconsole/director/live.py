"""The director's live view: its state and its PTD log lines, read-only over HTTP.

Why HTTP from the director's labconsole, rather than the SUT talking to PTDaemon: PTDaemon
belongs to power-dev's server (one client; every command we sent would land in the session's
PTD log and the checker's view of it), and the PTD log is a file on the director's disk. So the
director's labconsole tails that file and serves what it read, and the SUT's console
(`driver: director`) polls it over the network the client already uses. Nothing here writes to
PTDaemon, the server or their files.

    GET /status            {"state", "alive", "identify", "errors", "server_tail", "time", "ntp", ...}
    GET /lines?after=SEQ   {"lines": [{"seq", "analyzer", "line"}, ...], "last": SEQ, "state": STATE}
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from labconsole.director.server import Director


class LiveView:
    def __init__(self, director: Director, host: str, port: int, extra_status: Callable[[], dict[str, Any]] | None = None):
        self.director = director
        self.extra_status = extra_status
        view = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: the console shows what matters
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                if url.path == "/status":
                    body = view.status()
                elif url.path == "/lines":
                    try:
                        after = int(parse_qs(url.query).get("after", ["0"])[0])
                    except ValueError:
                        self.send_error(400, "after must be an integer")
                        return
                    lines = view.director.lines_after(after)
                    body = {"lines": [{"seq": ln.seq, "analyzer": ln.analyzer, "line": ln.line} for ln in lines], "last": lines[-1].seq if lines else after, "state": view.director.status.state}
                else:
                    self.send_error(404, "GET /status or /lines?after=SEQ")
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="director-live", daemon=True)

    @property
    def port(self) -> int:
        return int(self.address[1])

    def status(self) -> dict:
        out = self.director.as_dict()
        if self.extra_status is not None:
            out.update(self.extra_status())
        return out

    def start(self) -> "LiveView":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
