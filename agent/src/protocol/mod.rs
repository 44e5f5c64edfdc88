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

use crate::broker::Broker;

pub use api_versions::{supported, unsupported_version_response};

/// The response to a request, once it is known.
pub type Reply = BoxFuture<'static, Option<ResponseKind>>;

/// Takes one decoded request. Work whose order matters (queueing produced
/// batches) happens before this returns, so a connection calls it for its
/// requests one at a time; the returned future finishes the request and
/// may run concurrently with later ones. `None` from the future means no
/// response is sent (Produce with acks=0).
pub async fn dispatch(
    broker: Arc<Broker>,
    header: RequestHeader,
    request: RequestKind,
    peer: String,
) -> Reply {
    let version = header.request_api_version;
    match request {
        RequestKind::Produce(r) => {
            let pending = produce::handle(broker, r).await;
            Box::pin(async move { pending.await.map(ResponseKind::Produce) })
        }
        other => Box::pin(async move { handle(&broker, &header, version, other, &peer).await }),
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
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, r).await),
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
