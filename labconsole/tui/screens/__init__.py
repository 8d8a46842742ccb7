"""The console's screens: bench, calibrate, run (live and replay), results, recordings, help."""
