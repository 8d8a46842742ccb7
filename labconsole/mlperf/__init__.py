"""Everything whose truth is MLPerf's: metrics, power-dev's files, export, compare, checks."""
