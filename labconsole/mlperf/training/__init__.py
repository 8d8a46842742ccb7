"""MLPerf Training power: a benchmark folder's result logs and power logs, scored the way the
official result summarizer (mlperf-logging) scores them, plus the checks the official tools lack.

Facts and sources: shared/reference/training-power.md. The modules:
  mllog   - the MLLOG line format, parsed as the official parser does
  score   - energy per node, switch and run; olympic averaging across runs
  folder  - reading `results/<system>/<benchmark>/` (result_<k>.txt, power/, scaling.json)
  checks  - the package checker's power checks (official) and ours
  report  - what `labconsole report` prints for such a folder
"""
