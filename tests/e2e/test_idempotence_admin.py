"""Idempotent producer under object-store failures, and admin operations
through confluent-kafka's AdminClient and kafka-python's KafkaAdminClient."""

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

import roundtrip
import verify

# 80 % of PUTs fail (half of them after writing the object): with three
# attempts per segment, about half of the segments fail outright and their
# producers must retry. A fifth of the successful commits lose their
# acknowledgement: the batches are committed, the producers retry them, and
# the retries must be recognised as duplicates.
FAULTS = "put_error_rate=0.8,commit_ack_loss_rate=0.2,seed=11"


@pytest.mark.silt_env(SILT_TEST_FAULTS=FAULTS)
def test_idempotent_producer_commits_each_batch_once_under_failures(silt):
    topic = roundtrip.unique_topic("idem")
    roundtrip.create_topic(silt.bootstrap, topic, 4)
    acked, errors = {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.value()] = (msg.partition(), msg.offset())

    p = Producer(
        {
            "bootstrap.servers": silt.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 120000,
        }
    )
    n = 30000
    for i in range(n):
        while True:
            try:
                p.produce(topic, f"r{i}".encode(), partition=i % 4, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
        if i % 300 == 0:
            time.sleep(0.02)  # spread the load over many segments
    assert p.flush(150) == 0
    assert not errors, errors[:5]
    assert len(acked) == n

    records, _ = roundtrip.consume_confluent(silt.bootstrap, topic, 4)
    verify.check_values_once(records, 4, acked)
    # The faults really forced producer retries: some segments were never committed.
    log = silt.log_path.read_text()
    assert "not committed" in log, "no segment failed; the test did not exercise retries"
    assert "injected loss of the answer" in log, "no commit acknowledgement was lost"


def test_transaction_timeout_above_the_maximum_fails_fast(silt):
    """A transaction.timeout.ms above transaction_max_timeout (Kafka's
    transaction.max.timeout.ms, 15 min) is INVALID_TRANSACTION_TIMEOUT at
    once, as with Kafka (tests/e2e/test_transactions.py has the rest)."""
    p = Producer({"bootstrap.servers": silt.bootstrap, "transactional.id": "tx-1",
                  "transaction.timeout.ms": 900_001})
    start = time.monotonic()
    with pytest.raises(KafkaException) as e:
        p.init_transactions(30)
    assert time.monotonic() - start < 10, "the transactional producer waited instead of failing"
    assert e.value.args[0].name() == "INVALID_TRANSACTION_TIMEOUT", e.value


def test_admin_client_operations(silt):
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    topic = roundtrip.unique_topic("adm")
    admin.create_topics([NewTopic(topic, 2, 1, config={"retention.ms": "3600000"})])[topic].result(30)
    # Unsupported values are rejected with a clear error.
    with pytest.raises(KafkaException, match="Invalid value keep for configuration cleanup.policy"):
        admin.create_topics([NewTopic(topic + "-c", 1, 1, config={"cleanup.policy": "keep"})])[topic + "-c"].result(30)
    with pytest.raises(KafkaException, match="TOPIC_ALREADY_EXISTS|already exists"):
        admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)

    # Add partitions.
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(30)
    with pytest.raises(KafkaException, match="INVALID_PARTITIONS|must be larger"):
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result(30)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 5

    # Describe and alter configs.
    res = ConfigResource("topic", topic)
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "delete"
    inc = ConfigResource(
        "topic",
        topic,
        incremental_configs=[
            ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    admin.incremental_alter_configs([inc])[inc].result(30)
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["retention.bytes"].value == "1048576"
    assert configs["retention.ms"].value == "604800000"  # back to the default
    bad = ConfigResource(
        "topic", topic, incremental_configs=[ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)]
    )
    with pytest.raises(KafkaException, match="INVALID_CONFIG|integer"):
        admin.incremental_alter_configs([bad])[bad].result(30)

    # Produce; LogAppendTime records carry the broker's append time.
    p = Producer({"bootstrap.servers": silt.bootstrap})
    before = int(time.time() * 1000)
    for i in range(100):
        p.produce(topic, f"v{i}".encode(), partition=0, timestamp=1000 + i)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "adm", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    m = c.poll(10)
    assert m is not None and not m.error()
    ts_type, ts = m.timestamp()
    assert ts_type == 2 and ts >= before - 5000, (ts_type, ts)  # TIMESTAMP_LOG_APPEND_TIME

    # Delete records advances the log start offset.
    deleted = admin.delete_records([TopicPartition(topic, 0, 40)])
    result = list(deleted.values())[0].result(30)
    assert result.low_watermark == 40
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    assert (lo, hi) == (40, 100)
    c.assign([TopicPartition(topic, 0, 40)])
    m = c.poll(10)
    assert m is not None and m.offset() == 40 and m.value() == b"v40"
    c.close()

    # Cluster description.
    cluster = admin.describe_cluster().result(30)
    assert len(cluster.nodes) == 1 and cluster.cluster_id

    # Delete the topic.
    admin.delete_topics([topic])[topic].result(30)
    assert topic not in admin.list_topics(timeout=10).topics


def test_offsets_for_times(silt):
    topic = roundtrip.unique_topic("times")
    roundtrip.create_topic(silt.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": silt.bootstrap, "linger.ms": 0})
    for i in range(30):
        p.produce(topic, f"v{i}".encode(), partition=0, timestamp=1_000_000 + i * 1000)
        p.flush(10)  # one batch per record: batch-granular lookups are exact
    c = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "t", "enable.auto.commit": False})
    try:
        for ts, want in [(1_000_000, 0), (1_010_000, 10), (1_010_500, 11), (1_029_000, 29), (2_000_000, -1)]:
            got = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)[0]
            assert got.offset == want, (ts, got.offset)
    finally:
        c.close()


def test_kafka_python_admin(silt):
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition as KTP
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType, NewPartitions as KNewPartitions, NewTopic as KNewTopic

    admin = KafkaAdminClient(bootstrap_servers=silt.bootstrap, request_timeout_ms=30000)
    topic = roundtrip.unique_topic("kpadm")
    admin.create_topics([KNewTopic(topic, 2, 1, topic_configs={"retention.ms": "7200000"})])
    admin.create_partitions({topic: KNewPartitions(4)})
    described = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic)])
    text = repr(described)
    assert "retention.ms" in text and "7200000" in text
    admin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "1000"})])
    assert "1000" in repr(admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic)]))
    p = Producer({"bootstrap.servers": silt.bootstrap})
    for i in range(10):
        p.produce(topic, b"x", partition=1)
    assert p.flush(30) == 0
    admin.delete_records({KTP(topic, 1): 4})
    consumer = KafkaConsumer(bootstrap_servers=silt.bootstrap)
    assert consumer.beginning_offsets([KTP(topic, 1)])[KTP(topic, 1)] == 4
    consumer.close()
    cluster = admin.describe_cluster()
    assert len(cluster["brokers"]) == 1
    admin.delete_topics([topic])
    admin.close()
