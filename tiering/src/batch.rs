//! Kafka RecordBatch (magic 2) header parsing and validation.
//!
//! Only the fixed 61-byte header is read; records are never decompressed.

use bytes::{Buf, Bytes};

/// Size of the fixed RecordBatch header.
pub const HEADER_LEN: usize = 61;
/// Bytes that precede the `batchLength` field's coverage (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;

/// What the write path needs to know about one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Total bytes of the batch including the 12-byte log overhead.
    pub size: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: i32,
}

impl BatchHeader {
    /// Number of offsets this batch occupies.
    pub fn record_count(&self) -> u32 {
        (self.last_offset_delta as u32).wrapping_add(1)
    }

    /// Bytes of the batch after its header: where its records are.
    pub fn compression_free_room(&self) -> u64 {
        (self.size as u64).saturating_sub(HEADER_LEN as u64)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch at byte {at}: truncated ({available} bytes left, need {needed})")]
    Truncated {
        at: usize,
        available: usize,
        needed: usize,
    },
    #[error("record batch at byte {at}: unsupported magic {magic} (only 2 is accepted)")]
    Magic { at: usize, magic: i8 },
    #[error("record batch at byte {at}: invalid batch length {length}")]
    Length { at: usize, length: i32 },
    #[error("record batch at byte {at}: CRC-32C mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Crc {
        at: usize,
        stored: u32,
        computed: u32,
    },
    #[error(
        "record batch at byte {at}: invalid lastOffsetDelta {delta} or record count {records}"
    )]
    Count { at: usize, delta: i32, records: i32 },
    #[error("empty record set")]
    Empty,
}

/// Parses the header of the batch starting at `buf[at..]`, validating length,
/// magic and CRC.
pub fn parse_one(buf: &[u8], at: usize) -> Result<BatchHeader, BatchError> {
    let rest = &buf[at..];
    if rest.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            at,
            available: rest.len(),
            needed: HEADER_LEN,
        });
    }
    let mut h = &rest[8..];
    let length = h.get_i32();
    if length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::Length { at, length });
    }
    let size = length as usize + LOG_OVERHEAD;
    if rest.len() < size {
        return Err(BatchError::Truncated {
            at,
            available: rest.len(),
            needed: size,
        });
    }
    let _leader_epoch = h.get_i32();
    let magic = h.get_i8();
    if magic != 2 {
        return Err(BatchError::Magic { at, magic });
    }
    let stored = h.get_u32();
    let computed = crc32c::crc32c(&rest[ATTRIBUTES_OFFSET..size]);
    if stored != computed {
        return Err(BatchError::Crc {
            at,
            stored,
            computed,
        });
    }
    debug_assert_eq!(8 + 4 + 4 + 1 + 4, ATTRIBUTES_OFFSET);
    debug_assert_eq!(CRC_OFFSET + 4, ATTRIBUTES_OFFSET);
    let attributes = h.get_i16();
    let last_offset_delta = h.get_i32();
    let base_timestamp = h.get_i64();
    let max_timestamp = h.get_i64();
    let producer_id = h.get_i64();
    let producer_epoch = h.get_i16();
    let base_sequence = h.get_i32();
    let records = h.get_i32();
    if last_offset_delta < 0 || records < 0 {
        return Err(BatchError::Count {
            at,
            delta: last_offset_delta,
            records,
        });
    }
    Ok(BatchHeader {
        size: size as u32,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        records,
    })
}

/// Validates every batch in a produce record set and returns their headers.
pub fn parse_all(buf: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let h = parse_one(buf, at)?;
        at += h.size as usize;
        out.push(h);
    }
    Ok(out)
}

/// Rewrites `baseOffset` and `partitionLeaderEpoch` of each batch in `chunk`
/// (neither is covered by the CRC) and returns the batches whose last offset is
/// at or after `from`, up to `max_bytes` (at least one batch when `min_one`).
///
/// `base` is the offset assigned to the first batch of the chunk. Returns the
/// selected bytes, the next offset after them, and whether the limit cut it.
pub fn rewrite_chunk(
    chunk: &Bytes,
    base: i64,
    from: i64,
    max_bytes: usize,
    min_one: bool,
    log_append_time: Option<i64>,
) -> Result<(Vec<u8>, i64, bool), BatchError> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut offset = base;
    while at < chunk.len() {
        // Stored batches were validated at produce time; a cheaper bounds check
        // suffices here, and keeps a damaged object from panicking the reader.
        let rest = &chunk[at..];
        if rest.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                at,
                available: rest.len(),
                needed: HEADER_LEN,
            });
        }
        let length = (&rest[8..12]).get_i32();
        let delta = (&rest[23..27]).get_i32();
        if length < (HEADER_LEN - LOG_OVERHEAD) as i32 || delta < 0 {
            return Err(BatchError::Length { at, length });
        }
        let size = length as usize + LOG_OVERHEAD;
        if rest.len() < size {
            return Err(BatchError::Truncated {
                at,
                available: rest.len(),
                needed: size,
            });
        }
        let last = offset + delta as i64;
        if last >= from {
            if out.len() + size > max_bytes && !(min_one && out.is_empty()) {
                return Ok((out, offset, true));
            }
            let start = out.len();
            out.extend_from_slice(&rest[..size]);
            out[start..start + 8].copy_from_slice(&offset.to_be_bytes());
            out[start + 12..start + 16].copy_from_slice(&0i32.to_be_bytes());
            if let Some(t) = log_append_time {
                set_log_append_time(&mut out[start..start + size], t);
            }
        }
        offset = last + 1;
        at += size;
    }
    Ok((out, offset, false))
}

/// Marks a batch as LogAppendTime with timestamp `t`, as a Kafka broker
/// does for such topics: timestamp-type bit and maxTimestamp are set, and
/// since both are covered by the CRC, the CRC is recomputed.
pub fn set_log_append_time(batch: &mut [u8], t: i64) {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | 0x08;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&t.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets a batch's maxTimestamp field (and its CRC), as a Kafka broker's
/// validator does when the producer's value is not the records' maximum.
pub fn set_max_timestamp(batch: &mut [u8], t: i64) {
    batch[35..43].copy_from_slice(&t.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Encodes an uncompressed record batch of `n` records, each with a null
/// key, `value` and no headers, all at timestamp `ts`; `producer` is the
/// idempotent producer's (id, epoch, first sequence). Base offset 0.
pub fn simple_batch(n: i32, ts: i64, value: &[u8], producer: Option<(i64, i16, i32)>) -> Vec<u8> {
    keyed_batch(n, ts, value, producer, |_| None)
}

/// [`simple_batch`] with the key `key(i)` for the `i`th record.
pub fn keyed_batch(
    n: i32,
    ts: i64,
    value: &[u8],
    producer: Option<(i64, i16, i32)>,
    key: impl Fn(i32) -> Option<Vec<u8>>,
) -> Vec<u8> {
    use bytes::BufMut;
    fn put_varint(buf: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                buf.push(z as u8);
                return;
            }
            buf.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }
    let mut body = Vec::new();
    for i in 0..n {
        // record: length, attributes, timestamp delta, offset delta, key,
        // value, header count
        let mut rec = Vec::new();
        rec.put_i8(0);
        put_varint(&mut rec, 0);
        put_varint(&mut rec, i as i64);
        match key(i) {
            Some(k) => {
                put_varint(&mut rec, k.len() as i64);
                rec.extend_from_slice(&k);
            }
            None => put_varint(&mut rec, -1),
        }
        put_varint(&mut rec, value.len() as i64);
        rec.extend_from_slice(value);
        put_varint(&mut rec, 0);
        put_varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let mut after_crc = Vec::new();
    after_crc.put_i16(0);
    after_crc.put_i32(n - 1);
    after_crc.put_i64(ts);
    after_crc.put_i64(ts);
    after_crc.put_i64(pid);
    after_crc.put_i16(epoch);
    after_crc.put_i32(seq);
    after_crc.put_i32(n);
    after_crc.extend_from_slice(&body);
    let mut b = Vec::new();
    b.put_i64(0);
    b.put_i32((4 + 1 + 4 + after_crc.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(crc32c::crc32c(&after_crc));
    b.extend_from_slice(&after_crc);
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal valid uncompressed batch with `n` records.
    pub fn make_batch(n: i32, ts: i64, payload: &[u8]) -> Vec<u8> {
        simple_batch(n, ts, payload, None)
    }

    #[test]
    fn parses_valid_batches() {
        let mut set = make_batch(3, 1000, b"abc");
        set.extend(make_batch(2, 2000, b"de"));
        let hs = parse_all(&set).unwrap();
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[0].record_count(), 3);
        assert_eq!(hs[1].max_timestamp, 2000);
    }

    #[test]
    fn rejects_bad_crc_and_truncation() {
        let mut b = make_batch(1, 0, b"x");
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(parse_all(&b), Err(BatchError::Crc { .. })));
        let b = make_batch(1, 0, b"x");
        assert!(matches!(
            parse_all(&b[..b.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        let mut b = make_batch(1, 0, b"x");
        b[16] = 1;
        assert!(matches!(parse_all(&b), Err(BatchError::Magic { .. })));
        assert_eq!(parse_all(&[]), Err(BatchError::Empty));
    }

    #[test]
    fn rewrite_assigns_offsets_and_skips_earlier_batches() {
        let mut set = make_batch(3, 0, b"a");
        set.extend(make_batch(2, 0, b"b"));
        let chunk = Bytes::from(set);
        let (out, next, cut) = rewrite_chunk(&chunk, 100, 103, usize::MAX, true, None).unwrap();
        assert_eq!(next, 105);
        assert!(!cut);
        let hs = parse_all(&out).unwrap();
        assert_eq!(hs.len(), 1);
        assert_eq!((&out[0..8]).get_i64(), 103);
        let (out, _, _) = rewrite_chunk(&chunk, 100, 0, usize::MAX, true, None).unwrap();
        assert_eq!((&out[0..8]).get_i64(), 100);
        let second = parse_one(&out, 0).unwrap().size as usize;
        assert_eq!((&out[second..second + 8]).get_i64(), 103);
        // CRC still valid after rewrite.
        parse_all(&out).unwrap();
        // A byte limit smaller than one batch still returns one batch when asked.
        let (out, next, cut) = rewrite_chunk(&chunk, 0, 0, 1, true, None).unwrap();
        assert!(cut);
        assert_eq!(next, 3);
        assert_eq!(parse_all(&out).unwrap().len(), 1);
        // LogAppendTime: type bit and max timestamp set, CRC still valid.
        let (out, _, _) = rewrite_chunk(&chunk, 0, 0, usize::MAX, true, Some(42)).unwrap();
        let hs = parse_all(&out).unwrap();
        assert!(hs
            .iter()
            .all(|h| h.attributes & 0x08 != 0 && h.max_timestamp == 42));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_all(&data);
            let _ = rewrite_chunk(&Bytes::from(data), 0, 0, 1 << 20, true, Some(5));
        }
    }
}
