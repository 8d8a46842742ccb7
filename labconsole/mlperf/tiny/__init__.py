"""MLPerf Tiny's energy mode: scoring (scoring), result folders (folders), report/checks/compare
(analysis), and writing a run in the MLCommons runner's layout (export)."""
