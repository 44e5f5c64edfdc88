"""Replica-management and introspection APIs on a three-agent cluster,
through kafka-python's and confluent-kafka's admin clients: the answers a
system without replicas or disks gives (DescribeLogDirs: one virtual log
dir per agent, every partition once across the agents, its size from the
index; elections succeed; no reassignment is in progress, and none can be
started; DescribeProducers: the idempotent producers a partition keeps;
ListTransactions: none).
"""

import pytest
from confluent_kafka import ElectionType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import cluster as cl
import roundtrip

PARTITIONS = 6
PER_PARTITION = 20
VALUE = b"v" * 200


@pytest.fixture
def three(tmp_path, request):
    c = cl.Cluster(tmp_path / "cluster", agents=3, etcd_members=1)
    request.node._silt_cluster = c
    try:
        yield c.start()
    finally:
        c.close()


def test_replica_management_apis(three):
    from kafka import KafkaAdminClient, TopicPartition as KTP
    from kafka.errors import InvalidReplicationAssignmentError, UnknownTopicOrPartitionError

    boot = three.bootstrap
    topic = roundtrip.unique_topic("replicas")
    a = AdminClient({"bootstrap.servers": boot})
    a.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": boot, "enable.idempotence": True, "linger.ms": 50})
    for i in range(PARTITIONS * PER_PARTITION):
        p.produce(topic, VALUE, partition=i % PARTITIONS)
    assert p.flush(60) == 0

    k = KafkaAdminClient(bootstrap_servers=boot, request_timeout_ms=30000)
    try:
        # DescribeLogDirs: each agent answers one directory; across the
        # agents every partition appears exactly once, holding at least its
        # records' values.
        dirs = k.describe_log_dirs()
        assert len(dirs) == 3, dirs
        seen = {}
        log_dir = {}
        for b in dirs:
            assert len(b["log_dirs"]) == 1, b
            d = b["log_dirs"][0]
            assert d["error_code"] == 0 and d["log_dir"].startswith("s3://"), d
            log_dir[b["broker"]] = d["log_dir"]
            for t in d["topics"]:
                if t["name"] != topic:
                    continue
                for part in t["partitions"]:
                    assert part["partition_index"] not in seen, (part, seen)
                    seen[part["partition_index"]] = (b["broker"], part["partition_size"])
        assert sorted(seen) == list(range(PARTITIONS)), seen
        for broker, size in seen.values():
            assert size >= PER_PARTITION * len(VALUE), seen
        # The agent that reports a partition is the one Metadata names its
        # leader (for a client without a zone).
        leaders = __import__("rawkafka").metadata(three.agents[0].addr, [topic]).leaders[topic]
        assert {p: b for p, (b, _) in seen.items()} == leaders

        # ElectLeaders: known partitions succeed, unknown ones are named.
        r = k.elect_leaders(0, {topic: [0, 1]})
        assert [x.error_code for t in r.replica_election_results for x in t.partition_result] == [0, 0]
        r = k.elect_leaders(1, {topic: [PARTITIONS]}, raise_errors=False)
        assert [x.error_code for t in r.replica_election_results for x in t.partition_result] \
            == [UnknownTopicOrPartitionError.errno]
        done = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(30)
        assert done[TopicPartition(topic, 0)] is None, done

        # Reassignments: none in progress, none can be started.
        assert k.list_partition_reassignments() == {}
        node = seen[0][0]
        out = k.alter_partition_reassignments({KTP(topic, 0): [node]})
        assert out[KTP(topic, 0)] is InvalidReplicationAssignmentError, out

        # AlterReplicaLogDirs: the partition already is in the one directory.
        ok = k.alter_replica_log_dirs({(topic, 0, node): log_dir[node]})
        assert len(_flat(ok)) == 1, ok
        assert all(e is None or getattr(e, "errno", 0) == 0 for e in _flat(ok)), ok
        bad = k.alter_replica_log_dirs({(topic, 0, node): "/var/kafka-logs"})
        assert any("LogDirNotFound" in repr(e) for e in _flat(bad)), bad

        # DescribeProducers: the idempotent producer with its last sequence.
        states = k.describe_producers([KTP(topic, 1)])
        active = states[KTP(topic, 1)].active_producers
        assert len(active) == 1, states
        assert active[0].last_sequence == PER_PARTITION - 1, active
        assert active[0].producer_epoch == 0 and active[0].current_transaction_start_offset == -1
        with pytest.raises(UnknownTopicOrPartitionError):
            k.describe_producers([KTP(topic, PARTITIONS)])

        # ListTransactions: every agent answers; none is open.
        listed = k.list_transactions()
        assert sorted(listed) == sorted(b["broker"] for b in dirs), listed
        assert all(v == [] for v in listed.values()), listed
        assert all(v == [] for v in k.list_transactions(state_filters=["Ongoing"]).values())
    finally:
        k.close()


def _flat(result):
    """The per-partition outcomes of kafka-python's alter_replica_log_dirs."""
    if isinstance(result, dict):
        return [v for v in result.values()]
    return list(result)
