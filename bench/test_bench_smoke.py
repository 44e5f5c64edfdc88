"""Smoke test of the benchmark: `bench/run.sh --quick` runs end to end and
produces every figure.

It asserts only that each figure is present and numeric (or marked "n/a" for
a reason that holds by design, e.g. a memory broker has no object store), that
the report and plots exist, and that nothing the run started is left running
(the Lambda emulator's function instances included). The quick run includes
the http, lambda, tables, auth, recompress and scrape phases; the lambda phase needs cargo-lambda and
the silt-http function built in the silt binary's profile (bench/run.sh builds
it, a no-op when fresh: with the debug silt, the test suite has built it
already).
It never asserts a timing or a throughput: those are the benchmark's output,
not pass/fail criteria.

    SILT_BIN=/var/tmp/silt-target/debug/silt python3 -m pytest -q bench/test_bench_smoke.py
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import bench  # noqa: E402


def numeric(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def descendants() -> set[int]:
    """PIDs of processes whose parent chain reaches this test process."""
    me = os.getpid()
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parents[int(d.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out = set()
    for pid in parents:
        p = pid
        while p in parents and p not in (0, 1):
            p = parents[p]
            if p == me:
                out.add(pid)
                break
    return out


def check_auth(res: dict) -> None:
    """Authentication under a password-guessing attack: every figure, the
    victim's records all delivered and every login accepted, no wrong
    password accepted, at most one attempt answered per connection (also
    when many are written at once), and the agent counted the failures it
    answered."""
    au = res["auth"]
    assert isinstance(au, dict), au
    for k in bench.FIGURES_AUTH:
        assert numeric(bench.dig(au, k)), (k, bench.dig(au, k))
    assert au["victim"]["failed"] == 0 and au["victim"]["delivered"] == au["victim"]["sent"] > 0, au["victim"]
    for w in au["windows"].values():
        assert w["records"] > 0 and w["logins"] > 0 and w["logins_failed"] == 0, w
    a, ni = au["attack"], au["impatient"]
    assert a["accepted"] == 0 and ni["accepted"] == 0, (a, ni)
    assert a["failed"] > 0 and a["max_attempts_per_connection"] == 1, a
    assert ni["attempts"] > 0 and ni["max_attempts_per_connection"] <= 1, ni
    assert au["pipeline"]["authenticate_answers"] == 1, au["pipeline"]
    assert au["agent_failures_counted"] >= a["failed"] + ni["failed"], au["agent_failures_counted"]


def check_recompress(res: dict) -> None:
    """Recompressing to the topic's codec: a row per codec pair with every
    figure, the cores at the ingest rate of the brokers phase when it ran,
    and a topic codec that compresses (uncompressed sources at ratio 1)."""
    rc = res["recompress"]
    assert isinstance(rc, dict), rc
    rows = {r["pair"]: r for r in rc["rows"]}
    assert set(rows) == {f"{a}->{b}" for a, b in bench.RECOMPRESS_PAIRS}, sorted(rows)
    for pair, r in rows.items():
        for k in bench.FIGURES_RECOMPRESS_ROW:
            assert numeric(r.get(k)) and r[k] > 0, (pair, k, r.get(k))
        assert r["iterations"] >= 2 * rc["batches"], (pair, r["iterations"])
        assert r["ratio_stored"] > 1, (pair, r["ratio_stored"])
        if r["from"] == "none":
            assert r["ratio_sent"] == 1, (pair, r["ratio_sent"])
        else:
            assert numeric(r["decompress_mbps"]), (pair, r["decompress_mbps"])
    if "brokers" in res["meta"]["phases"] and "silt-agent" in res["brokers"]:
        ing = rc["ingest"]
        assert ing and ing["broker"] == "silt-agent" and numeric(ing["mbps"]), ing
        assert rc["ingest_mbps"] == ing["mbps"], rc["ingest_mbps"]
    else:
        assert rc["ingest"] is None and rc["ingest_mbps"] == rc["reference_mbps"], rc


def test_quick_run_produces_every_figure(tmp_path):
    out = tmp_path / "results"
    env = dict(os.environ)
    # The run itself takes under 2 minutes; the timeout leaves room for a
    # first build of the silt-http function (lambda phase) in the profile of
    # a release silt.
    proc = subprocess.run([str(BENCH / "run.sh"), "--quick", "--out", str(out)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=2400)
    text = proc.stdout.decode(errors="replace")
    print(text[-6000:])
    assert (out / "results.json").is_file(), "no results.json"
    res = json.loads((out / "results.json").read_text())

    # Raw S3 figures.
    raw = res["raw_s3"]
    assert isinstance(raw, dict), raw
    for k in ("put_seq", "put_par4", "get_range_par4"):
        for f in ("mbps", "p50_ms", "p99_ms"):
            assert numeric(raw[k][f]), (k, f, raw[k].get(f))

    # Every broker of the quick mode ran and produced every figure.
    assert set(res["brokers"]) == set(bench.QUICK["brokers"])
    missing = []
    for name, b in res["brokers"].items():
        assert isinstance(b, dict), f"{name}: {b}"
        na = bench.NOT_APPLICABLE.get(name, {})
        for P in map(str, res["meta"]["partitions"]):
            r = b["partitions"][P]
            for k in bench.FIGURES_PRODUCE:
                ok = numeric(r.get(k)) or (k in na and str(r.get(k)).startswith("n/a"))
                if not ok:
                    missing.append(f"{name} P={P} {k}={r.get(k)!r}")
        for k in bench.FIGURES_CONSUME:
            v = b["consume"].get(k)
            if not (numeric(v) or (k in na and str(v).startswith("n/a"))):
                missing.append(f"{name} consume {k}={v!r}")
        if not numeric(b.get("peak_rss_mib")):
            missing.append(f"{name} peak_rss_mib")
    assert not missing, missing
    assert res["missing_figures"] == []

    # silt's object-store counters were read (PUTs happened, GETs on a cold read).
    for name in ("silt-agent", "silt-dev"):
        r = res["brokers"][name]["partitions"][str(res["meta"]["consume_partitions"])]
        assert r["puts_per_gib"] > 0, (name, r)
        assert res["brokers"][name]["consume"]["gets_per_gib_cold"] > 0, name

    # Cold reads before and after compaction: the phase ran, compacted
    # something and produced every figure.
    c = res["compaction"]
    assert isinstance(c, dict), c
    for k in bench.FIGURES_COMPACTION:
        assert numeric(bench.dig(c, k)), (k, bench.dig(c, k))
    assert c["entries_compacted"] > 0, c["passes"]
    assert c["after_bucket"]["compacted_objects"] > 0, c["after_bucket"]
    assert c["before_one"]["gets"] > 0 and c["after_one"]["gets"] > 0, c

    # HTTP produce against Kafka produce: every batch size ran with no
    # failed request, and the Kafka figures of the same phase are there.
    h = res["http"]
    assert isinstance(h, dict), h
    for B in bench.QUICK["http_batches"]:
        r = h["runs"][str(B)]
        for k in bench.FIGURES_HTTP_RUN:
            assert numeric(r.get(k)), (B, k, r.get(k))
        assert r["failed_requests"] == 0 and r["records_ok"] > 0, r
        assert r["connections"] == r["concurrency"], r  # keep-alive: one connection per thread
        assert numeric(r["client_cpu_pct_max"]), r
    for k in bench.FIGURES_HTTP_KAFKA:
        assert numeric(h["kafka"].get(k)), (k, h["kafka"].get(k))

    # silt-http cold start: a row per size and log length, every figure, and
    # the function loaded the topics the agent created.
    lm = res["lambda"]
    assert isinstance(lm, dict), lm
    sizes = bench.QUICK["lambda_sizes"]
    assert len(lm["rows"]) == len(sizes) * (1 + len(bench.QUICK["lambda_log_records"])), lm["rows"]
    for r in lm["rows"]:
        for k in bench.FIGURES_LAMBDA:
            assert numeric(r.get(k)), (k, r.get(k))
        assert r["function_topics"] == r["topics"] and r["function_partitions"] == r["partitions"], r
        assert r["checkpoint_bytes"] > 0, r
    assert lm["rows"][-1]["log_records"] >= bench.QUICK["lambda_log_records"][-1], lm["rows"]

    # Compacted topics and Parquet tables: the cleaner left one record per
    # key for a consumer from offset 0, both export runs wrote every row to
    # Parquet files, and every figure is there.
    tb = res["tables"]
    assert isinstance(tb, dict), tb
    for k in bench.FIGURES_TABLES:
        assert numeric(bench.dig(tb, k)), (k, bench.dig(tb, k))
    c = tb["cleaner"]
    assert c["records_removed"] == tb["records"] - tb["keys"], c
    assert c["records_after"] == tb["keys"] and c["keys_after"] == tb["keys"], c
    assert c["bytes_read"] > 0 and c["bytes_written"] > 0, c
    for variant in ("backlog", "live"):
        r = tb[variant]
        assert r["rows"] >= tb["records"] and r["files"] > 0 and r["parquet_bytes"] > 0, (variant, r)
        assert r["files_listed"] == r["files"], (variant, r)

    check_auth(res)
    check_recompress(res)

    # The scrape's cost: every figure, a lag series per partition.
    sc = res["scrape"]
    assert isinstance(sc, dict), sc
    for k in bench.FIGURES_SCRAPE:
        assert numeric(sc.get(k)), (k, sc.get(k))
    assert sc["lag_series"] == sc["partitions"] == bench.QUICK["scrape_topics"] * bench.QUICK[
        "scrape_partitions_per_topic"], sc
    assert sc["scrapes"] >= 2, sc

    # Every target has a verdict line; the report and plots were written.
    assert len(res["targets"]) >= 5
    report = (out / "report.md").read_text()
    assert "### Targets" in report and "| silt agent" in report
    assert "### Cold reads before and after compaction" in report
    assert "### HTTP produce against Kafka produce" in report
    assert "### silt-http Lambda cold start" in report
    assert "### Compacted topics and Parquet tables" in report
    assert "### Authentication under a password-guessing attack" in report
    assert "### The cost of a metrics scrape" in report
    assert "### Recompressing to the topic's compression.type" in report
    for png in ("latency_cdf.png", "throughput_by_partitions.png"):
        assert (out / png).stat().st_size > 1000, png
    assert proc.returncode == 0, text[-3000:]

    # Nothing the run started is still running (checked by PID and start
    # time, so a reused PID is not mistaken for a leftover).
    assert res["started_processes"], "no processes recorded"
    left = [p for p in res["started_processes"] if bench.stack.alive(p)]
    assert not left, f"processes left running: {left}"
    stray = descendants()
    assert not stray, f"child processes left running: {sorted(stray)}"
