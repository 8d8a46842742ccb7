"""`labconsole serve`: the console in a web browser, through textual-serve.

textual-serve starts one console process per browser tab (Textual's web driver) and relays its
screen and keys over a WebSocket. What this module adds is who may connect:

- By default it listens on 127.0.0.1 only, and checks the `Host` header is a loopback name
  (a web page elsewhere cannot reach it by DNS rebinding).
- Any other `--host` is an explicit choice, and the console then needs a token, printed at start
  (`http://HOST:PORT/?token=...`): the page, its files and its WebSocket are refused (403)
  without it. The token is compared in constant time and kept in an HttpOnly, SameSite=Strict
  cookie so the page's own requests carry it.
- Always, the WebSocket's `Origin` must be the page's own: another site open in the same
  browser cannot drive the console (cross-site WebSocket hijacking).
- `--watch`: each tab gets an observer's console (`labconsole tui --watch`): it follows the run
  being recorded under the profile's recordings folder and refuses to start or abort a run.

textual-serve starts the console with a shell command line; ours is built with `shlex.join`
from our own argument list, so a profile path cannot inject anything.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import secrets
import shlex
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from textual_serve.server import Server

DEFAULT_HOST = "127.0.0.1"
# Binds that reach this machine only through the default route; any other is "another host".
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
COOKIE = "labconsole_token"
TEMPLATES = Path(__file__).resolve().parent / "web"


def needs_token(host: str) -> bool:
    """A token is needed for every bind but the default loopback one (127.0.0.1, localhost, ::1).

    Deliberately by name, not by `ipaddress.is_loopback`: 127.0.0.2 is loopback too, but naming
    it is as explicit a choice as naming 0.0.0.0, and it takes exactly the same path (the
    tests bind it to exercise the token on a machine with no other interface)."""
    return host not in LOCAL_HOSTS


def console_command(profile: str | None, watch: bool) -> str:
    """The command textual-serve runs for each browser tab."""
    argv = [sys.executable, "-m", "labconsole", "tui"]
    if profile:
        argv += ["--profile", str(Path(profile).expanduser().resolve())]
    if watch:
        argv.append("--watch")
    return shlex.join(argv)


def _host_only(netloc: str) -> str:
    """`host` of a `host:port` / `[v6]:port` Host header, lowercased."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


class ConsoleServer(Server):
    def __init__(self, command: str, host: str, port: int, token: str | None, watch: bool):
        super().__init__(command, host=host, port=port, title="labconsole" + (" (watching)" if watch else ""), templates_path=str(TEMPLATES))
        self.token = token
        self.watch = watch

    # --- who may connect ------------------------------------------------------------------------
    def _token_ok(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    @web.middleware
    async def guard(self, request: web.Request, handler):
        if self.token is None and _host_only(request.host) not in LOCAL_HOSTS:
            raise web.HTTPForbidden(text="labconsole serve: this console is for this machine only (Host is not a loopback name)\n")
        if not self._token_ok(request):
            raise web.HTTPForbidden(text="labconsole serve: a token is needed: open the link printed where `labconsole serve` was started\n")
        if request.path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
                raise web.HTTPForbidden(text="labconsole serve: the WebSocket must come from the console's own page\n")
        response = await handler(request)
        if self.token is not None and request.query.get("token") and isinstance(response, web.Response):
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        if isinstance(response, web.Response):
            response.headers.setdefault("Referrer-Policy", "no-referrer")  # the token never leaves in a Referer
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.insert(0, self.guard)
        return app

    async def handle_index(self, request: web.Request):
        # The page's WebSocket URL is built from public_url: the address this browser used.
        self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)

    async def on_startup(self, app: web.Application) -> None:
        # aiohttp runs on_startup before it binds: announce the URL once the socket listens, so
        # whoever reads the first line (a person, a script, a test) can connect at once.
        self._announcer = asyncio.get_running_loop().create_task(self._announce_when_listening())

    async def _announce_when_listening(self) -> None:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        self._announce()

    def _announce(self) -> None:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):
            shown = socket.gethostname()
        url = f"http://{shown}:{self.port}/"
        mode = "observers: they follow the run being recorded and cannot start or abort one" if self.watch else "the full console: whoever opens it can start and abort runs"
        if self.token is None:
            print(f"labconsole serve: {url} (this machine only; {mode})", flush=True)
        else:
            print(f"labconsole serve: {url}?token={self.token}", flush=True)
            print(f"  listening on {self.host}:{self.port}; anyone with this link can open the console ({mode}); without the token a request is refused", flush=True)
        print("  Ctrl+C stops it (a run started from a browser is aborted and sealed)", flush=True)


def serve_main(args: argparse.Namespace) -> int:
    """`labconsole serve [--host H] [--port N] [--profile P] [--watch]`."""
    host = args.host or DEFAULT_HOST
    if not (0 < int(args.port) < 65536):
        print(f"--port: {args.port} is not a port (1-65535)", file=sys.stderr)
        return 2
    if args.profile and not Path(args.profile).expanduser().exists():
        print(f"--profile: {args.profile}: no such file", file=sys.stderr)
        return 2
    try:
        socket.getaddrinfo(host, args.port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        print(f"--host: {host}: not an address of this machine ({exc})", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(24) if needs_token(host) else None
    server = ConsoleServer(console_command(args.profile, args.watch), host, int(args.port), token, args.watch)
    try:
        server.serve()
    except OSError as exc:
        print(f"labconsole serve: cannot listen on {host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
