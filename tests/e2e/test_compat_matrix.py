"""Client compatibility matrix: every client library against every feature,
written as a report together with the API versions silt advertises. Every
cell that fails says why; the test fails if a cell that the client supports
fails.

Cells in REFUSED are clients whose request versions are older than those
silt serves: there the probe must fail at the step named (a regular
expression; kafka-go reads partitions in either order) and silt's log must show it refusing
exactly that request (anything else fails the test, and so does a probe that
passes: the entry is then out of date).

The Go clients (sarama, kafka-go) are Debian's packaged sources, built once
per session with Debian's Go into one probe program (compat/go/).

The report goes to the test's temporary directory (its path is logged), or
to $SILT_COMPAT_REPORT. docs/compatibility.md is regenerated with

    scripts/compat-report.sh
"""

import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

import rawkafka
import roundtrip

COMPAT = Path(__file__).resolve().parent / "compat"
FEATURES = ["produce", "fetch", "compression", "groups", "idempotence", "admin", "offsets_for_times",
            "transactions", "consumer_protocol"]
CLIENTS = [
    ("kcat", "kcat 1.7.1 / librdkafka 2.0.2 (Debian)"),
    ("confluent", "confluent-kafka 2.16 / librdkafka 2.16"),
    ("kafka-python", "kafka-python 3.0"),
    ("aiokafka", "aiokafka 0.14"),
    ("kafkajs", "kafkajs 2.2.4 (npm)"),
    ("sarama", "sarama 1.22.1 (Debian, Go 1.19)"),
    ("kafka-go", "kafka-go 0.2.1 (Debian, Go 1.19)"),
]
# Cells a client cannot exercise at all, with the reason.
NOT_APPLICABLE = {
    ("kcat", "consumer_protocol"): "librdkafka 2.0.2 predates the consumer protocol (librdkafka 2.4)",
    ("kafka-python", "consumer_protocol"): "kafka-python 3.0 has no consumer-protocol (KIP-848) consumer",
    ("aiokafka", "consumer_protocol"): "aiokafka 0.14 has no consumer-protocol (KIP-848) consumer",
    ("kafkajs", "consumer_protocol"): "kafkajs 2.2.4 has no consumer-protocol (KIP-848) consumer",
    ("sarama", "consumer_protocol"): "sarama 1.22 has no consumer-protocol (KIP-848) consumer",
    ("kafka-go", "consumer_protocol"): "kafka-go 0.2.1 has no consumer-protocol (KIP-848) consumer",
    ("kcat", "transactions"): "kcat has no transactional producer",
    ("sarama", "transactions"): "sarama 1.22 predates its transactional producer (sarama 1.37)",
    ("kafka-go", "transactions"): "kafka-go 0.2.1 has no transactional producer",
    ("kcat", "admin"): "kcat has no admin commands beyond the metadata listing (-L), which is covered",
    ("kafka-go", "idempotence"): "kafka-go 0.2.1 has no idempotent producer: it writes message format v1, "
                                 "which has no producer ids or sequence numbers",
}
# Cells where the client speaks only request versions older than those silt
# serves (Kafka 4.0 dropped the same versions, KIP-896: its floor is Kafka
# 2.1's): the reason, the step the probe must fail at, and the refusal silt
# must log meanwhile.
REFUSED = {
    ("kafka-go", "produce"): (
        "kafka-go 0.2.1 writes with Produce v2 (message format v1); silt serves Produce v3 and up",
        "kafka-go produce: write: ", "unsupported version 2 of Produce"),
    ("kafka-go", "fetch"): (
        "kafka-go 0.2.1 reads with Fetch v2; silt serves Fetch v4 and up",
        r"kafka-go fetch: partition \d: read 0 of 5 records", "unsupported version 2 of Fetch"),
    ("kafka-go", "compression"): (
        "kafka-go 0.2.1 compresses (gzip, snappy, lz4; no zstd) message sets of format v1 in Produce v2; "
        "silt serves Produce v3 and up",
        "kafka-go compression: codec 1: write: ", "unsupported version 2 of Produce"),
    ("kafka-go", "groups"): (
        "kafka-go 0.2.1's group reader joins (the group is stable, both partitions assigned to it), "
        "then reads with Fetch v2; silt serves Fetch v4 and up",
        "kafka-go groups: read 0 of 10 records", "unsupported version 2 of Fetch"),
    ("kafka-go", "admin"): (
        "kafka-go 0.2.1 deletes topics (DeleteTopics v1, checked) but creates them with CreateTopics v0, "
        "and has no other admin calls; silt serves CreateTopics v2 and up",
        "kafka-go admin: create topic: ", "unsupported version 0 of CreateTopics"),
}
CODECS = ["gzip", "snappy", "lz4", "zstd"]


class Skip(Exception):
    """The client itself lacks the feature (not a silt failure)."""


def _topic(client, feature):
    return roundtrip.unique_topic(f"cm-{client}-{feature}".replace("_", "-"))


# ---------------------------------------------------------------- kcat

def _kcat(args, data=None, timeout=60):
    r = subprocess.run(["kcat", *args], input=data, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args)}: {r.stderr.decode()[-300:]}")
    return r.stdout


def kcat_probe(b, feature):
    t = _topic("kcat", feature)
    roundtrip.create_topic(b, t, 2)
    lines = b"\n".join(f"v{i}".encode() for i in range(10)) + b"\n"
    if feature == "produce":
        _kcat(["-b", b, "-P", "-t", t, "-p", "0"], lines)
        _kcat(["-b", b, "-L", "-t", t])
    elif feature in ("fetch", "compression", "idempotence"):
        codecs = CODECS if feature == "compression" else ["none"]
        extra = ["-X", "enable.idempotence=true"] if feature == "idempotence" else []
        for z in codecs:
            _kcat(["-b", b, "-P", "-t", t, "-p", "0", "-z", z, *extra], lines)
        out = _kcat(["-b", b, "-C", "-t", t, "-p", "0", "-o", "beginning", "-e", "-q"])
        assert out.count(b"\n") == 10 * len(codecs), out[:200]
    elif feature == "groups":
        _kcat(["-b", b, "-P", "-t", t, "-p", "0"], lines)
        _kcat(["-b", b, "-P", "-t", t, "-p", "1"], lines)
        out = _kcat(["-b", b, "-G", f"{t}-g", t, "-o", "beginning", "-e", "-q"])
        assert out.count(b"\n") == 20, out[:200]
    elif feature == "offsets_for_times":
        for i in range(5):
            _kcat(["-b", b, "-P", "-t", t, "-p", "0", "-K:"], f"k:v{i}\n".encode())
            time.sleep(0.3)
        out = _kcat(["-b", b, "-C", "-t", t, "-p", "0", "-o", f"s@{int(time.time() * 1000) - 600_000}", "-e", "-q"])
        assert out.count(b"\n") == 5, out
    else:
        raise Skip()


# ---------------------------------------------------------------- confluent-kafka

# What every client's transactions cell writes: 6 records committed, then 4
# aborted, over two partitions.
TXN_COMMITTED = [f"c{i}" for i in range(6)]
TXN_ABORTED = [f"a{i}" for i in range(4)]


def check_transactions_read(b, t):
    """Reads the topic read_committed (confluent-kafka): exactly the
    committed records, none of the aborted ones."""
    c = Consumer({"bootstrap.servers": b, "group.id": "txn-check", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(t, 0, 0), TopicPartition(t, 1, 0)])
        got, eof, deadline = [], set(), time.monotonic() + 30
        while len(eof) < 2 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                eof.add(m.partition())
                continue
            got.append(m.value().decode())
    finally:
        c.close()
    assert sorted(got) == sorted(TXN_COMMITTED), f"read_committed read {sorted(got)}"


def confluent_probe(b, feature):
    t = _topic("confluent", feature)
    roundtrip.create_topic(b, t, 2)
    conf = {"bootstrap.servers": b}
    if feature == "transactions":
        p = Producer({**conf, "transactional.id": f"{t}-tx"})
        p.init_transactions(30)
        for values, commit in ((TXN_COMMITTED, True), (TXN_ABORTED, False)):
            p.begin_transaction()
            for i, v in enumerate(values):
                p.produce(t, v.encode(), partition=i % 2)
            p.commit_transaction(30) if commit else p.abort_transaction(30)
        check_transactions_read(b, t)
        return
    if feature == "idempotence":
        conf["enable.idempotence"] = True
    codecs = CODECS if feature == "compression" else ["none"]
    for z in codecs:
        p = Producer({**conf, "compression.type": z})
        reports = []
        for i in range(10):
            p.produce(t, f"v{i}".encode(), key=b"k", partition=i % 2, headers={"h": b"x"},
                      on_delivery=lambda err, msg: reports.append((err, msg.offset())))
        assert p.flush(30) == 0
        # Every record delivered, with an offset.
        assert len(reports) == 10 and all(e is None and o >= 0 for e, o in reports), reports
    if feature in ("produce", "idempotence"):
        return
    if feature in ("fetch", "compression"):
        c = Consumer({**conf, "group.id": "probe", "enable.auto.commit": False})
        c.assign([TopicPartition(t, 0, 0), TopicPartition(t, 1, 0)])
        n, deadline = 0, time.monotonic() + 30
        while n < 10 * len(codecs) and time.monotonic() < deadline:
            m = c.poll(1)
            n += m is not None and not m.error()
        c.close()
        assert n == 10 * len(codecs), n
    elif feature in ("groups", "consumer_protocol"):
        protocol = {"group.protocol": "consumer"} if feature == "consumer_protocol" else {}
        c = Consumer({**conf, **protocol, "group.id": f"{t}-g", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe([t])
        n, deadline = 0, time.monotonic() + 30
        while n < 10 and time.monotonic() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                n += 1
                c.commit(m, asynchronous=False)
        committed = c.committed([TopicPartition(t, 0), TopicPartition(t, 1)], timeout=10)
        c.close()
        assert n == 10 and sum(tp.offset for tp in committed) == 10, (n, committed)
    elif feature == "admin":
        a = AdminClient(conf)
        a.create_partitions([NewPartitions(t, 3)])[t].result(30)
        from confluent_kafka.admin import ConfigResource

        r = ConfigResource("topic", t)
        assert "retention.ms" in a.describe_configs([r])[r].result(30)
        a.delete_topics([t])[t].result(30)
    elif feature == "offsets_for_times":
        c = Consumer({**conf, "group.id": "probe"})
        got = c.offsets_for_times([TopicPartition(t, 0, int(time.time() * 1000) - 600_000)], timeout=10)
        c.close()
        assert got[0].offset == 0, got


# ---------------------------------------------------------------- kafka-python

def kafka_python_probe(b, feature):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition as KTP
    from kafka.admin import NewPartitions as KNewPartitions

    t = _topic("kafka-python", feature)
    roundtrip.create_topic(b, t, 2)
    if feature == "transactions":
        p = KafkaProducer(bootstrap_servers=b, transactional_id=f"{t}-tx")
        p.init_transactions()
        for values, commit in ((TXN_COMMITTED, True), (TXN_ABORTED, False)):
            p.begin_transaction()
            for i, v in enumerate(values):
                p.send(t, v.encode(), partition=i % 2)
            p.commit_transaction() if commit else p.abort_transaction()
        p.close()
        check_transactions_read(b, t)
        return
    codecs = CODECS if feature == "compression" else [None]
    for z in codecs:
        p = KafkaProducer(bootstrap_servers=b, acks="all", compression_type=z, enable_idempotence=(feature == "idempotence"))
        sent = [p.send(t, f"v{i}".encode(), key=b"k", partition=i % 2, headers=[("h", b"x")])
                for i in range(10)]
        p.flush(30)
        # Every record delivered, with an offset (get() raises on a failed send).
        assert all(f.get(timeout=30).offset >= 0 for f in sent)
        p.close()
    if feature in ("produce", "idempotence"):
        return
    if feature in ("fetch", "compression"):
        c = KafkaConsumer(bootstrap_servers=b, consumer_timeout_ms=5000)
        c.assign([KTP(t, 0), KTP(t, 1)])
        c.seek_to_beginning()
        n = sum(1 for _ in c)
        c.close()
        assert n == 10 * len(codecs), n
    elif feature == "groups":
        c = KafkaConsumer(t, bootstrap_servers=b, group_id=f"{t}-g", auto_offset_reset="earliest",
                          enable_auto_commit=False, consumer_timeout_ms=8000)
        n = sum(1 for _ in c)
        c.commit()
        committed = sum(c.committed(KTP(t, p)) or 0 for p in (0, 1))
        c.close()
        assert n == 10 and committed == 10, (n, committed)
    elif feature == "admin":
        a = KafkaAdminClient(bootstrap_servers=b)
        a.create_partitions({t: KNewPartitions(3)})
        a.delete_topics([t])
        a.close()
    elif feature == "offsets_for_times":
        c = KafkaConsumer(bootstrap_servers=b)
        got = c.offsets_for_times({KTP(t, 0): int(time.time() * 1000) - 600_000})
        c.close()
        assert got[KTP(t, 0)].offset == 0, got


# ---------------------------------------------------------------- aiokafka

def aiokafka_probe(b, feature):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition as ATP
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions as ANewPartitions

    t = _topic("aiokafka", feature)
    roundtrip.create_topic(b, t, 2)

    async def run():
        if feature == "transactions":
            p = AIOKafkaProducer(bootstrap_servers=b, transactional_id=f"{t}-tx")
            await p.start()
            try:
                for values, commit in ((TXN_COMMITTED, True), (TXN_ABORTED, False)):
                    await p.begin_transaction()
                    for i, v in enumerate(values):
                        await p.send_and_wait(t, v.encode(), partition=i % 2)
                    if commit:
                        await p.commit_transaction()
                    else:
                        await p.abort_transaction()
            finally:
                await p.stop()
            return
        codecs = CODECS if feature == "compression" else [None]
        for z in codecs:
            p = AIOKafkaProducer(bootstrap_servers=b, acks="all", compression_type=z,
                                 enable_idempotence=(feature == "idempotence"))
            await p.start()
            try:
                for i in range(10):
                    await p.send_and_wait(t, f"v{i}".encode(), key=b"k", partition=i % 2, headers=[("h", b"x")])
            finally:
                await p.stop()
        if feature in ("produce", "idempotence"):
            return
        if feature in ("fetch", "compression"):
            c = AIOKafkaConsumer(bootstrap_servers=b, enable_auto_commit=False)
            await c.start()
            try:
                c.assign([ATP(t, 0), ATP(t, 1)])
                await c.seek_to_beginning()
                n = 0
                while n < 10 * len(codecs):
                    batch = await asyncio.wait_for(c.getmany(timeout_ms=1000), 30)
                    n += sum(len(v) for v in batch.values())
            finally:
                await c.stop()
        elif feature == "groups":
            c = AIOKafkaConsumer(t, bootstrap_servers=b, group_id=f"{t}-g", auto_offset_reset="earliest",
                                 enable_auto_commit=False)
            await c.start()
            try:
                n = 0
                deadline = time.monotonic() + 30
                while n < 10 and time.monotonic() < deadline:
                    batch = await c.getmany(timeout_ms=1000)
                    n += sum(len(v) for v in batch.values())
                await c.commit()
                committed = 0
                for p in (0, 1):
                    committed += (await c.committed(ATP(t, p))) or 0
            finally:
                await c.stop()
            assert n == 10 and committed == 10, (n, committed)
        elif feature == "admin":
            a = AIOKafkaAdminClient(bootstrap_servers=b)
            await a.start()
            try:
                await a.create_partitions({t: ANewPartitions(3)})
                await a.delete_topics([t])
            finally:
                await a.close()
        elif feature == "offsets_for_times":
            c = AIOKafkaConsumer(bootstrap_servers=b)
            await c.start()
            try:
                got = await c.offsets_for_times({ATP(t, 0): int(time.time() * 1000) - 600_000})
            finally:
                await c.stop()
            assert got[ATP(t, 0)].offset == 0, got

    asyncio.run(asyncio.wait_for(run(), 90))
    if feature == "transactions":
        check_transactions_read(b, t)


# ---------------------------------------------------------------- kafkajs

def kafkajs_probe(b, feature):
    if not (COMPAT / "node_modules" / "kafkajs").exists():
        raise AssertionError("kafkajs is not installed (scripts/install-test-deps.sh runs npm install)")
    t = _topic("kafkajs", feature)
    r = subprocess.run(["node", str(COMPAT / "kafkajs_probe.js"), b, feature, t], capture_output=True, timeout=120)
    out = r.stdout.decode().strip().splitlines()
    result = json.loads(out[-1]) if out else {"ok": False, "why": r.stderr.decode()[-300:]}
    assert result["ok"], result["why"]
    if feature == "transactions":
        check_transactions_read(b, t)


# ---------------------------------------------------------------- Go: sarama, kafka-go

GO_SRC = COMPAT / "go"
GO_PACKAGES = ["golang-go", "golang-github-shopify-sarama-dev", "golang-github-segmentio-kafka-go-dev"]
_go = {}  # "binary": the built probe, or "error": why it could not be built


def build_go_probe(out_dir: Path) -> Path:
    """Builds compat/go into out_dir, offline, in GOPATH mode against the
    client sources Debian installs under /usr/share/gocode/src."""
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "silt-go-probe"
    env = {
        **os.environ,
        "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOPROXY": "off", "GOFLAGS": "",
        "GOCACHE": str(out_dir / "cache"), "CGO_ENABLED": "1",
        # sarama's zstd codec is cgo over Debian's libzstd, which deprecates one call it makes.
        "CGO_CFLAGS": "-O2 -g -Wno-deprecated-declarations",
    }
    started = time.monotonic()
    try:
        r = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=GO_SRC, env=env,
                           capture_output=True, timeout=300)
    except FileNotFoundError:
        raise AssertionError(f"no go toolchain (scripts/install-test-deps.sh installs {' '.join(GO_PACKAGES)})")
    if r.returncode != 0:
        raise AssertionError(f"go build failed (scripts/install-test-deps.sh installs {' '.join(GO_PACKAGES)}): "
                             f"{r.stderr.decode()[-500:]}")
    roundtrip.log(f"built {binary} in {time.monotonic() - started:.1f} s")
    return binary


@pytest.fixture(scope="session")
def go_probe(tmp_path_factory):
    try:
        _go["binary"] = build_go_probe(tmp_path_factory.mktemp("go-probe"))
    except Exception as e:  # noqa: BLE001 - becomes every Go cell's failure
        _go["error"] = str(e)
    return _go


def go_probe_of(client):
    def probe(b, feature):
        if "binary" not in _go:
            raise AssertionError(_go.get("error", "the Go probe was not built"))
        t = _topic(client, feature)
        roundtrip.create_topic(b, t, 2)
        r = subprocess.run([str(_go["binary"]), client, b, feature, t], capture_output=True, timeout=120)
        if r.returncode != 0 or r.stdout.decode().strip() != "ok":
            # The probe's last line says why; a Go panic's first line does.
            lines = r.stderr.decode().strip().splitlines() or [f"exit {r.returncode}"]
            raise AssertionError(next((l for l in lines if l.startswith("panic:")), lines[-1])[:400])
    return probe


PROBES = {
    "kcat": kcat_probe,
    "confluent": confluent_probe,
    "kafka-python": kafka_python_probe,
    "aiokafka": aiokafka_probe,
    "kafkajs": kafkajs_probe,
    "sarama": go_probe_of("sarama"),
    "kafka-go": go_probe_of("kafka-go"),
}
NOTES = {
    ("kafkajs", "compression"): "gzip only: kafkajs needs separate codec packages for snappy, lz4 and zstd",
    ("sarama", "groups"): "with `Consumer.Offsets.Retention` set, sarama commits with OffsetCommit v2; "
                          "with its default (0) it sends v1, which silt refuses (as Kafka 4.0 does)",
    ("sarama", "admin"): "`ClusterAdmin.DescribeConfig` and `ListTopics` send DescribeConfigs v0, which silt "
                         "refuses (as Kafka 4.0 does); the probe sends v1 with sarama's `DescribeConfigsRequest`",
    ("kafka-go", "offsets_for_times"): "ListOffsets v1 (`Conn.ReadOffset`); the records are written with sarama's "
                                       "request types (one batch, its maximum timestamp set), since silt refuses "
                                       "kafka-go 0.2.1's Produce v2",
}
# Every Kafka API key: its name and the versions Kafka 4.x defines (the
# ranges of the kafka-protocol crate silt is built on).
KAFKA_APIS = {
    0: ('Produce', 3, 13),
    1: ('Fetch', 4, 18),
    2: ('ListOffsets', 1, 10),
    3: ('Metadata', 0, 13),
    8: ('OffsetCommit', 2, 9),
    9: ('OffsetFetch', 1, 9),
    10: ('FindCoordinator', 0, 6),
    11: ('JoinGroup', 0, 9),
    12: ('Heartbeat', 0, 4),
    13: ('LeaveGroup', 0, 5),
    14: ('SyncGroup', 0, 5),
    15: ('DescribeGroups', 0, 6),
    16: ('ListGroups', 0, 5),
    17: ('SaslHandshake', 0, 1),
    18: ('ApiVersions', 0, 4),
    19: ('CreateTopics', 2, 7),
    20: ('DeleteTopics', 1, 6),
    21: ('DeleteRecords', 0, 2),
    22: ('InitProducerId', 0, 5),
    23: ('OffsetForLeaderEpoch', 2, 4),
    24: ('AddPartitionsToTxn', 0, 5),
    25: ('AddOffsetsToTxn', 0, 4),
    26: ('EndTxn', 0, 5),
    27: ('WriteTxnMarkers', 1, 1),
    28: ('TxnOffsetCommit', 0, 5),
    29: ('DescribeAcls', 1, 3),
    30: ('CreateAcls', 1, 3),
    31: ('DeleteAcls', 1, 3),
    32: ('DescribeConfigs', 1, 4),
    33: ('AlterConfigs', 0, 2),
    34: ('AlterReplicaLogDirs', 1, 2),
    35: ('DescribeLogDirs', 1, 4),
    36: ('SaslAuthenticate', 0, 2),
    37: ('CreatePartitions', 0, 3),
    38: ('CreateDelegationToken', 1, 3),
    39: ('RenewDelegationToken', 1, 2),
    40: ('ExpireDelegationToken', 1, 2),
    41: ('DescribeDelegationToken', 1, 3),
    42: ('DeleteGroups', 0, 2),
    43: ('ElectLeaders', 0, 2),
    44: ('IncrementalAlterConfigs', 0, 1),
    45: ('AlterPartitionReassignments', 0, 1),
    46: ('ListPartitionReassignments', 0, 0),
    47: ('OffsetDelete', 0, 0),
    48: ('DescribeClientQuotas', 0, 1),
    49: ('AlterClientQuotas', 0, 1),
    50: ('DescribeUserScramCredentials', 0, 0),
    51: ('AlterUserScramCredentials', 0, 0),
    52: ('Vote', 0, 2),
    53: ('BeginQuorumEpoch', 0, 1),
    54: ('EndQuorumEpoch', 0, 1),
    55: ('DescribeQuorum', 0, 2),
    56: ('AlterPartition', 2, 3),
    57: ('UpdateFeatures', 0, 2),
    58: ('Envelope', 0, 0),
    59: ('FetchSnapshot', 0, 1),
    60: ('DescribeCluster', 0, 2),
    61: ('DescribeProducers', 0, 0),
    62: ('BrokerRegistration', 0, 4),
    63: ('BrokerHeartbeat', 0, 1),
    64: ('UnregisterBroker', 0, 0),
    65: ('DescribeTransactions', 0, 0),
    66: ('ListTransactions', 0, 2),
    67: ('AllocateProducerIds', 0, 0),
    68: ('ConsumerGroupHeartbeat', 0, 1),
    69: ('ConsumerGroupDescribe', 0, 1),
    70: ('ControllerRegistration', 0, 0),
    71: ('GetTelemetrySubscriptions', 0, 0),
    72: ('PushTelemetry', 0, 0),
    73: ('AssignReplicasToDirs', 0, 0),
    74: ('ListConfigResources', 0, 1),
    75: ('DescribeTopicPartitions', 0, 0),
    76: ('ShareGroupHeartbeat', 1, 1),
    77: ('ShareGroupDescribe', 1, 1),
    78: ('ShareFetch', 1, 1),
    79: ('ShareAcknowledge', 1, 1),
    80: ('AddRaftVoter', 0, 0),
    81: ('RemoveRaftVoter', 0, 0),
    82: ('UpdateRaftVoter', 0, 0),
    83: ('InitializeShareGroupState', 0, 0),
    84: ('ReadShareGroupState', 0, 0),
    85: ('WriteShareGroupState', 0, 0),
    86: ('DeleteShareGroupState', 0, 0),
    87: ('ReadShareGroupStateSummary', 0, 0),
    90: ('DescribeShareGroupOffsets', 0, 0),
    91: ('AlterShareGroupOffsets', 0, 0),
    92: ('DeleteShareGroupOffsets', 0, 0),
}

# How silt's answer differs from Kafka's, per API key; "not served" rows
# say why. Served APIs without a note behave as Kafka's.
API_NOTES = {
    0: "acks=1 and acks=all answer once the segment holding the batch is committed to object storage (acks=0 gets no answer); batches are stored as sent (no recompression); idempotent producers deduplicated",
    1: "records come from segment objects through the block cache; read_committed stops at the last stable offset and lists the aborted transactions, as Kafka",
    2: "by timestamp: the first record at or after it; max timestamp supported",
    3: "leaders spread over live agents by rendezvous hashing, per client zone (`client.id` `silt_az=`); replicas and ISR are the leader alone",
    8: "offsets live in the metadata store, fenced per coordinator; v9 checks the member epoch of consumer-protocol groups",
    9: "v9 checks the member epoch of consumer-protocol groups when one is given",
    15: "classic groups; a consumer-protocol group is GROUP_ID_NOT_FOUND, as Kafka",
    10: "groups and transactional ids: one live agent each by rendezvous hashing (any agent could serve either: the state is in the metadata store)",
    11: "classic protocol, KIP-345 static membership and KIP-394 member ids; a consumer-protocol group with members is INCONSISTENT_GROUP_PROTOCOL",
    19: "manual replica assignment refused; replication factor reported as 1",
    22: "with a transactional id: the next epoch (an open transaction of the old one is aborted, the old producer fenced); KIP-360 producer id and epoch checked",
    23: "one leader epoch (0): its end offset is the high watermark",
    24: "v4+ (KIP-890 verification, broker to broker) not served",
    26: "one record in the metadata store ends the transaction on every partition (no prepared state); markers are control batches in one object",
    28: "pending offsets become the group's offsets in the same metadata-store transaction as the end of the transaction",
    27: "not served: broker-to-broker",
    32: "broker and topic resources (docs/kafka-configs.md); broker loggers not served",
    33: "topic configs only", 44: "topic configs only; APPEND and SUBTRACT on list configs",
    34: "one virtual log dir per agent (its bucket): moving to it succeeds, any other path is LOG_DIR_NOT_FOUND",
    35: "one virtual log dir per agent (its bucket) with the partitions it leads and their bytes in object storage; sizes unknown (-1)",
    38: "not served: delegation tokens are not offered", 39: "not served: delegation tokens are not offered",
    40: "not served: delegation tokens are not offered", 41: "not served: delegation tokens are not offered",
    43: "elections succeed at once: any agent serves any partition",
    45: "a new replica list is INVALID_REPLICA_ASSIGNMENT (no replicas); cancelling is NO_REASSIGNMENT_IN_PROGRESS",
    46: "never any in progress",
    48: "not served: client quotas are not offered", 49: "not served: client quotas are not offered",
    57: "not served: no feature flags to update",
    60: "the controller is the first live agent",
    61: "the idempotent producers each partition keeps",
    65: "from the replicated state", 66: "each agent lists the transactional ids it coordinates",
    68: "KIP-848 groups: server-side assignors `uniform` (sticky, balanced) and `range`; a partition moves only after its owner revoked it; state persisted before each answer that reveals a change, so a new coordinator resumes the group; pattern subscriptions resolved by the coordinator (RE2, whole names, topics the principal may describe); a classic group with members is GROUP_ID_NOT_FOUND",
    69: "authorized operations not computed (reported as unknown)",
    71: "not served: client telemetry (KIP-714) is not offered; clients go on without it",
    72: "not served: client telemetry (KIP-714) is not offered",
    74: "not served", 75: "not served: Metadata answers the same",
    76: "not served: share groups (KIP-932) are not offered", 77: "not served: share groups (KIP-932) are not offered",
    78: "not served: share groups (KIP-932) are not offered", 79: "not served: share groups (KIP-932) are not offered",
}
# Keys that only Kafka's brokers and controllers send one another.
INTERNAL_APIS = {52, 53, 54, 55, 56, 58, 59, 62, 63, 64, 67, 70, 73, 80, 81, 82, 83, 84, 85, 86, 87}
# The share-group state and offsets APIs of KIP-932 (admin and internal).
SHARE_APIS = {90, 91, 92}


# How silt's group coordinator follows Kafka's group rules (each is checked
# by the agent's tests with raw requests: agent/src/group/ and
# agent/src/runtime.rs).
GROUP_RULES = [
    "## Consumer-group rules", "",
    "- **KIP-394**: JoinGroup v4+ from a new member without `group.instance.id` answers",
    "  `MEMBER_ID_REQUIRED` with its member id; the member joins with that id. Ids never used",
    "  expire after the session timeout, so abandoned first joins leave no phantom members.",
    "- **KIP-345** (static membership): a member rejoining with its `group.instance.id` takes its",
    "  old place and assignment without a rebalance; the replaced member id gets",
    "  `FENCED_INSTANCE_ID` on JoinGroup, LeaveGroup, a parked SyncGroup and commits.",
    "- The protocol is chosen by member votes; an empty group id is `INVALID_GROUP_ID`; a",
    "  commit with generation -1 and a member id is `UNKNOWN_MEMBER_ID`; a generation for a group",
    "  not held is `ILLEGAL_GENERATION`; OffsetFetch v0-1 put errors on each partition.",
    "- Group state (generation, members, assignments) survives a coordinator move: the next",
    "  coordinator resumes the group without a rebalance; coordinators are fenced in the",
    "  metadata store, so a stale one cannot overwrite offsets.",
    "- **KIP-848** (`group.protocol=consumer`): ConsumerGroupHeartbeat v0-1 and",
    "  ConsumerGroupDescribe v0-1 beside the classic protocol, sharing its offsets. The",
    "  coordinator computes the target assignment with `uniform` (default: balanced, sticky) or",
    "  `range` (`group.remote.assignor`); a member gives up partitions before another gets them",
    "  (its epoch stays until it confirms, or it is removed after its rebalance timeout); a lost",
    "  answer is forgiven (previous epoch, owning no more than it was given); static members",
    "  (epoch -2) keep their partitions until the session timeout; OffsetCommit/OffsetFetch v9",
    "  check the member epoch (`STALE_MEMBER_EPOCH`, `UNKNOWN_MEMBER_ID`). The group state is",
    "  persisted before an answer reveals a change, so a coordinator move keeps every epoch and",
    "  assignment. Mixed groups are refused: a classic JoinGroup to a consumer-protocol group is",
    "  `INCONSISTENT_GROUP_PROTOCOL`, a heartbeat to a classic group with members",
    "  `GROUP_ID_NOT_FOUND` (with a message), DescribeGroups of a consumer-protocol group",
    "  `GROUP_ID_NOT_FOUND` (as Kafka). Pattern subscriptions (`SubscribedTopicRegex`, RE2",
    "  syntax, whole names) are resolved by the coordinator against the topics the principal",
    "  may describe, and follow topics as they come and go.",
    "  Settings: `group.consumer.session.timeout.ms` (45 s), `group.consumer.heartbeat.interval.ms`",
    "  (5 s), `group.consumer.max.size`, `group.consumer.assignors`.",
    "",
]


# What silt's topics offer beyond the basics (each checked by its own tests).
TOPIC_FEATURES = [
    "## Topic features",
    "",
    "- **Compacted topics** (`cleanup.policy=compact` or `compact,delete`, set at creation or",
    "  with AlterConfigs/IncrementalAlterConfigs): the cleaner keeps the last record of every",
    "  key with Kafka's guarantees (offsets and order never change; a removed offset reads as",
    "  the next surviving record; tombstones stay `delete.retention.ms` after the cleaner first",
    "  passed them); `delete.retention.ms`, `min.compaction.lag.ms`, `max.compaction.lag.ms`",
    "  and `min.cleanable.dirty.ratio` are honoured. A record without a key is",
    "  `INVALID_RECORD`, DeleteRecords on a topic without the `delete` policy",
    "  `POLICY_VIOLATION`. Checked with librdkafka and every codec by",
    "  `tests/e2e/test_compacted.py`, against a model by the tiering tests, and under faults by",
    "  the simulation (`agent/src/sim.rs`).",
    "",
]


SECURITY_FEATURES = [
    '## Security features per client',
    '',
    'Checked by `tests/e2e/test_security.py` against a two-agent cluster on etcd',
    '(SASL_SSL and SSL listeners, the ACL authorizer):',
    '',
    '| client | SASL_SSL SCRAM-SHA-512 | SASL_SSL SCRAM-SHA-256 | SASL_SSL PLAIN | SSL client certificate | ACL errors | admin: users, ACLs | re-authentication (KIP-368) |',
    '|---|---|---|---|---|---|---|---|',
    '| confluent-kafka 2.16 / librdkafka 2.16 | ✅ produce, consume, groups | ✅ (through the other agent) | ✅ | ✅ principal from the subject | ✅ produce, group join, create, delete, Metadata filtering, deny | ✅ AlterUser/DescribeUserScramCredentials, Create/DeleteAcls | ✅ re-authenticates on its connection |',
    '| kafka-python 3.0 | ✅ produce, consume, commit | — | ✅ | ✅ | — | — | ✅ its own re-authentication fails; it reconnects and goes on |',
    '| kcat 1.7.1 / librdkafka 2.0.2 (Debian) | — | ✅ produce, consume | — | — | — | — | — |',
    '',
    'Refused, with the connection closed and the agent serving the others: a',
    'wrong password, an unknown user, a mechanism the user has no credential',
    'for, plain text on a TLS port, an expired client certificate, a certificate',
    'of an untrusted CA.',
    "",
]


def api_table(versions) -> list[str]:
    """Every Kafka API key with the versions silt serves (from its
    ApiVersions answer) and how silt differs."""
    served = {key: (lo, hi) for key, _, lo, hi in versions}
    unknown = set(served) - set(KAFKA_APIS)
    assert not unknown, f"silt advertises API keys this table does not know: {unknown}"
    lines = ["## Kafka API keys", "",
             "Every API key of Kafka 4.x, the versions Kafka defines and the versions silt serves",
             "(from its ApiVersions answer), with how silt's answer differs from Kafka's.", "",
             "| API | key | Kafka | silt | difference |", "|---|---|---|---|---|"]
    for key, (name, klo, khi) in sorted(KAFKA_APIS.items()):
        if key in served:
            lo, hi = served[key]
            mine = f"{lo}–{hi}"
            note = API_NOTES.get(key, "")
            assert not note.startswith("not served"), f"{name} is served but noted as not served"
        else:
            mine = "—"
            if key in INTERNAL_APIS:
                note = "not served: between Kafka brokers and controllers only"
            elif key in SHARE_APIS:
                note = "not served: share groups (KIP-932) are not offered"
            else:
                note = API_NOTES.get(key)
                assert note and note.startswith("not served"), f"{name} ({key}) is not served: say why"
        lines.append(f"| {name} | {key} | {klo}–{khi} | {mine} | {note} |")
    return lines


def write_matrix(results, versions, path: Path):
    lines = [
        "# Client compatibility",
        "",
        "Written by `scripts/compat-report.sh` (`tests/e2e/test_compat_matrix.py` against `silt dev`);",
        f"last run {time.strftime('%Y-%m-%d', time.gmtime())}. ✅ pass, ❌ fail (with the reason), ⛔ refused: the",
        "client speaks only request versions older than silt serves (Kafka 4.0's floor), — not applicable.",
        "",
        "| client | " + " | ".join(f.replace("_", " ") for f in FEATURES) + " |",
        "|---|" + "---|" * len(FEATURES),
    ]
    footnotes = []
    for key, label in CLIENTS:
        cells = []
        for f in FEATURES:
            ok, why = results[(key, f)]
            if ok is None:
                footnotes.append(f"- {label}, {f.replace('_', ' ')}: not applicable — {why}")
                cells.append("—")
            elif ok == "refused":
                footnotes.append(f"- {label}, {f.replace('_', ' ')}: refused — {why}")
                cells.append("⛔")
            elif ok:
                note = NOTES.get((key, f))
                if note:
                    footnotes.append(f"- {label}, {f.replace('_', ' ')}: {note}")
                cells.append("✅")
            else:
                footnotes.append(f"- {label}, {f.replace('_', ' ')}: **fails** — {why}")
                cells.append("❌")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Features: produce (acks=all, keys, headers), fetch (from offset 0), compression",
              "(gzip, snappy, lz4, zstd), groups (subscribe, consume, commit, committed offsets),",
              "idempotence (idempotent producer), admin (add partitions, describe configs, delete",
              "topic; kafkajs and sarama also delete records), offsets for times, transactions (a",
              "transactional producer commits 6 records and aborts 4 over two partitions; a",
              "read_committed consumer reads exactly the 6), consumer protocol (the groups cell",
              "with `group.protocol=consumer`, KIP-848: server-side assignment). Every cell reads back",
              "what it wrote: the records, committed offsets, partition counts.", "",
              "The Go clients are the sources Debian packages (`golang-github-shopify-sarama-dev`,",
              "`golang-github-segmentio-kafka-go-dev`), built offline with Debian's Go (`golang-go`) in",
              "GOPATH mode against `/usr/share/gocode/src`, into one probe program",
              "(`tests/e2e/compat/go/`) built once per test session.", ""]
    if footnotes:
        lines += ["## Notes", "", *footnotes, ""]
    lines += GROUP_RULES
    lines += TOPIC_FEATURES
    lines += SECURITY_FEATURES
    lines += api_table(versions)
    path.write_text("\n".join(lines) + "\n")


def _refusal_logged(silt, since: int, refusal: str) -> bool:
    """Whether silt's log, from byte `since` on, shows a connection closed
    for `refusal` (logged at debug level by the agent's server)."""
    deadline = time.monotonic() + 3
    while True:
        with open(silt.log_path, "rb") as log:
            log.seek(since)
            if f"reason={refusal} ".encode() in log.read():
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


# The agent's server logs why it closed a connection at debug level.
@pytest.mark.silt_env(SILT_LOG="info,silt_agent::server=debug")
def test_compatibility_matrix(silt, tmp_path, go_probe):
    results = {}
    for key, _ in CLIENTS:
        for f in FEATURES:
            if (key, f) in NOT_APPLICABLE:
                results[(key, f)] = (None, NOT_APPLICABLE[(key, f)])
                continue
            since = silt.log_path.stat().st_size
            try:
                PROBES[key](silt.bootstrap, f)
                results[(key, f)] = (True, "")
            except Exception as e:  # noqa: BLE001 - every failure becomes a cell
                results[(key, f)] = (False, f"{type(e).__name__}: {e}".replace("\n", " ")[:300])
            if (key, f) in REFUSED:
                why, step, refusal = REFUSED[(key, f)]
                ok, failure = results[(key, f)]
                if ok:
                    results[(key, f)] = (False, f"passes, but REFUSED says silt refuses it ({why}): update REFUSED")
                elif re.search(step, failure) and _refusal_logged(silt, since, refusal):
                    results[(key, f)] = ("refused", f"{why} (silt: {refusal})")
                else:
                    results[(key, f)] = (False, f"{failure}; expected a failure at '{step}' "
                                                f"with silt logging '{refusal}'")
            roundtrip.log(f"{key} {f}: {results[(key, f)]}")
    report = Path(os.environ.get("SILT_COMPAT_REPORT") or tmp_path / "compatibility.md")
    write_matrix(results, rawkafka.api_versions(silt.bootstrap), report)
    roundtrip.log(f"compatibility report written to {report}")
    failed = {k: v[1] for k, v in results.items() if v[0] is False}
    assert not failed, failed
