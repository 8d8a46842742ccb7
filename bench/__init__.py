"""labconsole's benchmarks, run by hand (`python -m bench`); never part of the test suite."""
