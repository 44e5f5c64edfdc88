"""Round trips through silt with three independent Kafka clients.

Each test produces SILT_E2E_RECORDS records (default 100000) to a topic with
8 partitions, spread over the compression codecs none/gzip/snappy/lz4/zstd,
then reads every partition back from offset 0 and verifies byte-for-byte.
"""

from __future__ import annotations

from collections import Counter

import pytest

import roundtrip as rt

PARTITIONS = 8


@pytest.mark.parametrize("client", ["kcat", "confluent", "kafka-python"])
def test_roundtrip(silt, n_records, client):
    rt.roundtrip(client, silt.bootstrap, n_records, PARTITIONS, seed=1000 + rt.CLIENTS.index(client))


def test_restart_keeps_offsets(silt, n_records):
    topic = rt.unique_topic("e2e-restart")
    rt.create_topic(silt.bootstrap, topic, PARTITIONS)

    first = rt.generate_records(n_records, PARTITIONS, seed=7, tag="before")
    acks = rt.produce_confluent(silt.bootstrap, topic, first)
    consumed, high = rt.consume_confluent(silt.bootstrap, topic, PARTITIONS)
    rt.verify(first, acks, consumed, PARTITIONS, high)
    counts = Counter(r.partition for r in first)
    assert high == {p: counts[p] for p in range(PARTITIONS)}, (
        f"high watermarks {high} do not match records produced per partition {dict(counts)}"
    )

    silt.restart()

    # Everything acknowledged before the restart is still there, at the same offsets.
    rt.wait_for_topic(silt.bootstrap, topic, PARTITIONS)
    consumed, high_after = rt.consume_confluent(silt.bootstrap, topic, PARTITIONS)
    assert high_after == high, f"high watermarks changed across restart: {high} -> {high_after}"
    rt.verify(first, acks, consumed, PARTITIONS, high_after)

    # New records continue densely after the old high watermarks.
    n2 = max(n_records // 5, len(rt.CODECS))
    second = rt.generate_records(n2, PARTITIONS, seed=8, tag="after", first_idx=len(first))
    acks2 = rt.produce_confluent(silt.bootstrap, topic, second)
    rt.check_acks(second, acks2)
    per_part: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    for r in second:
        per_part[r.partition].append(acks2[r.idx][1])
    for p, offs in per_part.items():
        offs.sort()
        expected = list(range(high[p], high[p] + len(offs)))
        assert offs == expected, (
            f"partition {p}: offsets acknowledged after restart {offs[:5]}... are not dense "
            f"after the old high watermark {high[p]} (expected {expected[:5]}...)"
        )

    consumed, high_final = rt.consume_confluent(silt.bootstrap, topic, PARTITIONS)
    rt.verify(first + second, {**acks, **acks2}, consumed, PARTITIONS, high_final)

    # Each producer's records kept their send order (checked last, so that a
    # reordering does not hide the restart checks above).
    rt.check_producer_order(first, acks)
    rt.check_producer_order(second, acks2)
