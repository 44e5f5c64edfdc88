"""The fault campaign's quick mode (campaign.py --quick): a few short runs
against real processes. Every run must find zero anomalies, and must have
injected faults and had records acknowledged - a run that tested nothing
fails too - and the tiering jobs (compaction, object GC) must have run
among the faults. Half the runs are on a compacted topic, where the
cleaner must have removed records.

Needs SILT_BIN (default /var/tmp/silt-target/debug/silt), etcd and moto
(scripts/install-test-deps.sh). About four minutes on two cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 900


def test_quick_campaign(tmp_path):
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(HERE / "campaign.py"), "--quick", "--workdir", str(tmp_path / "runs"),
         "--summary", str(summary)],
        cwd=HERE.parents[1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=TIMEOUT_S)
    out = proc.stdout
    assert summary.exists(), f"the campaign wrote no summary (exit {proc.returncode}):\n{out[-8000:]}"
    result = json.loads(summary.read_text())
    runs = result["runs"]
    assert runs, out[-8000:]
    lines = "\n".join(r["line"] for r in runs)
    for r in runs:
        assert sum(r["faults"].values()) > 0, f"run {r['run']} injected no fault:\n{lines}"
        assert r["acked"] > 0, f"run {r['run']} had no record acknowledged:\n{lines}"
        assert not r["anomalies"], (
            f"run {r['run']} (seed {r['seed']}, kept in {r['dir']}) found anomalies:\n"
            f"{r['details']}\n{lines}")
    # The tiering jobs ran among the faults: compaction swapped index
    # entries (so reads went through compacted objects) in the campaign.
    compacted = sum(r.get("jobs", {}).get("compaction_entries", 0) for r in runs)
    assert compacted > 0, f"no compaction happened during the campaign:\n{lines}"
    # Some runs were on a compacted topic, and the cleaner removed records
    # there (offsets the final reads no longer hold).
    on_compacted = [r for r in runs if r.get("compacted")]
    assert on_compacted, f"no run was on a compacted topic:\n{lines}"
    removed = sum(r["info"].get("offsets_removed", 0) for r in on_compacted)
    assert removed > 0, f"the cleaner removed no record in the compacted runs:\n{lines}"
    assert proc.returncode == 0, f"campaign exited {proc.returncode}:\n{out[-8000:]}"
