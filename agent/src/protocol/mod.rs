//! Kafka API handlers, one module per API, and the version table.

mod api_versions;
mod fetch;
mod list_offsets;
mod metadata;
mod produce;
mod topics;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::broker::Broker;

pub use api_versions::{supported, unsupported_version_response};

/// Handles one decoded request. `None` means no response is sent
/// (Produce with acks=0).
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: RequestKind,
) -> Option<ResponseKind> {
    let version = header.request_api_version;
    Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, r, version).await)
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(topics::create(broker, r).await),
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(topics::delete(broker, r, version).await)
        }
        RequestKind::Produce(r) => ResponseKind::Produce(produce::handle(broker, r).await?),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, r, version).await)
        }
        other => {
            // Unreachable while `supported` gates dispatch; answer nothing
            // rather than guess a response shape.
            tracing::warn!(api = ?ApiKey::try_from(header.request_api_key), "no handler for {:?}", std::mem::discriminant(&other));
            return None;
        }
    })
}

/// Error code helper.
pub(crate) fn code(e: kafka_protocol::ResponseError) -> i16 {
    e.code()
}
