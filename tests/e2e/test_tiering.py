"""Tiering jobs on a real cluster (etcd, moto S3, silt agents, librdkafka
clients): retention by time and by size, segment compaction while producers
write and consumers read with an agent killed -9, orphaned uploads deleted
after their age and not before, and `silt jobs run --once` beside running
agents.

The agents run the jobs every second with small sizes, so that a few
seconds of load make many small segments, several compaction passes and
deletions after a short grace period.

Run: cd tests/e2e && python3 -m pytest -q test_tiering.py
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

import cluster as cl
import roundtrip as rt
from test_cluster import (  # noqa: F401  (make_cluster is a fixture)
    PACE_S, PARTITIONS, RETRYING, all_delivered, check_at_least_once, make_cluster,
    new_topic, producer_specs, record_sets,
)

pytestmark = pytest.mark.cluster

FAST_JOBS = {
    "SILT_RETENTION_CHECK_INTERVAL": "1s",
    "SILT_COMPACTION_INTERVAL": "1s",
    "SILT_COMPACTION_MIN_AGE": "1s",
    "SILT_COMPACTION_MAX_LAG": "3s",
    "SILT_COMPACTION_RUN_BYTES": "256KiB",
    "SILT_COMPACTION_OBJECT_BYTES": "1MiB",
    "SILT_COMPACTION_ENTRY_BYTES": "32KiB",
    "SILT_GC_INTERVAL": "1s",
    "SILT_GC_GRACE": "4s",
    "SILT_OBJECT_STORE_TIMEOUT": "500ms",
}


def bucket_objects(c: cl.Cluster, prefix: str) -> dict[str, int]:
    """key -> size of every object under `prefix`."""
    s3 = c.s3.client()
    out: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="silt", Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = o["Size"]
    return out


def total(c: cl.Cluster, name: str) -> float:
    return sum(c.metrics(i).get(name, 0.0) for i, a in enumerate(c.agents) if a.alive())


def wait_until(what: str, cond, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm", "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def fetch_error_at(bootstrap: str, topic: str, partition: int, offset: int):
    """The error a consumer gets fetching `offset` with auto.offset.reset=error
    (None if it read a record)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "oor", "enable.auto.commit": False,
                  "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            return m.error()
        raise AssertionError("no record and no error within 20 s")
    finally:
        c.close()


def read_range(bootstrap: str, topic: str, partition: int, start: int, end: int) -> list[int]:
    """Offsets read from `start` up to `end`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "range", "enable.auto.commit": False,
                  "auto.offset.reset": "error"})
    got: list[int] = []
    try:
        c.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + 30
        while (not got or got[-1] < end - 1) and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            assert not m.error(), m.error()
            got.append(m.offset())
        return got
    finally:
        c.close()


def produce(bootstrap: str, topic: str, n: int, partition: int = 0, size: int = 100) -> list[int]:
    from confluent_kafka import Producer
    offsets: list[int] = []
    errors: list = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            offsets.append(msg.offset())

    for i in range(n):
        p.produce(topic, value=b"%08d" % i + b"x" * size, partition=partition, on_delivery=done)
        if i % 100 == 99:
            p.flush(30)
            time.sleep(0.3)  # several segments
    assert p.flush(30) == 0 and not errors, errors[:3]
    return sorted(offsets)


def test_retention_by_time_and_by_size(make_cluster):
    c = make_cluster(agents=1, etcd_members=1, s3="moto",
                     agent_env={**FAST_JOBS, "SILT_LOG_RETENTION_MS": "86400000"})
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    by_time, by_size = rt.unique_topic("ret-time"), rt.unique_topic("ret-size")
    for f in admin.create_topics([
        NewTopic(by_time, 1, config={"retention.ms": "5000"}),
        NewTopic(by_size, 1, config={"retention.bytes": "20000"}),
    ]).values():
        f.result(30)
    # A topic without its own retention.ms reports the cluster default
    # (STATIC_BROKER_CONFIG, as a broker's server.properties would).
    res = ConfigResource("TOPIC", by_size)
    described = admin.describe_configs([res])[res].result(30)
    assert described["retention.ms"].value == "86400000", described["retention.ms"]
    assert described["retention.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert described["retention.bytes"].value == "20000"
    first = produce(c.bootstrap, by_time, 500)
    assert first == list(range(500))
    sized = produce(c.bootstrap, by_size, 1000)
    assert sized == list(range(1000))
    segments_before = sum(bucket_objects(c, "segments/").values())

    # Time: everything older than 5 s goes; the log start reaches the end.
    wait_until("retention.ms to delete every record",
               lambda: watermarks(c.bootstrap, by_time, 0) == (500, 500), timeout=30)
    err = fetch_error_at(c.bootstrap, by_time, 0, 0)
    assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
    # New records are untouched and take the next offsets.
    assert produce(c.bootstrap, by_time, 10) == list(range(500, 510))
    assert watermarks(c.bootstrap, by_time, 0) == (500, 510)

    # Size: the oldest entries go while the rest still hold 20,000 bytes.
    low, high = wait_until("retention.bytes to move the log start",
                           lambda: (lambda w: w if w[0] > 0 else None)(
                               watermarks(c.bootstrap, by_size, 0)), timeout=30)
    assert high == 1000 and 0 < low < 1000
    kept = high - low
    assert kept * 108 >= 20_000 * 0.5, f"only {kept} records kept"
    assert kept * 100 <= 20_000 * 2 + 40_000, f"{kept} records kept, far above the limit"
    got = read_range(c.bootstrap, by_size, 0, low, high)
    assert got == list(range(low, high)), "the rest reads at its offsets"

    # The deleted bytes leave the bucket after the grace period.
    wait_until("GC to delete expired segments",
               lambda: sum(bucket_objects(c, "segments/").values()) < segments_before / 2,
               timeout=30)
    assert total(c, "silt_retention_partitions_trimmed_total") >= 2
    assert total(c, "silt_gc_objects_deleted_total") > 0


def test_compaction_during_load_with_kill9(make_cluster):
    """Compaction rewrites the segments three producers are writing and
    consumers are reading; one agent is killed -9 in the middle. Every
    acknowledged record is read back at its offset, byte for byte, through
    every agent; the object count falls."""
    c = make_cluster(agents=3, etcd_members=1, s3="moto", agent_env=FAST_JOBS)
    topic = new_topic(c, "compaction")
    n = int(os.environ.get("SILT_E2E_COMPACTION_RECORDS", "6000"))
    sets = record_sets(3, n, seed=900, tag="compact")
    records = [r for s in sets for r in s]
    load = cl.Load(c.bootstrap, topic, producer_specs(c, sets, RETRYING), pace=PACE_S).start()
    load.wait_acked(int(0.3 * len(records)), timeout=120)
    # Read while it compacts: a consumer through agent 0 in the middle.
    mid, mid_high = cl.consume_via(c, 0, topic, PARTITIONS)
    wait_until("a compaction pass", lambda: total(c, "silt_compaction_entries_total") > 0,
               timeout=60)
    # `silt jobs run --once` beside the agents' own job loops: it runs a job
    # only when no agent holds that job's lock, and changes nothing anyone
    # acknowledged either way.
    once = [r for _ in range(3) for r in run_jobs(c, "--once", env=FAST_JOBS)]
    assert {r["job"] for r in once} == {"retention", "compaction", "cleaner", "tables",
                                        "gc"}, once
    assert all(r["ran"] or "lock" in r.get("reason", "") for r in once), once
    c.kill9(1)
    res = load.wait(timeout=180)
    all_delivered(res, len(records))
    c.restart(1)
    raw_peak = len(bucket_objects(c, "segments/"))
    # Compaction catches up (segments older than the max lag), then GC.
    wait_until("the small segments to be compacted and deleted",
               lambda: len(bucket_objects(c, "segments/")) < raw_peak / 4, timeout=90)
    first = check_at_least_once(c, topic, records, res.acks, range(3))
    # What was read in the middle is the same bytes at the same offsets now.
    for p in range(PARTITIONS):
        before = [(m.offset, m.value) for m in mid.get(p, [])]
        now = {m.offset: m.value for m in first[0].get(p, [])}
        assert all(now.get(o) == v for o, v in before), f"partition {p} changed under a reader"
    objects = len(bucket_objects(c, "segments/")) + len(bucket_objects(c, "compacted/"))
    rt.log(f"objects: {raw_peak} raw segments at the end of the load, {objects} objects after "
           f"compaction; compaction read {total(c, 'silt_compaction_read_bytes_total'):.0f} B, "
           f"wrote {total(c, 'silt_compaction_written_bytes_total'):.0f} B")
    assert objects < raw_peak / 2


def run_jobs(c: cl.Cluster, *args: str, env: dict | None = None) -> list[dict]:
    a = c.agents[0]
    e = a.environment()
    e.update(env or {})
    out = subprocess.run(
        [c.binary, "jobs", "run", "--cluster", c.name, "--etcd", ",".join(c.etcd.endpoints),
         "--bucket", c.s3_env["SILT_BUCKET"], *args],
        env=e, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"silt jobs run failed ({out.returncode}): {out.stderr[-2000:]}"
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_orphans_and_jobs_run_once(make_cluster):
    """An upload never committed is deleted by `silt jobs run --once` once it
    is older than gc_orphan_age, not before; the agents keep running (their
    own jobs off), and what they committed stays readable."""
    c = make_cluster(agents=2, etcd_members=1, s3="moto", agent_env={"SILT_JOBS": "none"})
    topic = rt.unique_topic("orphans")
    rt.create_topic(c.bootstrap, topic, 1)
    assert produce(c.bootstrap, topic, 300) == list(range(300))
    orphan = "segments/2026/01/01/01ORPHANEDUPLOAD0000000000.silt"
    c.s3.client().put_object(Bucket="silt", Key=orphan, Body=b"never committed")
    committed = set(bucket_objects(c, "segments/")) - {orphan}
    age = {"SILT_GC_ORPHAN_AGE": "12s"}
    [r] = run_jobs(c, "--once", "--job", "gc", env=age)
    assert r["ran"] and r["orphans_deleted"] == 0, r
    assert orphan in bucket_objects(c, "segments/")
    time.sleep(13)
    # The cluster keeps writing: the horizon never passes the newest
    # accepted commit, so an idle cluster keeps its orphans until then.
    assert produce(c.bootstrap, topic, 10) == list(range(300, 310))
    reports = run_jobs(c, "--once", env=age)
    by_job = {r["job"]: r for r in reports}
    assert set(by_job) == {"retention", "compaction", "cleaner", "tables", "gc"}, reports
    assert by_job["gc"]["orphans_deleted"] == 1, reports
    left = set(bucket_objects(c, "segments/"))
    assert orphan not in left
    assert committed <= left | set(), "committed segments were deleted"
    got = rt.consume_confluent(c.bootstrap, topic, 1)[0][0]
    assert [m.offset for m in got] == list(range(310))
    # The agents still take writes (a commit sealed now is past the horizon).
    assert produce(c.bootstrap, topic, 10) == list(range(310, 320))
