//! Records inside a batch: encoding an uncompressed batch from records, and
//! decoding a batch (decompressing it within a bound) back into records.
//!
//! The write and read paths never look inside batches; this is for the
//! places that must: the HTTP API (records arrive as JSON and leave as
//! JSON). Duplicate header names are kept, in order, as Kafka keeps them.

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
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        let r = self.decode_one();
        if r.is_err() {
            // Nothing after a damaged record can be trusted.
            self.left = 0;
        }
        Some(r)
    }
}

impl BatchRecords {
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
