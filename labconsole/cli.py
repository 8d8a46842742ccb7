"""The command line: `labconsole [COMMAND]` (no command opens the console).

Imports stay inside the commands so `labconsole --help` starts fast and the headless commands
never load Textual.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

from labconsole import __version__
from labconsole import events as ev
from labconsole.events import EventBus, to_json
from labconsole.safefile import describe_oserror
from labconsole.termtext import EscapingStream, printable

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 130


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load_profile_or_exit(path: str | None):
    from labconsole.profile import ProfileError, default_profile_path, load_profile

    try:
        return load_profile(path or default_profile_path())
    except ProfileError as exc:
        _err(str(exc))
        raise SystemExit(EXIT_USAGE) from None
    except FileNotFoundError as exc:
        _err(str(exc))
        raise SystemExit(EXIT_USAGE) from None


# ---------------------------------------------------------------------------------------------
# run


def _fmt_event(e) -> str | None:
    if e.kind == ev.PROGRESS:
        return None
    stamp = time.strftime("%H:%M:%S", time.localtime(e.wall_ns / 1e9))
    tag = {ev.WARNING: "WARN ", ev.ERROR: "ERROR", ev.RESULT: "RESULT", ev.PHASE_START: ">>", ev.PHASE_END: "<<", ev.STEP: "step"}.get(e.kind, "")
    phase = f"[{e.phase}] " if e.phase else ""
    return f"{stamp} {tag + ' ' if tag else ''}{phase}{_printable(e.message)}"


def _live_line(proc) -> str | None:
    rec = proc.recorder
    if rec is None or proc.phase not in ("idle", "ranging", "testing", "calibration"):
        return None
    parts = [f"[{proc.phase}] {time.monotonic() - proc.phase_started_mono:5.1f} s"]
    pts = proc.progress.get(proc.phase) or []
    if len(pts) >= 2:
        a, b = pts[max(0, len(pts) - 11)], pts[-1]
        dt = (b.wall_ns - a.wall_ns) / 1e9
        qps = (b.completed - a.completed) / dt if dt > 0 else 0.0
        parts.append(f"completed {b.completed}  QPS {qps:,.1f}")
    for (src, ch), ring in rec.rings.items():
        last = ring.last
        if last is not None and not math.isnan(float(last["watts"])):
            label = src if ch == "main" else f"{src}/{ch}"
            parts.append(f"{label} {float(last['watts']):.4g} W")
    return "  ".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    from labconsole.procedure.engine import RunEngine, RunOptions
    from labconsole.procedure.plans.inference import InferencePlan

    if getattr(args, "from_bundle", None):
        return cmd_rerun(args)
    if getattr(args, "remeasure", False):
        _err("--remeasure: only with --from BUNDLE")
        return EXIT_USAGE
    loaded = _load_profile_or_exit(args.profile)
    if args.scenario and args.scenario not in ("SingleStream", "MultiStream", "Server", "Offline"):
        _err(f"--scenario: unknown scenario {args.scenario!r} (SingleStream, MultiStream, Server, Offline)")
        return EXIT_USAGE
    if args.duration is not None and not (0 < args.duration <= 7 * 86400):
        _err("--duration: must be a number of seconds in (0, 604800]")
        return EXIT_USAGE
    bus = EventBus()
    proc = RunEngine(loaded, InferencePlan(), RunOptions(scenario=args.scenario, duration_s=args.duration, out_dir=Path(args.out) if args.out else None), bus)
    return _drive_procedure(proc, args)


def _drive_procedure(proc, args: argparse.Namespace) -> int:
    """Run a procedure on a thread, print its events and a live line, stop it on Ctrl-C."""
    q = proc.bus.subscribe()
    outcome: list = []
    crash: list = []

    def target() -> None:
        try:
            outcome.append(proc.run())
        except BaseException as exc:  # noqa: BLE001
            crash.append(exc)

    def on_signal(signum, frame):  # noqa: ARG001
        name = signal.Signals(signum).name
        if proc.aborted:
            _err(f"{name} again: still stopping the workload and sealing the bundle; please wait")
        else:
            _err(f"{name}: stopping the run, sealing what was recorded...")
        proc.abort(f"interrupted ({name})")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    worker = threading.Thread(target=target, name="procedure")
    worker.start()
    last_live = 0.0
    try:
        while worker.is_alive() or not q.empty():
            try:
                e = q.get(timeout=0.2)
                line = _fmt_event(e)
                if line and not args.quiet:
                    print(line, flush=True)
            except Exception:  # queue.Empty
                pass
            if not args.quiet and time.monotonic() - last_live >= 1.0:
                last_live = time.monotonic()
                live = _live_line(proc)
                if live:
                    print(live, flush=True)
        worker.join()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if crash:
        from labconsole.procedure.engine import RunRefused

        if isinstance(crash[0], RunRefused):
            _err(f"refused: {crash[0]}")
            return EXIT_USAGE if getattr(crash[0], "bad_input", False) else EXIT_FAIL
        raise crash[0]
    out = outcome[0]
    _print_summary(out)
    print(out.bundle, flush=True)
    if out.exit_status == "completed":
        return EXIT_OK
    return EXIT_ABORTED if out.exit_status == "aborted" else EXIT_FAIL


def _print_summary(out) -> None:
    rep = out.report or {}
    print("", flush=True)
    print(f"run {out.exit_status}" + (f": {out.reason}" if out.reason else ""))
    if rep:
        _print_report_lines(rep)
    for c in out.checks:
        if c["status"] not in ("pass", "skip"):
            print(f"  check {c['status'].upper()}: {c['name']}: {c['message']}")


def _print_report_lines(rep: dict) -> None:
    m = rep.get("metric")
    p = rep.get("power") or {}
    filed, run = rep.get("filed_scenario"), rep.get("run_scenario", rep.get("scenario"))
    shown = f"{filed} (filed; LoadGen ran {run})" if filed and run and filed != run else (filed or rep.get("scenario"))
    print(f"  scenario: {shown}   LoadGen result: {rep.get('result_validity')}")
    for note in rep.get("scenario_notes") or []:
        print(f"  note: {note}")
    if m:
        est = " (an estimate)" if m.get("estimate") else ""
        print(f"  metric: {m['name']} = {m['value']:.6g} {m['unit']}{est}")
    if rep.get("queries_from"):
        print(f"  queries: {rep['queries']:.6g}, {rep['queries_from']}")
    if rep.get("metric_note"):
        print(f"  note: {rep['metric_note']}")
    if p:
        print(f"  average power: {p.get('avg_watts', float('nan')):.6g} W over {p.get('window_s', float('nan')):.3f} s ({p.get('samples_in_window')} samples in the window)")
    if rep.get("samples_per_joule") is not None:
        pf = rep.get("performance_filed") or {}
        basis = f" (from {pf['key']} = {pf['value']:.6g}, the {filed} figure inferred from the {run} run)" if pf else ""
        print(f"  efficiency: {rep['samples_per_joule']:.6g} samples/J{basis}")
    idle = rep.get("idle_baseline") or {}
    if idle.get("avg_watts") is not None:
        print(f"  idle baseline: {idle['avg_watts']:.6g} W")
    if rep.get("ranging_delta_pct") is not None:
        print(f"  testing vs ranging: {rep['ranging_delta_pct']:+.2f} %")
    unc = rep.get("uncertainty") or {}
    if unc.get("mean_pct") is not None:
        over = f", {unc['over_limit']} sample(s) over {unc.get('limit_pct', 1):g} %" if unc.get("over_limit") else ""
        print(f"  uncertainty ({unc.get('from')}): mean {unc['mean_pct']:.3f} %, max {unc['max_pct']:.3f} %{over}")
    if rep.get("missing"):
        print(f"  missing: {', '.join(rep['missing'])}")
    for what in rep.get("unreadable") or []:
        print(f"  unreadable: {what}")


def cmd_rerun(args: argparse.Namespace) -> int:
    """`run --from BUNDLE`: the recorded measurement again, after comparing the bench."""
    from labconsole.procedure.engine import RunEngine
    from labconsole.procedure.plans.inference import InferencePlan
    from labconsole.procedure.rerun import RerunError, check_bench, plan_rerun, probe_bench, refusal

    clash = [opt for opt, v in (("--profile", args.profile), ("--scenario", args.scenario), ("--duration", args.duration)) if v is not None]
    if clash:
        _err(f"{', '.join(clash)}: cannot be combined with --from (a rerun repeats the recorded measurement; run the profile instead to change it)")
        return EXIT_USAGE
    try:
        plan = plan_rerun(args.from_bundle, remeasure=args.remeasure)
    except RerunError as exc:
        _err(str(exc))
        return EXIT_USAGE
    what = f"{plan.loaded.profile.name}, {plan.scenario}, {plan.duration_s:g} s"
    print(f"rerunning {plan.bundle} ({what}; recorded {plan.run_info.get('start') or 'at an unknown time'})", flush=True)
    if plan.resolved:
        shown = ", ".join(f"{k} {v:.6g}" for k, v in plan.resolved.items())
        print(f"  reusing the measured LoadGen settings: {shown} (--remeasure probes the SUT again)", flush=True)
    diffs = check_bench(plan, probe_bench(plan.loaded.profile))
    if diffs:
        print(f"the bench now against the bench then: {len(diffs)} difference(s)", flush=True)
        for d in diffs:
            if d.severity != "info" or not args.quiet:
                print(f"  {d}", flush=True)
    else:
        print("the bench now matches the bench then (sources, host, software)", flush=True)
    why = refusal(diffs)
    if why:
        _err(why)
        return EXIT_USAGE
    code = _code_a_bundle_runs(plan.loaded.profile.workload)
    if code and not getattr(args, "yes", False):
        # A bundle may come from someone else: running it must not run their code unasked.
        print(f"this bundle runs code on this machine: {code}", flush=True)
        if not sys.stdin.isatty():
            _err("refused: pass --yes to run it (a rerun of a bundle with its own command or python: SUT)")
            return EXIT_USAGE
        try:
            answer = input("run it? [y/N] ").strip().lower()
        except EOFError:
            answer = ""
        if answer not in ("y", "yes"):
            _err("not run")
            return EXIT_USAGE
    proc = RunEngine(plan.loaded, InferencePlan(), plan.run_options(diffs, out_dir=Path(args.out) if args.out else None), EventBus())
    return _drive_procedure(proc, args)


def _code_a_bundle_runs(workload) -> str | None:
    """The user code a workload would execute (a command, a python: SUT), shown before a rerun."""
    if getattr(workload, "type", "") == "command":
        return " ".join(_printable(a) for a in workload.command)
    sut = str(getattr(workload, "sut", ""))
    if sut.startswith("python:"):
        return f"the Python SUT {_printable(sut)} (imported from {_printable(str(Path.cwd()))})"
    return None


def _printable(text: str) -> str:
    """Untrusted text (from a bundle, a meter) for a terminal: control characters escaped."""
    return printable(text)


def cmd_compare(args: argparse.Namespace) -> int:
    from labconsole.mlperf.compare import compare_runs, render_text

    a = _open_record_or_exit(args.a)
    b = _open_record_or_exit(args.b)
    cmp = compare_runs(a, b)
    if args.json:
        print(to_json(cmp.as_dict(), indent=2))
    else:
        print(render_text(cmp))
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from labconsole.wizard.init_command import run_init

    return run_init(args)


# ---------------------------------------------------------------------------------------------
# report / check / recover


def _open_record_or_exit(path: str, columns: tuple[str, ...] | None = None):
    from labconsole.bundle.reader import RunOpenError, open_run

    try:
        # With `columns` the record is only read (report): constant columns need no memory.
        return open_run(path, columns=columns, read_only=columns is not None)
    except RunOpenError as exc:
        _err(str(exc))
        raise SystemExit(EXIT_USAGE) from None


def cmd_report(args: argparse.Namespace) -> int:
    from labconsole.mlperf import metrics

    record = _open_record_or_exit(args.path, metrics.REPORT_COLUMNS)  # only what the report reads
    try:
        rep = metrics.compute_report(record, args.scenario)
    except ValueError as exc:
        _err(f"--scenario: {exc}")
        return EXIT_USAGE
    if args.json:
        print(to_json(rep, indent=2))
    else:
        print(f"{record.path} ({'MLPerf result folder' if record.kind == 'mlperf' else 'bundle, ' + str(record.exit_status)})")
        _print_report_lines(rep)
        for name, s in (rep.get("sources") or {}).items():
            extra = f", counter {s['counter_avg_watts']:.6g} W" if s.get("counter_avg_watts") else ""
            print(f"  source {name}: {s['avg_watts']:.6g} W ({s['samples_in_window']} samples){extra}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from labconsole.mlperf import checks

    record = _open_record_or_exit(args.path)
    results = checks.run_checks(record)
    ok = checks.passed(results)
    if args.json:
        print(to_json({"path": str(record.path), "kind": record.kind, "passed": ok, "checks": [r.as_dict() for r in results]}, indent=2))
    else:
        for r in results:
            print(f"[{r.status.upper():4}] {r.name}: {_printable(r.message)}")
        print("PASSED" if ok else "FAILED")
    return EXIT_OK if ok else EXIT_FAIL


def cmd_recover(args: argparse.Namespace) -> int:
    from labconsole.procedure.recover import RecoverError, recover

    try:
        msg = recover(Path(args.path))
    except RecoverError as exc:  # not a bundle, already sealed, run.json unreadable: bad input
        _err(str(exc))
        return EXIT_USAGE
    print(msg)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from labconsole.mlperf.export import ExportError, export_mlperf
    from labconsole.bundle.reader import RunOpenError

    if not args.mlperf:
        _err("export: name the format: --mlperf DIR")
        return EXIT_USAGE
    try:
        res = export_mlperf(args.path, args.mlperf)
    except (ExportError, RunOpenError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except OSError as exc:  # the folder to write cannot be made there (read-only, a file, a name too long)
        _err(describe_oserror(exc.filename or args.mlperf, exc))
        return EXIT_USAGE
    print("NOT AN OFFICIAL MLPERF SUBMISSION. " + res.disclaimer)
    for note in res.notes:
        print(f"  note: {note}")
    print(f"  session name: {res.session_name}; {len(res.files)} files")
    print(res.out_dir)
    return EXIT_OK


def cmd_emulate(args: argparse.Namespace) -> int:
    from labconsole.emulators.registry import EMULATORS, module_for

    if args.name not in EMULATORS:
        _err(f"no emulator named {args.name!r} (known: {', '.join(sorted(EMULATORS)) or 'none'})")
        return EXIT_USAGE
    return int(module_for(args.name).main(list(args.rest)) or 0)


def cmd_discover(args: argparse.Namespace) -> int:
    from labconsole.wizard.discover_command import main as discover_main

    return int(discover_main(args) or 0)


def cmd_tui(args: argparse.Namespace) -> int:
    try:
        from labconsole.tui.app import run_tui
    except ImportError:
        # No console UI in this build: run the default bench headless and print the result.
        ns = argparse.Namespace(profile=getattr(args, "profile", None), scenario=None, duration=None, out=None, quiet=False)
        return cmd_run(ns)
    return run_tui(profile=getattr(args, "profile", None))


def cmd_replay(args: argparse.Namespace) -> int:
    from labconsole.bundle.reader import RunOpenError, open_run
    from labconsole.sources.replay import parse_speed

    try:
        speed = parse_speed(args.speed)
    except ValueError as exc:
        _err(f"--speed: {exc}")
        return EXIT_USAGE
    try:
        open_run(args.path, load_samples=False)  # a clear error before the console opens
    except RunOpenError as exc:
        _err(str(exc))
        return EXIT_USAGE
    from labconsole.tui.app import run_tui

    return run_tui(profile=args.profile, replay=args.path, speed=speed)


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="labconsole",
        description="Measure the energy efficiency of ML inference the way MLPerf Power does. "
        "With no command, opens the console on the profile it had open last (at first, the built-in simulated bench).",
    )
    ap.add_argument("--version", action="version", version=f"labconsole {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("tui", help="open the console (the default)")
    p.add_argument("--profile", help="profile YAML (default: the one the console had open last, else the built-in simulated bench)")
    p.set_defaults(func=cmd_tui)

    p = sub.add_parser("run", help="run the procedure headless and seal a bundle")
    p.add_argument("--profile", help="profile YAML (default: profiles/sim-bench.yaml)")
    p.add_argument("--scenario", help="SingleStream | MultiStream | Server | Offline (default: the profile's)")
    p.add_argument("--duration", type=float, help="LoadGen minimum duration in seconds (default: the profile's)")
    p.add_argument("--out", help="recordings folder for the bundle (default: the profile's)")
    p.add_argument("--quiet", action="store_true", help="print only the summary and the bundle path")
    p.add_argument("--from", dest="from_bundle", metavar="BUNDLE", help="run the measurement recorded in BUNDLE again (its profile, settings, seeds), after comparing the bench")
    p.add_argument("--remeasure", action="store_true", help="with --from: probe the SUT for the 'auto' LoadGen settings again instead of reusing the recorded ones")
    p.add_argument("--yes", action="store_true", help="with --from: run the bundle's own code (a command workload or a python: SUT) without asking")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compare", help="two bundles or MLPerf result folders side by side, with the relative change of each figure")
    p.add_argument("a", help="the reference run (bundle or MLPerf result folder)")
    p.add_argument("b", help="the run compared with it")
    p.add_argument("--json", action="store_true", help="one JSON object (shape in the README)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("init", help="guided first-time setup: find the meters, choose the workload, write a profile")
    from labconsole.wizard.init_command import add_init_arguments

    add_init_arguments(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("report", help="metrics of a bundle or an MLPerf result folder")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument(
        "--scenario",
        metavar="NAME",
        help="the scenario the result is filed under (default: the MLPerf folder above performance/, else LoadGen's); the metric follows it as the submission checker computes it",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("check", help="check a bundle or an MLPerf result folder against the rules (exit 1 on failure)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("export", help="write a bundle in another layout (--mlperf: an MLPerf power result folder, not an official submission)")
    p.add_argument("path", help="a labconsole bundle")
    p.add_argument("--mlperf", metavar="DIR", help="write power/, ranging/, run_1/ as MLPerf's power workflow lays them out (DIR must be new or empty)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("recover", help="seal a bundle left unsealed by a crash, as 'recovered'")
    p.add_argument("path")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("discover", help="list the meters and devices attached, and how to use them in a profile")
    p.add_argument("--json", action="store_true", help="a JSON list of {driver, address, model, serial, status, ...}")
    p.add_argument("--ptd", action="append", default=[], metavar="HOST:PORT", help="also ask a PTDaemon at this address (repeatable)")
    p.add_argument("--profile", help="also probe the addresses this profile names")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("replay", help="play a bundle or an MLPerf result folder back in the console")
    p.add_argument("path", help="a bundle folder or an MLPerf power result folder")
    p.add_argument("--speed", default="1", help="1, 10, 100, ... or max (as fast as it goes); default 1")
    p.add_argument("--profile", help="profile for the rest of the console (default: the built-in simulated bench)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("emulate", help="start a loopback instrument emulator (wt310, ptd, lpm01a) for training and tests")
    p.add_argument("name", help="which emulator")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the emulator's own options (--port N, --host H, ...)")
    p.set_defaults(func=cmd_emulate)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        args.profile = None
        return cmd_tui(args)
    if args.command in ("tui", "replay", "init"):  # Textual and prompts need the raw terminal
        return _dispatch(args)
    # Text from bundles, result folders and meters is printed: never a control sequence.
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapingStream(sys.stdout), EscapingStream(sys.stderr)
    try:
        return _dispatch(args)
    finally:
        if isinstance(sys.stdout, EscapingStream):
            sys.stdout = saved[0]
        if isinstance(sys.stderr, EscapingStream):
            sys.stderr = saved[1]


# A path a person typed that the system refuses: one line naming it, exit 2 (not a traceback).
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP}


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_ABORTED
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except OSError as exc:
        if exc.errno not in _PATH_ERRNOS or exc.filename is None:
            raise
        _err(describe_oserror(exc.filename, exc))
        return EXIT_USAGE
