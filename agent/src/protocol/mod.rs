//! Kafka API handlers, one module per API, and the version table.

mod admin;
mod api_versions;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod produce;
mod topics;

use std::sync::Arc;

use futures::future::BoxFuture;
use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::broker::Broker;

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
    /// Bytes of responses the connection may hold before they are written
    /// (`connection_response_bytes`). Fetch takes its share before reading.
    pub responses: Arc<Semaphore>,
    pub response_budget: usize,
    /// JoinGroup and SyncGroup requests of the connection waiting for their
    /// group at once (`max_group_waits_per_connection`); reading the
    /// connection pauses while they are all taken.
    pub group_waits: Arc<Semaphore>,
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
            | RequestKind::LeaveGroup(_)
            | RequestKind::InitProducerId(_)
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
            let pending = produce::handle(broker, r).await;
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
            let peer = conn.peer.clone();
            Box::pin(async move {
                let r = handle(&broker, &header, version, other, &peer)
                    .await
                    .map(Response::from);
                drop(wait);
                r
            })
        }
        other if changes_state(&other) => {
            let done = handle(&broker, &header, version, other, &conn.peer).await;
            Box::pin(async move { done.map(Response::from) })
        }
        other => {
            let peer = conn.peer.clone();
            Box::pin(async move {
                handle(&broker, &header, version, other, &peer)
                    .await
                    .map(Response::from)
            })
        }
    }
}

async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    version: i16,
    request: RequestKind,
    peer: &str,
) -> Option<ResponseKind> {
    let client_id = header.client_id.as_deref().unwrap_or("");
    Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(
            metadata::handle(broker, r, version, header.client_id.as_deref()).await,
        ),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(topics::create(broker, r).await),
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(topics::delete(broker, r, version).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, r, version).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(broker, r, version).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(broker, r, version, client_id, peer).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::sync(broker, r, version).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(broker, r).await),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave(broker, r, version).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(broker, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(broker, r, version).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(groups::list_groups(broker, r).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(broker, r, version).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(broker, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::offset_delete(broker, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(broker, r, version).await)
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(admin::alter_configs(broker, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(admin::incremental_alter_configs(broker, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster(broker, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(admin::delete_records(broker, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(admin::offset_for_leader_epoch(broker, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(admin::init_producer_id(broker, r).await)
        }
        _ => {
            // Unreachable while `supported` gates what is decoded.
            tracing::warn!(api = header.request_api_key, "request without a handler");
            return None;
        }
    })
}
