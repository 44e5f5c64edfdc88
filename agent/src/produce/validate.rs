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
/// The compression bits of a batch's attributes.
const COMPRESSION: i16 = 0x07;
/// The smallest encoding of a record (length, attributes, timestamp delta,
/// offset delta, key length, value length, header count: one byte each).
const MIN_RECORD_BYTES: u64 = 7;
/// Records in one partition's part of a request at most. A chunk of the
/// state machine holds fewer than i32::MAX records; this leaves room for
/// many requests in one segment.
pub const MAX_RECORDS_PER_PARTITION: u64 = 1 << 28;

pub fn validate(records: Bytes, config: &TopicConfig) -> Result<Validated, AppendError> {
    let headers = batch::parse_all(&records).map_err(|e| match e {
        batch::BatchError::Magic { .. } => AppendError::UnsupportedFormat(e.to_string()),
        _ => AppendError::Invalid(e.to_string()),
    })?;
    let mut min_timestamp = i64::MAX;
    let mut batches = Vec::with_capacity(headers.len());
    let mut total = 0u64;
    let mut at = 0usize;
    for h in headers {
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
        if h.size as i64 > config.max_message_bytes as i64 {
            return Err(AppendError::TooLarge {
                size: h.size,
                max: config.max_message_bytes,
            });
        }
        if h.attributes & TRANSACTIONAL != 0 {
            return Err(AppendError::Transactional);
        }
        if config.compact {
            check_keys(&records[at..at + h.size as usize])?;
        }
        at += h.size as usize;
        min_timestamp = min_timestamp.min(h.base_timestamp);
        batches.push(BatchMeta::from(&h));
    }
    Ok(Validated {
        data: records,
        batches,
        min_timestamp,
    })
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
            assert!(validate(keyed.clone(), &compact).is_ok());
            let one_without = batch(&[Some("a"), None], compression);
            match validate(one_without.clone(), &compact) {
                Err(AppendError::InvalidRecord(m)) => {
                    assert_eq!(m, "Compacted topic cannot accept message without key")
                }
                other => panic!("{compression:?}: {other:?}"),
            }
            // The same records are fine where nothing is compacted.
            assert!(validate(one_without, &delete).is_ok());
        }
    }
}
