"""A real bundle, recorded by `labconsole run` on the simulated bench (about 6 s), for tests
that mutate or damage one."""

from __future__ import annotations

from pathlib import Path

PROFILE = """
name: fz
recordings: {rec}
sources:
  - name: wall
    driver: simulated
    sample_interval_s: 0.05
    options: {{idle_w: 60, dynamic_w: 140, noise_w: 0.5}}
workload:
  type: loadgen
  sut: "null"
  scenario: Offline
  duration_s: 1
procedure:
  idle_s: 0.3
  ranging: true
"""


def record_real_bundle(where: Path, run_cli) -> Path:
    prof = where / "p.yaml"
    prof.write_text(PROFILE.format(rec=where / "rec"))
    res = run_cli("run", "--profile", str(prof), "--quiet", cwd=where, timeout=180)
    assert res.returncode == 0, res.stderr
    return Path(res.stdout.strip().splitlines()[-1])
