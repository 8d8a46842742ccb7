"""Run bundles: write and seal, read, verify, recover; MLPerf result folders in and out."""
