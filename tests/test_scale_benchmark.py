"""benchmarks/scale.py end to end at a tiny size: per-subject participant jobs, the group probe, sizes, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scale_rehearsal_runs_per_subject_jobs_and_writes_its_figures(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--hours", "0.1", "--subjects", "2",
                           "--steps", "2", "--batches", "3", "--workdir", str(tmp_path / "work"), "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [p["subject"] for p in res["participant"]] == ["01", "02"]
    assert all(p["returncode"] == 0 and p["peak_rss_mib"] > 0 and p["derivative_bytes"] > 0
               for p in res["participant"])
    assert not (tmp_path / "work" / "bids" / "sub-01").exists()  # raw data deleted after each job
    assert res["run"]["windows"] > 0 and res["group_probe"]["train_windows_per_s"] > 0
    assert res["group_probe"]["pipeline_windows_per_cpu_s"] > 0 and res["group_probe_run"]["peak_rss_mib"] > 0
    assert res["group_probe"]["numpy_pipeline_windows_per_cpu_s"] > 0
    assert "the same without TensorFlow (`numpy`)" in proc.stdout and "(`numpy`)." in proc.stdout
    assert res["sizes"]["predictions_tsv_bytes_per_window"] > 50
    chbmit = res["projection"]["chbmit"]
    assert chbmit["gpu"]["wall_s"] > chbmit["tasks"]["wall_s"] > 0 and chbmit["cpu"]["wall_s"] > chbmit["gpu"]["wall_s"]
    assert res["sizes_full"]["chbmit"]["trace_points_full"] < res["sizes_full"]["siena"]["trace_points_full"]
    assert "| measure | value |" in proc.stdout and "one H200" in proc.stdout
