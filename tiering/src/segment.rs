//! The segment object format.
//!
//! ```text
//! header   "SILTSEG" + format version (u8)
//! data     raw RecordBatch bytes, grouped by (topic id, partition) into chunks
//! footer   chunk count, then per chunk: topic id, partition, byte range,
//!          batch count, record count, min/max timestamp, and per batch:
//!          size, record count, max timestamp, producer id, epoch, base sequence
//! trailer  footer length (u32), footer CRC-32C (u32), "SILTEND\0"
//! ```
//! All integers in the footer and trailer are little-endian.

use bytes::{Buf, BufMut, Bytes};

pub const MAGIC: &[u8; 7] = b"SILTSEG";
pub const END_MAGIC: &[u8; 8] = b"SILTEND\0";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8;
pub const TRAILER_LEN: usize = 16;
const CHUNK_FIXED: usize = 16 + 4 + 8 + 8 + 4 + 8 + 8 + 8;
const BATCH_FIXED: usize = 4 + 4 + 8 + 8 + 2 + 4;

pub type TopicId = [u8; 16];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMeta {
    pub size: u32,
    pub records: u32,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The batch is part of a transaction (attribute bit 4). Not kept in
    /// the footer: readers of a sealed segment parse the batch headers.
    pub transactional: bool,
}

impl From<&crate::batch::BatchHeader> for BatchMeta {
    fn from(h: &crate::batch::BatchHeader) -> Self {
        Self {
            size: h.size,
            records: h.record_count(),
            max_timestamp: h.max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            transactional: h.attributes & 0x10 != 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMeta {
    pub topic_id: TopicId,
    pub partition: i32,
    /// Byte offset of the chunk within the object.
    pub position: u64,
    pub length: u64,
    pub records: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub batches: Vec<BatchMeta>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("segment too short ({0} bytes)")]
    TooShort(usize),
    #[error("bad segment magic")]
    Magic,
    #[error("unsupported segment format version {0}")]
    Version(u8),
    #[error("footer length {0} out of range")]
    FooterLength(u32),
    #[error("footer CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    FooterCrc { stored: u32, computed: u32 },
    #[error("footer malformed: {0}")]
    Footer(&'static str),
}

/// Makes the unique part of new object keys.
pub trait ObjectIds: Send + Sync + 'static {
    fn next(&self) -> ulid::Ulid;
}

/// ULIDs from the wall clock and randomness.
pub struct RandomIds;

impl ObjectIds for RandomIds {
    fn next(&self) -> ulid::Ulid {
        ulid::Ulid::new()
    }
}

/// ULIDs counted from a fixed time: the same run makes the same keys
/// (deterministic tests).
#[derive(Default)]
pub struct SequentialIds(std::sync::atomic::AtomicU64);

impl ObjectIds for SequentialIds {
    fn next(&self) -> ulid::Ulid {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ulid::Ulid::from_parts(1_767_225_600_000 + n, n as u128)
    }
}

/// `<prefix>YYYY/MM/DD/<ulid>.silt`, dated by the ULID's own timestamp
/// (UTC), so a bucket listing groups objects by day.
pub fn dated_key(prefix: &str, ulid: ulid::Ulid) -> String {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let days = (ulid.timestamp_ms() / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{prefix}{y:04}/{m:02}/{d:02}/{ulid}.silt")
}

/// Builds a segment from batches appended per partition.
#[derive(Default)]
pub struct SegmentBuilder {
    chunks: Vec<(ChunkMeta, Vec<Bytes>)>,
    index: std::collections::BTreeMap<(TopicId, i32), usize>,
    data_len: u64,
}

impl SegmentBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends validated batches for one partition; returns (chunk index,
    /// batches in the chunk before these).
    pub fn append(
        &mut self,
        topic_id: TopicId,
        partition: i32,
        data: Bytes,
        batches: Vec<BatchMeta>,
        min_ts: i64,
    ) -> (usize, u64) {
        let idx = *self.index.entry((topic_id, partition)).or_insert_with(|| {
            self.chunks.push((
                ChunkMeta {
                    topic_id,
                    partition,
                    position: 0,
                    length: 0,
                    records: 0,
                    min_timestamp: i64::MAX,
                    max_timestamp: i64::MIN,
                    batches: Vec::new(),
                },
                Vec::new(),
            ));
            self.chunks.len() - 1
        });
        let (meta, parts) = &mut self.chunks[idx];
        let before = meta.batches.len() as u64;
        for b in &batches {
            meta.records += b.records as u64;
            meta.max_timestamp = meta.max_timestamp.max(b.max_timestamp);
        }
        meta.min_timestamp = meta.min_timestamp.min(min_ts);
        meta.length += data.len() as u64;
        self.data_len += data.len() as u64;
        meta.batches.extend(batches);
        parts.push(data);
        (idx, before)
    }

    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Encodes the segment; returns its bytes and the chunk metadata with
    /// positions filled in, in the same order as the chunk indexes.
    pub fn finish(self) -> (Bytes, Vec<ChunkMeta>) {
        let mut out = Vec::with_capacity(HEADER_LEN + self.data_len as usize + 4096);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        let mut metas = Vec::with_capacity(self.chunks.len());
        for (mut meta, parts) in self.chunks {
            meta.position = out.len() as u64;
            for p in parts {
                out.extend_from_slice(&p);
            }
            metas.push(meta);
        }
        let footer = encode_footer(&metas);
        let crc = crc32c::crc32c(&footer);
        out.extend_from_slice(&footer);
        out.put_u32_le(footer.len() as u32);
        out.put_u32_le(crc);
        out.extend_from_slice(END_MAGIC);
        (Bytes::from(out), metas)
    }
}

fn encode_footer(chunks: &[ChunkMeta]) -> Vec<u8> {
    let mut f = Vec::new();
    f.put_u32_le(chunks.len() as u32);
    for c in chunks {
        f.extend_from_slice(&c.topic_id);
        f.put_i32_le(c.partition);
        f.put_u64_le(c.position);
        f.put_u64_le(c.length);
        f.put_u32_le(c.batches.len() as u32);
        f.put_u64_le(c.records);
        f.put_i64_le(c.min_timestamp);
        f.put_i64_le(c.max_timestamp);
        for b in &c.batches {
            f.put_u32_le(b.size);
            f.put_u32_le(b.records);
            f.put_i64_le(b.max_timestamp);
            f.put_i64_le(b.producer_id);
            f.put_i16_le(b.producer_epoch);
            f.put_i32_le(b.base_sequence);
        }
    }
    f
}

/// Decodes the footer of a whole segment object.
pub fn decode(object: &[u8]) -> Result<Vec<ChunkMeta>, SegmentError> {
    if object.len() < HEADER_LEN + TRAILER_LEN + 4 {
        return Err(SegmentError::TooShort(object.len()));
    }
    if &object[..7] != MAGIC || &object[object.len() - 8..] != END_MAGIC {
        return Err(SegmentError::Magic);
    }
    if object[7] != VERSION {
        return Err(SegmentError::Version(object[7]));
    }
    let mut t = &object[object.len() - TRAILER_LEN..];
    let footer_len = t.get_u32_le();
    let stored = t.get_u32_le();
    let data_end = object
        .len()
        .checked_sub(TRAILER_LEN + footer_len as usize)
        .filter(|e| *e >= HEADER_LEN)
        .ok_or(SegmentError::FooterLength(footer_len))?;
    let footer = &object[data_end..object.len() - TRAILER_LEN];
    let computed = crc32c::crc32c(footer);
    if stored != computed {
        return Err(SegmentError::FooterCrc { stored, computed });
    }
    decode_footer(footer, data_end as u64)
}

fn decode_footer(mut f: &[u8], data_end: u64) -> Result<Vec<ChunkMeta>, SegmentError> {
    let need = |f: &[u8], n: usize| {
        if f.len() < n {
            Err(SegmentError::Footer("truncated"))
        } else {
            Ok(())
        }
    };
    need(f, 4)?;
    let count = f.get_u32_le() as usize;
    // Each chunk takes at least CHUNK_FIXED bytes: bound the allocation by input.
    if count > f.len() / CHUNK_FIXED {
        return Err(SegmentError::Footer("chunk count exceeds footer size"));
    }
    let mut chunks = Vec::with_capacity(count);
    for _ in 0..count {
        need(f, CHUNK_FIXED)?;
        let mut topic_id = [0u8; 16];
        f.copy_to_slice(&mut topic_id);
        let partition = f.get_i32_le();
        let position = f.get_u64_le();
        let length = f.get_u64_le();
        let nb = f.get_u32_le() as usize;
        let records = f.get_u64_le();
        let min_timestamp = f.get_i64_le();
        let max_timestamp = f.get_i64_le();
        if position < HEADER_LEN as u64 || position.checked_add(length).is_none_or(|e| e > data_end)
        {
            return Err(SegmentError::Footer("chunk byte range outside data"));
        }
        if nb > f.len() / BATCH_FIXED {
            return Err(SegmentError::Footer("batch count exceeds footer size"));
        }
        let mut batches = Vec::with_capacity(nb);
        for _ in 0..nb {
            batches.push(BatchMeta {
                size: f.get_u32_le(),
                records: f.get_u32_le(),
                max_timestamp: f.get_i64_le(),
                producer_id: f.get_i64_le(),
                producer_epoch: f.get_i16_le(),
                base_sequence: f.get_i32_le(),
                transactional: false,
            });
        }
        chunks.push(ChunkMeta {
            topic_id,
            partition,
            position,
            length,
            records,
            min_timestamp,
            max_timestamp,
            batches,
        });
    }
    if !f.is_empty() {
        return Err(SegmentError::Footer("trailing bytes"));
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SegmentBuilder {
        let mut b = SegmentBuilder::new();
        let bm = |size, records| BatchMeta {
            size,
            records,
            max_timestamp: 1_700_000_000_000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
        };
        b.append(
            [1; 16],
            0,
            Bytes::from_static(b"aaaa"),
            vec![bm(4, 2)],
            1_699_999_999_000,
        );
        b.append(
            [2; 16],
            3,
            Bytes::from_static(b"bb"),
            vec![bm(2, 1)],
            1_700_000_000_000,
        );
        b.append(
            [1; 16],
            0,
            Bytes::from_static(b"cc"),
            vec![bm(2, 5)],
            1_700_000_000_000,
        );
        b
    }

    #[test]
    fn groups_by_partition_and_round_trips() {
        let (bytes, metas) = sample().finish();
        assert_eq!(metas.len(), 2);
        assert_eq!(metas[0].records, 7);
        let c0 = &metas[0];
        assert_eq!(
            &bytes[c0.position as usize..(c0.position + c0.length) as usize],
            b"aaaacc"
        );
        assert_eq!(decode(&bytes).unwrap(), metas);
    }

    /// Fails loudly when the on-disk format changes by accident.
    #[test]
    fn golden_bytes() {
        let (bytes, _) = sample().finish();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let golden = include_str!("../testdata/segment_v1.hex").trim();
        assert_eq!(hex, golden, "segment format v1 changed");
    }

    #[test]
    fn rejects_damage() {
        let (bytes, _) = sample().finish();
        let mut bad = bytes.to_vec();
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert!(decode(&bad).is_err());
        assert_eq!(decode(&bytes[..10]), Err(SegmentError::TooShort(10)));
    }

    proptest! {
        #[test]
        fn round_trip(parts in proptest::collection::vec((0u8..4, 0i32..4, proptest::collection::vec(any::<u8>(), 1..64), 1u32..50, any::<i64>()), 1..20)) {
            let mut b = SegmentBuilder::new();
            let mut expect: std::collections::BTreeMap<(u8, i32), Vec<u8>> = Default::default();
            for (t, p, data, records, ts) in parts {
                expect.entry((t, p)).or_default().extend_from_slice(&data);
                let meta = BatchMeta { size: data.len() as u32, records, max_timestamp: ts, producer_id: 7, producer_epoch: 1, base_sequence: 3, transactional: false };
                b.append([t; 16], p, Bytes::from(data), vec![meta], ts);
            }
            let (bytes, metas) = b.finish();
            let decoded = decode(&bytes).unwrap();
            prop_assert_eq!(&decoded, &metas);
            for c in decoded {
                let got = &bytes[c.position as usize..(c.position + c.length) as usize];
                prop_assert_eq!(got, &expect[&(c.topic_id[0], c.partition)][..]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&data);
            // Also with a valid trailer around random footer bytes.
            let mut obj = MAGIC.to_vec();
            obj.push(VERSION);
            obj.extend_from_slice(&data);
            obj.put_u32_le(data.len() as u32);
            obj.put_u32_le(crc32c::crc32c(&data));
            obj.extend_from_slice(END_MAGIC);
            let _ = decode(&obj);
        }
    }
}
