"""Transcript tests for instrument drivers: every command the driver sends and every reply, in order.

One harness (`labconsole.testing.transcript`: the exchanges, `assert_done()`, the TIMEOUT and
CLOSE sentinels) and three thin transports over it, one per kind of link a driver talks over:

* `labconsole.testing.visa`: a scripted PyVISA resource (`ScriptedResource`, `expected_protocol`);
* `labconsole.testing.tcp`: a scripted peer on loopback TCP (`ScriptedServer`);
* `labconsole.testing.serial_port`: a scripted pyserial port (`ScriptedSerial`).

The console's own drivers are tested this way (tests/sources/test_yokogawa_transcripts.py,
tests/sources/test_ptd_transcripts.py, tests/sources/test_lpm01a_transcript.py); a driver of your own can be too.
Nothing in the console imports this package.
"""
