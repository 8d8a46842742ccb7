"""The official MLPerf Power workflow as a plan: power-dev's own client and director, driven
and watched by the console, their output kept untouched as the record.

    prepare (find power-dev; for a one-machine rehearsal start an SNTP responder, power-dev's
    server with its PTDaemon, and the director's live view) -> sources (the director's live
    power, and any other source the profile lists) -> preflight (clocks against NTP on both
    machines, the meter answering through PTD, LoadGen settings valid for submission, disk
    space) -> probe the SUT ('auto' LoadGen settings) -> the official session (power-dev's
    client runs the workload twice: ranging, testing; the console follows its phases and
    LoadGen's progress) -> keep the session folder byte for byte in data/official/<session>/

The analysis is the official folder's: labconsole's checks and metrics on it, and power-dev's
own compliance/check.py beside them (`labconsole.mlperf.official_record`).
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labconsole import events as ev
from labconsole.director.live import LiveView
from labconsole.director.server import Director, DirectorError, free_port
from labconsole.emulators.sntp import SntpResponder
from labconsole.mlperf import official_record
from labconsole.mlperf.checks.rules import MLPERF_MIN_DURATION_S
from labconsole.mlperf.powerdev import CRITICAL_CLOCK_OFFSET_S
from labconsole.mlperf.powerdev_conf import analyzers_from
from labconsole.procedure.engine import RunAborted, RunEngine, RunFailed, Step
from labconsole.procedure.plans.inference import InferencePlan
from labconsole.profile import CommandWorkload, LoadGenWorkload
from labconsole.sources.sntp import NtpError, sntp_offset
from labconsole.workload.powerdev import ClientLine, OfficialClient, PowerDevMissing, find_powerdev
from labconsole.workload.runner import LoadGenRun, ProgressPoint

NTP_PORT = 123  # power-dev's ntplib asks port 123 only
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The client's steps that are measured, and the bundle phase each one's samples go to.
MEASURED = {"ranging": "ranging", "testing": "testing"}


class OfficialPlan:
    def __init__(self, step_runner: Any = None):
        self.step_runner = step_runner  # the guided calibration does not apply: power-dev owns the procedure
        self._probe = InferencePlan()
        self.powerdev = None
        self.director: Director | None = None
        self.live: LiveView | None = None
        self.sntp: SntpResponder | None = None
        self._tmp: str | None = None
        self.client: OfficialClient | None = None
        self.session_dir: Path | None = None

    # --- around the sources --------------------------------------------------------------------
    def prepare(self, engine: RunEngine) -> None:
        """Before the sources open: find power-dev and, for a rehearsal, start the director."""
        d = engine.profile.director
        assert d is not None and engine.bundle is not None
        engine.set_phase("director")
        try:
            self.powerdev = find_powerdev(d.powerdev)
        except PowerDevMissing as exc:
            raise RunFailed(str(exc)) from None
        engine.bus.emit(ev.INFO, f"power-dev: {self.powerdev.where}", phase="director")
        if not d.start:
            self._fill_source_options(engine, d.address, d.live_port)
            return
        if d.ntp_server in LOOPBACK and not _ntp_answers(d.ntp_server):
            try:
                self.sntp = SntpResponder(d.ntp_server if d.ntp_server != "localhost" else "127.0.0.1", NTP_PORT).start()
            except OSError as exc:
                raise RunFailed(f"cannot serve SNTP on {d.ntp_server}:{NTP_PORT}, which power-dev's client and server ask ({exc.strerror or exc}); run an NTP server there") from None
            engine.bus.emit(ev.INFO, f"SNTP responder on {d.ntp_server}:{NTP_PORT} (this machine's clock)", phase="director")
        self._tmp = tempfile.mkdtemp(prefix="labconsole-director-")
        analyzers = [a if a.network_port else dataclasses.replace(a, network_port=free_port()) for a in analyzers_from(d.analyzers)]
        self.director = Director(
            self.powerdev, engine.bundle.data / "director", d.ntp_server, d.address, d.port or free_port(), d.ptd, analyzers,
            d.ranging_mode, d.ptd_args, d.dry_run, tmp=Path(self._tmp),
            on_line=lambda level, msg: self._server_said(engine, level, msg),
        )
        engine.bus.emit(ev.INFO, f"starting power-dev's server on {d.address}:{self.director.listen_port} ({len(analyzers)} analyzer(s), PTD: {d.ptd})", phase="director")
        try:
            self.director.start()
        except DirectorError as exc:
            raise RunFailed(f"director: {exc}") from None
        self.live = LiveView(self.director, d.address, d.live_port).start()
        ident = "; ".join(self.director.status.identify.values())
        engine.bus.emit(ev.RESULT, f"director listening; PTDaemon says: {ident}", phase="director")
        self._fill_source_options(engine, d.address, self.live.port)

    def release(self, engine: RunEngine) -> None:
        """After the sources close: stop what prepare() started."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.director is not None:
            self.director.stop()
        if self.sntp is not None:
            self.sntp.stop()
            self.sntp = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @staticmethod
    def _fill_source_options(engine: RunEngine, host: str, port: int) -> None:
        for spec in engine.profile.sources:
            if spec.driver == "director":
                spec.options.setdefault("host", host)
                if not spec.options.get("port"):
                    spec.options["port"] = port

    @staticmethod
    def _server_said(engine: RunEngine, level: str, msg: str) -> None:
        if level in ("ERROR", "CRITICAL"):
            engine.bus.emit(ev.ERROR, f"power-dev server: {msg}", phase=engine.phase)
        elif level == "WARNING":
            engine.bus.emit(ev.WARNING, f"power-dev server: {msg}", phase=engine.phase)

    # --- the plan ----------------------------------------------------------------------------------
    def steps(self, engine: RunEngine) -> list[Step]:
        return [self.preflight, self.probe_sut, self.session]

    def analyse(self, engine: RunEngine) -> tuple[dict, list[dict]]:
        assert engine.bundle is not None
        return official_record.summarise_bundle(engine.bundle.root, with_manifest=False)

    def preflight(self, engine: RunEngine) -> None:
        d = engine.profile.director
        assert d is not None and engine.bundle is not None
        engine.set_phase("preflight")
        items: list[dict] = []

        def item(name: str, status: str, message: str) -> None:
            items.append({"name": name, "status": status, "message": message})
            kind = {"pass": ev.RESULT, "warn": ev.WARNING, "fail": ev.ERROR}[status]
            engine.bus.emit(kind, f"preflight: {name}: {message}", phase="preflight")

        limit = CRITICAL_CLOCK_OFFSET_S
        try:
            r = sntp_offset(d.ntp_server)
            ok = abs(r.offset_s) < limit
            item("SUT clock vs NTP", "pass" if ok else "fail", f"{r.offset_s * 1000:+.1f} ms against {d.ntp_server} (power-dev allows {limit * 1000:.0f} ms)")
        except NtpError as exc:
            item("SUT clock vs NTP", "fail", f"{d.ntp_server}: {exc} (power-dev's client checks the clock against it before each run)")
        status = self._director_status(engine)
        if status is None:
            item("director", "fail", f"the director's live view does not answer ({d.address}:{d.live_port}); is `labconsole director` running there?")
        else:
            t_sent = status.get("_asked_at", time.time())
            off = float(status.get("time", t_sent)) - t_sent
            if status.get("ntp_offset_s") is not None:
                item("director clock vs NTP", "pass" if abs(status["ntp_offset_s"]) < limit else "fail", f"{status['ntp_offset_s'] * 1000:+.1f} ms against its NTP server")
            item("director clock vs SUT", "pass" if abs(off) < limit else "warn", f"{off * 1000:+.0f} ms (over HTTP, so +- the round trip)")
            if not status.get("alive", True) or status.get("state") in ("failed", "stopped"):
                item("meter through PTD", "fail", f"power-dev's server is {status.get('state')}: " + " | ".join(status.get("errors") or []))
            elif status.get("problems"):
                item("meter through PTD", "fail", "; ".join(status["problems"]))
            elif status.get("identify"):
                item("meter through PTD", "pass", "PTDaemon answered the server's self-test: " + "; ".join(status["identify"].values()))
            else:
                item("meter through PTD", "warn", "the director has not seen PTDaemon answer yet")
        wl = engine.profile.workload
        dur = engine.duration_s
        if dur < MLPERF_MIN_DURATION_S:
            item("LoadGen settings", "warn", f"duration {dur:g} s < {MLPERF_MIN_DURATION_S:g} s: a rehearsal, NOT valid for submission")
        elif isinstance(wl, LoadGenWorkload) and wl.max_duration_s is not None and wl.max_duration_s < MLPERF_MIN_DURATION_S:
            item("LoadGen settings", "warn", f"max_duration_s {wl.max_duration_s:g} s cuts the run below {MLPERF_MIN_DURATION_S:g} s: NOT valid for submission")
        elif isinstance(wl, LoadGenWorkload) and wl.min_query_count is not None and wl.min_query_count < 100:
            item("LoadGen settings", "warn", f"min_query_count {wl.min_query_count} is below LoadGen's submission minimum for most scenarios")
        else:
            item("LoadGen settings", "pass", f"{engine.scenario}, {dur:g} s")
        free = shutil.disk_usage(engine.bundle.root).free / 1e6
        item("disk space", "pass" if free >= d.min_free_mb else "fail", f"{free:,.0f} MB free for the record (need {d.min_free_mb:g} MB)")
        if d.dry_run:
            item("dry run", "warn", "MLPP_DEBUG set: a short dry run, marked debug: NOT FOR SUBMISSION (the checker fails it)")
        engine.bundle.write_json("preflight.json", {"items": items})
        failed = [i for i in items if i["status"] == "fail"]
        if failed:
            raise RunFailed("preflight: " + "; ".join(f"{i['name']}: {i['message']}" for i in failed))

    def _director_status(self, engine: RunEngine) -> dict | None:
        for src in engine.sources.values():
            if getattr(src, "driver", "") == "director":
                try:
                    asked = time.time()
                    st = dict(src.status())  # type: ignore[attr-defined]
                    st["_asked_at"] = (asked + time.time()) / 2
                    return st
                except Exception:  # noqa: BLE001
                    return None
        return None

    def probe_sut(self, engine: RunEngine) -> None:
        self._probe.probe_sut(engine)

    # --- the official session ---------------------------------------------------------------------
    def _workload(self, engine: RunEngine) -> tuple[str, Path]:
        """(the shell command power-dev's client runs twice, the folder its LoadGen logs go to)."""
        assert engine.bundle is not None
        wl = engine.profile.workload
        work = engine.bundle.data / "official-workload"
        work.mkdir(parents=True, exist_ok=True)
        if isinstance(wl, CommandWorkload):
            logs = Path(wl.loadgen_logs)
            cwd = Path(wl.cwd) if wl.cwd else Path.cwd()
            return shlex.join(wl.command), (logs if logs.is_absolute() else cwd / logs)
        loadgen = Path(tempfile.mkdtemp(prefix="labconsole-loadgen-")) / "logs"
        run = LoadGenRun(wl, work, scenario=engine.scenario, duration_s=engine.duration_s, resolved=self._probe.resolved_settings)
        cfg = run.config()
        cfg["outdir"] = str(loadgen)
        (work / "workload.json").write_text(ev.to_json(cfg, indent=2) + "\n", encoding="utf-8")
        # The worker prints its progress as JSON lines on stdout, which the client passes on.
        return shlex.join([sys.executable, "-m", "labconsole.workload.worker", "--config", str((work / "workload.json").resolve())]), loadgen

    def session(self, engine: RunEngine) -> None:
        d = engine.profile.director
        assert d is not None and engine.bundle is not None and engine.recorder is not None and self.powerdev is not None
        cmd, loadgen = self._workload(engine)
        out = Path(tempfile.mkdtemp(prefix="labconsole-official-"))
        port = self.director.listen_port if self.director is not None else d.port
        current = {"phase": None}

        def on_line(line: ClientLine) -> None:
            client = self.client
            assert client is not None
            phase = client.phase
            if phase != current["phase"]:
                self._enter(engine, current["phase"], phase)
                current["phase"] = phase
            if line.level in ("ERROR", "CRITICAL"):
                engine.bus.emit(ev.ERROR, f"power-dev client: {line.message}", phase=phase)
            elif line.level == "WARNING":
                engine.bus.emit(ev.WARNING, f"power-dev client: {line.message}", phase=phase)
            elif line.level == "INFO" and line.message.startswith(("Running", "Session id", "NTP", "The time difference", "Fetching", "Done", "Successful", "Copying")):
                engine.bus.emit(ev.INFO, f"power-dev client: {line.message}", phase=MEASURED.get(phase, f"official: {phase}"), step=client.tracker.step)

        def on_progress(msg: dict) -> None:
            phase = MEASURED.get(current["phase"] or "")
            if phase is None or "t" not in msg:
                return
            try:
                point = ProgressPoint(int(float(msg["t"]) * 1e9), int(msg["issued"]), int(msg["completed"]))
            except (KeyError, TypeError, ValueError):
                return
            engine.progress.setdefault(phase, []).append(point)
            engine.bus.emit(ev.PROGRESS, f"{point.completed} completed", phase=phase, issued=point.issued, completed=point.completed)

        self.client = OfficialClient(
            self.powerdev, d.address if d.address not in ("0.0.0.0", "") else "127.0.0.1", port, d.ntp_server, cmd, loadgen, out,
            d.label, engine.bundle.data / "official-client.log", on_line, on_progress,
            env={"MLPP_DEBUG": "1"} if d.dry_run else None,
        )
        if d.dry_run:
            self.client.env["MLPP_DEBUG"] = "1"
        else:
            self.client.env.pop("MLPP_DEBUG", None)
        engine.bus.emit(ev.PHASE_START, f"official session: power-dev's client -> {d.address}:{port}" + (" (DRY RUN: not for submission)" if d.dry_run else ""), phase="official")
        timeout = 2 * (3 * engine.duration_s + 120) + 300
        try:
            with engine.attached(self.client):
                result = self.client.run(timeout)
        finally:
            self._enter(engine, current["phase"], None)
            self.session_dir = self._keep(engine, self.client.session, out)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(loadgen.parent, ignore_errors=True) if loadgen.parent.name.startswith("labconsole-loadgen-") else None
        engine.bundle.update_run(official={
            "session": result.session,
            "folder": str(self.session_dir.relative_to(engine.bundle.data)) if self.session_dir else None,
            "powerdev": self.powerdev.where,
            "client_exit_code": result.exit_code,
            "client_errors": result.errors,
            "dry_run": d.dry_run,
            "not_for_submission": d.dry_run or engine.duration_s < MLPERF_MIN_DURATION_S,
            "director": self.director.as_dict() if self.director is not None else self._director_status(engine),
        })
        if result.status == "aborted":
            raise RunAborted(result.reason)
        if result.status != "completed":
            reason = result.reason
            if self.director is not None and not self.director.alive():
                reason += f"; power-dev's server had stopped: {self.director.last_words()}"
            elif self.director is None:  # a remote director: what its server said, through its live view
                st = self._director_status(engine)
                if st is None:
                    reason += "; the director's live view does not answer either (director down, or the network)"
                elif st.get("errors"):
                    reason += "; the director's server said: " + " | ".join(st["errors"][-3:])
            engine.bus.emit(ev.ERROR, reason, phase="official")
            raise RunFailed(reason)
        engine.bus.emit(ev.PHASE_END, f"official session {result.session} kept in {self.session_dir}", phase="official")

    def _enter(self, engine: RunEngine, old: str | None, new: str | None) -> None:
        """The client moved from step `old` to `new`: the measured ones get their own segment."""
        assert engine.bundle is not None and engine.recorder is not None
        if old in MEASURED:
            engine.recorder.end_segment()
            engine.bus.emit(ev.PHASE_END, f"{MEASURED[old]} done", phase=MEASURED[old])
        if new is None:
            return
        engine.set_phase(MEASURED.get(new, f"official: {new}"))
        if new in MEASURED:
            phase = MEASURED[new]
            engine.progress[phase] = []
            engine.recorder.begin_segment(phase, engine.bundle.phase_dir(phase))
            engine.bus.emit(ev.PHASE_START, f"{phase}: {engine.scenario}, {engine.duration_s:g} s (power-dev's client)", phase=phase, scenario=engine.scenario, duration_s=engine.duration_s)
        else:
            engine.bus.emit(ev.INFO, f"power-dev client: {new}", phase=f"official: {new}")

    @staticmethod
    def _keep(engine: RunEngine, session: str | None, out: Path) -> Path | None:
        """Copy the client's session folder into the bundle byte for byte (files only)."""
        assert engine.bundle is not None
        src = out / session if session and (out / session).is_dir() else None
        if src is None:
            found = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
            src = found[0] if len(found) == 1 else None
        if src is None:
            engine.bus.emit(ev.WARNING, "power-dev's client left no session folder", phase="official")
            return None
        dest = engine.bundle.data / "official" / src.name
        for path in sorted(src.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)  # bytes only: the checker hashes them
        return dest


def _ntp_answers(server: str) -> bool:
    try:
        sntp_offset(server, samples=1, timeout_s=0.5)
        return True
    except NtpError:
        return False
