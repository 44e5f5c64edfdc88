"""Client compatibility matrix: every client library against every feature,
written as a report together with the API versions silt advertises. Every
cell that fails says why; the test fails if a cell that the client supports
fails.

The report goes to the test's temporary directory (its path is logged), or
to $SILT_COMPAT_REPORT. docs/compatibility.md is regenerated with

    scripts/compat-report.sh
"""

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

import rawkafka
import roundtrip

COMPAT = Path(__file__).resolve().parent / "compat"
FEATURES = ["produce", "fetch", "compression", "groups", "idempotence", "admin", "offsets_for_times"]
CLIENTS = [
    ("kcat", "kcat 1.7.1 / librdkafka 2.0.2 (Debian)"),
    ("confluent", "confluent-kafka 2.16 / librdkafka 2.16"),
    ("kafka-python", "kafka-python 3.0"),
    ("aiokafka", "aiokafka 0.14"),
    ("kafkajs", "kafkajs 2.2.4 (npm)"),
]
# Cells a client cannot exercise at all, with the reason.
NOT_APPLICABLE = {
    ("kcat", "admin"): "kcat has no admin commands beyond the metadata listing (-L), which is covered",
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

def confluent_probe(b, feature):
    t = _topic("confluent", feature)
    roundtrip.create_topic(b, t, 2)
    conf = {"bootstrap.servers": b}
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
    elif feature == "groups":
        c = Consumer({**conf, "group.id": f"{t}-g", "auto.offset.reset": "earliest", "enable.auto.commit": False})
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


# ---------------------------------------------------------------- kafkajs

def kafkajs_probe(b, feature):
    if not (COMPAT / "node_modules" / "kafkajs").exists():
        raise AssertionError("kafkajs is not installed (scripts/install-test-deps.sh runs npm install)")
    t = _topic("kafkajs", feature)
    r = subprocess.run(["node", str(COMPAT / "kafkajs_probe.js"), b, feature, t], capture_output=True, timeout=120)
    out = r.stdout.decode().strip().splitlines()
    result = json.loads(out[-1]) if out else {"ok": False, "why": r.stderr.decode()[-300:]}
    assert result["ok"], result["why"]


PROBES = {
    "kcat": kcat_probe,
    "confluent": confluent_probe,
    "kafka-python": kafka_python_probe,
    "aiokafka": aiokafka_probe,
    "kafkajs": kafkajs_probe,
}
NOTES = {
    ("kafkajs", "compression"): "gzip only: kafkajs needs separate codec packages for snappy, lz4 and zstd",
}


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


def write_matrix(results, versions, path: Path):
    lines = [
        "# Client compatibility",
        "",
        "Written by `scripts/compat-report.sh` (`tests/e2e/test_compat_matrix.py` against `silt dev`);",
        f"last run {time.strftime('%Y-%m-%d', time.gmtime())}. ✅ pass, ❌ fail (with the reason), — not applicable.",
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
              "topic; kafkajs also delete records), offsets for times.", ""]
    if footnotes:
        lines += ["## Notes", "", *footnotes, ""]
    lines += GROUP_RULES
    lines += TOPIC_FEATURES
    lines += SECURITY_FEATURES
    lines += ["## API versions silt advertises", "", "| API | key | versions |", "|---|---|---|"]
    lines += [f"| {name} | {key} | {lo}–{hi} |" for key, name, lo, hi in versions]
    path.write_text("\n".join(lines) + "\n")


def test_compatibility_matrix(silt, tmp_path):
    results = {}
    for key, _ in CLIENTS:
        for f in FEATURES:
            if (key, f) in NOT_APPLICABLE:
                results[(key, f)] = (None, NOT_APPLICABLE[(key, f)])
                continue
            try:
                PROBES[key](silt.bootstrap, f)
                results[(key, f)] = (True, "")
            except Exception as e:  # noqa: BLE001 - every failure becomes a cell
                results[(key, f)] = (False, f"{type(e).__name__}: {e}".replace("\n", " ")[:300])
            roundtrip.log(f"{key} {f}: {results[(key, f)]}")
    report = Path(os.environ.get("SILT_COMPAT_REPORT") or tmp_path / "compatibility.md")
    write_matrix(results, rawkafka.api_versions(silt.bootstrap), report)
    roundtrip.log(f"compatibility report written to {report}")
    failed = {k: v[1] for k, v in results.items() if v[0] is False}
    assert not failed, failed
