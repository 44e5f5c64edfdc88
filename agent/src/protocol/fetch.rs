//! Fetch: translates the request into reads of the read path, and waits
//! (long poll) on the requested partitions when too little is ready.

use std::time::Duration;

use kafka_protocol::messages::{
    fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData},
    FetchRequest, FetchResponse, ProducerId, ResponseKind,
};

use super::{Conn, Response};
use crate::{
    broker::Broker,
    error::{Classify, ErrorKind},
    fetch::{FetchError, Limits},
    security::acl::op,
};

/// Answers a fetch within `fetch_max_bytes` and the connection's response
/// budget, whose share it holds until the response is written.
pub async fn handle(broker: &Broker, req: FetchRequest, conn: &Conn) -> Response {
    let cap = (broker.settings.fetch_max_bytes.as_u64() as usize)
        .min(conn.response_budget)
        .max(1);
    let max_bytes = if req.max_bytes <= 0 {
        cap
    } else {
        (req.max_bytes as usize).min(cap)
    };
    let mut budget = conn
        .responses
        .clone()
        .acquire_many_owned(max_bytes as u32)
        .await
        .ok();
    let readable: Vec<bool> = req
        .topics
        .iter()
        .map(|t| conn.can_topic(broker, op::READ, t.topic.0.as_str()))
        .collect();
    let resp = fetch(broker, &req, max_bytes, &readable).await;
    // Keep the share the response needs (a first batch may exceed the
    // limit; the rest of the budget is returned now).
    if let Some(b) = budget.as_mut() {
        let used: usize = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        let kept = b.split(used.min(max_bytes));
        budget = kept;
    }
    Response {
        kind: ResponseKind::Fetch(resp),
        budget,
    }
}

async fn fetch(
    broker: &Broker,
    req: &FetchRequest,
    max_bytes: usize,
    readable: &[bool],
) -> FetchResponse {
    let resp = long_poll(broker, req, max_bytes, readable).await;
    let metrics = crate::metrics::global();
    for t in &resp.responses {
        let bytes: usize = t
            .partitions
            .iter()
            .filter_map(|p| p.records.as_ref().map(|r| r.len()))
            .sum();
        metrics.fetched(t.topic.0.as_str(), bytes as u64);
    }
    resp
}

/// Reads until there is enough to answer, a partition fails, or the
/// request's wait is over.
async fn long_poll(
    broker: &Broker,
    req: &FetchRequest,
    max_bytes: usize,
    readable: &[bool],
) -> FetchResponse {
    let max_wait =
        Duration::from_millis(req.max_wait_ms.max(0) as u64).min(broker.settings.max_fetch_wait);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let waiter = broker.read.waiter(req.topics.iter().flat_map(|t| {
        let id = broker.read.topic_id(t.topic.0.as_str());
        t.partitions
            .iter()
            .filter_map(move |p| id.map(|id| (id, p.partition)))
    }));
    loop {
        let armed = waiter.arm();
        let (resp, total, error) = fetch_once(broker, req, max_bytes, readable).await;
        if total >= min_bytes.max(1) || error || tokio::time::Instant::now() >= deadline {
            return resp;
        }
        // Long poll: wait for one of the partitions to change, or the deadline.
        tokio::select! {
            _ = armed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                if total >= min_bytes {
                    return resp;
                }
                return fetch_once(broker, req, max_bytes, readable).await.0;
            }
        }
    }
}

/// One pass over the requested partitions: the response, the record bytes
/// in it, and whether any partition had an error.
async fn fetch_once(
    broker: &Broker,
    req: &FetchRequest,
    max_bytes: usize,
    readable: &[bool],
) -> (FetchResponse, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for (i, t) in req.topics.iter().enumerate() {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let data = PartitionData::default().with_partition_index(p.partition);
            if !readable.get(i).copied().unwrap_or(false) {
                any_error = true;
                parts.push(data.with_error_code(ErrorKind::TopicAuthorizationFailed.code()));
                continue;
            }
            let limits = Limits {
                max_bytes: (p.partition_max_bytes.max(0) as usize)
                    .min(max_bytes.saturating_sub(total)),
                min_one: total == 0,
            };
            let committed = req.isolation_level == 1;
            match broker
                .read
                .read_isolated(
                    t.topic.0.as_str(),
                    p.partition,
                    p.fetch_offset,
                    limits,
                    committed,
                )
                .await
            {
                Ok(r) => {
                    total += r.bytes.len();
                    let aborted = committed.then(|| {
                        r.aborted
                            .iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect()
                    });
                    parts.push(
                        data.with_high_watermark(r.high_watermark)
                            .with_last_stable_offset(r.last_stable_offset)
                            .with_log_start_offset(r.log_start_offset)
                            .with_aborted_transactions(aborted)
                            .with_records(Some(r.bytes)),
                    );
                }
                Err(e) => {
                    if !matches!(e, FetchError::OffsetOutOfRange { .. }) {
                        tracing::debug!(topic = %t.topic.0, partition = p.partition, error = %e, "fetch failed");
                    }
                    any_error = true;
                    parts.push(data.with_error_code(e.code()));
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        any_error,
    )
}
