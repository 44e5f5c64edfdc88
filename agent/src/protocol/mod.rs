//! Kafka API handlers, one module per API, and the version table.

mod api_versions;
mod fetch;
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
pub async fn dispatch(broker: Arc<Broker>, header: RequestHeader, request: RequestKind) -> Reply {
    let version = header.request_api_version;
    match request {
        RequestKind::Produce(r) => {
            let pending = produce::handle(broker, r).await;
            Box::pin(async move { pending.await.map(ResponseKind::Produce) })
        }
        other => Box::pin(async move { handle(&broker, &header, version, other).await }),
    }
}

async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    version: i16,
    request: RequestKind,
) -> Option<ResponseKind> {
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
        _ => {
            // Unreachable while `supported` gates what is decoded.
            tracing::warn!(api = header.request_api_key, "request without a handler");
            return None;
        }
    })
}

/// Error code helper.
pub(crate) fn code(e: kafka_protocol::ResponseError) -> i16 {
    e.code()
}
