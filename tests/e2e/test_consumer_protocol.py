"""Consumer groups of the consumer protocol (KIP-848, `group.protocol=consumer`)
with librdkafka (confluent-kafka): the coordinator assigns partitions with
its server-side assignors and moves a partition only after its owner gave
it up.

The consumers are groupkit.ConfluentWorker (poll, drop records of partitions
no longer owned, process, commit synchronously) configured for the consumer
protocol; an OwnershipMonitor samples which partitions each consumer owns
every 50 ms.

* test_members_join_and_leave_under_load[uniform|range] (`silt dev`): while
  a producer writes 12 partitions, c1 joins; c2 and c3 join; c2 leaves; c4
  joins. After each change the live members are balanced (as the assignor
  says: within one partition). Asserted: no partition owned by two
  consumers at any sample; every acknowledged record processed, a record
  processed twice only if the commit after its first processing failed; no
  partition lost (on_lost); the final committed offsets are the high
  watermarks; ConsumerGroupDescribe (AdminClient.describe_consumer_groups)
  answers a Stable group of the consumer type with the chosen assignor and
  the three members with their partitions.
* test_coordinator_kill9_does_not_rebalance (three agents, etcd, moto): the
  group's coordinator is killed with SIGKILL under load, another agent
  resumes the group from its persisted state, then the killed agent comes
  back. Asserted: no assignment callback after the initial stable
  assignment (members keep their epochs and partitions across the move); no
  partition with two owners; the committed offsets (sampled every 200 ms
  from the coordinator of the moment) never go back; every record in the
  log processed, a second time only after a failed commit.
* test_mixed_groups_are_refused: a classic consumer cannot join a group of
  the consumer protocol (INCONSISTENT_GROUP_PROTOCOL), and a consumer of the
  consumer protocol cannot join a classic group with members
  (GROUP_ID_NOT_FOUND, with a message naming the cause).
* test_pattern_subscription_follows_new_topics: a consumer subscribed to a
  pattern reads a topic that existed before it joined and one created while
  it runs, every record once.

Run: cd tests/e2e && python3 -m pytest -q test_consumer_protocol.py
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

import cluster as cl
import groupkit as gk
import roundtrip as rt
import test_cluster
import test_groups
import test_group_moves as mv
import verify as vf
from test_groups import OwnershipMonitor, check_committed_at_end, check_exact, start

make_cluster = test_cluster.make_cluster
workers = test_groups.workers

# Members heartbeat every second (Kafka's default is 5 s): a partition
# given up by one member reaches the next at its next heartbeat.
HEARTBEAT = {"SILT_GROUP_CONSUMER_HEARTBEAT_INTERVAL": "1s"}
# Settings of the classic protocol that librdkafka refuses with the consumer
# protocol (the coordinator owns them).
CLASSIC_ONLY = ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy")


def consumer(name: str, ledger: gk.Ledger, bootstrap: str, topic: str, group: str,
             assignor: str | None = None) -> gk.ConfluentWorker:
    conf = {"group.protocol": "consumer"}
    if assignor:
        conf["group.remote.assignor"] = assignor
    w = gk.ConfluentWorker(name, ledger, bootstrap, topic, group, conf)
    for k in CLASSIC_ONLY:
        w.conf.pop(k, None)
    return w


def describe(bootstrap: str, group: str):
    """The group as ConsumerGroupDescribe answers it (confluent AdminClient)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group])[group].result(timeout=20)


# --------------------------------------------------------------------------
# 1. members join and leave while a producer writes
# --------------------------------------------------------------------------


@pytest.mark.silt_env(**HEARTBEAT)
@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_members_join_and_leave_under_load(silt, workers, assignor):
    partitions = 12
    topic = rt.unique_topic(f"kip848-{assignor}")
    group = test_groups.group_name("kip848")
    rt.create_topic(silt.bootstrap, topic, partitions)
    ledger = gk.Ledger()
    producer = start(workers, gk.PacedProducer(silt.bootstrap, topic, partitions,
                                               test_groups.RECORDS, tag="k848", rate=1500.0))

    def join(name):
        return start(workers, consumer(name, ledger, silt.bootstrap, topic, group, assignor))

    t0 = time.monotonic()
    steps: list[str] = []

    def step(what):
        steps.append(f"{time.monotonic() - t0:5.1f}s {what} (acked {len(producer.acked)}, "
                     f"processed {ledger.count()})")
        rt.log(f"[{assignor}] {steps[-1]}")

    c1 = join("c1")
    everyone = [c1]
    mon = OwnershipMonitor(everyone)
    mon.wait_balanced([c1], partitions)
    gk.wait_until(lambda: ledger.count("c1") > 0, 20, "c1 processed nothing")
    step("c1 owns all partitions")
    time.sleep(test_groups.STEP_PAUSE_S)

    c2, c3 = join("c2"), join("c3")
    everyone += [c2, c3]
    mon.wait_balanced([c1, c2, c3], partitions)
    gk.wait_until(lambda: ledger.count("c2") > 0 and ledger.count("c3") > 0, 20,
                  "c2/c3 processed nothing")
    step("c1, c2, c3 balanced")
    d = describe(silt.bootstrap, group)
    rt.log(f"[{assignor}] ConsumerGroupDescribe: state {d.state}, type "
           f"{getattr(d, 'type', '?')}, assignor {d.partition_assignor}, members "
           f"{[(m.client_id, len(m.assignment.topic_partitions)) for m in d.members]}")
    assert str(d.state).endswith("STABLE"), d
    assert "CONSUMER" in str(getattr(d, "type", "CONSUMER")), d
    assert d.partition_assignor == assignor, d
    described = {m.client_id: {tp.partition for tp in m.assignment.topic_partitions}
                 for m in d.members}
    assert set(described) == {"c1", "c2", "c3"}, described
    owned = {w.name: w.owned_now() for w in (c1, c2, c3)}
    assert described == owned, f"described {described} != owned by the consumers {owned}"
    time.sleep(test_groups.STEP_PAUSE_S)

    c2.leave()
    c2.check()
    mon.wait_balanced([c1, c3], partitions)
    step("c2 closed; c1, c3 balanced")
    time.sleep(test_groups.STEP_PAUSE_S)

    c4 = join("c4")
    everyone.append(c4)
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
    for w in everyone:
        w.check()

    rt.log(f"[{assignor}] " + "; ".join(
        f"{w.name}: {w.batches} batches, {w.stale_dropped} stale records dropped, "
        f"rebalance callbacks {[(round(t - t0, 1), k, len(p)) for t, k, p in w.rebalances]}"
        for w in everyone))
    rt.log(f"[{assignor}] failed commits: {Counter(ledger.commit_errors).most_common(3)}")
    assert not mon.overlaps, f"a partition had two owners at once: {mon.overlaps}"
    assert still_producing, (
        f"the producer finished before the last membership change ({steps}); raise "
        f"SILT_E2E_GROUP_RECORDS so that members join and leave under load")
    check_exact(ledger, expected, f"[{assignor}]")
    lost = {w.name: w.lost_partitions for w in everyone if w.lost_partitions}
    assert not lost, f"partitions were lost (not revoked) in a clean run: {lost}"
    check_committed_at_end(silt.bootstrap, group, topic, partitions)


# --------------------------------------------------------------------------
# 2. the coordinator is killed: the group resumes elsewhere, unchanged
# --------------------------------------------------------------------------


@pytest.mark.cluster
def test_coordinator_kill9_does_not_rebalance(make_cluster, workers):
    c = make_cluster(agents=3, etcd_members=1, s3="moto", agent_env={**mv.LEASE, **HEARTBEAT})
    t_start = time.monotonic()
    topic, group = rt.unique_topic("kip848-move"), rt.unique_topic("kip848-move")
    rt.create_topic(c.bootstrap, topic, mv.PARTITIONS)
    nodes = mv.node_map(c)
    ledger = gk.Ledger()
    producer = start(workers, gk.PacedProducer(c.bootstrap, topic, mv.PARTITIONS, 10**7,
                                               tag="k848mv", rate=mv.RATE))
    consumers = [consumer(f"k{n}", ledger, c.bootstrap, topic, group) for n in range(1, 4)]
    for w in consumers:
        start(workers, w)
    watch = mv.GroupWatch(c, nodes, group, topic)
    watch.start()
    mon = OwnershipMonitor(consumers)
    try:
        mon.wait_balanced(consumers, mv.PARTITIONS)
        mv.wait_quiet(consumers)
        t_base = time.monotonic()
        rt.log(f"stable assignment after {t_base - t_start:.1f}s: "
               f"{ {w.name: sorted(w.owned_now()) for w in consumers} }")
        mv.wait_progress(ledger, consumers, "before the kill")

        k1, _ = mv.wait_coordinator(c, nodes, group)
        c.kill9(k1)
        k2, secs = mv.wait_coordinator(c, nodes, group, not_on=k1)
        rt.log(f"coordinator {c.agents[k1].agent_id} killed; {c.agents[k2].agent_id} "
               f"coordinates the group {secs:.1f}s later")
        mv.wait_progress(ledger, consumers, "after the kill")
        time.sleep(mv.STEP_S)
        d = describe(c.agents[k2].addr, group)
        assert str(d.state).endswith("STABLE") and len(d.members) == 3, d
        c.restart(k1)
        k3, secs = mv.wait_coordinator(c, nodes, group)
        rt.log(f"{c.agents[k1].agent_id} back; coordinator {c.agents[k3].agent_id} "
               f"({secs:.1f}s)")
        mv.wait_progress(ledger, consumers, "after the killed agent restarted")
        time.sleep(mv.STEP_S)

        mv.stop_producer(producer)
        hw = mv.drain(c, group, topic, ledger, consumers)
        t_end = time.monotonic()
        time.sleep(1.0)  # a last OffsetFetch sample of the final offsets
    finally:
        watch.stop()
        mon.stop()
    moved = mv.callbacks_between(consumers, t_base, t_end, t_start)
    for w in consumers:
        w.leave()
        w.check()
    rt.log(f"group: {watch.summary()}")
    rt.log(f"assignment callbacks after the stable assignment: {len(moved)} {moved}; client "
           f"errors {Counter(e for w in consumers for e in w.client_errors).most_common(4)}; "
           f"failed commits {Counter(ledger.commit_errors).most_common(4)}")
    assert not moved, (f"{len(moved)} assignment callbacks after the initial stable "
                       f"assignment: {moved}; group {watch.summary()}")
    assert not mon.overlaps, mon.overlaps
    assert not watch.regressions, (f"committed offsets went back: {watch.regressions[:5]}; "
                                   f"{watch.summary()}")
    assert watch.samples >= 20, watch.summary()
    assert {p: o for p, (o, _, _) in watch.high.items()} == hw, (watch.high, hw)
    acc = mv.check_log_processed(ledger, producer.acked, hw, "KIP-848 coordinator kill -9")
    assert acc.duplicates <= acc.uncommitted, acc.summary()


# --------------------------------------------------------------------------
# 3. mixed groups: a clear error either way
# --------------------------------------------------------------------------


def first_error(w: gk.ConfluentWorker, timeout: float = 20.0) -> str:
    gk.wait_until(lambda: w.error or w.client_errors, timeout,
                  lambda: f"{w.name} saw no error; owned {sorted(w.owned_now())}")
    return w.error or w.client_errors[0]


def test_mixed_groups_are_refused(silt, workers):
    topic = rt.unique_topic("kip848-mixed")
    rt.create_topic(silt.bootstrap, topic, 2)
    gk.produce_ids(silt.bootstrap, topic, 2, 10, tag="mx")
    ledger = gk.Ledger()

    # A consumer-protocol group with a member; a classic consumer is refused.
    group = test_groups.group_name("kip848-mixed")
    new = start(workers, consumer("new", ledger, silt.bootstrap, topic, group))
    gk.wait_until(lambda: len(new.owned_now()) == 2, 30, "the consumer-protocol member got "
                  "no partitions")
    classic = start(workers, gk.ConfluentWorker("classic", ledger, silt.bootstrap, topic, group))
    err = first_error(classic)
    rt.log(f"classic consumer joining a consumer-protocol group: {err}")
    assert "INCONSISTENT_GROUP_PROTOCOL" in err or "Inconsistent group protocol" in err, err
    assert not classic.owned_now()

    # A classic group with a member; a consumer-protocol consumer is refused.
    group2 = test_groups.group_name("kip848-mixed")
    old = start(workers, gk.ConfluentWorker("old", ledger, silt.bootstrap, topic, group2))
    gk.wait_until(lambda: len(old.owned_now()) == 2, 30, "the classic member got no partitions")
    new2 = start(workers, consumer("new2", ledger, silt.bootstrap, topic, group2))
    err = first_error(new2)
    rt.log(f"consumer-protocol consumer joining a classic group: {err}")
    # librdkafka reports the code's text (the message names the cause in
    # silt's answer) and stops the consumer: a fatal error.
    assert "group id does not exist" in err, err
    assert not new2.owned_now()
    acc = vf.account(ledger.snapshot(), set())
    rt.log(f"mixed groups: processed {acc.summary()}")


# --------------------------------------------------------------------------
# 4. a pattern subscription follows topics as they are created
# --------------------------------------------------------------------------


@pytest.mark.silt_env(**HEARTBEAT)
def test_pattern_subscription_follows_new_topics(silt):
    """One consumer subscribed to `^<prefix>-.*` reads a topic that existed
    before it joined, then one created while it runs; each record once."""
    from confluent_kafka import Consumer, KafkaError

    prefix = rt.unique_topic("kip848-pat")
    first, second = f"{prefix}-a", f"{prefix}-b"
    rt.create_topic(silt.bootstrap, first, 2)
    want = gk.produce_ids(silt.bootstrap, first, 2, 20, tag="pa")
    c = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": test_groups.group_name("pat"),
                  "group.protocol": "consumer", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "topic.metadata.refresh.interval.ms": 1000})
    got: list[bytes] = []
    errors: list[str] = []

    def read_until(ids: set[bytes], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= set(got):
            assert time.monotonic() < deadline, (
                f"{what}: read {len(ids & set(got))}/{len(ids)}; errors {errors[-3:]}")
            for m in c.consume(num_messages=100, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        errors.append(str(m.error()))
                    continue
                got.append(m.value())
                c.commit(m, asynchronous=False)

    try:
        c.subscribe([f"^{prefix}-.*"])
        read_until(want, 30, f"the topic {first} that existed before the subscription")
        rt.create_topic(silt.bootstrap, second, 3)
        more = gk.produce_ids(silt.bootstrap, second, 3, 30, tag="pb")
        read_until(more, 40, f"the topic {second} created after the subscription")
        assigned = {(tp.topic, tp.partition) for tp in c.assignment()}
    finally:
        c.close()
    assert assigned == {(first, 0), (first, 1), (second, 0), (second, 1), (second, 2)}, assigned
    dups = [v for v, n in Counter(got).items() if n > 1]
    assert not dups, f"records read twice by the only member: {dups[:5]}"
    assert set(got) == want | more, set(got) ^ (want | more)
