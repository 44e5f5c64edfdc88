"""Produce/consume round trips against a Kafka-compatible broker.

For a client kind (`kcat`, `confluent`, `kafka-python`) this module produces a
deterministic set of records to a topic with P partitions, using one producer
per compression codec (none, gzip, snappy, lz4, zstd; N/5 records each), then
reads every partition back from offset 0 and verifies the result (the
checks are in verify.py):

* every acknowledged record is read back exactly once, byte for byte (key,
  value, headers), at exactly the partition/offset its delivery report gave;
* in each partition the offsets read are dense, start at 0 and strictly
  increase, and nothing unexpected is read.

Records carry a unique id in the header ``id`` (values may be null, so the id
cannot live in the value). The partition of record ``i`` is ``i % P``.

kcat (Debian's kcat 1.7.1 on librdkafka 2.0.2) is line based and reports no
offsets, so its variant uses printable ASCII keys/values, one kcat invocation
per (partition, codec) chunk, and checks that each partition holds exactly the
records sent, in the order sent, at offsets 0, 1, 2, ...
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import random
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import verify as vf
from verify import Consumed

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
CLIENTS = ("kcat", "confluent", "kafka-python")

# Producer-side limits: the largest generated value is 100 KiB.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

PRODUCE_TIMEOUT_S = float(os.environ.get("SILT_E2E_PRODUCE_TIMEOUT", "300"))
# Consumers fail when no new record arrives for this long.
CONSUME_STALL_TIMEOUT_S = float(os.environ.get("SILT_E2E_CONSUME_STALL_TIMEOUT", "60"))
CONSUME_TIMEOUT_S = float(os.environ.get("SILT_E2E_CONSUME_TIMEOUT", "600"))

# Alphabet for kcat's text records: no tab (key delimiter), no newline
# (message delimiter).
_TEXT_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TEXT_TABLE = bytes(_TEXT_ALPHABET[i % len(_TEXT_ALPHABET)] for i in range(256))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------
# Record generation
# --------------------------------------------------------------------------


@dataclass
class Rec:
    idx: int
    rid: bytes  # unique id (header "id" for binary records)
    partition: int
    codec: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)

    def size(self) -> int:
        n = len(self.key or b"") + len(self.value or b"")
        for k, v in self.headers:
            n += len(k) + len(v or b"")
        return n


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))) if hi > lo else lo


def _payload(rng: random.Random, n: int, text: bool) -> bytes:
    """n bytes: half the time incompressible, half the time repetitive."""
    if n == 0:
        return b""
    if rng.random() < 0.5:
        data = rng.randbytes(n)
    else:
        unit = rng.randbytes(rng.randint(1, 24))
        data = (unit * (n // len(unit) + 1))[:n]
    if text:
        data = data.translate(_TEXT_TABLE)
    return data


def codec_of(idx: int, n: int) -> str:
    """Records are split into len(CODECS) contiguous chunks, one per codec."""
    return CODECS[min(idx * len(CODECS) // max(n, 1), len(CODECS) - 1)]


def generate_records(
    n: int,
    partitions: int,
    seed: int,
    tag: str | None = None,
    text: bool = False,
    first_idx: int = 0,
    null_header_values: bool = True,
    null_key_and_value: bool = True,
) -> list[Rec]:
    """Deterministic records from `seed`, with indexes first_idx..first_idx+n-1
    (record idx goes to partition idx % partitions).

    keys: ~10 % null, else 0-32 bytes (1-32 printable chars in text mode)
    values: ~2 % null, ~1 % 1 KiB-100 KiB, else 10 B-1 KiB (log-uniform),
            plus a few empty (non-null) values in binary mode
    headers: "id" on every record (binary mode), plus 1-3 small headers on
             about half of the records (~5 % of them with a null value).

    Some clients cannot express everything Kafka allows: with
    null_header_values=False null header values become empty, and with
    null_key_and_value=False a record whose key and value would both be null
    gets an empty (non-null) key instead.
    """
    rng = random.Random(seed)
    tag = tag if tag is not None else f"s{seed}"
    out: list[Rec] = []
    for i in range(n):
        idx = first_idx + i
        rid = f"{tag}-{idx}".encode()
        # key
        if rng.random() < 0.10:
            key = None
        else:
            klen = rng.randint(1 if text else 0, 32)
            key = _payload(rng, klen, text)
        # value
        r = rng.random()
        if r < 0.02:
            value = None
        elif r < 0.03:
            value = _payload(rng, _log_uniform(rng, 1024, 100 * 1024), text)
        elif r < 0.035 and not text:
            value = b""
        else:
            value = _payload(rng, _log_uniform(rng, 10, 1024), text)
        if text and value is not None:
            # kcat records are identified by position, but a readable id in
            # the value makes mismatches easy to diagnose.
            value = rid + b":" + value
        headers: list[tuple[str, bytes | None]] = []
        if not text:
            headers.append(("id", rid))
            if rng.random() < 0.5:
                for _ in range(rng.randint(1, 3)):
                    hk = "h" + _payload(rng, rng.randint(0, 8), True).decode()
                    hv = None if rng.random() < 0.05 else rng.randbytes(rng.randint(0, 16))
                    if hv is None and not null_header_values:
                        hv = b""
                    headers.append((hk, hv))
        if key is None and value is None and not null_key_and_value:
            key = b""
        out.append(Rec(idx, rid, idx % partitions, codec_of(i, n), key, value, headers))
    return out


def by_codec(records: list[Rec]) -> dict[str, list[Rec]]:
    groups: dict[str, list[Rec]] = {c: [] for c in CODECS}
    for r in records:
        groups[r.codec].append(r)
    return groups


def producer_of(r: Rec) -> str:
    """Records are sent by one producer per codec (for vf.check_send_order)."""
    return f"the {r.codec} producer"


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------
# Topic administration (confluent-kafka AdminClient)
# --------------------------------------------------------------------------


def create_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0,
                 config: dict[str, str] | None = None) -> None:
    """CreateTopics, with the topic configs `config` (e.g. cleanup.policy)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    try:
        futures[topic].result(timeout=timeout)
    except Exception as e:  # KafkaException or a futures timeout
        raise AssertionError(
            f"CreateTopics {topic!r} (partitions={partitions}, replication_factor=1, "
            f"config={config or {}}) failed: {e!r}"
        ) from e
    wait_for_topic(bootstrap, topic, partitions, timeout=timeout)
    log(f"created topic {topic} with {partitions} partitions")


def topic_partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int | None:
    """Partition count from Metadata, or None if the topic is not listed."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def wait_for_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = topic_partition_count(bootstrap, topic)
        if seen == partitions:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"metadata for topic {topic!r}: expected {partitions} partitions, last saw {seen}"
    )


# --------------------------------------------------------------------------
# confluent-kafka
# --------------------------------------------------------------------------


def confluent_producer_config(bootstrap: str, codec: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "compression.type": codec,
        "linger.ms": 10,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1024 * 1024,
        "message.timeout.ms": int(PRODUCE_TIMEOUT_S * 1000),
        # No retries: then every producer's records must land in send order
        # (see vf.check_send_order), even with many requests in flight.
        "retries": 0,
    }


def produce_confluent(
    bootstrap: str, topic: str, records: list[Rec], extra_config: dict | None = None
) -> dict[int, tuple[int, int]]:
    """Produce with one confluent-kafka Producer per codec (concurrently).
    Returns idx -> (partition, offset) from the delivery reports."""
    from confluent_kafka import Producer

    def run(codec: str, recs: list[Rec], ack, error) -> None:
        conf = confluent_producer_config(bootstrap, codec)
        conf.update(extra_config or {})
        producer = Producer(conf)

        def on_delivery(idx: int, err, msg) -> None:
            if err is not None:
                error(f"codec {codec} record idx {idx}: delivery failed: {err}")
            else:
                ack(idx, msg.partition(), msg.offset())

        for r in recs:
            while True:
                try:
                    producer.produce(
                        topic,
                        value=r.value,
                        key=r.key,
                        partition=r.partition,
                        headers=r.headers,
                        on_delivery=lambda err, msg, idx=r.idx: on_delivery(idx, err, msg),
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        remaining = producer.flush(PRODUCE_TIMEOUT_S)
        if remaining:
            error(f"codec {codec}: {remaining} messages still undelivered after flush")

    return _per_codec("confluent-kafka", topic, records, run)


def _per_codec(client: str, topic: str, records: list[Rec], run) -> dict[int, tuple[int, int]]:
    """run(codec, records of that codec, ack, error) for every codec at once
    (one producer each): ack(idx, partition, offset) records a delivery
    report, error(text) a failure. Fails if any producer reported an error;
    returns idx -> (partition, offset)."""
    acks: dict[int, tuple[int, int]] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def ack(idx: int, partition: int, offset: int) -> None:
        with lock:
            acks[idx] = (partition, offset)

    def error(text: str) -> None:
        with lock:
            errors.append(text)

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(CODECS)) as ex:
        for f in [ex.submit(run, c, recs, ack, error)
                  for c, recs in by_codec(records).items() if recs]:
            f.result()
    if errors:
        raise AssertionError(
            f"{client} produce to {topic}: {len(errors)} errors; first: " + "; ".join(errors[:5])
        )
    log(f"{client} produced {len(records)} records to {topic} in {time.monotonic() - t0:.1f}s")
    return acks


def confluent_watermarks(
    bootstrap: str, topic: str, partitions: int, extra_config: dict | None = None
) -> dict[int, tuple[int, int]]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**_confluent_consumer_config(bootstrap, topic), **(extra_config or {})})
    try:
        return {
            p: tuple(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False))
            for p in range(partitions)
        }
    finally:
        c.close()


def _confluent_consumer_config(bootstrap: str, topic: str) -> dict:
    # No consumer groups on the broker: a group.id is required by the client,
    # but partitions are assigned manually and nothing is committed.
    return {
        "bootstrap.servers": bootstrap,
        "group.id": f"silt-e2e-{topic}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }


def consume_confluent(
    bootstrap: str, topic: str, partitions: int, extra_config: dict | None = None
) -> tuple[dict[int, list[Consumed]], dict[int, int]]:
    """Read every partition from offset 0 up to its high watermark.
    Returns (messages per partition, high watermark per partition).
    `extra_config` is applied over the consumer settings (e.g. client.id)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    t0 = time.monotonic()
    c = Consumer({**_confluent_consumer_config(bootstrap, topic), **(extra_config or {})})
    try:
        high: dict[int, int] = {}
        for p in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            if lo != 0:
                raise AssertionError(f"partition {p}: low watermark {lo}, expected 0")
            high[p] = hi
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])

        def poll() -> list[Consumed]:
            got = []
            for m in c.consume(num_messages=5000, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(
                        f"confluent-kafka consumer error on {topic} "
                        f"partition {m.partition()}: {err}"
                    )
                hdrs = m.headers() or []
                got.append(
                    Consumed(m.partition(), m.offset(), m.key(), m.value(), [(k, v) for k, v in hdrs])
                )
            return got

        return read_to_high_watermarks("confluent-kafka", topic, high, poll, t0), high
    finally:
        c.close()


def read_to_high_watermarks(client: str, topic: str, high: dict[int, int], poll,
                            t0: float) -> dict[int, list[Consumed]]:
    """Call poll() (the next messages, in offset order per partition) until
    every partition is read up to its high watermark. Fails when nothing
    arrives for CONSUME_STALL_TIMEOUT_S, or after CONSUME_TIMEOUT_S."""
    out: dict[int, list[Consumed]] = {p: [] for p in high}
    pending = {p for p, hi in high.items() if hi > 0}
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    last_progress = time.monotonic()
    while pending:
        now = time.monotonic()
        if now - last_progress > CONSUME_STALL_TIMEOUT_S or now > deadline:
            state = {p: (len(out[p]), high[p]) for p in sorted(pending)}
            raise AssertionError(
                f"{client} consumer stalled on {topic}: partitions "
                f"(read, high watermark) = {state}"
            )
        for m in poll():
            out[m.partition].append(m)
            last_progress = time.monotonic()
            if m.offset >= high[m.partition] - 1:
                pending.discard(m.partition)
    log(
        f"{client} consumed {sum(len(v) for v in out.values())} records from "
        f"{topic} in {time.monotonic() - t0:.1f}s"
    )
    return out


# --------------------------------------------------------------------------
# kafka-python
# --------------------------------------------------------------------------


def produce_kafka_python(bootstrap: str, topic: str, records: list[Rec]) -> dict[int, tuple[int, int]]:
    """Produce with one kafka-python KafkaProducer per codec (concurrently)."""
    from kafka import KafkaProducer

    def run(codec: str, recs: list[Rec], ack, error) -> None:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=False,
            compression_type=None if codec == "none" else codec,
            linger_ms=10,
            batch_size=256 * 1024,
            max_request_size=MAX_MESSAGE_BYTES,
            request_timeout_ms=60_000,
            delivery_timeout_ms=int(PRODUCE_TIMEOUT_S * 1000),
            retries=0,  # see vf.check_send_order
        )

        def ok(idx: int, md) -> None:
            ack(idx, md.partition, md.offset)

        def fail(idx: int, exc) -> None:
            error(f"codec {codec} record idx {idx}: {exc!r}")

        try:
            for r in recs:
                fut = producer.send(
                    topic, value=r.value, key=r.key, headers=r.headers, partition=r.partition
                )
                fut.add_callback(ok, r.idx)
                fut.add_errback(fail, r.idx)
            producer.flush(timeout=PRODUCE_TIMEOUT_S)
        finally:
            producer.close(timeout=30)

    return _per_codec("kafka-python", topic, records, run)


def consume_kafka_python(
    bootstrap: str, topic: str, partitions: int
) -> tuple[dict[int, list[Consumed]], dict[int, int]]:
    from kafka import KafkaConsumer, TopicPartition

    t0 = time.monotonic()
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=60_000,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        low = c.beginning_offsets(tps)
        for tp, lo in low.items():
            if lo != 0:
                raise AssertionError(f"partition {tp.partition}: beginning offset {lo}, expected 0")
        high = {tp.partition: off for tp, off in c.end_offsets(tps).items()}

        def poll() -> list[Consumed]:
            return [Consumed(tp.partition, m.offset, m.key, m.value,
                             [(k, v) for k, v in (m.headers or [])])
                    for tp, msgs in c.poll(timeout_ms=500, max_records=10_000).items()
                    for m in msgs]

        return read_to_high_watermarks("kafka-python", topic, high, poll, t0), high
    finally:
        c.close()


# --------------------------------------------------------------------------
# kcat
# --------------------------------------------------------------------------


def kcat_bin() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if not path:
        raise RuntimeError("kcat not found; run scripts/install-test-deps.sh")
    return path


def _kcat(args: list[str], input_bytes: bytes | None = None, timeout: float = PRODUCE_TIMEOUT_S):
    cmd = [kcat_bin(), *args]
    proc = subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited with {proc.returncode}\n"
            f"stderr: {proc.stderr.decode(errors='replace')[-4000:]}"
        )
    return proc


def kcat_metadata(bootstrap: str, topic: str | None = None) -> dict:
    """`kcat -L` (plain, checked for success) and its JSON form, parsed."""
    args = ["-L", "-b", bootstrap, "-m", "10"]
    if topic:
        args += ["-t", topic]
    plain = _kcat(args, timeout=60).stdout.decode(errors="replace")
    log("kcat -L:\n" + "\n".join(plain.splitlines()[:20]))
    return json.loads(_kcat(args + ["-J"], timeout=60).stdout)


def _kcat_line(r: Rec) -> bytes:
    # With -K '\t' -Z: an empty key or value is produced as NULL.
    return (r.key or b"") + b"\t" + (r.value or b"") + b"\n"


def produce_kcat(bootstrap: str, topic: str, records: list[Rec], partitions: int) -> None:
    """One kcat invocation per (partition, codec) chunk; partitions in
    parallel, the chunks of one partition in codec order."""
    chunks: dict[int, list[tuple[str, list[Rec]]]] = defaultdict(list)
    for codec, recs in by_codec(records).items():
        for p in range(partitions):
            part = [r for r in recs if r.partition == p]
            if part:
                chunks[p].append((codec, part))

    def run_partition(p: int) -> None:
        for codec, recs in chunks[p]:
            data = b"".join(_kcat_line(r) for r in recs)
            _kcat(
                [
                    "-P", "-b", bootstrap, "-t", topic, "-p", str(p),
                    "-z", codec, "-K", "\\t", "-Z",
                    "-H", f"codec={codec}",
                    "-X", "acks=all",
                    # No retries, so the order sent is the order stored.
                    "-X", "message.send.max.retries=0",
                    "-X", "linger.ms=10",
                    "-X", f"message.max.bytes={MAX_MESSAGE_BYTES}",
                    "-m", "30",
                ],
                input_bytes=data,
            )

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(min(partitions, 8)) as ex:
        for f in [ex.submit(run_partition, p) for p in range(partitions)]:
            f.result()
    log(f"kcat produced {len(records)} records to {topic} in {time.monotonic() - t0:.1f}s")


def consume_kcat(bootstrap: str, topic: str, partition: int) -> list[dict]:
    proc = _kcat(
        [
            "-C", "-b", bootstrap, "-t", topic, "-p", str(partition),
            "-o", "beginning", "-e", "-J", "-m", "30",
            "-X", f"fetch.message.max.bytes={MAX_MESSAGE_BYTES}",
        ],
        timeout=CONSUME_TIMEOUT_S,
    )
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def kcat_roundtrip(bootstrap: str, topic: str, records: list[Rec], partitions: int) -> None:
    md = kcat_metadata(bootstrap)
    topics = {t["topic"]: t for t in md.get("topics", [])}
    if topic not in topics:
        raise AssertionError(f"kcat -L does not list topic {topic}: {sorted(topics)}")
    nparts = len(topics[topic].get("partitions", []))
    if nparts != partitions:
        raise AssertionError(f"kcat -L: topic {topic} has {nparts} partitions, expected {partitions}")

    produce_kcat(bootstrap, topic, records, partitions)

    t0 = time.monotonic()
    expected: dict[int, list[Rec]] = defaultdict(list)
    # Order within a partition: codec chunks in CODECS order, each in index order.
    for codec, recs in by_codec(records).items():
        for r in recs:
            expected[r.partition].append(r)
    with concurrent.futures.ThreadPoolExecutor(min(partitions, 4)) as ex:
        results = dict(zip(range(partitions), ex.map(lambda p: consume_kcat(bootstrap, topic, p), range(partitions))))
    for p in range(partitions):
        vf.check_kcat_partition(p, expected[p], results[p])
    log(f"kcat consumed and verified {sum(len(v) for v in results.values())} records in {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


@dataclass
class RoundtripResult:
    topic: str
    records: list[Rec]
    acks: dict[int, tuple[int, int]]
    high_watermarks: dict[int, int]


PRODUCERS = {"confluent": produce_confluent, "kafka-python": produce_kafka_python}
CONSUMERS = {"confluent": consume_confluent, "kafka-python": consume_kafka_python}


def roundtrip(
    client: str,
    bootstrap: str,
    n: int,
    partitions: int,
    seed: int = 1,
    topic: str | None = None,
) -> RoundtripResult:
    """Create a topic, produce n records with `client`, read them back with
    the same client and verify. Raises AssertionError on any mismatch."""
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}; expected one of {CLIENTS}")
    topic = topic or unique_topic(f"e2e-{client}")
    create_topic(bootstrap, topic, partitions)
    text = client == "kcat"
    t0 = time.monotonic()
    # kafka-python refuses null header values and records whose key and
    # value are both null.
    lenient = client != "kafka-python"
    records = generate_records(
        n, partitions, seed, text=text, null_header_values=lenient, null_key_and_value=lenient
    )
    total = sum(r.size() for r in records)
    log(
        f"{client}: generated {n} records ({total / 1e6:.1f} MB) in "
        f"{time.monotonic() - t0:.1f}s"
    )
    if client == "kcat":
        kcat_roundtrip(bootstrap, topic, records, partitions)
        counts = Counter(r.partition for r in records)
        return RoundtripResult(topic, records, {}, {p: counts[p] for p in range(partitions)})
    acks = PRODUCERS[client](bootstrap, topic, records)
    vf.check_acks(records, acks)
    consumed, high = CONSUMERS[client](bootstrap, topic, partitions)
    vf.check_exactly_once(records, acks, consumed, partitions, high)
    vf.check_send_order(records, acks, producer_of)
    log(f"{client}: verified {n} records in {partitions} partitions of {topic}")
    return RoundtripResult(topic, records, acks, high)
