"""`labconsole init [PATH]`: the setup wizard on a terminal (questions) or from options (scripts).

The logic is `labconsole.wizard.setup_wizard.SetupWizard`; this module only asks and prints. Questions
are asked when stdin is a terminal and no answer was given as an option (or with
`--interactive`); otherwise the answers come from the options:

    labconsole init --name lab1 --source 1,scope=wall --source 2,scope=gpu,name=gpu0 \\
        --workload matmul --scenario Offline --duration 60
    labconsole init --source simulated            # no hardware: the simulated bench
    labconsole init --source emulator:wt310       # or a loopback emulator of an instrument
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

EXIT_OK, EXIT_USAGE, EXIT_ABORTED = 0, 2, 130

ANSWER_OPTIONS = ("name", "description", "source", "workload", "sut_option", "harness_command", "loadgen_logs", "scenario", "duration",
                  "target_qps", "latency_ms", "latency_bound_ms", "idle", "settle", "no_ranging", "recordings", "operator")


def add_init_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", help="where to write the profile (default: profiles/NAME.yaml)")
    p.add_argument("--name", help="the bench's name (letters, digits, _ . -); default my-bench")
    p.add_argument("--description")
    p.add_argument("--operator")
    p.add_argument("--recordings", metavar="DIR", help="folder for the run bundles (default: recordings)")
    p.add_argument(
        "--source", action="append", default=[], metavar="WHAT[,KEY=VALUE...]",
        help="a source to use (repeatable). WHAT: a find's number, an instrument's address (a VISA resource such as "
        "TCPIP::HOST::INSTR or TCPIP::HOST::PORT::SOCKET, GPIB0::N::INSTR, ASRL...; or a PTDaemon HOST:PORT: asked for its identity), "
        "'simulated', or 'emulator:NAME'; "
        "keys: name, scope (wall|system|gpu|cpu|dram|dc-rail|other), primary, interval; any other key is a driver option "
        "(an emulator option for emulator:NAME)",
    )
    p.add_argument("--workload", metavar="SUT|command", help="matmul | null | sleep | python:MODULE:FUNCTION (the real LoadGen drives it), or 'command' for your own harness")
    p.add_argument("--sut-option", action="append", default=[], metavar="KEY=VALUE", help="an option of the built-in SUT (repeatable), e.g. size=256")
    # dest is not "command": the top-level parser keeps the subcommand's name there.
    p.add_argument("--command", dest="harness_command", metavar="'PROGRAM ARG...'", help="with --workload command: the harness's command line (split like a shell would, never run by one)")
    p.add_argument("--loadgen-logs", metavar="DIR", help="with --workload command: where the harness writes its LoadGen logs")
    p.add_argument("--scenario", help="SingleStream | MultiStream | Server | Offline")
    p.add_argument("--duration", metavar="SECONDS", help="LoadGen minimum duration (MLPerf submissions need 600)")
    p.add_argument("--target-qps", metavar="QPS", help="Offline/Server: the target rate, or auto (measured)")
    p.add_argument("--latency-ms", metavar="MS", help="SingleStream/MultiStream: the expected latency per query, or auto (measured)")
    p.add_argument("--latency-bound-ms", metavar="MS", help="Server: the p99 latency bound")
    p.add_argument("--idle", metavar="SECONDS", help="idle baseline before ranging (default 3)")
    p.add_argument("--settle", metavar="SECONDS", help="pause after setting the ranges, before each phase")
    p.add_argument("--no-ranging", action="store_true", help="skip the ranging pass (not MLPerf-grade)")
    p.add_argument("--ptd", action="append", default=[], metavar="HOST:PORT", help="also ask a PTDaemon at this address")
    p.add_argument("--force", action="store_true", help="overwrite an existing profile")
    p.add_argument("--interactive", action="store_true", help="ask questions even when stdin is not a terminal")
    p.add_argument("--list", action="store_true", help="list what is attached and what can be chosen, then stop")


def _answers_given(args: argparse.Namespace) -> bool:
    for name in ANSWER_OPTIONS:
        v = getattr(args, name, None)
        if v not in (None, False, []):
            return True
    return False


def parse_source_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'2,scope=gpu,name=gpu0,idle_w=50' -> ('2', {'scope': 'gpu', 'name': 'gpu0', 'options': {'idle_w': '50'}})."""
    parts = [p.strip() for p in spec.split(",")]
    what, rest = parts[0], parts[1:]
    if not what or "=" in what:
        raise ValueError(f"--source {spec!r}: start with what to use (a find's number or address, 'simulated', 'emulator:NAME')")
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for p in rest:
        if not p:
            continue
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--source {spec!r}: {p!r} is not KEY=VALUE")
        key = key.strip()
        if key in ("name", "scope", "primary"):
            out[key] = value.strip()
        elif key in ("interval", "sample_interval_s"):
            out["sample_interval_s"] = value.strip()
        else:
            extra[key] = value.strip()
    out["options"] = extra
    return what, out


def parse_key_values(items: list[str], flag: str) -> dict[str, str]:
    """KEY=VALUE items (a SUT's options) as a dict; `flag` names them in the error."""
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"{flag} {item!r}: not KEY=VALUE")
        out[k.strip()] = v.strip()
    return out


def _print_offers(wiz, out: Callable[[str], None]) -> None:
    if wiz.found:
        out("Found:")
        for o in wiz.found:
            mark = "" if o.usable else "   (cannot be used)"
            out(f"  {o.key:>3}  {o.label}{mark}")
    else:
        out("Nothing attached was found: no meter, GPU, RAPL domain or PTDaemon answered." + (f" ({wiz.discovery_note})" if wiz.discovery_note else ""))
    if wiz.nothing_attached:
        out("You can still measure without hardware:")
    else:
        out("Also available without hardware:")
    for o in wiz.fallback_offers():
        out(f"  {o.key:>3}  {o.label}" if len(o.key) <= 3 else f"  {o.key}  {o.label}")


def resolve_address(wiz, what: str, out: Callable[[str], None]) -> str:
    """`what` as an offer key: an address nobody found yet is asked for its identity first
    (never a scan: only that address). Raises WizardError when nothing usable answers there."""
    from labconsole.sources.discovery import address_kind
    from labconsole.wizard.setup_wizard import WizardError

    if address_kind(what) is None or any(o.address == what for o in wiz.found if o.usable):
        return what
    out(f"Asking {what}...")
    offer = wiz.add_address(what)
    if not offer.usable:
        raise WizardError(f"nothing usable answered at {what}: {offer.detail or offer.status}")
    out(f"  {offer.key:>3}  {offer.label}")
    return offer.key


def _print_issues(issues, err: Callable[[str], None]) -> None:
    for i in issues:
        err(str(i))


def run_init(args: argparse.Namespace, input_fn: Callable[[str], str] = input, out: Callable[[str], None] | None = None, err: Callable[[str], None] | None = None, discover=None) -> int:
    from labconsole.wizard.setup_wizard import SetupWizard, WizardError

    out = out or (lambda s: print(s, flush=True))
    err = err or (lambda s: print(s, file=sys.stderr, flush=True))
    wiz = SetupWizard(target=args.path, discover=discover)
    hints: dict[str, Any] = {}
    if args.ptd:
        hints["ptd"] = list(args.ptd)
    out("Looking for meters and devices...")
    wiz.discover(hints)
    _print_offers(wiz, out)
    if args.list:
        return EXIT_OK
    interactive = args.interactive or (not _answers_given(args) and sys.stdin is not None and sys.stdin.isatty())
    try:
        if interactive:
            code = _interactive(wiz, args, input_fn, out, err)
        else:
            code = _headless(wiz, args, out, err)
        if code != EXIT_OK:
            return code
        loaded = wiz.write(force=args.force)
    except WizardError as exc:
        err(str(exc))
        return EXIT_USAGE
    except (EOFError, KeyboardInterrupt):
        err("\nsetup cancelled; nothing was written")
        return EXIT_ABORTED
    out(f"wrote {loaded.path}")
    out(f"next: labconsole run --profile {loaded.path}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# From options


def _headless(wiz, args: argparse.Namespace, out, err) -> int:
    from labconsole.wizard.setup_wizard import WizardError

    issues = wiz.set_profile(name=args.name, description=args.description, operator=args.operator, recordings=args.recordings)
    if issues:
        _print_issues(issues, err)
        return EXIT_USAGE
    specs = list(args.source)
    if not specs:
        if not wiz.nothing_attached:
            err("choose the sources to use with --source (a number from the list above, e.g. --source 1,scope=wall), or --source simulated")
            return EXIT_USAGE
        out("Using the simulated bench (--source simulated); --source emulator:NAME picks an emulated instrument instead.")
        specs = ["simulated"]
    for spec in specs:
        try:
            what, fields = parse_source_spec(spec)
            what = resolve_address(wiz, what, out)
            offer = wiz.offer(what)
            if offer.kind == "emulator":
                fields["emulator_options"] = fields.pop("options")
            issues = wiz.add_source(what, **fields)
        except ValueError as exc:
            err(str(exc))
            return EXIT_USAGE
        except WizardError as exc:
            err(f"--source {spec!r}: {exc}")
            return EXIT_USAGE
        if issues:
            _print_issues(issues, err)
            return EXIT_USAGE
    try:
        sut_options = parse_key_values(args.sut_option, "--sut-option") if args.sut_option else None
    except ValueError as exc:
        err(str(exc))
        return EXIT_USAGE
    fields: dict[str, Any] = {
        "scenario": args.scenario,
        "duration_s": args.duration,
        "target_qps": args.target_qps,
        "expected_latency_ms": args.latency_ms,
        "latency_bound_ms": args.latency_bound_ms,
    }
    if args.workload == "command":
        fields.update(type="command", command=args.harness_command, loadgen_logs=args.loadgen_logs)
        for k in ("target_qps", "expected_latency_ms", "latency_bound_ms"):
            if fields.get(k) is not None:
                err(f"--{k.replace('_', '-')}: only for a built-in SUT; your harness sets its own LoadGen settings")
                return EXIT_USAGE
            fields.pop(k)
    else:
        if args.harness_command or args.loadgen_logs:
            err("--command/--loadgen-logs: only with --workload command")
            return EXIT_USAGE
        fields.update(sut=args.workload, sut_options=sut_options)
    issues = wiz.set_workload(**fields)
    if issues:
        _print_issues(issues, err)
        return EXIT_USAGE
    issues = wiz.set_procedure(idle_s=args.idle, settle_s=args.settle, ranging=False if args.no_ranging else None)
    if issues:
        _print_issues(issues, err)
        return EXIT_USAGE
    for s in wiz.sources:
        out(f"source {s.name}: {s.driver}, measures {s.scope}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Questions


class _Asker:
    def __init__(self, input_fn, out, err):
        self.input_fn, self.out, self.err = input_fn, out, err

    def ask(self, question: str, default: Any = None) -> str:
        shown = f" [{default}]" if default not in (None, "") else ""
        answer = self.input_fn(f"{question}{shown}: ").strip()
        return answer if answer else ("" if default is None else str(default))

    def yes(self, question: str, default: bool = False) -> bool:
        while True:
            a = self.ask(question + (" (Y/n)" if default else " (y/N)"), "").lower()
            if not a:
                return default
            if a in ("y", "yes"):
                return True
            if a in ("n", "no"):
                return False
            self.err("please answer y or n")


def _interactive(wiz, args: argparse.Namespace, input_fn, out, err) -> int:
    """The four steps as questions; each is asked again until the wizard accepts the answers."""
    ask = _Asker(input_fn, out, err)
    _ask_sources(wiz, ask)
    _ask_workload(wiz, ask)
    _ask_procedure(wiz, ask)
    return _ask_save(wiz, ask, args)


def _ask_sources(wiz, ask: _Asker) -> None:
    ask.out("")
    ask.out("Step 1 of 4: sources. " + wiz.steps[0].help)
    usable = [o for o in wiz.found if o.usable]
    default = "simulated" if not usable else ",".join(o.key for o in usable)
    while True:
        picks = [p.strip() for p in ask.ask("Which ones (numbers, names, or an address such as TCPIP::HOST::INSTR or HOST:PORT; separated by commas)", default).split(",") if p.strip()]
        if not picks:
            ask.err("pick at least one; 'simulated' works without hardware")
            continue
        if _ask_picked_sources(wiz, ask, picks):
            break
    if len(wiz.sources) > 1:
        _ask_primary(wiz, ask)


def _ask_picked_sources(wiz, ask: _Asker, picks: list[str]) -> bool:
    """Each pick's questions in turn; False at the first pick the wizard refuses (then the
    whole list is asked again)."""
    wiz.sources.clear()
    for p in picks:
        if not _ask_source(wiz, ask, p):
            return False
    return True


def _ask_source(wiz, ask: _Asker, pick: str) -> bool:
    """Name and scope of one picked source, asked until accepted; False if the pick is refused."""
    from labconsole.profile import SCOPES
    from labconsole.wizard.setup_wizard import SCOPE_HELP, WizardError

    try:
        pick = resolve_address(wiz, pick, ask.out)
        offer = wiz.offer(pick)
    except WizardError as exc:
        ask.err(str(exc))
        return False
    ask.out(f"  {offer.label}")
    ask.out("  what it measures: " + "; ".join(f"{k} = {v}" for k, v in SCOPE_HELP.items()))
    while True:
        name = ask.ask("  name", wiz.unique_name(offer.suggested_name))
        scope = ask.ask("  measures (" + "/".join(SCOPES) + ")", offer.suggested_scope)
        try:
            issues = wiz.add_source(pick, name=name, scope=scope)
        except WizardError as exc:
            ask.err(str(exc))
            return False
        if not issues:
            return True
        _print_issues(issues, ask.err)


def _ask_primary(wiz, ask: _Asker) -> None:
    names = [str(s.name) for s in wiz.sources]
    current = names[wiz.primary_index() or 0]
    while True:
        if wiz.set_primary(ask.ask("Which source gives the metric (primary)", current)):
            return
        ask.err(f"one of: {', '.join(names)}")


def _ask_until_accepted(ask: _Asker, question: str, default: Any, accept: Callable[[str], list]) -> str:
    """One question, asked again at once (with the loader's reason) until its answer is accepted."""
    while True:
        answer = ask.ask(question, default)
        issues = accept(answer)
        if not issues:
            return answer
        _print_issues(issues, ask.err)


def _scenario(answer: str) -> str:
    """A scenario as LoadGen spells it, whatever the case typed ('offline' is Offline)."""
    from labconsole.wizard.setup_wizard import SCENARIOS

    return next((s for s in SCENARIOS if s.lower() == answer.strip().lower()), answer.strip())


def _ask_workload(wiz, ask: _Asker) -> None:
    """Each answer is checked where it is typed: a mistyped scenario is refused at once, with
    the choices, not after every other question."""
    from labconsole.wizard.setup_wizard import SCENARIOS

    ask.out("")
    ask.out("Step 2 of 4: workload. " + wiz.steps[1].help)
    while True:
        kind = ask.ask("Built-in SUT (matmul, null, sleep, python:MODULE:FUNCTION) or 'command' for your own harness", wiz.loadgen.get("sut"))
        if kind == "command":
            fields: dict[str, Any] = {"type": "command", "command": ask.ask("  command line"), "loadgen_logs": ask.ask("  folder it writes its LoadGen logs into")}
        else:
            fields = {"type": "loadgen", "sut": kind}
        issues = wiz.set_workload(**fields)
        if not issues:
            break
        _print_issues(issues, ask.err)
    scenario = _ask_until_accepted(ask, f"  scenario ({', '.join(SCENARIOS)})", wiz.loadgen.get("scenario"), lambda a: wiz.set_workload(scenario=_scenario(a)))
    _ask_until_accepted(ask, "  duration in seconds (MLPerf submissions need 600)", wiz.loadgen.get("duration_s"), lambda a: wiz.set_workload(duration_s=a))
    if kind == "command":
        return
    sc = _scenario(scenario)
    if sc in ("Offline", "Server"):
        _ask_until_accepted(ask, "  target QPS (auto = measure the SUT first)", "auto", lambda a: wiz.set_workload(target_qps=a))
        if sc == "Server":
            _ask_until_accepted(ask, "  p99 latency bound in ms", 100, lambda a: wiz.set_workload(latency_bound_ms=a))
    else:
        _ask_until_accepted(ask, "  expected latency per query in ms (auto = measure)", "auto", lambda a: wiz.set_workload(expected_latency_ms=a))


def _ask_procedure(wiz, ask: _Asker) -> None:
    ask.out("")
    ask.out("Step 3 of 4: procedure. " + wiz.steps[2].help)
    while True:
        issues = wiz.set_procedure(
            idle_s=ask.ask("Idle baseline in seconds", wiz.procedure.get("idle_s")),
            ranging=ask.yes("Ranging pass first (MLPerf requires it)", bool(wiz.procedure.get("ranging", True))),
        )
        if not issues:
            return
        _print_issues(issues, ask.err)


def _ask_save(wiz, ask: _Asker, args: argparse.Namespace) -> int:
    """The bench's name, the profile shown, and leave to overwrite an existing file."""
    ask.out("")
    ask.out("Step 4 of 4: save. " + wiz.steps[3].help)
    while True:
        issues = wiz.set_profile(name=ask.ask("Bench name", args.name or wiz.meta["name"]))
        if not issues:
            break
        _print_issues(issues, ask.err)
    ask.out("")
    ask.out(wiz.text())
    if wiz.path.exists() and not args.force:
        if not ask.yes(f"{wiz.path} exists. Overwrite it", False):
            ask.err("nothing written; choose another name or path")
            return EXIT_USAGE
        args.force = True
    return EXIT_OK
