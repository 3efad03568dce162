"""SzCORE hypothesis files: format, round trip through epilepsy2bids, and szcore-evaluation's numbers.

epilepsy2bids (``make install`` adds it with ``--no-deps``; its annotations module needs only numpy,
pandas and timescoring) is what szcore-evaluation reads files with; tests that need it skip without it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from neurocare_bids.evaluation.metrics import szcore_mask, szcore_summary
from szcore_reference import annotations_module as _annotations
from szcore_reference import evaluate_dataset as _evaluate_dataset
from neurocare_bids.detection.postprocess import Event, probabilities_to_events
from neurocare_bids.detection.szcore import (export_tree, format_events_tsv, read_events_tsv, tsv_intervals,
                                             write_events_tsv)

HEADER = "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration\n"




# ---------------------------------------------------------------------- format
def test_format_hand_checked():
    events = [Event(120.0, 34.5, 0.87654), Event(10.0, 8.0, 1.2)]
    text = format_events_tsv(events, 3600.0, datetime(2024, 5, 6, 7, 8, 9))
    assert text == HEADER + (
        "10.00\t8.00\tsz\t1.0000\tn/a\t2024-05-06 07:08:09\t3600.00\n"
        "120.00\t34.50\tsz\t0.8765\tn/a\t2024-05-06 07:08:09\t3600.00\n")


def test_no_event_is_one_background_row():
    assert format_events_tsv([], 1799.5) == HEADER + "0.00\t1799.50\tbckg\tn/a\tn/a\tn/a\t1799.50\n"
    # an event wholly past the end is dropped, so the file still says "no seizure"
    assert "bckg" in format_events_tsv([Event(1800.0, 10.0, 0.9)], 1799.5)
    with pytest.raises(ValueError):
        format_events_tsv([], 0.001)


def test_rounding_never_ends_an_event_past_the_recording():
    text = format_events_tsv([Event(10.004, 89.992, 0.5)], 99.994)  # offset 99.996 rounds to 100.00
    assert text.splitlines()[1] == "10.00\t89.99\tsz\t0.5000\tn/a\tn/a\t99.99"
    for on, dur in tsv_intervals([Event(10.004, 89.992, 0.5)], 99.994):
        assert on + 0 <= dur <= 99.99
    # pairs and nan confidence
    assert format_events_tsv([(1.005, 2.0)], 10).splitlines()[1].split("\t")[:4] == ["1.00", "1.00", "sz", "n/a"]


def test_write_is_atomic_and_read_back(tmp_path):
    path = tmp_path / "sub-01" / "eeg" / "sub-01_task-x_events.tsv"
    events = [Event(5.0, 12.3456, 0.9), Event(40.0, 2.0, 0.25)]
    write_events_tsv(path, events, 60.0)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    back, duration = read_events_tsv(path)
    assert duration == 60.0
    assert back == [Event(5.0, 12.35, 0.9), Event(40.0, 2.0, 0.25)]


# ---------------------------------------------------------------------- epilepsy2bids round trip
def test_round_trip_through_epilepsy2bids(tmp_path):
    ann = _annotations()
    rng = np.random.default_rng(0)
    when = datetime(2023, 1, 2, 3, 4, 5)
    for i in range(60):
        duration = float(rng.uniform(5, 4000))
        onsets = np.sort(rng.uniform(-3, duration + 3, rng.integers(0, 6)))
        events = [Event(float(o), float(rng.uniform(0.001, 400)), float(rng.uniform())) for o in onsets]
        path = tmp_path / f"rec{i}_events.tsv"
        write_events_tsv(path, events, duration, when if i % 2 else None)
        loaded = ann.Annotations.loadTsv(path)
        theirs = loaded.getMask(1).astype(bool)
        np.testing.assert_array_equal(theirs, szcore_mask(tsv_intervals(events, duration), duration))
        back, back_duration = read_events_tsv(path)
        np.testing.assert_array_equal(theirs, szcore_mask(back, back_duration))
        assert loaded.events[0]["dateTime"] == (when if i % 2 else "n/a")
        kinds = {e["eventType"] for e in loaded.events}
        assert kinds == ({ann.EventType.sz} if back else {ann.EventType.bckg})
        assert all(round((e["onset"] + e["duration"]) * 100) <= round(e["recordingDuration"] * 100)
                   for e in loaded.events)


# ---------------------------------------------------------------------- export
def test_export_tree_rejects_paths_outside(tmp_path):
    for bad in ("../x_events.tsv", "/abs/x_events.tsv", ""):
        with pytest.raises(ValueError):
            export_tree(tmp_path, [(bad, [], 10.0, None)])


def test_export_tree_takes_the_reference_duration(tmp_path):
    rel = "sub-01/ses-01/eeg/sub-01_ses-01_task-szMonitoring_run-00_events.tsv"
    ref = tmp_path / "bids" / rel
    ref.parent.mkdir(parents=True)
    ref.write_text(HEADER + "10.00\t5.00\tsz\tn/a\tn/a\t2020-01-01 10:00:00\t3600.00\n")
    (written,) = export_tree(tmp_path / "out", [(rel, [Event(3599.0, 10.0, 0.8)], 3600.4, None)],
                             bids_dir=tmp_path / "bids")
    assert written == tmp_path / "out" / rel
    assert written.read_text().splitlines()[1] == "3599.00\t1.00\tsz\t0.8000\tn/a\t2020-01-01 10:00:00\t3600.00"


# ---------------------------------------------------------------------- szcore-evaluation
def test_szcore_summary_equals_szcore_evaluation(tmp_path):
    ann = _annotations()
    rng = np.random.default_rng(7)
    bids, hyp_root = tmp_path / "bids", tmp_path / "hyp"
    items, records = [], []
    for s, subject in enumerate(["01", "02", "03", "04"]):
        for run in range(3):
            rel = Path(f"sub-{subject}") / ("ses-01" if s % 2 else "") / "eeg" / \
                f"sub-{subject}_task-szMonitoring_run-{run:02d}_events.tsv"
            duration = float(rng.choice([1800.0, 3600.0, 2711.75]))
            seizures = []
            if subject != "04":  # sub-04: no seizure at all
                for start in rng.uniform(100, duration - 500, rng.integers(0, 3)):
                    seizures.append((round(float(start), 2), round(float(start + rng.uniform(8, 420)), 2)))
            (bids / rel).parent.mkdir(parents=True, exist_ok=True)
            ann.Annotations.loadEvents(seizures, duration).saveTsv(str(bids / rel))  # as SzCORE wrote them
            onsets = np.arange(0.0, duration - 4 + 1e-9, 2.0)
            probs = np.clip(rng.normal(0.3, 0.17, onsets.size), 0, 1)
            for on, off in seizures:
                probs[(onsets >= on + rng.uniform(-20, 30)) & (onsets < off)] += rng.uniform(0.0, 0.7)
            events = probabilities_to_events(onsets, probs, 4.0, duration + 0.6, threshold=0.55,
                                             min_duration=4.0, merge_gap=10.0, smoothing=3)
            if (subject, run) != ("02", 1):  # a recording without hypothesis file: all background
                items.append((rel.as_posix(), events, duration + 0.6, None))  # ours is off: int() differs for 2711.75
            ref_events, ref_duration = read_events_tsv(bids / rel)
            records.append({"subject": subject, "ref": ref_events, "duration": ref_duration, "rel": rel,
                            "events": events if (subject, run) != ("02", 1) else []})
    export_tree(hyp_root, items, bids_dir=bids)
    theirs = _evaluate_dataset(bids, hyp_root)

    from_files = [{"subject": r["subject"], "ref": r["ref"], "duration": r["duration"],
                   "hyp": read_events_tsv(hyp_root / r["rel"])[0] if (hyp_root / r["rel"]).exists() else []}
                  for r in records]
    in_memory = [{"subject": r["subject"], "ref": r["ref"], "duration": r["duration"],
                  "hyp": tsv_intervals(r["events"], r["duration"])} for r in records]
    for per_recording in (from_files, in_memory):
        ours = szcore_summary(per_recording)
        for level in ("event", "sample"):
            for metric, their_metric in (("sensitivity", "sensitivity"), ("precision", "precision"),
                                         ("f1", "f1"), ("fp_per_24h", "fpRate")):
                for suffix in ("", "_std"):
                    expected = theirs[f"{level}_results"][their_metric + suffix]
                    got = ours[level][metric + suffix]
                    assert (got is None and np.isnan(expected)) or got == pytest.approx(expected, rel=1e-12), \
                        (level, metric + suffix)
        for sub in ours["subjects"]:
            for level in ("event", "sample"):
                result = theirs["per_subject"][sub["participant_id"]][level]
                assert (sub[level]["tp"], sub[level]["fp"], sub[level]["ref_true"]) == \
                    (result.tp, result.fp, result.refTrue)
    assert ours["event"]["f1"] is not None and 0 < ours["event"]["f1"] < 1  # a case with hits and misses


def test_a_duration_mismatch_is_scored_as_background_unless_bids_dir_is_given(tmp_path):
    ann = _annotations()
    rel = "sub-01/eeg/sub-01_task-szMonitoring_run-00_events.tsv"
    (tmp_path / "bids" / rel).parent.mkdir(parents=True)
    ann.Annotations.loadEvents([(100.0, 160.0)], 2711.75).saveTsv(str(tmp_path / "bids" / rel))
    items = [(rel, [Event(95.0, 70.0, 0.9)], 2712.35, None)]  # int(): 2712 s against the reference's 2711
    export_tree(tmp_path / "plain", items)
    export_tree(tmp_path / "aligned", items, bids_dir=tmp_path / "bids")
    assert _evaluate_dataset(tmp_path / "bids", tmp_path / "plain")["event_results"]["f1"] == 0.0
    assert _evaluate_dataset(tmp_path / "bids", tmp_path / "aligned")["event_results"]["f1"] == 1.0
