"""Group coordinators are fenced: an agent that stalls past its membership
lease loses its groups, and when it resumes it can no longer write offsets
over the new coordinator's."""

import os
import signal
import time

import pytest

import cluster as cl
import rawkafka
import roundtrip as rt
from test_cluster import make_cluster  # noqa: F401  (fixture)

pytestmark = pytest.mark.cluster

NOT_COORDINATOR = 16


def _coordinator_index(c: cl.Cluster, group: str, via: int) -> int:
    err, node = rawkafka.find_coordinator(c.agents[via].addr, group)
    assert err == 0, err
    return [c.node_id(i) for i in range(len(c.agents))].index(node)


def test_a_stale_coordinator_cannot_overwrite_offsets(make_cluster):  # noqa: F811
    c = make_cluster(agents=2, etcd_members=1, s3="moto", agent_env={"SILT_LEASE_TTL": "2s"})
    topic = rt.unique_topic("fence")
    rt.create_topic(c.bootstrap, topic, 1)
    group = "fenced-group"
    a = _coordinator_index(c, group, 0)
    b = 1 - a
    node_b = c.node_id(b)
    # The coordinator A takes a first commit.
    assert rawkafka.offset_commit(c.agents[a].addr, group, topic, {0: 1}) == {0: 0}
    # A stalls (a long pause) past its lease; B becomes the coordinator.
    stale_lease = c.agent_lease(a)
    os.kill(c.agents[a].pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while True:
            err, node = rawkafka.find_coordinator(c.agents[b].addr, group)
            if err == 0 and node == node_b:
                break
            assert time.monotonic() < deadline, "B never became the group's coordinator"
            time.sleep(0.2)
        assert rawkafka.offset_commit(c.agents[b].addr, group, topic, {0: 5000}) == {0: 0}
    finally:
        os.kill(c.agents[a].pid, signal.SIGCONT)
    # A resumes and, at once, a client of A commits an older offset to it.
    # A refuses it; or, if A registered anew before the request reached it
    # (a new lease: it is a live agent again, and the group's choice among
    # the live agents), A is the coordinator of record again and takes it.
    # A commit under the expired registration is what must never pass.
    result = rawkafka.offset_commit(c.agents[a].addr, group, topic, {0: 100})
    if result == {0: 0}:
        assert c.agent_lease(a) not in (0, stale_lease), \
            "A took a commit under its expired registration"
        expected = 100
    else:
        assert result == {0: NOT_COORDINATOR}, result
        expected = 5000
        assert rawkafka.offset_fetch(c.agents[b].addr, group, topic, [0]) == {0: (5000, 0)}
    # And later too, once A is back in the cluster.
    time.sleep(3)
    for i in (a, b):
        err, node = rawkafka.find_coordinator(c.agents[i].addr, group)
        if node != c.node_id(i):
            assert rawkafka.offset_commit(c.agents[i].addr, group, topic, {0: 100}) \
                == {0: NOT_COORDINATOR}
    coordinator = _coordinator_index(c, group, b)
    assert rawkafka.offset_fetch(c.agents[coordinator].addr, group, topic, [0]) == {0: (expected, 0)}
