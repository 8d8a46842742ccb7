"""The command line: `labconsole [COMMAND]` (no command opens the console).

Imports stay inside the commands so `labconsole --help` starts fast and the headless commands
never load Textual.
"""

from __future__ import annotations

import argparse
import errno
import gc
import os
import signal
import sys
import threading
from pathlib import Path

from labconsole import __version__
from labconsole.events import EventBus, to_json
from labconsole.safefile import describe_oserror
from labconsole.termtext import EscapingStream, printable

from labconsole.mlperf.training import folder as training_folder
from labconsole.mlperf.training import report as training_report

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


def cmd_run(args: argparse.Namespace) -> int:
    from labconsole.procedure.engine import RunEngine, RunOptions
    from labconsole.procedure.plans import plan_for

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
    wl_type = loaded.profile.workload.type
    if args.scenario and wl_type == "training":
        _err("--scenario: a training run has no LoadGen scenario")
        return EXIT_USAGE
    if wl_type == "tiny" and (args.scenario or args.duration is not None):  # MLPerf Tiny's energy mode
        _err("--scenario, --duration: a Tiny energy run has 5 windows of `infer N W` (the profile's workload.inferences, windows)")
        return EXIT_USAGE
    proc = RunEngine(loaded, plan_for(loaded.profile), RunOptions(scenario=args.scenario, duration_s=args.duration, out_dir=Path(args.out) if args.out else None), bus)
    return _drive_procedure(proc, args)


def _drive_procedure(proc, args: argparse.Namespace) -> int:
    """Run a procedure on a thread, show its events and progress, stop it on Ctrl-C."""
    from labconsole import cli_render

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
    try:
        with cli_render.RunDisplay(proc, quiet=args.quiet) as shown:
            while worker.is_alive() or not q.empty():
                try:
                    shown.event(q.get(timeout=0.2))
                except Exception:  # queue.Empty
                    pass
                shown.tick()
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
    cli_render.print_run_summary(out)
    print(out.bundle, flush=True)
    if out.exit_status == "completed":
        return EXIT_OK
    return EXIT_ABORTED if out.exit_status == "aborted" else EXIT_FAIL


def cmd_rerun(args: argparse.Namespace) -> int:
    """`run --from BUNDLE`: the recorded measurement again, after comparing the bench."""
    from labconsole.procedure.engine import RunEngine
    from labconsole.procedure.plans import plan_for
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
    proc = RunEngine(plan.loaded, plan_for(plan.loaded.profile), plan.run_options(diffs, out_dir=Path(args.out) if args.out else None), EventBus())
    return _drive_procedure(proc, args)


def _code_a_bundle_runs(workload) -> str | None:
    """The user code a workload would execute (a command, a python: SUT), shown before a rerun."""
    if getattr(workload, "type", "") in ("command", "training"):  # a harness, a trainer
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

    if _is_tiny(args.a) or _is_tiny(args.b):
        return _tiny_compare(args)
    ta, tb = (training_folder.find_training_folder(Path(p)) for p in (args.a, args.b))
    if ta is not None or tb is not None:
        if ta is None or tb is None:
            _err("compare: one is a Training power result and the other is not; compare like with like")
            return EXIT_USAGE
        if args.html or args.plot:
            _err("compare --html/--plot: not yet for Training power results (report --json and compare --json are)")
            return EXIT_USAGE
        from labconsole.mlperf.training.compare import compare_training

        try:
            cmp = compare_training(ta, tb)
        except training_folder.TrainingFolderError as exc:
            _err(str(exc))
            return EXIT_USAGE
        print(to_json(cmp.as_dict(), indent=2) if args.json else _printable(render_text(cmp)))
        return EXIT_OK
    if args.html or args.plot:
        return _write_report(args)
    a = _open_record_or_exit(args.a)
    b = _open_record_or_exit(args.b)
    cmp = compare_runs(a, b)
    if args.json:
        print(to_json(cmp.as_dict(), indent=2))
    else:
        print(render_text(cmp))
    return EXIT_OK


def _write_report(args: argparse.Namespace) -> int:
    """`report --html/--plot` and `compare --html/--plot`: files to keep (labconsole.report)."""
    from labconsole.bundle.reader import RunOpenError
    from labconsole.report.export import ReportError, write_compare_report, write_run_report

    try:
        if args.command == "compare":
            done = write_compare_report(args.a, args.b, args.html, args.plot)
        else:
            done = write_run_report(args.path, args.html, args.plot, args.scenario)
    except (ReportError, RunOpenError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ValueError as exc:  # an unknown --scenario
        _err(f"--scenario: {exc}")
        return EXIT_USAGE
    for path in done.files:
        print(path)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from labconsole.tui.serve import serve_main

    return serve_main(args)


def cmd_init(args: argparse.Namespace) -> int:
    from labconsole.wizard.init_command import run_init

    return run_init(args)


# ---------------------------------------------------------------------------------------------
# report / check / recover


def _open_record_or_exit(path: str):
    from labconsole.bundle.reader import RunOpenError, open_run

    try:
        # Streamed: a phase is read chunk by chunk, so memory stays bounded however long it is.
        return open_run(path, stream=True)
    except RunOpenError as exc:
        _err(str(exc))
        raise SystemExit(EXIT_USAGE) from None


def _read_training_or_exit(args: argparse.Namespace) -> "training_folder.TrainingResult":
    try:
        return training_folder.read_training_folder(Path(args.path), getattr(args, "rules", None))
    except training_folder.TrainingFolderError as exc:
        _err(str(exc))
        raise SystemExit(EXIT_USAGE) from None


def _report_training(args: argparse.Namespace) -> int:
    rep = training_report.training_report(_read_training_or_exit(args))
    if args.json:
        print(to_json(rep, indent=2))
    else:
        print(f"{_printable(rep['path'])} (MLPerf Training power result)")
        for line in training_report.report_lines(rep):
            print(_printable(line))
    return EXIT_OK


def _check_training(args: argparse.Namespace) -> int:
    from labconsole.mlperf.training.checks import run_training_checks
    from labconsole.mlperf.checks import passed

    result = _read_training_or_exit(args)
    bundle = Path(args.path)
    results = run_training_checks(result, bundle=bundle if (bundle / "data" / "run.json").is_file() else None)
    ok = passed(results)
    if args.json:
        print(to_json({"path": str(result.path), "kind": "mlperf-training", "passed": ok,
                       "rules": {"semantics": result.semantics, "why": result.semantics_why},
                       "checks": [r.as_dict() for r in results]}, indent=2))
    else:
        from labconsole.cli_render import print_checks

        print(f"{_printable(str(result.path))} (MLPerf Training power result; {result.semantics} summarizer: {_printable(result.semantics_why)})")
        print_checks(results)
    return EXIT_OK if ok else EXIT_FAIL


def cmd_report(args: argparse.Namespace) -> int:
    from labconsole.mlperf import metrics, official_record

    if _is_tiny(args.path):
        if args.html or args.plot:
            _err("report --html/--plot: not yet for MLPerf Tiny energy runs (report --json is)")
            return EXIT_USAGE
        return _tiny_report(args)
    if training_folder.find_training_folder(Path(args.path)) is not None:
        if args.html or args.plot:
            _err("report --html/--plot: not yet for Training power results (report --json is)")
            return EXIT_USAGE
        return _report_training(args)
    if args.html or args.plot:
        return _write_report(args)

    record = _open_record_or_exit(args.path)
    if record.kind == "bundle" and official_record.is_official_bundle(record.path):
        record = official_record.report_record(record.path) or record  # the official folder is the record
    try:
        rep = metrics.compute_report(record, args.scenario)
    except ValueError as exc:
        _err(f"--scenario: {exc}")
        return EXIT_USAGE
    if args.json:
        print(to_json(rep, indent=2))
    else:
        from labconsole import cli_render

        cli_render.print_report_of(record, rep)
    return EXIT_FAIL if rep.get("empty_window") else EXIT_OK  # an empty power window is a failed measurement


def cmd_check(args: argparse.Namespace) -> int:
    from labconsole.mlperf import checks, official_record

    if _is_tiny(args.path):
        return _tiny_check(args)
    if training_folder.find_training_folder(Path(args.path)) is not None:
        return _check_training(args)

    record = _open_record_or_exit(args.path)
    if record.kind == "bundle" and official_record.is_official_bundle(record.path):
        return official_record.check_command(args.path, args.json, args.rules)  # both verdicts side by side
    try:
        rules = checks.choose(record, args.rules)
    except ValueError as exc:
        _err(f"--rules: {exc}")
        return EXIT_USAGE
    results = checks.run_checks(record, rules)
    ok = checks.passed(results)
    if args.json:
        print(to_json({"path": str(record.path), "kind": record.kind, "passed": ok, "rules": rules.as_dict(), "checks": [r.as_dict() for r in results]}, indent=2))
    else:
        from labconsole.cli_render import print_checks

        print(f"rules: {_printable(rules.describe())}")
        print_checks(results)
    return EXIT_OK if ok else EXIT_FAIL


# MLPerf Tiny energy folders (EnergyRunner, MLCommons runner, our Tiny bundles): labconsole.mlperf.tiny


def _is_tiny(path: str) -> bool:
    from labconsole.mlperf.tiny.folders import find_tiny

    return find_tiny(path) is not None


def _read_tiny_or_exit(path: str):
    from labconsole.mlperf.tiny.folders import TinyError, read_tiny

    try:
        return read_tiny(path)
    except TinyError as exc:
        _err(str(exc))
        raise SystemExit(EXIT_USAGE) from None


def _tiny_report(args: argparse.Namespace) -> int:
    from labconsole.mlperf.tiny import analysis, text

    if args.scenario:
        _err("--scenario: a Tiny energy run has no LoadGen scenario")
        return EXIT_USAGE
    rep = analysis.report(_read_tiny_or_exit(args.path))
    print(to_json(rep, indent=2) if args.json else text.render_report(rep))
    return EXIT_OK


def _tiny_check(args: argparse.Namespace) -> int:
    from labconsole.mlperf.tiny import analysis

    run = _read_tiny_or_exit(args.path)
    results = analysis.checks(run)
    ok = analysis.passed(results)
    if args.json:
        print(to_json({"path": str(run.path), "kind": "tiny", "passed": ok, "checks": [r.as_dict() for r in results]}, indent=2))
    else:
        from labconsole.cli_render import print_checks

        print_checks(results)
    return EXIT_OK if ok else EXIT_FAIL


def _tiny_compare(args: argparse.Namespace) -> int:
    from labconsole.mlperf.compare import render_text
    from labconsole.mlperf.tiny import analysis

    if not (_is_tiny(args.a) and _is_tiny(args.b)):
        _err("compare: a Tiny energy run (uJ/inference) compares only with another Tiny energy run")
        return EXIT_USAGE
    cmp = analysis.compare(_read_tiny_or_exit(args.a), _read_tiny_or_exit(args.b))
    print(to_json(cmp.as_dict(), indent=2) if args.json else render_text(cmp))
    return EXIT_OK


def _tiny_export(args: argparse.Namespace) -> int:
    from labconsole.mlperf.tiny.export import export_mlcommons
    from labconsole.mlperf.tiny.folders import TinyError

    try:
        files = export_mlcommons(args.path, args.mlperf)
    except (TinyError, OSError) as exc:
        _err(str(exc))
        return EXIT_FAIL
    print("NOT AN OFFICIAL MLPERF SUBMISSION. The MLCommons Tiny runner's energy-mode layout (results.json, results.txt, log.txt).")
    print(f"  {len(files)} files")
    print(args.mlperf)
    return EXIT_OK


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
    from labconsole.mlperf.export import ExportError, ExportTampered, export_mlperf
    from labconsole.bundle.reader import RunOpenError

    if not args.mlperf:
        _err("export: name the format: --mlperf DIR")
        return EXIT_USAGE
    if _is_tiny(args.path):
        return _tiny_export(args)
    if (Path(args.path) / "data" / "training").is_dir():
        return _export_training(args)
    try:
        res = export_mlperf(args.path, args.mlperf)
    except ExportTampered as exc:  # the seal does not verify: a failed check, as `check` says
        _err(str(exc))
        return EXIT_FAIL
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


def _export_training(args: argparse.Namespace) -> int:
    from labconsole.mlperf.training.export import TrainingExportError, export_training

    try:
        res = export_training(Path(args.path), Path(args.mlperf), org=args.org, system_json=Path(args.system_json) if args.system_json else None)
    except TrainingExportError as exc:
        _err(str(exc))
        return EXIT_FAIL
    print("NOT AN OFFICIAL MLPERF SUBMISSION until its results and system description are reviewed.")
    for note in res.notes:
        print(f"  note: {_printable(note)}")
    print(f"  {len(res.files)} files; check it with: python -m mlperf_logging.package_checker {res.out_dir / args.org} training 4.1.0")
    print(res.benchmark_dir)
    return EXIT_OK


def cmd_director(args: argparse.Namespace) -> int:
    from labconsole.director.command import run_director

    return run_director(args)


def cmd_emulate(args: argparse.Namespace) -> int:
    from labconsole.emulators.registry import EMULATORS, module_for

    if args.name not in EMULATORS:
        _err(f"no emulator named {args.name!r} (known: {', '.join(sorted(EMULATORS)) or 'none'})")
        return EXIT_USAGE
    return int(module_for(args.name).main(list(args.rest)) or 0)


def cmd_export_metrics(args: argparse.Namespace) -> int:
    from labconsole.emulators.registry import serve_until_interrupted
    from labconsole.exporter.prometheus import run as run_exporter

    loaded = _load_profile_or_exit(args.profile)
    try:
        exporter, _port = run_exporter(loaded.profile, args.host, args.port, args.node, lambda line: None)
    except OSError as exc:
        _err(f"export-metrics: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_USAGE
    url = f"http://{args.host}:{_port}/metrics"
    return serve_until_interrupted(lambda: print(f"serving {url} (node {exporter.node}); Ctrl-C stops", flush=True), exporter.stop)


def cmd_discover(args: argparse.Namespace) -> int:
    from labconsole.wizard.discover_command import main as discover_main

    return int(discover_main(args) or 0)


def cmd_tui(args: argparse.Namespace) -> int:
    # No cyclic collection until the first paint (the app enables it there, after freezing what
    # the start-up built): a full pass over the modules being imported cost ~15 ms of it.
    gc.disable()
    try:
        from labconsole.tui.app import run_tui
    except ImportError:
        gc.enable()
        # No console UI in this build: run the default bench headless and print the result.
        if getattr(args, "watch", False):
            _err("--watch: this build has no console UI (Textual) to watch with")
            return EXIT_USAGE
        ns = argparse.Namespace(profile=getattr(args, "profile", None), scenario=None, duration=None, out=None, quiet=False)
        return cmd_run(ns)
    try:
        return run_tui(profile=getattr(args, "profile", None), watch=getattr(args, "watch", False))
    finally:
        gc.enable()  # should the console have ended (or failed to start) before its first paint


def cmd_replay(args: argparse.Namespace) -> int:
    from labconsole.bundle.reader import RunOpenError, open_run
    from labconsole.sources.replay import parse_speed

    try:
        speed = parse_speed(args.speed)
    except ValueError as exc:
        _err(f"--speed: {exc}")
        return EXIT_USAGE
    if _is_tiny(args.path) and not (Path(args.path) / "data" / "run.json").exists():
        return _tiny_replay(args, speed)
    try:
        open_run(args.path, load_samples=False)  # a clear error before the console opens
    except RunOpenError as exc:
        _err(str(exc))
        return EXIT_USAGE
    from labconsole.tui.app import run_tui

    return run_tui(profile=args.profile, replay=args.path, speed=speed)


def _tiny_replay(args: argparse.Namespace, speed: float) -> int:
    """A published Tiny folder is replayed as a bundle built from it in a scratch folder."""
    from labconsole.mlperf.tiny.replay import scratch_bundle

    with scratch_bundle(_read_tiny_or_exit(args.path)) as bundle:
        from labconsole.tui.app import run_tui

        return run_tui(profile=args.profile, replay=str(bundle), speed=speed)


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="labconsole",
        description="Measure the energy efficiency of ML inference the way MLPerf Power does. "
        "With no command, opens the console on the profile it had open last (at first, the built-in simulated bench).",
    )
    ap.add_argument("--version", action="version", version=f"labconsole {__version__}")
    # `labconsole --profile PATH` opens the console on it (as `labconsole tui --profile PATH` does).
    ap.add_argument("--profile", dest="top_profile", metavar="PATH", help="open the console on this profile (a new path: setup writes it there)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("tui", help="open the console (the default)")
    p.add_argument("--profile", help="profile YAML (default: the one the console had open last, else the built-in simulated bench)")
    p.add_argument("--watch", action="store_true", help="an observer's console: follow the run being recorded under the profile's recordings folder; cannot start or abort runs")
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
    p.add_argument("--html", metavar="OUT.html", help="write one self-contained HTML file: A and B overlaid, figures, checks, bench differences")
    p.add_argument("--plot", metavar="OUT.png|svg", help="write only the overlaid power and QPS plots")
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
    p.add_argument("--html", metavar="OUT.html", help="write one self-contained HTML report (metric and verdict, zoomable plots, checks, calibration, bench, files)")
    p.add_argument("--plot", metavar="OUT.png|svg", help="write only the power and QPS plots")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("check", help="check a bundle or an MLPerf result folder against the rules (exit 1 on failure)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rules", default="auto", metavar="auto|vX.Y|current", help="whose rules: auto (default: the round an MLPerf folder was made for; today's for a bundle), a round (v1.0 ... v4.1), or current")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("export", help="write a bundle in another layout (--mlperf: an MLPerf power result folder, not an official submission)")
    p.add_argument("path", help="a labconsole bundle")
    p.add_argument("--mlperf", metavar="DIR", help="write power/, ranging/, run_1/ as MLPerf's power workflow lays them out (DIR must be new or empty)")
    p.add_argument("--org", default="labconsole", help="Training: the submitter's folder name (default labconsole)")
    p.add_argument("--system-json", metavar="FILE", help="Training: the system description to put in systems/<system>.json")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("recover", help="seal a bundle left unsealed by a crash, as 'recovered'")
    p.add_argument("path")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("discover", help="list the meters and devices attached, and how to use them in a profile")
    p.add_argument("--json", action="store_true", help="a JSON list of {driver, address, model, serial, status, ...}")
    p.add_argument("--ptd", action="append", default=[], metavar="HOST:PORT", help="also ask a PTDaemon at this address (repeatable)")
    p.add_argument("--host", action="append", default=[], metavar="HOST[:PORT]",
                   help="also ask this host (repeatable): VXI-11, a meter's SCPI socket (5025) and PTDaemon (8888), or only PORT; never a range")
    p.add_argument("--profile", help="also probe the addresses this profile names")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("replay", help="play a bundle or an MLPerf result folder back in the console")
    p.add_argument("path", help="a bundle folder or an MLPerf power result folder")
    p.add_argument("--speed", default="1", help="1, 10, 100, ... or max (as fast as it goes); default 1")
    p.add_argument("--profile", help="profile for the rest of the console (default: the built-in simulated bench)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("serve", help="publish the console to a web browser (127.0.0.1 unless --host; --watch: observers who cannot start or abort a run)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, this machine only); any other needs the token printed at start")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--profile", help="profile for the console (default: as `labconsole` chooses)")
    p.add_argument("--watch", action="store_true", help="observers: follow the run being recorded under the profile's recordings folder; r/s/x/g do nothing")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export-metrics", help="serve the profile's sources as a Prometheus exporter (labconsole_power_watts, ...)")
    p.add_argument("--profile", help="the profile whose sources to export (default: the simulated bench)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for the site's Prometheus)")
    p.add_argument("--port", type=int, default=9464, help="port (default 9464; 0 = any free port)")
    p.add_argument("--node", help="the node label (default: this host's name)")
    p.set_defaults(func=cmd_export_metrics)

    p = sub.add_parser("director", help="the official workflow's director: write power-dev's server.conf from a profile, check it, start power-dev's server and serve its live view")
    p.add_argument("--profile", required=True, help="a profile with a `director:` section (analyzers, ptd, ntp_server, address)")
    p.add_argument("--workdir", help="where server.conf and the server's log go (default: RECORDINGS/director/<UTC time>)")
    p.add_argument("--check", action="store_true", help="write server.conf and check it against what the official checker accepts; start nothing")
    p.set_defaults(func=cmd_director)

    p = sub.add_parser("emulate", help="start a loopback instrument emulator (wt310, ptd, lpm01a) for training and tests")
    p.add_argument("name", help="which emulator")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the emulator's own options (--port N, --host H, ...)")
    p.set_defaults(func=cmd_emulate)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    top = getattr(args, "top_profile", None)
    if args.command is None:
        args.profile = top
        return cmd_tui(args)
    if top is not None and getattr(args, "profile", "absent") is None:
        args.profile = top  # `labconsole --profile P run` = `labconsole run --profile P`
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
