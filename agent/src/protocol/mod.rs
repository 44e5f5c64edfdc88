//! Kafka API handlers, one module per API, and the version table.

mod acls;
mod admin;
mod api_versions;
mod authz;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod produce;
mod replicas;
mod topics;
mod txn;

use std::sync::Arc;

use futures::future::BoxFuture;
use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::broker::Broker;
use crate::error::ErrorKind;
use crate::security::acl::{op, resource, CLUSTER_NAME};
use kafka_protocol::protocol::StrBytes;

pub use api_versions::{supported, unsupported_version_response};

/// A response, with the share of its connection's response budget it
/// holds until it is written.
pub struct Response {
    pub kind: ResponseKind,
    pub budget: Option<OwnedSemaphorePermit>,
}

impl From<ResponseKind> for Response {
    fn from(kind: ResponseKind) -> Self {
        Self { kind, budget: None }
    }
}

/// The response to a request, once it is known.
pub type Reply = BoxFuture<'static, Option<Response>>;

/// What a handler knows of the connection a request came on.
#[derive(Clone)]
pub struct Conn {
    /// The client's address, as Kafka reports a member's host ("/ip").
    pub peer: String,
    /// The client's IP address, as ACLs name hosts.
    pub host: String,
    /// Who the client is (`User:NAME`, `User:ANONYMOUS` unauthenticated).
    pub principal: String,
    /// The listener the connection came in on.
    pub listener: crate::security::Protocol,
    /// Bytes of responses the connection may hold before they are written
    /// (`connection_response_bytes`). Fetch takes its share before reading.
    pub responses: Arc<Semaphore>,
    pub response_budget: usize,
    /// JoinGroup and SyncGroup requests of the connection waiting for their
    /// group at once (`max_group_waits_per_connection`); reading the
    /// connection pauses while they are all taken.
    pub group_waits: Arc<Semaphore>,
}

impl Conn {
    /// Whether this connection's principal may do `operation` on the
    /// resource (always, without the authorizer).
    pub fn can(&self, broker: &Broker, operation: i8, resource_type: i8, name: &str) -> bool {
        broker
            .security
            .authorize(&self.principal, &self.host, operation, resource_type, name)
    }

    pub fn can_topic(&self, broker: &Broker, operation: i8, topic: &str) -> bool {
        self.can(broker, operation, resource::TOPIC, topic)
    }

    pub fn can_group(&self, broker: &Broker, operation: i8, group: &str) -> bool {
        self.can(broker, operation, resource::GROUP, group)
    }

    pub fn can_cluster(&self, broker: &Broker, operation: i8) -> bool {
        self.can(broker, operation, resource::CLUSTER, CLUSTER_NAME)
    }

    /// A connection for in-process callers (tests, the HTTP API before it
    /// authenticates): anonymous, on PLAINTEXT.
    pub fn internal(peer: &str) -> Self {
        let budget = 1 << 30;
        Self {
            peer: peer.to_string(),
            host: peer.trim_start_matches('/').to_string(),
            principal: crate::security::ANONYMOUS.to_string(),
            listener: crate::security::Protocol::Plaintext,
            responses: Arc::new(Semaphore::new(budget)),
            response_budget: budget,
            group_waits: Arc::new(Semaphore::new(64)),
        }
    }
}

/// Whether a request changes state (its effect must follow the requests
/// sent before it on the connection). Produce is queued in order by its
/// own handler; JoinGroup and SyncGroup wait for the whole group and run
/// alongside later requests, as a client never pipelines two of them.
fn changes_state(r: &RequestKind) -> bool {
    matches!(
        r,
        RequestKind::CreateTopics(_)
            | RequestKind::DeleteTopics(_)
            | RequestKind::CreatePartitions(_)
            | RequestKind::AlterConfigs(_)
            | RequestKind::IncrementalAlterConfigs(_)
            | RequestKind::DeleteRecords(_)
            | RequestKind::OffsetCommit(_)
            | RequestKind::OffsetDelete(_)
            | RequestKind::DeleteGroups(_)
            | RequestKind::Heartbeat(_)
            | RequestKind::ConsumerGroupHeartbeat(_)
            | RequestKind::LeaveGroup(_)
            | RequestKind::InitProducerId(_)
            | RequestKind::AddPartitionsToTxn(_)
            | RequestKind::AddOffsetsToTxn(_)
            | RequestKind::TxnOffsetCommit(_)
            | RequestKind::EndTxn(_)
            | RequestKind::CreateAcls(_)
            | RequestKind::DeleteAcls(_)
            | RequestKind::AlterUserScramCredentials(_)
    )
}

/// Takes one decoded request. Work whose order matters happens before
/// this returns: produced batches are queued, and requests that change
/// state are carried out; a connection calls it for its requests one at a
/// time, so they take effect in the order sent. The returned future
/// finishes the request and may run concurrently with later ones (reads,
/// produce acknowledgements, group joins). `None` from the future means no
/// response is sent (Produce with acks=0).
pub async fn dispatch(
    broker: Arc<Broker>,
    header: RequestHeader,
    request: RequestKind,
    conn: &Conn,
) -> Reply {
    let version = header.request_api_version;
    match request {
        RequestKind::Produce(r) => {
            let pending = produce::handle(broker, r, conn).await;
            Box::pin(async move { pending.await.map(|r| ResponseKind::Produce(r).into()) })
        }
        RequestKind::Fetch(r) => {
            let conn = conn.clone();
            Box::pin(async move { Some(fetch::handle(&broker, r, &conn).await) })
        }
        other @ (RequestKind::JoinGroup(_) | RequestKind::SyncGroup(_)) => {
            // Taken before the request is accepted: a client cannot park
            // more than the bound of joins on one connection.
            let wait = conn.group_waits.clone().acquire_owned().await.ok();
            let conn = conn.clone();
            Box::pin(async move {
                let r = handle(&broker, &header, version, other, &conn)
                    .await
                    .map(Response::from);
                drop(wait);
                r
            })
        }
        other if changes_state(&other) => {
            let done = handle(&broker, &header, version, other, conn).await;
            Box::pin(async move { done.map(Response::from) })
        }
        other => {
            let conn = conn.clone();
            Box::pin(async move {
                handle(&broker, &header, version, other, &conn)
                    .await
                    .map(Response::from)
            })
        }
    }
}

/// The error code of a group API refused by the authorizer.
fn group_denied() -> i16 {
    ErrorKind::GroupAuthorizationFailed.code()
}

async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    version: i16,
    request: RequestKind,
    conn: &Conn,
) -> Option<ResponseKind> {
    let client_id = header.client_id.as_deref().unwrap_or("");
    let peer = conn.peer.as_str();
    Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(
            metadata::handle(broker, r, version, header.client_id.as_deref(), conn).await,
        ),
        RequestKind::CreateTopics(mut r) => {
            let denied = authz::create_topics(broker, conn, &mut r);
            let mut resp = topics::create(broker, r).await;
            resp.topics.extend(denied);
            ResponseKind::CreateTopics(resp)
        }
        RequestKind::DeleteTopics(mut r) => {
            let denied = authz::delete_topics(broker, conn, &mut r);
            let mut resp = topics::delete(broker, r, version).await;
            resp.responses.extend(denied);
            ResponseKind::DeleteTopics(resp)
        }
        RequestKind::ListOffsets(mut r) => {
            let denied = authz::list_offsets(broker, conn, &mut r);
            let mut resp = list_offsets::handle(broker, r, version).await;
            resp.topics.extend(denied);
            ResponseKind::ListOffsets(resp)
        }
        RequestKind::FindCoordinator(r) => {
            let keys: Vec<String> = if version >= 4 {
                r.coordinator_keys.iter().map(|k| k.to_string()).collect()
            } else {
                vec![r.key.to_string()]
            };
            let group_keys = r.key_type == 0;
            let txn_keys = r.key_type == 1;
            let mut resp = groups::find_coordinator(broker, r, version).await;
            if txn_keys {
                let denied = ErrorKind::TransactionalIdAuthorizationFailed.code();
                let may = |k: &str| conn.can(broker, op::DESCRIBE, resource::TRANSACTIONAL_ID, k);
                if version >= 4 {
                    for c in resp.coordinators.iter_mut() {
                        if !may(c.key.as_str()) {
                            c.error_code = denied;
                            c.node_id = kafka_protocol::messages::BrokerId(-1);
                            c.host = Default::default();
                            c.port = -1;
                        }
                    }
                } else if keys.first().is_some_and(|k| !may(k)) {
                    resp = kafka_protocol::messages::FindCoordinatorResponse::default()
                        .with_error_code(denied)
                        .with_node_id(kafka_protocol::messages::BrokerId(-1))
                        .with_port(-1);
                }
            }
            if group_keys {
                if version >= 4 {
                    for c in resp.coordinators.iter_mut() {
                        if !conn.can_group(broker, op::DESCRIBE, c.key.as_str()) {
                            c.error_code = group_denied();
                            c.node_id = kafka_protocol::messages::BrokerId(-1);
                            c.host = Default::default();
                            c.port = -1;
                        }
                    }
                } else if keys
                    .first()
                    .is_some_and(|k| !conn.can_group(broker, op::DESCRIBE, k))
                {
                    resp = kafka_protocol::messages::FindCoordinatorResponse::default()
                        .with_error_code(group_denied())
                        .with_node_id(kafka_protocol::messages::BrokerId(-1))
                        .with_port(-1);
                }
            }
            if version < 4 {
                // The coordinator's address on the client's listener.
                if let Some(a) = broker
                    .membership
                    .brokers()
                    .into_iter()
                    .find(|a| a.node_id == resp.node_id.0)
                {
                    let (host, port) = a.address(conn.listener.name());
                    resp.host = StrBytes::from_string(host.to_string());
                    resp.port = port;
                }
            } else {
                let brokers = broker.membership.brokers();
                for c in resp.coordinators.iter_mut() {
                    if let Some(a) = brokers.iter().find(|a| a.node_id == c.node_id.0) {
                        let (host, port) = a.address(conn.listener.name());
                        c.host = StrBytes::from_string(host.to_string());
                        c.port = port;
                    }
                }
            }
            ResponseKind::FindCoordinator(resp)
        }
        RequestKind::JoinGroup(r) => {
            if !conn.can_group(broker, op::READ, r.group_id.0.as_str()) {
                return Some(ResponseKind::JoinGroup(
                    kafka_protocol::messages::JoinGroupResponse::default()
                        .with_error_code(group_denied())
                        .with_generation_id(-1),
                ));
            }
            ResponseKind::JoinGroup(groups::join(broker, r, version, client_id, peer).await)
        }
        RequestKind::SyncGroup(r) => {
            if !conn.can_group(broker, op::READ, r.group_id.0.as_str()) {
                return Some(ResponseKind::SyncGroup(
                    kafka_protocol::messages::SyncGroupResponse::default()
                        .with_error_code(group_denied()),
                ));
            }
            ResponseKind::SyncGroup(groups::sync(broker, r, version).await)
        }
        RequestKind::Heartbeat(r) => {
            if !conn.can_group(broker, op::READ, r.group_id.0.as_str()) {
                return Some(ResponseKind::Heartbeat(
                    kafka_protocol::messages::HeartbeatResponse::default()
                        .with_error_code(group_denied()),
                ));
            }
            ResponseKind::Heartbeat(groups::heartbeat(broker, r).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let denied = if !conn.can_group(broker, op::READ, r.group_id.0.as_str()) {
                Some(group_denied())
            } else if r.subscribed_topic_names.as_ref().is_some_and(|ts| {
                ts.iter()
                    .any(|t| !conn.can_topic(broker, op::DESCRIBE, t.0.as_str()))
            }) {
                Some(ErrorKind::TopicAuthorizationFailed.code())
            } else {
                None
            };
            if let Some(code) = denied {
                return Some(ResponseKind::ConsumerGroupHeartbeat(
                    kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default()
                        .with_error_code(code),
                ));
            }
            let may_describe = |t: &str| conn.can_topic(broker, op::DESCRIBE, t);
            ResponseKind::ConsumerGroupHeartbeat(
                groups::consumer_group_heartbeat(broker, r, client_id, peer, &may_describe).await,
            )
        }
        RequestKind::ConsumerGroupDescribe(mut r) => {
            use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
            let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.group_ids)
                .into_iter()
                .partition(|g| conn.can_group(broker, op::DESCRIBE, g.0.as_str()));
            r.group_ids = ok;
            let mut resp = groups::consumer_group_describe(broker, r, version).await;
            resp.groups.extend(denied.into_iter().map(|g| {
                DescribedGroup::default()
                    .with_group_id(g)
                    .with_error_code(group_denied())
                    .with_authorized_operations(i32::MIN)
            }));
            ResponseKind::ConsumerGroupDescribe(resp)
        }
        RequestKind::LeaveGroup(r) => {
            if !conn.can_group(broker, op::READ, r.group_id.0.as_str()) {
                return Some(ResponseKind::LeaveGroup(
                    kafka_protocol::messages::LeaveGroupResponse::default()
                        .with_error_code(group_denied()),
                ));
            }
            ResponseKind::LeaveGroup(groups::leave(broker, r, version).await)
        }
        RequestKind::OffsetCommit(mut r) => {
            use kafka_protocol::messages::offset_commit_response::{
                OffsetCommitResponsePartition, OffsetCommitResponseTopic,
            };
            let refuse =
                |t: &kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic,
                 code: i16| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                };
            if !conn.can_group(broker, op::READ, r.group_id.0.as_str()) {
                let topics = r.topics.iter().map(|t| refuse(t, group_denied())).collect();
                return Some(ResponseKind::OffsetCommit(
                    kafka_protocol::messages::OffsetCommitResponse::default().with_topics(topics),
                ));
            }
            let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| conn.can_topic(broker, op::READ, t.name.0.as_str()));
            r.topics = ok;
            let mut resp = groups::offset_commit(broker, r).await;
            resp.topics.extend(
                denied
                    .iter()
                    .map(|t| refuse(t, ErrorKind::TopicAuthorizationFailed.code())),
            );
            ResponseKind::OffsetCommit(resp)
        }
        RequestKind::OffsetFetch(r) => {
            let single = r.group_id.0.to_string();
            let all_topics = if version >= 8 {
                r.groups.iter().any(|g| g.topics.is_none())
            } else {
                r.topics.is_none()
            };
            let mut resp = groups::offset_fetch(broker, r, version).await;
            let topic_denied = ErrorKind::TopicAuthorizationFailed.code();
            if version >= 8 {
                for g in resp.groups.iter_mut() {
                    if !conn.can_group(broker, op::DESCRIBE, g.group_id.0.as_str()) {
                        g.error_code = group_denied();
                        g.topics.clear();
                        continue;
                    }
                    if all_topics {
                        g.topics
                            .retain(|t| conn.can_topic(broker, op::DESCRIBE, t.name.0.as_str()));
                    }
                    for t in g.topics.iter_mut() {
                        if !conn.can_topic(broker, op::DESCRIBE, t.name.0.as_str()) {
                            for p in t.partitions.iter_mut() {
                                p.error_code = topic_denied;
                                p.committed_offset = -1;
                                p.metadata = None;
                            }
                        }
                    }
                }
            } else if !conn.can_group(broker, op::DESCRIBE, &single) {
                resp.topics.clear();
                resp.error_code = group_denied();
            } else {
                if all_topics {
                    resp.topics
                        .retain(|t| conn.can_topic(broker, op::DESCRIBE, t.name.0.as_str()));
                }
                for t in resp.topics.iter_mut() {
                    if !conn.can_topic(broker, op::DESCRIBE, t.name.0.as_str()) {
                        for p in t.partitions.iter_mut() {
                            p.error_code = topic_denied;
                            p.committed_offset = -1;
                            p.metadata = None;
                        }
                    }
                }
            }
            ResponseKind::OffsetFetch(resp)
        }
        RequestKind::ListGroups(r) => {
            let mut resp = groups::list_groups(broker, r).await;
            if !conn.can_cluster(broker, op::DESCRIBE) {
                resp.groups
                    .retain(|g| conn.can_group(broker, op::DESCRIBE, g.group_id.0.as_str()));
            }
            ResponseKind::ListGroups(resp)
        }
        RequestKind::DescribeGroups(mut r) => {
            let denied = authz::describe_groups(broker, conn, &mut r);
            let mut resp = groups::describe_groups(broker, r, version).await;
            resp.groups.extend(denied);
            ResponseKind::DescribeGroups(resp)
        }
        RequestKind::DeleteGroups(mut r) => {
            let denied = authz::delete_groups(broker, conn, &mut r);
            let mut resp = groups::delete_groups(broker, r).await;
            resp.results.extend(denied);
            ResponseKind::DeleteGroups(resp)
        }
        RequestKind::OffsetDelete(mut r) => {
            use kafka_protocol::messages::offset_delete_response::{
                OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
            };
            if !conn.can_group(broker, op::DELETE, r.group_id.0.as_str()) {
                return Some(ResponseKind::OffsetDelete(
                    kafka_protocol::messages::OffsetDeleteResponse::default()
                        .with_error_code(group_denied()),
                ));
            }
            let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| conn.can_topic(broker, op::READ, t.name.0.as_str()));
            r.topics = ok;
            let mut resp = groups::offset_delete(broker, r).await;
            resp.topics.extend(denied.into_iter().map(|t| {
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(ErrorKind::TopicAuthorizationFailed.code())
                            })
                            .collect(),
                    )
            }));
            ResponseKind::OffsetDelete(resp)
        }
        RequestKind::CreatePartitions(mut r) => {
            let denied = authz::create_partitions(broker, conn, &mut r);
            let mut resp = admin::create_partitions(broker, r).await;
            resp.results.extend(denied);
            ResponseKind::CreatePartitions(resp)
        }
        RequestKind::DescribeConfigs(mut r) => {
            let denied = authz::describe_configs(broker, conn, &mut r);
            let mut resp = admin::describe_configs(broker, r).await;
            resp.results.extend(denied);
            ResponseKind::DescribeConfigs(resp)
        }
        RequestKind::AlterConfigs(mut r) => {
            let denied = authz::alter_configs(broker, conn, &mut r);
            let mut resp = admin::alter_configs(broker, r).await;
            resp.responses.extend(denied);
            ResponseKind::AlterConfigs(resp)
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let denied = authz::incremental_alter_configs(broker, conn, &mut r);
            let mut resp = admin::incremental_alter_configs(broker, r).await;
            resp.responses.extend(denied);
            ResponseKind::IncrementalAlterConfigs(resp)
        }
        RequestKind::DescribeCluster(r) => {
            // Kafka serves DescribeCluster to everyone.
            let mut resp = admin::describe_cluster(broker, r).await;
            let brokers = broker.membership.brokers();
            for b in resp.brokers.iter_mut() {
                if let Some(a) = brokers.iter().find(|a| a.node_id == b.broker_id.0) {
                    let (host, port) = a.address(conn.listener.name());
                    b.host = StrBytes::from_string(host.to_string());
                    b.port = port;
                }
            }
            ResponseKind::DescribeCluster(resp)
        }
        RequestKind::DeleteRecords(mut r) => {
            let denied = authz::delete_records(broker, conn, &mut r);
            let mut resp = admin::delete_records(broker, r).await;
            resp.topics.extend(denied);
            ResponseKind::DeleteRecords(resp)
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let denied = authz::offset_for_leader_epoch(broker, conn, &mut r);
            let mut resp = admin::offset_for_leader_epoch(broker, r).await;
            resp.topics.extend(denied);
            ResponseKind::OffsetForLeaderEpoch(resp)
        }
        RequestKind::InitProducerId(r) if r.transactional_id.is_some() => {
            ResponseKind::InitProducerId(txn::init_producer_id(broker, conn, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions(broker, conn, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(broker, conn, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(broker, conn, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end_txn(broker, conn, r).await),
        RequestKind::InitProducerId(r) => {
            if r.transactional_id.is_none() && !authz::may_init_producer_id(broker, conn) {
                return Some(ResponseKind::InitProducerId(
                    kafka_protocol::messages::InitProducerIdResponse::default()
                        .with_error_code(ErrorKind::ClusterAuthorizationFailed.code())
                        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                        .with_producer_epoch(-1),
                ));
            }
            ResponseKind::InitProducerId(admin::init_producer_id(broker, r).await)
        }
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(acls::create_acls(broker, conn, r).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(acls::describe_acls(broker, conn, r))
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(acls::delete_acls(broker, conn, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(acls::describe_scram(broker, conn, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(acls::alter_scram(broker, conn, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(if conn.can_cluster(broker, op::ALTER) {
                replicas::elect_leaders(broker, r)
            } else {
                kafka_protocol::messages::ElectLeadersResponse::default()
                    .with_error_code(ErrorKind::ClusterAuthorizationFailed.code())
            })
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(if conn.can_cluster(broker, op::DESCRIBE) {
                replicas::describe_log_dirs(broker, r)
            } else {
                kafka_protocol::messages::DescribeLogDirsResponse::default()
                    .with_error_code(ErrorKind::ClusterAuthorizationFailed.code())
            })
        }
        RequestKind::AlterReplicaLogDirs(mut r) => {
            if !conn.can_cluster(broker, op::ALTER) {
                // Every partition is refused: point them at a directory
                // that does not exist and answer with the cluster error.
                let mut resp = replicas::alter_replica_log_dirs(broker, Default::default());
                for d in std::mem::take(&mut r.dirs) {
                    for t in d.topics {
                        use kafka_protocol::messages::alter_replica_log_dirs_response::*;
                        resp.results.push(
                            AlterReplicaLogDirTopicResult::default()
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            AlterReplicaLogDirPartitionResult::default()
                                                .with_partition_index(*p)
                                                .with_error_code(
                                                    ErrorKind::ClusterAuthorizationFailed.code(),
                                                )
                                        })
                                        .collect(),
                                )
                                .with_topic_name(t.name),
                        );
                    }
                }
                return Some(ResponseKind::AlterReplicaLogDirs(resp));
            }
            ResponseKind::AlterReplicaLogDirs(replicas::alter_replica_log_dirs(broker, r))
        }
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(if conn.can_cluster(broker, op::ALTER) {
                replicas::alter_partition_reassignments(broker, r)
            } else {
                kafka_protocol::messages::AlterPartitionReassignmentsResponse::default()
                    .with_error_code(ErrorKind::ClusterAuthorizationFailed.code())
            })
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(if conn.can_cluster(broker, op::DESCRIBE) {
                replicas::list_partition_reassignments(r)
            } else {
                kafka_protocol::messages::ListPartitionReassignmentsResponse::default()
                    .with_error_code(ErrorKind::ClusterAuthorizationFailed.code())
            })
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(replicas::list_transactions(broker, r, |id| {
                conn.can(broker, op::DESCRIBE, resource::TRANSACTIONAL_ID, id)
            }))
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(replicas::describe_transactions(broker, r, |id| {
                conn.can(broker, op::DESCRIBE, resource::TRANSACTIONAL_ID, id)
            }))
        }
        RequestKind::DescribeProducers(mut r) => {
            use kafka_protocol::messages::describe_producers_response::*;
            let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| conn.can_topic(broker, op::READ, t.name.0.as_str()));
            r.topics = ok;
            let mut resp = replicas::describe_producers(broker, r);
            resp.topics.extend(denied.into_iter().map(|t| {
                TopicResponse::default()
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                PartitionResponse::default()
                                    .with_partition_index(*p)
                                    .with_error_code(ErrorKind::TopicAuthorizationFailed.code())
                            })
                            .collect(),
                    )
                    .with_name(t.name)
            }));
            ResponseKind::DescribeProducers(resp)
        }
        _ => {
            // Unreachable while `supported` gates what is decoded.
            tracing::warn!(api = header.request_api_key, "request without a handler");
            return None;
        }
    })
}
