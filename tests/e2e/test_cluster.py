"""Distributed mode: several `silt agent` processes sharing etcd and a bucket.

Each test starts its own stack (see cluster.py): etcd (1 or 3 members), an
S3-compatible server (moto, or SeaweedFS) and N agents, agent i in zone
z<i>. A producer or consumer whose client.id says `silt_az=z<i>` is served
by agent i for every partition, so "one producer per agent" and "read
through agent i" mean exactly that.

Records carry a unique id header; the checks are those of verify.py
(every acknowledged record read back once, byte for byte, at the offset
its delivery report gave; offsets dense from 0), plus: every agent serves
identical records at identical offsets. Where producers retry across a
failure (an agent or etcd member killed, object-store faults), a retried
record may be stored twice, but every acknowledged record must be at its
acknowledged offset, every offset must hold exactly one record, and every
record read must be one that some producer sent.

Tests: three agents with concurrent producers; kill -9 of an agent during
load; kill -9 of the etcd leader during load; an etcd follower down for a
while (quorum intact); an agent whose membership lease was lost registers
again; object-store PUT failures and latency; full cluster restart (agents,
then every etcd member); SeaweedFS with two agents.

Environment:
    SILT_BIN                  the silt binary (default /var/tmp/silt-target/debug/silt)
    SILT_E2E_CLUSTER_RECORDS  records per producer (default 20000)
    SILT_E2E_CLUSTER_TIMEOUT  seconds per test before it is aborted (default 240)

Run: cd tests/e2e && python3 -m pytest -q test_cluster.py
(the rest of the suite without these: python3 -m pytest -q -m "not cluster")
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

import cluster as cl
import rawkafka
import roundtrip as rt
import verify as vf

pytestmark = pytest.mark.cluster

PARTITIONS = 16
RECORDS = int(os.environ.get("SILT_E2E_CLUSTER_RECORDS", "20000"))
TEST_TIMEOUT_S = int(os.environ.get("SILT_E2E_CLUSTER_TIMEOUT", "240"))
# Producers sleep this long after every 100 records so that a load lasts
# long enough (about RECORDS / 100 * PACE_S seconds) to fail something in
# the middle of it.
PACE_S = 0.05
CODECS = ("lz4", "zstd", "gzip", "snappy", "none")

# Producers that retry (librdkafka's default) across failures, with a
# generous delivery timeout.
RETRYING = {"message.timeout.ms": 60_000, "retry.backoff.ms": 200}
# Producers that never retry: then each acknowledged record was appended
# once, in send order.
NO_RETRIES = {"retries": 0}


class ClusterTestTimeout(Exception):
    pass


@pytest.fixture
def make_cluster(request, tmp_path):
    """make_cluster(agents=3, etcd_members=3, s3="moto", agent_env=None)
    starts a cluster; everything is stopped by PID at teardown, and agent
    log tails are attached to the report of a failed test."""
    made: list[cl.Cluster] = []

    def make(**kw) -> cl.Cluster:
        c = cl.Cluster(tmp_path / f"cluster{len(made)}", **kw)
        made.append(c)
        request.node._silt_cluster = c
        return c.start()

    def on_alarm(signum, frame):
        raise ClusterTestTimeout(f"test aborted after {TEST_TIMEOUT_S}s (SILT_E2E_CLUSTER_TIMEOUT)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT_S)
    try:
        yield make
        signal.alarm(0)
        crashed = {k: v for c in made for k, v in c.crashed().items()}
        if crashed:
            pytest.fail(f"agents exited on their own during the test (exit codes): {crashed}\n"
                        + "\n\n".join(c.log_tails() for c in made))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        cl.Load.abort_all()
        for c in made:
            c.close()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def record_sets(n_producers: int, n: int, seed: int, tag: str, first: int = 0) -> list[list]:
    """One list of records per producer; ids and indexes unique across all."""
    return [
        rt.generate_records(n, PARTITIONS, seed=seed + i, tag=f"{tag}-p{i + 1}",
                            first_idx=first + i * n)
        for i in range(n_producers)
    ]


def producer_specs(c: cl.Cluster, sets: list[list], config: dict) -> list[cl.ProducerSpec]:
    """Producer i writes through agent i (client.id silt_az=z<i>), with its
    own compression codec; bootstrap is every agent."""
    return [
        cl.ProducerSpec(f"p{i + 1}", recs, {"client.id": c.client_id(i, f"p{i + 1}"),
                                            "compression.type": CODECS[i % len(CODECS)],
                                            **config})
        for i, recs in enumerate(sets)
    ]


def new_topic(c: cl.Cluster, prefix: str) -> str:
    topic = rt.unique_topic(prefix)
    rt.create_topic(c.bootstrap, topic, PARTITIONS)
    # Every agent knows the topic (each replays the log on its own).
    for a in c.live():
        md = rawkafka.metadata(a.addr, [topic])
        assert md.topic_errors.get(topic) == 0 and len(md.leaders[topic]) == PARTITIONS, (
            f"agent {a.agent_id} does not know topic {topic}: {md.topic_errors}")
    return topic


def all_delivered(res: cl.LoadResult, total: int) -> None:
    assert not res.failures and not res.undelivered, (
        f"{len(res.failures)} of {total} records failed delivery "
        f"({cl.failure_summary(res.failures)}); undelivered after flush: {res.undelivered}")
    assert len(res.acks) == total


def check_strict(c: cl.Cluster, topic: str, records: list, acks: dict, agents) -> dict:
    """Read the topic through each agent in `agents`: exactly-once checks,
    and the same bytes at the same offsets everywhere. Returns the high
    watermarks."""
    ref = None
    for i in agents:
        consumed, high = cl.consume_via(c, i, topic, PARTITIONS)
        vf.check_exactly_once(records, acks, consumed, PARTITIONS, high)
        if ref is None:
            ref = (i, consumed, high)
        else:
            vf.check_same_bytes(ref[1], consumed, PARTITIONS,
                          f"agent {c.agents[ref[0]].agent_id} vs {c.agents[i].agent_id}")
            assert high == ref[2], f"high watermarks differ between agents: {ref[2]} vs {high}"
        rt.log(f"verified {sum(high.values())} records through agent {c.agents[i].agent_id}")
    return ref[2]


def check_at_least_once(c: cl.Cluster, topic: str, records: list, acks: dict, agents,
                        ref=None):
    """Read through each agent in `agents` with the at-least-once checks;
    all agents (and `ref`, an earlier pass) must return the same bytes.
    Returns (consumed, high watermarks, AtLeastOnce) of the first pass."""
    out = ref
    for i in agents:
        consumed, high = cl.consume_via(c, i, topic, PARTITIONS)
        stats = vf.check_at_least_once(records, acks, consumed, PARTITIONS, high)
        if out is None:
            out = (consumed, high, stats)
        else:
            vf.check_same_bytes(out[0], consumed, PARTITIONS, f"agent {c.agents[i].agent_id} vs "
                                                               f"the first agent read")
            assert high == out[1], f"high watermarks differ between agents: {out[1]} vs {high}"
        rt.log(f"verified {sum(high.values())} records through agent {c.agents[i].agent_id} "
               f"({stats.duplicates} duplicate copies, {stats.unacked_present} stored records "
               f"never acknowledged)")
    return out


def membership_complete(c: cl.Cluster, what: str, timeout: float = 15.0) -> None:
    """Every running agent is back in every running agent's Metadata."""
    try:
        c.wait_ready(timeout=timeout)
    except RuntimeError as e:
        raise AssertionError(f"{what}: live agents missing from Metadata: {e}") from None


def store_metrics(c: cl.Cluster) -> list[dict[str, float]]:
    ms = [c.metrics(i) for i in range(len(c.agents))]
    for a, m in zip(c.agents, ms):
        rt.log(f"metrics {a.agent_id}: " + ", ".join(
            f"{k.removeprefix('silt_')}={m.get(k, 0):.0f}"
            for k in ("silt_object_store_puts_total", "silt_object_store_errors_total",
                      "silt_object_store_gets_total", "silt_records", "silt_live_agents")))
    return ms


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_three_agents_concurrent_producers(make_cluster):
    """Three agents, three etcd members, moto: one producer per agent, all
    writing the same 16 partitions at once; every agent then serves the
    same records at the same offsets."""
    c = make_cluster(agents=3, etcd_members=3, s3="moto")
    topic = new_topic(c, "cluster-basic")
    sets = record_sets(3, RECORDS, seed=500, tag="basic")
    records = [r for s in sets for r in s]

    res = cl.run_load(c.bootstrap, topic, producer_specs(c, sets, NO_RETRIES))
    all_delivered(res, len(records))
    vf.check_acks(records, res.acks)
    high = check_strict(c, topic, records, res.acks, range(3))
    counts = Counter(r.partition for r in records)
    assert high == {p: counts[p] for p in range(PARTITIONS)}
    for i, s in enumerate(sets):
        vf.check_send_order(s, res.acks, lambda r: f"producer p{i + 1}")

    ms = store_metrics(c)
    for a, m in zip(c.agents, ms):
        assert m.get("silt_object_store_puts_total", 0) > 0, (
            f"agent {a.agent_id} made no object-store PUT: its producer's writes did not go "
            f"through it")
        assert m.get("silt_records") == len(records), (a.agent_id, m.get("silt_records"))
        assert m.get("silt_live_agents") == 3, (a.agent_id, m.get("silt_live_agents"))


def test_agent_kill9_during_load(make_cluster):
    """kill -9 of one agent while three producers write: nothing
    acknowledged is lost, the others keep serving, and the restarted agent
    catches up."""
    c = make_cluster(agents=3, etcd_members=1, s3="moto")
    topic = new_topic(c, "cluster-kill9")
    sets = record_sets(3, RECORDS, seed=600, tag="kill9")
    records = [r for s in sets for r in s]
    victim = 1

    load = cl.Load(c.bootstrap, topic, producer_specs(c, sets, RETRYING), pace=PACE_S).start()
    load.wait_acked(int(0.4 * len(records)), timeout=120)
    at_kill = load.reported()
    assert at_kill[0] < len(records), "load finished before the kill; raise PACE_S"
    victim_producer = f"p{victim + 1}"  # wrote through the victim until the kill
    victim_acks = load.acked_by(victim_producer)
    c.kill9(victim)
    t_kill = time.monotonic()
    survivors = [i for i in range(3) if i != victim]
    c.wait_brokers(survivors, timeout=20)
    rt.log(f"agent {c.agents[victim].agent_id} left Metadata {time.monotonic() - t_kill:.1f}s "
           f"after the kill ((acked, failed) at the kill: {at_kill})")
    # The producer that wrote through the dead agent moves to the others.
    load.wait_acked_by(victim_producer, victim_acks + 500, timeout=60)
    rt.log(f"producer {victim_producer} acknowledged again "
           f"{time.monotonic() - t_kill:.1f}s after the kill")
    res = load.wait(timeout=180)

    # Data first, then delivery: a lost record is the more important finding.
    first = check_at_least_once(c, topic, records, res.acks, survivors)
    all_delivered(res, len(records))

    c.restart(victim)
    check_at_least_once(c, topic, records, res.acks, [victim], ref=first)

    # The restarted agent takes writes again; every agent serves them.
    more = rt.generate_records(2000, PARTITIONS, seed=650, tag="kill9-after",
                               first_idx=len(records))
    spec = cl.ProducerSpec("after", more, {"client.id": c.client_id(victim, "after"),
                                           **NO_RETRIES})
    res2 = cl.run_load(c.bootstrap, topic, [spec])
    all_delivered(res2, len(more))
    vf.check_appended_after(more, res2.acks, first[1])
    check_at_least_once(c, topic, records + more, {**res.acks, **res2.acks}, range(3))
    ms = store_metrics(c)
    assert ms[victim].get("silt_object_store_puts_total", 0) > 0, (
        "the restarted agent made no PUT: the writes did not go through it")


def test_etcd_leader_kill9_during_load(make_cluster):
    """kill -9 of the etcd leader (three members) while three producers
    write: produce resumes after the election and nothing acknowledged is
    lost; the member then rejoins."""
    c = make_cluster(agents=3, etcd_members=3, s3="moto")
    topic = new_topic(c, "cluster-etcd")
    sets = record_sets(3, RECORDS, seed=700, tag="etcd")
    records = [r for s in sets for r in s]

    load = cl.Load(c.bootstrap, topic, producer_specs(c, sets, RETRYING), pace=PACE_S).start()
    load.wait_acked(int(0.4 * len(records)), timeout=120)
    leader = c.etcd.leader()
    at_kill = load.reported()
    assert at_kill[0] < len(records), "load finished before the kill; raise PACE_S"
    before = {s.name: load.acked_by(s.name) for s in load.specs}
    with cl.MembershipWatch(c, range(3)) as watch:
        c.etcd.kill(leader)
        t_kill = time.monotonic()
        rt.log(f"killed etcd leader {leader}; (acked, failed) at the kill: {at_kill}")
        # Every producer (each writes through its own agent) gets acks again.
        for name, n in before.items():
            load.wait_acked_by(name, n + 500, timeout=60)
        rt.log(f"produce resumed on every agent {time.monotonic() - t_kill:.1f}s after the "
               f"kill; new etcd leader {c.etcd.leader()}")
        res = load.wait(timeout=180)
    rt.log(f"while the member was down: {watch.summary()}")
    membership_complete(c, f"after etcd leader {leader} was killed")

    first = check_at_least_once(c, topic, records, res.acks, range(3))
    all_delivered(res, len(records))

    c.etcd.restart(leader)
    rt.log(f"etcd {leader} restarted; leader now {c.etcd.leader()}")
    # Still writable and consistent with the member back.
    more = record_sets(3, 500, seed=750, tag="etcd-after", first=len(records))
    more_records = [r for s in more for r in s]
    res2 = cl.run_load(c.bootstrap, topic, producer_specs(c, more, RETRYING))
    all_delivered(res2, len(more_records))
    vf.check_appended_after(more_records, res2.acks, first[1])
    check_at_least_once(c, topic, records + more_records, {**res.acks, **res2.acks}, range(3))


def test_etcd_follower_down(make_cluster):
    """One etcd member (not the leader) crashes and stays down: etcd keeps
    its quorum, so once the agents' clients notice, commits succeed and
    every live agent stays in Metadata. Producers do not retry here, so a
    commit that fails is visible as a failed delivery."""
    c = make_cluster(agents=3, etcd_members=3, s3="moto")
    topic = new_topic(c, "cluster-etcd-follower")
    sets = record_sets(3, RECORDS, seed=760, tag="follower")
    records = [r for s in sets for r in s]
    grace_s = 5.0  # to notice a dead endpoint

    # About 2 * RECORDS / 1000 seconds of load; the member dies early on.
    load = cl.Load(c.bootstrap, topic, producer_specs(c, sets, NO_RETRIES),
                   pace=2 * PACE_S).start()
    load.wait_acked(int(0.1 * len(records)), timeout=120)
    leader = c.etcd.leader()
    follower = next(n for n in c.etcd.members if n != leader)
    with cl.MembershipWatch(c, range(3)) as watch:
        c.etcd.kill(follower)
        t_kill = time.monotonic()
        rt.log(f"killed etcd follower {follower} (leader {leader}); (acked, failed) at the "
               f"kill: {load.reported()}")
        res = load.wait(timeout=180)
        observed = time.monotonic() - t_kill - grace_s
    rt.log(f"with {follower} down: {watch.summary()}; "
           f"{len(res.failures)} failed deliveries ({cl.failure_summary(res.failures)})")
    assert observed > 5, "load ended too soon after the kill to observe anything"

    membership_complete(c, f"with etcd member {follower} down")
    check_at_least_once(c, topic, records, res.acks, range(3))
    late_gaps = watch.gaps_after(t_kill + grace_s)
    assert not late_gaps, (
        f"with one of three etcd members down (quorum intact), live agents dropped out of "
        f"Metadata: {len(late_gaps)} samples in the {observed:.0f}s after a {grace_s:.0f}s "
        f"grace period; first at {late_gaps[0][0]:.1f}s: agent {late_gaps[0][1]} did not list "
        f"ports {late_gaps[0][2]} ({watch.summary()})")
    late = load.failures_after(t_kill + grace_s)
    assert not late, (
        f"with one of three etcd members down (quorum intact), {len(late)} deliveries failed "
        f"more than {grace_s:.0f}s after the member died; first: {late[0][1]}")
    c.etcd.restart(follower)


def test_membership_lease_lost_rejoins(make_cluster):
    """An agent whose membership lease expired (keep-alives lost for longer
    than the TTL, e.g. while its etcd endpoint was down) registers again
    and comes back into every agent's Metadata. Revoking the lease makes
    that happen at once."""
    c = make_cluster(agents=2, etcd_members=1, s3="moto")
    old = c.revoke_agent_lease(0)
    t0 = time.monotonic()
    # The agent notices at its next keep-alive and registers under a new
    # lease; that can be quicker than the other agent's poll of the live
    # set, so the test follows the registration itself.
    new = None
    while time.monotonic() - t0 < 12:  # four TTLs
        new = c.agent_lease(0)
        if new and new != old:
            break
        time.sleep(0.2)
    if not (new and new != old):
        lines = [l for l in c.agents[0].log_text().splitlines() if "membership" in l]
        raise AssertionError(
            f"agent a1 did not register again within 12s after its membership lease {old:x} "
            f"was revoked\nits last membership log lines:\n" + "\n".join(lines[-3:])
        )
    rt.log(f"a1 registered again after {time.monotonic() - t0:.1f}s with lease {new:x}")
    c.wait_brokers([0, 1], timeout=10)


def test_object_store_faults(make_cluster):
    """10 % of PUTs fail (half of them after the object was written) and
    every request takes 200 ms longer: producers retry, nothing
    acknowledged is lost, no offset is assigned twice, and only records
    some producer sent are ever visible."""
    env = lambda i: {  # noqa: E731
        # The seed's low bit is forced to 1: odd seeds keep the agents distinct.
        "SILT_TEST_FAULTS": f"put_error_rate=0.1,latency=200ms,seed={4241 + 2 * i}",
    }
    c = make_cluster(agents=3, etcd_members=1, s3="moto", agent_env=env)
    topic = new_topic(c, "cluster-faults")
    sets = record_sets(3, RECORDS, seed=800, tag="faults")
    records = [r for s in sets for r in s]

    load = cl.Load(c.bootstrap, topic, producer_specs(c, sets, RETRYING), pace=PACE_S).start()
    res = load.wait(timeout=180)

    consumed, high, stats = check_at_least_once(c, topic, records, res.acks, range(3))
    all_delivered(res, len(records))
    # A failed produce must never become visible (DESIGN: a PUT that fails
    # fails the produce; an upload whose commit never happened is never
    # visible), and no agent died, so nothing may be stored twice.
    assert stats.duplicates == 0, (
        f"{stats.duplicates} records stored more than once: a produce answered with an error "
        f"was nevertheless committed")

    ms = store_metrics(c)
    assert all(m.get("silt_object_store_puts_total", 0) > 0 for m in ms)
    errors = [m.get("silt_object_store_errors_total", 0) for m in ms]
    assert sum(errors) > 0, f"no object-store errors were injected: {errors}"


def test_full_cluster_restart(make_cluster):
    """Stop every agent (SIGTERM), crash and restart every etcd member on
    its data, start the agents again: everything is readable at the same
    offsets and new records continue the offsets."""
    c = make_cluster(agents=3, etcd_members=3, s3="moto")
    topic = new_topic(c, "cluster-restart")
    n = max(RECORDS // 2, 100)
    sets = record_sets(3, n, seed=900, tag="before")
    first = [r for s in sets for r in s]
    res = cl.run_load(c.bootstrap, topic, producer_specs(c, sets, NO_RETRIES))
    all_delivered(res, len(first))
    high = check_strict(c, topic, first, res.acks, range(3))

    codes = c.stop_all()
    assert all(rc == 0 for rc in codes.values()), f"agents did not exit cleanly: {codes}"
    for name in c.etcd.members:
        c.etcd.kill(name)
    t0 = time.monotonic()
    c.etcd.start()  # every member on its data directory
    rt.log(f"etcd restarted in {time.monotonic() - t0:.1f}s, leader {c.etcd.leader()}")
    c.start_all()

    high_after = check_strict(c, topic, first, res.acks, range(3))
    assert high_after == high, f"high watermarks changed across the restart: {high} -> {high_after}"

    more = record_sets(3, max(n // 5, 100), seed=950, tag="after", first=len(first))
    second = [r for s in more for r in s]
    res2 = cl.run_load(c.bootstrap, topic, producer_specs(c, more, NO_RETRIES))
    all_delivered(res2, len(second))
    # Offsets after the restart continue densely from the old high watermarks.
    vf.check_dense_acks(res2.acks.values(), start=high)
    check_strict(c, topic, first + second, {**res.acks, **res2.acks}, range(3))


def test_seaweedfs_two_agents(make_cluster):
    """One etcd member, SeaweedFS (persistent, SigV4), two agents: the
    basic round trip through each agent."""
    c = make_cluster(agents=2, etcd_members=1, s3="seaweedfs")
    topic = new_topic(c, "cluster-seaweed")
    sets = record_sets(2, max(RECORDS // 2, 100), seed=1000, tag="weed")
    records = [r for s in sets for r in s]
    res = cl.run_load(c.bootstrap, topic, producer_specs(c, sets, NO_RETRIES))
    all_delivered(res, len(records))
    check_strict(c, topic, records, res.acks, range(2))
    for i, s in enumerate(sets):
        vf.check_send_order(s, res.acks, lambda r: f"producer p{i + 1}")
    ms = store_metrics(c)
    for a, m in zip(c.agents, ms):
        assert m.get("silt_object_store_puts_total", 0) > 0, f"agent {a.agent_id} made no PUT"
    keys = c.s3.client().list_objects_v2(Bucket="silt", Prefix="segments/").get("KeyCount", 0)
    assert keys > 0, "no segment objects in the SeaweedFS bucket"
