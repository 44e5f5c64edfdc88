"""Object-store request cost does not grow with the number of partitions.

One agent seals one segment object per flush interval (250 ms) however many
partitions it writes: producing continuously to 64 partitions for 5 s must
create at most 5 / 0.25 + 2 segment objects.
"""

import time
from pathlib import Path

from confluent_kafka import Producer

import roundtrip

PARTITIONS = 64
DURATION_S = 5.0
FLUSH_INTERVAL_S = 0.25


def segment_objects(data_dir: Path) -> list[Path]:
    root = data_dir / "bucket" / "segments"
    return [p for p in root.rglob("*.silt") if p.is_file()] if root.exists() else []


def test_segments_per_flush_not_per_partition(silt):
    topic = roundtrip.unique_topic("cost")
    roundtrip.create_topic(silt.bootstrap, topic, PARTITIONS)
    before = len(segment_objects(silt.data_dir))

    acked = [0]
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[0] += 1

    p = Producer(roundtrip.confluent_producer_config(silt.bootstrap, "none"))
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < DURATION_S:
        for part in range(PARTITIONS):
            while True:
                try:
                    p.produce(topic, value=b"v" * 200, partition=part, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.01)
            sent += 1
        p.poll(0)
        time.sleep(0.005)
    assert p.flush(60) == 0, "producer could not deliver everything"
    elapsed = time.monotonic() - start

    assert not errors, f"delivery errors: {errors[:5]}"
    assert acked[0] == sent
    created = len(segment_objects(silt.data_dir)) - before
    limit = int(DURATION_S / FLUSH_INTERVAL_S) + 2
    roundtrip.log(
        f"{sent} records to {PARTITIONS} partitions in {elapsed:.2f}s "
        f"-> {created} segment objects (limit {limit})"
    )
    # Every partition received data, so a per-partition design would have
    # created at least 64 objects.
    marks = roundtrip.confluent_watermarks(silt.bootstrap, topic, PARTITIONS)
    assert all(hi > 0 for (_, hi) in marks.values()), marks
    assert sum(hi for (_, hi) in marks.values()) == sent
    assert created <= limit, f"{created} segment objects for {DURATION_S}s of produce"
    assert created >= 5, f"only {created} segment objects: did the produce run?"
