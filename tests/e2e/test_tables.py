"""Topics as Parquet tables on a real cluster (etcd, moto S3, silt agents,
librdkafka clients), read back with DuckDB and pyarrow:

- producers with every codec write keys, null keys, null values, headers
  and about 1 % large values; the table holds exactly the records a Kafka
  consumer reads, each row's partition, offset, timestamp, key, value and
  headers equal to the record's, Hive-partitioned by date and hour;
- export steps that fail between their uploads and their progress record
  (object-store errors injected into `silt jobs run --once --job tables`,
  and a looping exporter killed -9), then run again, leave no row twice;
- with a value schema, JSON values fill typed columns, and one that does
  not match lands in the dead-letter file with its partition and offset.

Run: cd tests/e2e && python3 -m pytest -q test_tables.py
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import cluster as cl
import roundtrip as rt
from test_cluster import make_cluster  # noqa: F401  (a fixture)
from test_tiering import bucket_objects, total, wait_until

pytestmark = pytest.mark.cluster

RECORDS = int(os.environ.get("SILT_E2E_TABLE_RECORDS", "6000"))
PARTITIONS = 3
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

TABLE_ENV = {
    "SILT_TABLES_INTERVAL": "1s",
    "SILT_TABLE_MAX_AGE": "2s",
    "SILT_TABLE_FILE_BYTES": "256KiB",
    "SILT_OBJECT_STORE_TIMEOUT": "2s",
}


def create(admin: AdminClient, topic: str, config: dict, partitions: int = PARTITIONS) -> None:
    for f in admin.create_topics([NewTopic(topic, partitions, config=config)]).values():
        f.result(30)


def produce_mixed(bootstrap: str, topic: str, n: int, seed: int) -> int:
    """n records over every codec: keys or not, values or not, headers,
    about 1 % of 100 KB; returns how many were acknowledged."""
    rng = random.Random(seed)
    acked = []
    errors = []

    def done(err, msg):
        (errors if err else acked).append(err or msg.offset())

    per_codec = n // len(CODECS)
    for codec in CODECS:
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10,
                      "compression.type": codec, "enable.idempotence": True})
        for i in range(per_codec):
            key = None if rng.random() < 0.1 else b"key-%d" % rng.randrange(500)
            if rng.random() < 0.05:
                value = None
            elif rng.random() < 0.01:
                value = bytes(rng.randrange(256) for _ in range(64)) * 1600
            else:
                value = b"%s-%d-" % (codec.encode(), i) + b"v" * rng.randrange(300)
            headers = ([("h1", b"x%d" % i), ("h1", None), ("h\xc3\xa9", b"")]
                       if rng.random() < 0.2 else None)
            p.produce(topic, key=key, value=value, headers=headers,
                      partition=rng.randrange(PARTITIONS), on_delivery=done)
            if i % 500 == 499:
                p.flush(60)
        assert p.flush(60) == 0
    assert not errors, errors[:3]
    return len(acked)


def consume_all(bootstrap: str, topic: str) -> dict[tuple[int, int], tuple]:
    """(partition, offset) -> (timestamp, key, value, headers) as a Kafka
    consumer reads them."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tables-model",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out = {}
    try:
        hw = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
              for p in range(PARTITIONS)}
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 60
        while len(out) < sum(hw.values()):
            assert time.monotonic() < deadline, f"read {len(out)} of {sum(hw.values())}"
            for m in c.consume(500, 1.0):
                assert not m.error(), m.error()
                headers = tuple((k, v) for k, v in (m.headers() or ()))
                out[(m.partition(), m.offset())] = (m.timestamp()[1], m.key(), m.value(), headers)
        return out
    finally:
        c.close()


def download(c: cl.Cluster, prefix: str, into: Path) -> list[str]:
    """Copies every object under `prefix` into `into`, keeping the key's path."""
    s3 = c.s3.client()
    keys = sorted(bucket_objects(c, prefix))
    for k in keys:
        dest = into / k
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(s3.get_object(Bucket="silt", Key=k)["Body"].read())
    return keys


def table_rows_duckdb(root: Path, topic: str) -> list[tuple]:
    con = duckdb.connect()
    return con.execute(
        "SELECT partition, \"offset\", epoch_ms(timestamp), timestamp_type, key, value, "
        "headers, date, hour "
        f"FROM read_parquet('{root}/tables/{topic}/**/*.parquet', hive_partitioning = true) "
        "ORDER BY partition, \"offset\"").fetchall()


def check_table(root: Path, topic: str, model: dict) -> None:
    rows = table_rows_duckdb(root, topic)
    assert len(rows) == len(model), f"{len(rows)} rows for {len(model)} records"
    seen = set()
    for p, o, ts, ts_type, key, value, headers, date, hour in rows:
        assert (p, o) not in seen, f"{p}/{o} twice"
        seen.add((p, o))
        want_ts, want_key, want_value, want_headers = model[(p, o)]
        got_headers = tuple((h["key"], h["value"]) for h in headers)
        assert (ts, ts_type, key, value) == (want_ts, 0, want_key, want_value), f"{p}/{o}"
        assert got_headers == tuple((k, v) for k, v in want_headers), f"{p}/{o} headers"
        # The Hive partition is the record's UTC date and hour.
        stamp = time.gmtime(ts / 1000)
        assert (str(date), int(hour)) == (time.strftime("%Y-%m-%d", stamp), stamp.tm_hour), \
            f"{p}/{o}: in date={date}/hour={hour}"
    # pyarrow reads the same rows.
    t = ds.dataset(str(root / "tables" / topic), format="parquet", partitioning="hive").to_table()
    assert t.num_rows == len(model)
    keys = set(zip(t.column("partition").to_pylist(), t.column("offset").to_pylist()))
    assert keys == set(model)
    sample = random.Random(3).sample(sorted(model), min(200, len(model)))
    by_key = {(p, o): i for i, (p, o) in enumerate(zip(t.column("partition").to_pylist(),
                                                       t.column("offset").to_pylist()))}
    values, key_col = t.column("value"), t.column("key")
    for k in sample:
        i = by_key[k]
        assert (key_col[i].as_py(), values[i].as_py()) == model[k][1:3], k


def test_topic_as_table_read_by_duckdb_and_pyarrow(make_cluster, tmp_path):
    c = make_cluster(agents=2, etcd_members=1, s3="moto", agent_env=TABLE_ENV)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    topic = rt.unique_topic("table")
    create(admin, topic, {"silt.table.enable": "true"})
    acked = produce_mixed(c.bootstrap, topic, RECORDS, seed=11)
    model = consume_all(c.bootstrap, topic)
    assert len(model) == acked
    wait_until("every record to be exported",
               lambda: total(c, "silt_table_rows_exported_total") >= acked, timeout=120)
    keys = download(c, f"tables/{topic}/", tmp_path)
    assert not [k for k in keys if "_progress" in k], "markers of counted steps are gone"
    assert len([k for k in keys if k.endswith(".parquet")]) > PARTITIONS, "several files"
    check_table(tmp_path, topic, model)
    rt.log(f"table: {acked} records in {len(keys)} files, read by DuckDB and pyarrow")
    # New records go to new files; nothing is written twice.
    more = produce_mixed(c.bootstrap, topic, 500, seed=12)
    model = consume_all(c.bootstrap, topic)
    assert len(model) == acked + more
    wait_until("the new records to be exported",
               lambda: total(c, "silt_table_rows_exported_total") >= acked + more, timeout=60)
    root = tmp_path / "again"
    download(c, f"tables/{topic}/", root)
    check_table(root, topic, model)


def jobs_run(c: cl.Cluster, *args: str, env: dict | None = None,
             background: bool = False):
    a = c.agents[0]
    e = a.environment()
    e.update(TABLE_ENV)
    e.update(env or {})
    cmd = [c.binary, "jobs", "run", "--cluster", c.name, "--etcd", ",".join(c.etcd.endpoints),
           "--bucket", c.s3_env["SILT_BUCKET"], *args]
    if background:
        return subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)


def test_failed_export_steps_leave_no_duplicate_rows(make_cluster, tmp_path):
    # The agents do not export; `silt jobs run` processes do, with faults.
    env = {**TABLE_ENV, "SILT_JOBS": "retention,compaction,cleaner,gc"}
    c = make_cluster(agents=1, etcd_members=1, s3="moto", agent_env=env)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    topic = rt.unique_topic("table-crash")
    create(admin, topic, {"silt.table.enable": "true"})
    acked = produce_mixed(c.bootstrap, topic, 3000, seed=21)
    model = consume_all(c.bootstrap, topic)
    time.sleep(2.5)  # past SILT_TABLE_MAX_AGE: every partition is due
    # Steps whose uploads fail part of the way: markers and some files are
    # written, the progress record is not.
    interrupted = 0
    for seed in range(1, 40):
        out = jobs_run(c, "--once", "--job", "tables", env={
            "SILT_TEST_FAULTS": f"put_error_rate=0.4,seed={seed}",
            "SILT_TABLE_FILE_BYTES": "64KiB"})
        reports = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
        failed = any(r.get("error") or r.get("partitions_failed") for r in reports)
        if failed or out.returncode != 0:
            if any("_progress" in k for k in bucket_objects(c, f"tables/{topic}/")):
                interrupted += 1
        if interrupted >= 3:
            break
    assert interrupted >= 3, "no export step was interrupted between its uploads and its record"
    # A looping exporter killed -9 while it works, twice.
    for _ in range(2):
        proc = jobs_run(c, env={"SILT_TEST_FAULTS": "latency=150ms,seed=5",
                                "SILT_TABLE_FILE_BYTES": "32KiB"}, background=True)
        time.sleep(random.Random(proc.pid).uniform(1.0, 3.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    # Then clean runs (a larger file size: redone steps keep their range).
    deadline = time.monotonic() + 120
    while True:
        out = jobs_run(c, "--once", "--job", "tables")
        assert out.returncode == 0, out.stderr[-2000:]
        keys = download(c, f"tables/{topic}/", tmp_path / "t")
        rows = table_rows_duckdb(tmp_path / "t", topic)
        if len(rows) >= len(model) and not [k for k in keys if "_progress" in k]:
            break
        assert time.monotonic() < deadline, f"{len(rows)} of {len(model)} rows after 120 s"
        for k in keys:
            (tmp_path / "t" / k).unlink()
    check_table(tmp_path / "t", topic, model)
    rt.log(f"table after {interrupted} interrupted steps and 2 kills: {acked} records, "
           f"{len(rows)} rows, no duplicates")


def test_json_values_decode_and_bad_ones_go_to_the_dead_letter_file(make_cluster, tmp_path):
    c = make_cluster(agents=1, etcd_members=1, s3="moto", agent_env=TABLE_ENV)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    topic = rt.unique_topic("table-json")
    schema = {"fields": [{"name": "user", "type": "string"}, {"name": "amount", "type": "double"},
                         {"name": "n", "type": "long"}, {"name": "ok", "type": "boolean"}]}
    create(admin, topic, {"silt.table.enable": "true",
                          "silt.table.value.schema": json.dumps(schema)}, partitions=1)
    p = Producer({"bootstrap.servers": c.bootstrap})
    values = [json.dumps({"user": f"u{i}", "amount": i * 1.5, "n": i, "ok": i % 2 == 0}).encode()
              for i in range(50)]
    values[17] = b'{"user": "bad", "amount": "lots"}'
    for v in values:
        p.produce(topic, key=b"k", value=v)
    assert p.flush(30) == 0
    wait_until("the records to be exported",
               lambda: total(c, "silt_table_rows_exported_total") >= 50, timeout=60)
    download(c, f"tables/{topic}/", tmp_path)
    dead = download(c, f"dead-letter/{topic}/", tmp_path)
    con = duckdb.connect()
    rows = con.execute(
        "SELECT \"offset\", \"user\", amount, n, ok, value FROM read_parquet("
        f"'{tmp_path}/tables/{topic}/**/*.parquet', hive_partitioning = true) "
        "ORDER BY \"offset\"").fetchall()
    assert len(rows) == 50
    assert rows[3][:5] == (3, "u3", 4.5, 3, False)
    assert rows[17][1:5] == (None, None, None, None) and rows[17][5] == values[17]
    assert len(dead) == 1, dead
    bad = con.execute(f"SELECT partition, \"offset\", value, error FROM read_parquet("
                      f"'{tmp_path}/{dead[0]}')").fetchall()
    assert len(bad) == 1 and bad[0][:3] == (0, 17, values[17]), bad
    assert "amount" in bad[0][3], bad
    assert total(c, "silt_table_dead_letters_total") == 1
