"""Workloads: the real MLPerf LoadGen in a worker process, built-in SUTs, external commands."""
