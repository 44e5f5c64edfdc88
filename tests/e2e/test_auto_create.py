"""silt dev auto-creates topics on first produce."""

from __future__ import annotations

import time

import pytest

import roundtrip as rt
import verify as vf

DEFAULT_PARTITIONS = 3


@pytest.mark.silt_args("--default-partitions", str(DEFAULT_PARTITIONS))
def test_produce_to_missing_topic_auto_creates(silt):
    topic = rt.unique_topic("e2e-auto")
    assert rt.topic_partition_count(silt.bootstrap, topic) is None, (
        f"topic {topic} exists before anything was produced to it"
    )

    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": silt.bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 5,
            "message.timeout.ms": 60_000,
        }
    )
    reports = []
    n = 50
    for i in range(n):
        producer.produce(
            topic,
            key=f"k{i}".encode(),
            value=f"auto-create value {i}".encode(),
            headers=[("id", str(i).encode())],
            on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())),
        )
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} messages undelivered after 60 s"
    errors = [r for r in reports if r[0] is not None]
    assert not errors, f"delivery errors producing to auto-created topic {topic}: {errors[:5]}"
    assert len(reports) == n

    # Metadata now lists the topic with at least one partition.
    deadline = time.monotonic() + 10
    count = None
    while time.monotonic() < deadline:
        count = rt.topic_partition_count(silt.bootstrap, topic)
        if count:
            break
        time.sleep(0.2)
    assert count, f"metadata does not list auto-created topic {topic} (got {count})"
    assert count == DEFAULT_PARTITIONS, (
        f"auto-created topic {topic} has {count} partitions; silt was started with "
        f"--default-partitions {DEFAULT_PARTITIONS}"
    )

    # Offsets are dense per partition and the records read back intact.
    for _, p, _ in reports:
        assert 0 <= p < count, f"delivered to partition {p}, topic has {count}"
    vf.check_dense_acks((p, off) for _, p, off in reports)

    consumed, high = rt.consume_confluent(silt.bootstrap, topic, count)
    got = {}
    for p, msgs in consumed.items():
        for m in msgs:
            got[int(dict(m.headers)["id"])] = (m.key, m.value)
    assert got == {i: (f"k{i}".encode(), f"auto-create value {i}".encode()) for i in range(n)}
    assert sum(high.values()) == n
