"""Kafka's configuration surface: topic configs by Kafka's names and rules,
broker configs under Kafka's names (set in the settings file, reported by
DescribeConfigs with types, sources, synonyms and sensitivity), and the
topic configs silt enforces beyond retention (timestamps, batch size).

Every check reads back what the broker answered, through client libraries
(confluent-kafka, kafka-python) and a raw DescribeConfigs v3.
"""

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

import rawkafka
import roundtrip

# Topic configs that Kafka Connect, Debezium, schema registries, Terraform's
# Kafka provider and test suites set, with Kafka's type codes
# (1 BOOLEAN, 2 STRING, 3 INT, 5 LONG, 6 DOUBLE, 7 LIST).
COMMON = {
    "cleanup.policy": ("delete", 7),
    "compression.type": ("zstd", 2),
    "delete.retention.ms": ("86400000", 5),
    "file.delete.delay.ms": ("60000", 5),
    "flush.messages": ("10000", 5),
    "flush.ms": ("1000", 5),
    "index.interval.bytes": ("4096", 3),
    "local.retention.ms": ("-2", 5),
    "max.compaction.lag.ms": ("9223372036854775807", 5),
    "max.message.bytes": ("2097152", 3),
    "message.downconversion.enable": ("true", 1),
    "message.format.version": ("2.8", 2),
    "message.timestamp.type": ("CreateTime", 2),
    "min.cleanable.dirty.ratio": ("0.5", 6),
    "min.compaction.lag.ms": ("0", 5),
    "min.insync.replicas": ("2", 3),
    "preallocate": ("false", 1),
    "remote.storage.enable": ("false", 1),
    "retention.bytes": ("-1", 5),
    "retention.ms": ("86400000", 5),
    "segment.bytes": ("104857600", 3),
    "segment.index.bytes": ("10485760", 3),
    "segment.jitter.ms": ("0", 5),
    "segment.ms": ("3600000", 5),
    "unclean.leader.election.enable": ("false", 1),
}
TOPIC_CONFIG = 1
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5


def _check_described(addr, topic):
    err, msg, configs = rawkafka.describe_configs(addr, 2, topic)
    assert err == 0, msg
    for name, (value, ctype) in COMMON.items():
        c = configs[name]
        assert (c.value, c.source, c.type) == (value, TOPIC_CONFIG, ctype), (name, c)
        assert c.synonyms[0] == (name, value, TOPIC_CONFIG), (name, c.synonyms)
        assert not c.sensitive and c.documentation, (name, c)
    # A config left unset reports its cluster default and Kafka's synonym.
    c = configs["compression.lz4.level"]
    assert (c.value, c.source, c.type) == ("9", DEFAULT_CONFIG, 3), c
    assert c.synonyms == [("compression.lz4.level", "9", DEFAULT_CONFIG)], c.synonyms


def _roundtrip(bootstrap, topic):
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        p.produce(topic, f"v{i}".encode(), key=b"k", partition=0)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "cfg", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                got.append(m.value())
        assert got == [f"v{i}".encode() for i in range(20)]
    finally:
        c.close()


def test_create_topic_with_common_kafka_configs_confluent(silt):
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    topic = roundtrip.unique_topic("cfg-cf")
    config = {k: v for k, (v, _) in COMMON.items()}
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(30)
    _check_described(silt.bootstrap, topic)
    res = ConfigResource("topic", topic)
    described = admin.describe_configs([res])[res].result(30)
    for name, (value, _) in COMMON.items():
        assert described[name].value == value, name
        assert described[name].source == TOPIC_CONFIG, name
    _roundtrip(silt.bootstrap, topic)

    # Values outside Kafka's rules are refused with INVALID_CONFIG, naming them.
    for name, value in [("compression.type", "brotli"), ("min.insync.replicas", "0"),
                        ("segment.bytes", "13"), ("message.format.version", "x"),
                        ("unclean.leader.election.enable", "maybe"), ("segment.byte", "1")]:
        t = topic + "-bad"
        with pytest.raises(KafkaException, match=f"INVALID_CONFIG|{name}") as e:
            admin.create_topics([NewTopic(t, 1, 1, config={name: value})])[t].result(30)
        assert name in str(e.value), e.value

    # APPEND and SUBTRACT on a list config.
    inc = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
    admin.incremental_alter_configs([inc])[inc].result(30)
    assert admin.describe_configs([res])[res].result(30)["cleanup.policy"].value == "delete,compact"
    inc = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)])
    admin.incremental_alter_configs([inc])[inc].result(30)
    assert admin.describe_configs([res])[res].result(30)["cleanup.policy"].value == "compact"


def test_create_topic_with_common_kafka_configs_kafka_python(silt):
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType, NewTopic as KNewTopic
    from kafka.errors import InvalidConfigurationError

    admin = KafkaAdminClient(bootstrap_servers=silt.bootstrap, request_timeout_ms=30000)
    try:
        topic = roundtrip.unique_topic("cfg-kp")
        config = {k: v for k, (v, _) in COMMON.items()}
        admin.create_topics([KNewTopic(topic, 1, 1, topic_configs=config)])
        _check_described(silt.bootstrap, topic)
        text = repr(admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic)]))
        for name, (value, _) in COMMON.items():
            assert f"'{name}', '{value}'" in text or f"{name}" in text and value in text, name
        with pytest.raises(InvalidConfigurationError):
            admin.create_topics([KNewTopic(topic + "-bad", 1, 1, topic_configs={"min.insync.replicas": "0"})])
        _roundtrip(silt.bootstrap, topic)
    finally:
        admin.close()


def _node_id(addr):
    md = rawkafka.metadata(addr)
    assert len(md.brokers) == 1, md.brokers
    return next(iter(md.brokers))


# Broker configs tools read, with Kafka's types.
BROKER_TYPES = {
    "advertised.listeners": 2, "listeners": 2, "auto.create.topics.enable": 1, "num.partitions": 3,
    "message.max.bytes": 3, "log.retention.ms": 5, "log.retention.hours": 3,
    "offsets.retention.minutes": 3, "group.min.session.timeout.ms": 3,
    "group.max.session.timeout.ms": 3, "group.initial.rebalance.delay.ms": 3,
    "default.replication.factor": 3, "min.insync.replicas": 3, "sasl.enabled.mechanisms": 7,
    "broker.id": 3, "offsets.topic.replication.factor": 4, "etcd_password": 9,
}


def test_broker_configs_typed_with_sources(silt):
    node = _node_id(silt.bootstrap)
    for name in ["", str(node)]:
        err, msg, configs = rawkafka.describe_configs(silt.bootstrap, 4, name)
        assert err == 0, msg
        for k, t in BROKER_TYPES.items():
            assert configs[k].type == t, (k, configs[k])
        assert configs["advertised.listeners"].value == f"PLAINTEXT://{silt.bootstrap}"
        assert configs["broker.id"].value == str(node)
        assert configs["group.min.session.timeout.ms"].value == "6000"
        assert configs["group.min.session.timeout.ms"].source == DEFAULT_CONFIG
        assert configs["log.retention.hours"].value == "168"
        assert configs["etcd_password"].sensitive and configs["etcd_password"].value is None
        assert all(c.read_only for c in configs.values())
    # Another broker's configs are that broker's to answer.
    err, msg, _ = rawkafka.describe_configs(silt.bootstrap, 4, str(node + 1000))
    assert err == 42 and "answered by broker" in msg, (err, msg)
    # Only the keys asked for.
    _, _, some = rawkafka.describe_configs(silt.bootstrap, 4, "", ["num.partitions"])
    assert list(some) == ["num.partitions"]
    # Client libraries read them too.
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    res = ConfigResource("broker", str(node))
    described = admin.describe_configs([res])[res].result(30)
    assert described["num.partitions"].value == "1"
    assert described["etcd_password"].is_sensitive
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType
    kadmin = KafkaAdminClient(bootstrap_servers=silt.bootstrap, request_timeout_ms=30000)
    try:
        got = kadmin.describe_configs([KConfigResource(ConfigResourceType.BROKER, str(node))],
                                      config_filter="all")["broker"][str(node)]
        assert got["advertised.listeners"]["value"] == f"PLAINTEXT://{silt.bootstrap}", got
        assert got["num.partitions"]["config_source"] == "DEFAULT_CONFIG", got["num.partitions"]
        assert got["num.partitions"]["config_type"] == "INT", got["num.partitions"]
    finally:
        kadmin.close()


SETTINGS = """
group.min.session.timeout.ms = 1000
group.initial.rebalance.delay.ms = 0
num.partitions = 3
message.max.bytes = 4000
offsets.retention.minutes = 60
"""


@pytest.fixture
def kafka_named(tmp_path, request):
    path = tmp_path / "kafka-named.toml"
    path.write_text(SETTINGS)
    request.node.add_marker(pytest.mark.silt_args("--config", str(path)))


@pytest.mark.usefixtures("kafka_named")
def test_broker_settings_under_kafka_names(silt):
    err, msg, configs = rawkafka.describe_configs(silt.bootstrap, 4, "")
    assert err == 0, msg
    for k, v in [("group.min.session.timeout.ms", "1000"), ("num.partitions", "3"),
                 ("message.max.bytes", "4000"), ("offsets.retention.minutes", "60"),
                 ("group.initial.rebalance.delay.ms", "0")]:
        assert (configs[k].value, configs[k].source) == (v, STATIC_BROKER_CONFIG), (k, configs[k])
    # num.partitions: an auto-created topic gets 3 partitions.
    topic = roundtrip.unique_topic("cfg-auto")
    md = rawkafka.metadata(silt.bootstrap, [topic])
    deadline = time.monotonic() + 30
    while len(md.leaders.get(topic, {})) != 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        md = rawkafka.metadata(silt.bootstrap, [topic])
    assert len(md.leaders[topic]) == 3, md.leaders
    # message.max.bytes bounds a topic without max.message.bytes, and the
    # topic reports it as its default, from the broker config.
    p = Producer({"bootstrap.servers": silt.bootstrap, "message.max.bytes": 100000,
                  "enable.idempotence": False, "retries": 0, "linger.ms": 0})
    errors = []
    p.produce(topic, b"x" * 6000, partition=0, on_delivery=lambda e, m: errors.append(e))
    p.produce(topic, b"x" * 100, partition=1, on_delivery=lambda e, m: errors.append(e))
    assert p.flush(30) == 0
    codes = sorted(str(e.name()) if e else "OK" for e in errors)
    assert codes == ["MSG_SIZE_TOO_LARGE", "OK"], codes
    _, _, tc = rawkafka.describe_configs(silt.bootstrap, 2, topic, ["max.message.bytes"])
    assert (tc["max.message.bytes"].value, tc["max.message.bytes"].source) == ("4000", STATIC_BROKER_CONFIG)
    assert tc["max.message.bytes"].synonyms == [("message.max.bytes", "4000", STATIC_BROKER_CONFIG)]
    # group.min.session.timeout.ms: a 1 s session is accepted (Kafka's
    # default minimum, 6 s, would refuse it).
    c = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": roundtrip.unique_topic("g"),
                  "session.timeout.ms": 1000, "heartbeat.interval.ms": 300,
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        got = None
        deadline = time.monotonic() + 30
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert not m.error(), m.error()
                got = m.value()
        assert got == b"x" * 100
    finally:
        c.close()


def test_timestamp_bounds_refuse_out_of_range_batches(silt):
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    topic = roundtrip.unique_topic("cfg-ts")
    admin.create_topics([NewTopic(topic, 1, 1, config={
        "message.timestamp.before.max.ms": "60000",
        "message.timestamp.after.max.ms": "60000"})])[topic].result(30)
    p = Producer({"bootstrap.servers": silt.bootstrap, "enable.idempotence": False,
                  "retries": 0, "linger.ms": 0})
    now = int(time.time() * 1000)
    results = {}
    for name, ts in [("now", now), ("hour_ago", now - 3_600_000), ("hour_ahead", now + 3_600_000)]:
        p.produce(topic, name.encode(), timestamp=ts, partition=0,
                  on_delivery=lambda e, m, name=name: results.__setitem__(name, e))
        p.flush(30)
    assert results["now"] is None, results
    assert results["hour_ago"].name() == "INVALID_TIMESTAMP", results
    assert results["hour_ahead"].name() == "INVALID_TIMESTAMP", results
    # Only the accepted record is in the log.
    c = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "ts", "enable.auto.commit": False})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (lo, hi) == (0, 1)
    finally:
        c.close()
