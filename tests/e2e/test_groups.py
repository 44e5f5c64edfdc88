"""Consumer groups (classic protocol): membership changes under load,
committed offsets across restarts and coordinator failure, several client
libraries (confluent-kafka, kafka-python, aiokafka, kcat) alone and mixed in
one group, and group administration.

Every consumer here processes a batch and then commits the offsets of that
batch synchronously (see groupkit.py). What Kafka's classic group protocol
then guarantees, and what these tests assert:

* No record is lost: a partition's next owner starts at the last committed
  offset, and nothing past a committed offset was skipped by the consumer
  that committed it.
* A record is processed twice only if it was processed by a consumer that
  then failed to commit it (the commit failed because the consumer had
  already lost the partition or its membership). Partitions move between
  members only through a rebalance, and a member gives up a partition only
  in its revocation callback, which runs in its own poll call, i.e. after
  the synchronous commit of the previous batch returned. With the eager
  protocol (range) every member revokes everything before it rejoins; with
  cooperative-sticky a member revokes the moved partitions and rejoins
  before anyone else gets them. Either way the next owner fetches the
  committed offsets after the previous owner's last commit was acknowledged.
  A member that leaves through close() revokes (callback), and only then
  sends LeaveGroup; it has nothing processed and uncommitted at that point.
  Records that a poll returned after the callback revoked their partition
  are not processed (they belong to the next owner).
  Every duplicate must therefore be explained by a failed commit after the
  earlier processing (the accounting checks exactly that). How many commits
  may fail depends on the protocol:
  - eager (range): a member commits its last batch before it serves the
    revocation and rejoins, so the group is still waiting for it
    (PreparingRebalance), a state in which Kafka accepts commits from
    members of the current generation. With clean joins and close() no
    commit may fail and the number of duplicates must be 0.
  - cooperative-sticky: librdkafka rejoins in the background without
    revoking first, so a commit can arrive after every member rejoined
    (CompletingRebalance), which Kafka answers with REBALANCE_IN_PROGRESS;
    records of a partition that then moves are processed again by its next
    owner. Such duplicates are allowed, no others.
* A partition has at most one owner at any time (sampled while consuming).

Environment:
    SILT_BIN                the silt binary
    SILT_E2E_GROUP_RECORDS  records of the membership-change test (default 30000)
    SILT_E2E_GROUP_TIMEOUT  seconds per test before it is aborted (default 150)

Run: cd tests/e2e && python3 -m pytest -q test_groups.py
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest

import groupkit as gk
import roundtrip as rt
import verify as vf

RECORDS = int(os.environ.get("SILT_E2E_GROUP_RECORDS", "30000"))
TEST_TIMEOUT_S = int(os.environ.get("SILT_E2E_GROUP_TIMEOUT", "150"))
# Each group composition of the membership test consumes for this long
# before the next change.
STEP_PAUSE_S = 2.5


class GroupTestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def time_limit():
    def on_alarm(signum, frame):
        raise GroupTestTimeout(f"test aborted after {TEST_TIMEOUT_S}s (SILT_E2E_GROUP_TIMEOUT)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def workers():
    """Consumers and producers started by a test; all stopped at teardown."""
    started: list = []
    yield started
    for w in started:
        w.stop_flag.set()
    for w in started:
        w.join(20)


def start(workers: list, w):
    workers.append(w)
    w.start()
    return w


def group_name(prefix: str) -> str:
    return rt.unique_topic(f"grp-{prefix}")


def topic_with_records(bootstrap: str, prefix: str, partitions: int, n: int,
                       tag: str) -> tuple[str, str, set[bytes]]:
    """A new topic `grp-<prefix>-…` holding n records `<tag>-i`, and a new
    group name; returns (topic, group, record ids)."""
    topic = rt.unique_topic(f"grp-{prefix}")
    group = group_name(prefix)
    rt.create_topic(bootstrap, topic, partitions)
    return topic, group, gk.produce_ids(bootstrap, topic, partitions, n, tag=tag)


def check_exact(ledger: gk.Ledger, expected: set[bytes], what: str) -> vf.Accounting:
    """No loss, nothing unknown, and every duplicate explained by a failed
    commit. Returns the accounting (duplicates are counted there)."""
    acc = vf.account(ledger.snapshot(), expected)
    rt.log(f"{what}: {acc.summary()}")
    vf.check_processed(acc, what)
    return acc


def check_committed_at_end(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    hw = gk.high_watermarks(bootstrap, topic, partitions)
    committed = gk.confluent_committed(bootstrap, group, topic, partitions)
    assert committed == hw, (f"group {group}: committed offsets {committed} != high "
                             f"watermarks {hw} after every record was processed and committed")


class OwnershipMonitor:
    """Samples the partitions each live consumer owns (every 50 ms in the
    background, and on every wait); records overlaps."""

    def __init__(self, consumers: list):
        self.consumers = consumers
        self.overlaps: list[str] = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ownership", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_flag.wait(0.05):
            self.sample()

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(5)

    def sample(self) -> dict[str, set[int]]:
        owned = gk.snapshot_owned(list(self.consumers))
        seen: dict[int, str] = {}
        for name, parts in owned.items():
            for p in parts:
                if p in seen and len(self.overlaps) < 20:
                    self.overlaps.append(f"partition {p} owned by {seen[p]} and {name}")
                seen[p] = name
        return owned

    def wait_balanced(self, live: list, partitions: int, timeout: float = 40.0) -> None:
        """Every live consumer owns partitions // len(live) or one more, and
        together they own every partition."""
        lo = partitions // len(live)
        hi = lo + (1 if partitions % len(live) else 0)

        def ok():
            owned = self.sample()
            parts = [owned.get(w.name, set()) for w in live]
            return (all(lo <= len(s) <= hi for s in parts)
                    and set().union(*parts) == set(range(partitions))
                    and sum(len(s) for s in parts) == partitions)

        gk.wait_until(ok, timeout, lambda: (
            f"consumers {[w.name for w in live]} not balanced over {partitions} partitions: "
            f"{ {k: sorted(v) for k, v in self.sample().items()} }; errors: "
            f"{[(w.name, w.error, w.client_errors[-3:]) for w in self.consumers]}"))


# --------------------------------------------------------------------------
# 1. confluent-kafka: members join and leave while a producer writes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_membership_changes_under_load(silt, workers, assignor):
    partitions = 12
    topic = rt.unique_topic(f"grp-load-{assignor}")
    group = group_name("load")
    rt.create_topic(silt.bootstrap, topic, partitions)
    ledger = gk.Ledger()
    conf = {"partition.assignment.strategy": assignor}
    # ~RECORDS / 1500 seconds of writing: the membership changes below
    # happen while the producer runs.
    producer = start(workers, gk.PacedProducer(silt.bootstrap, topic, partitions, RECORDS,
                                               tag="load", rate=1500.0))

    def consumer(name):
        return start(workers, gk.ConfluentWorker(name, ledger, silt.bootstrap, topic, group,
                                                 conf))

    t0 = time.monotonic()
    steps = []

    def step(what):
        steps.append(f"{time.monotonic() - t0:5.1f}s {what} (acked {len(producer.acked)}, "
                     f"processed {ledger.count()})")
        rt.log(f"[{assignor}] {steps[-1]}")

    c1 = consumer("c1")
    all_consumers = [c1]
    mon = OwnershipMonitor(all_consumers)
    mon.wait_balanced([c1], partitions)
    gk.wait_until(lambda: ledger.count("c1") > 0, 20, "c1 processed nothing")
    step("c1 owns all partitions")
    time.sleep(STEP_PAUSE_S)

    c2, c3 = consumer("c2"), consumer("c3")
    all_consumers += [c2, c3]
    mon.wait_balanced([c1, c2, c3], partitions)
    gk.wait_until(lambda: ledger.count("c2") > 0 and ledger.count("c3") > 0, 20,
                  lambda: f"c2/c3 processed nothing: {vf.account(ledger.snapshot(), set()).per_consumer}")
    step("c1, c2, c3 balanced")
    time.sleep(STEP_PAUSE_S)

    c2.leave()
    c2.check()
    mon.wait_balanced([c1, c3], partitions)
    step("c2 closed; c1, c3 balanced")
    time.sleep(STEP_PAUSE_S)

    c4 = consumer("c4")
    all_consumers.append(c4)
    mon.wait_balanced([c1, c3, c4], partitions)
    gk.wait_until(lambda: ledger.count("c4") > 0, 20, "c4 processed nothing")
    step("c4 joined; c1, c3, c4 balanced")
    still_producing = producer.is_alive()

    producer.join(120)
    assert not producer.is_alive(), "producer still running after 120 s"
    producer.check()
    step("producer done")
    expected = set(producer.acked)
    gk.wait_until(lambda: expected <= ledger.processed_ids(), 60,
                  lambda: f"processed {len(ledger.processed_ids() & expected)}/{len(expected)}; "
                          f"owned {mon.sample()}")
    step("everything processed")
    for w in (c1, c3, c4):
        w.leave()
    mon.stop()
    for w in all_consumers:
        w.check()

    rt.log(f"[{assignor}] " + "; ".join(
        f"{w.name}: {w.batches} batches, {w.stale_dropped} stale records dropped, "
        f"{w.lost_partitions} partitions lost, rebalance callbacks "
        f"{[(round(t - t0, 1), k, len(p)) for t, k, p in w.rebalances]}"
        for w in all_consumers))
    assert not mon.overlaps, f"a partition had two owners at once: {mon.overlaps}"
    assert still_producing, (
        f"the producer finished before the last membership change ({steps}); raise "
        f"SILT_E2E_GROUP_RECORDS so that members join and leave under load")
    acc = check_exact(ledger, expected, f"[{assignor}]")
    if assignor == "range":
        # Eager protocol: a member commits its last batch before it serves
        # the revocation and rejoins, so the group is still waiting for it
        # (PreparingRebalance) and Kafka accepts the commit. Nothing may fail
        # and nothing may be processed twice.
        assert not ledger.commit_errors, (
            f"commits failed although every member joined and left cleanly: "
            f"{ledger.commit_errors[:3]} ({len(ledger.commit_errors)} in all); "
            f"{acc.summary()}")
        assert acc.duplicates == 0, acc.summary()
    else:
        # Cooperative: a member rejoins in the background without revoking
        # first, so a commit may reach the coordinator after every member
        # rejoined (CompletingRebalance), which Kafka answers with
        # REBALANCE_IN_PROGRESS; if the next assignment moves that partition,
        # its uncommitted records are processed again by the next owner.
        # check_exact() required every duplicate to be such a record.
        rt.log(f"[{assignor}] failed commits: {Counter(ledger.commit_errors).most_common(3)}")
    lost = {w.name: w.lost_partitions for w in all_consumers if w.lost_partitions}
    assert not lost, f"partitions were lost (not revoked) in a clean run: {lost}"
    check_committed_at_end(silt.bootstrap, group, topic, partitions)


def test_commit_while_rebalance_pending(silt):
    """A member of the current generation commits after a new member asked
    to join, before it has rejoined itself (it has not polled since): the
    group is PreparingRebalance and waits for it. Kafka accepts this commit
    (only CompletingRebalance answers REBALANCE_IN_PROGRESS); an eager
    consumer relies on it to commit its last batch before giving up its
    partitions."""
    import threading

    from confluent_kafka import Consumer, KafkaException, TopicPartition

    topic = rt.unique_topic("grp-pending")
    rt.create_topic(silt.bootstrap, topic, 2)
    gk.produce_ids(silt.bootstrap, topic, 2, 20, tag="pend")
    conf = {"bootstrap.servers": silt.bootstrap, "group.id": group_name("pending"),
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range", "heartbeat.interval.ms": 500,
            "session.timeout.ms": 10_000}
    c1 = Consumer({**conf, "client.id": "c1"})
    c2 = Consumer({**conf, "client.id": "c2"})
    stop = threading.Event()

    def poll_c2():
        while not stop.is_set():
            c2.poll(0.2)

    t = threading.Thread(target=poll_c2, daemon=True)
    try:
        c1.subscribe([topic])
        def c1_owns_both():
            c1.poll(0.2)
            return len(c1.assignment()) == 2

        gk.wait_until(c1_owns_both, 20, "c1 never got both partitions")
        c2.subscribe([topic])
        t.start()
        # c1's heartbeats (every 0.5 s) learn of the rebalance; c1 does not
        # poll, so it does not rejoin.
        time.sleep(2.5)
        try:
            res = c1.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
            err = next((tp.error for tp in res if tp.error is not None), None)
        except KafkaException as e:
            err = e.args[0]
        assert err is None, (
            f"OffsetCommit by a current member while the group waits for it to rejoin "
            f"(PreparingRebalance) failed: {err}; Kafka accepts it")
        committed = c1.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed[0].offset == 5, committed
    finally:
        stop.set()
        if t.is_alive():
            t.join(10)
        c2.close()
        c1.close()


def test_session_timeout_bounds(silt):
    """JoinGroup with a session timeout outside 6 s - 30 min (Kafka's
    group.min/max.session.timeout.ms defaults) fails with
    INVALID_SESSION_TIMEOUT; the bounds themselves are accepted."""
    from confluent_kafka import Consumer

    topic = rt.unique_topic("grp-session")
    rt.create_topic(silt.bootstrap, topic, 1)
    gk.produce_ids(silt.bootstrap, topic, 1, 10, tag="st")
    seen = {}
    for ms in (5_999, 6_000, 1_800_000, 1_800_001):
        c = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": group_name(f"st{ms}"),
                      "session.timeout.ms": ms, "max.poll.interval.ms": max(ms, 300_000),
                      "heartbeat.interval.ms": 1000, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        try:
            c.subscribe([topic])
            deadline = time.monotonic() + 10
            while ms not in seen and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None:
                    seen[ms] = m.error().name() if m.error() else "joined"
        finally:
            c.close()
    assert seen == {5_999: "INVALID_SESSION_TIMEOUT", 6_000: "joined", 1_800_000: "joined",
                    1_800_001: "INVALID_SESSION_TIMEOUT"}, seen


# --------------------------------------------------------------------------
# 2. committed offsets survive a restart of the agent
# --------------------------------------------------------------------------


def test_committed_offsets_survive_restart(silt):
    from confluent_kafka import Consumer, TopicPartition

    partitions = 4
    # 100 records per partition
    topic, group, _ = topic_with_records(silt.bootstrap, "restart", partitions, 400, "r")
    want = {p: 10 + 17 * p for p in range(partitions)}  # committed offsets

    conf = {"bootstrap.servers": silt.bootstrap, "group.id": group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 500}
    c = Consumer(conf)
    try:
        c.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 30
        while got < 50 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got += 1
        assert got >= 50, f"consumer read {got} records in 30 s"
        res = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in want.items()],
                       asynchronous=False)
        assert all(tp.error is None for tp in res), res
    finally:
        c.close()
    assert gk.confluent_committed(silt.bootstrap, group, topic, partitions) == want

    silt.restart()
    rt.log("silt restarted")

    # Committed offsets as a new member of the group sees them, and where it
    # starts reading.
    c = Consumer(conf)
    try:
        committed = c.committed([TopicPartition(topic, p) for p in range(partitions)],
                                timeout=20)
        assert {tp.partition: tp.offset for tp in committed} == want, committed
        c.subscribe([topic])
        first: dict[int, int] = {}
        count: Counter = Counter()
        deadline = time.monotonic() + 40
        while sum(count.values()) < sum(100 - o for o in want.values()):
            assert time.monotonic() < deadline, (
                f"after the restart: read {dict(count)} from {first} in 40 s; committed {want}")
            m = c.poll(0.5)
            if m is None or m.error() is not None:
                continue
            first.setdefault(m.partition(), m.offset())
            count[m.partition()] += 1
        assert first == want, f"first offsets read after the restart {first} != committed {want}"
        assert dict(count) == {p: 100 - o for p, o in want.items()}, dict(count)
        c.commit(asynchronous=False)
    finally:
        c.close()
    assert gk.confluent_committed(silt.bootstrap, group, topic, partitions) == {
        p: 100 for p in range(partitions)}


# --------------------------------------------------------------------------
# 3. kill -9 of the group's coordinator (three agents, etcd + moto)
# --------------------------------------------------------------------------


def coordinator_of(bootstrap: str, group: str, timeout: float = 20.0):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    d = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(
        timeout=timeout)
    return d


def test_coordinator_kill9(tmp_path, workers, request):
    import cluster as cl

    c = cl.Cluster(tmp_path / "cluster", agents=3, etcd_members=1, s3="moto")
    request.node._silt_cluster = c  # conftest attaches agent logs on failure
    c.start()
    try:
        partitions = 6
        topic, group, ids1 = topic_with_records(c.bootstrap, "kill", partitions, 600, "k1")
        ledger = gk.Ledger()
        c1 = start(workers, gk.ConfluentWorker("c1", ledger, c.bootstrap, topic, group))
        gk.wait_until(lambda: ids1 <= ledger.processed_ids(), 40,
                      lambda: f"c1 processed {ledger.count()}/600 ({c1.error})")
        hw1 = gk.high_watermarks(c.bootstrap, topic, partitions)
        gk.wait_until(lambda: gk.confluent_committed(c.bootstrap, group, topic, partitions)
                      == hw1, 20, f"committed offsets never reached {hw1}")

        desc = coordinator_of(c.bootstrap, group)
        assert str(desc.state).endswith("STABLE") and len(desc.members) == 1, desc
        nodes = {c.node_id(i): i for i in range(3)}
        k = nodes[desc.coordinator.id]
        rt.log(f"coordinator of {group}: node {desc.coordinator.id} = agent "
               f"{c.agents[k].agent_id}")
        c.kill9(k)
        live = [i for i in range(3) if i != k]
        c.wait_brokers(live)
        live_bootstrap = ",".join(c.agents[i].addr for i in live)

        # The committed offsets are intact on the new coordinator.
        committed = gk.confluent_committed(live_bootstrap, group, topic, partitions)
        assert committed == hw1, (f"after kill -9 of the coordinator: committed offsets "
                                  f"{committed}, before {hw1}")
        # The live member goes on: it reads only the new records.
        ids2 = gk.produce_ids(live_bootstrap, topic, partitions, 600, tag="k2")
        gk.wait_until(lambda: (ids1 | ids2) <= ledger.processed_ids(), 60,
                      lambda: f"c1 processed {len(ledger.processed_ids() & ids2)}/600 new "
                              f"records after the kill; error {c1.error}; client errors "
                              f"{c1.client_errors[-5:]}")
        desc2 = coordinator_of(live_bootstrap, group)
        assert desc2.coordinator.id != desc.coordinator.id, desc2.coordinator
        rt.log(f"new coordinator: node {desc2.coordinator.id} "
               f"(agent {c.agents[nodes[desc2.coordinator.id]].agent_id}); state {desc2.state}")
        # The new coordinator resumes the group from its persisted state. c1
        # may still rejoin (librdkafka rejoins after losing its coordinator
        # for a while); commits sent while that rebalance completes fail
        # (REBALANCE_IN_PROGRESS) and c1 then resumes from the committed
        # offsets, so a few records may be processed twice (check_exact()
        # makes sure no other record is). It must end with everything
        # committed: wait for that before it leaves.
        hw2 = gk.high_watermarks(live_bootstrap, topic, partitions)
        gk.wait_until(
            lambda: gk.confluent_committed(live_bootstrap, group, topic, partitions) == hw2, 60,
            lambda: f"committed {gk.confluent_committed(live_bootstrap, group, topic, partitions)} "
                    f"!= high watermarks {hw2}; c1 commit errors "
                    f"{Counter(ledger.commit_errors).most_common(3)}")
        c1.leave()
        c1.check()
        acc = check_exact(ledger, ids1 | ids2, "coordinator kill -9")
        rt.log(f"c1 after the kill: failed commits "
               f"{Counter(ledger.commit_errors).most_common(3)}; client errors "
               f"{Counter(c1.client_errors).most_common(3)}; rebalance callbacks "
               f"{[(k_, len(p)) for _, k_, p in c1.rebalances]}")
        assert gk.confluent_committed(live_bootstrap, group, topic, partitions) == hw2

        # A new member starts exactly at the committed offsets.
        ids3 = gk.produce_ids(live_bootstrap, topic, partitions, 300, tag="k3")
        ledger3 = gk.Ledger()
        c2 = start(workers, gk.ConfluentWorker("c2", ledger3, live_bootstrap, topic, group))
        gk.wait_until(lambda: ids3 <= ledger3.processed_ids(), 40,
                      lambda: f"c2 processed {ledger3.count()}/300 ({c2.error})")
        c2.leave()
        c2.check()
        check_exact(ledger3, ids3, "new member after the kill")
        assert ledger3.count() == 300, (
            f"the new member read {ledger3.count()} records, expected exactly the 300 after "
            f"the committed offsets {hw2}")
        firsts = {}
        for e in ledger3.events:
            firsts.setdefault(e.partition, e.offset)
        assert firsts == {p: o for p, o in hw2.items()}, (firsts, hw2)
        assert acc.duplicates <= acc.uncommitted
        crashed = c.crashed()
        assert not crashed, f"agents exited on their own: {crashed}"
    finally:
        for w in workers:
            w.stop_flag.set()
        for w in workers:
            w.join(20)
        c.close()


# --------------------------------------------------------------------------
# 4. other libraries, and two libraries in one group
# --------------------------------------------------------------------------


def two_member_group(silt, workers, libs: tuple[str, str], prefix: str, conf=None):
    """Two members (eager protocol, range) read 3000 records. Both rejoin in
    their poll calls, after the synchronous commit of their last batch: no
    commit may fail and nothing may be read twice."""
    partitions = 6
    topic, group, ids = topic_with_records(silt.bootstrap, prefix, partitions, 3000, prefix)
    ledger = gk.Ledger()
    ws = [start(workers, gk.group_worker(lib, f"{lib}-{i + 1}", ledger, silt.bootstrap, topic,
                                         group, (conf or {}).get(lib)))
          for i, lib in enumerate(libs)]
    mon = OwnershipMonitor(ws)
    # Both members join (a balanced assignment), then everything is read.
    mon.wait_balanced(ws, partitions)
    gk.wait_until(lambda: ids <= ledger.processed_ids(), 60,
                  lambda: f"processed {len(ledger.processed_ids())}/{len(ids)}; "
                          f"{[(w.name, w.error, sorted(w.owned_now())) for w in ws]}")
    for w in ws:
        w.leave()
        w.check()
    mon.stop()
    assert not mon.overlaps, mon.overlaps
    acc = check_exact(ledger, ids, prefix)
    per = acc.per_consumer
    assert all(per.get(w.name, 0) > 0 for w in ws), f"a member processed nothing: {per}"
    assert not ledger.commit_errors and acc.duplicates == 0, (
        f"{ledger.commit_errors[:3]}; {acc.summary()}")
    check_committed_at_end(silt.bootstrap, group, topic, partitions)
    return ws, acc


def test_kafka_python_group(silt, workers):
    two_member_group(silt, workers, ("kafka-python", "kafka-python"), "kpy")


def test_mixed_confluent_and_kafka_python_group(silt, workers):
    ws, _ = two_member_group(
        silt, workers, ("confluent", "kafka-python"), "mixed",
        conf={"confluent": {"partition.assignment.strategy": "range"}})
    # Range over 6 partitions and 2 members: 3 each.
    assert all(len(w.assigned_ever) >= 3 for w in ws), [(w.name, w.assigned_ever) for w in ws]


def test_aiokafka_group(silt):
    partitions = 6
    topic, group, ids = topic_with_records(silt.bootstrap, "aio", partitions, 3000, "aio")
    ledger = gk.Ledger()
    final = asyncio.run(gk.aiokafka_group(silt.bootstrap, topic, group, ledger, len(ids),
                                          members=2, timeout=60))
    rt.log(f"aiokafka members' partitions at the end: {final}")
    assert all(final.values()), f"a member owned no partition at the end: {final}"
    acc = check_exact(ledger, ids, "aiokafka")
    assert acc.duplicates <= acc.uncommitted
    check_committed_at_end(silt.bootstrap, group, topic, partitions)


def kcat_group(bootstrap: str, group: str, topic: str, *extra: str) -> tuple[list[str], str]:
    cmd = [rt.kcat_bin(), "-b", bootstrap, "-G", group, topic, *extra, "-e",
           "-f", "%p %o %s\n", "-X", "session.timeout.ms=10000"]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)} did not exit in 60 s; stderr: "
                             f"{(e.stderr or b'').decode(errors='replace')[-2000:]}") from None
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, f"{' '.join(cmd)} exited with {p.returncode}: {err[-2000:]}"
    return p.stdout.decode().splitlines(), err


def test_kcat_balanced_consumer(silt):
    partitions = 4
    topic, group, ids = topic_with_records(silt.bootstrap, "kcat", partitions, 1000, "kc")

    def read_once(offset: str, want: set[bytes], what: str) -> None:
        """One kcat -G run reads exactly `want`, each record once; kcat
        commits (auto-commit) on exit."""
        lines, err = kcat_group(silt.bootstrap, group, topic, "-o", offset)
        got = Counter(line.split(" ", 2)[2].encode() for line in lines)
        assert set(got) == want and sum(got.values()) == len(want), (
            f"{what} read {sum(got.values())} records ({len(set(got))} distinct, "
            f"{len(set(got) & want)} of the {len(want)} expected); stderr: {err[-1500:]}")
        check_committed_at_end(silt.bootstrap, group, topic, partitions)

    read_once("beginning", ids, "kcat -G")
    # A second run with the stored offsets reads only the new records.
    more = gk.produce_ids(silt.bootstrap, topic, partitions, 200, tag="kc2")
    read_once("stored", more, "second kcat -G run (stored offsets)")


# --------------------------------------------------------------------------
# 5. group administration
# --------------------------------------------------------------------------


def group_with_one_member(silt, workers, lib: str, prefix: str, tag: str):
    """A topic of 3 partitions with 300 records and a group whose one member
    (`tag`1, client library `lib`) has processed them all, committing after
    each batch. Returns (topic, group, member)."""
    topic, group, ids = topic_with_records(silt.bootstrap, prefix, 3, 300, tag)
    ledger = gk.Ledger()
    w = start(workers, gk.group_worker(lib, f"{tag}1", ledger, silt.bootstrap, topic, group))
    gk.wait_until(lambda: ids <= ledger.processed_ids(), 30, lambda: f"{ledger.count()}/300")
    return topic, group, w


def test_group_admin_confluent(silt, workers):
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    partitions = 3
    topic, group, w = group_with_one_member(silt, workers, "confluent", "admin", "adm")
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    T = 20

    listed = admin.list_consumer_groups(request_timeout=T).result(timeout=T)
    assert not listed.errors, listed.errors
    mine = [g for g in listed.valid if g.group_id == group]
    assert len(mine) == 1, [g.group_id for g in listed.valid]
    assert str(mine[0].state).endswith("STABLE"), mine[0].state

    d = admin.describe_consumer_groups([group], request_timeout=T)[group].result(timeout=T)
    assert str(d.state).endswith("STABLE"), d.state
    assert len(d.members) == 1 and d.members[0].client_id == "adm1", d.members
    assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == [0, 1, 2]
    assert d.partition_assignor, d

    offs = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=T)[group].result(timeout=T)
    assert {tp.partition: tp.offset for tp in offs.topic_partitions
            if tp.topic == topic} == {p: 100 for p in range(partitions)}, offs.topic_partitions

    with pytest.raises(KafkaException) as ei:
        admin.delete_consumer_groups([group], request_timeout=T)[group].result(timeout=T)
    assert ei.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, ei.value

    w.leave()
    w.check()
    d = admin.describe_consumer_groups([group], request_timeout=T)[group].result(timeout=T)
    assert str(d.state).endswith("EMPTY") and not d.members, (d.state, d.members)
    admin.delete_consumer_groups([group], request_timeout=T)[group].result(timeout=T)

    listed = admin.list_consumer_groups(request_timeout=T).result(timeout=T)
    assert group not in [g.group_id for g in listed.valid]
    assert set(gk.confluent_committed(silt.bootstrap, group, topic, partitions).values()) == {
        -1001}, "committed offsets still there after DeleteGroups"
    # Deleting it again: the group no longer exists.
    with pytest.raises(KafkaException) as ei:
        admin.delete_consumer_groups([group], request_timeout=T)[group].result(timeout=T)
    assert ei.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, ei.value


def test_group_admin_kafka_python(silt, workers):
    from kafka.admin import KafkaAdminClient
    from kafka.structs import TopicPartition

    partitions = 3
    topic, group, w = group_with_one_member(silt, workers, "kafka-python", "kadmin", "kadm")
    admin = KafkaAdminClient(bootstrap_servers=silt.bootstrap, request_timeout_ms=20_000)
    try:
        groups = admin.list_groups()
        rt.log(f"kafka-python list_groups: {groups}")
        mine = [g for g in groups if g["group_id"] == group]
        assert mine == [{"group_id": group, "protocol_type": "consumer",
                         "group_state": "Stable"}], groups

        desc = admin.describe_groups([group])
        rt.log(f"kafka-python describe_groups: {desc}")
        dg = desc[group]
        assert dg["error"] is None and dg["group_state"] == "Stable", dg
        assert dg["protocol_type"] == "consumer" and dg["protocol_data"] == "range", dg
        assert len(dg["members"]) == 1 and dg["members"][0]["client_id"] == "kadm1", dg
        assigned = dg["members"][0]["member_assignment"]["assigned_partitions"]
        assert assigned == [{"topic": topic, "partitions": [0, 1, 2]}], assigned

        offs = admin.list_group_offsets({group: None})
        offs = offs.get(group, offs)
        assert {tp.partition: om.offset for tp, om in offs.items()
                if tp.topic == topic} == {p: 100 for p in range(partitions)}, offs

        # kafka-python 3.0: {group id: "OK" or the error's class name}
        res = admin.delete_groups([group])
        rt.log(f"kafka-python delete_groups while a member is active: {res}")
        assert res == {group: "NonEmptyGroupError"}, res

        w.leave()
        w.check()
        res = admin.delete_groups([group])
        assert res == {group: "OK"}, res
        assert group not in [g["group_id"] for g in admin.list_groups()]
        offs = admin.list_group_offsets({group: [TopicPartition(topic, p)
                                                 for p in range(partitions)]})
        offs = offs.get(group, offs)
        assert all(om.offset == -1 for om in offs.values()), offs
    finally:
        admin.close()
