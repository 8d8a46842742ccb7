"""The director side of the official MLPerf Power workflow: power-dev's server, run unmodified on
the machine wired to the meter, with labconsole around it.

`server.Director` writes power-dev's `server.conf` from the profile, checks it against what the
official checker accepts, starts power-dev's server (which starts SPEC PTDaemon), follows its
log for its state, and tails the PTD log(s) the server's PTDaemon writes (never sending that
PTDaemon anything: it belongs to the server). `live.LiveView` serves that state and those
samples read-only over HTTP, for the SUT's console (`driver: director`).
"""
