"""labconsole: measure the energy efficiency of ML inference the way MLPerf Power does.

The package root stays import-light on purpose: `labconsole --help` must start fast,
and the headless core must never pull in Textual (only `labconsole.tui` may).
"""

__version__ = "0.1.0"
