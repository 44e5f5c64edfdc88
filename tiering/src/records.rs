//! Records inside a batch: encoding an uncompressed batch from records, and
//! decoding a batch (decompressing it within a bound) back into records.
//!
//! The write and read paths never look inside batches; this is for the
//! places that must: the HTTP API (records arrive as JSON and leave as
//! JSON), the check for keys on compacted topics, and the cleaner (which
//! rebuilds batches from the records it keeps, byte for byte, recompressed
//! with the batch's codec). Duplicate header names are kept, in order, as
//! Kafka keeps them.

use std::io::Read;

use bytes::{BufMut, Bytes};

use crate::batch::{parse_one, BatchError};

/// One record with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("record batch is damaged: {0}")]
    Corrupt(&'static str),
    #[error("record batch decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("record batch uses unknown compression codec {0}")]
    Codec(i16),
    #[error("record batch does not decompress: {0}")]
    Decompress(String),
    #[error("a record has {0} headers, more than {MAX_HEADERS_PER_RECORD}")]
    TooManyHeaders(usize),
}

const RECORDS: usize = 61;
const CONTROL: i16 = 0x20;
const LOG_APPEND_TIME: i16 = 0x08;

/// The encoded size of `r` as the `index`th record of a batch whose first
/// record has timestamp `base_timestamp` (record length prefix included).
pub fn encoded_len(r: &Record, index: usize, base_timestamp: i64) -> usize {
    let mut v = Vec::new();
    put_record(&mut v, r, index as i64, base_timestamp);
    v.len()
}

/// Bytes of a batch besides its records.
pub const BATCH_OVERHEAD: usize = RECORDS;

/// Encodes `records` as one uncompressed batch (magic 2, base offset 0, no
/// producer id); offsets are their positions, the base timestamp the
/// first record's.
pub fn encode_batch(records: &[Record]) -> Vec<u8> {
    let base_ts = records.first().map_or(0, |r| r.timestamp);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        put_record(&mut body, r, i as i64, base_ts);
    }
    let n = records.len() as i32;
    let mut after_crc = Vec::with_capacity(40 + body.len());
    after_crc.put_i16(0);
    after_crc.put_i32(n - 1);
    after_crc.put_i64(base_ts);
    after_crc.put_i64(max_ts);
    after_crc.put_i64(-1);
    after_crc.put_i16(-1);
    after_crc.put_i32(-1);
    after_crc.put_i32(n);
    after_crc.extend_from_slice(&body);
    let mut b = Vec::with_capacity(17 + 4 + after_crc.len());
    b.put_i64(0);
    b.put_i32((4 + 1 + 4 + after_crc.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(crc32c::crc32c(&after_crc));
    b.extend_from_slice(&after_crc);
    b
}

fn put_record(out: &mut Vec<u8>, r: &Record, offset_delta: i64, base_ts: i64) {
    let mut rec = Vec::new();
    rec.put_i8(0);
    put_varint(&mut rec, r.timestamp.wrapping_sub(base_ts));
    put_varint(&mut rec, offset_delta);
    put_bytes(&mut rec, r.key.as_deref());
    put_bytes(&mut rec, r.value.as_deref());
    put_varint(&mut rec, r.headers.len() as i64);
    for (k, v) in &r.headers {
        put_bytes(&mut rec, Some(k));
        put_bytes(&mut rec, v.as_deref());
    }
    put_varint(out, rec.len() as i64);
    out.extend_from_slice(&rec);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Headers of one record at most: a record with more is refused, so that
/// decoding one record takes memory in proportion to what is returned.
pub const MAX_HEADERS_PER_RECORD: usize = 4096;

/// The records of one batch, decoded one at a time.
pub struct BatchRecords {
    body: Bytes,
    at: usize,
    left: i32,
    base_offset: i64,
    last_offset_delta: i64,
    base_timestamp: i64,
    /// LogAppendTime: every record has the batch's max timestamp.
    append_time: Option<i64>,
}

impl Iterator for BatchRecords {
    type Item = Result<Record, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_raw().map(|r| r.map(|(record, _)| record))
    }
}

impl BatchRecords {
    /// The next record with its encoding as stored (length prefix
    /// included, offset and timestamp deltas relative to the batch's).
    pub fn next_raw(&mut self) -> Option<Result<(Record, Bytes), RecordsError>> {
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        let start = self.at;
        let r = self.decode_one();
        if r.is_err() {
            // Nothing after a damaged record can be trusted.
            self.left = 0;
        }
        Some(r.map(|record| (record, self.body.slice(start..self.at))))
    }

    fn decode_one(&mut self) -> Result<Record, RecordsError> {
        let mut cur = Cursor {
            buf: &self.body,
            at: self.at,
        };
        let len = cur.varint()?;
        if len < 0 || len as usize > cur.remaining() {
            return Err(RecordsError::Corrupt("record length beyond the batch"));
        }
        let end = cur.at + len as usize;
        let mut rec = Cursor {
            buf: &self.body[..end],
            at: cur.at,
        };
        rec.byte()?;
        let ts_delta = rec.varint()?;
        let offset_delta = rec.varint()?;
        if !(0..=self.last_offset_delta).contains(&offset_delta) {
            return Err(RecordsError::Corrupt(
                "record offset delta outside the batch",
            ));
        }
        let key = rec.bytes(&self.body)?;
        let value = rec.bytes(&self.body)?;
        let n_headers = rec.varint()?;
        if n_headers < 0 || n_headers as usize > rec.remaining() / 2 {
            return Err(RecordsError::Corrupt("header count beyond the record"));
        }
        if n_headers as usize > MAX_HEADERS_PER_RECORD {
            return Err(RecordsError::TooManyHeaders(n_headers as usize));
        }
        let mut headers = Vec::with_capacity(n_headers as usize);
        for _ in 0..n_headers {
            let k = rec
                .bytes(&self.body)?
                .ok_or(RecordsError::Corrupt("null header name"))?;
            headers.push((k, rec.bytes(&self.body)?));
        }
        self.at = end;
        Ok(Record {
            offset: self.base_offset + offset_delta,
            timestamp: self
                .append_time
                .unwrap_or(self.base_timestamp.wrapping_add(ts_delta)),
            key,
            value,
            headers,
        })
    }
}

/// The batch's records with their offsets (from the batch's base offset),
/// decoded as they are taken, or `None` for a control batch (transaction
/// markers, never shown to consumers). A compressed batch is decompressed
/// (at once) to at most `max_decompressed` bytes.
pub fn decode_batch(
    batch: &[u8],
    max_decompressed: usize,
) -> Result<Option<BatchRecords>, RecordsError> {
    let h = parse_one(batch, 0)?;
    let batch = &batch[..h.size as usize];
    if h.attributes & CONTROL != 0 {
        return Ok(None);
    }
    let base_offset = i64::from_be_bytes(batch[0..8].try_into().expect("8 bytes"));
    if base_offset
        .checked_add(h.last_offset_delta as i64)
        .is_none()
        || h.last_offset_delta < 0
    {
        return Err(RecordsError::Corrupt("batch offsets overflow"));
    }
    let max_ts = i64::from_be_bytes(batch[35..43].try_into().expect("8 bytes"));
    let raw = &batch[RECORDS..];
    let body = match h.attributes & 0x07 {
        0 => Bytes::copy_from_slice(raw),
        codec => Bytes::from(decompress(codec, raw, max_decompressed)?),
    };
    Ok(Some(BatchRecords {
        body,
        at: 0,
        left: h.records,
        base_offset,
        last_offset_delta: h.last_offset_delta as i64,
        base_timestamp: h.base_timestamp,
        append_time: (h.attributes & LOG_APPEND_TIME != 0).then_some(max_ts),
    }))
}

/// Every record of a batch (`None` for a control batch), or the first
/// error.
pub fn decode_all(
    batch: &[u8],
    max_decompressed: usize,
) -> Result<Option<Vec<Record>>, RecordsError> {
    decode_batch(batch, max_decompressed)?
        .map(|r| r.collect::<Result<Vec<_>, _>>())
        .transpose()
}

/// A stored record (as [`BatchRecords::next_raw`] returns it) with `shift`
/// added to its offset delta: the record moved into a batch whose base
/// offset is `shift` lower.
pub fn rebase_record(raw: &[u8], shift: i64) -> Result<Vec<u8>, RecordsError> {
    let mut cur = Cursor { buf: raw, at: 0 };
    let len = cur.varint()?;
    if len < 0 || len as usize != cur.remaining() {
        return Err(RecordsError::Corrupt("record length does not match"));
    }
    let attributes = cur.byte()?;
    let ts_delta = cur.varint()?;
    let offset_delta = cur.varint()?;
    let mut rec = Vec::with_capacity(raw.len() + 4);
    rec.push(attributes);
    put_varint(&mut rec, ts_delta);
    put_varint(&mut rec, offset_delta + shift);
    rec.extend_from_slice(&raw[cur.at..]);
    let mut out = Vec::with_capacity(rec.len() + 5);
    put_varint(&mut out, rec.len() as i64);
    out.extend_from_slice(&rec);
    Ok(out)
}

/// The parts of a batch header a rebuilt batch keeps from its original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    pub attributes: i16,
    pub base_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl From<&crate::batch::BatchHeader> for BatchShape {
    fn from(h: &crate::batch::BatchHeader) -> Self {
        Self {
            attributes: h.attributes,
            base_timestamp: h.base_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
        }
    }
}

impl BatchShape {
    /// The shape of a batch holding no records (what is left of a batch
    /// whose every record was removed: only its offsets).
    pub const EMPTY: BatchShape = BatchShape {
        attributes: 0,
        base_timestamp: -1,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Builds a batch of `count` records whose encodings (as stored,
/// concatenated) are `body`, spanning offsets `base_offset ..= base_offset
/// + last_offset_delta`, compressed with the codec of `shape.attributes`.
pub fn build_batch(
    shape: &BatchShape,
    base_offset: i64,
    last_offset_delta: i32,
    count: i32,
    max_timestamp: i64,
    body: &[u8],
) -> Result<Vec<u8>, RecordsError> {
    let codec = shape.attributes & 0x07;
    let compressed;
    let records = if codec == 0 || count == 0 {
        body
    } else {
        compressed = compress(codec, body)?;
        &compressed[..]
    };
    // An empty batch is never compressed.
    let attributes = if count == 0 {
        shape.attributes & !0x07
    } else {
        shape.attributes
    };
    let mut after_crc = Vec::with_capacity(40 + records.len());
    after_crc.put_i16(attributes);
    after_crc.put_i32(last_offset_delta);
    after_crc.put_i64(shape.base_timestamp);
    after_crc.put_i64(max_timestamp);
    after_crc.put_i64(shape.producer_id);
    after_crc.put_i16(shape.producer_epoch);
    after_crc.put_i32(shape.base_sequence);
    after_crc.put_i32(count);
    after_crc.extend_from_slice(records);
    let mut b = Vec::with_capacity(21 + after_crc.len());
    b.put_i64(base_offset);
    b.put_i32((4 + 1 + 4 + after_crc.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(crc32c::crc32c(&after_crc));
    b.extend_from_slice(&after_crc);
    Ok(b)
}

/// Compresses a batch's records with `codec` (1 gzip, 2 snappy in the
/// xerial framing the Java client writes and every client reads, 3 lz4
/// frames with independent blocks, 4 zstd).
fn compress(codec: i16, body: &[u8]) -> Result<Vec<u8>, RecordsError> {
    use std::io::Write;
    let err = |e: std::io::Error| RecordsError::Decompress(format!("compressing: {e}"));
    match codec {
        1 => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            w.write_all(body).map_err(err)?;
            w.finish().map_err(err)
        }
        2 => {
            const BLOCK: usize = 32 << 10;
            let mut out = Vec::with_capacity(16 + body.len() / 2);
            out.extend_from_slice(b"\x82SNAPPY\x00");
            out.put_i32(1);
            out.put_i32(1);
            let mut enc = snap::raw::Encoder::new();
            for block in body.chunks(BLOCK) {
                let c = enc
                    .compress_vec(block)
                    .map_err(|e| RecordsError::Decompress(format!("compressing: {e}")))?;
                out.put_u32(c.len() as u32);
                out.extend_from_slice(&c);
            }
            Ok(out)
        }
        3 => {
            let mut w = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .map_err(err)?;
            w.write_all(body).map_err(err)?;
            let (out, result) = w.finish();
            result.map_err(err)?;
            Ok(out)
        }
        4 => zstd::bulk::compress(body, 3).map_err(err),
        c => Err(RecordsError::Codec(c)),
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, RecordsError> {
        let b = *self
            .buf
            .get(self.at)
            .ok_or(RecordsError::Corrupt("record ends early"))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<i64, RecordsError> {
        let mut z = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            z |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(RecordsError::Corrupt("varint too long"))
    }

    /// A length-prefixed field, as a slice of `whole` (which `buf` is a
    /// prefix of).
    fn bytes(&mut self, whole: &Bytes) -> Result<Option<Bytes>, RecordsError> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        if len as usize > self.remaining() {
            return Err(RecordsError::Corrupt("field length beyond the record"));
        }
        let b = whole.slice(self.at..self.at + len as usize);
        self.at += len as usize;
        Ok(Some(b))
    }
}

/// Decompresses a batch's records with `codec` (1 gzip, 2 snappy, 3 lz4,
/// 4 zstd), refusing output beyond `limit` bytes.
fn decompress(codec: i16, raw: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    fn bounded(mut r: impl Read, limit: usize) -> Result<Vec<u8>, RecordsError> {
        let mut out = Vec::new();
        (&mut r)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| RecordsError::Decompress(e.to_string()))?;
        if out.len() > limit {
            return Err(RecordsError::TooLarge(limit));
        }
        Ok(out)
    }
    let err = |e: &dyn std::fmt::Display| RecordsError::Decompress(e.to_string());
    match codec {
        1 => bounded(flate2::read::GzDecoder::new(raw), limit),
        2 => snappy(raw, limit),
        3 => bounded(lz4::Decoder::new(raw).map_err(|e| err(&e))?, limit),
        4 => bounded(
            zstd::stream::read::Decoder::new(raw).map_err(|e| err(&e))?,
            limit,
        ),
        c => Err(RecordsError::Codec(c)),
    }
}

/// Kafka's snappy: either one raw block, or the xerial framing (a magic
/// header, then length-prefixed raw blocks).
fn snappy(raw: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    const XERIAL: &[u8] = b"\x82SNAPPY\x00";
    let block = |b: &[u8], out: &mut Vec<u8>| -> Result<(), RecordsError> {
        let n =
            snap::raw::decompress_len(b).map_err(|e| RecordsError::Decompress(e.to_string()))?;
        if out.len() + n > limit {
            return Err(RecordsError::TooLarge(limit));
        }
        let start = out.len();
        out.resize(start + n, 0);
        snap::raw::Decoder::new()
            .decompress(b, &mut out[start..])
            .map_err(|e| RecordsError::Decompress(e.to_string()))?;
        Ok(())
    };
    let mut out = Vec::new();
    if raw.len() >= 16 && &raw[..8] == XERIAL {
        let mut at = 16;
        while at < raw.len() {
            let len_bytes = raw
                .get(at..at + 4)
                .ok_or(RecordsError::Corrupt("snappy block length cut short"))?;
            let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
            at += 4;
            let b = raw
                .get(at..at.saturating_add(len))
                .ok_or(RecordsError::Corrupt("snappy block cut short"))?;
            block(b, &mut out)?;
            at += len;
        }
    } else {
        block(raw, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: i64) -> Record {
        Record {
            offset: i,
            timestamp: 1_700_000_000_000 + i * 7 - 3,
            key: (i % 3 != 0).then(|| Bytes::from(format!("k{i}"))),
            value: (i % 5 != 4).then(|| Bytes::from(vec![i as u8; i as usize * 11])),
            headers: vec![
                (Bytes::from_static(b"h"), Some(Bytes::from_static(b"1"))),
                (Bytes::from_static(b"h"), None),
            ],
        }
    }

    #[test]
    fn encode_then_decode_is_identity_and_parses_as_a_batch() {
        let records: Vec<Record> = (0..20).map(rec).collect();
        let mut b = encode_batch(&records);
        let h = parse_one(&b, 0).unwrap();
        assert_eq!(h.records, 20);
        assert_eq!(h.size as usize, b.len());
        assert_eq!(decode_all(&b, 1 << 20).unwrap().unwrap(), records);
        // A base offset written later (as the read path does) shifts them.
        b[0..8].copy_from_slice(&100i64.to_be_bytes());
        let got = decode_all(&b, 1 << 20).unwrap().unwrap();
        assert_eq!(got[3].offset, 103);
    }

    #[test]
    fn compressed_batches_from_kafka_clients_decode_within_the_bound() {
        use kafka_protocol::{
            protocol::StrBytes,
            records::{
                Compression, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions,
                TimestampType,
            },
        };
        let records: Vec<KRecord> = (0..50)
            .map(|i| KRecord {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                delete_horizon: false,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1_000 + i,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![b'x'; 1000])),
                headers: [(
                    StrBytes::from_static_str("a"),
                    Some(Bytes::from_static(b"b")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
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
            // The encoder may cut the records into several batches.
            let mut got = Vec::new();
            let (mut at, mut biggest) = (0, (0, 0));
            while at < buf.len() {
                let h = parse_one(&buf, at).unwrap();
                got.extend(decode_all(&buf[at..], 1 << 20).unwrap().unwrap());
                biggest = biggest.max((h.records, at));
                at += h.size as usize;
            }
            assert_eq!(got.len(), 50, "{compression:?}");
            assert_eq!(got[49].offset, 49);
            assert_eq!(got[49].timestamp, 1_049);
            assert_eq!(got[7].key.as_deref(), Some(&b"key-7"[..]));
            assert_eq!(got[7].value.as_ref().unwrap().len(), 1000);
            assert_eq!(got[7].headers.len(), 1);
            // 50 KB of records do not fit a 10 KB bound: refused, not grown.
            assert!(biggest.0 > 10, "{compression:?}: {} records", biggest.0);
            assert!(
                matches!(
                    decode_batch(&buf[biggest.1..], 10_000),
                    Err(RecordsError::TooLarge(10_000))
                ),
                "{compression:?}"
            );
        }
    }

    /// What the cleaner writes decodes, with Kafka's own decoder, to the
    /// records it kept: offsets, timestamps, keys, values and headers, for
    /// every codec, also when the batch starts earlier than its first
    /// record (removed offsets before it).
    #[test]
    fn rebuilt_batches_keep_their_records_for_every_codec() {
        use kafka_protocol::{
            protocol::StrBytes,
            records::{
                Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
                RecordEncodeOptions, TimestampType,
            },
        };
        let records: Vec<KRecord> = (0..20)
            .map(|i| KRecord {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                delete_horizon: false,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: 100 + i,
                sequence: i as i32,
                timestamp: 5_000 + i * 3,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: (i % 4 != 3).then(|| Bytes::from(vec![b'v'; 100 + i as usize])),
                headers: [(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from(format!("{i}"))),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
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
            let h = parse_one(&buf, 0).unwrap();
            assert_eq!(h.records, 20, "{compression:?}: one batch");
            let mut decoded = decode_batch(&buf, 1 << 20).unwrap().unwrap();
            let mut kept = Vec::new();
            while let Some(r) = decoded.next_raw() {
                let (r, raw) = r.unwrap();
                if r.offset % 3 == 1 {
                    kept.push((r, raw));
                }
            }
            // From 98: two removed offsets before the batch's first.
            for (base, shift) in [(100, 0), (98, 2)] {
                let body: Vec<u8> = kept
                    .iter()
                    .flat_map(|(_, raw)| rebase_record(raw, shift).unwrap())
                    .collect();
                let b = build_batch(
                    &BatchShape::from(&h),
                    base,
                    (119 - base) as i32,
                    kept.len() as i32,
                    h.max_timestamp,
                    &body,
                )
                .unwrap();
                let got = parse_one(&b, 0).unwrap();
                assert_eq!(
                    got.attributes & 7,
                    h.attributes & 7,
                    "{compression:?}: same codec"
                );
                assert_eq!(got.record_count() as i64, 120 - base);
                let mut bytes = Bytes::from(b);
                let theirs = RecordBatchDecoder::decode(&mut bytes).unwrap().records;
                assert_eq!(theirs.len(), kept.len());
                for (t, (k, _)) in theirs.iter().zip(&kept) {
                    let want = &records[(k.offset - 100) as usize];
                    assert_eq!(
                        (
                            t.offset,
                            t.timestamp,
                            &t.key,
                            &t.value,
                            &t.headers,
                            t.producer_id
                        ),
                        (
                            want.offset,
                            want.timestamp,
                            &want.key,
                            &want.value,
                            &want.headers,
                            7
                        ),
                        "{compression:?} from {base}"
                    );
                }
            }
        }
        // A batch left with no records holds only its offsets.
        let empty = build_batch(&BatchShape::EMPTY, 40, 9, 0, -1, &[]).unwrap();
        let h = parse_one(&empty, 0).unwrap();
        assert_eq!((h.records, h.record_count(), empty.len()), (0, 10, 61));
        assert!(decode_all(&empty, 1 << 20).unwrap().unwrap().is_empty());
    }

    #[test]
    fn hostile_batches_are_errors_not_panics() {
        let good = encode_batch(&(0..5).map(rec).collect::<Vec<_>>());
        for cut in 0..good.len() {
            let _ = decode_all(&good[..cut], 1 << 20);
        }
        for i in 61..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xff;
            // Re-seal the CRC so the damage reaches the record decoder.
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            let _ = decode_all(&b, 1 << 20);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_records_round_trip(
            recs in proptest::collection::vec(
                (
                    0i64..(1 << 45),
                    proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
                    proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..300)),
                    proptest::collection::vec(
                        (proptest::collection::vec(proptest::num::u8::ANY, 0..8),
                         proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..8))),
                        0..4),
                ),
                1..30),
        ) {
            let records: Vec<Record> = recs
                .into_iter()
                .enumerate()
                .map(|(i, (ts, k, v, h))| Record {
                    offset: i as i64,
                    timestamp: ts,
                    key: k.map(Bytes::from),
                    value: v.map(Bytes::from),
                    headers: h.into_iter().map(|(a, b)| (Bytes::from(a), b.map(Bytes::from))).collect(),
                })
                .collect();
            let b = encode_batch(&records);
            // The size the producer plans with is the size written.
            let planned = BATCH_OVERHEAD
                + records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| encoded_len(r, i, records[0].timestamp))
                    .sum::<usize>();
            proptest::prop_assert_eq!(planned, b.len());
            proptest::prop_assert_eq!(decode_all(&b, 1 << 20).unwrap().unwrap(), records);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = decode_all(&bytes, 1 << 16);
            // And as the records of a batch with a valid header and CRC.
            let mut b = encode_batch(&[rec(1)]);
            b.truncate(RECORDS);
            b.extend_from_slice(&bytes);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            let _ = decode_all(&b, 1 << 16);
        }
    }

    #[test]
    fn offsets_outside_the_batch_and_header_floods_are_refused() {
        // A record claiming offset delta 5 in a one-record batch.
        let mut b = encode_batch(&[Record {
            headers: vec![],
            ..rec(1)
        }]);
        // record: length varint, attributes, ts delta varint, offset delta
        let at = RECORDS + 3;
        assert_eq!(b[at], 0, "offset delta 0 where expected");
        b[at] = 10; // zigzag 5
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_all(&b, 1 << 20),
            Err(RecordsError::Corrupt(_))
        ));
        // More headers than allowed.
        let many = Record {
            headers: vec![(Bytes::new(), None); MAX_HEADERS_PER_RECORD + 1],
            ..rec(1)
        };
        assert!(matches!(
            decode_all(&encode_batch(&[many]), 1 << 20),
            Err(RecordsError::TooManyHeaders(_))
        ));
    }
}
