//! Checks a partition's record set before it is queued: every batch parses
//! (magic 2, length, CRC-32C; headers only), fits the topic's
//! `max.message.bytes`, and is not transactional. For compacted topics
//! only, batches are decompressed (within the cleaner's bound) to check
//! that every record has a key, as Kafka's LogValidator does.

use bytes::Bytes;
use silt_coordinator::TopicConfig;
use silt_tiering::{batch, segment::BatchMeta};

use super::AppendError;

/// A checked record set: its bytes, each batch's header, and the smallest
/// first timestamp.
#[derive(Debug)]
pub struct Validated {
    pub data: Bytes,
    pub batches: Vec<BatchMeta>,
    pub min_timestamp: i64,
}

/// The transactional bit of a batch's attributes.
const TRANSACTIONAL: i16 = 0x10;
/// The control bit of a batch's attributes (transaction markers).
const CONTROL: i16 = 0x20;
/// The compression bits of a batch's attributes.
const COMPRESSION: i16 = 0x07;
/// The smallest encoding of a record (length, attributes, timestamp delta,
/// offset delta, key length, value length, header count: one byte each).
const MIN_RECORD_BYTES: u64 = 7;
/// Records in one partition's part of a request at most. A chunk of the
/// state machine holds fewer than i32::MAX records; this leaves room for
/// many requests in one segment.
pub const MAX_RECORDS_PER_PARTITION: u64 = 1 << 28;

/// What a record set is checked against beside the topic's config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The cluster's `message.max.bytes`: the largest batch of a topic
    /// without `max.message.bytes`.
    pub message_max_bytes: i32,
    /// The agent's clock, for the topic's timestamp bounds.
    pub now_ms: i64,
}

impl Default for Limits {
    /// Kafka's default `message.max.bytes`, at time 0.
    fn default() -> Self {
        Self::new(1_048_588, 0)
    }
}

impl Limits {
    pub fn new(message_max_bytes: u32, now_ms: i64) -> Self {
        Self {
            message_max_bytes: message_max_bytes.min(i32::MAX as u32) as i32,
            now_ms,
        }
    }
}

/// Kafka's `message.timestamp.before.max.ms` / `after.max.ms` on a
/// CreateTime topic: a batch whose first or maximum timestamp is further
/// from the agent's clock is refused with INVALID_TIMESTAMP. (Kafka checks
/// every record; a batch's records lie between these two except when a
/// producer writes timestamps out of order within a batch.)
fn check_timestamps(
    h: &batch::BatchHeader,
    config: &TopicConfig,
    now: i64,
) -> Result<(), AppendError> {
    if config.timestamp_type != silt_coordinator::TimestampType::CreateTime {
        return Ok(());
    }
    for ts in [h.base_timestamp, h.max_timestamp] {
        // -1: no timestamp (Kafka skips the check).
        if ts == -1 {
            continue;
        }
        let behind = now.saturating_sub(ts);
        let ahead = ts.saturating_sub(now);
        if behind > config.timestamp_before_max_ms {
            return Err(AppendError::InvalidTimestamp(format!(
                "timestamp {ts} is {behind} ms before the agent's time {now}, more than message.timestamp.before.max.ms {}",
                config.timestamp_before_max_ms
            )));
        }
        if ahead > config.timestamp_after_max_ms {
            return Err(AppendError::InvalidTimestamp(format!(
                "timestamp {ts} is {ahead} ms after the agent's time {now}, more than message.timestamp.after.max.ms {}",
                config.timestamp_after_max_ms
            )));
        }
    }
    Ok(())
}

/// A batch whose maxTimestamp is below its first timestamp (some clients,
/// such as sarama 1.22, leave it at -1): the records' largest timestamp,
/// found by decoding them, as Kafka's validator recomputes it. Timestamp
/// lookups and retention read the field, so it must be right.
fn true_max_timestamp(batch: &[u8]) -> Result<Option<i64>, AppendError> {
    use silt_tiering::{jobs::MAX_CLEANER_BATCH_BYTES, records};
    let invalid = |e: records::RecordsError| AppendError::InvalidRecord(e.to_string());
    let Some(decoded) = records::decode_batch(batch, MAX_CLEANER_BATCH_BYTES).map_err(invalid)?
    else {
        return Ok(None);
    };
    let mut max = None;
    for r in decoded {
        let t = r.map_err(invalid)?.timestamp;
        max = Some(max.map_or(t, |m: i64| m.max(t)));
    }
    Ok(max)
}

pub fn validate(
    records: Bytes,
    config: &TopicConfig,
    limits: Limits,
) -> Result<Validated, AppendError> {
    let max_message_bytes = config.max_message_bytes(limits.message_max_bytes);
    // Batches whose maxTimestamp must be corrected: (position, value).
    let mut corrections: Vec<(usize, i64)> = Vec::new();
    let headers = batch::parse_all(&records).map_err(|e| match e {
        batch::BatchError::Magic { .. } => AppendError::UnsupportedFormat(e.to_string()),
        _ => AppendError::Invalid(e.to_string()),
    })?;
    let mut min_timestamp = i64::MAX;
    let mut batches = Vec::with_capacity(headers.len());
    let mut total = 0u64;
    let mut at = 0usize;
    for mut h in headers {
        if h.max_timestamp < h.base_timestamp && h.records > 0 {
            if let Some(t) = true_max_timestamp(&records[at..at + h.size as usize])? {
                if t != h.max_timestamp {
                    h.max_timestamp = t;
                    corrections.push((at, t));
                }
            }
        }
        // Kafka's rule: the offsets a batch spans match its record count;
        // and an uncompressed batch must have room for that many records.
        // Neither needs decompressing.
        let plausible = h.compression_free_room();
        if h.last_offset_delta as i64 + 1 != h.records as i64
            || (h.attributes & COMPRESSION == 0 && h.records as u64 * MIN_RECORD_BYTES > plausible)
        {
            return Err(AppendError::InvalidRecord(format!(
                "record batch claims {} records (lastOffsetDelta {}) in {} bytes",
                h.records, h.last_offset_delta, h.size
            )));
        }
        if h.producer_id >= 0 && h.base_sequence < 0 {
            return Err(AppendError::InvalidRecord(format!(
                "record batch of producer {} has no sequence number ({})",
                h.producer_id, h.base_sequence
            )));
        }
        total += h.records as u64;
        if total > MAX_RECORDS_PER_PARTITION {
            return Err(AppendError::InvalidRecord(format!(
                "more than {MAX_RECORDS_PER_PARTITION} records for one partition in one request"
            )));
        }
        if h.size as i64 > max_message_bytes as i64 {
            return Err(AppendError::TooLarge {
                size: h.size,
                max: max_message_bytes,
            });
        }
        check_timestamps(&h, config, limits.now_ms)?;
        // Control batches (transaction markers) are the coordinator's to
        // write, never a producer's.
        if h.attributes & CONTROL != 0 {
            return Err(AppendError::InvalidRecord(
                "a producer may not write control batches".into(),
            ));
        }
        // A transactional batch is appended only within its producer's
        // open transaction: the state machine decides at the commit.
        if h.attributes & TRANSACTIONAL != 0 && h.producer_id < 0 {
            return Err(AppendError::InvalidRecord(
                "transactional record batch without a producer id".into(),
            ));
        }
        if config.compact {
            check_keys(&records[at..at + h.size as usize])?;
        }
        at += h.size as usize;
        min_timestamp = min_timestamp.min(h.base_timestamp);
        batches.push(BatchMeta::from(&h));
    }
    let data = if corrections.is_empty() {
        records
    } else {
        let mut fixed = bytes::BytesMut::from(&records[..]);
        for (at, t) in corrections {
            let size = batches_size_at(&fixed, at);
            silt_tiering::batch::set_max_timestamp(&mut fixed[at..at + size], t);
        }
        fixed.freeze()
    };
    Ok(Validated {
        data,
        batches,
        min_timestamp,
    })
}

/// The size of the batch at `at` (its length field plus the log overhead).
fn batches_size_at(data: &[u8], at: usize) -> usize {
    let len = i32::from_be_bytes(data[at + 8..at + 12].try_into().expect("4 bytes"));
    silt_tiering::batch::LOG_OVERHEAD + len as usize
}

/// A compacted topic keeps the last record of each key: a record without
/// one is refused (Kafka's message, INVALID_RECORD).
fn check_keys(batch: &[u8]) -> Result<(), AppendError> {
    use silt_tiering::{jobs::MAX_CLEANER_BATCH_BYTES, records};
    let invalid = |e: records::RecordsError| AppendError::InvalidRecord(e.to_string());
    let Some(decoded) = records::decode_batch(batch, MAX_CLEANER_BATCH_BYTES).map_err(invalid)?
    else {
        return Ok(());
    };
    for r in decoded {
        if r.map_err(invalid)?.key.is_none() {
            return Err(AppendError::InvalidRecord(
                "Compacted topic cannot accept message without key".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::records::{
        Compression, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::*;

    const LIMITS: Limits = Limits {
        message_max_bytes: 1_048_588,
        now_ms: 1_000,
    };

    fn batch(keys: &[Option<&str>], compression: Compression) -> Bytes {
        let records: Vec<KRecord> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| KRecord {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                delete_horizon: false,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 1_000,
                key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: Some(Bytes::from_static(b"v")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn a_compacted_topic_refuses_records_without_a_key() {
        let compact = TopicConfig::parse(BTreeMap::from([(
            "cleanup.policy".to_string(),
            "compact".to_string(),
        )]))
        .unwrap();
        let delete = TopicConfig::default();
        for compression in [Compression::None, Compression::Zstd, Compression::Snappy] {
            let keyed = batch(&[Some("a"), Some("b")], compression);
            assert!(validate(keyed.clone(), &compact, LIMITS).is_ok());
            let one_without = batch(&[Some("a"), None], compression);
            match validate(one_without.clone(), &compact, LIMITS) {
                Err(AppendError::InvalidRecord(m)) => {
                    assert_eq!(m, "Compacted topic cannot accept message without key")
                }
                other => panic!("{compression:?}: {other:?}"),
            }
            // The same records are fine where nothing is compacted.
            assert!(validate(one_without, &delete, LIMITS).is_ok());
        }
    }

    #[test]
    fn timestamps_outside_the_topic_bounds_are_refused() {
        let bounded = TopicConfig::parse(BTreeMap::from([
            (
                "message.timestamp.before.max.ms".to_string(),
                "500".to_string(),
            ),
            (
                "message.timestamp.after.max.ms".to_string(),
                "100".to_string(),
            ),
        ]))
        .unwrap();
        use crate::error::Classify;
        // The batch's records carry timestamp 1000.
        let b = batch(&[Some("a")], Compression::None);
        let at = |now_ms| Limits {
            message_max_bytes: 1_048_588,
            now_ms,
        };
        assert!(validate(b.clone(), &bounded, at(1_500)).is_ok());
        assert!(validate(b.clone(), &bounded, at(900)).is_ok());
        for now in [1_501, 899] {
            match validate(b.clone(), &bounded, at(now)) {
                Err(e @ AppendError::InvalidTimestamp(_)) => {
                    assert_eq!(e.kind(), crate::error::ErrorKind::InvalidTimestamp)
                }
                other => panic!("{now}: {other:?}"),
            }
        }
        // No bound by default, and none on LogAppendTime topics.
        assert!(validate(b.clone(), &TopicConfig::default(), at(i64::MAX)).is_ok());
        let append_time = TopicConfig::parse(BTreeMap::from([
            (
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            ),
            (
                "message.timestamp.before.max.ms".to_string(),
                "0".to_string(),
            ),
        ]))
        .unwrap();
        assert!(validate(b.clone(), &append_time, at(10_000)).is_ok());
        // The cluster's message.max.bytes applies unless the topic sets one.
        let small = Limits {
            message_max_bytes: 10,
            now_ms: 1_000,
        };
        assert!(matches!(
            validate(b.clone(), &TopicConfig::default(), small),
            Err(AppendError::TooLarge { max: 10, .. })
        ));
        let own = TopicConfig::parse(BTreeMap::from([(
            "max.message.bytes".to_string(),
            "100000".to_string(),
        )]))
        .unwrap();
        assert!(validate(b, &own, small).is_ok());
    }

    /// Some producers leave a batch's maxTimestamp at -1; it is set from
    /// the records (CRC included), so timestamp lookups find them.
    #[test]
    fn a_missing_max_timestamp_is_recomputed_from_the_records() {
        let mut one = silt_tiering::batch::simple_batch(3, 5_000, b"v", None);
        silt_tiering::batch::set_max_timestamp(&mut one, -1);
        let mut data = one.clone();
        data.extend_from_slice(&silt_tiering::batch::simple_batch(2, 7_000, b"w", None));
        let v = validate(Bytes::from(data), &TopicConfig::default(), LIMITS).unwrap();
        let headers = silt_tiering::batch::parse_all(&v.data).unwrap();
        assert_eq!(headers[0].max_timestamp, 5_000);
        assert_eq!(headers[1].max_timestamp, 7_000);
        assert_eq!(v.batches[0].max_timestamp, 5_000);
        // A correct batch is passed on as it came.
        let ok = Bytes::from(silt_tiering::batch::simple_batch(2, 9_000, b"x", None));
        let v = validate(ok.clone(), &TopicConfig::default(), LIMITS).unwrap();
        assert_eq!(v.data, ok);
    }
}
