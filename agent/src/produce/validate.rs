//! Checks a partition's record set before it is queued: every batch parses
//! (magic 2, length, CRC-32C; headers only, never decompressed), fits the
//! topic's `max.message.bytes`, and is not transactional.

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

pub fn validate(records: Bytes, config: &TopicConfig) -> Result<Validated, AppendError> {
    let headers = batch::parse_all(&records).map_err(|e| match e {
        batch::BatchError::Magic { .. } => AppendError::UnsupportedFormat(e.to_string()),
        _ => AppendError::Invalid(e.to_string()),
    })?;
    let mut min_timestamp = i64::MAX;
    let mut batches = Vec::with_capacity(headers.len());
    for h in headers {
        if h.size as i64 > config.max_message_bytes as i64 {
            return Err(AppendError::TooLarge {
                size: h.size,
                max: config.max_message_bytes,
            });
        }
        if h.attributes & TRANSACTIONAL != 0 {
            return Err(AppendError::Transactional);
        }
        min_timestamp = min_timestamp.min(h.base_timestamp);
        batches.push(BatchMeta {
            size: h.size,
            records: h.record_count(),
            max_timestamp: h.max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
        });
    }
    Ok(Validated {
        data: records,
        batches,
        min_timestamp,
    })
}
