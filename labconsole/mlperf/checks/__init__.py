"""MLPerf's power rules as checks: ours and the official checker's, one registry."""
