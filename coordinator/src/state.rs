//! The state machine: a pure, deterministic function of the commit log.
//!
//! No clocks, no randomness, no hash-map iteration: every agent applying the
//! same records in the same order reaches the same state and the same
//! offsets.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{
    records::{BatchRef, ChunkRef, Command, CompactRun, LogRecord, TopicId},
    topic_config::{TimestampType, TopicConfig},
};

mod txn;
pub use txn::{
    AbortedTxn, TxnEntry, TxnOutcome, TxnState, MAX_TXN_GROUPS, MAX_TXN_OFFSETS, MAX_TXN_PARTITIONS,
};

pub const CHECKPOINT_VERSION: u32 = 1;
/// Upper bound on partitions per topic accepted by the state machine.
pub const MAX_PARTITIONS: u32 = 10_000;

impl From<&IndexEntry> for crate::records::EntryRef {
    fn from(e: &IndexEntry) -> Self {
        Self {
            base_offset: e.base_offset,
            end_offset: e.end_offset,
            object: e.object.clone(),
            position: e.position,
            length: e.length,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub base_offset: i64,
    /// One past the last offset.
    pub end_offset: i64,
    pub object: String,
    pub position: u64,
    pub length: u64,
    pub max_timestamp: i64,
    #[serde(default)]
    pub append_time: i64,
    /// When the cleaner first passed this entry's records (ms), 0 if it
    /// never did.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cleaned_at: i64,
    /// The cleaner left tombstones in this entry's records (they expire
    /// `delete.retention.ms` after `cleaned_at`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub tombstones: bool,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// How many recent batches per producer are remembered for deduplication
/// (Kafka keeps five: the most a producer has in flight).
pub const PRODUCER_BATCHES_KEPT: usize = 5;

/// A producer that has not written a partition for this long (in log
/// time: the append times carried by commit records) is forgotten there,
/// as Kafka forgets it after `producer.id.expiration.ms` (one day).
pub const PRODUCER_EXPIRATION_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// (first sequence, last sequence, base offset) of recent batches.
    pub recent: VecDeque<(i32, i32, i64)>,
    /// Append time of its last batch in the partition.
    #[serde(default)]
    pub last_time: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Partition {
    pub(crate) log_start_offset: i64,
    pub(crate) high_watermark: i64,
    pub(crate) index: Vec<IndexEntry>,
    /// Idempotent-producer state: producer id -> recent batches.
    #[serde(default)]
    pub(crate) producers: BTreeMap<i64, ProducerEntry>,
    /// Compacted topics: the cleaner has seen every key before this offset
    /// (Kafka's cleaner checkpoint, the first dirty offset).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) clean_offset: i64,
    /// Tables: records before this offset are in table files.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) exported: i64,
    /// Open transactions with batches here: producer id -> offset of its
    /// first batch (the last stable offset is the smallest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) open_txns: BTreeMap<i64, i64>,
    /// Aborted transactions' ranges, in offset order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) aborted: Vec<AbortedTxn>,
}

/// The verdict on one batch of an idempotent chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Appended(i64),
    /// Already committed at this base offset (a retry).
    Duplicate(i64),
    OutOfOrder,
    /// The producer's epoch is older than one already seen.
    Fenced,
    /// A transactional batch whose producer has no open transaction
    /// holding the partition.
    InvalidTxnState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The topic-partition does not exist (any more).
    Rejected,
    Appended {
        base: i64,
    },
    PerBatch(Vec<BatchOutcome>),
}

impl Partition {
    /// Index entries holding `offset` and everything after it.
    pub(crate) fn entries_from(&self, offset: i64) -> &[IndexEntry] {
        let i = self.index.partition_point(|e| e.end_offset <= offset);
        &self.index[i..]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    name: String,
    id: TopicId,
    config: TopicConfig,
    partitions: Vec<Partition>,
}

impl Topic {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> TopicId {
        self.id
    }

    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    fn partition(&self, partition: i32) -> Option<&Partition> {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// A partition's position, copied out of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub topic_id: TopicId,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub timestamp_type: TimestampType,
    /// Index entries of the partition (records in `[log start, high watermark)`).
    pub index_entries: usize,
    /// The first offset of the oldest open transaction, else the high
    /// watermark: `read_committed` readers stop here.
    pub last_stable_offset: i64,
}

/// Where one run of a partition's records lives: an index entry with the
/// size of its object, which a ranged read needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLocation {
    pub entry: IndexEntry,
    pub object_size: u64,
    /// Where the run of this partition's bytes that starts with the entry
    /// ends in the object: later entries of the partition that follow it
    /// byte for byte in the same object (compacted objects lay a partition
    /// out contiguously). A sequential reader may read ahead up to here.
    pub run_end: u64,
}

/// How many following index entries `chunks_from` looks at to find where a
/// run of contiguous bytes of the partition ends (the read-ahead hint).
const RUN_SCAN: usize = 64;

/// Which index entry a timestamp query wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampQuery {
    /// The first entry holding a record at or after this timestamp.
    AtOrAfter(i64),
    /// The (first) entry holding the largest timestamp.
    Max,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectInfo {
    pub(crate) size: u64,
    /// Index entries that still point into the object.
    pub(crate) refs: u64,
    /// When the object was written (the commit's seal time or the
    /// compaction's time, ms).
    #[serde(default)]
    pub(crate) sealed: i64,
}

/// An object no index entry references any more: object GC deletes it once
/// `time` is older than the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Unreferenced {
    /// Revision of the record that released its last reference.
    pub revision: i64,
    /// Log time (ms) at that record: the writers' clocks as carried by
    /// records, never older than an earlier record's.
    pub time: i64,
    /// When the object was written (ms).
    pub sealed: i64,
}

impl<'de> Deserialize<'de> for Unreferenced {
    /// Also reads checkpoints that kept only the revision.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Revision(i64),
            Full {
                revision: i64,
                time: i64,
                sealed: i64,
            },
        }
        Ok(match Form::deserialize(d)? {
            Form::Revision(revision) => Unreferenced {
                revision,
                time: 0,
                sealed: 0,
            },
            Form::Full {
                revision,
                time,
                sealed,
            } => Unreferenced {
                revision,
                time,
                sealed,
            },
        })
    }
}

/// What applying one record decided; the writer reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    TopicCreated(TopicId),
    TopicExists(TopicId),
    TopicDeleted(TopicId),
    TopicNotFound,
    /// Per chunk of the commit.
    Committed(Vec<ChunkOutcome>),
    PartitionsCreated,
    ConfigSet,
    /// The partition's new log start offset.
    RecordsDeleted(i64),
    /// A commit of a segment object the index already knows: a repeated
    /// record, refused so that no retry can duplicate data.
    DuplicateObject,
    /// A commit sealed (or a compaction started) before the commit
    /// horizon: object GC may already have deleted its object, so it is
    /// refused (a produce fails with a retriable error and the client sends
    /// it again).
    StaleCommit,
    /// Per run of a compaction: whether it replaced its entries.
    Compacted(Vec<bool>),
    /// Whether a cleaner's run replaced its entries.
    Cleaned(bool),
    /// Whether a table export moved the partition's progress.
    Exported(bool),
    /// How many objects left the unreferenced set.
    Forgotten(usize),
    /// What a transaction record did.
    Txn(TxnOutcome),
    Invalid(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Revision of the last record applied.
    revision: i64,
    topics: BTreeMap<String, Topic>,
    topic_names: BTreeMap<TopicId, String>,
    objects: BTreeMap<String, ObjectInfo>,
    /// Objects no index entry references any more, with when they became
    /// unreferenced (input for object GC, which removes them once deleted).
    unreferenced: BTreeMap<String, Unreferenced>,
    /// The largest writer time carried by any record applied (ms).
    #[serde(default)]
    log_time: i64,
    /// Commits sealed before this time (ms) are refused (see
    /// `Command::ForgetObjects`).
    #[serde(default)]
    commit_horizon: i64,
    /// The latest seal time of an accepted commit (ms): the horizon never
    /// passes it, so a clock running ahead somewhere cannot refuse every
    /// commit.
    #[serde(default)]
    commit_seal: i64,
    /// Objects GC deleted, with their seal times, until the horizon passes
    /// those: a retried commit naming one is a duplicate.
    #[serde(default)]
    forgotten: BTreeMap<String, i64>,
    /// Records this build could not decode were skipped: the state may lack
    /// their effect (a newer writer's record), so it must not become a
    /// checkpoint.
    #[serde(default)]
    skipped: u64,
    /// Transactional ids and their transactions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    transactions: BTreeMap<String, TxnEntry>,
    /// Producer id -> the transactional id holding it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    txn_producers: BTreeMap<i64, String>,
    /// Revision of the last GC record that updated the `gc-horizon` key
    /// (its modification revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gc_key: Option<i64>,
    /// Transactional id -> revision of the last record naming it, accepted
    /// or not: the modification revision of its key in the metadata store,
    /// which every such record updates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    txn_keys: BTreeMap<String, i64>,
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    v: u32,
    state: State,
}

/// Totals over every partition, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub topics: usize,
    pub partitions: usize,
    /// Records between log start and high watermark, summed.
    pub records: i64,
}

impl State {
    /// Revision of the last record applied.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &TopicId) -> Option<&Topic> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    /// Every topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            topics: self.topics.len(),
            ..Default::default()
        };
        for p in self.topics.values().flat_map(|t| t.partitions.iter()) {
            t.partitions += 1;
            t.records += p.high_watermark - p.log_start_offset;
        }
        t
    }

    /// A partition's position, or `None` if the topic or partition does
    /// not exist.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionSnapshot> {
        let t = self.topics.get(topic)?;
        let p = t.partition(partition)?;
        Some(PartitionSnapshot {
            topic_id: t.id,
            log_start_offset: p.log_start_offset,
            high_watermark: p.high_watermark,
            timestamp_type: t.config.timestamp_type,
            index_entries: p.index.len(),
            last_stable_offset: p.last_stable_offset(),
        })
    }

    /// The bytes a partition's index points at (its records in object
    /// storage), or `None` if the topic or partition does not exist.
    pub fn partition_bytes(&self, topic: &str, partition: i32) -> Option<u64> {
        let p = self.topics.get(topic)?.partition(partition)?;
        Some(p.index.iter().map(|e| e.length).sum())
    }

    /// The idempotent producers a partition remembers, by producer id.
    pub fn producers(&self, topic: &str, partition: i32) -> Option<Vec<(i64, ProducerEntry)>> {
        let p = self.topics.get(topic)?.partition(partition)?;
        Some(p.producers.iter().map(|(id, e)| (*id, e.clone())).collect())
    }

    /// A compacted partition's clean offset: the cleaner has seen every key
    /// before it.
    pub fn clean_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let p = self.topics.get(topic)?.partition(partition)?;
        Some(p.clean_offset)
    }

    /// Where a partition's table export stands: records before this offset
    /// are in table files.
    pub fn exported(&self, topic: &str, partition: i32) -> Option<i64> {
        let p = self.topics.get(topic)?.partition(partition)?;
        Some(p.exported)
    }

    /// Up to `max` index entries of a partition, from the one holding
    /// `offset` on.
    pub fn chunks_from(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max: usize,
    ) -> Vec<ChunkLocation> {
        let Some(p) = self.topics.get(topic).and_then(|t| t.partition(partition)) else {
            return Vec::new();
        };
        let entries = p.entries_from(offset);
        let mut out: Vec<ChunkLocation> =
            entries.iter().take(max).map(|e| self.locate(e)).collect();
        // Run ends, from the back: an entry's run continues into the next
        // entry when that one starts where it ends in the same object.
        let scan = &entries[..(out.len() + RUN_SCAN).min(entries.len())];
        let mut run_end = 0;
        for (i, e) in scan.iter().enumerate().rev() {
            let end = e.position + e.length;
            run_end = match scan.get(i + 1) {
                Some(n) if n.object == e.object && n.position == end => run_end,
                _ => end,
            };
            if let Some(c) = out.get_mut(i) {
                c.run_end = run_end;
            }
        }
        out
    }

    /// A partition's index entries (records in `[log start, high
    /// watermark)` and possibly some before the log start in the first).
    pub fn index(&self, topic: &str, partition: i32) -> Option<&[IndexEntry]> {
        let p = self.topics.get(topic)?.partition(partition)?;
        Some(p.entries_from(p.log_start_offset))
    }

    /// Size of a referenced object.
    pub fn object_size(&self, object: &str) -> Option<u64> {
        self.objects.get(object).map(|o| o.size)
    }

    /// Whether the state knows the object: referenced, unreferenced and
    /// not yet deleted, or deleted recently.
    pub fn knows_object(&self, object: &str) -> bool {
        self.objects.contains_key(object)
            || self.unreferenced.contains_key(object)
            || self.forgotten.contains_key(object)
    }

    /// Records skipped because this build could not decode them (a newer
    /// writer's): such a state must not be checkpointed.
    pub fn skipped_records(&self) -> u64 {
        self.skipped
    }

    /// Unreferenced objects whose grace period has passed at `now` (ms):
    /// what object GC deletes.
    pub fn due_for_deletion(&self, now: i64, grace_ms: i64) -> impl Iterator<Item = &str> {
        self.unreferenced
            .iter()
            .filter(move |(_, u)| u.time <= now.saturating_sub(grace_ms))
            .map(|(k, _)| k.as_str())
    }

    /// Moves log time forward (never back). Objects marked before any
    /// record carried a time (a checkpoint of an older format) take the
    /// first time one carries, so their grace period starts then.
    fn advance_log_time(&mut self, t: i64) {
        if t <= self.log_time {
            return;
        }
        if self.log_time == 0 {
            for u in self.unreferenced.values_mut().filter(|u| u.time == 0) {
                u.time = t;
            }
        }
        self.log_time = t;
    }

    /// Referenced objects.
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// Commits sealed before this time (ms) are refused.
    pub fn commit_horizon(&self) -> i64 {
        self.commit_horizon
    }

    /// Up to `max` index entries a timestamp query must look into, among the
    /// partition's live entries, in offset order: those whose max timestamp
    /// reaches the target, or those holding the largest timestamp. An
    /// entry's max timestamp is its chunk's, so a chunk split by a rejected
    /// batch yields entries that claim more than they hold: the caller reads
    /// them in turn until a record matches.
    pub fn chunks_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        query: TimestampQuery,
        max: usize,
    ) -> Vec<ChunkLocation> {
        let Some(p) = self.topics.get(topic).and_then(|t| t.partition(partition)) else {
            return Vec::new();
        };
        let live = p.entries_from(p.log_start_offset);
        let wanted: Box<dyn Fn(&IndexEntry) -> bool> = match query {
            TimestampQuery::AtOrAfter(ts) => Box::new(move |e| e.max_timestamp >= ts),
            TimestampQuery::Max => {
                let Some(best) = live.iter().map(|e| e.max_timestamp).max() else {
                    return Vec::new();
                };
                Box::new(move |e| e.max_timestamp == best)
            }
        };
        live.iter()
            .filter(|e| wanted(e))
            .take(max)
            .map(|e| self.locate(e))
            .collect()
    }

    fn locate(&self, e: &IndexEntry) -> ChunkLocation {
        ChunkLocation {
            entry: e.clone(),
            object_size: self.objects.get(&e.object).map_or(0, |o| o.size),
            run_end: e.position + e.length,
        }
    }

    /// Objects no index entry references any more, with when they became
    /// unreferenced.
    pub fn unreferenced(&self) -> impl Iterator<Item = (&str, Unreferenced)> {
        self.unreferenced.iter().map(|(k, r)| (k.as_str(), *r))
    }

    /// The revision of the last GC record that updated the `gc-horizon`
    /// key, if any did.
    pub fn gc_key_revision(&self) -> Option<i64> {
        self.gc_key
    }

    /// Index entries pointing into `object` (0 if it is not referenced).
    pub fn object_refs(&self, object: &str) -> u64 {
        self.objects.get(object).map_or(0, |o| o.refs)
    }

    /// Applies raw record bytes found at `revision`; returns the outcome
    /// and the decoded command.
    pub fn apply_bytes(&mut self, revision: i64, bytes: &[u8]) -> (Outcome, Option<Command>) {
        match LogRecord::decode(bytes) {
            Ok(r) => (self.apply(revision, &r.command), Some(r.command)),
            Err(e) => {
                self.revision = revision;
                self.skipped += 1;
                (Outcome::Invalid(e), None)
            }
        }
    }

    pub fn apply(&mut self, revision: i64, command: &Command) -> Outcome {
        debug_assert!(revision > self.revision, "records apply in revision order");
        self.revision = revision;
        if let Some(id) = command.transactional_id() {
            self.txn_keys.insert(id.to_string(), revision);
        }
        match command {
            Command::CreateTopic {
                name,
                id,
                partitions,
                config,
            } => {
                if let Some(t) = self.topics.get(name) {
                    return Outcome::TopicExists(t.id);
                }
                if *partitions == 0 || *partitions > MAX_PARTITIONS {
                    return Outcome::Invalid(format!("topic {name}: {partitions} partitions"));
                }
                if self.topic_names.contains_key(id) {
                    return Outcome::Invalid(format!("topic id {id} already in use"));
                }
                self.topics.insert(
                    name.clone(),
                    Topic {
                        name: name.clone(),
                        id: *id,
                        config: TopicConfig::from_overrides(config.clone()),
                        partitions: vec![Partition::default(); *partitions as usize],
                    },
                );
                self.topic_names.insert(*id, name.clone());
                Outcome::TopicCreated(*id)
            }
            Command::DeleteTopic { name, time } => {
                let Some(topic) = self.topics.remove(name) else {
                    return Outcome::TopicNotFound;
                };
                self.advance_log_time(*time);
                self.topic_names.remove(&topic.id);
                for p in &topic.partitions {
                    for e in &p.index {
                        self.release(&e.object, revision);
                    }
                }
                Outcome::TopicDeleted(topic.id)
            }
            Command::CreatePartitions { name, partitions } => {
                let Some(t) = self.topics.get_mut(name) else {
                    return Outcome::TopicNotFound;
                };
                let n = *partitions as usize;
                if n <= t.partitions.len() || *partitions > MAX_PARTITIONS {
                    return Outcome::Invalid(format!(
                        "topic {name} has {} partitions; cannot grow to {partitions}",
                        t.partitions.len()
                    ));
                }
                t.partitions.resize(n, Partition::default());
                Outcome::PartitionsCreated
            }
            Command::SetTopicConfig { name, config } => {
                let Some(t) = self.topics.get_mut(name) else {
                    return Outcome::TopicNotFound;
                };
                t.config = TopicConfig::from_overrides(config.clone());
                Outcome::ConfigSet
            }
            Command::DeleteRecords {
                name,
                partition,
                offset,
                topic_id,
                time,
            } => {
                let Some(p) = self
                    .topics
                    .get_mut(name)
                    .filter(|t| topic_id.is_none_or(|id| id == t.id))
                    .and_then(|t| {
                        usize::try_from(*partition)
                            .ok()
                            .and_then(|i| t.partitions.get_mut(i))
                    })
                else {
                    return Outcome::TopicNotFound;
                };
                if *offset < 0 || *offset > p.high_watermark {
                    return Outcome::Invalid(format!(
                        "offset {offset} is outside 0..={} of {name}-{partition}",
                        p.high_watermark
                    ));
                }
                p.log_start_offset = p.log_start_offset.max(*offset);
                let start = p.log_start_offset;
                let keep = p.index.partition_point(|e| e.end_offset <= start);
                let dropped: Vec<IndexEntry> = p.index.drain(..keep).collect();
                p.prune_aborted();
                self.advance_log_time(*time);
                for e in dropped {
                    self.release(&e.object, revision);
                }
                Outcome::RecordsDeleted(start)
            }
            Command::Commit {
                object,
                size,
                chunks,
            } => {
                if self.knows_object(object) {
                    return Outcome::DuplicateObject;
                }
                let sealed = chunks.iter().map(|c| c.append_time).max().unwrap_or(0);
                if sealed < self.commit_horizon {
                    return Outcome::StaleCommit;
                }
                self.advance_log_time(sealed);
                self.commit_seal = self.commit_seal.max(sealed);
                let mut out = Vec::with_capacity(chunks.len());
                let mut refs = 0;
                let txns = (&self.transactions, &self.txn_producers);
                for c in chunks {
                    let in_bounds = c.position.checked_add(c.length).is_some_and(|e| e <= *size);
                    let part = self
                        .topic_names
                        .get(&c.topic)
                        .and_then(|n| self.topics.get_mut(n))
                        .and_then(|t| {
                            usize::try_from(c.partition)
                                .ok()
                                .and_then(|i| t.partitions.get_mut(i))
                        });
                    match part {
                        Some(p) if in_bounds && c.records > 0 && c.records < i32::MAX as u64 => {
                            let (outcome, entries) = append_chunk_txn(p, object, c, Some(txns));
                            refs += entries;
                            out.push(outcome);
                        }
                        _ => out.push(ChunkOutcome::Rejected),
                    }
                }
                self.add_refs(object, *size, sealed, refs, revision);
                Outcome::Committed(out)
            }
            Command::Compact {
                object,
                size,
                time,
                at,
                runs,
            } => {
                if self.knows_object(object) {
                    return Outcome::DuplicateObject;
                }
                // `time` is taken before the object is uploaded: one older
                // than the horizon may have been deleted as an orphan.
                if *time < self.commit_horizon {
                    return Outcome::StaleCommit;
                }
                // The entries it replaces leave the index now: their grace
                // period starts at the time of the proposal.
                self.advance_log_time((*time).max(*at));
                let mut applied = Vec::with_capacity(runs.len());
                let mut refs = 0;
                for run in runs {
                    let ok = self.swap_run(object, *size, run, revision, true);
                    if ok {
                        refs += run.entries.len() as u64;
                    }
                    applied.push(ok);
                }
                self.add_refs(object, *size, *time, refs, revision);
                Outcome::Compacted(applied)
            }
            Command::Clean {
                object,
                size,
                time,
                at,
                run,
                clean_to,
            } => {
                if self.knows_object(object) {
                    return Outcome::DuplicateObject;
                }
                if *time < self.commit_horizon {
                    return Outcome::StaleCommit;
                }
                self.advance_log_time((*time).max(*at));
                let ok = self.swap_run(object, *size, run, revision, false);
                if ok && *clean_to > 0 {
                    if let Some(p) = self.partition_mut(run.topic, run.partition) {
                        p.clean_offset = p.clean_offset.max(*clean_to);
                    }
                }
                self.add_refs(
                    object,
                    *size,
                    *time,
                    if ok { run.entries.len() as u64 } else { 0 },
                    revision,
                );
                Outcome::Cleaned(ok)
            }
            Command::TableExported {
                topic,
                partition,
                from,
                to,
            } => {
                let Some(p) = self.partition_mut(*topic, *partition) else {
                    return Outcome::Exported(false);
                };
                let ok = p.exported == *from && *from < *to && *to <= p.high_watermark;
                if ok {
                    p.exported = *to;
                }
                Outcome::Exported(ok)
            }
            Command::ForgetObjects {
                time,
                horizon,
                objects,
                horizon_key,
            } => {
                if *horizon_key {
                    self.gc_key = Some(revision);
                }
                self.advance_log_time(*time);
                // Never past the newest accepted commit: a clock ahead
                // somewhere must not refuse every commit.
                self.commit_horizon = self.commit_horizon.max((*horizon).min(self.commit_seal));
                let mut n = 0;
                for o in objects {
                    if let Some(u) = self.unreferenced.remove(o) {
                        // A retried commit of a deleted object must never
                        // be accepted: it is a duplicate while its seal
                        // time is at or past the horizon, stale after.
                        self.forgotten.insert(o.clone(), u.sealed);
                        n += 1;
                    }
                }
                let horizon = self.commit_horizon;
                self.forgotten.retain(|_, sealed| *sealed >= horizon);
                Outcome::Forgotten(n)
            }
            Command::InitTxn {
                id,
                producer_id,
                epoch,
                timeout_ms,
                time,
            } => {
                self.advance_log_time(*time);
                Outcome::Txn(self.init_txn(revision, id, *producer_id, *epoch, *timeout_ms, *time))
            }
            Command::AddTxnPartitions {
                id,
                producer_id,
                epoch,
                partitions,
                time,
            } => {
                self.advance_log_time(*time);
                Outcome::Txn(self.add_txn_partitions(
                    revision,
                    id,
                    *producer_id,
                    *epoch,
                    partitions,
                    *time,
                ))
            }
            Command::AddTxnGroup {
                id,
                producer_id,
                epoch,
                group,
                time,
            } => {
                self.advance_log_time(*time);
                Outcome::Txn(self.add_txn_group(revision, id, *producer_id, *epoch, group, *time))
            }
            Command::TxnOffsets {
                id,
                producer_id,
                epoch,
                group,
                offsets,
                time,
            } => {
                self.advance_log_time(*time);
                Outcome::Txn(self.txn_offsets(
                    revision,
                    id,
                    *producer_id,
                    *epoch,
                    group,
                    offsets,
                    *time,
                ))
            }
            Command::ForgetTxn {
                id,
                last_update,
                idle_ms,
                time,
            } => {
                self.advance_log_time(*time);
                Outcome::Txn(self.forget_txn(id, *last_update, *idle_ms, *time))
            }
            Command::EndTxn {
                id,
                producer_id,
                epoch,
                commit,
                object,
                size,
                markers,
                time,
                fence,
            } => {
                if self.knows_object(object) {
                    return Outcome::DuplicateObject;
                }
                if *time < self.commit_horizon {
                    return Outcome::StaleCommit;
                }
                self.advance_log_time(*time);
                self.commit_seal = self.commit_seal.max(*time);
                let (outcome, refs) = self.end_txn(
                    revision,
                    id,
                    *producer_id,
                    *epoch,
                    *commit,
                    object,
                    *size,
                    markers,
                    *time,
                    *fence,
                );
                if refs > 0 {
                    self.add_refs(object, *size, *time, refs, revision);
                }
                Outcome::Txn(outcome)
            }
        }
    }

    /// Records `refs` new index entries pointing into `object`; an object
    /// nothing references goes straight to the unreferenced set.
    fn add_refs(&mut self, object: &str, size: u64, sealed: i64, refs: u64, revision: i64) {
        if refs > 0 {
            self.objects
                .entry(object.to_string())
                .or_insert(ObjectInfo {
                    size,
                    refs: 0,
                    sealed,
                })
                .refs += refs;
        } else {
            self.unreferenced.insert(
                object.to_string(),
                Unreferenced {
                    revision,
                    time: self.log_time,
                    sealed,
                },
            );
        }
    }

    fn partition_mut(&mut self, topic: TopicId, partition: i32) -> Option<&mut Partition> {
        self.topic_names
            .get(&topic)
            .and_then(|n| self.topics.get_mut(n))
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
            })
    }

    /// Replaces a run's entries if they are still exactly in the index and
    /// the new entries hold exactly their offsets (and, with `same_bytes`,
    /// their byte count: the cleaner removes records, compaction does not).
    fn swap_run(
        &mut self,
        object: &str,
        size: u64,
        run: &CompactRun,
        revision: i64,
        same_bytes: bool,
    ) -> bool {
        let Some(p) = self.partition_mut(run.topic, run.partition) else {
            return false;
        };
        let (Some(first), Some(last)) = (run.replaces.first(), run.replaces.last()) else {
            return false;
        };
        let at = p
            .index
            .partition_point(|e| e.base_offset < first.base_offset);
        let Some(current) = p.index.get(at..at + run.replaces.len()) else {
            return false;
        };
        let same = current.iter().zip(&run.replaces).all(|(e, r)| {
            e.base_offset == r.base_offset
                && e.end_offset == r.end_offset
                && e.object == r.object
                && e.position == r.position
                && e.length == r.length
        });
        if !same {
            return false;
        }
        // The new entries tile the same offsets with the same byte count,
        // inside the new object.
        let mut next = first.base_offset;
        for e in &run.entries {
            let in_bounds = e.position.checked_add(e.length).is_some_and(|x| x <= size);
            if e.base_offset != next || e.end_offset <= e.base_offset || !in_bounds {
                return false;
            }
            next = e.end_offset;
        }
        let old_bytes: u64 = run.replaces.iter().map(|r| r.length).sum();
        let new_bytes: u64 = run.entries.iter().map(|e| e.length).sum();
        if next != last.end_offset || (same_bytes && old_bytes != new_bytes) {
            return false;
        }
        let new = run.entries.iter().map(|e| IndexEntry {
            base_offset: e.base_offset,
            end_offset: e.end_offset,
            object: object.to_string(),
            position: e.position,
            length: e.length,
            max_timestamp: e.max_timestamp,
            append_time: e.append_time,
            cleaned_at: e.cleaned_at,
            tombstones: e.tombstones,
        });
        let old: Vec<IndexEntry> = p.index.splice(at..at + run.replaces.len(), new).collect();
        for e in old {
            self.release(&e.object, revision);
        }
        true
    }

    fn release(&mut self, object: &str, revision: i64) {
        if let Some(o) = self.objects.get_mut(object) {
            o.refs -= 1;
            if o.refs == 0 {
                let sealed = o.sealed;
                self.objects.remove(object);
                self.unreferenced.insert(
                    object.to_string(),
                    Unreferenced {
                        revision,
                        time: self.log_time,
                        sealed,
                    },
                );
            }
        }
    }

    pub fn to_checkpoint(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Ref<'a> {
            v: u32,
            state: &'a State,
        }
        serde_json::to_vec(&Ref {
            v: CHECKPOINT_VERSION,
            state: self,
        })
        .expect("state always serializes")
    }

    pub fn from_checkpoint(bytes: &[u8]) -> Result<Self, String> {
        let c: Checkpoint =
            serde_json::from_slice(bytes).map_err(|e| format!("undecodable checkpoint: {e}"))?;
        if c.v != CHECKPOINT_VERSION {
            return Err(format!("unsupported checkpoint version {}", c.v));
        }
        Ok(c.state)
    }
}

/// Appends a chunk to a partition; returns the outcome and how many index
/// entries now point into the object.
fn append_chunk(p: &mut Partition, object: &str, c: &ChunkRef) -> (ChunkOutcome, u64) {
    append_chunk_txn(p, object, c, None)
}

/// The transactions a commit's transactional batches are checked against.
type TxnView<'a> = (&'a BTreeMap<String, TxnEntry>, &'a BTreeMap<i64, String>);

/// [`append_chunk`], with transactional batches checked against `txns`
/// (without it, a transactional batch is refused).
fn append_chunk_txn(
    p: &mut Partition,
    object: &str,
    c: &ChunkRef,
    txns: Option<TxnView<'_>>,
) -> (ChunkOutcome, u64) {
    let entry = |base: i64, end: i64, position: u64, length: u64| IndexEntry {
        base_offset: base,
        end_offset: end,
        object: object.to_string(),
        position,
        length,
        max_timestamp: c.max_timestamp,
        append_time: c.append_time,
        cleaned_at: 0,
        tombstones: false,
    };
    // Forget producers idle past the expiration, by the log's own clock.
    p.producers
        .retain(|_, e| e.last_time.saturating_add(PRODUCER_EXPIRATION_MS) >= c.append_time);
    let batch_total: u64 = c.batches.iter().map(|b| b.size as u64).sum();
    if c.batches.is_empty() || batch_total != c.length {
        let base = p.high_watermark;
        let end = base + c.records as i64;
        let e = entry(base, end, c.position, c.length);
        p.high_watermark = end;
        p.index.push(e);
        return (ChunkOutcome::Appended { base }, 1);
    }
    // Batch by batch: runs of accepted batches become index entries.
    let mut outcomes = Vec::with_capacity(c.batches.len());
    let mut entries = 0;
    let mut run: Option<(i64, u64, u64)> = None; // (base offset, position, length)
    let mut position = c.position;
    let empty = (&BTreeMap::new(), &BTreeMap::new());
    for b in &c.batches {
        let (transactions, producers) = txns.unwrap_or(empty);
        let verdict = txn::check_transactional(transactions, producers, txn::at(c), b)
            .and_then(|()| check_sequence(p, b));
        match verdict {
            Ok(()) => {
                let base = p.high_watermark;
                p.high_watermark += b.records as i64;
                txn::note_open(p, b, base);
                if b.producer_id >= 0 {
                    let e = p.producers.entry(b.producer_id).or_default();
                    if e.epoch != b.epoch {
                        e.epoch = b.epoch;
                        e.recent.clear();
                    }
                    let last = increment_sequence(b.sequence, b.records as i32 - 1);
                    e.last_time = e.last_time.max(c.append_time);
                    e.recent.push_back((b.sequence, last, base));
                    while e.recent.len() > PRODUCER_BATCHES_KEPT {
                        e.recent.pop_front();
                    }
                }
                run = Some(match run {
                    Some((rb, rp, rl)) => (rb, rp, rl + b.size as u64),
                    None => (base, position, b.size as u64),
                });
                outcomes.push(BatchOutcome::Appended(base));
            }
            Err(o) => {
                if let Some((rb, rp, rl)) = run.take() {
                    let e = entry(rb, p.high_watermark, rp, rl);
                    p.index.push(e);
                    entries += 1;
                }
                outcomes.push(o);
            }
        }
        position += b.size as u64;
    }
    if let Some((rb, rp, rl)) = run {
        let e = entry(rb, p.high_watermark, rp, rl);
        p.index.push(e);
        entries += 1;
    }
    (ChunkOutcome::PerBatch(outcomes), entries)
}

/// `sequence + increment`, wrapping past i32::MAX to 0 (Kafka's
/// `DefaultRecordBatch.incrementSequence`).
fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Kafka's idempotence rules, per partition and producer id.
fn check_sequence(p: &Partition, b: &BatchRef) -> Result<(), BatchOutcome> {
    if b.producer_id < 0 || b.sequence < 0 {
        return Ok(());
    }
    let Some(e) = p.producers.get(&b.producer_id) else {
        return Ok(());
    };
    if b.epoch < e.epoch {
        return Err(BatchOutcome::Fenced);
    }
    if b.epoch > e.epoch {
        return if b.sequence == 0 {
            Ok(())
        } else {
            Err(BatchOutcome::OutOfOrder)
        };
    }
    let last = increment_sequence(b.sequence, b.records as i32 - 1);
    if let Some((_, _, base)) = e
        .recent
        .iter()
        .find(|(f, l, _)| *f == b.sequence && *l == last)
    {
        return Err(BatchOutcome::Duplicate(*base));
    }
    match e.recent.back() {
        Some((_, prev_last, _)) if b.sequence == increment_sequence(*prev_last, 1) => Ok(()),
        None => Ok(()),
        _ => Err(BatchOutcome::OutOfOrder),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ChunkRef, NewEntry};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn create(name: &str, id: u8, partitions: u32) -> Command {
        Command::CreateTopic {
            name: name.into(),
            id: TopicId([id; 16]),
            partitions,
            config: Default::default(),
        }
    }

    fn commit(object: &str, chunks: &[(u8, i32, u64)]) -> Command {
        Command::Commit {
            object: object.into(),
            size: 1000,
            chunks: chunks
                .iter()
                .enumerate()
                .map(|(i, (t, p, n))| ChunkRef {
                    topic: TopicId([*t; 16]),
                    partition: *p,
                    position: 8 + i as u64 * 10,
                    length: 10,
                    records: *n,
                    max_timestamp: 5,
                    append_time: 0,
                    batches: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn assigns_dense_offsets_first_writer_wins() {
        let mut s = State::default();
        assert_eq!(
            s.apply(1, &create("a", 1, 2)),
            Outcome::TopicCreated(TopicId([1; 16]))
        );
        assert_eq!(
            s.apply(2, &create("a", 2, 5)),
            Outcome::TopicExists(TopicId([1; 16]))
        );
        assert_eq!(
            s.apply(
                3,
                &commit("o1", &[(1, 0, 3), (1, 1, 2), (9, 0, 1), (1, 7, 1)])
            ),
            Outcome::Committed(vec![
                ChunkOutcome::Appended { base: 0 },
                ChunkOutcome::Appended { base: 0 },
                ChunkOutcome::Rejected,
                ChunkOutcome::Rejected
            ])
        );
        assert_eq!(
            s.apply(4, &commit("o2", &[(1, 0, 4)])),
            Outcome::Committed(vec![ChunkOutcome::Appended { base: 3 }])
        );
        let p = &s.topics["a"].partitions[0];
        assert_eq!(p.high_watermark, 7);
        assert_eq!(p.entries_from(3)[0].object, "o2");
        assert_eq!(p.entries_from(2)[0].object, "o1");
        assert_eq!(s.objects["o1"].refs, 2);
        assert_eq!(
            s.apply(
                5,
                &Command::DeleteTopic {
                    name: "a".into(),
                    time: 0
                }
            ),
            Outcome::TopicDeleted(TopicId([1; 16]))
        );
        assert!(s.objects.is_empty());
        assert_eq!(s.unreferenced.len(), 2);
        assert_eq!(
            s.apply(6, &create("a", 1, 0)),
            Outcome::Invalid("topic a: 0 partitions".into())
        );
    }

    fn idem(object: &str, batches: &[(i64, i16, i32, u32)]) -> Command {
        Command::Commit {
            object: object.into(),
            size: 1000,
            chunks: vec![ChunkRef {
                topic: TopicId([1; 16]),
                partition: 0,
                position: 8,
                length: 10 * batches.len() as u64,
                records: batches.iter().map(|b| b.3 as u64).sum(),
                max_timestamp: 0,
                append_time: 0,
                batches: batches
                    .iter()
                    .map(|(pid, epoch, seq, n)| BatchRef {
                        records: *n,
                        size: 10,
                        producer_id: *pid,
                        epoch: *epoch,
                        sequence: *seq,
                        transactional: false,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn idempotent_batches_commit_once() {
        use BatchOutcome::*;
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        let per = |o: Outcome| match o {
            Outcome::Committed(mut v) => match v.remove(0) {
                ChunkOutcome::PerBatch(b) => b,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(
            per(s.apply(2, &idem("o1", &[(7, 0, 0, 3), (7, 0, 3, 2)]))),
            vec![Appended(0), Appended(3)]
        );
        // A retry of both, then the next batch, in one chunk.
        assert_eq!(
            per(s.apply(3, &idem("o2", &[(7, 0, 0, 3), (7, 0, 3, 2), (7, 0, 5, 1)]))),
            vec![Duplicate(0), Duplicate(3), Appended(5)]
        );
        // A gap, a stale epoch, a new epoch starting at 0, a plain batch.
        assert_eq!(
            per(s.apply(
                4,
                &idem(
                    "o3",
                    &[(7, 0, 9, 1), (7, 1, 0, 2), (7, 0, 6, 1), (-1, -1, -1, 4)]
                )
            )),
            vec![OutOfOrder, Appended(6), Fenced, Appended(8)]
        );
        let p = &s.topics["a"].partitions[0];
        assert_eq!(p.high_watermark, 12);
        // Index entries tile the offsets and skip the rejected batches' bytes.
        let tiles: Vec<_> = p
            .index
            .iter()
            .map(|e| (e.base_offset, e.end_offset, e.position, e.length))
            .collect();
        assert_eq!(
            tiles,
            vec![
                (0, 5, 8, 20),
                (5, 6, 28, 10),
                (6, 8, 18, 10),
                (8, 12, 38, 10)
            ]
        );
    }

    /// A batch whose sequences run past i32::MAX wraps to 0, as Kafka's
    /// `incrementSequence` does; the next batch continues from there.
    #[test]
    fn idempotent_sequences_wrap_at_i32_max() {
        use BatchOutcome::*;
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        let per = |o: Outcome| match o {
            Outcome::Committed(mut v) => match v.remove(0) {
                ChunkOutcome::PerBatch(b) => b,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let max = i32::MAX;
        assert_eq!(
            per(s.apply(2, &idem("o1", &[(7, 0, max - 5, 5)]))),
            vec![Appended(0)]
        );
        // max, 0, 1
        assert_eq!(
            per(s.apply(3, &idem("o2", &[(7, 0, max, 3)]))),
            vec![Appended(5)]
        );
        assert_eq!(
            per(s.apply(4, &idem("o3", &[(7, 0, 2, 1), (7, 0, max, 3)]))),
            vec![Appended(8), Duplicate(5)]
        );
        assert_eq!(
            per(s.apply(5, &idem("o4", &[(7, 0, 4, 1)]))),
            vec![OutOfOrder]
        );
        assert_eq!(increment_sequence(max, 1), 0);
        assert_eq!(increment_sequence(max - 1, 3), 1);
        assert_eq!(increment_sequence(5, 3), 8);
    }

    /// Producer state is forgotten after a day without writes, measured by
    /// the append times in the log, so it cannot grow forever.
    #[test]
    fn idle_producers_expire_by_log_time() {
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        let at = |object: &str, pid: i64, seq: i32, time: i64| {
            let mut c = idem(object, &[(pid, 0, seq, 1)]);
            if let Command::Commit { chunks, .. } = &mut c {
                chunks[0].append_time = time;
            }
            c
        };
        let day = PRODUCER_EXPIRATION_MS;
        s.apply(2, &at("o1", 1, 0, 1_000));
        s.apply(3, &at("o2", 2, 0, 1_000 + day / 2));
        let producers = |s: &State| {
            s.topics["a"].partitions[0]
                .producers
                .keys()
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(producers(&s), vec![1, 2]);
        // A day after producer 1's last write, it is forgotten; producer 2
        // wrote within the day and stays.
        s.apply(4, &at("o3", 3, 0, 1_000 + day + 1));
        assert_eq!(producers(&s), vec![2, 3]);
        // The same records give the same state whatever the replay.
        let replayed = State::from_checkpoint(&s.to_checkpoint()).unwrap();
        assert_eq!(replayed, s);
    }

    #[test]
    fn a_segment_object_is_committed_once() {
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        s.apply(2, &commit("o1", &[(1, 0, 5)]));
        assert_eq!(
            s.apply(3, &commit("o1", &[(1, 0, 5)])),
            Outcome::DuplicateObject
        );
        // Also once nothing references it any more.
        s.apply(4, &commit("o2", &[(9, 0, 5)]));
        assert_eq!(
            s.apply(5, &commit("o2", &[(1, 0, 5)])),
            Outcome::DuplicateObject
        );
        assert_eq!(s.partition("a", 0).unwrap().high_watermark, 5);
        assert_eq!(s.revision(), 5);
    }

    #[test]
    fn delete_records_and_grow_partitions() {
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        s.apply(2, &commit("o1", &[(1, 0, 5)]));
        s.apply(3, &commit("o2", &[(1, 0, 5)]));
        assert_eq!(
            s.apply(
                4,
                &Command::DeleteRecords {
                    name: "a".into(),
                    partition: 0,
                    offset: 7,
                    topic_id: None,
                    time: 0,
                }
            ),
            Outcome::RecordsDeleted(7)
        );
        let p = &s.topics["a"].partitions[0];
        assert_eq!((p.log_start_offset, p.index.len()), (7, 1));
        assert!(s.unreferenced.contains_key("o1"));
        assert!(matches!(
            s.apply(
                5,
                &Command::DeleteRecords {
                    name: "a".into(),
                    partition: 0,
                    offset: 11,
                    topic_id: None,
                    time: 0,
                }
            ),
            Outcome::Invalid(_)
        ));
        assert_eq!(
            s.apply(
                6,
                &Command::CreatePartitions {
                    name: "a".into(),
                    partitions: 3
                }
            ),
            Outcome::PartitionsCreated
        );
        assert_eq!(s.topics["a"].partitions.len(), 3);
        assert!(matches!(
            s.apply(
                7,
                &Command::CreatePartitions {
                    name: "a".into(),
                    partitions: 2
                }
            ),
            Outcome::Invalid(_)
        ));
    }

    /// A compaction run replacing `n` entries of `t`-0 from the `i`-th,
    /// as one entry at position 0 of its object.
    fn compact_from(s: &State, object: &str, time: i64, i: usize, n: usize) -> Option<Command> {
        let t = s.topics.get("a")?;
        let p = &t.partitions[0];
        let old = p.index.get(i..i + n)?;
        let length = old.iter().map(|e| e.length).sum();
        Some(Command::Compact {
            object: object.into(),
            size: length + 100,
            time,
            at: time,
            runs: vec![CompactRun {
                topic: t.id,
                partition: 0,
                replaces: old.iter().map(crate::records::EntryRef::from).collect(),
                entries: vec![crate::records::NewEntry {
                    base_offset: old[0].base_offset,
                    end_offset: old[n - 1].end_offset,
                    position: 8,
                    length,
                    max_timestamp: old.iter().map(|e| e.max_timestamp).max().unwrap(),
                    append_time: old.iter().map(|e| e.append_time).max().unwrap(),
                    cleaned_at: 0,
                    tombstones: false,
                }],
            }],
        })
    }

    fn commit_at(object: &str, records: u64, time: i64) -> Command {
        let mut c = commit(object, &[(1, 0, records)]);
        if let Command::Commit { chunks, .. } = &mut c {
            chunks[0].append_time = time;
        }
        c
    }

    #[test]
    fn table_progress_moves_once_per_range() {
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        s.apply(2, &commit_at("o1", 10, 100));
        let id = s.topics["a"].id;
        let exported = |from, to| Command::TableExported {
            topic: id,
            partition: 0,
            from,
            to,
        };
        assert_eq!(s.apply(3, &exported(0, 6)), Outcome::Exported(true));
        assert_eq!(s.exported("a", 0), Some(6));
        // A repeated or racing export of the same range, a gap, a range
        // beyond the high watermark or an empty one changes nothing.
        for (i, (from, to)) in [(0, 6), (0, 8), (7, 9), (6, 11), (6, 6)]
            .into_iter()
            .enumerate()
        {
            assert_eq!(
                s.apply(4 + i as i64, &exported(from, to)),
                Outcome::Exported(false)
            );
        }
        assert_eq!(s.apply(10, &exported(6, 10)), Outcome::Exported(true));
        let back = State::from_checkpoint(&s.to_checkpoint()).unwrap();
        assert_eq!(back.exported("a", 0), Some(10));
    }

    #[test]
    fn the_cleaner_swaps_fewer_bytes_and_moves_the_clean_offset() {
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        for (i, o) in ["o1", "o2", "o3"].iter().enumerate() {
            s.apply(2 + i as i64, &commit_at(o, 5, 100));
        }
        let Some(Command::Compact { runs, .. }) = compact_from(&s, "k1", 200, 0, 2) else {
            panic!("planned")
        };
        let mut run = runs[0].clone();
        run.entries[0].length -= 20;
        run.entries[0].cleaned_at = 200;
        let clean = |object: &str, run: &CompactRun, clean_to: i64| Command::Clean {
            object: object.into(),
            size: 1000,
            time: 200,
            at: 200,
            run: run.clone(),
            clean_to,
        };
        // Compaction must keep the bytes; the cleaner may drop some.
        let mut shrunk = compact_from(&s, "c1", 200, 0, 2).unwrap();
        if let Command::Compact { runs, .. } = &mut shrunk {
            runs[0] = run.clone();
        }
        assert_eq!(s.clone().apply(5, &shrunk), Outcome::Compacted(vec![false]));
        // Offsets must still tile.
        let mut gap = run.clone();
        gap.entries[0].end_offset -= 1;
        assert_eq!(
            s.clone().apply(5, &clean("k0", &gap, 10)),
            Outcome::Cleaned(false)
        );
        assert_eq!(s.apply(5, &clean("k1", &run, 10)), Outcome::Cleaned(true));
        assert_eq!(s.clean_offset("a", 0), Some(10));
        let p = &s.topics["a"].partitions[0];
        assert_eq!(
            (
                p.index[0].base_offset,
                p.index[0].end_offset,
                p.index[0].cleaned_at
            ),
            (0, 10, 200)
        );
        assert!(s.unreferenced.contains_key("o1") && s.objects.contains_key("k1"));
        // A stale swap changes nothing, and the clean offset never moves back.
        assert_eq!(s.apply(6, &clean("k2", &run, 5)), Outcome::Cleaned(false));
        assert_eq!(s.clean_offset("a", 0), Some(10));
        assert!(s.unreferenced.contains_key("k2"));
        // Round trip through a checkpoint keeps both.
        let back = State::from_checkpoint(&s.to_checkpoint()).unwrap();
        assert_eq!(back.clean_offset("a", 0), Some(10));
        assert_eq!(back.topics["a"].partitions[0].index[0].cleaned_at, 200);
    }

    #[test]
    fn compaction_swaps_only_the_entries_it_read() {
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        for (i, o) in ["o1", "o2", "o3"].iter().enumerate() {
            s.apply(2 + i as i64, &commit_at(o, 5, 100));
        }
        let c = compact_from(&s, "c1", 200, 0, 2).unwrap();
        // A stale plan: o1's entry went away since it was read.
        let mut other = s.clone();
        other.apply(
            5,
            &Command::DeleteRecords {
                name: "a".into(),
                partition: 0,
                offset: 5,
                topic_id: None,
                time: 150,
            },
        );
        assert_eq!(other.apply(6, &c), Outcome::Compacted(vec![false]));
        assert!(other.unreferenced.contains_key("c1"));
        // Applied on the state it was planned from: one entry, same offsets.
        assert_eq!(s.apply(5, &c), Outcome::Compacted(vec![true]));
        let p = &s.topics["a"].partitions[0];
        let tiles: Vec<_> = p
            .index
            .iter()
            .map(|e| (e.base_offset, e.end_offset, e.object.as_str()))
            .collect();
        assert_eq!(tiles, vec![(0, 10, "c1"), (10, 15, "o3")]);
        assert_eq!(p.high_watermark, 15);
        assert!(s.unreferenced.contains_key("o1") && s.unreferenced.contains_key("o2"));
        assert_eq!(s.unreferenced["o1"].time, 200);
        // Once is all: the same command again is a duplicate object, and a
        // second compactor that read the old entries finds them gone.
        assert_eq!(s.apply(6, &c), Outcome::DuplicateObject);
        let mut c2 = c.clone();
        if let Command::Compact { object, .. } = &mut c2 {
            *object = "c2".into();
        }
        assert_eq!(s.apply(7, &c2), Outcome::Compacted(vec![false]));
        // A run whose entries do not hold the same bytes is refused.
        let mut bad = compact_from(&s, "c3", 300, 0, 2).unwrap();
        if let Command::Compact { runs, .. } = &mut bad {
            runs[0].entries[0].length -= 1;
        }
        assert_eq!(s.apply(8, &bad), Outcome::Compacted(vec![false]));
    }

    #[test]
    fn forgotten_objects_can_never_be_committed_again() {
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        s.apply(2, &commit_at("o1", 5, 1_000));
        s.apply(
            3,
            &Command::DeleteRecords {
                name: "a".into(),
                partition: 0,
                offset: 5,
                topic_id: Some(TopicId([1; 16])),
                time: 2_000,
            },
        );
        assert_eq!(s.unreferenced["o1"].time, 2_000);
        assert_eq!(s.unreferenced["o1"].sealed, 1_000);
        // A retry of o1's commit while it is unreferenced: a duplicate.
        assert_eq!(
            s.apply(4, &commit_at("o1", 5, 1_000)),
            Outcome::DuplicateObject
        );
        let forget = Command::ForgetObjects {
            horizon_key: false,
            time: 700_000,
            horizon: 0,
            objects: vec!["o1".into(), "never-known".into()],
        };
        assert_eq!(s.apply(5, &forget), Outcome::Forgotten(1));
        assert!(s.unreferenced.is_empty());
        // Deleted and forgotten: a duplicate while the horizon is before
        // its seal time...
        assert_eq!(
            s.apply(6, &commit_at("o1", 5, 1_000)),
            Outcome::DuplicateObject
        );
        assert!(matches!(
            s.apply(7, &commit_at("fresh0", 5, 600_000)),
            Outcome::Committed(_)
        ));
        // ...and too old once the horizon passes it (the tombstone goes).
        s.apply(
            8,
            &Command::ForgetObjects {
                horizon_key: false,
                time: 800_000,
                horizon: 500_000,
                objects: vec![],
            },
        );
        assert_eq!(s.commit_horizon(), 500_000);
        assert!(s.forgotten.is_empty());
        assert_eq!(s.apply(9, &commit_at("o1", 5, 1_000)), Outcome::StaleCommit);
        // The horizon also fences uploads GC found by listing.
        assert_eq!(
            s.apply(10, &commit_at("late", 5, 499_999)),
            Outcome::StaleCommit
        );
        assert!(matches!(
            s.apply(11, &commit_at("fresh", 5, 500_000)),
            Outcome::Committed(_)
        ));
        // A GC whose clock runs far ahead cannot move the horizon past the
        // newest accepted commit.
        s.apply(
            12,
            &Command::ForgetObjects {
                horizon_key: false,
                time: 1 << 50,
                horizon: 1 << 50,
                objects: vec![],
            },
        );
        assert_eq!(s.commit_horizon(), 600_000);
        assert!(matches!(
            s.apply(13, &commit_at("now", 5, 600_000)),
            Outcome::Committed(_)
        ));
        assert_eq!(s.partition("a", 0).unwrap().high_watermark, 20);
        // A retention record naming another topic id does nothing.
        assert_eq!(
            s.apply(
                14,
                &Command::DeleteRecords {
                    name: "a".into(),
                    partition: 0,
                    offset: 20,
                    topic_id: Some(TopicId([2; 16])),
                    time: 0,
                }
            ),
            Outcome::TopicNotFound
        );
    }

    /// Checkpoints written before unreferenced objects carried their times
    /// still load.
    #[test]
    fn reads_checkpoints_with_bare_unreferenced_revisions() {
        let old = r#"{"v":1,"state":{"revision":7,"topics":{},"topic_names":{},"objects":{},"unreferenced":{"segments/x":5}}}"#;
        let s = State::from_checkpoint(old.as_bytes()).unwrap();
        assert_eq!(
            s.unreferenced().collect::<Vec<_>>(),
            vec![(
                "segments/x",
                Unreferenced {
                    revision: 5,
                    time: 0,
                    sealed: 0
                }
            )]
        );
    }

    /// Read-ahead hints: entries that follow each other in one object form
    /// a run.
    #[test]
    fn chunk_locations_carry_their_run_end() {
        let mut s = State::default();
        s.apply(1, &create("a", 1, 1));
        for (i, o) in ["o1", "o2", "o3", "o4"].iter().enumerate() {
            s.apply(2 + i as i64, &commit_at(o, 5, 100));
        }
        let c = compact_from(&s, "c1", 200, 0, 1).unwrap();
        s.apply(6, &c);
        // Two more entries contiguous in c1 after the first.
        let mut c = compact_from(&s, "c2", 200, 1, 3).unwrap();
        if let Command::Compact { runs, .. } = &mut c {
            let e = runs[0].entries[0].clone();
            runs[0].entries = vec![
                NewEntry {
                    end_offset: 10,
                    length: 10,
                    ..e.clone()
                },
                NewEntry {
                    base_offset: 10,
                    position: 18,
                    length: 20,
                    ..e
                },
            ];
        }
        assert_eq!(s.apply(7, &c), Outcome::Compacted(vec![true]));
        let ends: Vec<_> = s
            .chunks_from("a", 0, 0, 10)
            .iter()
            .map(|c| (c.entry.position, c.run_end))
            .collect();
        assert_eq!(ends, vec![(8, 18), (8, 38), (18, 38)]);
    }

    /// The GC contract over random histories: an object is deleted only
    /// once nothing has referenced it for the grace period, a deleted
    /// object is never referenced again (retried commits included), and
    /// when everything is deleted the state's maps are empty.
    #[derive(Debug, Clone)]
    enum Step {
        Commit(u64),
        Retry(usize),
        DeleteRecords(u64),
        Compact(usize, usize),
        StaleCompact(usize, usize),
        Gc,
        Advance(i64),
        Recreate,
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u64..5).prop_map(Step::Commit),
            1 => (0usize..50).prop_map(Step::Retry),
            1 => (0u64..100).prop_map(Step::DeleteRecords),
            2 => (0usize..5, 1usize..5).prop_map(|(i, n)| Step::Compact(i, n)),
            1 => (0usize..5, 1usize..5).prop_map(|(i, n)| Step::StaleCompact(i, n)),
            2 => Just(Step::Gc),
            2 => (1i64..400_000).prop_map(Step::Advance),
            1 => Just(Step::Recreate),
        ]
    }

    proptest! {
        #[test]
        fn gc_never_deletes_what_a_reader_could_use(steps in proptest::collection::vec(arb_step(), 1..120)) {
            const GRACE: i64 = 600_000;
            let mut s = State::default();
            let mut rev = 0;
            let mut apply = |s: &mut State, c: &Command| {
                rev += 1;
                s.apply(rev, c)
            };
            let mut now = 1_000_000i64;
            apply(&mut s, &create("a", 1, 1));
            let mut topic_gen = 1u8;
            let mut commits: Vec<Command> = Vec::new();
            let mut snapshots: Vec<State> = Vec::new();
            let mut last_ref: BTreeMap<String, i64> = BTreeMap::new();
            let mut deleted: BTreeSet<String> = BTreeSet::new();
            let mut n = 0;
            let referenced = |s: &State| -> BTreeSet<String> {
                s.topics.values().flat_map(|t| &t.partitions).flat_map(|p| &p.index).map(|e| e.object.clone()).collect()
            };
            // What the GC job deletes (the same call).
            let gc = |s: &State, now: i64| -> Vec<String> {
                s.due_for_deletion(now, GRACE).map(str::to_string).collect()
            };
            for step in steps {
                n += 1;
                match step {
                    Step::Commit(r) => {
                        let mut c = commit_at(&format!("o{n}"), r, now);
                        if let Command::Commit { chunks, .. } = &mut c { chunks[0].topic = TopicId([topic_gen; 16]); }
                        apply(&mut s, &c);
                        commits.push(c);
                    }
                    Step::Retry(i) => {
                        if let Some(c) = commits.get(i % commits.len().max(1)).cloned() {
                            apply(&mut s, &c);
                        }
                    }
                    Step::DeleteRecords(pct) => {
                        let hwm = s.partition("a", 0).map_or(0, |p| p.high_watermark);
                        apply(&mut s, &Command::DeleteRecords { name: "a".into(), partition: 0, offset: hwm * pct as i64 / 100, topic_id: None, time: now });
                    }
                    Step::Compact(i, k) => {
                        snapshots.push(s.clone());
                        if let Some(c) = compact_from(&s, &format!("c{n}"), now, i, k) { apply(&mut s, &c); }
                    }
                    Step::StaleCompact(i, k) => {
                        if let Some(old) = snapshots.first().cloned() {
                            if let Some(c) = compact_from(&old, &format!("c{n}"), now, i, k) { apply(&mut s, &c); }
                        }
                    }
                    Step::Gc => {
                        let victims = gc(&s, now);
                        for o in &victims {
                            let last = last_ref.get(o).copied().unwrap_or(0);
                            prop_assert!(now - last >= GRACE, "{} deleted {} ms after its last reference", o, now - last);
                            deleted.insert(o.clone());
                        }
                        apply(&mut s, &Command::ForgetObjects { horizon_key: false, time: now, horizon: now - 1_800_000, objects: victims });
                    }
                    Step::Advance(ms) => now += ms,
                    Step::Recreate => {
                        apply(&mut s, &Command::DeleteTopic { name: "a".into(), time: now });
                        topic_gen += 1;
                        apply(&mut s, &create("a", topic_gen, 1));
                    }
                }
                for o in referenced(&s) {
                    prop_assert!(!deleted.contains(&o), "deleted object {} is referenced again", o);
                    last_ref.insert(o, now);
                }
                // Every object is in exactly one of the two maps.
                for o in s.objects.keys() { prop_assert!(!s.unreferenced.contains_key(o)); }
            }
            // Delete everything, wait out the grace period, collect: the
            // state is empty of objects.
            apply(&mut s, &Command::DeleteTopic { name: "a".into(), time: now });
            now += GRACE;
            let victims = gc(&s, now);
            apply(&mut s, &Command::ForgetObjects { horizon_key: false, time: now, horizon: 0, objects: victims });
            prop_assert!(s.objects.is_empty());
            prop_assert!(s.unreferenced.is_empty(), "{:?}", s.unreferenced);
            prop_assert!(s.topics.is_empty() && s.topic_names.is_empty());
        }
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (0u8..3, 1u32..4).prop_map(|(t, p)| create(&format!("t{t}"), t, p)),
            (0u8..3).prop_map(|t| Command::DeleteTopic {
                name: format!("t{t}"),
                time: 0,
            }),
            (
                0u32..1000,
                proptest::collection::vec((0u8..3, -1i32..4, 0u64..50), 1..5)
            )
                .prop_map(|(o, c)| commit(&format!("o{o}"), &c)),
        ]
    }

    proptest! {
        /// Replaying from a checkpoint taken anywhere gives the same state as
        /// replaying from scratch.
        #[test]
        fn replay_from_checkpoint_is_identical(cmds in proptest::collection::vec(arb_command(), 1..60), cut in 0usize..60) {
            let mut full = State::default();
            let mut outcomes = Vec::new();
            for (i, c) in cmds.iter().enumerate() {
                outcomes.push(full.apply(i as i64 + 1, c));
            }
            let cut = cut.min(cmds.len());
            let mut head = State::default();
            for (i, c) in cmds[..cut].iter().enumerate() {
                head.apply(i as i64 + 1, c);
            }
            let mut resumed = State::from_checkpoint(&head.to_checkpoint()).unwrap();
            for (i, c) in cmds.iter().enumerate().skip(cut) {
                prop_assert_eq!(&resumed.apply(i as i64 + 1, c), &outcomes[i]);
            }
            prop_assert_eq!(&resumed, &full);
            prop_assert_eq!(resumed.to_checkpoint(), full.to_checkpoint());
            // Offsets are dense: index entries tile [0, hwm).
            for t in full.topics.values() {
                for p in &t.partitions {
                    let mut next = p.index.first().map_or(p.high_watermark, |e| e.base_offset);
                    for e in &p.index {
                        prop_assert_eq!(e.base_offset, next);
                        prop_assert!(e.end_offset > e.base_offset);
                        next = e.end_offset;
                    }
                    prop_assert_eq!(next, p.high_watermark);
                }
            }
        }
    }
}
