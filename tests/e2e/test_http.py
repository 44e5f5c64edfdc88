"""The HTTP API (docs/http-api.md) end to end: a real `silt dev` with `--rest`
on a port chosen at run time, driven over HTTP (httpapi.py, standard
library only) and with real Kafka clients (confluent-kafka, kafka-python) on
the same topics.

1. test_http_produce_kafka_consume: records produced over HTTP (every key
   and value type, null key and value, binary headers, RFC 3339 and
   millisecond timestamps, explicit partitions, several records per body)
   are read byte for byte by both Kafka clients at the offsets HTTP gave.
2. test_kafka_produce_http_fetch / test_fetch_long_poll: records produced
   by compressing Kafka producers are fetched byte for byte over HTTP
   (format binary and string, paging by next_offset, max_bytes); a fetch at
   the high watermark waits for the next record, or for max_wait_ms.
3. test_mixed_producers_dense_offsets: HTTP and Kafka producers writing one
   partition at once get dense offsets, every acknowledged record once.
4. test_keyed_partitioning_matches_kafka: a keyed record without
   partition_id lands where Kafka's default partitioner (murmur2) puts it;
   unkeyed records go round-robin.
5. test_topic_admin: clusters, topic create/get/list/partitions/delete, as
   Kafka Metadata sees them.
6. test_group_offsets: offsets committed over HTTP are where Kafka
   consumers of the group resume; offsets Kafka consumers commit are read
   over HTTP; a commit while the group has Kafka members is refused (409).
7. test_bad_input: every error of the table in docs/http-api.md, with its
   status and error_code; a request with one bad record writes nothing.
8. test_two_agents: two `silt agent`s (etcd, moto S3) with `--rest` each:
   produce through one, fetch through the other over HTTP and Kafka.

The broker of tests 1-7 is shared (module fixture), with
SILT_REST_MAX_REQUEST_BYTES=65536 (test 7's oversized body) and
--default-partitions 2 (test 5's create without partitions_count).

Run: cd tests/e2e && SILT_BIN=/var/tmp/silt-target/debug/silt python3 -m pytest -q test_http.py
"""

from __future__ import annotations

import base64
import concurrent.futures
import signal
import threading
import time
import uuid
from collections import Counter
from typing import NamedTuple

import pytest

import cluster as cl
import httpapi as ha
import roundtrip as rt
import stack
from conftest import SiltBroker
from httpapi import binary, header, json_data, record, string

HOST = stack.HOST
REST_MAX_REQUEST_BYTES = 65536
DEFAULT_PARTITIONS = 2
# A fixed instant (2026-11-30T12:00:00Z) for explicit timestamps.
T0_MS = 1796040000000
READ_TIMEOUT_S = 20.0


# --------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------


class RestBroker(SiltBroker):
    """`silt dev` with the HTTP API on its own port; ready when GET
    /v3/clusters answers 200."""

    name = "silt dev --rest"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.rest_port = self.port
        while self.rest_port == self.port:
            self.rest_port = stack.free_ports(1)[0]

    def command(self) -> list[str]:
        return [*super().command(), "--rest", f"{HOST}:{self.rest_port}"]

    def ready(self) -> bool:
        if not super().ready() or not stack.listening(self.rest_port):
            return False
        r = stack.http(f"http://{HOST}:{self.rest_port}/v3/clusters", timeout=2.0)
        return bool(r and r[0] == 200)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    try:
        binary_path = cl.silt_bin()
    except RuntimeError as e:
        pytest.fail(str(e))
    b = RestBroker(binary_path, tmp_path_factory.mktemp("silt-http"),
                   ["--default-partitions", str(DEFAULT_PARTITIONS)],
                   {"SILT_REST_MAX_REQUEST_BYTES": str(REST_MAX_REQUEST_BYTES)})
    try:
        b.start()
        yield b
        rc = b.crashed()
        assert rc is None, f"silt exited on its own with code {rc}\n{b.log_tail()}"
    finally:
        b.stop()


@pytest.fixture
def api(broker, request) -> ha.Client:
    request.node._silt_broker = broker  # logs on failure (conftest.py)
    rc = broker.crashed()
    assert rc is None, f"silt exited on its own with code {rc}\n{broker.log_tail()}"
    return ha.Client(HOST, broker.rest_port)


def new_topic(api: ha.Client, bootstrap: str | None, prefix: str, partitions: int,
              configs: dict[str, str] | None = None) -> str:
    """A topic created over HTTP (201); with `bootstrap`, also waits until
    Kafka Metadata lists it."""
    topic = rt.unique_topic(prefix)
    body = api.create_topic_ok(topic, partitions, configs=configs)
    assert (body["topic_name"], body["partitions_count"]) == (topic, partitions), body
    if bootstrap:
        rt.wait_for_topic(bootstrap, topic, partitions)
    return topic


# --------------------------------------------------------------------------
# Records as Kafka clients and HTTP fetches see them
# --------------------------------------------------------------------------


class Rec(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list  # [(name, bytes | None)]
    timestamp: int  # ms, CreateTime


def read_confluent(bootstrap: str, topic: str, partition: int, start: int, count: int,
                   client_id: str = "silt-e2e-http") -> tuple[list[Rec], int]:
    """`count` records from `start` (confluent-kafka, no group), and the
    partition's high watermark."""
    from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "error",
                  "client.id": client_id})
    out: list[Rec] = []
    try:
        c.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(out) < count:
            assert time.monotonic() < deadline, (
                f"confluent-kafka read {len(out)} of {count} records of {topic}/{partition} "
                f"from {start} in {READ_TIMEOUT_S}s: {out}")
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, f"confluent-kafka consumer error: {m.error()}"
            ts_type, ts = m.timestamp()
            assert ts_type == TIMESTAMP_CREATE_TIME, f"offset {m.offset()}: timestamp type {ts_type}"
            out.append(Rec(m.offset(), m.key(), m.value(), list(m.headers() or []), ts))
        _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return out, high
    finally:
        c.close()


def read_kafka_python(bootstrap: str, topic: str, partition: int, start: int,
                      count: int) -> tuple[list[Rec], int]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="none", request_timeout_ms=30_000)
    out: list[Rec] = []
    tp = TopicPartition(topic, partition)
    try:
        c.assign([tp])
        c.seek(tp, start)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(out) < count:
            assert time.monotonic() < deadline, (
                f"kafka-python read {len(out)} of {count} records of {topic}/{partition} "
                f"from {start} in {READ_TIMEOUT_S}s: {out}")
            for m in c.poll(timeout_ms=500).get(tp, []):
                assert m.timestamp_type == 0, f"offset {m.offset}: timestamp type {m.timestamp_type}"
                out.append(Rec(m.offset, m.key, m.value, list(m.headers or []), m.timestamp))
        high = c.end_offsets([tp])[tp]
        return out[:count], high  # anything beyond: the caller checks the high watermark
    finally:
        c.close(autocommit=False)


def page_records(page: dict, fmt: str = "binary") -> list[Rec]:
    """The records of a fetch answer (headers only in format=binary: see
    test_kafka_produce_http_fetch)."""
    out = []
    for r in page["records"]:
        hs = ha.decode_headers(r.get("headers", [])) if fmt == "binary" else []
        out.append(Rec(r["offset"], ha.decode(r.get("key"), fmt), ha.decode(r.get("value"), fmt),
                       hs, r["timestamp"]))
    return out


def check_page(page: dict, cid: str, topic: str, partition: int, offset: int) -> None:
    """The envelope of a fetch answer from `offset`: records from `offset`
    on, densely, and next_offset just after the last."""
    want = {"cluster_id": cid, "topic_name": topic, "partition_id": partition}
    assert {k: page.get(k) for k in want} == want, page
    offs = [r["offset"] for r in page["records"]]
    assert offs == list(range(offset, offset + len(offs))), (
        f"fetch from {offset} answered offsets {offs}")
    assert page["next_offset"] == offset + len(offs), (
        f"fetch from {offset} with {len(offs)} records: next_offset {page['next_offset']}")
    assert page["log_start_offset"] <= offset <= page["high_watermark"], page


def walk(api: ha.Client, topic: str, partition: int, start: int = 0,
         **kw) -> tuple[list[dict], int]:
    """Fetch from `start`, following next_offset, until the high watermark;
    (pages, high watermark)."""
    cid = api.cluster_id()
    pages, offset = [], start
    while True:
        page = api.fetch_ok(topic, partition, offset=offset, **kw)
        check_page(page, cid, topic, partition, offset)
        pages.append(page)
        if page["next_offset"] == page["high_watermark"]:
            return pages, page["high_watermark"]
        assert page["records"], (
            f"fetch at {offset} below the high watermark {page['high_watermark']} "
            f"answered no records: {page}")
        assert len(pages) < 1000, "fetch walk does not end"
        offset = page["next_offset"]


def expected_recs(sent: list[dict], reports: list[dict]) -> list[Rec]:
    """What Kafka should read for records sent over HTTP, at the offsets
    (and timestamps) their delivery reports gave."""
    return [Rec(rep["offset"], ha.stored(r.get("key")), ha.stored(r.get("value")),
                [(h["name"], None if h["value"] is None else base64.b64decode(h["value"]))
                 for h in r.get("headers", [])],
                ha.rfc3339_ms(rep["timestamp"]))
            for r, rep in zip(sent, reports)]


def check_size_report(what: str, got, sent: dict | None) -> None:
    """A delivery report's key or value: {"type", "size"} of what was sent;
    a null key or value may be reported as null or with size 0."""
    b = ha.stored(sent)
    if b is None:
        ok = got is None or (isinstance(got, dict) and got.get("size", 0) == 0)
    else:
        ok = got == {"type": sent["type"], "size": len(b)}
    assert ok, f"delivery report {what}: {got!r}; sent {sent!r} ({b!r})"


def check_reports(reports: list[dict], sent: list[dict], cid: str, topic: str,
                  partition: int, first_offset: int, timestamps: list) -> None:
    """One report per record, in order, at dense offsets from `first_offset`.
    timestamps[i]: the ms the record was sent with, or (lo, hi) for the time
    of receipt."""
    assert len(reports) == len(sent)
    for i, (rep, r, ts) in enumerate(zip(reports, sent, timestamps)):
        head = {k: rep.get(k) for k in ("error_code", "cluster_id", "topic_name", "partition_id",
                                        "offset")}
        assert head == {"error_code": 200, "cluster_id": cid, "topic_name": topic,
                        "partition_id": partition, "offset": first_offset + i}, (i, rep)
        got_ts = ha.rfc3339_ms(rep.get("timestamp"))
        lo, hi = ts if isinstance(ts, tuple) else (ts, ts)
        assert lo <= got_ts <= hi, f"record {i}: report timestamp {rep['timestamp']} ({got_ts}) " \
                                   f"not in [{lo}, {hi}]"
        check_size_report(f"{i} key", rep.get("key"), r.get("key"))
        check_size_report(f"{i} value", rep.get("value"), r.get("value"))


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------
# 1. HTTP produce -> Kafka consume
# --------------------------------------------------------------------------


BIN_VALUE = bytes(range(255, -1, -1)) + b"\xc3\x28\xff\xfe"  # not UTF-8


def test_http_produce_kafka_consume(api, broker):
    cid = api.cluster_id()
    topic = new_topic(api, broker.bootstrap, "http-produce", 3)

    # Partition 0: one request, records separated by newlines.
    p0 = [
        record(key=string("user-1"), value=json_data({"clicks": 3, "page": "home"}),
               headers=[header("trace", b"abc"), header("bin", bytes(range(256))),
                        header("trace", b"second")],
               timestamp="2026-11-30T12:00:00.000Z", partition=0),
        record(key=binary(b"\x00\xff\xfe\x80k"), value=binary(BIN_VALUE),
               timestamp=T0_MS + 123, partition=0),
        # no key; a header with a null value; an RFC 3339 offset other than Z
        record(value=string("héllo wörld ✓ 日本"), headers=[header("null-value", None)],
               timestamp="2026-11-30T14:00:00.250+02:00", partition=0),
        # a JSON key; no value (null value)
        record(key=json_data([1, "two", None, True]), timestamp=T0_MS + 999, partition=0),
        # "data": null key and value; no timestamp (the time of receipt)
        record(key=string(None), value=binary(None), partition=0),
        # empty (not null) key and value
        record(key=string(""), value=string(""), timestamp="2026-11-30T12:00:01Z", partition=0),
        record(key=json_data(42), value=json_data("quoted"), headers=[],
               timestamp=T0_MS + 777, partition=0),
    ]
    ts0 = [T0_MS, T0_MS + 123, T0_MS + 250, T0_MS + 999, None, T0_MS + 1000, T0_MS + 777]
    before = now_ms()
    rep0 = api.produce_ok(topic, p0, sep="\n")
    after = now_ms()
    ts0[4] = (before - 50, after + 50)
    check_reports(rep0, p0, cid, topic, 0, 0, ts0)

    # Partition 2: concatenated objects with nothing between them.
    p2 = [record(key=string("a"), value=binary(b"\x01\x02"), timestamp=T0_MS + 1, partition=2,
                 headers=[header("h", b"\x00")]),
          record(key=string("b"), value=string("second"), timestamp=T0_MS + 2, partition=2)]
    rep2 = api.produce_ok(topic, p2, sep="")
    check_reports(rep2, p2, cid, topic, 2, 0, [T0_MS + 1, T0_MS + 2])

    # Partition 1: a single record, then two more in a second request.
    p1a = [record(key=string("k1"), value=string("v1"), timestamp=T0_MS + 10, partition=1)]
    p1b = [record(key=string("k2"), value=json_data({"n": 2}), timestamp=T0_MS + 11, partition=1),
           record(key=string("k3"), value=binary(b"\xff"), timestamp=T0_MS + 12, partition=1)]
    rep1a = api.produce_ok(topic, p1a)
    rep1b = api.produce_ok(topic, p1b)
    check_reports(rep1a, p1a, cid, topic, 1, 0, [T0_MS + 10])
    check_reports(rep1b, p1b, cid, topic, 1, 1, [T0_MS + 11, T0_MS + 12])

    want = {0: expected_recs(p0, rep0), 1: expected_recs(p1a + p1b, rep1a + rep1b),
            2: expected_recs(p2, rep2)}
    # Spot checks of the expected bytes themselves (how types are stored).
    assert want[0][0].value == b'{"clicks":3,"page":"home"}'
    assert want[0][2].key is None and want[0][2].value == "héllo wörld ✓ 日本".encode()
    assert want[0][3].key == b'[1,"two",null,true]' and want[0][3].value is None
    assert (want[0][4].key, want[0][4].value) == (None, None)
    assert (want[0][5].key, want[0][5].value) == (b"", b"")
    assert (want[0][6].key, want[0][6].value) == (b"42", b'"quoted"')

    for p, recs in want.items():
        got, high = read_confluent(broker.bootstrap, topic, p, 0, len(recs))
        assert got == recs, f"confluent-kafka, partition {p}"
        assert high == len(recs), f"partition {p}: high watermark {high}, want {len(recs)}"
        got, high = read_kafka_python(broker.bootstrap, topic, p, 0, len(recs))
        assert got == recs, f"kafka-python, partition {p}"
        assert high == len(recs), f"partition {p}: high watermark {high}, want {len(recs)}"
        pages, high = walk(api, topic, p)
        assert [r for pg in pages for r in page_records(pg)] == recs, f"HTTP fetch, partition {p}"
        assert high == len(recs)


# --------------------------------------------------------------------------
# 2. Kafka produce -> HTTP fetch
# --------------------------------------------------------------------------


def produce_confluent(bootstrap: str, topic: str, recs: list[tuple], codec: str,
                      partition: int = 0, extra: dict | None = None) -> list[int]:
    """Produce (key, value, headers, timestamp) records with one
    confluent-kafka producer; their offsets, in order."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": codec,
                  "linger.ms": 50, "enable.idempotence": False, **(extra or {})})
    reports: dict[int, object] = {}
    for i, (k, v, hs, ts) in enumerate(recs):
        kw = {"timestamp": ts} if ts is not None else {}
        p.produce(topic, value=v, key=k, headers=hs, partition=partition,
                  on_delivery=lambda err, msg, i=i: reports.__setitem__(
                      i, err if err is not None else msg.offset()), **kw)
    left = p.flush(30)
    assert left == 0, f"{left} records undelivered after 30 s"
    errors = {i: r for i, r in reports.items() if not isinstance(r, int)}
    assert not errors and len(reports) == len(recs), f"delivery errors: {errors}; {reports}"
    return [reports[i] for i in range(len(recs))]


def produce_kafka_python(bootstrap: str, topic: str, recs: list[tuple], codec: str | None,
                         partition: int = 0) -> list[int]:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec,
                      linger_ms=50, enable_idempotence=False, request_timeout_ms=30_000)
    try:
        futs = [p.send(topic, key=k, value=v, headers=hs, partition=partition, timestamp_ms=ts)
                for k, v, hs, ts in recs]
        p.flush(30)
        return [f.get(timeout=30).offset for f in futs]
    finally:
        p.close(timeout=10)


def test_kafka_produce_http_fetch(api, broker):
    cid = api.cluster_id()
    topic = new_topic(api, broker.bootstrap, "http-fetch", 1)
    hs = [("bin", b"\x00\x01\xff"), ("text", b"plain"), ("bin", b"")]
    lz4 = [(b"lz4-0", b"text value 0", hs, T0_MS),
           (b"\xff\xfe", bytes([0xff, 0xfe, 0x00, 0x80]), [], T0_MS + 1),
           (None, b"no key", [("null", None)], T0_MS + 2),
           (b"lz4-3", None, hs, T0_MS + 3)]
    zstd = [(b"zstd-%d" % i, (b"zstd %d " % i) * 20 + bytes([0x80 + i]) * (i % 2), hs[:1], T0_MS + 10 + i)
            for i in range(4)]
    gzip = [(b"gzip-%d" % i, "gzip ✓ %d" % i, [("h", b"\xc0\xaf")], T0_MS + 20 + i)
            for i in range(4)]
    gzip = [(k, v.encode(), h, t) for k, v, h, t in gzip]

    offsets = produce_confluent(broker.bootstrap, topic, lz4, "lz4")
    offsets += produce_confluent(broker.bootstrap, topic, zstd, "zstd")
    offsets += produce_kafka_python(broker.bootstrap, topic, gzip, "gzip")
    assert offsets == list(range(12)), f"Kafka delivery offsets {offsets}"
    want = [Rec(o, k, v, list(h), t) for o, (k, v, h, t) in zip(offsets, lz4 + zstd + gzip)]

    # format=binary (and the default, which is binary), in one fetch.
    for fmt in ("binary", None):
        page = api.fetch_ok(topic, 0, offset=0, format=fmt)
        check_page(page, cid, topic, 0, 0)
        assert (page["high_watermark"], page["log_start_offset"]) == (12, 0), page
        assert page_records(page, "binary") == want, f"format={fmt}"

    # format=string: STRING where the bytes are UTF-8, else BINARY (checked
    # in ha.decode). Header values are compared in format=binary only: the
    # spec does not say how a header value looks in format=string.
    page = api.fetch_ok(topic, 0, offset=0, format="string")
    check_page(page, cid, topic, 0, 0)
    got = page_records(page, "string")
    assert [(r.offset, r.key, r.value, r.timestamp) for r in got] == \
           [(r.offset, r.key, r.value, r.timestamp) for r in want]
    assert [[h["name"] for h in r.get("headers", [])] for r in page["records"]] == \
           [[n for n, _ in r.headers] for r in want]
    kinds = [(r.get("value") or {}).get("type") for r in page["records"]]
    assert "STRING" in kinds and "BINARY" in kinds, kinds  # both forms were exercised

    # Paging by next_offset with max_bytes=1: one record per fetch (the
    # first is always returned), until the high watermark; the first page
    # cannot hold everything.
    pages, high = walk(api, topic, 0, max_bytes=1)
    assert high == 12 and [r for pg in pages for r in page_records(pg)] == want
    assert len(pages) >= 3 and 1 <= len(pages[0]["records"]) < 12, \
        [len(pg["records"]) for pg in pages]

    # Records from `offset` on, also from the middle of a compressed batch.
    for start in (2, 5, 11):
        page = api.fetch_ok(topic, 0, offset=start)
        check_page(page, cid, topic, 0, start)
        assert page_records(page) == want[start:], f"fetch from {start}"

    # At the high watermark without max_wait_ms: at once, nothing.
    t = time.monotonic()
    page = api.fetch_ok(topic, 0, offset=12)
    assert time.monotonic() - t < 1.0
    check_page(page, cid, topic, 0, 12)
    assert (page["records"], page["high_watermark"]) == ([], 12), page


def test_fetch_long_poll(api, broker):
    cid = api.cluster_id()
    topic = new_topic(api, broker.bootstrap, "http-poll", 1)
    assert produce_confluent(broker.bootstrap, topic, [(b"k", b"first", [], T0_MS)], "none") == [0]

    # A record produced ~0.5 s into a 3 s wait ends the wait.
    result: dict = {}

    def poll():
        t = time.monotonic()
        try:
            result["resp"] = api.fetch(topic, 0, offset=1, max_wait_ms=3000, timeout=15)
        finally:
            result["elapsed"] = time.monotonic() - t

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    time.sleep(0.5)
    assert th.is_alive(), f"the long poll returned before anything was produced: {result}"
    assert produce_confluent(broker.bootstrap, topic,
                             [(b"k", b"second", [("h", b"x")], T0_MS + 5)], "none") == [1]
    th.join(15)
    assert not th.is_alive(), "the long poll did not return within 15 s"
    r = result["resp"]
    assert r.status == 200, str(r)
    page = r.json()
    check_page(page, cid, topic, 0, 1)
    assert page_records(page) == [Rec(1, b"k", b"second", [("h", b"x")], T0_MS + 5)], page
    assert 0.45 <= result["elapsed"] < 2.9, (
        f"the long poll returned after {result['elapsed']:.2f}s: not when the record arrived")

    # Nothing produced: empty records after about max_wait_ms.
    t = time.monotonic()
    page = api.fetch_ok(topic, 0, offset=2, max_wait_ms=300)
    elapsed = time.monotonic() - t
    check_page(page, cid, topic, 0, 2)
    assert (page["records"], page["high_watermark"]) == ([], 2), page
    assert 0.27 <= elapsed < 1.5, f"a 300 ms long poll with nothing produced took {elapsed:.2f}s"


# --------------------------------------------------------------------------
# 3. Mixed producers, one partition
# --------------------------------------------------------------------------


def test_mixed_producers_dense_offsets(api, broker):
    topic = new_topic(api, broker.bootstrap, "http-mixed", 1)
    acked: dict[bytes, int] = {}  # value -> offset
    http_requests: list[list[int]] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(3)

    def ack(value: bytes, offset: int) -> None:
        with lock:
            if value in acked:
                errors.append(f"{value!r} acknowledged twice: {acked[value]} and {offset}")
            acked[value] = offset

    def via_http():
        start.wait(10)
        for i in range(8):
            vals = [b"http-%d-%d" % (i, j) for j in range(3)]
            reps = api.produce_ok(topic, [record(value=binary(v), partition=0) for v in vals])
            assert all(r["partition_id"] == 0 for r in reps), reps
            offs = [r["offset"] for r in reps]
            with lock:
                http_requests.append(offs)
            for v, o in zip(vals, offs):
                ack(v, o)

    def via_confluent():
        start.wait(10)
        vals = [b"confluent-%d" % i for i in range(20)]
        offs = produce_confluent(broker.bootstrap, topic, [(None, v, [], None) for v in vals],
                                 "lz4", extra={"linger.ms": 2, "batch.num.messages": 4})
        for v, o in zip(vals, offs):
            ack(v, o)

    def via_kafka_python():
        start.wait(10)
        vals = [b"kafka-python-%d" % i for i in range(15)]
        offs = produce_kafka_python(broker.bootstrap, topic, [(None, v, None, None) for v in vals],
                                    None)
        for v, o in zip(vals, offs):
            ack(v, o)

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # reported by the main thread
                with lock:
                    errors.append(f"{fn.__name__}: {e!r}")
        return run

    threads = [threading.Thread(target=guard(f), daemon=True)
               for f in (via_http, via_confluent, via_kafka_python)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "producers still running after 60 s"
    assert not errors, errors

    n = 8 * 3 + 20 + 15
    assert len(acked) == n, f"{len(acked)} of {n} records acknowledged"
    assert sorted(acked.values()) == list(range(n)), (
        f"acknowledged offsets are not 0..{n - 1} once each: {sorted(acked.values())}")
    # The records of one HTTP request are committed together, at
    # consecutive offsets.
    for offs in http_requests:
        assert offs == list(range(offs[0], offs[0] + 3)), f"one HTTP request got offsets {offs}"

    pages, high = walk(api, topic, 0)
    assert high == n
    by_offset = {r.offset: r.value for pg in pages for r in page_records(pg)}
    assert by_offset == {o: v for v, o in acked.items()}, "fetched records differ from the acks"
    got, high = read_confluent(broker.bootstrap, topic, 0, 0, n)
    assert high == n and {r.offset: r.value for r in got} == by_offset


# --------------------------------------------------------------------------
# 4. Keyed records land where Kafka's default partitioner puts them
# --------------------------------------------------------------------------


def test_keyed_partitioning_matches_kafka(api, broker):
    partitions = 5
    topic = new_topic(api, broker.bootstrap, "http-keys", partitions)
    keys = ([string(f"user-{i}") for i in range(16)]
            + [binary(bytes([i, 0xff - i, 7])) for i in range(6)]
            + [json_data({"a": 1}), string("ünïcode ✓")])
    raw = [ha.stored(k) for k in keys]
    assert len(set(raw)) == len(raw)

    reps = api.produce_ok(topic, [record(key=k, value=string(f"v{i}")) for i, k in enumerate(keys)])
    http_part = {b: rep["partition_id"] for b, rep in zip(raw, reps)}
    # Again, in reverse order, and one key alone: the same partitions.
    reps = api.produce_ok(topic, [record(key=k, value=string("again")) for k in reversed(keys)])
    assert {b: rep["partition_id"] for b, rep in zip(reversed(raw), reps)} == http_part
    (rep,) = api.produce_ok(topic, [record(key=keys[-1], value=string("alone"))])
    assert rep["partition_id"] == http_part[raw[-1]], rep

    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random",
                  "acks": "all", "linger.ms": 5})
    conf_part: dict[bytes, object] = {}
    for b in raw:
        p.produce(topic, key=b, value=b"confluent",
                  on_delivery=lambda err, msg, b=b: conf_part.__setitem__(
                      b, err if err is not None else msg.partition()))
    assert p.flush(30) == 0
    kp_part = dict(zip(raw, produce_kafka_python_keyed(broker.bootstrap, topic, raw)))

    assert http_part == conf_part, "HTTP vs confluent-kafka (murmur2_random)"
    assert http_part == kp_part, "HTTP vs kafka-python (default partitioner)"
    assert len(set(http_part.values())) >= 3, f"the keys fall in too few partitions: {http_part}"

    # Unkeyed records, one per request (10 requests at once): round-robin
    # over every partition.
    with concurrent.futures.ThreadPoolExecutor(2 * partitions) as pool:
        reps = list(pool.map(lambda i: api.produce_ok(topic, [record(value=string(f"rr{i}"))])[0],
                             range(2 * partitions)))
    counts = Counter(r["partition_id"] for r in reps)
    assert counts == {p: 2 for p in range(partitions)}, (
        f"10 unkeyed records over {partitions} partitions: {dict(counts)}")


def produce_kafka_python_keyed(bootstrap: str, topic: str, keys: list[bytes]) -> list[int]:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futs = [p.send(topic, key=k, value=b"kafka-python") for k in keys]
        p.flush(30)
        return [f.get(timeout=30).partition for f in futs]
    finally:
        p.close(timeout=10)


# --------------------------------------------------------------------------
# 5. Topic administration
# --------------------------------------------------------------------------


def kafka_topics(bootstrap: str) -> dict[str, int]:
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def test_topic_admin(api, broker):
    from confluent_kafka.admin import AdminClient

    r = api.get("/v3/clusters")
    assert r.status == 200 and r.content_type.startswith("application/json"), str(r)
    clusters = r.json()["data"]
    assert [c["cluster_id"] for c in clusters] == ["silt-dev"], clusters
    cid = clusters[0]["cluster_id"]
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert md.cluster_id == cid, f"Kafka Metadata cluster id {md.cluster_id!r}, HTTP {cid!r}"
    r = api.get(f"/v3/clusters/{cid}")
    assert r.status == 200 and r.json()["cluster_id"] == cid, str(r)

    topic = rt.unique_topic("http-admin")
    r = api.create_topic(topic, 3, replication_factor=3)
    assert r.status == 201, str(r)
    t = r.json()
    want = {"topic_name": topic, "partitions_count": 3, "replication_factor": 3,
            "is_internal": False}
    assert {k: t.get(k) for k in want} == want, t

    r = api.create_topic(topic, 3)
    assert (r.status, r.json().get("error_code")) == (400, 40002), str(r)
    r = api.create_topic(topic, 5)  # with another partition count, too
    assert (r.status, r.json().get("error_code")) == (400, 40002), str(r)

    r = api.get(api.topic_path(topic))
    assert r.status == 200, str(r)
    assert {k: r.json().get(k) for k in want} == want, str(r)

    r = api.get(api.topic_path())
    assert r.status == 200, str(r)
    listed = {x["topic_name"]: x for x in r.json()["data"]}
    assert topic in listed and listed[topic]["partitions_count"] == 3, sorted(listed)

    r = api.get(api.partition_path(topic))
    assert r.status == 200, str(r)
    parts = r.json()["data"]
    assert sorted(p["partition_id"] for p in parts) == [0, 1, 2], parts
    assert all(p["topic_name"] == topic for p in parts), parts
    r = api.get(api.partition_path(topic, 1))
    assert r.status == 200, str(r)
    assert (r.json()["partition_id"], r.json()["topic_name"]) == (1, topic), str(r)

    assert kafka_topics(broker.bootstrap).get(topic) == 3, "Kafka Metadata after the create"

    # replication_factor omitted or -1; partitions_count omitted: the default.
    for rf in (None, -1):
        other = rt.unique_topic("http-admin-rf")
        body = api.create_topic_ok(other, None, replication_factor=rf)
        assert (body["partitions_count"], body["replication_factor"]) == (DEFAULT_PARTITIONS, 3), \
            (rf, body)
        r = api.get(api.partition_path(other))
        assert sorted(p["partition_id"] for p in r.json()["data"]) == \
            list(range(DEFAULT_PARTITIONS)), str(r)

    r = api.delete(api.topic_path(topic))
    assert (r.status, r.body) == (204, b""), str(r)
    r = api.get(api.topic_path(topic))
    assert (r.status, r.json().get("error_code")) == (404, 40401), str(r)
    r = api.get(api.partition_path(topic))
    assert (r.status, r.json().get("error_code")) == (404, 40401), str(r)
    r = api.delete(api.topic_path(topic))
    assert (r.status, r.json().get("error_code")) == (404, 40401), str(r)
    r = api.get(api.topic_path())
    assert topic not in {x["topic_name"] for x in r.json()["data"]}, str(r)
    deadline = time.monotonic() + 10
    while topic in kafka_topics(broker.bootstrap):
        assert time.monotonic() < deadline, "Kafka Metadata still lists the topic 10 s after DELETE"
        time.sleep(0.2)


# --------------------------------------------------------------------------
# 6. Consumer-group offsets
# --------------------------------------------------------------------------


def offsets_of(r: ha.Response) -> dict[tuple[str, int], tuple[int, str | None]]:
    """(topic, partition) -> (offset, metadata or None for none/empty) of an
    offsets answer."""
    body = r.json()
    entries = body["data"] if "data" in body else body["offsets"]
    out = {}
    for e in entries:
        key = (e["topic_name"], e["partition_id"])
        assert key not in out, f"{key} listed twice: {r}"
        out[key] = (e["offset"], e.get("metadata") or None)
    return out


def test_group_offsets(api, broker):
    from confluent_kafka import Consumer, KafkaException, TopicPartition as CTP
    from kafka import KafkaConsumer, TopicPartition as KTP

    cid = api.cluster_id()
    topic = new_topic(api, broker.bootstrap, "http-group", 2)
    for p in range(2):
        api.produce_ok(topic, [record(value=string(f"p{p}-{i}"), partition=p) for i in range(12)])
    group = f"http-group-{uuid.uuid4().hex[:8]}"

    # Commit over HTTP, read it back over HTTP.
    r = api.commit_offsets(group, [
        {"topic_name": topic, "partition_id": 0, "offset": 4, "metadata": "m0"},
        {"topic_name": topic, "partition_id": 1, "offset": 7}])
    assert r.status == 200, str(r)
    want = {(topic, 0): (4, "m0"), (topic, 1): (7, None)}
    assert offsets_of(r) == want, f"the commit's answer: {r}"
    for query in (None, topic):
        r = api.group_offsets(group, query)
        assert r.status == 200, str(r)
        assert (r.json()["cluster_id"], r.json()["group_id"]) == (cid, group), str(r)
        assert offsets_of(r) == want, f"GET ?topic={query}: {r}"
    r = api.group_offsets(group, "some-other-topic")
    assert r.status == 200 and offsets_of(r) == {}, str(r)

    # kafka-python, a consumer of the group (assigned, no reset): committed()
    # and where it starts reading.
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                       enable_auto_commit=False, auto_offset_reset="none")
    try:
        tps = [KTP(topic, 0), KTP(topic, 1)]
        got = {tp.partition: kc.committed(tp, metadata=True) for tp in tps}
        assert {p: (om.offset, om.metadata or None) for p, om in got.items()} == \
            {0: (4, "m0"), 1: (7, None)}, got
        kc.assign(tps)
        first: dict[int, int] = {}
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(first) < 2:
            assert time.monotonic() < deadline, f"kafka-python read only {first}"
            for tp, msgs in kc.poll(timeout_ms=500).items():
                first.setdefault(tp.partition, msgs[0].offset)
        assert first == {0: 4, 1: 7}, f"kafka-python resumed at {first}"
    finally:
        kc.close(autocommit=False)

    # confluent-kafka, a member of the group: resumes there; while it is a
    # member an HTTP commit is refused; what it commits is read over HTTP.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "error",
                  "session.timeout.ms": 10_000, "heartbeat.interval.ms": 500})
    try:
        # Offsets only: confluent-kafka-python reads the committed metadata
        # as a NUL-terminated C string, and librdkafka does not terminate it
        # (librdkafka#4649): "m0" comes back with bytes after it. kafka-python
        # checked the metadata above.
        committed = c.committed([CTP(topic, 0), CTP(topic, 1)], timeout=10)
        assert [tp.offset for tp in committed] == [4, 7], committed
        c.subscribe([topic])
        first = {}
        deadline = time.monotonic() + 30
        while len(first) < 2:
            assert time.monotonic() < deadline, f"confluent-kafka member read only {first}"
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            first.setdefault(m.partition(), m.offset())
        assert first == {0: 4, 1: 7}, f"confluent-kafka resumed at {first}"
        assert len(c.assignment()) == 2, c.assignment()

        r = api.commit_offsets(group, [{"topic_name": topic, "partition_id": 0, "offset": 1}])
        assert (r.status, r.json().get("error_code")) == (409, 40901), \
            f"HTTP commit while the group has a Kafka member: {r}"

        try:
            res = c.commit(offsets=[CTP(topic, 0, 6, metadata="k0"), CTP(topic, 1, 9)],
                           asynchronous=False)
        except KafkaException as e:
            raise AssertionError(f"Kafka commit failed: {e}") from None
        assert all(tp.error is None for tp in res), res
        # confluent-kafka-python sends the metadata with its C string's NUL
        # (metadata_size = strlen + 1): "k0" goes on the wire as b"k0\0".
        r = api.group_offsets(group, topic)
        assert r.status == 200, str(r)
        assert offsets_of(r) == {(topic, 0): (6, "k0\x00"), (topic, 1): (9, None)}, str(r)
    finally:
        c.close()  # leaves the group

    # The group is empty again: HTTP commits are accepted.
    r = api.commit_offsets(group, [{"topic_name": topic, "partition_id": 0, "offset": 12}])
    assert r.status == 200, f"HTTP commit after the Kafka member left: {r}"
    r = api.group_offsets(group)
    assert offsets_of(r) == {(topic, 0): (12, None), (topic, 1): (9, None)}, str(r)
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                       enable_auto_commit=False)
    try:
        got = {p: kc.committed(KTP(topic, p), metadata=True) for p in range(2)}
        assert {p: (om.offset, om.metadata or None) for p, om in got.items()} == \
            {0: (12, None), 1: (9, None)}, got
    finally:
        kc.close(autocommit=False)


# --------------------------------------------------------------------------
# 7. Bad input
# --------------------------------------------------------------------------


def check_error(r: ha.Response, status: int, code: int, what: str) -> None:
    body = r.json()
    assert isinstance(body, dict), f"{what}: {r}"
    assert (r.status, body.get("error_code")) == (status, code), (
        f"{what}: want {status} with error_code {code}; got {r}")
    assert isinstance(body.get("message"), str) and body["message"].strip(), (
        f"{what}: no message: {r}")
    assert r.content_type.startswith("application/json"), (
        f"{what}: content-type {r.content_type!r}: {r}")


def high_watermarks(api: ha.Client, topic: str, partitions: int) -> list[int]:
    return [api.high_watermark(topic, p) for p in range(partitions)]


def test_bad_input(api, broker):
    cid = api.cluster_id()
    topic = new_topic(api, None, "http-bad", 2)
    small = new_topic(api, None, "http-small", 1, configs={"max.message.bytes": "1024"})
    ok = api.produce_ok(topic, [record(value=string("before"), partition=0)])
    assert ok[0]["offset"] == 0
    hw0 = high_watermarks(api, topic, 2)
    assert hw0 == [1, 0]
    path = api.records_path(topic)
    good = ha.dumps(record(value=string("fine"), partition=0))

    # -- produce: the body ---------------------------------------------------
    cases = [
        ("truncated JSON", b'{"value": {"type": "STRING", "data": "x"'),
        ("not JSON", b"this is not json"),
        ("partition_id a string", {"partition_id": "zero", "value": string("x")}),
        ("STRING data a number", {"value": {"type": "STRING", "data": 5}}),
        ("key not an object", {"key": "plain", "value": string("x")}),
        ("headers not a list", {"headers": {"a": "YQ=="}, "value": string("x")}),
        ("header name not a string", {"headers": [{"name": 1, "value": "YQ=="}]}),
        ("timestamp a boolean", {"timestamp": True, "value": string("x")}),
        ("timestamp not RFC 3339", {"timestamp": "yesterday", "value": string("x")}),
        ("bad base64 key", {"key": {"type": "BINARY", "data": "!!not base64!!"}}),
        ("bad base64 value", {"value": {"type": "BINARY", "data": "YWJj*"}}),
        ("bad base64 header", {"headers": [{"name": "h", "value": "%%%"}], "value": string("x")}),
        ("unknown type", {"value": {"type": "AVRO", "data": "x"}}),
    ]
    for what, body in cases:
        check_error(api.post(path, body), 400, 400, f"produce, {what}")

    # -- produce: topic, partition, size -------------------------------------
    missing = rt.unique_topic("http-missing")
    check_error(api.produce(missing, [record(value=string("x"))]), 404, 40401,
                "produce to an unknown topic")
    check_error(api.get(api.topic_path(missing)), 404, 40401,
                "the unknown topic after a produce to it (not auto-created)")
    for p in (2, 99):
        check_error(api.produce(topic, [record(value=string("x"), partition=p)]), 404, 40402,
                    f"produce to partition {p} of 2")
    check_error(api.produce(small, [record(value=binary(b"x" * 4096), partition=0)]), 413, 41301,
                "a 4 KiB record, max.message.bytes=1024")
    (rep,) = api.produce_ok(small, [record(value=binary(b"y" * 300), partition=0)])
    assert rep["offset"] == 0, rep  # the limit is not simply refusing everything

    # A body above rest_max_request_bytes; just below it is accepted.
    big = [record(value=string("z" * 8000), partition=1) for _ in range(9)]
    body = ha.Client.stream_body(big)
    assert len(body) > REST_MAX_REQUEST_BYTES
    check_error(api.post(path, body), 413, 413, f"a body of {len(body)} bytes")
    fits = big[:7]
    assert len(ha.Client.stream_body(fits)) < REST_MAX_REQUEST_BYTES
    reps = api.produce_ok(topic, fits)
    assert [r["offset"] for r in reps] == list(range(7)), reps
    hw0 = high_watermarks(api, topic, 2)
    assert hw0 == [1, 7]

    # Several records, only the last bad: nothing of the request is written.
    first = [ha.dumps(record(value=string(f"ok{i}"), partition=i % 2)) for i in range(3)]
    last_bad = [
        ("bad base64", ha.dumps(record(value={"type": "BINARY", "data": "@@"})), 400, 400),
        ("unknown type", ha.dumps(record(value={"type": "XML", "data": "<a/>"})), 400, 400),
        ("wrong field type", ha.dumps({"partition_id": [0], "value": string("x")}), 400, 400),
        ("truncated JSON", '{"value": {"type": "STRING", "da', 400, 400),
        ("partition out of range", ha.dumps(record(value=string("x"), partition=7)), 404, 40402),
    ]
    for what, bad, status, code in last_bad:
        check_error(api.post(path, "\n".join([*first, bad])), status, code,
                    f"3 good records then one with {what}")
        assert high_watermarks(api, topic, 2) == hw0, f"records written by a failed request ({what})"
    small_recs = [ha.dumps(record(value=string("tiny"), partition=0)),
                  ha.dumps(record(value=binary(b"q" * 4096), partition=0))]
    check_error(api.post(api.records_path(small), "".join(small_recs)), 413, 41301,
                "a small record then a 4 KiB one, max.message.bytes=1024")
    assert api.high_watermark(small, 0) == 1, "records written by a failed request (too large)"

    # -- fetch ---------------------------------------------------------------
    check_error(api.fetch(missing, 0), 404, 40401, "fetch from an unknown topic")
    check_error(api.fetch(topic, 2), 404, 40402, "fetch from partition 2 of 2")
    check_error(api.fetch(topic, 0, offset=hw0[0] + 1), 416, 41601,
                "fetch above the high watermark")
    check_error(api.fetch(topic, 0, offset=10**12), 416, 41601, "fetch far above the high watermark")
    for what, q in (("offset=abc", {"offset": "abc"}), ("format=xml", {"format": "xml"}),
                    ("max_wait_ms=soon", {"max_wait_ms": "soon"}),
                    ("max_bytes=lots", {"max_bytes": "lots"})):
        r = api.get(f"{api.partition_path(topic, 0)}/records", query=q)
        check_error(r, 400, 400, f"fetch with {what}")

    # -- clusters, routes, topics --------------------------------------------
    check_error(api.get("/v3/clusters/no-such-cluster"), 404, 404, "unknown cluster")
    check_error(api.get("/v3/clusters/no-such-cluster/topics"), 404, 404, "unknown cluster")
    check_error(api.post(f"/v3/clusters/no-such-cluster/topics/{topic}/records", good), 404, 404,
                "produce with an unknown cluster id")
    check_error(api.get("/v3/no-such-route"), 404, 404, "unknown route")
    check_error(api.get(f"/v3/clusters/{cid}/no-such-thing"), 404, 404, "unknown route")
    check_error(api.get(api.topic_path(missing)), 404, 40401, "GET an unknown topic")
    check_error(api.get(api.partition_path(topic, 5)), 404, 40402, "GET partition 5 of 2")
    check_error(api.post(api.topic_path(), b'{"topic_name": '), 400, 400, "create, truncated JSON")
    check_error(api.post(api.topic_path(), {"topic_name": 5}), 400, 400, "create, name a number")
    for what, kw in (("0 partitions", {"partitions": 0}),
                     ("-3 partitions", {"partitions": -3}),
                     ("a bad config value", {"partitions": 1,
                                             "configs": {"cleanup.policy": "bogus"}}),
                     ("a bad max.message.bytes", {"partitions": 1,
                                                  "configs": {"max.message.bytes": "huge"}})):
        name = rt.unique_topic("http-invalid")
        check_error(api.create_topic(name, **kw), 400, 40003, f"create with {what}")
        check_error(api.get(api.topic_path(name)), 404, 40401, f"the topic after a create with {what}")
    check_error(api.create_topic("bad name!", 1), 400, 40003, "create with an illegal name")
    check_error(api.create_topic("x" * 300, 1), 400, 40003, "create with a 300-character name")

    # -- group offsets --------------------------------------------------------
    group = f"http-bad-{uuid.uuid4().hex[:8]}"
    check_error(api.post(api.group_path(group), b"{nope"), 400, 400, "commit, not JSON")
    check_error(api.post(api.group_path(group), {"offsets": [{"topic_name": topic,
                                                              "partition_id": 0,
                                                              "offset": "one"}]}),
                400, 400, "commit, offset a string")
    check_error(api.commit_offsets(group, [{"topic_name": missing, "partition_id": 0,
                                            "offset": 1}]), 404, 40401,
                "commit for an unknown topic")

    # Nothing above wrote a record; the server still serves.
    assert high_watermarks(api, topic, 2) == hw0
    assert broker.crashed() is None and broker.alive()
    (rep,) = api.produce_ok(topic, [record(key=string("k"), value=string("after"), partition=0,
                                           timestamp=T0_MS)])
    assert (rep["partition_id"], rep["offset"]) == (0, hw0[0]), rep
    page = api.fetch_ok(topic, 0, offset=hw0[0])
    check_page(page, cid, topic, 0, hw0[0])
    assert page_records(page) == [Rec(hw0[0], b"k", b"after", [], T0_MS)], page
    assert page["high_watermark"] == hw0[0] + 1


# --------------------------------------------------------------------------
# 8. Two agents (etcd, S3)
# --------------------------------------------------------------------------


class RestAgent(cl.Agent):
    """A cluster agent with `--rest` on its own port."""

    rest_port: int

    def command(self) -> list[str]:
        return [*super().command(), "--rest", f"{HOST}:{self.rest_port}"]

    def ready(self) -> bool:
        return super().ready() and stack.listening(self.rest_port)


def rest_cluster(workdir, agents: int) -> cl.Cluster:
    c = cl.Cluster(workdir, agents=agents, etcd_members=1, s3="moto")
    for a in c.agents:
        a.__class__ = RestAgent
        a.rest_port = stack.free_ports(1)[0]
    return c


CLUSTER_TIMEOUT_S = 150


@pytest.fixture
def two_agents(request, tmp_path):
    c = rest_cluster(tmp_path / "cluster", 2)
    request.node._silt_cluster = c  # logs on failure (conftest.py)

    def on_alarm(signum, frame):
        raise TimeoutError(f"test aborted after {CLUSTER_TIMEOUT_S}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CLUSTER_TIMEOUT_S)
    try:
        c.start()
        yield c
        crashed = c.crashed()
        assert not crashed, f"agents exited on their own (exit codes): {crashed}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        c.close()


def wait_high_watermark(api: ha.Client, topic: str, partition: int, want: int,
                        timeout: float = 15.0) -> None:
    """Until the agent behind `api` serves `want` records: agents apply the
    metadata log on their own, so the other one may be a moment behind."""
    deadline = time.monotonic() + timeout
    while True:
        hw = api.fetch_ok(topic, partition, offset=0, max_bytes=1)["high_watermark"]
        if hw == want:
            return
        assert hw < want, f"{topic}/{partition}: high watermark {hw} above {want}"
        assert time.monotonic() < deadline, (
            f"{topic}/{partition}: high watermark {hw} after {timeout}s, want {want}")
        time.sleep(0.2)


@pytest.mark.cluster
def test_two_agents(two_agents):
    c = two_agents
    a1, a2 = (ha.Client(HOST, a.rest_port) for a in c.agents)
    cid = a1.cluster_id()
    assert cid == f"silt-{c.name}" and a2.cluster_id() == cid, (cid, a2.cluster_id())
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": c.agents[1].addr}).list_topics(timeout=10)
    assert md.cluster_id == cid, (md.cluster_id, cid)

    topic = rt.unique_topic("http-agents")
    a1.create_topic_ok(topic, 2)
    deadline = time.monotonic() + 15
    while (r := a2.get(a2.topic_path(topic))).status != 200:
        assert r.status == 404 and time.monotonic() < deadline, (
            f"agent a2 does not know the topic agent a1 created: {r}")
        time.sleep(0.2)
    assert r.json()["partitions_count"] == 2, str(r)

    sent = {p: [record(key=string(f"k{p}-{i}"), value=binary(bytes([p, i, 0xff]) * 10),
                       headers=[header("agent", b"a1"), header("i", bytes([i]))],
                       timestamp=T0_MS + 100 * p + i, partition=p) for i in range(5)]
            for p in range(2)}
    want = {}
    for p, recs in sent.items():
        reps = a1.produce_ok(topic, recs[:2]) + a1.produce_ok(topic, recs[2:])
        check_reports(reps, recs, cid, topic, p, 0, [T0_MS + 100 * p + i for i in range(5)])
        want[p] = expected_recs(recs, reps)

    for p, recs in want.items():
        wait_high_watermark(a2, topic, p, len(recs))
        pages, high = walk(a2, topic, p)
        assert [r for pg in pages for r in page_records(pg)] == recs, f"agent a2, partition {p}"
        # A Kafka consumer that reads through agent a2 only.
        got, high = read_confluent(c.agents[1].addr, topic, p, 0, len(recs),
                                   client_id=cl.Cluster.client_id(1))
        assert got == recs and high == len(recs), f"Kafka through agent a2, partition {p}"

    # A long poll on agent a2 ends when a record produced through agent a1
    # arrives.
    result: dict = {}

    def poll():
        t = time.monotonic()
        result["resp"] = a2.fetch(topic, 0, offset=5, max_wait_ms=8000, timeout=20)
        result["elapsed"] = time.monotonic() - t

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    time.sleep(0.5)
    (rep,) = a1.produce_ok(topic, [record(value=string("late"), partition=0, timestamp=T0_MS)])
    assert rep["offset"] == 5, rep
    th.join(20)
    assert not th.is_alive(), "the long poll on agent a2 did not return"
    r = result["resp"]
    assert r.status == 200, str(r)
    assert page_records(r.json()) == [Rec(5, None, b"late", [], T0_MS)], str(r)
    assert result["elapsed"] < 7.5, f"the long poll on a2 took {result['elapsed']:.1f}s"
