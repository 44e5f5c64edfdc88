use kafka_protocol::{
    messages::{
        list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
        ListOffsetsRequest, ListOffsetsResponse,
    },
    ResponseError,
};
use silt_tiering::batch;

use super::code;
use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                // leader_epoch exists from v4 on; setting it earlier fails encoding.
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            parts.push(
                match lookup(broker, t.name.0.as_str(), p.partition_index, p.timestamp).await {
                    Ok((ts, offset)) => r.with_timestamp(ts).with_offset(offset),
                    Err(e) => r.with_error_code(e).with_timestamp(-1).with_offset(-1),
                },
            );
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Returns (timestamp, offset) for the query.
async fn lookup(broker: &Broker, topic: &str, partition: i32, ts: i64) -> Result<(i64, i64), i16> {
    let candidates = {
        let state = broker.log.state();
        let p = state
            .topics
            .get(topic)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            })
            .ok_or(code(ResponseError::UnknownTopicOrPartition))?;
        match ts {
            LATEST => return Ok((-1, p.high_watermark)),
            EARLIEST => return Ok((-1, p.log_start_offset)),
            _ => {}
        }
        let live = p.entries_from(p.log_start_offset);
        let chosen: Vec<_> = if ts == MAX_TIMESTAMP {
            // The entry holding the largest timestamp (first one on ties).
            let best = live.iter().map(|e| e.max_timestamp).max();
            live.iter()
                .filter(|e| Some(e.max_timestamp) == best)
                .take(1)
                .cloned()
                .collect()
        } else if ts >= 0 {
            live.iter()
                .filter(|e| e.max_timestamp >= ts)
                .take(1)
                .cloned()
                .collect()
        } else {
            return Err(code(ResponseError::InvalidRequest));
        };
        chosen
            .into_iter()
            .map(|e| {
                let size = state.objects.get(&e.object).map_or(0, |o| o.size);
                (e, size, p.log_start_offset)
            })
            .collect::<Vec<_>>()
    };
    let Some((entry, size, log_start)) = candidates.into_iter().next() else {
        // No record at or after the timestamp.
        return Ok((-1, -1));
    };
    let bytes = broker
        .reader
        .read(
            &entry.object,
            size,
            entry.position..entry.position + entry.length,
        )
        .await
        .map_err(|_| code(ResponseError::KafkaStorageError))?;
    // Walk the chunk's batches: the first batch whose max timestamp reaches
    // the target holds the answer (batch granularity; records are never
    // decompressed).
    let mut at = 0usize;
    let mut offset = entry.base_offset;
    let mut best: Option<(i64, i64)> = None;
    while at < bytes.len() {
        let h = batch::parse_one(&bytes, at).map_err(|_| code(ResponseError::CorruptMessage))?;
        let last = offset + h.last_offset_delta as i64;
        if last >= log_start {
            if ts == MAX_TIMESTAMP {
                if best.is_none_or(|(bt, _)| h.max_timestamp > bt) {
                    best = Some((h.max_timestamp, last));
                }
            } else if h.max_timestamp >= ts {
                return Ok((h.max_timestamp, offset.max(log_start)));
            }
        }
        offset = last + 1;
        at += h.size as usize;
    }
    Ok(best.unwrap_or((-1, -1)))
}
