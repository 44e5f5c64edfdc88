"""Compacted topics on a real cluster (etcd, moto S3, silt agents,
librdkafka clients): Kafka's guarantees for `cleanup.policy=compact`.

Producers with every codec overwrite a key space many times (with
tombstones, headers and about 1 % large values) while a consumer reads;
the cleaner runs every second. Then:
- a consumer from offset 0 sees exactly the last value of every live key,
  in offset order, each at the offset it was produced at, byte for byte;
  no deleted key is left once `delete.retention.ms` has passed;
- the consumer that read during the cleaning saw every record at its
  offset and ended with the last value of every key (no gap);
- fetching a removed offset returns the next surviving record;
- a record without a key is refused with INVALID_RECORD, DeleteRecords
  with POLICY_VIOLATION;
- a Kafka-Connect-style configs topic created by an AdminClient with
  `cleanup.policy=compact` reports the policy and keeps its latest configs.

Run: cd tests/e2e && python3 -m pytest -q test_compacted.py
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

import roundtrip as rt
from test_cluster import make_cluster  # noqa: F401  (a fixture)
from test_tiering import FAST_JOBS, total, wait_until

pytestmark = pytest.mark.cluster

KEYS = int(os.environ.get("SILT_E2E_COMPACT_KEYS", "10000"))
VERSIONS = int(os.environ.get("SILT_E2E_COMPACT_VERSIONS", "4"))
PARTITIONS = 2
DELETE_RETENTION_MS = 8000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

CLEANER_ENV = {
    **FAST_JOBS,
    "SILT_CLEANER_INTERVAL": "1s",
    "SILT_CLEANER_DEDUPE_BUFFER_BYTES": "1MiB",
}


def create(admin: AdminClient, topic: str, partitions: int, config: dict) -> None:
    for f in admin.create_topics([NewTopic(topic, partitions, config=config)]).values():
        f.result(30)


class Model:
    """What was acknowledged, per (partition, offset): (key, value, headers,
    timestamp)."""

    def __init__(self):
        self.at: dict[tuple[int, int], tuple] = {}
        self.errors: list = []
        self.lock = threading.Lock()

    def on_delivery(self, headers=None):
        """A delivery callback for a record sent with `headers`."""
        def done(err, msg):
            with self.lock:
                if err:
                    self.errors.append(err)
                else:
                    self.at[(msg.partition(), msg.offset())] = (
                        msg.key(), msg.value(), tuple(headers or ()), msg.timestamp()[1])
        return done

    def last_per_key(self) -> dict[bytes, tuple[int, int, tuple]]:
        """key -> (partition, offset, record) of its last acknowledged record."""
        out = {}
        for (p, o), r in sorted(self.at.items()):
            out[r[0]] = (p, o, r)
        return out


def produce_versions(bootstrap: str, topic: str, model: Model, seed: int) -> None:
    """VERSIONS rounds over the key space, each round through a producer of
    the next codec; the last round turns 10 % of the keys into tombstones."""
    rng = random.Random(seed)
    for version in range(VERSIONS):
        codec = CODECS[version % len(CODECS)]
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                      "compression.type": codec, "enable.idempotence": True})
        keys = list(range(KEYS))
        rng.shuffle(keys)
        for i, k in enumerate(keys):
            key = b"key-%06d" % k
            last = version == VERSIONS - 1
            if last and k % 10 == 3:
                value = None
            elif rng.random() < 0.01:
                value = (b"big-%d-%d-" % (k, version)) * 2000
            else:
                value = b"v%d-%d-" % (k, version) + b"x" * rng.randrange(0, 200)
            headers = [("version", str(version).encode())] if k % 7 == 0 else None
            p.produce(topic, key=key, value=value, headers=headers,
                      on_delivery=model.on_delivery(headers))
            if i % 2000 == 1999:
                p.poll(0)
                p.flush(60)
        assert p.flush(60) == 0
    assert not model.errors, model.errors[:3]


def as_read(m) -> tuple:
    return (m.offset(), m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1])


def reached(c: Consumer, topic: str, until: dict[int, int]) -> set[int]:
    """Partitions whose consumer position reached until[p]: the position
    moves past removed offsets at the end of a batch, as Kafka's does."""
    pos = c.position([TopicPartition(topic, p) for p in until])
    return {tp.partition for tp in pos if tp.offset >= until[tp.partition]}


def read_all(bootstrap: str, topic: str, until: dict[int, int], timeout: float = 60,
             start: int = 0) -> dict[int, list]:
    """Every record of each partition from `start` until its position
    reaches until[p] (the high watermark): partition -> [(offset, key,
    value, headers, timestamp)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compacted-read",
                  "enable.auto.commit": False, "auto.offset.reset": "error"})
    got: dict[int, list] = {p: [] for p in until}
    try:
        c.assign([TopicPartition(topic, p, start) for p in until])
        deadline = time.monotonic() + timeout
        while len(reached(c, topic, until)) < len(until):
            assert time.monotonic() < deadline, f"read stopped at {[(p, got[p][-1:]) for p in got]}"
            for m in c.consume(500, 1.0):
                assert not m.error(), m.error()
                got[m.partition()].append(as_read(m))
        return got
    finally:
        c.close()


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def check_read(model: Model, got: dict[int, list]) -> None:
    """Every record read is the one acknowledged at its offset; offsets rise."""
    for p, records in got.items():
        last = -1
        for o, key, value, headers, ts in records:
            assert o > last, f"partition {p}: offset {o} after {last}"
            last = o
            want = model.at.get((p, o))
            assert want is not None, f"{p}/{o}: read a record never acknowledged"
            assert (key, value, headers, ts) == want, f"{p}/{o}: not the record produced there"


def fully_compacted(model: Model, got: dict[int, list]) -> str | None:
    """Why `got` is not exactly the last value of every live key (None if
    it is)."""
    last = model.last_per_key()
    live = {k: (p, o) for k, (p, o, r) in last.items() if r[1] is not None}
    seen = {}
    for p, records in got.items():
        for o, key, value, *_ in records:
            if key in seen:
                return f"key {key!r} at {seen[key]} and {(p, o)}"
            seen[key] = (p, o)
    if seen != live:
        extra = set(seen) - set(live)
        missing = set(live) - set(seen)
        return f"{len(extra)} keys too many (e.g. {sorted(extra)[:2]}), {len(missing)} missing"
    return None


def test_compacted_topic_keeps_the_last_value_of_every_key(make_cluster):
    c = make_cluster(agents=2, etcd_members=1, s3="moto", agent_env=CLEANER_ENV)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    topic = rt.unique_topic("compacted")
    create(admin, topic, PARTITIONS, {
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": str(DELETE_RETENTION_MS),
    })
    res = ConfigResource("TOPIC", topic)
    described = admin.describe_configs([res])[res].result(30)
    assert described["cleanup.policy"].value == "compact"
    assert described["delete.retention.ms"].value == str(DELETE_RETENTION_MS)
    assert described["max.compaction.lag.ms"].value == "9223372036854775807"

    # A consumer reads from the start while the producers write and the
    # cleaner cleans; it keeps going until it has reached the end.
    model = Model()
    during: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    position: dict[int, int] = {p: 0 for p in range(PARTITIONS)}
    stop = threading.Event()
    failures: list = []

    def read_during():
        cons = None
        try:
            cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "compacted-during",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "max.partition.fetch.bytes": 64 << 10})
            cons.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
            while not stop.is_set():
                for m in cons.consume(200, 0.5):
                    if m.error():
                        failures.append(m.error())
                        return
                    during[m.partition()].append(as_read(m))
                for tp in cons.position([TopicPartition(topic, p) for p in range(PARTITIONS)]):
                    position[tp.partition] = max(position[tp.partition], tp.offset)
                time.sleep(0.02)  # slower than the producers: it reads behind the cleaner
        except Exception as e:  # noqa: BLE001  (reported by the test)
            failures.append(e)
        finally:
            if cons is not None:
                cons.close()

    reader = threading.Thread(target=read_during, daemon=True)
    reader.start()
    produce_versions(c.bootstrap, topic, model, seed=1301)
    produced = len(model.at)
    assert produced == KEYS * VERSIONS
    hw = high_watermarks(c.bootstrap, topic, PARTITIONS)
    assert sum(hw.values()) == produced

    # A record without a key is refused; so is DeleteRecords.
    errs = []
    p = Producer({"bootstrap.servers": c.bootstrap})
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert len(errs) == 1 and errs[0] is not None, errs
    assert errs[0].code() == KafkaError.INVALID_RECORD, errs[0]
    if hasattr(admin, "delete_records"):
        f = admin.delete_records([TopicPartition(topic, 0, 1)])
        with pytest.raises(KafkaException) as refused:
            list(f.values())[0].result(30)
        assert refused.value.args[0].code() == KafkaError.POLICY_VIOLATION, refused.value

    # The cleaner removes superseded records, then the tombstones once
    # delete.retention.ms has passed since it first passed them.
    wait_until("the cleaner to remove records",
               lambda: total(c, "silt_cleaner_records_removed_total") > 0, timeout=90)
    deadline = time.monotonic() + 120
    while True:
        got = read_all(c.bootstrap, topic, hw)
        check_read(model, got)
        why = fully_compacted(model, got)
        if why is None:
            break
        assert time.monotonic() < deadline, f"not compacted within 120 s: {why}"
        time.sleep(2)
    kept = sum(len(r) for r in got.values())
    live = sum(1 for _, _, r in model.last_per_key().values() if r[1] is not None)
    assert kept == live
    rt.log(f"compacted: {produced} records produced over {KEYS} keys, {kept} left "
           f"({total(c, 'silt_cleaner_records_removed_total'):.0f} removed by the cleaner)")
    # Offsets never change: the high watermark is where it was, and the
    # records produced after compaction take the next offsets.
    assert high_watermarks(c.bootstrap, topic, PARTITIONS) == hw

    # A removed offset reads as the next surviving record.
    for part, records in got.items():
        offsets = [r[0] for r in records]
        gaps = [o for o in range(offsets[0], offsets[-1]) if o not in set(offsets)]
        assert gaps, f"partition {part}: nothing was removed"
        probe = random.Random(7).sample(gaps, min(5, len(gaps)))
        for o in probe:
            nxt = min(x for x in offsets if x > o)
            first = read_all(c.bootstrap, topic, {part: nxt + 1}, start=o)[part][0]
            assert first[0] == nxt, f"{part}/{o}: read {first[0]}, expected {nxt}"

    # The consumer that read during the cleaning: every record at its
    # offset, and the last value of every key when it reached the end.
    wait_until("the concurrent reader to reach the end",
               lambda: failures or all(position[p] >= hw[p] for p in range(PARTITIONS)),
               timeout=180)
    stop.set()
    reader.join(30)
    assert not failures, failures[:3]
    check_read(model, during)
    seen_last = {}
    for part, records in during.items():
        for o, key, *_ in records:
            seen_last[key] = (part, o)
    for key, (part, o, r) in model.last_per_key().items():
        assert seen_last.get(key) == (part, o), f"{key!r}: the reader missed its last record"


def test_connect_style_configs_topic(make_cluster):
    """A configs topic as Kafka Connect creates it: one partition,
    cleanup.policy=compact, checked through DescribeConfigs; the latest
    config of each connector survives the cleaner."""
    c = make_cluster(agents=1, etcd_members=1, s3="moto", agent_env=CLEANER_ENV)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    topic = rt.unique_topic("connect-configs")
    create(admin, topic, 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"})
    res = ConfigResource("TOPIC", topic)
    policy = admin.describe_configs([res])[res].result(30)["cleanup.policy"]
    assert policy.value == "compact" and not policy.is_default, policy
    model = Model()
    p = Producer({"bootstrap.servers": c.bootstrap, "enable.idempotence": True})
    for round_ in range(50):
        for name in ("jdbc-source", "s3-sink", "mirror"):
            body = b'{"connector.class":"%s","tasks.max":"%d"}' % (name.encode(), round_)
            p.produce(topic, key=b"connector-" + name.encode(), value=body,
                      on_delivery=model.on_delivery())
        p.flush(30)
    p.produce(topic, key=b"connector-mirror", value=None, on_delivery=model.on_delivery())
    assert p.flush(30) == 0 and not model.errors
    hw = high_watermarks(c.bootstrap, topic, 1)
    got = wait_until("the cleaner to leave one record per connector",
                     lambda: (lambda g: g if len(g[0]) == 3 else None)(
                         read_all(c.bootstrap, topic, hw)), timeout=60, every=1)
    check_read(model, got)
    latest = {key: value for _, key, value, *_ in got[0]}
    assert latest[b"connector-jdbc-source"].endswith(b'"tasks.max":"49"}')
    assert latest[b"connector-s3-sink"].endswith(b'"tasks.max":"49"}')
    # The tombstone stays until delete.retention.ms (a day by default).
    assert latest[b"connector-mirror"] is None
    assert len(got[0]) == 3, [r[:2] for r in got[0]]


def test_one_key_overwritten_leaves_one_record_for_every_client(make_cluster):
    """A key written a few thousand times over several cleaner pieces: the
    pieces before the last keep no record (only their offsets, as empty
    batches), and librdkafka and kafka-python both read the one record left
    and reach the end of the partition."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    env = {**CLEANER_ENV, "SILT_COMPACTION_RUN_BYTES": "128KiB",
           "SILT_COMPACTION_OBJECT_BYTES": "256KiB"}
    c = make_cluster(agents=1, etcd_members=1, s3="moto", agent_env=env)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    topic = rt.unique_topic("one-key")
    create(admin, topic, 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"})
    model = Model()
    p = Producer({"bootstrap.servers": c.bootstrap, "linger.ms": 5, "compression.type": "lz4"})
    for i in range(3000):
        p.produce(topic, key=b"the-key", value=b"%06d" % i + os.urandom(300),
                  on_delivery=model.on_delivery())
        if i % 300 == 299:
            p.flush(30)
    assert p.flush(30) == 0 and not model.errors
    hw = high_watermarks(c.bootstrap, topic, 1)
    assert hw == {0: 3000}
    got = wait_until("the cleaner to leave one record",
                     lambda: (lambda g: g if len(g[0]) == 1 else None)(
                         read_all(c.bootstrap, topic, hw)), timeout=60, every=1)
    check_read(model, got)
    assert got[0][0][0] == 2999 and got[0][0][2].startswith(b"002999")
    # kafka-python reads the same one record and reaches the end.
    kc = KafkaConsumer(bootstrap_servers=c.bootstrap, enable_auto_commit=False,
                       auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    try:
        tp = KTopicPartition(topic, 0)
        kc.assign([tp])
        kc.seek(tp, 0)
        records = [(m.offset, m.value[:6]) for m in kc]
        assert records == [(2999, b"002999")], records
        assert kc.position(tp) == 3000
    finally:
        kc.close()
