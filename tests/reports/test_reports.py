"""HTML reports and the citation boilerplate, from real runs of both levels (CLI as a subprocess).

Pages are parsed back and every number shown is compared with the files it comes from (sidecars,
group/metrics.json); both reports are then opened in headless Chromium with networking off, which must load
them without a failed request or a console error. The wheel must carry the boilerplate templates.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import add_recording, run_cli, synthetic_eeg
from neurocare_bids.reports.readers import read_tsv

ROOT = Path(__file__).resolve().parents[2]
SUBJECT_SECTIONS = ["Recordings", "Channel quality", "Power spectra before and after filtering", "Timelines",
                    "Example windows", "Warnings", "Methods"]
GROUP_SECTIONS = ["Dataset", "Folds", "Metrics", "ROC and PR curves", "Confusion matrix",
                  "Event-level results (SzCORE)", "Probability traces", "Training curves", "Ablations",
                  "Model card", "Methods"]


# ---------------------------------------------------------------------- reading pages back
class Page(HTMLParser):
    """Headings, tables (by id, as rows of cell texts), inline SVG count and every URL the page refers to."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.h2: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.svgs = 0
        self.urls: list[str] = []
        self._heading: list[str] | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href", "xlink:href", "data", "poster"):
            if attrs.get(key) and not attrs[key].startswith("#"):
                self.urls.append(attrs[key])
        if tag == "h2":
            self._heading = []
        elif tag == "svg":
            self.svgs += 1
        elif tag == "table":
            self._table = attrs.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "h2" and self._heading is not None:
            self.h2.append("".join(self._heading).strip())
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading.append(data)
        if self._cell is not None:
            self._cell.append(data)


def page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def fmt(value, decimals: int = 3) -> str:
    """As the reports show a metric."""
    return "n/a" if value is None else f"{value:.{decimals}f}"


def pm(value, std) -> str:
    return fmt(value) if value is None or std is None else f"{fmt(value)} ± {fmt(std)}"


def rows_by_first_cell(table: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row for row in table[1:] if row}


# ---------------------------------------------------------------------- the runs
@pytest.fixture(scope="module")
def reported(prepared, sequential):
    """The session's participant-level output (its subject reports included) and its group-level run (read only)."""
    bids, out, _ = sequential
    return bids, prepared[1], out


def _sidecars(out: Path, subject: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / f"sub-{subject}").glob("**/*_windows.json"))]


def test_subject_reports_show_every_section_and_the_sidecars_numbers(reported):
    _, participant_out, _ = reported
    for subject in ("01", "02", "03", "04"):
        report = participant_out / f"sub-{subject}.html"
        parsed = page(report)
        assert parsed.h2 == SUBJECT_SECTIONS
        # self-contained: no file, script, style or image elsewhere (data: URIs are inside the page)
        assert [u for u in parsed.urls if not u.startswith("data:")] == []
        (meta,) = _sidecars(participant_out, subject)
        table = parsed.tables["table-0"]
        row = table[1]
        assert row[0] == meta["Sources"][0].split(":", 2)[-1] and row[1] == "written"
        assert row[5:9] == [str(len(meta["Channels"])), str(meta["SeizureEventCount"]), str(meta["WindowCount"]),
                            str(meta["SeizureWindowCount"])]
        assert row[9] == f"{100 * meta['SeizureWindowCount'] / meta['WindowCount']:.1f} %"
        text = " ".join(report.read_text().split())
        # channel quality, spectra, timeline and one seizure + one background window: five figures at least
        assert parsed.svgs >= 5
        assert "Flat: none. Noisy: none. Clipped: none." in text
        assert f"{meta['SeizureWindowCount']} of {meta['WindowCount']} windows labelled seizure" in text
        assert "Seizure window" in text and "Background window" in text
        assert "No warnings were raised" in text
        assert "resampled to 128 Hz" in text  # the methods text


def test_window_labels_read_from_record_tails_equal_a_full_decode(prepared):
    from neurocare_bids.io.tfrecord import decode_example, iter_records
    from neurocare_bids.reports.readers import window_labels

    _, out, _ = prepared
    tfrecord = next(out.glob("sub-01/**/*_windows.tfrecord"))
    full = [decode_example(r) for r in iter_records(tfrecord)]
    fast = window_labels(tfrecord)
    assert fast["label"].tolist() == [r["label"] for r in full]
    assert fast["onset"].tolist() == [r["onset"] for r in full]
    assert fast["seizure_fraction"].tolist() == [r["seizure_fraction"] for r in full]


def test_group_report_sections_and_numbers_equal_metrics_json(reported):
    bids, _, out = reported
    metrics = json.loads((out / "group" / "metrics.json").read_text())
    parsed = page(out / "group.html")
    assert parsed.h2 == GROUP_SECTIONS
    links = [u for u in parsed.urls if not u.startswith("data:")]
    assert links and all(u.startswith("sub-") and u.endswith(".html") and (out / u).is_file() for u in links)

    overall = {(r[0], r[1]): r[2] for r in parsed.tables["overall-metrics"][1:]}
    w, e = metrics["window"], metrics["event"]
    for name, key in (("PR-AUC", "pr_auc"), ("ROC-AUC", "roc_auc"), ("F1", "f1"), ("precision", "precision"),
                      ("specificity", "specificity"), ("accuracy", "accuracy")):
        assert overall[("window (pooled)", name)] == fmt(w[key])
    for name, key in (("PR-AUC before smoothing", "pr_auc"), ("ROC-AUC before smoothing", "roc_auc")):
        assert overall[("window (pooled)", name)] == fmt(w["unsmoothed"][key])
    level = "event (SzCORE, mean ± sd over subjects)"
    for name, key in (("sensitivity", "sensitivity"), ("precision", "precision"), ("F1", "f1"),
                      ("false positives per 24 h", "fp_per_24h")):
        assert overall[(level, name)] == pm(e[key], e[f"{key}_std"])

    folds = rows_by_first_cell(parsed.tables["fold-metrics"])
    assert len(folds) == len(metrics["folds"]) == 4
    for f in metrics["folds"]:
        row = folds[str(f["fold"])]
        assert row[1] == ", ".join(f["test"])
        assert row[3:] == [fmt(f["window"]["pr_auc"]), fmt(f["window"]["roc_auc"]), fmt(f["window"]["f1"]),
                           fmt(f["event"]["sensitivity"]), fmt(f["event"]["precision"]), fmt(f["event"]["f1"]),
                           fmt(f["event"]["fp_per_24h"])]
    subjects = rows_by_first_cell(parsed.tables["subject-metrics"])
    assert sorted(subjects) == [s["participant_id"] for s in metrics["subjects"]]
    for s in metrics["subjects"]:
        assert subjects[s["participant_id"]][5:] == [fmt(s["event"][k]) for k in
                                                     ("sensitivity", "precision", "f1", "fp_per_24h",
                                                      "latency_median_s", "latency_mean_s")]
    latency = "event (over the detected seizures)"
    assert overall[(latency, "median detection latency (s)")] == fmt(e["latency_median_s"])
    assert overall[(latency, "mean detection latency (s)")] == fmt(e["latency_mean_s"])
    events = rows_by_first_cell(parsed.tables["event-metrics"])
    assert events["event"][1:] == [pm(e[k], e[f"{k}_std"]) for k in ("sensitivity", "precision", "f1", "fp_per_24h")]
    cm = w["confusion_matrix"]
    confusion = rows_by_first_cell(parsed.tables["confusion-table"])
    assert confusion["background"][1:] == [str(cm["tn"]), str(cm["fp"])]
    assert confusion["seizure"][1:] == [str(cm["fn"]), str(cm["tp"])]

    text = (out / "group.html").read_text()
    folds_tsv = (out / "group" / "folds.tsv").read_text().splitlines()[1:]
    dataset = rows_by_first_cell(parsed.tables["table-0"])
    for line in folds_tsv:  # each subject with its fold
        participant, fold = line.split("\t")
        assert dataset[participant][1] == fold
    # a probability trace per test recording, ROC/PR + confusion + training figures, the model card
    recordings = sorted(p.relative_to(bids).as_posix() for p in bids.rglob("sub-*/**/*_eeg.edf"))
    for recording in recordings:
        assert f"{recording} (fold " in text
    assert parsed.svgs >= len(recordings) + 4  # ... + latency histogram
    assert "fold 1: AUC " + fmt(metrics["folds"][0]["window"]["roc_auc"]) in text
    card = json.loads((out / "group" / "model" / "model_card.json").read_text())
    assert f"{card['Name']} {card['Version']}" in text and "No ablation table" in text
    assert "It was trained with the focal loss" in text  # the group methods text


def test_model_card_sections_come_from_the_run_and_show_in_the_group_report(reported):
    """ModelCard (Mitchell et al. 2019): training data = the participant-level sidecars, the fold spread = the
    rows of metrics_folds.tsv, the intended and out-of-scope uses, and its tables in group.html."""
    import statistics
    import tomllib

    bids, _, out = reported
    card = json.loads((out / "group" / "model" / "model_card.json").read_text())
    metrics = json.loads((out / "group" / "metrics.json").read_text())
    mc = card["ModelCard"]
    assert set(mc) >= {"ModelDetails", "IntendedUse", "Factors", "TrainingData", "Metrics", "EvaluationData",
                       "Limitations", "EthicalConsiderations"}

    # training data: what the participant level wrote
    sidecars = [json.loads(p.read_text()) for p in sorted(out.glob("sub-*/**/*_desc-preproc_windows.json"))]
    data = mc["TrainingData"]
    assert data["Subjects"] == len({m["Sources"][0].split(":", 2)[-1].split("/")[0] for m in sidecars}) == 4
    assert data["Recordings"] == len(sidecars)
    assert data["Hours"] == pytest.approx(sum(m["RecordingDuration"] for m in sidecars) / 3600, abs=1e-6)
    assert data["Seizures"] == sum(len(m["SeizureIntervals"]) for m in sidecars) == sum(
        m["SeizureEventCount"] for m in sidecars)
    assert data["SeizureHours"] == pytest.approx(
        sum(b - a for m in sidecars for a, b in m["SeizureIntervals"]) / 3600, abs=1e-6)
    assert data["Windows"] == sum(m["WindowCount"] for m in sidecars)
    assert data["SeizureWindows"] == sum(m["SeizureWindowCount"] for m in sidecars)
    assert data["FinalModel"] == {"TrainingSubjects": len(card["TrainingSubjects"]),
                                  "ValidationSubjects": len(card["ValidationSubjects"])}
    # factors: seizure types from the BIDS events files, rates and montage from the sidecars
    types: dict[str, int] = {}
    for events in bids.rglob("sub-*/**/*_events.tsv"):
        for line in events.read_text().splitlines()[1:]:
            kind = line.split("\t")[2]
            if kind.startswith("sz"):
                types[kind] = types.get(kind, 0) + 1
    factors = mc["Factors"]
    assert factors["SeizureTypes"] == types and sum(types.values()) == data["Seizures"]
    assert factors["InputSamplingFrequencies"] == sorted({m["Preprocessing"]["InputSamplingFrequency"]
                                                          for m in sidecars})
    assert factors["Montage"] == sidecars[0]["Montage"] and factors["Channels"] == len(card["Input"]["Channels"])

    # metrics: overall as metrics.json, spread over the folds as metrics_folds.tsv
    folds = read_tsv(out / "group" / "metrics_folds.tsv")
    rows = {r["Metric"]: r for r in mc["Metrics"]["Rows"]}
    for key, column, level, name in (("event_f1", "event_f1", "event", "f1"),
                                     ("event_sensitivity", "event_sensitivity", "event", "sensitivity"),
                                     ("fp_per_24h", "fp_per_24h", "event", "fp_per_24h"),
                                     ("window_pr_auc", "pr_auc", "window", "pr_auc")):
        row = rows[key]
        assert row["Overall"] == metrics[level][name]
        values = [float(f[column]) for f in folds if f[column] != "n/a"]
        assert row["Folds"] == len(folds) == 4 and row["FoldsWithValue"] == len(values)
        assert row["FoldMean"] == pytest.approx(statistics.mean(values), abs=2e-4)
        assert row["FoldSD"] == pytest.approx(statistics.stdev(values), abs=2e-4)
        assert (row["FoldMin"], row["FoldMax"]) == pytest.approx((min(values), max(values)), abs=1e-4)
    for row in mc["Metrics"]["Rows"]:  # a large spread is said in the limitations
        assert row["LargeSpread"] == any(f"The {row['Label']} varies widely" in t for t in mc["Limitations"])

    # what it is for, what not, and what the numbers do not show
    uses = " ".join(mc["IntendedUse"]["PrimaryUses"])
    assert "seizure detection in scalp EEG" in uses and "retrospective review" in uses
    assert "research monitoring" in uses
    scope = " ".join(mc["IntendedUse"]["OutOfScope"])
    for text in ("NOT a medical device", "clinical decisions", "unsupervised alarms", "neonatal", "intracranial"):
        assert text in scope
    assert any("cross-validation on this dataset only" in t for t in mc["Limitations"])
    assert any(t.startswith("Small dataset: 4 subjects") for t in mc["Limitations"])
    assert any("'The hard benchmark'" in t for t in mc["Limitations"])
    assert "\n### The hard benchmark" in (ROOT / "docs" / "performance.md").read_text()  # the pointer leads somewhere
    assert any("no network connection" in t for t in mc["EthicalConsiderations"])
    details = mc["ModelDetails"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert details["License"].split()[0] == pyproject["project"]["license"]["text"]
    assert details["Version"] == card["Version"] and "logs/CITATION.md" in details["Citation"]
    assert (out / "logs" / "CITATION.md").is_file()
    assert "CNN-BiLSTM: Conv1D blocks of 4, 8 filters" in details["Description"]  # the quick config's
    assert f"{card['Architecture']['parameters']:,} parameters" in details["Description"]
    assert ("stacked with the feature baseline" in details["Description"]) == bool(card["Stacking"])
    assert "30 s before and 60 s after" in mc["EvaluationData"]["Scoring"]

    # group.html: the sections under "Model card", the metrics table as the card says
    parsed = page(out / "group.html")
    table = {row[0]: row for row in parsed.tables["card-metrics"][1:]}
    assert list(table) == [r["Label"] for r in mc["Metrics"]["Rows"]]
    for r in mc["Metrics"]["Rows"]:
        assert table[r["Label"]][1:] == [pm(r["Overall"], r["OverallSD"]), pm(r["FoldMean"], r["FoldSD"]),
                                         f"{fmt(r['FoldMin'])} – {fmt(r['FoldMax'])}",
                                         f"{r['FoldsWithValue']} of {r['Folds']}"]
    training = {row[0]: row[1] for row in parsed.tables["card-training-data"]}
    assert training["subjects"] == "4" and training["recordings"] == str(data["Recordings"])
    assert training["hours of EEG"] == fmt(data["Hours"], 2) and training["seizures"] == str(data["Seizures"])
    text = " ".join((out / "group.html").read_text().split())
    for heading in ("Model details", "Intended use", "Factors", "Training data", "Metrics", "Evaluation data",
                    "Limitations", "Ethical considerations"):
        assert f"<h3>{heading}</h3>" in text
    assert "NOT a medical device" in text and details["DateTrained"] in text


def test_model_card_spread_flags_large_and_undefined_fold_metrics():
    from neurocare_bids.evaluation.model_card import _limitations, metric_spread

    folds = [{"event": {"f1": f1, "sensitivity": s, "fp_per_24h": fp}, "window": {"pr_auc": 0.9}}
             for f1, s, fp in ((0.2, None, 0.0), (0.9, 1.0, 10.0), (0.5, 0.5, 2.0))]
    spread = metric_spread({"event": {"f1": 0.6, "f1_std": 0.3}, "window": {"pr_auc": 0.9}, "folds": folds})
    rows = {r["Metric"]: r for r in spread["Rows"]}
    f1 = rows["event_f1"]
    assert f1["FoldMean"] == pytest.approx(0.5333333) and f1["FoldSD"] == pytest.approx(0.3511885)
    assert (f1["FoldMin"], f1["FoldMax"], f1["LargeSpread"], f1["OverallSD"]) == (0.2, 0.9, True, 0.3)
    assert rows["event_sensitivity"]["FoldsWithValue"] == 2 and rows["fp_per_24h"]["LargeSpread"]
    assert not rows["window_pr_auc"]["LargeSpread"] and rows["window_pr_auc"]["FoldSD"] == pytest.approx(0)
    data = {"Subjects": 30, "SubjectsWithSeizures": 30, "Recordings": 60, "Hours": 100.0, "Seizures": 80,
            "SeizureHours": 1.0}
    limits = _limitations(data, {"SeizureTypes": {"sz": 3, "sz_foc": 2}}, spread, None)
    assert any(t.startswith("The event F1 varies widely over the folds (mean 0.533 ± 0.351 SD, 0.200 to 0.900)")
               for t in limits)
    assert not any(t.startswith("Small dataset") for t in limits)


def test_model_card_says_how_far_the_validation_hours_establish_the_alarm_bound():
    """Met on 2 h with no false alarm: not established (a rate up to 36 per 24 h could show none there); met on
    60 h: established below the 95 % bound; not met at all: said so. The points come from tune_alarm."""
    from neurocare_bids.config import PostprocessingConfig
    from neurocare_bids.evaluation.model_card import _limitations
    from neurocare_bids.evaluation.tuning import tune_alarm

    def point(hours_each: float, n: int, bound: float) -> dict:
        onsets = np.arange(0, hours_each * 3600 - 4 + 1e-9, 2.0)
        recs = []
        for k in range(n):
            probs = np.full(onsets.size, 0.1)
            probs[(onsets >= 600) & (onsets < 660)] = 0.9  # one seizure, no mimic
            recs.append({"subject": f"{k:02d}", "onsets": onsets, "probs": probs, "window_duration": 4.0,
                         "recording_duration": hours_each * 3600, "seizures": [(600.0, 660.0)]})
        if bound == 0.0:  # a burst as strong as the seizure in every recording: no setting meets a bound of 0
            for rec in recs:
                rec["probs"][(onsets >= 1800) & (onsets < 1840)] = 0.9
        alarm = tune_alarm(recs, max_fp_per_24h=bound, merge_gap=30.0, smoothings=(1,), thresholds=(0.5,),
                           min_durations=(0.0,))
        return {"constraint_met": alarm["constraint_met"], "validation_hours": alarm["validation_hours"],
                "validation_fp_count": alarm["fp_count"], "fp_per_24h_upper95": alarm["fp_per_24h_upper95"]}

    data = {"Subjects": 30, "SubjectsWithSeizures": 30, "Recordings": 60, "Hours": 100.0, "Seizures": 80,
            "SeizureHours": 1.0}

    def note(alarm_point: dict, bound: float) -> str:
        post = PostprocessingConfig(max_fp_per_24h=bound)
        said = [t for t in _limitations(data, {}, {"Rows": []}, post, alarm_point) if t.startswith("The alarm point")]
        assert len(said) == 1
        return said[0]

    short = point(1.0, 2, 2.0)
    assert short["constraint_met"] and short["validation_fp_count"] == 0
    text = note(short, 2.0)
    assert "on 2.0 h of validation recordings, which showed 0 false alarms" in text
    assert "too few hours to establish the bound" in text and "up to 35.9 per 24 h" in text  # 24 ln 20 / 2
    long = point(30.0, 2, 2.0)
    assert long["fp_per_24h_upper95"] == pytest.approx(24 * np.log(20) / 60)
    assert "its rate on recordings like these is at most 1.2 per 24 h" in note(long, 2.0)
    impossible = point(1.0, 2, 0.0)
    assert not impossible["constraint_met"] and impossible["validation_fp_count"] == 2
    assert "could not meet its bound of 0 false alarms" in note(impossible, 0.0)
    assert not any(t.startswith("The alarm point") for t in _limitations(data, {}, {"Rows": []}, None))


def test_ablation_table_appears_once_the_benchmark_wrote_it(reported, tmp_path):
    import importlib.util

    _, _, out = reported
    copy = tmp_path / "out"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("*.tfrecord", "*.keras", "tensorboard"))
    spec = importlib.util.spec_from_file_location("ablations", ROOT / "benchmarks" / "ablations.py")
    ablations = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablations)
    rows = [{"variant": "neurocare", "description": ablations.VARIANTS["neurocare"][0], "event_f1": 0.9333,
             "event_sensitivity": 0.8889, "fp_per_24h": 0.0, "pr_auc": 0.9312, "roc_auc": None,
             "pr_auc_unsmoothed": 0.9101}]
    ablations.write_tsv(copy, rows)
    table = page(copy / "group.html").tables["ablation-table"]
    assert table[1] == [ablations.VARIANTS["neurocare"][0], "0.933", "0.889", "0.000", "0.931", "n/a", "0.910"]
    assert "It was trained with the focal loss" in (copy / "group.html").read_text()  # methods from logs/

    # several seeds: mean ± sample SD, in the TSV, the Markdown table and the page
    runs = [{"event_f1": f1, "event_sensitivity": 0.8, "fp_per_24h": fp, "pr_auc": 0.9, "roc_auc": None}
            for f1, fp in ((0.9, 0.0), (0.8, 12.0), (0.7, 6.0))]
    row = {"variant": "features", "description": ablations.VARIANTS["features"][0], **ablations.summarise(runs),
           "seeds": "42 1 2"}
    assert row["event_f1"] == pytest.approx(0.8) and row["event_f1_sd"] == pytest.approx(0.1)
    assert row["fp_per_24h_sd"] == pytest.approx(6.0) and row["roc_auc"] is None and row["roc_auc_sd"] is None
    assert "| 0.800 ± 0.100 | 0.800 ± 0.000 | 6.000 ± 6.000 | 0.900 ± 0.000 | n/a | n/a |" in ablations.table([row])
    tsv = ablations.write_tsv(copy, [row]).read_text().splitlines()
    assert tsv[0].split("\t")[-1] == "seeds" and tsv[1].split("\t")[-1] == "42 1 2"
    table = page(copy / "group.html").tables["ablation-table"]
    assert table[1] == [ablations.VARIANTS["features"][0], "0.800 ± 0.100", "0.800 ± 0.000", "6.000 ± 6.000",
                        "0.900 ± 0.000", "n/a", "n/a"]
    assert "mean ± standard deviation over seeds 42 1 2" in (copy / "group.html").read_text()



def test_per_subject_diagnosis_recomputes_each_test_subjects_ranking(reported, tmp_path):
    """benchmarks/per_subject.py: one row per subject of the run, each AUC that subject's own windows'."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    _, _, out = reported
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "per_subject.py"), str(out), "--json",
                             str(tmp_path / "d.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "d.json").read_text())[str(out)]
    predictions = pd.read_csv(out / "group" / "predictions.tsv", sep="\t")
    assert [r["subject"] for r in rows] == sorted(predictions["participant_id"].unique())
    for row in rows:
        mine = predictions[predictions["participant_id"] == row["subject"]]
        assert row["seizure_windows"] == int(mine["label"].sum()) and row["windows"] == len(mine)
        if 0 < mine["label"].sum() < len(mine):
            assert row["roc_raw"] == pytest.approx(roc_auc_score(mine["label"], mine["probability"]))
            assert row["roc_smoothed"] == pytest.approx(roc_auc_score(mine["label"], mine["smoothed_probability"]))
        assert row["median_background"] == pytest.approx(mine.loc[mine["label"] == 0, "probability"].median())
    assert f"| {rows[0]['subject']} |" in result.stdout

def test_citation_states_the_runs_values_versions_and_references(reported):
    from neurocare_bids.reports.citation import parse_bib

    _, participant_out, out = reported
    versions = {name: importlib.metadata.version(name) for name in
                ("numpy", "scipy", "mne", "mne-bids", "tensorflow", "keras")}
    participant = " ".join((participant_out / "logs" / "CITATION.md").read_text().split())
    for fact in ("between 0.5 and 30 Hz", "order 4 per band edge", "resampled to 128 Hz", "at 50 Hz",
                 "windows of 4 s", "50 % overlap", "4 recording(s) of 4 subject(s)", "NeuroCare-BIDS 0.1.0",
                 f"NumPy {versions['numpy']}", f"SciPy {versions['scipy']}", f"MNE-Python {versions['mne']}",
                 f"MNE-BIDS {versions['mne-bids']}"):
        assert fact in participant, fact
    assert "Seizure detection model" not in participant and "focal" not in participant

    group_text = (out / "logs" / "CITATION.md").read_text()
    group = " ".join(group_text.split())
    for fact in ("4 subject-wise cross-validation folds", "4, 8 Conv1D filters", "LSTM layer(s) of 4 units",
                 "focal loss (Lin et al., 2017) with γ = 2 and α = 0.75", "batches of 16 windows",
                 "at most 1 epochs of 3 batches", "mixup between seizure windows", "(Dan et al., 2025)",
                 f"TensorFlow {versions['tensorflow']}", f"Keras {versions['keras']}", "between 0.5 and 30 Hz"):
        assert fact in group, fact
    bib = parse_bib((out / "logs" / "CITATION.bib").read_text())
    assert set(bib) == {"gorgolewski2016bids", "pernet2019eegbids", "neurocare_bids", "neurocare_original",
                        "gramfort2013mne", "appelhoff2019mnebids", "abadi2016tensorflow", "dan2025szcore",
                        "chollet2015keras", "lin2017focal"}
    references = group_text[group_text.index("## References"):]
    assert len([line for line in references.splitlines() if line[:1].isdigit()]) == len(bib)
    html = (out / "logs" / "CITATION.html").read_text()
    assert "<h2>Seizure detection model</h2>" in html and "https://doi.org/10.1111/epi.18113" in html
    assert "each channel separately" not in group
    assert "centred on each recording's background" in group
    assert "from the centred, smoothed probabilities the threshold applies to, and the AUCs before smoothing" in group
    assert "the median threshold, then the median minimum duration" in group
    assert "exponential moving average of the weights (momentum 0.98)" in group
    assert "joined by a spectral branch" in group and "a dense layer of 32 units" in group
    # the default: the per-channel feature branch, mirroring, and the stack with the feature baseline
    assert "joined by a per-channel feature branch" in group and "left-right mirroring of the montage" in group
    assert "The network was stacked with a feature baseline trained on the same windows" in group

    # the text follows the configuration that ran: the per-channel encoder is described when it was used
    from neurocare_bids.config import Config
    from neurocare_bids.reports.citation import render_citation

    cfg = Config.from_toml(sorted((out / "logs").glob("group_*/config.toml"))[-1])
    cfg.model.encoder = "per_channel"
    text = " ".join(render_citation(out, cfg, "group")["markdown"].split())
    assert "applied to each channel separately with weights shared by all channels" in text
    assert "4, 8 Conv1D filters" in text
    cfg.model.spectral_units, cfg.postprocessing.ties, cfg.training.weight_averaging = 0, "conservative", 0.0
    cfg.model.channel_features, cfg.augmentation.mirror, cfg.model.stacking = 0, 0.0, False
    text = " ".join(render_citation(out, cfg, "group")["markdown"].split())
    assert "spectral branch" not in text
    assert "the highest threshold, then the longest minimum duration" in text and "moving average of the weights" not in text
    assert "per-channel feature branch" not in text and "mirroring" not in text and "stacked" not in text
    cfg.model.channel_features, cfg.augmentation.mirror = 24, 0.5
    text = " ".join(render_citation(out, cfg, "group")["markdown"].split())
    assert "joined by a per-channel feature branch" in text and "two dense layers of 24 units shared" in text
    assert "left-right mirroring of the montage (probability 0.5" in text


# ---------------------------------------------------------------------- channel quality, other settings, failures
QUALITY_CONFIG = """
[preprocessing]
l_freq = 1.0
h_freq = 25.0
sfreq = 100.0
[windows]
duration = 2.0
overlap = 0.0
"""


def test_flagged_channels_other_settings_failed_and_up_to_date_reports(tmp_path):
    root = tmp_path / "bids"
    n = 256 * 120
    data = synthetic_eeg(19, n, 256.0, seed=5, seizures=[(40.0, 20.0)])
    data[4] = 0.0  # O1: flat
    data[7] = np.random.default_rng(2).standard_normal(n) * 0.1  # T5: barely in contact, flat by its deviation
    data[11] += np.random.default_rng(1).standard_normal(n) * 400  # Fp2: noisy
    data[15] = np.clip(data[15], -12.0, 12.0)  # O2: clipped at ±12 µV
    add_recording(root, "01", data=data, seizures=[(40.0, 20.0, "sz")])
    add_recording(root, "02", seed=2)
    config = tmp_path / "other.toml"
    config.write_text(QUALITY_CONFIG)
    out = tmp_path / "out"
    (out / "sub-02.html").mkdir(parents=True)  # the report cannot be written: the run must not suffer
    result = run_cli(root, out, "participant", "--skip-bids-validation", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "neurocare-bids: error: sub-02.html not written" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(list(out.glob("sub-0*/**/*_windows.tfrecord"))) == 2

    meta = _sidecars(out, "01")[0]
    quality = meta["ChannelQuality"]
    assert (quality["Flat"], quality["Noisy"], quality["Clipped"]) == (["O1-Avg", "T5-Avg"], ["Fp2-Avg"], ["O2-Avg"])
    # a constant channel is worded by its value, a weak one by its standard deviation
    assert any(re.fullmatch(r"recorded channel O1-Avg is flat \(constant \S+ µV\): check the electrode", w)
               for w in meta["Warnings"]), meta["Warnings"]
    assert any(re.fullmatch(r"recorded channel T5-Avg carries almost no signal \(standard deviation 0\.\d+ µV\): "
                            r"check the electrode", w) for w in meta["Warnings"]), meta["Warnings"]
    assert any("Fp2-Avg is noisy" in w for w in meta["Warnings"])
    assert any("O2-Avg is clipped" in w for w in meta["Warnings"])
    assert _sidecars(out, "02")[0]["ChannelQuality"]["Flat"] == []
    text = " ".join((out / "sub-01.html").read_text().split())
    assert "Flat: O1-Avg, T5-Avg. Noisy: Fp2-Avg. Clipped: O2-Avg." in text
    assert "O2-Avg is clipped" in text  # in the warnings section
    assert "band-pass 1–25 Hz" in text

    citation = " ".join((out / "logs" / "CITATION.md").read_text().split())
    for fact in ("between 1 and 25 Hz", "resampled to 100 Hz", "windows of 2 s", "0 % overlap",
                 "2 recording(s) of 2 subject(s)"):
        assert fact in citation, fact

    (out / "sub-02.html").rmdir()
    result = run_cli(root, out, "participant", "--skip-bids-validation", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "2 up to date" in result.stdout
    for subject in ("01", "02"):  # up-to-date recordings are reported too
        table = page(out / f"sub-{subject}.html").tables["table-0"]
        assert table[1][1] == "up-to-date"


def test_a_sidecar_without_channel_quality_is_reported_as_not_measured(prepared, tmp_path):
    from neurocare_bids.reports import build_subject_report

    bids, participant_out, _ = prepared
    out = tmp_path / "out"
    shutil.copytree(participant_out / "sub-01", out / "sub-01")
    sidecar = next(out.glob("sub-01/**/*_windows.json"))
    meta = json.loads(sidecar.read_text())
    del meta["ChannelQuality"]  # as written by an older version
    sidecar.write_text(json.dumps(meta))
    report = build_subject_report(out, "01", bids_dir=bids)
    assert "Not measured: this output was written by an older version" in report.read_text()
    assert page(report).h2 == SUBJECT_SECTIONS


# ---------------------------------------------------------------------- headless Chromium
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost"]


def _chromium() -> str:
    """The Debian ``chromium`` (installed here when possible: CI's .ci/run installs it beforehand)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=900, env=env)
        found = shutil.which("chromium")
        if found:
            return found
    pytest.skip("the Debian package 'chromium' is not installed and could not be installed here "
                "(apt-get install chromium, as .ci/run does)")


class Browser:
    """Chromium driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``: file
    descriptors 3 and 4, NUL-separated JSON); no network socket is opened at all."""

    def __init__(self, executable: str, profile: Path):
        import fcntl

        to_child, self._to_browser = os.pipe()
        self._from_browser, from_child = os.pipe()

        def wire():  # in the child: its fds 3 and 4 are the two pipe ends
            a = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [executable, *BROWSER_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._id, self.events = b"", 0, []

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._receive(deadline))

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._receive(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, EOFError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def load_offline(browser: Browser, path: Path) -> dict:
    """Open ``path`` in a fresh tab with the network emulated offline; what went wrong, and what the DOM holds."""
    browser.events.clear()
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=session)
    browser.call("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                      "uploadThroughput": -1}, session=session)
    browser.call("Page.navigate", {"url": path.as_uri()}, session=session)
    browser.wait_for("Page.loadEventFired")
    browser.drain(0.5)
    dom = browser.call("Runtime.evaluate", {"expression": "JSON.stringify({sections: document.querySelectorAll("
                                            "'section').length, svgs: document.querySelectorAll('svg').length, "
                                            "broken: [...document.images].filter(i => !i.complete).length})",
                                            "returnByValue": True}, session=session)
    browser.call("Target.closeTarget", {"targetId": target})
    events = [e for e in browser.events if e.get("sessionId") in (session, None)]
    problems = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Network.loadingFailed":
            problems.append(f"failed load: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent" and not params["request"]["url"].startswith(("file:", "data:")):
            problems.append(f"request to {params['request']['url']}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            problems.append(f"console error: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            problems.append(f"log error: {params['entry'].get('text')}")
    return {"problems": problems, "dom": json.loads(dom["result"]["value"])}


def test_reports_render_offline_in_headless_chromium_without_errors(reported):
    executable = _chromium()
    _, participant_out, out = reported
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(executable, Path(profile))
        try:
            subject = load_offline(browser, participant_out / "sub-01.html")
            group = load_offline(browser, out / "group.html")
            citation = load_offline(browser, out / "logs" / "CITATION.html")
        finally:
            browser.close()
    assert subject["problems"] == [] and group["problems"] == [] and citation["problems"] == []
    assert subject["dom"]["sections"] == len(SUBJECT_SECTIONS) and subject["dom"]["svgs"] >= 5
    assert group["dom"]["sections"] == len(GROUP_SECTIONS) and group["dom"]["svgs"] >= 7
    assert subject["dom"]["broken"] == group["dom"]["broken"] == 0


def test_the_browser_check_catches_a_page_that_loads_from_the_network(tmp_path):
    """The check above can fail: a page with an external image and a console error is caught."""
    executable = _chromium()
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title><link rel="icon" href="data:,">'
                   '</head><body><img src="https://example.org/x.png"><script>console.error("boom")</script>'
                   "</body></html>")
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(executable, Path(profile))
        try:
            problems = load_offline(browser, bad)["problems"]
        finally:
            browser.close()
    assert any("request to https://example.org/x.png" in p for p in problems)
    assert any(p.startswith("failed load") for p in problems) and any("boom" in p for p in problems)


# ---------------------------------------------------------------------- packaging
def test_the_wheel_ships_the_boilerplate_and_the_templates(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("neurocare_bids", "boilerplate"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("neurocare_bids/boilerplate/citation.md.j2", "neurocare_bids/boilerplate/references.bib",
                 "neurocare_bids/reports/templates/group.html.j2", "neurocare_bids/reports/templates/subject.html.j2"):
        assert name in names
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    found = subprocess.run([sys.executable, "-c", "from neurocare_bids.reports.citation import boilerplate_dir; "
                            "print(boilerplate_dir())"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(installed)}, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == installed / "neurocare_bids" / "boilerplate"


def test_boilerplate_is_the_source_of_the_methods_text():
    from neurocare_bids.reports.citation import boilerplate_dir

    assert boilerplate_dir() == ROOT / "boilerplate"  # the checkout (editable install) uses the repository's


def test_no_reports_skips_the_pages_but_keeps_the_citation(siena, tmp_path):
    out = tmp_path / "out"
    result = run_cli(siena, out, "participant", "--skip-bids-validation", "--no-reports")
    assert result.returncode == 0, result.stderr
    assert not list(out.glob("sub-*.html"))
    assert (out / "logs" / "CITATION.md").is_file() and list(out.rglob("*_windows.tfrecord"))
    result = run_cli(siena, out, "participant", "--skip-bids-validation")  # up to date, pages written now
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("sub-*.html")) == ["sub-01.html", "sub-02.html"]


# ---------------------------------------------------------------------- long runs (issue 18: 128 h of traces)
def _path_vertices(svg: str) -> list[int]:
    """Vertices of each path of an inline SVG (matplotlib writes ``M x y L x y ...``)."""
    import re

    return [d.count("L ") + 1 for d in re.findall(r'\bd="([^"]*)"', svg)]


def test_long_traces_are_a_bounded_min_max_envelope_that_keeps_a_one_window_peak_and_dip():
    import re

    from neurocare_bids.reports import figures

    rng = np.random.default_rng(0)
    n = 200_000  # 111 h of 2-s windows in one recording
    x = np.arange(n) * 2.0
    y = 0.3 + 0.1 * rng.random(n)
    y[123_457], y[54_321] = 0.99, 0.001  # one window each
    ex, ey = figures.envelope(x, y, 1500)
    assert len(ex) <= 1500 and np.all(np.diff(ex) > 0)
    assert ey.max() == 0.99 and ey.min() == 0.001
    assert 123_457 * 2.0 in ex and 54_321 * 2.0 in ex  # drawn where they are
    short_x, short_y = figures.envelope(x[:1500], y[:1500], 1500)  # at or below the bound: every point as is
    assert np.array_equal(short_x, x[:1500]) and np.array_equal(short_y, y[:1500])

    long_svg = str(figures.probability_trace(x + 2.0, y, y, n * 2.0 + 2.0, [(246_900.0, 247_000.0)], [], 0.5,
                                             "trace-long", 400))
    short_svg = str(figures.probability_trace(x[:300] + 2.0, y[:300], y[:300], 602.0, [], [], 0.5, "trace-short"))
    assert max(_path_vertices(long_svg)) <= 400 + 1  # matplotlib's simplification repeats the last vertex
    assert len(long_svg) < 40_000  # ~8 MB of path without the envelope
    # a short recording is drawn as before: every window, coordinates not rounded
    assert short_svg == str(figures.probability_trace(x[:300] + 2.0, y[:300], y[:300], 602.0, [], [], 0.5,
                                                      "trace-short", 10**9))
    assert re.search(r"\d\.\d{2}", short_svg)  # and its coordinates unrounded


def test_the_traces_of_a_page_share_a_point_budget():
    from neurocare_bids.reports import figures, group

    assert group.trace_points(1) == group.trace_points(41) == figures.MAX_POINTS  # Siena: full resolution
    assert 686 * group.trace_points(686) <= group.TRACE_PAGE_POINTS  # CHB-MIT's 686 recordings share the budget
    assert group.trace_points(10_000) == group.MIN_TRACE_POINTS  # but never fewer than that per trace


def test_a_model_without_any_onnx_copy_says_why_in_the_group_report(reported, tmp_path):
    """A network trained where no ONNX copy could be made (no TensorFlow, a failed export): its card's ONNX entry
    has a reason and neither the consecutive-window graph nor a classifier; group.html says why, and renders."""
    from neurocare_bids.reports.group import build_group_report

    _, _, out = reported
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    card_path = copy / "group" / "model" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["ONNX"] = {"File": None, "Reason": "TensorFlow (tf2onnx, the exporter) is not installed"}
    card_path.write_text(json.dumps(card))
    report = build_group_report(copy)
    text = report.read_text()
    assert "none: TensorFlow (tf2onnx, the exporter) is not installed" in text and "classifier.onnx" not in text
