"""Help: what each screen is for and every key, in one page (? opens it, Escape closes it)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# labconsole

Measures the energy efficiency of ML inference the way MLPerf Power does:
**calibration → ranging run → testing run** of the real MLPerf LoadGen while the
power meters record, then metrics, checks and a sealed bundle under `recordings/`.

## Screens (keys work everywhere)

| key | screen | what it does |
|---|---|---|
| `b` | Bench | the profile, each source with its identity, status and live reading; `d` discovers what else is attached; `n` sets up a new bench profile (guided); `p` opens another profile |
| `c` | Calibrate | the calibration steps and their verdicts; `g` starts a run whose calibration you guide |
| `r` | Run | choose scenario and duration, `s` start; phase, progress, live power and QPS, stats, events; `x` abort |
| `o` | Recordings | bundles, newest first; `Enter` results, `p` replay, `f` open a bundle or MLPerf folder by path; `m` marks two, `=` compares them; `s`/`S` sort, `/` filter, `n` note, `d` delete (asks first) |
| `?` | Help | this page |
| `q` | Quit | asks first if a run is going (the bundle is sealed as *aborted*) |
| `ctrl+o` | Open a profile | switch benches: the profiles under `profiles/`, or any path |

`ctrl+p` opens the command palette: every action is there by name. `ctrl+q` and the
palette's Quit ask first too while a run is going.

On the Run screen, `l` opens the event log full screen (scroll it; `c` copies it, `w` saves it
to a file). The progress line says how far LoadGen is: samples done of the count it must
complete, the time against the minimum duration, and past it "finishing: waiting for N
queries"; the stats give the whole run's estimate.

A run that cannot start (its recordings folder or meter in use by another labconsole, a
meter that does not answer) says why on the Run screen, and what to do.

## Setup (guided)

Four steps: sources, workload, procedure, save. Each answer is checked as you type, with the
profile loader's own `FILE:LINE: field: reason`. `ctrl+n` or `Enter` in a field goes on, `esc`
goes back (on the first step it leaves setup), `ctrl+r` looks for meters again; a meter on the
network is added by its address ("add by address": `TCPIP::HOST::INSTR`,
`TCPIP::HOST::PORT::SOCKET`, `GPIB0::N::INSTR`, `ASRL...`, or a PTDaemon `HOST:PORT`). The profile
is written under `profiles/`; an existing one is overwritten only after a yes.

The console reopens the profile it had open last; `ctrl+p` "Open the built-in simulated
bench" goes back to the one that needs no meters.

## Calibrate (guided)

`t` run the current step (again: retry) · `k` skip it · `n` accept and go to the next ·
`a` run all the remaining steps. After the last step the run goes on by itself.

## Replay (its own screen: `p` on a recording, or `labconsole replay PATH`)

`space` pause · `1` 1× · `2` 10× · `3` 100× · `4` as fast as it goes ·
`←`/`→` seek 5 % · `Home` back to the start · `End` to the end (everything shown) ·
`v` the results · `esc` leaves the replay (back to the Recordings). Events appear when they
happened. `r` after a replay shows the Run set-up again.

## Plots

Each column shows the lowest and the highest sample that fell in it, so a one-sample
spike stays visible. Vertical marks are phase starts; the shaded band is LoadGen's power
window (what the metric averages). `z` switches between the whole run and the last 60 s.

Cursors: a click puts cursor A, a second click cursor B; with a plot focused (`Tab`), `Enter`
adds one, `←`/`→` move the last (`shift`: ten columns), `esc` clears them. The title shows
Δt, the mean and, for power, the energy (J) between A and B. Watts scale: mW, W, kW.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
