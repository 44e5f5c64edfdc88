use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        fetch_response::{FetchableTopicResponse, PartitionData},
        FetchRequest, FetchResponse,
    },
    ResponseError,
};
use silt_coordinator::IndexEntry;
use silt_tiering::batch;

use super::code;
use crate::broker::Broker;

/// A partition's position read from the state under one lock.
struct Snapshot {
    /// The topic stamps records with their append time.
    log_append_time: bool,
    high_watermark: i64,
    log_start: i64,
    /// Entries from the fetch offset on, with each object's size.
    entries: Vec<(IndexEntry, u64)>,
}

enum Lookup {
    Error(i16),
    Found(Snapshot),
}

const MAX_ENTRIES_PER_FETCH: usize = 64;

fn lookup(broker: &Broker, topic: &str, partition: i32, offset: i64) -> Lookup {
    let state = broker.log.state();
    let t = state.topics.get(topic);
    let log_append_time = t.is_some_and(|t| {
        t.config.get("message.timestamp.type").map(String::as_str) == Some("LogAppendTime")
    });
    let Some(p) = t.and_then(|t| {
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
    }) else {
        return Lookup::Error(code(ResponseError::UnknownTopicOrPartition));
    };
    if offset < p.log_start_offset || offset > p.high_watermark {
        return Lookup::Error(code(ResponseError::OffsetOutOfRange));
    }
    let entries = p
        .entries_from(offset)
        .iter()
        .take(MAX_ENTRIES_PER_FETCH)
        .map(|e| {
            let size = state.objects.get(&e.object).map_or(0, |o| o.size);
            (e.clone(), size)
        })
        .collect();
    Lookup::Found(Snapshot {
        log_append_time,
        high_watermark: p.high_watermark,
        log_start: p.log_start_offset,
        entries,
    })
}

pub async fn handle(broker: &Broker, req: FetchRequest) -> FetchResponse {
    let max_wait =
        Duration::from_millis(req.max_wait_ms.max(0) as u64).min(broker.settings.max_fetch_wait);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let mut applied = broker.log.subscribe();
    loop {
        applied.borrow_and_update();
        let (resp, total, error) = fetch_once(broker, &req, max_bytes).await;
        if total >= min_bytes.max(1) || error || tokio::time::Instant::now() >= deadline {
            return resp;
        }
        // Long poll: wait for new records to be applied, or the deadline.
        tokio::select! {
            r = applied.changed() => if r.is_err() { return resp; },
            _ = tokio::time::sleep_until(deadline) => {
                if total >= min_bytes {
                    return resp;
                }
                return fetch_once(broker, &req, max_bytes).await.0;
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
) -> (FetchResponse, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.topic.0.as_str();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let data = PartitionData::default().with_partition_index(p.partition);
            let snap = match lookup(broker, name, p.partition, p.fetch_offset) {
                Lookup::Error(e) => {
                    any_error = true;
                    parts.push(data.with_error_code(e));
                    continue;
                }
                Lookup::Found(s) => s,
            };
            let limit =
                (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
            let mut records = Vec::new();
            let mut error = 0;
            for (entry, size) in &snap.entries {
                if records.len() >= limit && !(records.is_empty() && total == 0) {
                    break;
                }
                let bytes = match broker
                    .reader
                    .read(
                        &entry.object,
                        *size,
                        entry.position..entry.position + entry.length,
                    )
                    .await
                {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(topic = name, partition = p.partition, error = %e, "fetch read failed");
                        error = code(ResponseError::KafkaStorageError);
                        break;
                    }
                };
                let room = limit.saturating_sub(records.len());
                let min_one = records.is_empty() && total == 0;
                let append_time = snap.log_append_time.then_some(entry.append_time);
                match batch::rewrite_chunk(
                    &bytes,
                    entry.base_offset,
                    p.fetch_offset,
                    room,
                    min_one,
                    append_time,
                ) {
                    Ok((out, _next, cut)) => {
                        records.extend_from_slice(&out);
                        if cut {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::error!(object = %entry.object, error = %e, "stored chunk is damaged");
                        error = code(ResponseError::CorruptMessage);
                        break;
                    }
                }
            }
            if error != 0 && records.is_empty() {
                any_error = true;
            }
            total += records.len();
            parts.push(
                data.with_error_code(if records.is_empty() { error } else { 0 })
                    .with_high_watermark(snap.high_watermark)
                    .with_last_stable_offset(snap.high_watermark)
                    .with_log_start_offset(snap.log_start)
                    .with_records(Some(Bytes::from(records))),
            );
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
