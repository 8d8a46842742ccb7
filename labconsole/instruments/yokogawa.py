"""Yokogawa power meters as data: each model's ranges, update rates and accuracy, and each
command dialect's strings. The `yokogawa` driver and the WT310E emulator both read these
tables, so a range or a command exists in one place.

Sources (see shared reference instruments.md section 1): WT310E/WT332E/WT333E ranges and
accuracy from IM WT310E-01EN/-02EN; WT300 and WT200 command sets from intel/yoko-tool
(_wt310.py, _wt210.py, _yokobase.py) and IM WT310E-17EN; PTD device numbers from
mlcommons/power-dev (server.py, compliance/check.py). Entries marked UNVERIFIED below come
from memory of the manuals, not from a retrieved page: check them against your meter (the
profile may override the range tables with `voltage_ranges` / `current_ranges`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from labconsole.instruments.ranges import WT310E_CURRENT_RANGES, WT310E_VOLTAGE_RANGES, AccuracySpec

# Network ports a Yokogawa meter is asked on when only its host is known (`discover --host`):
# VXI-11 (`TCPIP::host::INSTR`, what power-dev uses on a WT300E) needs no port; a raw SCPI
# socket is conventionally 5025 (the emulator's default). Not 10001: that is the WT1600/WT3000
# interface, which wants a framed login before any command (instruments.md §1.2).
SOCKET_PORT = 5025

# ---------------------------------------------------------------------------------------------
# Command dialects. Long forms as the manuals spell them (meters accept long or short forms in
# any case). `{...}` fields are filled by the driver.


@dataclass(frozen=True)
class Dialect:
    name: str
    # Sent once after *CLS and *IDN? (each followed by an error-queue check).
    setup: tuple[str, ...]
    volt_range: str  # set a fixed range: {value} is a <Voltage> like "150V"
    volt_range_q: str
    volt_auto: str  # {state} is ON or OFF
    volt_auto_q: str
    curr_range: str
    curr_range_q: str
    curr_auto: str
    curr_auto_q: str
    crest_factor: str  # {value} 3 or 6
    crest_factor_q: str
    rate: str  # {value} is a <Time> like "100MS" or "1S"
    rate_q: str
    # How numeric items are chosen: "list" (ITEM<n> <function>,<element>, then VALue? returns
    # them in that order) or "toggle" (each function switched ON/OFF; VALue? returns the ON
    # ones in the meter's fixed `toggle_order`).
    item_style: str
    item_count: str  # {n}
    item: str  # list: {index} {function} {element}; toggle: {function} {state}
    values_q: str
    functions: dict[str, str]  # quantity -> the meter's function name
    toggle_order: tuple[str, ...] = ()
    # Whether the range in use can be read as a numeric item with every update (per sample
    # ranges, so uncertainty is right even while auto-ranging).
    range_items: bool = False
    error_q: str = ":STATus:ERRor?"
    eesr_q: str = ":STATus:EESR?"
    update_filter: str = ":STATus:FILTer1 FALL"  # EESR bit 0 (UPD) set when an update ends
    integ_state_q: str | None = ":INTEGrate:STATe?"
    integ_setup: tuple[str, ...] = (":INTEGrate:MODE NORMal", ":INTEGrate:TIMer 0,0,0")
    integ_start: str = ":INTEGrate:STARt"
    integ_stop: str = ":INTEGrate:STOP"
    integ_reset: str = ":INTEGrate:RESet"
    zero_q: str = "*CAL?"
    local: str = ":COMMunicate:REMote OFF"


WT300 = Dialect(
    name="WT300",
    setup=(
        ":COMMunicate:REMote ON",
        ":COMMunicate:HEADer OFF",
        ":COMMunicate:VERBose ON",
        ":STATus:QMESsage ON",
        ":NUMeric:FORMat ASCii",
    ),
    volt_range=":INPut:VOLTage:RANGe {value}",
    volt_range_q=":INPut:VOLTage:RANGe?",
    volt_auto=":INPut:VOLTage:AUTO {state}",
    volt_auto_q=":INPut:VOLTage:AUTO?",
    curr_range=":INPut:CURRent:RANGe {value}",
    curr_range_q=":INPut:CURRent:RANGe?",
    curr_auto=":INPut:CURRent:AUTO {state}",
    curr_auto_q=":INPut:CURRent:AUTO?",
    crest_factor=":INPut:CFACtor {value}",
    crest_factor_q=":INPut:CFACtor?",
    rate=":RATE {value}",
    rate_q=":RATE?",
    item_style="list",
    item_count=":NUMeric:NORMal:NUMber {n}",
    item=":NUMeric:NORMal:ITEM{index} {function},{element}",
    values_q=":NUMeric:NORMal:VALue?",
    functions={"volts": "U", "amps": "I", "watts": "P", "pf": "LAMBda", "wh": "WH", "range_v": "URANge", "range_a": "IRANge"},
    range_items=True,
)

# WT210 (WT200 command set; the meter must be in "488.2" mode, set on its front panel).
WT200 = Dialect(
    name="WT200",
    setup=(
        ":COMMunicate:REMote ON",
        ":COMMunicate:HEADer OFF",
        ":COMMunicate:VERBose ON",
        ":STATus:QMESsage ON",
    ),
    volt_range=":CONFigure:VOLTage:RANGe {value}",
    volt_range_q=":CONFigure:VOLTage:RANGe?",
    volt_auto=":CONFigure:VOLTage:AUTO {state}",
    volt_auto_q=":CONFigure:VOLTage:AUTO?",
    curr_range=":CONFigure:CURRent:RANGe {value}",
    curr_range_q=":CONFigure:CURRent:RANGe?",
    curr_auto=":CONFigure:CURRent:AUTO {state}",
    curr_auto_q=":CONFigure:CURRent:AUTO?",
    crest_factor=":CONFigure:CFACtor {value}",
    crest_factor_q=":CONFigure:CFACtor?",
    rate=":SAMPle:RATE {value}",
    rate_q=":SAMPle:RATE?",
    item_style="toggle",
    item_count="",
    item=":MEASure:ITEM:{function} {state}",
    values_q=":MEASure:VALue?",
    functions={"volts": "V", "amps": "A", "watts": "W", "pf": "PF", "wh": "WH"},
    # The order the WT210 returns the items that are ON (yoko-tool's data item table).
    toggle_order=("V", "A", "W", "VA", "VAR", "PF", "DEGRee", "VHZ", "AHZ", "WH", "WHP", "WHM", "AH", "AHP", "AHM", "VPK", "APK", "TIME", "MATH"),
    integ_state_q=None,  # the WT210 has no integration state query
)

# WT500: the NUMeric item model of the WT300 with rms function names and per-element range
# commands (UNVERIFIED on hardware: from the WT500 communication manual's command list).
WT500 = replace(
    WT300,
    name="WT500",
    volt_range=":INPut:VOLTage:RANGe:ALL {value}",
    volt_range_q=":INPut:VOLTage:RANGe:ELEMent1?",
    volt_auto=":INPut:VOLTage:AUTO:ALL {state}",
    volt_auto_q=":INPut:VOLTage:AUTO:ELEMent1?",
    curr_range=":INPut:CURRent:RANGe:ALL {value}",
    curr_range_q=":INPut:CURRent:RANGe:ELEMent1?",
    curr_auto=":INPut:CURRent:AUTO:ALL {state}",
    curr_auto_q=":INPut:CURRent:AUTO:ELEMent1?",
    functions={"volts": "URMS", "amps": "IRMS", "watts": "P", "pf": "LAMBda", "wh": "WH"},
    range_items=False,
)

DIALECTS = {d.name: d for d in (WT300, WT200, WT500)}


# ---------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dialect: Dialect
    elements: int
    # crest factor -> ranges
    voltage_ranges: dict[int, tuple[float, ...]]
    current_ranges: dict[int, tuple[float, ...]]
    update_periods_s: tuple[float, ...]
    # crest factor -> accuracy (45-66 Hz, 12 months; at crest factor 6 the range error doubles)
    accuracy: dict[int, AccuracySpec]
    ptd_device: int | None = None  # SPEC PTDaemon device type (MLPerf compliance names)
    overrange_factor: float = 1.4  # readings above this x range are over-range
    idn_aliases: tuple[str, ...] = ()  # other model strings *IDN? may give
    notes: str = ""
    unverified: tuple[str, ...] = field(default_factory=tuple)

    def ranges(self, crest_factor: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        cf = crest_factor if crest_factor in self.voltage_ranges else 3
        return self.voltage_ranges[cf], self.current_ranges[cf]

    def accuracy_at(self, crest_factor: int) -> AccuracySpec:
        return self.accuracy.get(crest_factor, self.accuracy[3])


# WT300E family tables (IM WT310E-01EN p. 2-7; voltage split per crest factor from memory of the
# same manual, confirmed by the WT310E command reference's <Voltage> list).
_WT300_V = {3: WT310E_VOLTAGE_RANGES, 6: (7.5, 15.0, 30.0, 75.0, 150.0, 300.0)}
_WT310_I = {
    3: WT310E_CURRENT_RANGES,
    6: (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
}
_WT310H_I = {3: (1.0, 2.0, 5.0, 10.0, 20.0, 40.0), 6: (0.5, 1.0, 2.5, 5.0, 10.0, 20.0)}
_WT330_I = {3: (0.5, 1.0, 2.0, 5.0, 10.0, 20.0), 6: (0.25, 0.5, 1.0, 2.5, 5.0, 10.0)}
_WT300E_RATES = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)  # 10 s and 20 s: UNVERIFIED
_WT300_RATES = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

# WT310E/WT332E/WT333E at 45-66 Hz: +-(0.1 % of reading + 0.05 % of range), power factor
# influence 0.1 % of S (IM WT310E-02EN pp. 7-7, 7-8). The older WT310/WT33x: 0.1 % + 0.1 %,
# influence 0.2 % of S (IM WT310-02EN p. 7-7).
_ACC_E = {3: AccuracySpec(0.1, 0.05, 0.1), 6: AccuracySpec(0.1, 0.1, 0.1)}
_ACC_OLD = {3: AccuracySpec(0.1, 0.1, 0.2), 6: AccuracySpec(0.1, 0.2, 0.2)}

MODELS: dict[str, ModelSpec] = {}


def _add(spec: ModelSpec) -> None:
    MODELS[spec.name] = spec


_add(ModelSpec("WT310E", WT300, 1, _WT300_V, _WT310_I, _WT300E_RATES, _ACC_E, ptd_device=49))
_add(ModelSpec("WT310EH", WT300, 1, _WT300_V, _WT310H_I, _WT300E_RATES, _ACC_E, ptd_device=49, notes="40 A range over-range at 110 %"))
_add(ModelSpec("WT310", WT300, 1, _WT300_V, _WT310_I, _WT300_RATES, _ACC_OLD, ptd_device=49))
_add(ModelSpec("WT310HC", WT300, 1, _WT300_V, _WT310H_I, _WT300_RATES, _ACC_OLD, ptd_device=49))
_add(ModelSpec("WT332E", WT300, 2, _WT300_V, _WT330_I, _WT300E_RATES, _ACC_E, ptd_device=52))
_add(ModelSpec("WT333E", WT300, 3, _WT300_V, _WT330_I, _WT300E_RATES, _ACC_E, ptd_device=52, idn_aliases=("WT330E",)))
_add(ModelSpec("WT332", WT300, 2, _WT300_V, _WT330_I, _WT300_RATES, _ACC_OLD, ptd_device=52))
_add(ModelSpec("WT333", WT300, 3, _WT300_V, _WT330_I, _WT300_RATES, _ACC_OLD, ptd_device=52, idn_aliases=("WT330",)))
_add(
    ModelSpec(
        "WT210",
        WT200,
        1,
        _WT300_V,
        {3: (0.5, 1.0, 2.0, 5.0, 10.0, 20.0), 6: (0.25, 0.5, 1.0, 2.5, 5.0, 10.0)},
        _WT300_RATES,
        {3: AccuracySpec(0.1, 0.1, 0.2), 6: AccuracySpec(0.1, 0.2, 0.2)},
        ptd_device=8,
        # The WT210 identifies by its model code, not its name (yoko-tool _wt210.py).
        idn_aliases=("760401", "760402", "760403"),
        notes="select the 488.2 mode on the front panel; the 2 A input model has 5 mA - 2 A ranges: set current_ranges",
        unverified=("current ranges", "accuracy", "model codes"),
    )
)
_add(
    ModelSpec(
        "WT500",
        WT500,
        3,
        {3: (15.0, 30.0, 60.0, 100.0, 150.0, 300.0, 600.0, 1000.0), 6: (7.5, 15.0, 30.0, 50.0, 75.0, 150.0, 300.0, 500.0)},
        {3: (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0), 6: (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)},
        (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0),
        {3: AccuracySpec(0.1, 0.1, 0.2), 6: AccuracySpec(0.1, 0.2, 0.2)},
        ptd_device=35,
        idn_aliases=("760201", "760202", "760203"),
        unverified=("commands", "ranges", "update rates", "accuracy", "model codes"),
    )
)

SUPPORTED = tuple(MODELS)


def lookup_model(idn_model: str) -> ModelSpec | None:
    """The model spec for the model field of *IDN? (exact name or alias, then longest prefix)."""
    text = idn_model.strip().upper()
    for spec in MODELS.values():
        if text == spec.name or text in spec.idn_aliases:
            return spec
    # e.g. "WT310E-C1" or a code with a suffix: the longest name or alias it starts with.
    best: tuple[int, ModelSpec] | None = None
    for spec in MODELS.values():
        for key in (spec.name, *spec.idn_aliases):
            if text.startswith(key) and (best is None or len(key) > best[0]):
                best = (len(key), spec)
    return best[1] if best else None


def format_time(seconds: float) -> str:
    """A <Time> argument as the manuals write it: 100MS, 250MS, 1S, 20S."""
    if seconds < 1.0:
        return f"{round(seconds * 1000)}MS"
    return f"{seconds:g}S"


def format_quantity(value: float, unit: str) -> str:
    """A <Voltage>/<Current> argument: 150V, 0.5A, 0.005A (NRf with the unit, no multiplier)."""
    return f"{value:g}{unit}".upper()


def parse_time(text: str) -> float:
    """A <Time> reply or argument in seconds: NR3 (`100.0E-03`) or with a unit (`100MS`, `1S`)."""
    t = text.strip().upper()
    scale = 1.0
    if t.endswith("MS"):
        t, scale = t[:-2], 1e-3
    elif t.endswith("S"):
        t = t[:-1]
    return float(t) * scale
