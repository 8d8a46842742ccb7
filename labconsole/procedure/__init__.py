"""The guided procedure: calibration, ranging, testing; it emits events."""
