"""`labconsole init` and the SetupWizard behind it: finds, choices, validation, the written profile."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from conftest import run_cli
from labconsole import cli
from labconsole.profile import CommandWorkload, ProfileError, load_profile
from labconsole.sources.base import Discovered
from labconsole.wizard.setup_wizard import SetupWizard, WizardError
from labconsole.wizard.init_command import run_init

FINDS = [
    Discovered("simulated", "simulated://bench-a", model="Simulated meter", serial="SIM-0042",
               profile_snippet={"driver": "simulated", "options": {"serial": "SIM-0042"}, "sample_interval_s": 0.25}),
    Discovered("acme-meter", "TCPIP::10.0.0.9::INSTR", model="ACME 9000", serial="A-17", profile_snippet={"driver": "acme-meter", "options": {"address": "TCPIP::10.0.0.9::INSTR"}}),
    Discovered("simulated", "simulated://bench-b", model="Simulated meter", serial="SIM-0043", status="busy", detail="opened by another program"),
]


def fake_discovery(monkeypatch, finds=(), raises: Exception | None = None):
    """Stand in for labconsole.sources.discovery (another module's job) with a fake discover_all."""
    calls = []

    def discover_all(hints):
        calls.append(hints)
        if raises is not None:
            raise raises
        return list(finds)

    from labconsole.sources import discovery as real

    mod = types.ModuleType("labconsole.sources.discovery")
    mod.discover_all = discover_all
    mod.address_kind, mod.probe_address = real.address_kind, real.probe_address  # an address typed is asked for real
    monkeypatch.setitem(sys.modules, "labconsole.sources.discovery", mod)
    return calls


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def init(*argv: str) -> int:
    return cli.main(["init", *argv])


# ---------------------------------------------------------------------------------------------
# Nothing attached


def test_nothing_attached_says_so_and_writes_a_simulated_bench_that_loads(in_tmp, monkeypatch, capsys):
    calls = fake_discovery(monkeypatch, [])
    code = init("--name", "first", "--duration", "2", "--idle", "0.5", "--sut-option", "size=64", "--ptd", "127.0.0.1:8888")
    out = capsys.readouterr().out
    assert code == 0, out
    assert calls == [{"ptd": ["127.0.0.1:8888"]}]
    assert "Nothing attached was found" in out
    assert "Using the simulated bench (--source simulated)" in out
    path = in_tmp / "profiles" / "first.yaml"
    assert f"wrote {Path('profiles') / 'first.yaml'}" in out
    loaded = load_profile(path)  # loads without change
    p = loaded.profile
    assert p.name == "first" and len(p.sources) == 1
    src = p.sources[0]
    assert (src.driver, src.scope, src.primary, src.name) == ("simulated", "wall", True, "wall")
    assert p.workload.duration_s == 2 and p.workload.sut == "matmul" and p.workload.sut_options == {"size": 64}
    assert p.procedure.idle_s == 0.5
    text = path.read_text()
    assert text.startswith("# first: a bench profile written by `labconsole init`")
    assert "# what it measures: wall, system, gpu, cpu, dram, dc-rail, other" in text
    assert "noise_w: 0.8                # standard deviation of the reading noise (W)" in text


def test_missing_discovery_module_or_a_failing_probe_is_nothing_attached(in_tmp, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "labconsole.sources.discovery", None)  # import fails
    assert init("--name", "a", "--list") == 0
    out = capsys.readouterr().out
    assert "Nothing attached was found" in out and "discovery is not available" in out
    assert "simulated  the simulated bench" in out
    fake_discovery(monkeypatch, raises=OSError("USB bus gone"))
    assert init("--name", "b") == 0
    out = capsys.readouterr().out
    assert "discovery failed: OSError: USB bus gone" in out
    assert load_profile(in_tmp / "profiles" / "b.yaml").profile.sources[0].driver == "simulated"


def test_nothing_attached_offers_the_emulators_and_one_can_be_chosen(in_tmp, monkeypatch, capsys):
    from labconsole.emulators.registry import EMULATORS, FOR_DRIVER

    # Any importable module without an `Options` model: the loader accepts any emulator options.
    monkeypatch.setitem(EMULATORS, "simemu", "labconsole.emulators.registry")
    monkeypatch.setitem(FOR_DRIVER, "simulated", "simemu")
    fake_discovery(monkeypatch, [])
    assert init("--name", "emu", "--source", "emulator:simemu,idle_w=70", "--duration", "3") == 0
    out = capsys.readouterr().out
    assert "emulator:simemu  the simemu emulator: a loopback simulated instrument" in out
    p = load_profile(in_tmp / "profiles" / "emu.yaml").profile
    assert p.sources[0].emulator == {"idle_w": 70} and p.sources[0].driver == "simulated"


# ---------------------------------------------------------------------------------------------
# Finds


def test_finds_are_listed_with_their_identity_and_picked_by_number(in_tmp, monkeypatch, capsys):
    fake_discovery(monkeypatch, FINDS)
    assert init("--name", "lab", "--list") == 0
    out = capsys.readouterr().out
    assert "    1  Simulated meter s/n SIM-0042 at simulated://bench-a (simulated)" in out
    assert "    2  ACME 9000 s/n A-17 at TCPIP::10.0.0.9::INSTR (acme-meter)" in out
    assert "    3  Simulated meter s/n SIM-0043 at simulated://bench-b (simulated): busy (opened by another program)   (cannot be used)" in out
    assert "Also available without hardware:" in out
    assert not (in_tmp / "profiles").exists()

    assert init("--name", "lab", "--source", "1,name=mains,scope=Wall", "--source", "simulated,scope=dc rail,name=board,noise_w=0.1") == 0
    p = load_profile(in_tmp / "profiles" / "lab.yaml").profile
    a, b = p.sources
    assert (a.name, a.driver, a.scope, a.primary, a.sample_interval_s) == ("mains", "simulated", "wall", True, 0.25)
    assert a.options == {"serial": "SIM-0042"}
    assert (a.identity.model, a.identity.serial) == ("Simulated meter", "SIM-0042")
    assert (b.name, b.scope, b.primary, b.options["noise_w"]) == ("board", "dc-rail", False, 0.1)


def test_finds_need_an_explicit_choice_and_a_busy_one_is_refused(in_tmp, monkeypatch, capsys):
    fake_discovery(monkeypatch, FINDS)
    assert init("--name", "lab") == 2
    assert "choose the sources to use with --source" in capsys.readouterr().err
    assert init("--name", "lab", "--source", "3") == 2
    assert "cannot be used (busy); opened by another program" in capsys.readouterr().err
    assert init("--name", "lab", "--source", "7") == 2
    assert "nothing offered as '7'" in capsys.readouterr().err
    assert not (in_tmp / "profiles").exists()


def test_validation_gives_the_profile_loaders_own_messages(in_tmp, monkeypatch, capsys):
    fake_discovery(monkeypatch, FINDS)
    # A driver this labconsole does not have: the loader's "unknown driver" with file and line.
    assert init("--name", "lab", "--source", "2") == 2
    err = capsys.readouterr().err
    assert f"{Path('profiles') / 'lab.yaml'}:11: sources[0].driver: unknown driver 'acme-meter' (known: " in err

    wiz = SetupWizard(discover=lambda hints: FINDS)
    wiz.discover()
    wiz.set_profile(name="lab")
    issues = wiz.add_source("1", scope="gpux")
    assert len(issues) == 1 and wiz.sources == []  # nothing added
    # The same text, hand-written to the same path, gets the very same message from the loader.
    assert wiz.add_source("1", scope="gpu") == []
    path = in_tmp / wiz.path
    path.parent.mkdir()
    path.write_text(wiz.text().replace("scope: gpu ", "scope: gpux"))
    with pytest.raises(ProfileError) as exc:
        load_profile(wiz.path)
    assert str(exc.value) == str(issues[0])
    assert str(issues[0]).startswith(f"{wiz.path}:12: sources[0].scope: Input should be 'wall', 'system', 'gpu'")

    for argv, expected in [
        (["--duration", "abc"], "workload.duration_s: Input should be a valid number, unable to parse string as a number (got 'abc')"),
        (["--scenario", "Bogus"], "workload.scenario: Input should be 'SingleStream', 'MultiStream', 'Server' or 'Offline' (got 'Bogus')"),
        (["--sut-option", "size=99999"], "workload.sut_options.size: Input should be less than or equal to 4096 (got 99999)"),
        (["--sut-option", "colour=red"], "workload.sut_options.colour: unknown key (not allowed here; check the spelling)"),
        (["--idle", "-1"], "procedure.idle_s: Input should be greater than or equal to 0 (got -1)"),
        (["--source", "simulated,noise_w=-3"], "sources[0].options.noise_w: Input should be greater than or equal to 0 (got -3)"),
        (["--source", "simulated,colour=red"], "sources[0].options.colour: unknown key (not allowed here; check the spelling)"),
        (["--name", "two words"], "name: must be letters, digits, _ . - only (no spaces), starting with a letter or digit, at most 64 characters (got 'two words')"),
    ]:
        fake_discovery(monkeypatch, [])
        args = ["--name", "v", *argv] if "--name" not in argv else argv
        assert init(*args) == 2, argv
        err = capsys.readouterr().err
        assert expected in err, (argv, err)
        assert err.startswith(str(Path("profiles"))), err  # FILE:LINE: first
    assert not (in_tmp / "profiles" / "v.yaml").exists()


def test_an_existing_profile_is_not_overwritten_without_force(in_tmp, monkeypatch, capsys):
    fake_discovery(monkeypatch, [])
    assert init("--name", "keep", "--duration", "5") == 0
    path = in_tmp / "profiles" / "keep.yaml"
    before = path.read_bytes()
    assert init("--name", "keep", "--duration", "7") == 2
    assert "a profile is already there; choose another name or path, or overwrite it with --force" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert init("--name", "keep", "--duration", "7", "--force") == 0
    assert load_profile(path).profile.workload.duration_s == 7
    other = in_tmp / "elsewhere" / "bench.yaml"
    assert init(str(other), "--name", "keep") == 0  # an explicit PATH
    assert load_profile(other).profile.name == "keep"


def test_a_command_workload_and_the_options_that_do_not_fit_it(in_tmp, monkeypatch, capsys):
    fake_discovery(monkeypatch, [])
    assert init("--name", "harness", "--workload", "command", "--command", "python3 run_harness.py --scenario 'Offline mode'",
                "--loadgen-logs", "out/logs", "--scenario", "server", "--duration", "900") == 0
    wl = load_profile(in_tmp / "profiles" / "harness.yaml").profile.workload
    assert isinstance(wl, CommandWorkload)
    assert wl.command == ["python3", "run_harness.py", "--scenario", "Offline mode"]
    assert (wl.loadgen_logs, wl.scenario, wl.duration_s) == ("out/logs", "Server", 900)
    assert init("--name", "h2", "--workload", "command", "--command", "x", "--loadgen-logs", "l", "--target-qps", "5") == 2
    assert "--target-qps: only for a built-in SUT" in capsys.readouterr().err
    assert init("--name", "h3", "--workload", "command", "--loadgen-logs", "l") == 2
    assert "workload.command: List should have at least 1 item after validation, not 0" in capsys.readouterr().err


def test_server_and_single_stream_settings(in_tmp, monkeypatch):
    fake_discovery(monkeypatch, [])
    assert init("--name", "srv", "--scenario", "Server", "--target-qps", "250", "--latency-bound-ms", "20", "--workload", "sleep", "--sut-option", "latency_ms=1") == 0
    wl = load_profile(in_tmp / "profiles" / "srv.yaml").profile.workload
    assert (wl.scenario, wl.target_qps, wl.latency_bound_ms, wl.sut, wl.sut_options) == ("Server", 250, 20, "sleep", {"latency_ms": 1})
    assert init("--name", "ss", "--scenario", "SingleStream", "--latency-ms", "4.5", "--no-ranging") == 0
    p = load_profile(in_tmp / "profiles" / "ss.yaml").profile
    assert (p.workload.scenario, p.workload.expected_latency_ms, p.procedure.ranging) == ("SingleStream", 4.5, False)


# ---------------------------------------------------------------------------------------------
# The core API a TUI drives


def test_wizard_core_steps_offers_and_choices(tmp_path):
    wiz = SetupWizard(target=tmp_path / "p.yaml", discover=lambda hints: FINDS)
    assert [s.key for s in wiz.steps] == ["sources", "workload", "procedure", "save"]
    offers = wiz.discover()
    from labconsole.emulators.registry import EMULATORS

    emulators = [o for o in offers if o.key.startswith("emulator:")]
    meters = [n for n in EMULATORS if n != "tiny-dut"]  # tiny-dut is a device under test, not a meter
    assert sorted(o.key for o in emulators) == sorted(f"emulator:{n}" for n in meters)
    offers = [o for o in offers if o not in emulators]
    assert [o.key for o in offers] == ["1", "2", "3", "simulated"]
    assert [o.usable for o in offers] == [True, True, False, True]
    assert not wiz.nothing_attached
    assert json.dumps([o.as_dict() for o in offers])  # plain data for any UI
    # The primary is the wall meter, not the first source.
    assert wiz.add_source("simulated", name="gpu0", scope="GPU") == []
    assert wiz.add_source("1") == []
    assert [s.name for s in wiz.sources] == ["gpu0", "simulated"]
    assert wiz.write().profile.primary_source.name == "simulated"
    # A rejected answer leaves the earlier state as it was.
    assert wiz.set_workload(scenario="offline", duration_s="30") == []
    issues = wiz.set_workload(duration_s="-4")
    assert [i.path for i in issues] == ["workload.duration_s"]
    assert wiz.loadgen["duration_s"] == 30 and wiz.loadgen["scenario"] == "Offline"
    assert wiz.set_procedure(settle_s="2") == [] and wiz.procedure["settle_s"] == 2
    with pytest.raises(WizardError, match="already there"):
        wiz.write()
    assert load_profile(wiz.write(force=True).path).profile.procedure.settle_s == 2


def test_write_refuses_with_no_source_or_with_mistakes(tmp_path):
    wiz = SetupWizard(target=tmp_path / "p.yaml", discover=lambda hints: [])
    wiz.discover()
    assert wiz.nothing_attached
    with pytest.raises(WizardError, match="no source chosen"):
        wiz.write()
    assert not (tmp_path / "p.yaml").exists()


def test_interactive_questions(in_tmp, monkeypatch):
    fake_discovery(monkeypatch, [])
    answers = iter([
        "",                 # sources: the default (simulated, since nothing is attached)
        "mains", "wall",    # name, what it measures
        "matmul", "Ofline", "offline",  # workload: SUT, a mistyped scenario refused at once, then right
        "abc", "3", "auto",  # a wrong duration asked again at once, then QPS
        "1", "y",           # idle 1 s, ranging yes
        "bad name", "quiz",  # the bench's name: a wrong one, then a good one
    ])
    printed: list[str] = []
    errors: list[str] = []
    args = cli.build_parser().parse_args(["init", "--interactive"])
    code = run_init(args, input_fn=lambda prompt: (printed.append(prompt), next(answers))[1], out=printed.append, err=errors.append)
    assert code == 0, errors
    assert any("workload.duration_s: Input should be a valid number" in e for e in errors)
    assert any("name: must be letters, digits" in e for e in errors)
    assert not any("pattern" in e or "^[" in e for e in errors), errors  # never a raw regex
    # the mistyped scenario: refused with the choices, and the same question asked again at once
    assert any("workload.scenario: Input should be 'SingleStream', 'MultiStream', 'Server' or 'Offline' (got 'Ofline')" in e for e in errors), errors
    prompts = [line for line in printed if line.startswith("  scenario") or line.startswith("  duration")]
    assert [line.split(" (")[0].strip() for line in prompts] == ["scenario", "scenario", "duration in seconds", "duration in seconds"], prompts
    p = load_profile(in_tmp / "profiles" / "quiz.yaml").profile
    assert (p.sources[0].name, p.workload.duration_s, p.procedure.idle_s) == ("mains", 3, 1)
    assert any(line.startswith("Which ones") for line in printed)


# ---------------------------------------------------------------------------------------------
# End to end: a machine with no meters, a new user, a first run


def test_a_new_user_gets_from_init_to_a_first_successful_run(tmp_path):
    # The sleep SUT's capacity is modelled, so the measured target QPS cannot be outrun on a busy
    # machine (a matmul SUT that speeds up after its probe ends an Offline run early: INVALID).
    out = run_cli("init", "--name", "first-bench", "--source", "simulated", "--duration", "2", "--idle", "0.5",
                  "--workload", "sleep", "--sut-option", "latency_ms=1", "--sut-option", "concurrency=4", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    written = tmp_path / "profiles" / "first-bench.yaml"
    assert "next: labconsole run --profile profiles/first-bench.yaml" in out.stdout
    run = run_cli("run", "--profile", str(written.relative_to(tmp_path)), "--quiet", cwd=tmp_path, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    bundle = tmp_path / run.stdout.strip().splitlines()[-1]
    assert bundle.parent == tmp_path / "recordings"
    rep = json.loads(run_cli("report", str(bundle), "--json").stdout)
    assert rep["exit_status"] == "completed" and rep["result_validity"] == "VALID"
    assert rep["metric"]["unit"] == "W" and rep["power"]["samples_in_window"] > 5
    assert (bundle / "data" / "profile.yaml").read_text() == written.read_text()


def test_the_loader_names_workload_command_itself(tmp_path):
    # `command` is both the workload's type tag and a field name; an error in the field must say so.
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nsources:\n  - name: w\n    driver: simulated\nworkload:\n  type: command\n  command: []\n  loadgen_logs: logs\n")
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert str(exc.value) == f"{path}:7: workload.command: List should have at least 1 item after validation, not 0"


def test_init_adds_a_meter_and_a_ptdaemon_by_their_address(tmp_path):
    """`labconsole init --source ADDRESS` asks that address for its identity and writes a profile
    that uses it (the trial's `labconsole emulate wt310`, then `init --source TCPIP::...::SOCKET`)."""
    from helpers.emulate_cli import emulate

    from labconsole.profile import load_profile

    with emulate("wt310") as port:
        resource = f"TCPIP::127.0.0.1::{port}::SOCKET"
        out = run_cli("init", "--name", "lab1", "--source", f"{resource},scope=wall", cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "WT310E s/n EMU0000001" in out.stdout
        prof = load_profile(tmp_path / "profiles" / "lab1.yaml").profile
        assert prof.sources[0].driver == "yokogawa" and prof.sources[0].options["resource"] == resource
        assert prof.sources[0].identity.serial == "EMU0000001"
    with emulate("ptd") as port:
        out = run_cli("init", "--name", "lab2", "--source", f"127.0.0.1:{port}", cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        prof = load_profile(tmp_path / "profiles" / "lab2.yaml").profile
        assert prof.sources[0].driver == "ptd" and prof.sources[0].options["port"] == port
    out = run_cli("init", "--name", "lab3", "--source", f"127.0.0.1:{port}", cwd=tmp_path)  # nothing there now
    assert out.returncode == 2 and "nothing usable answered" in out.stderr and not (tmp_path / "profiles" / "lab3.yaml").exists()


def test_init_asks_an_address_typed_at_the_question(in_tmp, monkeypatch):
    from helpers.emulate_cli import emulate

    fake_discovery(monkeypatch, [])
    with emulate("wt310") as port:
        answers = iter([f"TCPIP::127.0.0.1::{port}::SOCKET", "", "", "matmul", "Offline", "3", "auto", "1", "y", "lab4"])
        printed: list[str] = []
        errors: list[str] = []
        args = cli.build_parser().parse_args(["init", "--interactive"])
        code = run_init(args, input_fn=lambda q: (printed.append(q), next(answers))[1], out=printed.append, err=errors.append)
        assert code == 0, errors
    assert any("WT310E s/n EMU0000001" in p for p in printed)
    p = load_profile(in_tmp / "profiles" / "lab4.yaml").profile
    assert p.sources[0].driver == "yokogawa" and p.sources[0].options["resource"] == f"TCPIP::127.0.0.1::{port}::SOCKET"
