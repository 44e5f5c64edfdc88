//! Fetch (a silt extension): records of one partition from an offset, as
//! JSON, with a long poll at the high watermark like a Kafka fetch.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{RawQuery, State},
    http::StatusCode,
    Json,
};
use base64::Engine as _;
use silt_tiering::{
    batch::parse_one,
    records::{decode_batch, RecordsError},
};

use super::{produce::Format, query_params, Api, ApiError, Params};
use crate::fetch::{FetchError, Limits};
use crate::security::acl::{op, resource};

pub(super) async fn fetch(
    State(api): State<Arc<Api>>,
    Params((cluster, topic, partition)): Params<(String, String, String)>,
    caller: Option<axum::Extension<super::Caller>>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.check_cluster(&cluster)?;
    api.allow(&caller, op::READ, resource::TOPIC, &topic)?;
    let (info, partition) = api.partition(&topic, &partition).await?;
    let mut offset = 0i64;
    let mut max_bytes = api.limits.fetch_max_bytes;
    let mut max_wait = Duration::ZERO;
    let mut strings = false;
    for (k, v) in query_params(query.as_deref()) {
        let number = || {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("{k}={v:?} is not a number")))
        };
        match k {
            "offset" => offset = number()?,
            "max_bytes" => max_bytes = number()?.clamp(1, max_bytes as i64) as usize,
            "max_wait_ms" => {
                max_wait =
                    Duration::from_millis(number()?.max(0) as u64).min(api.limits.max_fetch_wait)
            }
            "format" => {
                strings = match v {
                    "binary" => false,
                    "string" => true,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "format={v:?}: binary or string"
                        )))
                    }
                }
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter {k:?}"))),
        }
    }
    let deadline = tokio::time::Instant::now() + max_wait;
    let waiter = api.read.waiter([(info.id, partition)]);
    let limits = Limits {
        max_bytes,
        min_one: true,
    };
    let records = loop {
        let armed = waiter.arm();
        // Committed records only: an HTTP reader cannot drop aborted or
        // open transactions' records itself, as Kafka clients do.
        let r = api
            .read
            .read_isolated(&topic, partition, offset, limits, true)
            .await
            .map_err(fetch_error)?;
        if !r.bytes.is_empty() || tokio::time::Instant::now() >= deadline {
            break r;
        }
        tokio::select! {
            _ = armed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    };

    // The answer holds at most `rest_max_records` records and about
    // `max_bytes` of keys, values and headers (the first record always).
    let mut out = Vec::new();
    let mut decoded = 0usize;
    let mut next = offset;
    let mut at = 0;
    let data = &records.bytes[..];
    'batches: while at < data.len() {
        let h = parse_one(data, at).map_err(|e| corrupt(e.to_string()))?;
        let batch = &data[at..at + h.size as usize];
        let base = i64::from_be_bytes(batch[0..8].try_into().expect("8 bytes"));
        let refuse = |e: RecordsError| {
            tracing::warn!(topic = %topic, partition, offset = base, error = %e, "HTTP fetch cannot decode a batch");
            undecodable(base, e)
        };
        let aborted = h.attributes & 0x10 != 0
            && records.aborted.iter().any(|a| {
                a.producer_id == h.producer_id && a.first_offset <= base && base <= a.last_offset
            });
        let batch = if aborted {
            None
        } else {
            decode_batch(batch, api.limits.max_decompressed()).map_err(refuse)?
        };
        for r in batch.into_iter().flatten() {
            let r = r.map_err(refuse)?;
            if r.offset < offset {
                continue;
            }
            // What the answer holds of it, with a little for each record and
            // header besides their bytes.
            let size = RECORD_OVERHEAD
                + r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())
                + r.headers
                    .iter()
                    .map(|(k, v)| HEADER_OVERHEAD + k.len() + v.as_ref().map_or(0, |v| v.len()))
                    .sum::<usize>();
            if !out.is_empty()
                && (out.len() >= api.limits.max_records || decoded + size > max_bytes)
            {
                break 'batches;
            }
            decoded += size;
            next = r.offset + 1;
            out.push(serde_json::json!({
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": data_json(r.key.as_deref(), strings),
                "value": data_json(r.value.as_deref(), strings),
                "headers": r.headers.iter().map(|(k, v)| serde_json::json!({
                    "name": String::from_utf8_lossy(k),
                    "value": v.as_ref().map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
                })).collect::<Vec<_>>(),
            }));
        }
        // Past the whole batch (control batches, aborted transactions and
        // records below `offset` included).
        next = next.max(base + h.last_offset_delta as i64 + 1);
        at += h.size as usize;
    }
    Ok(Json(serde_json::json!({
        "cluster_id": api.cluster_id,
        "topic_name": topic,
        "partition_id": partition,
        "high_watermark": records.high_watermark,
        "log_start_offset": records.log_start_offset,
        "next_offset": next,
        "records": out,
    })))
}

/// `{type, data}` for a key or value: STRING when asked for and valid
/// UTF-8, else BINARY (base64).
fn data_json(b: Option<&[u8]>, strings: bool) -> serde_json::Value {
    match b {
        None => serde_json::Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) if strings => serde_json::json!({"type": Format::String.name(), "data": s}),
            _ => serde_json::json!({
                "type": Format::Binary.name(),
                "data": base64::engine::general_purpose::STANDARD.encode(b),
            }),
        },
    }
}

/// Counted toward `max_bytes` for each record and each header besides their
/// bytes (an answer of empty records is not free).
const RECORD_OVERHEAD: usize = 32;
const HEADER_OVERHEAD: usize = 16;

/// A batch this API cannot return: damaged, or beyond the decompression
/// bound (a larger `rest_fetch_max_bytes` reads it).
fn undecodable(offset: i64, e: RecordsError) -> ApiError {
    match e {
        RecordsError::TooLarge(_) | RecordsError::TooManyHeaders(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            50002,
            format!(
                "the batch at offset {offset} cannot be returned within this server's bounds: {e} (rest_fetch_max_bytes sets them)"
            ),
        ),
        e => corrupt(format!("batch at offset {offset}: {e}")),
    }
}

fn corrupt(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, message)
}

fn fetch_error(e: FetchError) -> ApiError {
    match e {
        FetchError::UnknownTopicOrPartition { topic, partition } => {
            super::unknown_partition(&topic, partition)
        }
        FetchError::OffsetOutOfRange { .. } => {
            ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, 41601, e.to_string())
        }
        FetchError::InvalidTimestamp(_) => ApiError::bad_request(e.to_string()),
        FetchError::Storage(_) => ApiError::unavailable(e.to_string()),
        FetchError::Corrupt { .. } | FetchError::Undecodable { .. } => corrupt(e.to_string()),
    }
}
