"""Round trips through silt with three independent Kafka clients.

Each test produces SILT_E2E_RECORDS records (default 100000) to a topic with
8 partitions, spread over the compression codecs none/gzip/snappy/lz4/zstd,
then reads every partition back from offset 0 and verifies byte-for-byte.
"""

from __future__ import annotations

from collections import Counter

import pytest

import roundtrip as rt
import verify as vf

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
    vf.check_exactly_once(first, acks, consumed, PARTITIONS, high)
    counts = Counter(r.partition for r in first)
    assert high == {p: counts[p] for p in range(PARTITIONS)}, (
        f"high watermarks {high} do not match records produced per partition {dict(counts)}"
    )

    silt.restart()

    # Everything acknowledged before the restart is still there, at the same offsets.
    rt.wait_for_topic(silt.bootstrap, topic, PARTITIONS)
    consumed, high_after = rt.consume_confluent(silt.bootstrap, topic, PARTITIONS)
    assert high_after == high, f"high watermarks changed across restart: {high} -> {high_after}"
    vf.check_exactly_once(first, acks, consumed, PARTITIONS, high_after)

    # New records continue densely after the old high watermarks.
    n2 = max(n_records // 5, len(rt.CODECS))
    second = rt.generate_records(n2, PARTITIONS, seed=8, tag="after", first_idx=len(first))
    acks2 = rt.produce_confluent(silt.bootstrap, topic, second)
    vf.check_acks(second, acks2)
    vf.check_dense_acks(acks2.values(), start=high)

    consumed, high_final = rt.consume_confluent(silt.bootstrap, topic, PARTITIONS)
    vf.check_exactly_once(first + second, {**acks, **acks2}, consumed, PARTITIONS, high_final)

    # Each producer's records kept their send order (checked last, so that a
    # reordering does not hide the restart checks above).
    vf.check_send_order(first, acks, rt.producer_of)
    vf.check_send_order(second, acks2, rt.producer_of)
