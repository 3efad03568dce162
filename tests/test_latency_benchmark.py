"""benchmarks/latency.py: what it reads from a group run and how it matches alarms to seizures.

The benchmark's runs take tens of minutes (docs/performance.md); here its summaries are checked on a real group
run and on alarm records shaped as ``stream --json`` prints them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).parent.parent / "benchmarks" / "latency.py"
sys.path.insert(0, str(_PATH.parent))
_spec = importlib.util.spec_from_file_location("latency_benchmark", _PATH)
latency = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(latency)


def test_percentile_of_nothing_is_none():
    assert latency.percentile([], 50) is None


def test_run_summary_agrees_with_the_group_levels_own_latency_median(sequential):
    """The median the benchmark takes from ``latencies`` is the one the group level reports."""
    _, out, _ = sequential
    metrics = json.loads((out / "group" / "metrics.json").read_text())
    summary = latency.run_summary(metrics)
    assert summary["event_f1"] == metrics["event"]["f1"]
    assert summary["n_detected"] == metrics["event"]["latency_n_seizures"]
    if summary["n_detected"]:
        assert summary["latency_median_s"] == pytest.approx(metrics["event"]["latency_median_s"], abs=1e-6)
        values = [x["latency_s"] for x in metrics["latencies"]]
        assert summary["latency_p90_s"] == pytest.approx(float(np.percentile(values, 90)))
        assert summary["latency_p90_s"] >= summary["latency_median_s"]
    else:
        assert summary["latency_median_s"] is None


def _alarm(onset, detected_at, duration=10.0, wall_clock=None):
    return {"kind": "alarm", "onset": onset, "duration": duration, "confidence": 0.9, "detected_at": detected_at,
            "latency": detected_at - onset, "wall_clock": wall_clock if wall_clock is not None else 1e9 + detected_at}


def test_alarm_latencies_take_the_first_alarm_within_szcores_tolerance():
    records = [{"kind": "start"},
               _alarm(10.0, 20.0),                     # ends at 20 s: more than 30 s before the seizure at 100 s
               _alarm(75.0, 95.0),                      # ends at 85 s, within 30 s before the onset: detects it
               {"kind": "event", "onset": 75.0, "duration": 40.0, "detected_at": 140.0},  # events do not count
               _alarm(104.0, 112.0),                    # later alarm of the same seizure: not the first
               _alarm(380.0, 390.0)]                    # begins within 60 s after the second seizure's end
    rows = latency.alarm_latencies(records, [(100.0, 150.0), (300.0, 330.0), (600.0, 650.0)])
    assert rows[0] == {"onset": 100.0, "detected": True, "signal_latency_s": -5.0}
    assert rows[1] == {"onset": 300.0, "detected": True, "signal_latency_s": 90.0}
    assert rows[2] == {"onset": 600.0, "detected": False, "signal_latency_s": None}


def test_alarm_latencies_of_a_cropped_live_run_in_wall_clock_time():
    """A recording played from 250 s: the seizure at 400 s is at 150 s of the stream; the player started at Unix
    time 1000, so the onset was played at 1150 and an alarm raised at 1157.25 is 7.25 s late."""
    records = [_alarm(148.0, 156.5, wall_clock=1157.25)]
    [row] = latency.alarm_latencies(records, [(400.0, 440.0)], offset=250.0, started=1000.0)
    assert row["detected"]
    assert row["signal_latency_s"] == pytest.approx(6.5)
    assert row["wall_latency_s"] == pytest.approx(7.25)
    [missed] = latency.alarm_latencies([], [(400.0, 440.0)], offset=250.0, started=1000.0)
    assert missed["wall_latency_s"] is None and not missed["detected"]


def test_targets_name_what_was_missed():
    rows = [{"pipeline": "batch", "event_f1": 0.9, "latency_median_s": 30.0},
            {"pipeline": "alarm", "event_f1": 0.8, "latency_median_s": 12.0}]
    missed = latency.targets(rows)
    assert any("median latency" in line for line in missed)
    assert any("event F1" in line for line in missed)
    assert latency.targets([{"pipeline": "batch", "event_f1": 0.9, "latency_median_s": 30.0},
                            {"pipeline": "alarm", "event_f1": 0.88, "latency_median_s": 6.0}]) == []
