//! Log records: what agents append to the commit log on the metadata store.
//!
//! A record is JSON with a format version; every field that must be unique
//! (topic ids, object keys) is chosen by the writer and carried inside it.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

pub const RECORD_VERSION: u32 = 1;

/// Record kinds added to format 1, named for agents to advertise: `tiering`
/// is `Compact`, `ForgetObjects` and the topic id and times of
/// `DeleteRecords` and `DeleteTopic`; `cleaner` is `Clean` and the
/// `cleaned_at` time of index entries; `tables` is `TableExported`. A build that writes them first checks
/// that every registered agent lists them (an older agent would skip them,
/// and its checkpoints would lose them).
pub const FEATURES: &[&str] = &["tiering", "cleaner", "tables", "transactions"];

/// A topic's 16-byte id (the Kafka topic UUID), written as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TopicId(pub [u8; 16]);

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({self})")
    }
}

impl std::str::FromStr for TopicId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 32 || !s.is_ascii() {
            return Err(format!("topic id {s:?}: expected 32 hex digits"));
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("topic id {s:?}: expected 32 hex digits"))?;
        }
        Ok(TopicId(out))
    }
}

impl Serialize for TopicId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TopicId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One record batch of a chunk, listed when the chunk holds batches of an
/// idempotent producer (their sequences decide which batches are kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRef {
    pub records: u32,
    pub size: u32,
    /// -1 for batches without a producer id.
    pub producer_id: i64,
    pub epoch: i16,
    pub sequence: i32,
    /// The batch belongs to its producer's open transaction.
    #[serde(default, skip_serializing_if = "is_false")]
    pub transactional: bool,
}

/// A partition of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxnPartition {
    pub topic: TopicId,
    pub partition: i32,
}

/// A consumer-group offset committed inside a transaction
/// (TxnOffsetCommit); it becomes the group's offset when the transaction
/// commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// One partition's contiguous bytes inside a segment object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub topic: TopicId,
    pub partition: i32,
    pub position: u64,
    pub length: u64,
    pub records: u64,
    pub max_timestamp: i64,
    /// The committing agent's clock when the segment was sealed, used as
    /// the timestamp of topics with `message.timestamp.type=LogAppendTime`.
    #[serde(default)]
    pub append_time: i64,
    /// Per-batch detail, present only when the chunk has idempotent batches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<BatchRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    CreateTopic {
        name: String,
        id: TopicId,
        partitions: u32,
        #[serde(default)]
        config: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
        /// The writer's clock (ms), marking when the topic's objects became
        /// unreferenced. 0 in records written before it existed.
        #[serde(default, skip_serializing_if = "is_zero")]
        time: i64,
    },
    /// Grows a topic to `partitions` partitions.
    CreatePartitions { name: String, partitions: u32 },
    /// Replaces a topic's configuration overrides.
    SetTopicConfig {
        name: String,
        config: BTreeMap<String, String>,
    },
    /// Advances a partition's log start offset (DeleteRecords, retention).
    DeleteRecords {
        name: String,
        partition: i32,
        offset: i64,
        /// When set, the record applies only to the topic with this id (a
        /// retention pass must not act on a topic recreated under the same
        /// name since it looked).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic_id: Option<TopicId>,
        /// The writer's clock (ms); see `DeleteTopic::time`.
        #[serde(default, skip_serializing_if = "is_zero")]
        time: i64,
    },
    /// A segment object was uploaded; append its chunks to their partitions.
    Commit {
        object: String,
        size: u64,
        chunks: Vec<ChunkRef>,
    },
    /// Segment compaction: `object` holds, per run, the bytes of index
    /// entries it replaces. Each run applies only if the entries it replaces
    /// are still exactly in the partition's index (a compare-and-swap), so a
    /// compaction never races with retention, DeleteRecords, a topic
    /// deletion, another compactor or a new commit.
    Compact {
        object: String,
        size: u64,
        /// The compactor's clock (ms) before it uploaded `object`.
        time: i64,
        /// The compactor's clock when it proposed the swap (when the
        /// entries it replaces leave the index).
        #[serde(default)]
        at: i64,
        runs: Vec<CompactRun>,
    },
    /// Key compaction (the cleaner) of one stretch of a compacted topic's
    /// partition: `object` holds the stretch's batches with superseded
    /// records and expired tombstones removed. A compare-and-swap like
    /// `Compact`, except that the new entries hold fewer bytes; with
    /// `clean_to` > 0 the partition's clean offset moves there (the cleaner
    /// has seen every key before it).
    Clean {
        object: String,
        size: u64,
        time: i64,
        at: i64,
        run: CompactRun,
        #[serde(default, skip_serializing_if = "is_zero")]
        clean_to: i64,
    },
    /// Table export: a partition's records `[from, to)` are in table files
    /// now. Applies only if the partition's export progress is `from` (a
    /// compare-and-swap), so a repeated or racing export never counts a
    /// range twice.
    TableExported {
        topic: TopicId,
        partition: i32,
        from: i64,
        to: i64,
    },
    /// Object GC: `objects` were deleted from the bucket and leave the
    /// state's unreferenced set. From now on a commit sealed (or a
    /// compaction started) before `horizon` (ms) is refused, so an upload
    /// that GC may have deleted (an orphan, or a forgotten object) can never
    /// become visible.
    ForgetObjects {
        time: i64,
        horizon: i64,
        objects: Vec<String>,
        /// The writer updated the `gc-horizon` key in the same store
        /// transaction (a transaction's end compares it: decision 0011).
        #[serde(default, skip_serializing_if = "is_false")]
        horizon_key: bool,
    },
    /// InitProducerId with a transactional id: the transaction takes
    /// `producer_id` and `epoch`, which must be newer than its current ones
    /// (a new id, or the same id with a higher epoch); it must not be open.
    InitTxn {
        id: String,
        producer_id: i64,
        epoch: i16,
        timeout_ms: i64,
        time: i64,
    },
    /// AddPartitionsToTxn: the partitions join the transaction, which opens
    /// if it was not.
    AddTxnPartitions {
        id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TxnPartition>,
        time: i64,
    },
    /// AddOffsetsToTxn: the group joins the transaction, which opens if it
    /// was not.
    AddTxnGroup {
        id: String,
        producer_id: i64,
        epoch: i16,
        group: String,
        time: i64,
    },
    /// TxnOffsetCommit: offsets of a group in the transaction, pending
    /// until it commits.
    TxnOffsets {
        id: String,
        producer_id: i64,
        epoch: i16,
        group: String,
        offsets: Vec<TxnOffset>,
        time: i64,
    },
    /// EndTxn (or an abort by the coordinator): `object` holds one control
    /// batch per partition of the transaction (`markers`, one record each);
    /// all of them are appended, and the transaction completes, in this one
    /// record. With `fence`, the producer's epoch is bumped, so the
    /// producer that left the transaction open is fenced.
    EndTxn {
        id: String,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        object: String,
        size: u64,
        markers: Vec<ChunkRef>,
        time: i64,
        #[serde(default, skip_serializing_if = "is_false")]
        fence: bool,
    },
    /// A transactional id unused for `idle_ms` is forgotten (Kafka's
    /// `transactional.id.expiration.ms`), unless its transaction is open or
    /// it was used since (`last_update`).
    ForgetTxn {
        id: String,
        last_update: i64,
        idle_ms: i64,
        time: i64,
    },
}

impl Command {
    /// The transactional id a transaction record is about.
    pub fn transactional_id(&self) -> Option<&str> {
        match self {
            Command::InitTxn { id, .. }
            | Command::AddTxnPartitions { id, .. }
            | Command::AddTxnGroup { id, .. }
            | Command::TxnOffsets { id, .. }
            | Command::EndTxn { id, .. }
            | Command::ForgetTxn { id, .. } => Some(id),
            _ => None,
        }
    }
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// One index entry as a compaction saw it (what it replaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRef {
    pub base_offset: i64,
    pub end_offset: i64,
    pub object: String,
    pub position: u64,
    pub length: u64,
}

/// One index entry a compaction writes, inside its new object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEntry {
    pub base_offset: i64,
    pub end_offset: i64,
    pub position: u64,
    pub length: u64,
    pub max_timestamp: i64,
    pub append_time: i64,
    /// When the cleaner first passed these records (ms), 0 if it never
    /// did; tombstones go `delete.retention.ms` after it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cleaned_at: i64,
    /// The cleaner left tombstones in these records.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tombstones: bool,
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// A consecutive stretch of one partition's index, rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactRun {
    pub topic: TopicId,
    pub partition: i32,
    pub replaces: Vec<EntryRef>,
    pub entries: Vec<NewEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub v: u32,
    #[serde(flatten)]
    pub command: Command,
}

impl LogRecord {
    pub fn new(command: Command) -> Self {
        Self {
            v: RECORD_VERSION,
            command,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("log records always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let r: LogRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("undecodable log record: {e}"))?;
        if r.v != RECORD_VERSION {
            return Err(format!("unsupported log record version {}", r.v));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails loudly when the log record format changes by accident.
    #[test]
    fn golden_json() {
        let r = LogRecord::new(Command::Commit {
            object: "segments/2026/01/02/x.silt".into(),
            size: 100,
            chunks: vec![ChunkRef {
                topic: TopicId([0xab; 16]),
                partition: 3,
                position: 8,
                length: 50,
                records: 7,
                max_timestamp: 1_700_000_000_000,
                append_time: 1_700_000_000_123,
                batches: vec![],
            }],
        });
        let json = String::from_utf8(r.encode()).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"op":"commit","object":"segments/2026/01/02/x.silt","size":100,"chunks":[{"topic":"abababababababababababababababab","partition":3,"position":8,"length":50,"records":7,"max_timestamp":1700000000000,"append_time":1700000000123}]}"#
        );
        assert_eq!(LogRecord::decode(json.as_bytes()).unwrap(), r);
        assert!(LogRecord::decode(b"{\"v\":2,\"op\":\"delete_topic\",\"name\":\"x\"}").is_err());
    }
}
