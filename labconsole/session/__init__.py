"""What a live view reads: a live run and a replay through one protocol; decimation."""
