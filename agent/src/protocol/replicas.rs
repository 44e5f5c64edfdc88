//! Replica-management and introspection APIs, answered as a system without
//! replicas or local disks answers them: elections succeed at once (any
//! agent serves any partition), no reassignment is ever in progress, each
//! agent has one virtual log directory (its bucket) holding the partitions
//! it leads with their sizes from the index, and the idempotent producers
//! of a partition come from the replicated state, as do transactions.

use kafka_protocol::{
    messages::{
        alter_partition_reassignments_response::{
            ReassignablePartitionResponse, ReassignableTopicResponse,
        },
        alter_replica_log_dirs_response::{
            AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
        },
        describe_log_dirs_response::{
            DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
        },
        describe_producers_response::{PartitionResponse, ProducerState, TopicResponse},
        describe_transactions_response::TransactionState,
        elect_leaders_response::{PartitionResult, ReplicaElectionResult},
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
        AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, DescribeLogDirsRequest,
        DescribeLogDirsResponse, DescribeProducersRequest, DescribeProducersResponse,
        DescribeTransactionsRequest, DescribeTransactionsResponse, ElectLeadersRequest,
        ElectLeadersResponse, ListPartitionReassignmentsRequest,
        ListPartitionReassignmentsResponse, ListTransactionsRequest, ListTransactionsResponse,
        ProducerId, TopicName,
    },
    protocol::StrBytes,
};

use crate::{
    broker::Broker,
    error::ErrorKind,
    protocol::metadata::{default_leader, leader_candidates},
};

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Whether the topic has the partition.
fn exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker
        .topics
        .get(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions)
}

/// This agent's one log directory: where its data lives.
pub fn log_dir(broker: &Broker) -> String {
    match &broker.settings.bucket {
        Some(b) => format!("{}/{}", b.trim_end_matches('/'), broker.settings.cluster),
        None => broker
            .settings
            .data_dir
            .join("bucket")
            .display()
            .to_string(),
    }
}

/// ElectLeaders: every partition already has the leader silt's placement
/// gives it, and any agent can serve it, so an election of a known
/// partition succeeds at once (preferred or unclean alike).
pub fn elect_leaders(broker: &Broker, req: ElectLeadersRequest) -> ElectLeadersResponse {
    if !(0..=1).contains(&req.election_type) {
        return ElectLeadersResponse::default().with_error_code(ErrorKind::InvalidRequest.code());
    }
    // All partitions (null): Kafka lists only the partitions an election
    // changed, which here are none.
    let topics = req.topic_partitions.unwrap_or_default();
    ElectLeadersResponse::default().with_replica_election_results(
        topics
            .into_iter()
            .map(|t| {
                let partition_result = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let r = PartitionResult::default().with_partition_id(*p);
                        if exists(broker, t.topic.as_str(), *p) {
                            r
                        } else {
                            r.with_error_code(ErrorKind::UnknownTopicOrPartition.code())
                                .with_error_message(Some(s("unknown topic or partition")))
                        }
                    })
                    .collect();
                ReplicaElectionResult::default()
                    .with_topic(t.topic)
                    .with_partition_result(partition_result)
            })
            .collect(),
    )
}

/// DescribeLogDirs: one directory, the bucket, with the partitions this
/// agent leads (for clients without a zone) and their bytes in object
/// storage. Summed over every agent, each partition counts once.
pub fn describe_log_dirs(broker: &Broker, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let agents = leader_candidates(broker, &broker.membership.brokers());
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect()
    });
    let state = broker.log.state();
    let mut topics = Vec::new();
    for (name, info) in broker.topics.list() {
        let partitions: Vec<i32> = match &wanted {
            None => (0..info.partitions as i32).collect(),
            Some(w) => match w.iter().find(|(n, _)| *n == name) {
                Some((_, ps)) => ps.clone(),
                None => continue,
            },
        };
        let parts: Vec<DescribeLogDirsPartition> = partitions
            .into_iter()
            .filter(|p| default_leader(&agents, &info.id, *p) == broker.node_id)
            .filter_map(|p| {
                state.partition_bytes(&name, p).map(|bytes| {
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p)
                        .with_partition_size(bytes as i64)
                        .with_offset_lag(0)
                        .with_is_future_key(false)
                })
            })
            .collect();
        if !parts.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(s(name)))
                    .with_partitions(parts),
            );
        }
    }
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(s(log_dir(broker)))
        .with_topics(topics)
        // Object storage has no size to report.
        .with_total_bytes(-1)
        .with_usable_bytes(-1)])
}

/// AlterReplicaLogDirs: a partition is already in the one directory there
/// is; any other path does not exist.
pub fn alter_replica_log_dirs(
    broker: &Broker,
    req: AlterReplicaLogDirsRequest,
) -> AlterReplicaLogDirsResponse {
    let here = log_dir(broker);
    let mut results = Vec::new();
    for dir in req.dirs {
        let same = dir.path.as_str() == here;
        for t in dir.topics {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if !exists(broker, t.name.as_str(), *p) {
                        ErrorKind::UnknownTopicOrPartition.code()
                    } else if !same {
                        ErrorKind::LogDirNotFound.code()
                    } else {
                        0
                    };
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(*p)
                        .with_error_code(code)
                })
                .collect();
            results.push(
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(t.name)
                    .with_partitions(partitions),
            );
        }
    }
    AlterReplicaLogDirsResponse::default().with_results(results)
}

/// AlterPartitionReassignments: there are no replicas to move. Cancelling
/// is NO_REASSIGNMENT_IN_PROGRESS; a new replica list is refused with
/// INVALID_REPLICA_ASSIGNMENT, saying why.
pub fn alter_partition_reassignments(
    broker: &Broker,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let responses = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let (kind, message) = if !exists(broker, t.name.as_str(), p.partition_index)
                    {
                        (ErrorKind::UnknownTopicOrPartition, "unknown topic or partition")
                    } else if p.replicas.is_none() {
                        (
                            ErrorKind::NoReassignmentInProgress,
                            "no reassignment is in progress: silt never moves replicas",
                        )
                    } else {
                        (
                            ErrorKind::InvalidReplicaAssignment,
                            "silt keeps no replicas: every agent serves every partition from object storage, and Metadata spreads leaders over the live agents",
                        )
                    };
                    r.with_error_code(kind.code())
                        .with_error_message(Some(s(message)))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}

/// ListPartitionReassignments: none is ever in progress.
pub fn list_partition_reassignments(
    _req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
}

/// Kafka's transaction states, the ones ListTransactions may filter by.
const TRANSACTION_STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

/// ListTransactions: the transactional ids this agent coordinates (each
/// agent answers for its own, as each Kafka broker does), filtered by
/// state and producer id; filters naming no Kafka state are returned as
/// unknown.
pub fn list_transactions(
    broker: &Broker,
    req: ListTransactionsRequest,
    allowed: impl Fn(&str) -> bool,
) -> ListTransactionsResponse {
    let states: Vec<&str> = req.state_filters.iter().map(|f| f.as_str()).collect();
    let pids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let now = broker.clock.now_ms();
    let listed = broker
        .log
        .state()
        .transactions()
        .filter(|(id, e)| {
            (states.is_empty() || states.contains(&e.state.name()))
                && (pids.is_empty() || pids.contains(&e.producer_id))
                // v1: only transactions open longer than this.
                && (req.duration_filter < 0
                    || (e.state == silt_coordinator::state::TxnState::Ongoing
                        && now - e.start_time >= req.duration_filter))
                && broker.is_txn_coordinator(id)
                && allowed(id)
        })
        .map(|(id, e)| {
            kafka_protocol::messages::list_transactions_response::TransactionState::default()
                .with_transactional_id(kafka_protocol::messages::TransactionalId(s(id.clone())))
                .with_producer_id(ProducerId(e.producer_id))
                .with_transaction_state(s(e.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(
            req.state_filters
                .into_iter()
                .filter(|f| !TRANSACTION_STATES.contains(&f.as_str()))
                .collect(),
        )
        .with_transaction_states(listed)
}

/// DescribeTransactions: each transactional id's state, producer id and
/// epoch, timeout, start time and partitions.
pub fn describe_transactions(
    broker: &Broker,
    req: DescribeTransactionsRequest,
    allowed: impl Fn(&str) -> bool,
) -> DescribeTransactionsResponse {
    let state = broker.log.state();
    DescribeTransactionsResponse::default().with_transaction_states(
        req.transactional_ids
            .into_iter()
            .map(|id| {
                let out = TransactionState::default()
                    .with_transactional_id(id.clone())
                    .with_transaction_state(s(""))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
                if !allowed(id.as_str()) {
                    return out.with_error_code(ErrorKind::TransactionalIdAuthorizationFailed.code());
                }
                let Some(e) = state.transaction(id.as_str()) else {
                    return out.with_error_code(ErrorKind::TransactionalIdNotFound.code());
                };
                let mut topics: Vec<kafka_protocol::messages::describe_transactions_response::TopicData> =
                    Vec::new();
                for p in &e.partitions {
                    let Some(name) = state.topic_by_id(&p.topic).map(|t| t.name().to_string()) else {
                        continue;
                    };
                    match topics.iter_mut().find(|t| t.topic.as_str() == name) {
                        Some(t) => t.partitions.push(p.partition),
                        None => topics.push(
                            kafka_protocol::messages::describe_transactions_response::TopicData::default()
                                .with_topic(TopicName(s(name)))
                                .with_partitions(vec![p.partition]),
                        ),
                    }
                }
                out.with_transaction_state(s(e.state.name()))
                    .with_producer_id(ProducerId(e.producer_id))
                    .with_producer_epoch(e.epoch)
                    .with_transaction_timeout_ms(e.timeout_ms as i32)
                    .with_transaction_start_time_ms(e.start_time)
                    .with_topics(topics)
            })
            .collect(),
    )
}

/// DescribeProducers: the idempotent producers each partition remembers
/// (the last sequence of their latest batch, its append time). No
/// transaction is ever open.
pub fn describe_producers(
    broker: &Broker,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let state = broker.log.state();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|p| {
                    let r = PartitionResponse::default().with_partition_index(*p);
                    match state.producers(t.name.as_str(), *p) {
                        None => r
                            .with_error_code(ErrorKind::UnknownTopicOrPartition.code())
                            .with_error_message(Some(s("unknown topic or partition"))),
                        Some(producers) => r.with_active_producers(
                            producers
                                .into_iter()
                                .map(|(id, e)| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(id))
                                        .with_producer_epoch(e.epoch as i32)
                                        .with_last_sequence(
                                            e.recent.back().map_or(-1, |(_, last, _)| *last),
                                        )
                                        .with_last_timestamp(e.last_time)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(
                                            state
                                                .open_txn_start(t.name.as_str(), *p, id)
                                                .unwrap_or(-1),
                                        )
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
