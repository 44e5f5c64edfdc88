"""Consumer groups while their coordinator moves: three agents, one etcd
member, moto, SILT_LEASE_TTL=3s, a producer writing a steady stream of
records with unique values to a 6-partition topic, and a group of three
confluent-kafka consumers that commit synchronously after every batch
(groupkit.ConfluentWorker).

* test_static_group_rides_out_coordinator_kill9_and_move: static members
  (group.instance.id, session.timeout.ms 30 s). The group's coordinator is
  killed with SIGKILL, another agent takes the group over, the killed agent
  starts again (the group moves back to it when it ranks first for the
  group); then the coordinator of that moment is stopped cleanly (SIGTERM)
  and started again. Asserted: (a) no assignment callback at all (on_assign,
  on_revoke, on_lost) in any consumer between the initial stable assignment
  and the end of the drain (EXPECTED_CALLBACKS_AFTER_STABLE); (b) the
  committed offsets that the coordinator of the moment answers to OffsetFetch
  (sampled every 200 ms) never go back in any partition; (c) every record in
  the log was processed, every acknowledged record at its acknowledged offset,
  and an offset processed twice only if the commit after its earlier
  processing failed (Kafka's at-least-once window), and the final committed
  offsets are the high watermarks.
* test_rolling_restart_under_a_consuming_group: dynamic members (no
  group.instance.id). Each agent in turn is stopped with SIGTERM and started
  again. Twice per restart (once the agent has stopped, and once it is back)
  the time until the group is Stable again with all three members is
  measured: every live agent names the same coordinator and its
  DescribeGroups answers "Stable" with exactly the three consumers. Each must
  be under STABLE_BOUND_S; no record is lost (same accounting as above).

The producer does not use idempotence, so a record retried across a crash
may be stored at two offsets; the accounting therefore counts records by
(partition, offset), and checks values separately.

Run: cd tests/e2e && python3 -m pytest -q test_group_moves.py
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter

import pytest

import cluster as cl
import groupkit as gk
import rawkafka
import roundtrip as rt
import test_cluster
import test_groups
import verify as vf
from test_groups import OwnershipMonitor, check_committed_at_end, start

pytestmark = pytest.mark.cluster

# Fixtures: a cluster per test (stopped at teardown, logs on failure), and
# the consumers and producers a test started (stopped at teardown).
make_cluster = test_cluster.make_cluster
workers = test_groups.workers

PARTITIONS = 6
RATE = 400.0  # records per second written by the producer
STEP_S = 4.0  # load between two disruptions
STABLE_BOUND_S = 10.0
# Assignment callbacks (on_assign + on_revoke + on_lost, all consumers)
# between the initial stable assignment and the end of the drain: a
# coordinator move must not rebalance the group.
EXPECTED_CALLBACKS_AFTER_STABLE = 0
LEASE = {"SILT_LEASE_TTL": "3s"}


# --------------------------------------------------------------------------
# Who coordinates the group, and in what state
# --------------------------------------------------------------------------


def node_map(c: cl.Cluster) -> dict[int, int]:
    """Broker node id -> agent index (node ids are stable across restarts)."""
    return {c.node_id(i): i for i in range(len(c.agents))}


def live_agents(c: cl.Cluster) -> list[int]:
    return [i for i, a in enumerate(c.agents) if a.should_run and a.alive()]


def agreed_coordinator(c: cl.Cluster, nodes: dict[int, int], group: str) -> int | None:
    """The agent that every live agent names as the group's coordinator;
    None while they disagree or one of them does not answer."""
    seen = set()
    for i in live_agents(c):
        try:
            err, node = rawkafka.find_coordinator(c.agents[i].addr, group)
        except rawkafka.NO_ANSWER:
            return None
        if err != 0 or node not in nodes:
            return None
        seen.add(nodes[node])
    return seen.pop() if len(seen) == 1 else None


def wait_coordinator(c: cl.Cluster, nodes: dict[int, int], group: str, not_on: int | None = None,
                     timeout: float = 30.0) -> tuple[int, float]:
    """Wait until the live agents agree on a coordinator (other than agent
    `not_on`); returns (its index, seconds waited)."""
    t0 = time.monotonic()
    found: list[int] = []

    def agreed() -> bool:
        k = agreed_coordinator(c, nodes, group)
        if k is None or k == not_on:
            return False
        found.append(k)
        return True

    gk.wait_until(agreed, timeout, lambda: (
        f"live agents {[c.agents[i].agent_id for i in live_agents(c)]} never agreed on a "
        f"coordinator of {group}" + (f" other than {c.agents[not_on].agent_id}"
                                     if not_on is not None else "")), interval=0.1)
    return found[-1], time.monotonic() - t0


def wait_stable(c: cl.Cluster, nodes: dict[int, int], group: str, clients: set[str],
                timeout: float) -> float:
    """Seconds until the live agents agree on the group's coordinator and its
    DescribeGroups answers Stable with exactly one member per client id in
    `clients`. AssertionError after `timeout`."""
    t0 = time.monotonic()
    last: list = ["no answer"]

    def stable() -> bool:
        k = agreed_coordinator(c, nodes, group)
        if k is None:
            last[0] = "live agents disagree on the coordinator"
            return False
        try:
            v = rawkafka.describe_group(c.agents[k].addr, group)
        except rawkafka.NO_ANSWER as e:
            last[0] = f"{c.agents[k].agent_id}: {e!r}"
            return False
        last[0] = (f"{c.agents[k].agent_id}: error {v.error}, state {v.state}, members "
                   f"{sorted(v.members.values())}")
        return (v.error == 0 and v.state == "Stable" and len(v.members) == len(clients)
                and set(v.members.values()) == clients)

    gk.wait_until(stable, timeout, lambda: f"group {group} not Stable; last seen: {last[0]}",
                  interval=0.1)
    return time.monotonic() - t0


class GroupWatch(threading.Thread):
    """Every `interval` seconds asks a live agent (each in turn) which node
    coordinates the group, then asks that node for the group's committed
    offsets (OffsetFetch) and its state (DescribeGroups). Keeps the
    coordinator and state timelines, and every committed offset that went
    back in a partition."""

    def __init__(self, c: cl.Cluster, nodes: dict[int, int], group: str, topic: str,
                 interval: float = 0.2):
        super().__init__(name="group-watch", daemon=True)
        self.c, self.nodes, self.group, self.topic, self.interval = c, nodes, group, topic, interval
        self.t0 = time.monotonic()
        self.coordinators: list[tuple[float, str]] = []  # (t, agent id) at each change
        self.states: list[tuple[float, str, str]] = []  # (t, agent id, state) at each change
        self.high: dict[int, tuple[int, float, str]] = {}  # p -> (offset, t, agent id)
        self.regressions: list[str] = []
        self.samples = 0  # OffsetFetch answers used
        self.misses = 0  # no coordinator, no answer or an error code
        self.stop_flag = threading.Event()

    def rel(self, t: float) -> float:
        return t - self.t0

    def run(self) -> None:
        turn = 0
        while not self.stop_flag.wait(self.interval):
            live = live_agents(self.c)
            if not live:
                continue
            asked = live[turn % len(live)]
            turn += 1
            try:
                err, node = rawkafka.find_coordinator(self.c.agents[asked].addr, self.group)
                if err != 0 or node not in self.nodes:
                    self.misses += 1
                    continue
                agent = self.c.agents[self.nodes[node]]
                fetched = rawkafka.offset_fetch(agent.addr, self.group, self.topic,
                                                list(range(PARTITIONS)))
                view = rawkafka.describe_group(agent.addr, self.group)
            except rawkafka.NO_ANSWER:
                self.misses += 1
                continue
            self._record(time.monotonic(), agent.agent_id, fetched, view)

    def _record(self, t: float, agent: str, fetched: dict, view: rawkafka.GroupView) -> None:
        if not self.coordinators or self.coordinators[-1][1] != agent:
            self.coordinators.append((self.rel(t), agent))
        if view.error == 0:
            state = f"{view.state} {len(view.members)} members"
            if not self.states or self.states[-1][1:] != (agent, state):
                self.states.append((self.rel(t), agent, state))
        if any(err != 0 for _, err in fetched.values()):
            self.misses += 1
            return
        self.samples += 1
        for p, (offset, _) in sorted(fetched.items()):
            prev = self.high.get(p)
            if prev is not None and offset < prev[0]:
                self.regressions.append(
                    f"partition {p}: committed offset {offset} from {agent} at "
                    f"t={self.rel(t):.2f}s after {prev[0]} from {prev[2]} at t={prev[1]:.2f}s")
            if prev is None or offset > prev[0]:
                self.high[p] = (offset, self.rel(t), agent)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(10)

    def summary(self) -> str:
        return (f"{self.samples} OffsetFetch samples ({self.misses} misses); coordinators "
                f"{[(round(t, 1), a) for t, a in self.coordinators]}; states "
                f"{[(round(t, 1), a, s) for t, a, s in self.states]}")


# --------------------------------------------------------------------------
# Load and accounting
# --------------------------------------------------------------------------


def wait_progress(ledger: gk.Ledger, consumers: list, what: str, n: int = 200,
                  timeout: float = 30.0) -> None:
    """Wait until the group processed n more records."""
    first = ledger.count()
    gk.wait_until(lambda: ledger.count() >= first + n, timeout, lambda: (
        f"{what}: the group processed {ledger.count() - first} records (wanted {n}); errors "
        f"{[(w.name, w.error, w.client_errors[-3:]) for w in consumers]}"))


def wait_quiet(consumers: list, quiet: float = 2.0, timeout: float = 30.0) -> None:
    """Wait until no consumer saw an assignment callback for `quiet` seconds."""
    def calm() -> bool:
        last = max((t for w in consumers for t, _, _ in w.rebalances), default=0.0)
        return time.monotonic() - last >= quiet

    gk.wait_until(calm, timeout, "assignment callbacks never stopped", interval=0.2)


def callbacks_between(consumers: list, t0: float, t1: float, origin: float) -> list[str]:
    """Assignment callbacks (on_assign, on_revoke, on_lost) seen in
    [t0, t1], as 'consumer t=…s kind [partitions]' (t relative to origin)."""
    return [f"{w.name} t={t - origin:.1f}s {kind} {parts}"
            for w in consumers for t, kind, parts in w.rebalances if t0 <= t <= t1]


def stop_producer(producer: gk.PacedProducer) -> None:
    producer.stop_flag.set()
    producer.join(90)
    assert not producer.is_alive(), "producer still flushing 90 s after it was stopped"
    assert producer.error is None, f"producer: {producer.error}"
    assert not producer.failed, (f"producer: {len(producer.failed)} delivery failures, e.g. "
                                 f"{next(iter(producer.failed.items()))}")
    rt.log(f"producer: {len(producer.acked)} records acknowledged in {producer.seconds:.1f}s")


def processed_offsets(ledger: gk.Ledger) -> set[tuple[int, int]]:
    return {(e.partition, e.offset) for e in ledger.snapshot()}


def drain(c: cl.Cluster, group: str, topic: str, ledger: gk.Ledger, consumers: list,
          timeout: float = 60.0) -> dict[int, int]:
    """Wait until the group processed and committed every record below the
    high watermarks; returns them."""
    hw = gk.high_watermarks(c.bootstrap, topic, PARTITIONS)
    want = {(p, o) for p, n in hw.items() for o in range(n)}
    gk.wait_until(lambda: want <= processed_offsets(ledger), timeout, lambda: (
        f"the group processed {len(want & processed_offsets(ledger))}/{len(want)} records "
        f"below the high watermarks {hw}; errors "
        f"{[(w.name, w.error, w.client_errors[-3:]) for w in consumers]}"), interval=0.5)
    gk.wait_until(lambda: gk.confluent_committed(c.bootstrap, group, topic, PARTITIONS) == hw,
                  20, lambda: f"committed offsets never reached the high watermarks {hw}")
    check_committed_at_end(c.bootstrap, group, topic, PARTITIONS)
    return hw


def check_log_processed(ledger: gk.Ledger, acked: dict[bytes, tuple[int, int]],
                        hw: dict[int, int], what: str) -> vf.Accounting:
    """Every record in the log (each offset below the high watermarks) was
    processed, every acknowledged record at its acknowledged offset with its
    value, and an offset processed more than once only if the commit after
    an earlier processing of it failed (verify.account on (partition, offset)
    identities)."""
    events = ledger.snapshot()
    value_at: dict[tuple[int, int], bytes] = {}
    for e in events:
        prev = value_at.setdefault((e.partition, e.offset), e.rid)
        assert prev == e.rid, (f"{what}: partition {e.partition} offset {e.offset} processed "
                               f"as {prev!r} and as {e.rid!r}")
    wrong = [(rid, po, value_at.get(po)) for rid, po in acked.items() if value_at.get(po) != rid]
    assert not wrong, (f"{what}: {len(wrong)} acknowledged records not processed at their "
                       f"acknowledged offset, e.g. (value, (partition, offset), processed "
                       f"there) {wrong[:3]}")
    keyed = [dataclasses.replace(e, rid=f"{e.partition}@{e.offset}".encode()) for e in events]
    acc = vf.account(keyed, {f"{p}@{o}".encode() for p, n in hw.items() for o in range(n)})
    rt.log(f"{what}: {sum(hw.values())} records in the log ({sum(hw.values()) - len(acked)} "
           f"stored twice by producer retries), {len(acked)} acknowledged; {acc.summary()}")
    vf.check_processed(acc, what)
    return acc


def group_consumers(c: cl.Cluster, ledger: gk.Ledger, topic: str, group: str, prefix: str,
                    static: bool) -> list[gk.ConfluentWorker]:
    out = []
    for n in range(1, 4):
        conf = {"session.timeout.ms": 30_000, "group.instance.id": f"{group}-{prefix}{n}"} \
            if static else {}
        out.append(gk.ConfluentWorker(f"{prefix}{n}", ledger, c.bootstrap, topic, group, conf))
    return out


# --------------------------------------------------------------------------
# 1. kill -9 of the coordinator, then a clean coordinator move, under load
# --------------------------------------------------------------------------


def test_static_group_rides_out_coordinator_kill9_and_move(make_cluster, workers):
    c = make_cluster(agents=3, etcd_members=1, s3="moto", agent_env=LEASE)
    t_start = time.monotonic()
    topic, group = rt.unique_topic("grp-move"), rt.unique_topic("grp-move")
    rt.create_topic(c.bootstrap, topic, PARTITIONS)
    nodes = node_map(c)
    ledger = gk.Ledger()
    producer = start(workers, gk.PacedProducer(c.bootstrap, topic, PARTITIONS, 10**7,
                                               tag="mv", rate=RATE))
    consumers = group_consumers(c, ledger, topic, group, "s", static=True)
    for w in consumers:
        start(workers, w)
    watch = GroupWatch(c, nodes, group, topic)
    watch.start()
    mon = OwnershipMonitor(consumers)
    try:
        # The initial stable assignment: two partitions each, the group
        # Stable with the three members, and no callback for 2 s.
        mon.wait_balanced(consumers, PARTITIONS)
        wait_stable(c, nodes, group, {w.name for w in consumers}, 30)
        wait_quiet(consumers)
        t_base = time.monotonic()
        initial = callbacks_between(consumers, 0, t_base, t_start)
        rt.log(f"stable assignment after {t_base - t_start:.1f}s: "
               f"{ {w.name: sorted(w.owned_now()) for w in consumers} }; callbacks so far "
               f"{initial}")
        wait_progress(ledger, consumers, "before the kill")

        # kill -9 of the coordinator; another agent takes the group over.
        k1, _ = wait_coordinator(c, nodes, group)
        c.kill9(k1)
        k2, secs = wait_coordinator(c, nodes, group, not_on=k1)
        rt.log(f"coordinator {c.agents[k1].agent_id} killed; {c.agents[k2].agent_id} "
               f"coordinates the group {secs:.1f}s later")
        wait_progress(ledger, consumers, "after the kill")
        time.sleep(STEP_S / 2)
        c.restart(k1)
        k3, secs = wait_coordinator(c, nodes, group)
        rt.log(f"{c.agents[k1].agent_id} back; coordinator {c.agents[k3].agent_id} "
               f"({secs:.1f}s)")
        wait_progress(ledger, consumers, "after the killed agent restarted")
        time.sleep(STEP_S)

        # A clean coordinator move: SIGTERM to the coordinator, start it again.
        rc = c.agents[k3].stop()
        assert rc == 0, f"agent {c.agents[k3].agent_id} exited with {rc} on SIGTERM"
        k4, secs = wait_coordinator(c, nodes, group, not_on=k3)
        rt.log(f"coordinator {c.agents[k3].agent_id} stopped; {c.agents[k4].agent_id} "
               f"coordinates the group {secs:.1f}s later")
        wait_progress(ledger, consumers, "after the coordinator stopped")
        time.sleep(STEP_S / 2)
        c.restart(k3)
        k5, secs = wait_coordinator(c, nodes, group)
        rt.log(f"{c.agents[k3].agent_id} back; coordinator {c.agents[k5].agent_id} "
               f"({secs:.1f}s)")
        wait_progress(ledger, consumers, "after the stopped agent restarted")
        time.sleep(STEP_S)

        stop_producer(producer)
        hw = drain(c, group, topic, ledger, consumers)
        t_end = time.monotonic()
        time.sleep(1.0)  # a last OffsetFetch sample of the final offsets
    finally:
        watch.stop()
        mon.stop()
    moved = callbacks_between(consumers, t_base, t_end, t_start)
    for w in consumers:
        w.leave()
        w.check()
    rt.log(f"group: {watch.summary()}")
    rt.log(f"assignment callbacks after the stable assignment: {len(moved)} {moved}; client "
           f"errors {Counter(e for w in consumers for e in w.client_errors).most_common(4)}; "
           f"failed commits {Counter(ledger.commit_errors).most_common(4)}")

    # (a) no rebalance: no assignment callback after the stable assignment.
    assert len(moved) == EXPECTED_CALLBACKS_AFTER_STABLE, (
        f"{len(moved)} assignment callbacks after the initial stable assignment (expected "
        f"{EXPECTED_CALLBACKS_AFTER_STABLE}): {moved}; group {watch.summary()}")
    assert not mon.overlaps, mon.overlaps
    # (b) committed offsets never went back, and the watch saw the moves.
    assert not watch.regressions, (f"committed offsets went back: {watch.regressions[:5]}; "
                                   f"{watch.summary()}")
    assert watch.samples >= 50, watch.summary()
    assert len({a for _, a in watch.coordinators}) >= 2, watch.summary()
    assert {p: o for p, (o, _, _) in watch.high.items()} == hw, (watch.high, hw)
    # (c) every record processed; a second processing only after a failed commit.
    acc = check_log_processed(ledger, producer.acked, hw, "coordinator kill -9 and move")
    assert acc.duplicates <= acc.uncommitted, acc.summary()


# --------------------------------------------------------------------------
# 2. rolling restart (SIGTERM, start) of the three agents
# --------------------------------------------------------------------------


def test_rolling_restart_under_a_consuming_group(make_cluster, workers):
    c = make_cluster(agents=3, etcd_members=1, s3="moto", agent_env=LEASE)
    t_start = time.monotonic()
    topic, group = rt.unique_topic("grp-roll"), rt.unique_topic("grp-roll")
    rt.create_topic(c.bootstrap, topic, PARTITIONS)
    nodes = node_map(c)
    ledger = gk.Ledger()
    producer = start(workers, gk.PacedProducer(c.bootstrap, topic, PARTITIONS, 10**7,
                                               tag="roll", rate=RATE))
    # Dynamic members (no group.instance.id), default session timeout 10 s.
    consumers = group_consumers(c, ledger, topic, group, "r", static=False)
    for w in consumers:
        start(workers, w)
    clients = {w.name for w in consumers}
    watch = GroupWatch(c, nodes, group, topic)
    watch.start()
    mon = OwnershipMonitor(consumers)
    times: list[tuple[str, bool, float, float]] = []  # agent, was coordinator, down, back
    try:
        mon.wait_balanced(consumers, PARTITIONS)
        wait_stable(c, nodes, group, clients, 30)
        wait_quiet(consumers)
        t_base = time.monotonic()
        wait_progress(ledger, consumers, "before the restarts")
        for i, a in enumerate(c.agents):
            k, _ = wait_coordinator(c, nodes, group)
            rc = a.stop()
            assert rc == 0, f"agent {a.agent_id} exited with {rc} on SIGTERM"
            down = wait_stable(c, nodes, group, clients, 3 * STABLE_BOUND_S)
            c.restart(i)
            back = wait_stable(c, nodes, group, clients, 3 * STABLE_BOUND_S)
            times.append((a.agent_id, k == i, round(down, 2), round(back, 2)))
            rt.log(f"rolling restart of {a.agent_id} (coordinator before: "
                   f"{c.agents[k].agent_id}): Stable {down:.2f}s after it stopped, "
                   f"{back:.2f}s after it was back")
            wait_progress(ledger, consumers, f"after the restart of {a.agent_id}")
            time.sleep(2.0)
        stop_producer(producer)
        hw = drain(c, group, topic, ledger, consumers)
        t_end = time.monotonic()
    finally:
        watch.stop()
        mon.stop()
    moved = callbacks_between(consumers, t_base, t_end, t_start)
    for w in consumers:
        w.leave()
        w.check()
    rt.log(f"group: {watch.summary()}")
    rt.log(f"stabilisation times (agent, was coordinator, after stop, after start): {times}; "
           f"assignment callbacks during the restarts: {len(moved)} {moved}; committed "
           f"offsets went back {len(watch.regressions)} times {watch.regressions[:3]}")

    slow = [(a, s, d, b) for a, s, d, b in times if d > STABLE_BOUND_S or b > STABLE_BOUND_S]
    assert not slow, (f"group not Stable within {STABLE_BOUND_S:.0f}s of a restart: {slow} "
                      f"(all: {times}); {watch.summary()}")
    assert len(times) == 3, times
    assert not mon.overlaps, mon.overlaps
    check_log_processed(ledger, producer.acked, hw, "rolling restart")
