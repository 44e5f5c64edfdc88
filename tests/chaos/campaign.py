#!/usr/bin/env python3
"""A fault campaign against real processes: does an acknowledged write stay
where it was acknowledged, once, whatever fails?

Each run starts its own stack on 127.0.0.1 (ports chosen at run time):
a three-member etcd, moto behind a fault-injecting HTTP proxy (s3proxy.py)
and three `silt agent` processes (tests/e2e/cluster.py) with
SILT_CHECKPOINT_EVERY=20, so that checkpoints race with everything else,
and the tiering jobs every 2 s with small sizes (FAST_JOBS: compaction swaps
index entries, GC deletes objects 30 s after they leave the index);
in some runs (chosen by the seed) the agents also lose the answers to a
few commit-log writes (SILT_TEST_FAULTS commit_ack_loss_rate).

Every second run (odd seeds; --compacted always|never overrides) is
compacted: the topic has cleanup.policy=compact and
min.cleanable.dirty.ratio=0.01, the agents run the cleaner every 2 s
(CLEANER_JOBS), and every record has one of KEYS_PER_PARTITION keys of its
partition (record_key), so that the cleaner removes superseded records
while the faults happen. The history records each record's key and the
topic's kind (history["config"]); checker.py's rules 1c-6c apply.

Clients (confluent-kafka), on a topic with 6 partitions:
    idem1, idem2   idempotent producers writing through agents a1 and a2
    plain3         non-idempotent, librdkafka retries=0, the application
                   sends a record again after a failed delivery (up to 3
                   times), writing through a3
    plain4         non-idempotent, retries=0, never resends; partitions
                   spread over all agents
    g1, g2         one consumer group: poll, commit synchronously
    txn1           a transactional producer on a second topic of 3
                   partitions: transactions of 1-6 records, four in five
                   committed, the rest aborted (TxnWorker); the topic is
                   read read_committed through every agent at the end
Producers give up on a record after message.timeout.ms = 60 s
(--message-timeout). Each record's value names its producer and sequence number
(checker.record_value); records have no key, except in compacted runs
(record_key). Every delivery report, consumed record and commit goes into
the run's history.json with its time.

The nemesis, for the run's duration, picks faults one after another with a
random generator seeded by the run's seed (printed and recorded):
    agent_kill          kill -9 an agent, start it again 1-5 s later
    agent_pause         SIGSTOP an agent for 1-8 s, then SIGCONT
    etcd_leader_kill    kill -9 the etcd leader, restart it on its data
                        directory 1-5 s later (it rejoins as a member)
    etcd_follower_kill  the same for a follower
    etcd_pause          SIGSTOP an etcd member (leader or not) for 1-8 s
    s3_errors           for 1-6 s the proxy fails 20-100 % of requests with
                        503 before forwarding, 503 after forwarding (the
                        write happened, the answer is lost) or a dropped
                        connection after forwarding
    s3_latency          for 2-8 s every object-store request waits 0.1-2 s
Then everything is healed, the producers finish, the group catches up and
the topic is read from offset 0 through every agent. checker.py decides;
its docstring states the rules.

    python3 tests/chaos/campaign.py --quick                 # 4 short runs, about 3-4 min
    python3 tests/chaos/campaign.py --runs 20 --duration 60  # writes docs/reliability.md
    python3 tests/chaos/campaign.py --seed 4711 --runs 1 --duration 60 --no-report  # replay
    ... --faults agent_kill,s3_errors     only these fault kinds
    ... --compacted always                every run on a compacted topic
    ... --agent-log debug --client-debug msg,eos,protocol   diagnose a replay

Every run prints one line: `run <n> seed <s>[ compacted]: <faults> faults,
<acked> acked, <anomalies> anomalies: OK|FAIL ...`. A failing run keeps its
directory (history.json, verdict.txt, every process log) and prints the
command that replays its seed; a passing run keeps only history.json and
verdict.txt. The timing of real processes is not reproducible, but the
seed fixes the fault schedule, the records and their partitions.

Environment: SILT_BIN, the silt binary (default
/var/tmp/silt-target/debug/silt).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shlex
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "tests" / "e2e"), str(ROOT / "localstack")]
# A read that makes no progress for this long after healing is a failed read.
os.environ.setdefault("SILT_E2E_CONSUME_STALL_TIMEOUT", "30")
os.environ.setdefault("SILT_E2E_CONSUME_TIMEOUT", "180")

import checker  # noqa: E402
import cluster as cl  # noqa: E402
import groupkit as gk  # noqa: E402
import roundtrip as rt  # noqa: E402
import stack  # noqa: E402

PARTITIONS = 6
AGENTS = 3
CHECKPOINT_EVERY = 20
# librdkafka's message.timeout.ms. Longer than any fault lasts: when an
# idempotent producer's messages time out inside a request still in flight,
# librdkafka bumps the epoch and sends the request's other messages again
# under the new epoch, so a broker that still appends the first request
# stores them twice (a client-side path; --message-timeout 15 exercises it).
MESSAGE_TIMEOUT_S = 60.0
RESENDS = 3
QUICK = {"runs": 4, "duration": 30.0, "rate": 80.0}
FULL = {"runs": 10, "duration": 60.0, "rate": 100.0}
REPORT = ROOT / "docs" / "reliability.md"
FAULT_KINDS = ("agent_kill", "agent_pause", "etcd_leader_kill", "etcd_follower_kill",
               "etcd_pause", "s3_errors", "s3_latency")
# Compacted runs: the topic's configs (a dirty ratio this low makes every
# cleaner pass find work), and keys per partition - with about 1,600
# records per partition in the quick mode, each key is overwritten some 30
# times, by every producer.
COMPACTED_TOPIC = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
KEYS_PER_PARTITION = 50
COMPACTED_MODES = ("auto", "always", "never")


def say(msg: str) -> None:
    print(msg, flush=True)


def decode(value: bytes | None) -> str | None:
    """A value read, as the history stores it (checker.compact)."""
    return None if value is None else checker.compact(value.decode(errors="backslashreplace"))


def is_compacted(seed: int, mode: str) -> bool:
    """Whether the run of `seed` is on a compacted topic: every odd seed
    under "auto", so that any two consecutive runs include one."""
    return mode == "always" or (mode == "auto" and seed % 2 == 1)


def record_key(producer: str, seq: int, partition: int) -> str:
    """The key of record `seq` of `producer` in a compacted run: one of
    KEYS_PER_PARTITION keys of its partition, shared by every producer."""
    digest = hashlib.blake2b(f"{producer}|{seq}".encode(), digest_size=8).digest()
    return f"p{partition}-k{int.from_bytes(digest, 'big') % KEYS_PER_PARTITION}"


# --------------------------------------------------------------------------
# The object-store fault proxy, as a process
# --------------------------------------------------------------------------


class S3Proxy(stack.Server):
    """s3proxy.py in front of the S3 server at `upstream`; faults are
    switched on and off through its control port."""

    name = "s3 fault proxy"

    def __init__(self, workdir: Path, upstream: str):
        port, control = stack.free_ports(2)
        super().__init__(workdir / "s3proxy.log", port, control)
        self.upstream = upstream

    @property
    def endpoint(self) -> str:
        return f"http://{self.addr}"

    def command(self) -> list[str]:
        return [sys.executable, str(HERE / "s3proxy.py"), "--listen", str(self.port),
                "--control", str(self.http_port), "--upstream", self.upstream]

    def _control(self, path: str, spec: dict | None = None) -> dict:
        url = f"http://{stack.HOST}:{self.http_port}{path}"
        r = stack.http(url, None if spec is None else json.dumps(spec).encode(), timeout=5.0)
        if not r or r[0] != 200:
            raise RuntimeError(f"{self.name}: {path} answered {r}")
        return json.loads(r[1])

    def fault(self, **spec) -> None:
        self._control("/fault", spec)

    def heal(self) -> None:
        self._control("/heal", {})

    def stats(self) -> dict:
        return self._control("/stats")


# --------------------------------------------------------------------------
# What happened, with times
# --------------------------------------------------------------------------


class History:
    """Everything the checker needs, collected from several threads."""

    def __init__(self, **meta):
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.data = {"format": checker.FORMAT, **meta, "producers": {}, "reports": [],
                     "group": {"consumed": [], "commits": [], "final_committed": {},
                               "client_errors": []},
                     "reads": {}, "nemesis": [], "incidents": [], "load_errors": []}
        self.ids: dict[int, tuple[str, int]] = {}  # Load's record idx -> (producer, seq)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def add(self, what: str, row) -> None:
        with self.lock:
            self.data[what].append(row)

    def report(self, name: str, idx: int, err, msg, resent: bool) -> None:
        prod, seq = self.ids[idx]
        if err is None:
            row = [self.now(), prod, seq, msg.partition(), msg.offset(), None, False]
        else:
            row = [self.now(), prod, seq, msg.partition(), None, f"{err.name()}: {err.str()}",
                   resent]
        self.add("reports", row)

    def consumed(self, consumer: str, msgs) -> None:
        t = self.now()
        rows = [[t, consumer, p, o, decode(v)] for p, o, v in msgs]
        with self.lock:
            self.data["group"]["consumed"] += rows

    def commit(self, t_start: float, consumer: str, offsets: dict, ok: dict, err) -> None:
        with self.lock:
            self.data["group"]["commits"].append(
                [t_start, self.now(), consumer, offsets, ok, err])

    def incident(self, kind: str, target: str, text: str) -> None:
        say(f"  ! {kind} {target}: {text.splitlines()[0] if text else ''}")
        self.add("incidents", [self.now(), kind, target, text[-3000:]])

    def write(self, path: Path) -> None:
        with self.lock:
            path.write_text(json.dumps(self.data) + "\n")


TXN_PARTITIONS = 3


class TxnWorker(threading.Thread):
    """A transactional producer (confluent-kafka) on its own topic:
    transactions of 1-6 records over its partitions, committed four times in
    five, else aborted, one after another until stopped; each outcome as
    the producer was told it. An abortable error aborts the transaction; a
    fatal one (fenced, for instance by the coordinator's timeout) starts a
    new producer, which aborts whatever the old one left open."""

    def __init__(self, history: History, bootstrap: str, topic: str, rng: random.Random,
                 logger: logging.Logger):
        super().__init__(name="txn1", daemon=True)
        self.history, self.bootstrap, self.topic, self.rng = history, bootstrap, topic, rng
        self.logger = logger
        self.stop_flag = threading.Event()
        self.error: str | None = None
        history.data["transactions"] = {"txns": [], "reads": {}}

    def producer(self):
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": f"{self.topic}-tx",
                      "transaction.timeout.ms": 10_000, "message.timeout.ms": 10_000,
                      "logger": self.logger})
        p.init_transactions(60)
        return p

    def note(self, txn: int, n: int, outcome: str, err: str | None) -> None:
        with self.history.lock:
            self.history.data["transactions"]["txns"].append(
                [self.history.now(), txn, n, outcome, err])

    def run(self) -> None:
        from confluent_kafka import KafkaException
        p = None
        txn = 0
        while not self.stop_flag.is_set():
            try:
                if p is None:
                    p = self.producer()
            except KafkaException as e:
                self.logger.info(f"txn1: init_transactions: {e}")
                time.sleep(1)
                continue
            txn += 1
            n = 1 + self.rng.randrange(6)
            commit = self.rng.random() < 0.8
            try:
                p.begin_transaction()
                for i in range(n):
                    p.produce(self.topic, checker.txn_value(txn, i, n).encode(),
                              partition=(txn + i) % TXN_PARTITIONS)
                if commit:
                    p.commit_transaction(30)
                    self.note(txn, n, "committed", None)
                else:
                    p.abort_transaction(30)
                    self.note(txn, n, "aborted", None)
            except KafkaException as e:
                err = e.args[0]
                outcome = "unknown"
                try:
                    if err.txn_requires_abort():
                        p.abort_transaction(30)
                        outcome = "aborted"
                    elif err.retriable() and commit:
                        # A commit that timed out may be retried.
                        p.commit_transaction(30)
                        outcome = "committed"
                    else:
                        p = None
                except KafkaException as e2:
                    self.logger.info(f"txn1: ending transaction {txn} after {err}: {e2}")
                    p = None
                self.note(txn, n, outcome, str(err))
            time.sleep(0.05)
        if p is not None:
            try:
                p.flush(10)
            except Exception:  # noqa: BLE001
                pass


def read_committed_everything(c: cl.Cluster, topic: str, history: History) -> None:
    """The transactional topic through each agent, read_committed, into
    history['transactions']['reads']."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    for i, a in enumerate(c.agents):
        consumer = Consumer({"bootstrap.servers": a.addr, "group.id": f"txn-reader-{i}",
                             "client.id": c.client_id(i, "txn-reader"),
                             "isolation.level": "read_committed", "enable.auto.commit": False,
                             "enable.partition.eof": True})
        values, eof, error = [], set(), None
        try:
            consumer.assign([TopicPartition(topic, p, 0) for p in range(TXN_PARTITIONS)])
            deadline = time.monotonic() + 60
            while len(eof) < TXN_PARTITIONS:
                if time.monotonic() > deadline:
                    error = f"no end of the topic within 60 s ({sorted(eof)} done)"
                    break
                m = consumer.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                        continue
                    error = str(m.error())
                    break
                eof.discard(m.partition())
                values.append(decode(m.value()))
        except Exception as e:  # noqa: BLE001
            error = repr(e)
        finally:
            consumer.close()
        history.data["transactions"]["reads"][a.agent_id] = {"values": values, "error": error}


class GroupMember(gk.ConfluentWorker):
    """groupkit's consumer (poll, drop records of revoked partitions,
    commit synchronously) with every record and commit timed into the
    history."""

    def __init__(self, name: str, history: History, bootstrap: str, topic: str, group: str,
                 logger: logging.Logger):
        super().__init__(name, gk.Ledger(), bootstrap, topic, group, {"logger": logger})
        self.history = history

    def _poll(self, c):
        out = super()._poll(c)
        if out:
            self.history.consumed(self.name, out)
        return out

    def _commit(self, c, nxt):
        t0 = self.history.now()
        ok, err = super()._commit(c, nxt)
        self.history.commit(t0, self.name, {str(p): o for p, o in nxt.items()},
                            {str(p): v for p, v in ok.items()}, err)
        return ok, err


# --------------------------------------------------------------------------
# The nemesis
# --------------------------------------------------------------------------


class Nemesis(threading.Thread):
    """Injects one fault at a time, chosen by `rng`, until `duration`
    seconds have passed; each fault is healed before the next."""

    def __init__(self, c: cl.Cluster, proxy: S3Proxy, history: History, rng: random.Random,
                 duration: float, kinds: tuple[str, ...] = FAULT_KINDS):
        super().__init__(name="nemesis", daemon=True)
        self.c, self.proxy, self.history, self.rng = c, proxy, history, rng
        self.duration = duration
        self.kinds = kinds
        self.faults: Counter = Counter()
        self.error: str | None = None
        self.paused: set[int] = set()  # PIDs stopped and not yet continued

    def run(self) -> None:
        end = time.monotonic() + self.duration
        try:
            while True:
                time.sleep(self.rng.uniform(0.5, 2.5))
                if time.monotonic() >= end:
                    return
                self.recover_crashes()
                kind = self.rng.choice(self.kinds)
                t = self.history.now()
                done = getattr(self, kind)()
                if done:
                    target, note = done
                    self.faults[kind] += 1
                    self.history.add("nemesis", [t, self.history.now(), kind, target, note])
                    say(f"  nemesis t={t:6.1f}s {kind} {target} {note}")
        except Exception as e:  # a fault that could not be healed
            self.error = repr(e)
            self.history.incident("heal_failed", "nemesis", repr(e))

    # -- helpers -------------------------------------------------------------

    def hold(self, lo: float, hi: float) -> float:
        s = round(self.rng.uniform(lo, hi), 1)
        time.sleep(s)
        return s

    def pause(self, pid: int, lo: float, hi: float) -> float:
        os.kill(pid, signal.SIGSTOP)
        self.paused.add(pid)
        try:
            return self.hold(lo, hi)
        finally:
            os.kill(pid, signal.SIGCONT)
            self.paused.discard(pid)

    def etcd_whole(self) -> bool:
        return all(stack.alive(m) for m in self.c.etcd.members.values())

    def recover_crashes(self) -> None:
        """Agents or etcd members that exited on their own are incidents;
        they are started again so the run goes on."""
        for i, a in enumerate(self.c.agents):
            rc = a.crashed()
            if rc is not None:
                self.history.incident("crashed", a.agent_id, f"exit code {rc}\n{a.log_tail()}")
                self.start_agent(i)
        for name, m in self.c.etcd.members.items():
            if m.get("pid") is not None and not stack.alive(m):
                self.history.incident("crashed", f"etcd {name}",
                                      stack.tail(self.c.etcd.log(name)))
                self.c.etcd.restart(name)

    def start_agent(self, i: int) -> None:
        a = self.c.agents[i]
        a.start(wait=False)
        a.wait_ready(cl.READY_TIMEOUT_S)

    # -- faults: each returns (target, note), or None when skipped -----------

    def agent_kill(self):
        i = self.rng.randrange(AGENTS)
        a = self.c.agents[i]
        if not a.alive():
            return None
        self.c.kill9(i)
        s = self.hold(1, 5)
        self.start_agent(i)
        return a.agent_id, f"down {s}s"

    def agent_pause(self):
        i = self.rng.randrange(AGENTS)
        a = self.c.agents[i]
        if not a.alive():
            return None
        return a.agent_id, f"stopped {self.pause(a.pid, 1, 8)}s"

    def _etcd_kill(self, leader: bool):
        pick = self.rng.random()
        if not self.etcd_whole():
            return None
        try:
            current = self.c.etcd.leader(timeout=5)
        except RuntimeError:
            return None  # members do not agree on a leader yet
        others = sorted(n for n in self.c.etcd.members if n != current)
        name = current if leader else others[int(pick * len(others))]
        self.c.etcd.kill(name)
        s = self.hold(1, 5)
        self.c.etcd.restart(name)
        return f"etcd {name}", f"down {s}s"

    def etcd_leader_kill(self):
        return self._etcd_kill(leader=True)

    def etcd_follower_kill(self):
        return self._etcd_kill(leader=False)

    def etcd_pause(self):
        name = self.rng.choice(sorted(self.c.etcd.members))
        if not self.etcd_whole():
            return None
        try:
            role = "leader" if self.c.etcd.leader(timeout=2) == name else "follower"
        except RuntimeError:
            role = "member"
        pid = self.c.etcd.members[name]["pid"]
        return f"etcd {name} ({role})", f"stopped {self.pause(pid, 1, 8)}s"

    def s3_errors(self):
        mode = self.rng.choice(("before", "after", "drop"))
        rate = self.rng.choice((0.2, 0.5, 1.0))
        self.proxy.fault(error_rate=rate, mode=mode, seed=self.rng.randrange(1 << 30))
        try:
            s = self.hold(1, 6)
        finally:
            self.proxy.heal()
        return "object store", f"{rate:.0%} of requests fail ({mode}) for {s}s"

    def s3_latency(self):
        ms = self.rng.choice((100, 300, 1000, 2000))
        self.proxy.fault(latency_ms=ms)
        try:
            s = self.hold(2, 8)
        finally:
            self.proxy.heal()
        return "object store", f"+{ms}ms per request for {s}s"


# --------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------


def producer_specs(c: cl.Cluster, history: History, rng: random.Random, n: int,
                   logger: logging.Logger, message_timeout: float,
                   compacted: bool = False) -> list:
    """The four producers of the module docstring, n records each; keyed by
    record_key on a compacted topic."""
    common = {"message.timeout.ms": int(message_timeout * 1000), "logger": logger}
    plan = [
        ("idem1", True, 0, {"client.id": c.client_id(0, "idem1"), "compression.type": "lz4",
                            "enable.idempotence": True}),
        ("idem2", True, 0, {"client.id": c.client_id(1, "idem2"), "compression.type": "zstd",
                            "enable.idempotence": True}),
        ("plain3", False, RESENDS, {"client.id": c.client_id(2, "plain3"),
                                    "compression.type": "gzip", "retries": 0}),
        ("plain4", False, 0, {"client.id": "plain4", "compression.type": "none",
                              "retries": 0}),
    ]
    specs = []
    for k, (name, idempotent, resend, conf) in enumerate(plan):
        parts = [rng.randrange(PARTITIONS) for _ in range(n)]
        keys = [record_key(name, seq, p) for seq, p in enumerate(parts)] if compacted else None
        records = []
        for seq, p in enumerate(parts):
            idx = k * 10_000_000 + seq
            history.ids[idx] = (name, seq)
            value = checker.record_value(name, seq).encode()
            records.append(rt.Rec(idx, value.split(b"|")[0] + b"-" + str(seq).encode(), p,
                                  conf["compression.type"], keys[seq].encode() if keys else None,
                                  value, []))
        history.data["producers"][name] = {"idempotent": idempotent, "resend": resend,
                                           "config": conf, "partitions": parts}
        if keys:
            history.data["producers"][name]["keys"] = keys
        specs.append(cl.ProducerSpec(name, records, {**common, **conf}, resend=resend))
    return specs


def create_topic(bootstrap: str, topic: str, config: dict[str, str] | None = None,
                 attempts: int = 4, partitions: int = PARTITIONS) -> None:
    """CreateTopics, again while it fails: with lost commit answers
    (SILT_TEST_FAULTS) it may fail although the topic was created. A topic
    with `config` is then described, so that a run never tests a topic
    without the configs it meant to."""
    for attempt in range(attempts):
        try:
            rt.create_topic(bootstrap, topic, partitions, config=config)
            break
        except AssertionError:
            try:
                rt.wait_for_topic(bootstrap, topic, partitions, timeout=5)
                break
            except AssertionError:
                if attempt == attempts - 1:
                    raise
    if config:
        from confluent_kafka.admin import AdminClient, ConfigResource

        admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until answered
        res = ConfigResource("TOPIC", topic)
        described = admin.describe_configs([res])[res].result(30)
        got = {k: described[k].value if k in described else None for k in config}
        if got != config:
            raise AssertionError(f"topic {topic}: configs {got} described, {config} created")


def heal(c: cl.Cluster, proxy: S3Proxy, nemesis: Nemesis, history: History) -> None:
    """Everything back: faults off, stopped processes continued, dead ones
    started, and every agent in every agent's Metadata."""
    for pid in list(nemesis.paused):
        os.kill(pid, signal.SIGCONT)
    try:
        proxy.heal()
        nemesis.recover_crashes()
        for name, m in c.etcd.members.items():
            if not stack.alive(m):
                c.etcd.restart(name)
        for i, a in enumerate(c.agents):
            if not a.alive():
                nemesis.start_agent(i)
        c.wait_ready(timeout=60)
    except Exception as e:
        history.incident("heal_failed", "cluster", f"{e!r}")


def read_everything(c: cl.Cluster, topic: str, history: History, keys: bool = False) -> None:
    """The whole topic through each agent, into history['reads'] (with each
    record's key if `keys`)."""
    for i, a in enumerate(c.agents):
        try:
            consumed, high = cl.consume_via(c, i, topic, PARTITIONS)
            history.data["reads"][a.agent_id] = {
                "high": {str(p): h for p, h in high.items()},
                "records": {str(p): [[m.offset, decode(m.value)]
                                     + ([decode(m.key)] if keys else []) for m in msgs]
                            for p, msgs in consumed.items()},
                "error": None}
        except Exception as e:
            history.data["reads"][a.agent_id] = {"high": {}, "records": {}, "error": repr(e)}


def wait_group(members: list[GroupMember], history: History, high: dict[int, int],
               timeout: float) -> None:
    """Until the group has read every partition up to `high` (or timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with history.lock:
            top: dict[int, int] = {}
            for _, _, p, o, _ in history.data["group"]["consumed"]:
                top[p] = max(top.get(p, -1), o)
        if all(top.get(p, -1) >= h - 1 for p, h in high.items()):
            return
        if all(not m.is_alive() for m in members):
            return
        time.sleep(0.5)


# The tiering jobs run every couple of seconds with small sizes, so that
# compaction swaps index entries and GC deletes objects while the faults
# happen. gc_grace must cover three attempts of a GET (object_store_timeout
# above the proxy's 2 s latency faults).
FAST_JOBS = {
    "SILT_COMPACTION_INTERVAL": "2s",
    "SILT_COMPACTION_MIN_AGE": "2s",
    "SILT_COMPACTION_MAX_LAG": "5s",
    "SILT_COMPACTION_RUN_BYTES": "64KiB",
    "SILT_COMPACTION_OBJECT_BYTES": "256KiB",
    "SILT_COMPACTION_ENTRY_BYTES": "16KiB",
    "SILT_GC_INTERVAL": "2s",
    "SILT_OBJECT_STORE_TIMEOUT": "5s",
    "SILT_GC_GRACE": "30s",
    "SILT_GC_ORPHAN_AGE": "60s",
}
# Compacted runs: the cleaner as often as the other jobs.
CLEANER_JOBS = {"SILT_CLEANER_INTERVAL": "2s"}
JOB_METRICS = ("silt_compaction_entries_total", "silt_compaction_runs_refused_total",
               "silt_gc_objects_deleted_total", "silt_gc_orphans_deleted_total",
               "silt_cleaner_partitions_cleaned_total", "silt_cleaner_records_removed_total")


def jobs_done(c: cl.Cluster) -> dict[str, float]:
    """What the agents' tiering jobs did (summed over the running agents;
    an agent killed during the run took its counts with it)."""
    out = {k.removeprefix("silt_").removesuffix("_total"): 0.0 for k in JOB_METRICS}
    for i, a in enumerate(c.agents):
        if not a.alive():
            continue
        try:
            m = c.metrics(i)
        except Exception:
            continue
        for k in JOB_METRICS:
            out[k.removeprefix("silt_").removesuffix("_total")] += m.get(k, 0.0)
    return out


def run_one(n: int, seed: int, args, workdir: Path) -> dict:
    duration, rate = args.duration, args.rate
    rundir = workdir / f"run-{n}"
    rundir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ack_loss = rng.choice((0.0, 0.0, 0.02))
    compacted = is_compacted(seed, args.compacted)
    config = {"compacted": compacted}
    if compacted:
        config.update(topic_config=COMPACTED_TOPIC, keys_per_partition=KEYS_PER_PARTITION,
                      agent_env=CLEANER_JOBS)
    history = History(run=n, seed=seed, duration=duration, rate=rate, partitions=PARTITIONS,
                      fault_kinds=list(args.faults), message_timeout=args.message_timeout,
                      commit_ack_loss_rate=ack_loss, checkpoint_every=CHECKPOINT_EVERY,
                      config=config)
    proxy: S3Proxy | None = None

    def agent_env(i: int) -> dict:
        env = {"SILT_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY),
               "AWS_ENDPOINT_URL": proxy.endpoint, "SILT_LOG": args.agent_log, **FAST_JOBS,
               **(CLEANER_JOBS if compacted else {})}
        if ack_loss:
            env["SILT_TEST_FAULTS"] = (f"commit_ack_loss_rate={ack_loss},"
                                       f"seed={2 * (seed * AGENTS + i) + 1}")
        return env

    c = cl.Cluster(rundir, agents=AGENTS, etcd_members=3, s3="moto", agent_env=agent_env,
                   name="chaos")
    # librdkafka's own log lines (connection failures...) go to clients.log.
    logger = logging.getLogger(f"chaos.run{n}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.FileHandler(rundir / "clients.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    nemesis = None
    members: list[GroupMember] = []
    load = None
    txn_worker: TxnWorker | None = None
    t_start = time.monotonic()
    try:
        c.s3.start()
        proxy = S3Proxy(rundir, c.s3.endpoint).start()
        c.start()
        topic = rt.unique_topic(f"chaos{n}")
        history.data["topic"] = topic
        create_topic(c.bootstrap, topic, COMPACTED_TOPIC if compacted else None)
        specs = producer_specs(c, history, rng, int(rate * duration), logger,
                               args.message_timeout, compacted)
        if args.client_debug:
            for spec in specs:
                spec.config["debug"] = args.client_debug
        txn_topic = f"{topic}-txn"
        create_topic(c.bootstrap, txn_topic, partitions=TXN_PARTITIONS)
        txn_worker = TxnWorker(history, c.bootstrap, txn_topic,
                               random.Random(rng.randrange(1 << 62)), logger)
        txn_worker.start()
        group = f"chaos-{topic}"
        members = [GroupMember(f"g{k + 1}", history, c.bootstrap, topic, group, logger)
                   for k in range(2)]
        for m in members:
            m.start()
        nemesis = Nemesis(c, proxy, history, random.Random(rng.randrange(1 << 62)), duration,
                          args.faults)
        # Time for every record's last send to time out, and then some.
        flush_timeout = (RESENDS + 1) * args.message_timeout + 30
        load = cl.Load(c.bootstrap, topic, specs, flush_timeout=flush_timeout, pace=100.0 / rate,
                       on_report=history.report).start()
        nemesis.start()
        nemesis.join(duration + 120)
        heal(c, proxy, nemesis, history)
        txn_worker.stop_flag.set()
        txn_worker.join(120)
        try:
            load.wait(timeout=flush_timeout + 60)
        except AssertionError as e:
            history.add("load_errors", str(e))
            cl.Load.abort_all()
        high = {}
        try:
            high = {p: h for p, h in gk.high_watermarks(c.bootstrap, topic, PARTITIONS).items()}
        except Exception as e:
            history.add("load_errors", f"high watermarks: {e!r}")
        wait_group(members, history, high, timeout=45)
        for m in members:
            m.leave()
            if m.error:
                history.data["group"]["client_errors"].append(f"{m.name}: {m.error}")
        try:
            history.data["group"]["final_committed"] = {
                str(p): o for p, o in gk.confluent_committed(c.bootstrap, group, topic,
                                                             PARTITIONS).items() if o >= 0}
        except Exception as e:
            history.add("load_errors", f"committed offsets: {e!r}")
        nemesis.recover_crashes()
        read_everything(c, topic, history, keys=compacted)
        read_committed_everything(c, txn_topic, history)
        nemesis.recover_crashes()  # nothing may die during the reads either
        history.data["jobs"] = jobs_done(c)
        history.data["proxy"] = proxy.stats()
    except Exception as e:
        history.incident("harness", "run", f"{e!r}")
    finally:
        cl.Load.abort_all()
        for m in members:
            m.stop_flag.set()
        if txn_worker is not None:
            txn_worker.stop_flag.set()
        try:
            c.close()
        except Exception as e:
            history.incident("harness", "teardown", f"{e!r}")
        if proxy is not None:
            proxy.stop()
        logger.removeHandler(handler)
        handler.close()

    faults = nemesis.faults if nemesis else Counter()
    history.data["faults"] = dict(faults)
    history.write(rundir / "history.json")
    verdict = checker.check(history.data)
    acked = verdict.info["acked"]
    invalid = []
    if not sum(faults.values()):
        invalid.append("no fault was injected")
    if not acked:
        invalid.append("nothing was acknowledged")
    ok = not verdict.total and not invalid
    line = (f"run {n} seed {seed}{' compacted' if compacted else ''}: "
            f"{sum(faults.values())} faults, {acked} acked, "
            f"{verdict.total} anomalies: {'OK' if ok else 'FAIL'}")
    if not ok:
        line += " (" + "; ".join(([verdict.summary()] if verdict.total else []) + invalid) + ")"
    info = ", ".join(f"{k}={v}" for k, v in sorted(verdict.info.items()))
    info += "; jobs: " + ", ".join(f"{k}={v:.0f}" for k, v in
                                   sorted(history.data.get("jobs", {}).items()))
    detail = (f"{line}\n  faults: {dict(faults)}; commit answers lost at rate {ack_loss}; "
              f"{time.monotonic() - t_start:.0f}s\n  {info}\n")
    if verdict.total:
        detail += verdict.details() + "\n"
    (rundir / "verdict.txt").write_text(detail)
    if not ok or args.keep_all:
        pass
    else:  # keep only the history and the verdict
        for child in rundir.iterdir():
            if child.name not in ("history.json", "verdict.txt"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    return {"run": n, "seed": seed, "ok": ok, "line": line, "faults": dict(faults),
            "acked": acked, "jobs": history.data.get("jobs", {}), "anomalies": dict(verdict.anomalies), "invalid": invalid,
            "info": dict(verdict.info), "commit_ack_loss_rate": ack_loss, "compacted": compacted,
            "seconds": round(time.monotonic() - t_start, 1), "dir": str(rundir),
            "details": verdict.details()}


# --------------------------------------------------------------------------
# The campaign
# --------------------------------------------------------------------------


def options(args) -> str:
    """The command-line options that differ from their defaults."""
    out = ""
    if set(args.faults) != set(FAULT_KINDS):
        out += f" --faults {','.join(args.faults)}"
    if args.message_timeout != MESSAGE_TIMEOUT_S:
        out += f" --message-timeout {args.message_timeout:g}"
    if args.compacted != "auto":
        out += f" --compacted {args.compacted}"
    return out


def replay_command(seed: int, args) -> str:
    return (f"SILT_BIN={shlex.quote(cl.silt_bin())} python3 tests/chaos/campaign.py "
            f"--seed {seed} --runs 1 --duration {args.duration:g} --rate {args.rate:g}"
            f"{options(args)} --no-report")


REPORT_BEGIN = "<!-- fault campaign: this section is written by tests/chaos/campaign.py -->"
REPORT_END = "<!-- end of the fault campaign section -->"


def write_report(path: Path, command: str, results: list[dict], base_seed: int,
                 args, seconds: float) -> None:
    """Writes the campaign's section of `path` (between REPORT_BEGIN and
    REPORT_END, appended if missing); the rest of the page is left alone."""
    faults = Counter()
    anomalies = Counter()
    info = Counter()
    for r in results:
        faults.update(r["faults"])
        anomalies.update(r["anomalies"])
        info.update({k: v for k, v in r["info"].items() if isinstance(v, int)})
    failed = [r for r in results if not r["ok"]]
    lines = [
        "## Fault campaign against real processes (`tests/chaos/`)",
        "",
        "What it checks: an acknowledged write is never lost, keeps its offset and is",
        "never duplicated, while agents and etcd members are killed and paused and the",
        "object store fails and slows down. Each run: three `silt agent` processes",
        f"(checkpoint every {CHECKPOINT_EVERY} log records), a three-member etcd, moto behind "
        "a fault-injecting",
        "HTTP proxy; two idempotent and two non-idempotent confluent-kafka producers, a",
        "consumer group, and a transactional producer on a second topic (its transactions",
        "must be whole or absent when read `read_committed` through every agent); then the",
        "topic is read from offset 0 through every agent. In",
        f"{sum(1 for r in results if r.get('compacted'))} of the {len(results)} runs the "
        f"topic is compacted (`cleanup.policy=compact`,",
        f"{KEYS_PER_PARTITION} keys per partition, the cleaner every "
        f"{CLEANER_JOBS['SILT_CLEANER_INTERVAL']}): a record the cleaner removed must",
        "be superseded by a later record of its key, and the rest keep their offsets. How",
        "faults are injected: `tests/chaos/campaign.py` (module docstring); the rules:",
        "`tests/chaos/checker.py` (module docstring). This section is written by the",
        "campaign itself.",
        "",
        f"Latest full campaign, {time.strftime('%Y-%m-%d')}, on this repository's "
        f"`silt` debug build ({seconds / 60:.0f} min):",
        "",
        "```sh",
        command,
        "```",
        "",
        "| | |",
        "|---|---|",
        f"| runs | {len(results)} ({len(failed)} failed) |",
        f"| seeds | {base_seed} to {base_seed + len(results) - 1} |",
        f"| duration of each run's faults and load | {args.duration:g} s |",
        f"| fault kinds | {', '.join(args.faults)} |",
        f"| producers' message.timeout.ms | {args.message_timeout * 1000:.0f} |",
        f"| records sent | {4 * int(args.rate * args.duration) * len(results)} "
        f"({args.rate:g} per second per producer, 4 producers) |",
        f"| records acknowledged | {info['acked']} |",
        f"| failed delivery reports | {info['failed_reports']} |",
        f"| records consumed by the group | {info['consumed']} |",
        f"| offsets committed by the group | {info['commits']} |",
        f"| unacknowledged records found in the log (allowed) | {info['unacked_present']} |",
        f"| duplicates after a failed/retried send (allowed) | "
        f"{info['duplicates_after_failed_send']} |",
        f"| runs with lost commit answers (SILT_TEST_FAULTS) | "
        f"{sum(1 for r in results if r['commit_ack_loss_rate'])} |",
        f"| runs on a compacted topic | "
        f"{sum(1 for r in results if r.get('compacted'))} |",
        f"| acknowledged records the cleaner removed, superseded (allowed) | "
        f"{info['acked_removed']} |",
        "",
        "Faults injected, by kind:",
        "",
        "| fault | count |",
        "|---|---|",
        *(f"| {k} | {faults[k]} |" for k in FAULT_KINDS),
        f"| total | {sum(faults.values())} |",
        "",
        "Anomalies, by kind (checker.py's rules):",
        "",
        "| anomaly | count |",
        "|---|---|",
        *(f"| {k} | {anomalies[k]} |" for k in checker.ANOMALY_KINDS + checker.INCIDENT_KINDS),
        f"| total | {sum(anomalies.values())} |",
        "",
    ]
    lines += ["Every run:", "", "```", *(r["line"] for r in results), "```", ""]
    if failed:
        lines += ["What the failed runs saw (at most two examples per run and kind; each",
                  "run replays with `--seed <its seed> --runs 1`, same duration and rate):", ""]
        for r in failed:
            found = [f"{n} {k}" for k, n in sorted(r["anomalies"].items())] + r["invalid"]
            lines.append(f"- run {r['run']} (seed {r['seed']}): {', '.join(found)}")
            kind = None
            shown = 0
            for line in r["details"].splitlines():
                if not line.startswith("  - "):
                    kind, shown = line.split(":")[0], 0
                    continue
                if shown < 2:
                    lines.append(f"  - {kind}: {line[4:]}")
                    shown += 1
        lines.append("")
    lines += [f"The quick mode (`--quick`: {QUICK['runs']} runs of {QUICK['duration']:g} s) is "
              "a test: `tests/chaos/test_campaign_quick.py`."]
    section = "\n".join([REPORT_BEGIN, *lines, REPORT_END])
    text = path.read_text() if path.exists() else "# Reliability\n"
    if REPORT_BEGIN in text and REPORT_END in text:
        head, rest = text.split(REPORT_BEGIN, 1)
        text = head + section + rest.split(REPORT_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK['runs']} runs of {QUICK['duration']:g} s, no report")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--duration", type=float, help="seconds of faults and load per run")
    ap.add_argument("--rate", type=float, help="records per second per producer")
    ap.add_argument("--seed", type=int, help="seed of the first run (default: random)")
    ap.add_argument("--workdir", type=Path, help="default /var/tmp/silt-chaos/<time>")
    ap.add_argument("--keep-all", action="store_true", help="keep passing runs' logs too")
    ap.add_argument("--no-report", action="store_true", help=f"do not write {REPORT}")
    ap.add_argument("--summary", type=Path, help="write every run's result as JSON here")
    ap.add_argument("--faults", default=",".join(FAULT_KINDS),
                    help="the fault kinds the nemesis picks from (comma-separated; default all)")
    ap.add_argument("--message-timeout", type=float, default=MESSAGE_TIMEOUT_S,
                    help="the producers' message.timeout.ms, in seconds")
    ap.add_argument("--compacted", choices=COMPACTED_MODES, default="auto",
                    help="which runs use a compacted topic: auto (odd seeds), always, never")
    ap.add_argument("--agent-log", default="info", help="SILT_LOG of the agents (e.g. debug)")
    ap.add_argument("--client-debug", default="",
                    help="librdkafka `debug` contexts of the producers (e.g. msg,protocol), "
                         "logged to clients.log")
    args = ap.parse_args(argv)
    # SIGTERM ends the campaign like Ctrl-C: the current run still stops
    # every process it started (by PID) on its way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args.faults = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = set(args.faults) - set(FAULT_KINDS)
    if unknown or not args.faults:
        ap.error(f"--faults: {sorted(unknown) or 'none given'}; known: {', '.join(FAULT_KINDS)}")
    base = QUICK if args.quick else FULL
    for k in ("runs", "duration", "rate"):
        if getattr(args, k) is None:
            setattr(args, k, base[k])
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    workdir = args.workdir or Path(f"/var/tmp/silt-chaos/{time.strftime('%Y%m%d-%H%M%S')}"
                                   f"-seed{seed}")
    workdir.mkdir(parents=True, exist_ok=True)
    command = ("python3 tests/chaos/campaign.py" + (" --quick" if args.quick else "")
               + f" --runs {args.runs} --duration {args.duration:g} --rate {args.rate:g}"
               + f"{options(args)} --seed {seed}")
    say(f"campaign: {args.runs} runs of {args.duration:g}s, first seed {seed}, in {workdir}")
    say(f"campaign: silt binary {cl.silt_bin()}; repeat with: {command}")
    t0 = time.monotonic()
    results = []
    for n in range(1, args.runs + 1):
        r = run_one(n, seed + n - 1, args, workdir)
        results.append(r)
        say(r["line"])
        if not r["ok"]:
            say(f"  kept {r['dir']}\n  replay: {replay_command(r['seed'], args)}")
            if r["details"]:
                say("  " + r["details"].replace("\n", "\n  "))
    seconds = time.monotonic() - t0
    faults = Counter()
    for r in results:
        faults.update(r["faults"])
    failed = [r for r in results if not r["ok"]]
    say(f"campaign: {len(results)} runs in {seconds:.0f}s, {sum(faults.values())} faults "
        f"({', '.join(f'{k}={v}' for k, v in sorted(faults.items()))}), "
        f"{sum(r['acked'] for r in results)} acked, "
        f"{sum(sum(r['anomalies'].values()) for r in results)} anomalies, "
        f"{len(failed)} failed runs")
    if args.summary:
        args.summary.write_text(json.dumps({"seed": seed, "command": command,
                                            "duration": args.duration, "rate": args.rate,
                                            "faults": list(args.faults),
                                            "message_timeout": args.message_timeout,
                                            "seconds": round(seconds, 1), "runs": results},
                                           indent=1) + "\n")
    if not args.quick and not args.no_report:
        write_report(REPORT, command, results, seed, args, seconds)
        say(f"campaign: wrote {REPORT}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
