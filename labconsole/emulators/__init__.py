"""Loopback instruments for tests and operator training (they bind 127.0.0.1 by default)."""
