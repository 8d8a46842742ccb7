"""The timeline's reader and the console's JSON encoder."""

import json
import math

import numpy as np

from labconsole.events import Event, EventBus, JsonlSink, read_events, to_json


def test_the_timeline_reads_back_and_a_torn_or_damaged_line_is_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    bus = EventBus()
    sink = JsonlSink(path)
    bus.add_sink(sink)
    bus.emit("phase_start", "testing", phase="testing", duration_s=2.0)
    bus.emit("info", "a value that is not a number", phase="testing", watts=math.nan, ratio=np.float32("inf"))
    sink.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[1])["data"] == {"watts": None, "ratio": None}  # strict JSON: no NaN token
    events = read_events(path)
    assert [e.kind for e in events] == ["phase_start", "info"] and events[0].data == {"duration_s": 2.0}
    # a damaged line in the middle and a last line a crash cut off hide nothing else
    path.write_text(lines[0] + "\n" + '{"kind": "info"\n' + lines[1] + "\n" + lines[0][:20], encoding="utf-8")
    assert [e.kind for e in read_events(path)] == ["phase_start", "info"]
    assert read_events(tmp_path / "absent.jsonl") == []


def test_to_json_writes_numpy_dates_and_objects_and_null_for_nan():
    class Thing:
        def as_dict(self):
            return {"n": np.int64(3), "x": np.float64(2.5), "bad": np.float64("nan")}

    import datetime as dt

    obj = {"thing": Thing(), "when": dt.date(2026, 6, 1), "values": (1, -math.inf, "a")}
    assert to_json(obj) == '{"thing":{"n":3,"x":2.5,"bad":null},"when":"2026-06-01","values":[1,null,"a"]}'
    assert to_json({"a": [1]}, indent=2) == json.dumps({"a": [1]}, indent=2)
    assert Event.from_dict(json.loads(Event("info", "m", None, {"w": math.nan}, 5).to_json())).data == {"w": None}
