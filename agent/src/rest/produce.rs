//! Produce (Confluent v3): JSON records become record batches that take the
//! Kafka produce path; the answer waits for the commit (acks=all).

use std::{collections::BTreeMap, sync::atomic::Ordering, sync::Arc};

use axum::{
    body::Body,
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use silt_tiering::records::{encode_batch, encoded_len, Record, BATCH_OVERHEAD};

use super::{unknown_partition, Api, ApiError, Params};
use crate::produce::{validate, AppendError, PartitionAppend};
use crate::security::acl::{op, resource};

#[derive(Deserialize)]
struct ProduceRecord {
    partition_id: Option<i32>,
    #[serde(default)]
    headers: Vec<Header>,
    key: Option<Data>,
    value: Option<Data>,
    timestamp: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// As the client wrote it: JSON data is stored byte for byte. Missing
    /// or `null`: a null key or value.
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
}

/// An embedded format (Confluent's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Binary,
    Json,
    String,
}

impl Format {
    pub(super) fn name(self) -> &'static str {
        match self {
            Format::Binary => "BINARY",
            Format::Json => "JSON",
            Format::String => "STRING",
        }
    }
}

/// The bytes `d` stands for (`None`: null) and its format.
fn data_bytes(d: Option<&Data>, what: &str) -> Result<(Option<Bytes>, Option<Format>), String> {
    let Some(d) = d else {
        return Ok((None, None));
    };
    let Some(data) = &d.data else {
        return Ok((None, None));
    };
    let format = match d.kind.as_deref() {
        Some("BINARY") => Format::Binary,
        Some("JSON") => Format::Json,
        Some("STRING") => Format::String,
        Some(other) => {
            return Err(format!(
                "{what}: unknown type {other:?} (BINARY, JSON or STRING)"
            ))
        }
        None => return Err(format!("{what}: type is required (BINARY, JSON or STRING)")),
    };
    let string = || serde_json::from_str::<String>(data.get());
    let bytes = match format {
        Format::Binary => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(
                    string().map_err(|_| format!("{what}: BINARY data must be a base64 string"))?,
                )
                .map_err(|e| format!("{what}: data is not base64: {e}"))?,
        ),
        Format::String => {
            Bytes::from(string().map_err(|_| format!("{what}: STRING data must be a string"))?)
        }
        Format::Json => Bytes::copy_from_slice(data.get().as_bytes()),
    };
    Ok((Some(bytes), Some(format)))
}

/// Milliseconds since the epoch from a number or an RFC 3339 string.
fn timestamp_ms(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .filter(|t| (0..=MAX_TIMESTAMP).contains(t))
            .ok_or_else(|| {
                format!("timestamp {n} is not milliseconds since the epoch (up to year 9999)")
            }),
        serde_json::Value::String(s) => {
            parse_rfc3339(s).ok_or_else(|| format!("timestamp {s:?} is not RFC 3339"))
        }
        _ => Err("timestamp must be RFC 3339 or milliseconds since the epoch".into()),
    }
}

/// Milliseconds since the epoch of an RFC 3339 time (`Z` or a `±HH:MM`
/// offset); `None` if it is not one or before the epoch.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (base, offset_minutes) = if let Some(base) = s.strip_suffix(['Z', 'z']) {
        (base, 0)
    } else if b.len() > 6 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' {
        let sign = if b[b.len() - 6] == b'+' { 1 } else { -1 };
        let hours: i64 = s.get(s.len() - 5..s.len() - 3)?.parse().ok()?;
        let minutes: i64 = s.get(s.len() - 2..)?.parse().ok()?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        (&s[..s.len() - 6], sign * (hours * 60 + minutes))
    } else {
        return None;
    };
    let utc = humantime::parse_rfc3339(&format!("{base}Z")).ok()?;
    let ms = utc.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    Some(ms - offset_minutes * 60_000).filter(|t| (0..=MAX_TIMESTAMP).contains(t))
}

/// The last millisecond of year 9999: RFC 3339 has four-digit years.
const MAX_TIMESTAMP: i64 = 253_402_300_799_999;

/// RFC 3339 with milliseconds, as Confluent answers.
pub(super) fn rfc3339(ms: i64) -> String {
    use std::fmt::Write as _;
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.clamp(0, MAX_TIMESTAMP) as u64);
    let mut out = String::new();
    match write!(out, "{}", humantime::format_rfc3339_millis(t)) {
        Ok(()) => out,
        Err(_) => ms.to_string(),
    }
}

/// Kafka's murmur2 (the Java client's default partitioner hashes keys
/// with it), so HTTP and Kafka producers put a key in the same partition.
pub(super) fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// One record of the request, checked and placed.
struct Placed {
    partition: i32,
    record: Record,
    key: Option<(Format, usize)>,
    value: Option<(Format, usize)>,
}

pub(super) async fn produce(
    State(api): State<Arc<Api>>,
    Params((cluster, topic)): Params<(String, String)>,
    caller: Option<axum::Extension<super::Caller>>,
    body: Body,
) -> Result<Response, ApiError> {
    api.check_cluster(&cluster)?;
    api.allow(&caller, op::WRITE, resource::TOPIC, &topic)?;
    let (body, _held) = api.read_body(body).await?;
    let mut info = api.topic(&topic).await?;
    let config = api
        .topics
        .config(&topic)
        .ok_or_else(|| super::unknown_topic(&topic))?;
    let now = api.clock.now_ms();
    let limits = crate::produce::Limits::new(api.limits.message_max_bytes, now);
    let max_batch = config.max_message_bytes(limits.message_max_bytes).max(0) as usize;

    // Check every record before writing any: a request is written whole or
    // not at all.
    let mut placed = Vec::new();
    for (i, r) in serde_json::Deserializer::from_slice(&body)
        .into_iter::<ProduceRecord>()
        .enumerate()
    {
        if i >= api.limits.max_records {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                413,
                format!(
                    "more than rest_max_records ({}) records in one request",
                    api.limits.max_records
                ),
            ));
        }
        let r = r.map_err(|e| ApiError::bad_request(format!("record {i}: {e}")))?;
        let bad = |m: String| ApiError::bad_request(format!("record {i}: {m}"));
        let (key, key_format) = data_bytes(r.key.as_ref(), "key").map_err(bad)?;
        let (value, value_format) = data_bytes(r.value.as_ref(), "value").map_err(bad)?;
        let mut headers = Vec::with_capacity(r.headers.len());
        for h in r.headers {
            let v = match h.value {
                Some(v) => Some(Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map_err(|e| {
                            bad(format!("header {:?}: value is not base64: {e}", h.name))
                        })?,
                )),
                None => None,
            };
            headers.push((Bytes::from(h.name), v));
        }
        let timestamp = match &r.timestamp {
            Some(v) if !v.is_null() => timestamp_ms(v).map_err(bad)?,
            _ => now,
        };
        let partition = match (r.partition_id, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => (murmur2(k) & 0x7fff_ffff) % info.partitions as i32,
            (None, None) => {
                (api.next_partition.fetch_add(1, Ordering::Relaxed) % info.partitions as u32) as i32
            }
        };
        if partition < 0 || partition as usize >= info.partitions {
            // Partitions added elsewhere a moment ago (or while a Lambda
            // function was frozen) are found once this process caught up.
            let (fresh, _) = api.partition(&topic, &partition.to_string()).await?;
            if fresh.id != info.id {
                return Err(unknown_partition(&topic, partition));
            }
            info = fresh;
        }
        let record = Record {
            offset: 0,
            timestamp,
            key,
            value,
            headers,
        };
        let size = BATCH_OVERHEAD + encoded_len(&record, 0, record.timestamp);
        if size > max_batch {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                41301,
                format!(
                    "record {i}: {size} bytes as a record batch, above the topic's max.message.bytes {max_batch}"
                ),
            ));
        }
        placed.push(Placed {
            partition,
            key: key_format.zip(record.key.as_ref().map(|k| k.len())),
            value: value_format.zip(record.value.as_ref().map(|v| v.len())),
            record,
        });
    }
    if placed.is_empty() {
        return Err(ApiError::bad_request("the body holds no record"));
    }

    // Per partition, in request order: batches of at most max.message.bytes.
    let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, p) in placed.iter().enumerate() {
        by_partition.entry(p.partition).or_default().push(i);
    }
    let mut appends = Vec::with_capacity(by_partition.len());
    // For each record: which append, and its offset from the append's base.
    let mut slot = vec![(0usize, 0i64); placed.len()];
    for (partition, indices) in &by_partition {
        let mut data = Vec::new();
        let mut batch: Vec<Record> = Vec::new();
        let mut size = BATCH_OVERHEAD;
        for (nth, &i) in indices.iter().enumerate() {
            let r = &placed[i].record;
            // Its size where it would go: deltas from the batch's first record.
            let base = batch.first().map_or(r.timestamp, |f: &Record| f.timestamp);
            let len = encoded_len(r, batch.len(), base);
            if !batch.is_empty() && size + len > max_batch {
                data.extend_from_slice(&encode_batch(&batch));
                batch.clear();
                size = BATCH_OVERHEAD + encoded_len(r, 0, r.timestamp);
            } else {
                size += len;
            }
            batch.push(r.clone());
            slot[i] = (appends.len(), nth as i64);
        }
        data.extend_from_slice(&encode_batch(&batch));
        let v = validate(Bytes::from(data), &config, limits).map_err(refused)?;
        appends.push(PartitionAppend {
            topic: info.id,
            partition: *partition,
            data: v.data,
            batches: v.batches,
            min_timestamp: v.min_timestamp,
        });
    }
    let results = api.producer.submit(appends).await.await;
    if results.iter().all(|r| r.is_err()) {
        // An append whose outcome is unknown makes the whole answer so: the
        // request must not be reported as plainly failed if part of it may
        // have been written.
        let e = results
            .iter()
            .find_map(|r| match r {
                Err(e @ AppendError::Commit(_)) => Some(e.clone()),
                _ => None,
            })
            .or_else(|| results.into_iter().find_map(|r| r.err()))
            .expect("at least one append");
        return Err(refused(e));
    }
    // One delivery report per record, in order (concatenated JSON).
    let mut out = Vec::with_capacity(placed.len() * 200);
    for (i, p) in placed.iter().enumerate() {
        let (append, nth) = slot[i];
        let report = match &results[append] {
            Ok(base) => serde_json::json!({
                "error_code": 200,
                "cluster_id": api.cluster_id,
                "topic_name": topic,
                "partition_id": p.partition,
                "offset": base + nth,
                "timestamp": rfc3339(p.record.timestamp),
                "key": p.key.map(|(f, n)| serde_json::json!({"type": f.name(), "size": n})),
                "value": p.value.map(|(f, n)| serde_json::json!({"type": f.name(), "size": n})),
            }),
            Err(e) => {
                let e = refused(e.clone());
                serde_json::json!({"error_code": e.code, "message": e.message})
            }
        };
        serde_json::to_writer(&mut out, &report).expect("JSON serializes");
        out.push(b'\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// The HTTP form of a refused append.
fn refused(e: AppendError) -> ApiError {
    match e {
        AppendError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, 41301, e.to_string())
        }
        AppendError::Invalid(_)
        | AppendError::InvalidRecord(_)
        | AppendError::UnsupportedFormat(_)
        | AppendError::InvalidTxnState => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, e.to_string())
        }
        AppendError::UnknownTopicOrPartition => ApiError::new(
            StatusCode::NOT_FOUND,
            40402,
            "the topic or partition was deleted before the records were committed",
        ),
        // The metadata store failed or did not answer: the commit may or
        // may not have happened.
        AppendError::Commit(m) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            50401,
            format!("the commit's outcome is unknown (the records may have been written): {m}"),
        ),
        other => ApiError::unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's own tests of Utils.murmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn timestamps_parse_and_print() {
        let t = timestamp_ms(&serde_json::json!("2026-11-30T12:00:00.123Z")).unwrap();
        assert_eq!(rfc3339(t), "2026-11-30T12:00:00.123Z");
        assert_eq!(timestamp_ms(&serde_json::json!(5)).unwrap(), 5);
        // An offset is applied: the same instant three ways.
        for s in [
            "2026-11-30T14:00:00.250+02:00",
            "2026-11-30T09:30:00.250-02:30",
            "2026-11-30T12:00:00.25z",
        ] {
            let t = timestamp_ms(&serde_json::json!(s)).unwrap();
            assert_eq!(rfc3339(t), "2026-11-30T12:00:00.250Z", "{s}");
        }
        assert!(timestamp_ms(&serde_json::json!("2026-11-30T12:00:00")).is_err());
        assert!(timestamp_ms(&serde_json::json!("2026-11-30T12:00:00+25:00")).is_err());
        assert!(timestamp_ms(&serde_json::json!(-5)).is_err());
        // Microseconds by mistake: refused before anything is written.
        assert!(timestamp_ms(&serde_json::json!(1_700_000_000_000_000i64)).is_err());
        assert!(timestamp_ms(&serde_json::json!("10000-01-01T00:00:00Z")).is_err());
        assert_eq!(rfc3339(MAX_TIMESTAMP), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert!(timestamp_ms(&serde_json::json!("yesterday")).is_err());
        assert!(timestamp_ms(&serde_json::json!(true)).is_err());
    }
}
