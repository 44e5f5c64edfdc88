//! Transactions in the state machine (decision 0011): the state of every
//! transactional id, and the records that change it. Each record is decided
//! by the epoch and the state it finds, so a stale writer is refused.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{append_chunk, ChunkOutcome, Partition, State};
use crate::records::{BatchRef, ChunkRef, TxnOffset, TxnPartition};

/// Partitions one transaction may hold at most (its end record lists one
/// marker per partition).
pub const MAX_TXN_PARTITIONS: usize = 1000;
/// Pending group offsets one transaction may hold at most: they are
/// written in the same metadata-store transaction as its end record.
pub const MAX_TXN_OFFSETS: usize = 100;
/// Groups one transaction may hold at most (each adds a write to that
/// transaction: with the offsets, within etcd's 128 operations).
pub const MAX_TXN_GROUPS: usize = 10;

/// Kafka's transaction states, as far as silt has them: there is no
/// prepared state, since one record ends a transaction everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

/// One transactional id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnEntry {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i64,
    pub state: TxnState,
    /// Partitions of the open transaction.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub partitions: BTreeSet<TxnPartition>,
    /// Groups of the open transaction, with their pending offsets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Vec<TxnOffset>>,
    /// When the open transaction started (writer's clock, ms).
    pub start_time: i64,
    /// When a record last changed it (writer's clock, ms): it times out
    /// `timeout_ms` after this.
    pub last_update: i64,
    /// Revision of the record that last changed it: the modification
    /// revision of its key in the metadata store.
    pub revision: i64,
}

impl TxnEntry {
    /// Pending offsets over all groups.
    pub fn offset_count(&self) -> usize {
        self.groups.values().map(Vec::len).sum()
    }
}

/// An aborted transaction's range in one partition: its first batch there
/// and its abort marker (Kafka's aborted-transaction index entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What a transaction record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied.
    Done,
    /// The record's epoch is older than the transaction's (PRODUCER_FENCED).
    Fenced,
    /// The transaction is not in a state the record applies to, or the
    /// producer id is not the transaction's (INVALID_TXN_STATE,
    /// INVALID_PRODUCER_ID_MAPPING), with why.
    Invalid(String),
    /// A partition of the record does not exist.
    UnknownPartition(TxnPartition),
    /// EndTxn of an open transaction: every marker's outcome, and on commit
    /// the group offsets it made visible.
    Ended {
        commit: bool,
        markers: Vec<ChunkOutcome>,
        offsets: BTreeMap<String, Vec<TxnOffset>>,
    },
    /// EndTxn repeated after the transaction ended the same way: nothing
    /// more happens (a retry).
    AlreadyEnded,
}

/// Whether a transactional batch of a commit may be appended: its
/// producer's transaction is open with the batch's epoch and holds the
/// partition.
pub(super) fn check_transactional(
    transactions: &BTreeMap<String, TxnEntry>,
    producers: &BTreeMap<i64, String>,
    at: TxnPartition,
    b: &BatchRef,
) -> Result<(), super::BatchOutcome> {
    if !b.transactional {
        return Ok(());
    }
    let Some(t) = producers
        .get(&b.producer_id)
        .and_then(|id| transactions.get(id))
    else {
        return Err(super::BatchOutcome::InvalidTxnState);
    };
    if b.epoch < t.epoch {
        return Err(super::BatchOutcome::Fenced);
    }
    if b.epoch > t.epoch || t.state != TxnState::Ongoing || !t.partitions.contains(&at) {
        return Err(super::BatchOutcome::InvalidTxnState);
    }
    Ok(())
}

impl Partition {
    /// The last stable offset: the first offset of the oldest open
    /// transaction, else the high watermark.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        self.open_txns
            .values()
            .copied()
            .min()
            .unwrap_or(self.high_watermark)
            .min(self.high_watermark)
    }

    /// Forgets aborted ranges wholly below the log start.
    pub(crate) fn prune_aborted(&mut self) {
        let start = self.log_start_offset;
        self.aborted.retain(|a| a.last_offset >= start);
    }
}

impl State {
    /// A transactional id's state.
    pub fn transaction(&self, id: &str) -> Option<&TxnEntry> {
        self.transactions.get(id)
    }

    /// Every transactional id, in id order.
    pub fn transactions(&self) -> impl Iterator<Item = (&String, &TxnEntry)> {
        self.transactions.iter()
    }

    /// The revision of the last record naming a transactional id: its
    /// key's modification revision, which a writer's guard compares.
    pub fn txn_key_revision(&self, id: &str) -> Option<i64> {
        self.txn_keys.get(id).copied()
    }

    /// The partitions (topic, partition) of `group` with offsets pending
    /// in an open transaction (OffsetFetch's `require_stable`).
    pub fn pending_txn_offsets(&self, group: &str) -> BTreeSet<(String, i32)> {
        self.transactions
            .values()
            .filter(|t| t.state == TxnState::Ongoing)
            .filter_map(|t| t.groups.get(group))
            .flatten()
            .map(|o| (o.topic.clone(), o.partition))
            .collect()
    }

    /// The transactional id holding a producer id.
    pub fn transactional_id_of(&self, producer_id: i64) -> Option<&str> {
        self.txn_producers.get(&producer_id).map(String::as_str)
    }

    /// Where producer `producer_id`'s open transaction starts in a
    /// partition, if it has batches there.
    pub fn open_txn_start(&self, topic: &str, partition: i32, producer_id: i64) -> Option<i64> {
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)?
            .open_txns
            .get(&producer_id)
            .copied()
    }

    /// The aborted transactions of a partition whose ranges reach into
    /// `[from, to)`, in offset order (Fetch's `aborted_transactions`).
    pub fn aborted_txns(&self, topic: &str, partition: i32, from: i64, to: i64) -> Vec<AbortedTxn> {
        let Some(p) = self
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
        else {
            return Vec::new();
        };
        p.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    fn txn_partition_exists(&self, at: &TxnPartition) -> bool {
        self.topic_names
            .get(&at.topic)
            .and_then(|n| self.topics.get(n))
            .is_some_and(|t| at.partition >= 0 && (at.partition as usize) < t.partitions.len())
    }

    /// The transaction a record of (`id`, `producer_id`, `epoch`) may
    /// change, or why not.
    fn txn_for(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&mut TxnEntry, TxnOutcome> {
        let Some(t) = self.transactions.get_mut(id) else {
            return Err(TxnOutcome::Invalid(format!(
                "transactional id {id:?} has no producer id (InitProducerId first)"
            )));
        };
        if t.producer_id != producer_id {
            return Err(TxnOutcome::Invalid(format!(
                "producer id {producer_id} is not transactional id {id:?}'s ({})",
                t.producer_id
            )));
        }
        if epoch < t.epoch {
            return Err(TxnOutcome::Fenced);
        }
        if epoch > t.epoch {
            return Err(TxnOutcome::Invalid(format!(
                "epoch {epoch} is ahead of transactional id {id:?}'s ({})",
                t.epoch
            )));
        }
        Ok(t)
    }

    /// Opens the transaction if it is not (a new one starts with no
    /// partitions or groups).
    fn open(t: &mut TxnEntry, time: i64) {
        if t.state != TxnState::Ongoing {
            t.state = TxnState::Ongoing;
            t.partitions.clear();
            t.groups.clear();
            t.start_time = time;
        }
    }

    pub(super) fn init_txn(
        &mut self,
        revision: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        timeout_ms: i64,
        time: i64,
    ) -> TxnOutcome {
        if producer_id < 0 || epoch < 0 || timeout_ms <= 0 {
            return TxnOutcome::Invalid(format!(
                "producer id {producer_id}, epoch {epoch}, timeout {timeout_ms}"
            ));
        }
        if self
            .txn_producers
            .get(&producer_id)
            .is_some_and(|other| other != id)
        {
            return TxnOutcome::Invalid(format!(
                "producer id {producer_id} belongs to another transactional id"
            ));
        }
        if let Some(t) = self.transactions.get(id) {
            if t.state == TxnState::Ongoing {
                return TxnOutcome::Invalid(format!(
                    "transactional id {id:?} has an open transaction: end it first"
                ));
            }
            let newer = if t.producer_id == producer_id {
                epoch > t.epoch
            } else {
                true
            };
            if !newer {
                return TxnOutcome::Fenced;
            }
            let old = t.producer_id;
            self.txn_producers.remove(&old);
        }
        self.txn_producers.insert(producer_id, id.to_string());
        self.transactions.insert(
            id.to_string(),
            TxnEntry {
                producer_id,
                epoch,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeMap::new(),
                start_time: -1,
                last_update: time,
                revision,
            },
        );
        TxnOutcome::Done
    }

    pub(super) fn forget_txn(
        &mut self,
        id: &str,
        last_update: i64,
        idle_ms: i64,
        time: i64,
    ) -> TxnOutcome {
        // Its key is deleted with this record, whatever the outcome.
        self.txn_keys.remove(id);
        let Some(t) = self.transactions.get(id) else {
            return TxnOutcome::Invalid(format!("transactional id {id:?} is unknown"));
        };
        if t.state == TxnState::Ongoing
            || t.last_update != last_update
            || time.saturating_sub(t.last_update) < idle_ms
        {
            return TxnOutcome::Invalid(format!("transactional id {id:?} is in use"));
        }
        let pid = t.producer_id;
        self.transactions.remove(id);
        self.txn_producers.remove(&pid);
        TxnOutcome::Done
    }

    pub(super) fn add_txn_partitions(
        &mut self,
        revision: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TxnPartition],
        time: i64,
    ) -> TxnOutcome {
        if let Some(missing) = partitions.iter().find(|p| !self.txn_partition_exists(p)) {
            return TxnOutcome::UnknownPartition(*missing);
        }
        let t = match self.txn_for(id, producer_id, epoch) {
            Ok(t) => t,
            Err(o) => return o,
        };
        Self::open(t, time);
        let added: BTreeSet<TxnPartition> = t
            .partitions
            .union(&partitions.iter().copied().collect())
            .copied()
            .collect();
        if added.len() > MAX_TXN_PARTITIONS {
            return TxnOutcome::Invalid(format!(
                "a transaction holds at most {MAX_TXN_PARTITIONS} partitions"
            ));
        }
        t.partitions = added;
        t.last_update = time;
        t.revision = revision;
        TxnOutcome::Done
    }

    pub(super) fn add_txn_group(
        &mut self,
        revision: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        time: i64,
    ) -> TxnOutcome {
        let t = match self.txn_for(id, producer_id, epoch) {
            Ok(t) => t,
            Err(o) => return o,
        };
        Self::open(t, time);
        if !t.groups.contains_key(group) && t.groups.len() >= MAX_TXN_GROUPS {
            return TxnOutcome::Invalid(format!(
                "a transaction holds at most {MAX_TXN_GROUPS} groups"
            ));
        }
        t.groups.entry(group.to_string()).or_default();
        t.last_update = time;
        t.revision = revision;
        TxnOutcome::Done
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn txn_offsets(
        &mut self,
        revision: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: &[TxnOffset],
        time: i64,
    ) -> TxnOutcome {
        let t = match self.txn_for(id, producer_id, epoch) {
            Ok(t) => t,
            Err(o) => return o,
        };
        if t.state != TxnState::Ongoing || !t.groups.contains_key(group) {
            return TxnOutcome::Invalid(format!(
                "group {group:?} is not in transactional id {id:?}'s transaction (AddOffsetsToTxn first)"
            ));
        }
        let mut pending = t.groups[group].clone();
        for o in offsets {
            pending.retain(|p| !(p.topic == o.topic && p.partition == o.partition));
            pending.push(o.clone());
        }
        let others: usize = t
            .groups
            .iter()
            .filter(|(g, _)| *g != group)
            .map(|(_, v)| v.len())
            .sum();
        if others + pending.len() > MAX_TXN_OFFSETS {
            return TxnOutcome::Invalid(format!(
                "a transaction commits offsets of at most {MAX_TXN_OFFSETS} partitions"
            ));
        }
        pending.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        t.groups.insert(group.to_string(), pending);
        t.last_update = time;
        t.revision = revision;
        TxnOutcome::Done
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn end_txn(
        &mut self,
        revision: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        object: &str,
        size: u64,
        markers: &[ChunkRef],
        time: i64,
        fence: bool,
    ) -> (TxnOutcome, u64) {
        let t = match self.txn_for(id, producer_id, epoch) {
            Ok(t) => t,
            Err(o) => return (o, 0),
        };
        match t.state {
            TxnState::CompleteCommit if commit && !fence => return (TxnOutcome::AlreadyEnded, 0),
            TxnState::CompleteAbort if !commit && !fence => return (TxnOutcome::AlreadyEnded, 0),
            TxnState::Ongoing => {}
            other => {
                return (
                    TxnOutcome::Invalid(format!(
                        "transactional id {id:?} is {}: nothing to {}",
                        other.name(),
                        if commit { "commit" } else { "abort" }
                    )),
                    0,
                )
            }
        }
        let wanted: BTreeSet<TxnPartition> = markers
            .iter()
            .map(|m| TxnPartition {
                topic: m.topic,
                partition: m.partition,
            })
            .collect();
        let in_bounds = markers
            .iter()
            .all(|m| m.records == 1 && m.position.checked_add(m.length).is_some_and(|e| e <= size));
        if wanted != t.partitions || wanted.len() != markers.len() || !in_bounds {
            return (
                TxnOutcome::Invalid(format!(
                    "the end of transactional id {id:?} must carry one marker per partition of the transaction"
                )),
                0,
            );
        }
        t.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        if fence {
            t.epoch = t.epoch.saturating_add(1);
        }
        let new_epoch = t.epoch;
        t.partitions.clear();
        let groups = std::mem::take(&mut t.groups);
        t.last_update = time;
        t.revision = revision;
        let mut outcomes = Vec::with_capacity(markers.len());
        let mut refs = 0;
        let (topics, names) = (&mut self.topics, &self.topic_names);
        for m in markers {
            let part = names
                .get(&m.topic)
                .and_then(|n| topics.get_mut(n))
                .and_then(|t| t.partitions.get_mut(usize::try_from(m.partition).ok()?));
            let Some(p) = part else {
                // The topic went while the transaction was open.
                outcomes.push(ChunkOutcome::Rejected);
                continue;
            };
            let first = p.open_txns.remove(&producer_id);
            // The marker carries the transaction's epoch (bumped when it
            // fences): batches of an older one are fenced from now on.
            let e = p.producers.entry(producer_id).or_default();
            if e.epoch < new_epoch {
                e.epoch = new_epoch;
                e.recent.clear();
            }
            e.last_time = e.last_time.max(m.append_time);
            let (outcome, entries) = append_chunk(p, object, m);
            refs += entries;
            if let (false, Some(first), ChunkOutcome::Appended { base }) = (commit, first, &outcome)
            {
                p.aborted.push(AbortedTxn {
                    producer_id,
                    first_offset: first,
                    last_offset: *base,
                });
            }
            outcomes.push(outcome);
        }
        let offsets = if commit {
            groups.into_iter().filter(|(_, v)| !v.is_empty()).collect()
        } else {
            BTreeMap::new()
        };
        (
            TxnOutcome::Ended {
                commit,
                markers: outcomes,
                offsets,
            },
            refs,
        )
    }
}

/// Where the transactional id's open transaction started in a partition,
/// recorded when its first batch there is appended.
pub(super) fn note_open(p: &mut Partition, b: &BatchRef, base: i64) {
    if b.transactional {
        p.open_txns.entry(b.producer_id).or_insert(base);
    }
}

/// The topic id and partition of a chunk.
pub(super) fn at(c: &ChunkRef) -> TxnPartition {
    TxnPartition {
        topic: c.topic,
        partition: c.partition,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        records::{Command, TopicId},
        state::Outcome,
    };

    const T: TopicId = TopicId([1; 16]);

    fn tp(partition: i32) -> TxnPartition {
        TxnPartition {
            topic: T,
            partition,
        }
    }

    /// A state with topic "t" of `n` partitions.
    fn state(n: u32) -> (State, i64) {
        let mut s = State::default();
        s.apply(
            1,
            &Command::CreateTopic {
                name: "t".into(),
                id: T,
                partitions: n,
                config: Default::default(),
            },
        );
        (s, 1)
    }

    struct W {
        s: State,
        rev: i64,
        objects: u64,
    }

    impl W {
        fn new(n: u32) -> Self {
            let (s, rev) = state(n);
            Self { s, rev, objects: 0 }
        }

        fn apply(&mut self, c: Command) -> Outcome {
            self.rev += 1;
            self.s.apply(self.rev, &c)
        }

        fn txn(&mut self, c: Command) -> TxnOutcome {
            match self.apply(c) {
                Outcome::Txn(o) => o,
                other => panic!("{other:?}"),
            }
        }

        fn object(&mut self) -> String {
            self.objects += 1;
            format!("o{}", self.objects)
        }

        /// One batch of one record on `partition`: (producer id, epoch,
        /// sequence, transactional), or plain with producer -1.
        fn produce(&mut self, partition: i32, b: (i64, i16, i32, bool)) -> BatchOutcomeOf {
            let object = self.object();
            let out = self.apply(Command::Commit {
                object,
                size: 100,
                chunks: vec![ChunkRef {
                    topic: T,
                    partition,
                    position: 0,
                    length: 10,
                    records: 1,
                    max_timestamp: 0,
                    append_time: 1,
                    batches: vec![BatchRef {
                        records: 1,
                        size: 10,
                        producer_id: b.0,
                        epoch: b.1,
                        sequence: b.2,
                        transactional: b.3,
                    }],
                }],
            });
            match out {
                Outcome::Committed(mut v) => match v.remove(0) {
                    ChunkOutcome::PerBatch(mut b) => b.remove(0),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }

        fn end(
            &mut self,
            id: &str,
            pid: i64,
            epoch: i16,
            commit: bool,
            parts: &[i32],
            fence: bool,
        ) -> TxnOutcome {
            let object = self.object();
            self.txn(Command::EndTxn {
                id: id.into(),
                producer_id: pid,
                epoch,
                commit,
                object,
                size: 100,
                markers: parts
                    .iter()
                    .map(|p| ChunkRef {
                        topic: T,
                        partition: *p,
                        position: 0,
                        length: 70,
                        records: 1,
                        max_timestamp: 0,
                        append_time: 1,
                        batches: Vec::new(),
                    })
                    .collect(),
                time: 1,
                fence,
            })
        }

        fn init(&mut self, id: &str, pid: i64, epoch: i16) -> TxnOutcome {
            self.txn(Command::InitTxn {
                id: id.into(),
                producer_id: pid,
                epoch,
                timeout_ms: 60_000,
                time: 1,
            })
        }

        fn add(&mut self, id: &str, pid: i64, epoch: i16, parts: &[i32]) -> TxnOutcome {
            self.txn(Command::AddTxnPartitions {
                id: id.into(),
                producer_id: pid,
                epoch,
                partitions: parts.iter().map(|p| tp(*p)).collect(),
                time: 1,
            })
        }

        fn part(&self, p: i32) -> &Partition {
            &self.s.topics["t"].partitions[p as usize]
        }
    }

    type BatchOutcomeOf = super::super::BatchOutcome;
    use super::super::BatchOutcome as B;

    #[test]
    fn a_committed_transaction_becomes_stable_on_every_partition_at_once() {
        let mut w = W::new(3);
        assert_eq!(w.init("tx", 5, 0), TxnOutcome::Done);
        assert_eq!(w.add("tx", 5, 0, &[0, 1]), TxnOutcome::Done);
        assert_eq!(w.produce(0, (-1, -1, -1, false)), B::Appended(0));
        assert_eq!(w.produce(0, (5, 0, 0, true)), B::Appended(1));
        assert_eq!(w.produce(1, (5, 0, 0, true)), B::Appended(0));
        assert_eq!(w.produce(0, (-1, -1, -1, false)), B::Appended(2));
        // Open: read_committed readers stop at the transaction's first batch.
        assert_eq!(w.part(0).last_stable_offset(), 1);
        assert_eq!(w.part(1).last_stable_offset(), 0);
        assert_eq!(w.part(2).last_stable_offset(), 0);
        // A partition not added refuses the producer's batch.
        assert_eq!(w.produce(2, (5, 0, 0, true)), B::InvalidTxnState);
        assert_eq!(w.part(2).high_watermark, 0);
        // The end must name exactly the transaction's partitions.
        assert!(matches!(
            w.end("tx", 5, 0, true, &[0], false),
            TxnOutcome::Invalid(_)
        ));
        match w.end("tx", 5, 0, true, &[0, 1], false) {
            TxnOutcome::Ended {
                commit: true,
                markers,
                ..
            } => assert_eq!(
                markers,
                vec![
                    ChunkOutcome::Appended { base: 3 },
                    ChunkOutcome::Appended { base: 1 }
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(w.part(0).last_stable_offset(), 4);
        assert_eq!(w.part(1).last_stable_offset(), 2);
        assert!(w.part(0).aborted.is_empty());
        assert_eq!(
            w.s.transaction("tx").unwrap().state,
            TxnState::CompleteCommit
        );
        // A retry of the end changes nothing.
        assert_eq!(
            w.end("tx", 5, 0, true, &[0, 1], false),
            TxnOutcome::AlreadyEnded
        );
        assert_eq!(w.part(0).high_watermark, 4);
        // After the end, the producer's batches need a new transaction.
        assert_eq!(w.produce(0, (5, 0, 1, true)), B::InvalidTxnState);
    }

    #[test]
    fn an_aborted_transaction_is_listed_and_its_producer_fenced_on_request() {
        let mut w = W::new(2);
        w.init("tx", 5, 0);
        w.add("tx", 5, 0, &[0]);
        assert_eq!(w.produce(0, (5, 0, 0, true)), B::Appended(0));
        assert_eq!(w.produce(0, (5, 0, 1, true)), B::Appended(1));
        match w.end("tx", 5, 0, false, &[0], true) {
            TxnOutcome::Ended {
                commit: false,
                offsets,
                ..
            } => assert!(offsets.is_empty()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            w.part(0).aborted,
            vec![AbortedTxn {
                producer_id: 5,
                first_offset: 0,
                last_offset: 2
            }]
        );
        assert_eq!(w.s.aborted_txns("t", 0, 2, 3).len(), 1);
        assert_eq!(w.s.aborted_txns("t", 0, 3, 10).len(), 0);
        // `fence` bumped the epoch: the old producer is fenced everywhere.
        assert_eq!(w.s.transaction("tx").unwrap().epoch, 1);
        assert_eq!(w.add("tx", 5, 0, &[0]), TxnOutcome::Fenced);
        assert_eq!(w.produce(0, (5, 0, 2, true)), B::Fenced);
        // Its plain (idempotent) batches too: the marker set the epoch.
        assert_eq!(w.produce(0, (5, 0, 2, false)), B::Fenced);
        // A new producer instance takes the next epoch, and works.
        assert_eq!(w.init("tx", 5, 2), TxnOutcome::Done);
        assert_eq!(w.init("tx", 5, 2), TxnOutcome::Fenced);
        assert_eq!(w.add("tx", 5, 2, &[1]), TxnOutcome::Done);
        assert_eq!(w.produce(1, (5, 2, 0, true)), B::Appended(0));
        // The state survives a checkpoint.
        let restored = State::from_checkpoint(&w.s.to_checkpoint()).unwrap();
        assert_eq!(restored, w.s);
        // Retention forgets aborted ranges below the log start.
        w.apply(Command::DeleteRecords {
            name: "t".into(),
            partition: 0,
            offset: 3,
            topic_id: None,
            time: 0,
        });
        assert!(w.part(0).aborted.is_empty());
    }

    #[test]
    fn rules_of_init_add_offsets_and_end() {
        let mut w = W::new(2);
        // Nothing before InitProducerId.
        assert!(matches!(w.add("tx", 5, 0, &[0]), TxnOutcome::Invalid(_)));
        assert_eq!(w.init("tx", 5, 0), TxnOutcome::Done);
        // Another transactional id cannot take the producer id.
        assert!(matches!(w.init("other", 5, 0), TxnOutcome::Invalid(_)));
        assert!(matches!(
            w.add("tx", 5, 0, &[9]),
            TxnOutcome::UnknownPartition(p) if p.partition == 9
        ));
        // Ending an empty transaction is Kafka's INVALID_TXN_STATE.
        assert!(matches!(
            w.end("tx", 5, 0, true, &[], false),
            TxnOutcome::Invalid(_)
        ));
        // Offsets need their group in the transaction first.
        let offsets = |group: &str| Command::TxnOffsets {
            id: "tx".into(),
            producer_id: 5,
            epoch: 0,
            group: group.into(),
            offsets: vec![TxnOffset {
                topic: "in".into(),
                partition: 0,
                offset: 42,
                leader_epoch: -1,
                metadata: None,
            }],
            time: 2,
        };
        assert!(matches!(w.txn(offsets("g")), TxnOutcome::Invalid(_)));
        assert_eq!(
            w.txn(Command::AddTxnGroup {
                id: "tx".into(),
                producer_id: 5,
                epoch: 0,
                group: "g".into(),
                time: 2
            }),
            TxnOutcome::Done
        );
        assert_eq!(w.txn(offsets("g")), TxnOutcome::Done);
        assert_eq!(w.txn(offsets("g")), TxnOutcome::Done);
        assert_eq!(w.s.transaction("tx").unwrap().offset_count(), 1);
        // An open transaction must end before a new producer instance.
        assert!(matches!(w.init("tx", 5, 1), TxnOutcome::Invalid(_)));
        // A group-only transaction ends with no markers; its offsets come out.
        match w.end("tx", 5, 0, true, &[], false) {
            TxnOutcome::Ended {
                offsets, markers, ..
            } => {
                assert!(markers.is_empty());
                assert_eq!(offsets["g"][0].offset, 42);
            }
            other => panic!("{other:?}"),
        }
        // The key revision follows the last record that changed it, and
        // the last one naming it, refused or not.
        assert_eq!(w.s.transaction("tx").unwrap().revision, w.rev);
        assert_eq!(w.s.txn_key_revision("tx"), Some(w.rev));
        assert!(matches!(w.init("tx", 5, 0), TxnOutcome::Fenced));
        assert_eq!(w.s.txn_key_revision("tx"), Some(w.rev));
        assert_eq!(w.s.transaction("tx").unwrap().revision, w.rev - 1);
        // A new producer id for the same transactional id (epoch exhausted).
        assert_eq!(w.init("tx", 6, 0), TxnOutcome::Done);
        assert_eq!(w.s.transactional_id_of(6), Some("tx"));
        assert_eq!(w.s.transactional_id_of(5), None);
        // An idle transactional id is forgotten with its key; an open or
        // recently used one is not.
        let forget = |last_update: i64, time: i64| Command::ForgetTxn {
            id: "tx".into(),
            last_update,
            idle_ms: 1000,
            time,
        };
        let last = w.s.transaction("tx").unwrap().last_update;
        assert!(matches!(
            w.txn(forget(last, last + 10)),
            TxnOutcome::Invalid(_)
        ));
        assert_eq!(w.s.txn_key_revision("tx"), None);
        assert_eq!(w.txn(forget(last, last + 1000)), TxnOutcome::Done);
        assert!(w.s.transaction("tx").is_none());
        assert_eq!(w.s.transactional_id_of(6), None);
        assert_eq!(w.init("tx", 7, 0), TxnOutcome::Done);
        assert_eq!(w.add("tx", 7, 0, &[0]), TxnOutcome::Done);
        let last = w.s.transaction("tx").unwrap().last_update;
        assert!(matches!(
            w.txn(forget(last, last + 5000)),
            TxnOutcome::Invalid(_)
        ));
        assert!(w.s.transaction("tx").is_some());
        // At most MAX_TXN_GROUPS groups in one transaction.
        for g in 0..MAX_TXN_GROUPS {
            let o = w.txn(Command::AddTxnGroup {
                id: "tx".into(),
                producer_id: 7,
                epoch: 0,
                group: format!("g{g}"),
                time: 3,
            });
            assert_eq!(o, TxnOutcome::Done);
        }
        assert!(matches!(
            w.txn(Command::AddTxnGroup {
                id: "tx".into(),
                producer_id: 7,
                epoch: 0,
                group: "one-too-many".into(),
                time: 3,
            }),
            TxnOutcome::Invalid(_)
        ));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// (txn 0..2) InitProducerId: the next epoch.
        Init(usize),
        /// Add partition to the txn's open transaction.
        Add(usize, i32),
        /// A transactional batch of the txn's current producer on a partition.
        Txn(usize, i32),
        /// A plain batch.
        Plain(i32),
        /// End (commit?) with or without fencing.
        End(usize, bool, bool),
        /// A zombie: a batch with the previous epoch.
        Zombie(usize, i32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..2usize).prop_map(Op::Init),
            (0..2usize, 0..3i32).prop_map(|(t, p)| Op::Add(t, p)),
            (0..2usize, 0..3i32).prop_map(|(t, p)| Op::Txn(t, p)),
            (0..3i32).prop_map(Op::Plain),
            (0..2usize, any::<bool>(), any::<bool>()).prop_map(|(t, c, f)| Op::End(t, c, f)),
            (0..2usize, 0..3i32).prop_map(|(t, p)| Op::Zombie(t, p)),
        ]
    }

    proptest! {
        /// Against a model of every transaction's fate: below the last
        /// stable offset, a transactional record is committed exactly when
        /// no aborted range of its producer covers it, and nothing of an
        /// open transaction is below it.
        #[test]
        fn read_committed_view_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
            let mut w = W::new(3);
            // Model: per txn, (producer id, epoch, open?, partitions, seqs).
            let pids = [10i64, 20];
            let mut epoch = [-1i16; 2];
            let mut open: [Option<(u64, std::collections::BTreeSet<i32>)>; 2] = [None, None];
            let mut seq = [[0i32; 3]; 2];
            let mut instance = 0u64;
            // Per partition, per offset: None (plain or marker) or (txn, instance).
            let mut log: Vec<Vec<Option<(usize, u64)>>> = vec![Vec::new(); 3];
            // Fate of each transaction instance: Some(committed?).
            let mut fate: BTreeMap<u64, bool> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Init(t) => {
                        if open[t].is_some() {
                            prop_assert!(matches!(w.init(["a", "b"][t], pids[t], epoch[t] + 1), TxnOutcome::Invalid(_)));
                            continue;
                        }
                        prop_assert_eq!(w.init(["a", "b"][t], pids[t], epoch[t] + 1), TxnOutcome::Done);
                        epoch[t] += 1;
                        seq[t] = [0; 3];
                    }
                    Op::Add(t, p) => {
                        let o = w.add(["a", "b"][t], pids[t], epoch[t].max(0), &[p]);
                        if epoch[t] < 0 {
                            prop_assert!(matches!(o, TxnOutcome::Invalid(_)));
                            continue;
                        }
                        prop_assert_eq!(o, TxnOutcome::Done);
                        let entry = open[t].get_or_insert_with(|| { instance += 1; (instance, Default::default()) });
                        entry.1.insert(p);
                    }
                    Op::Txn(t, p) => {
                        if epoch[t] < 0 { continue; }
                        let o = w.produce(p, (pids[t], epoch[t], seq[t][p as usize], true));
                        match &open[t] {
                            Some((i, parts)) if parts.contains(&p) => {
                                prop_assert_eq!(o, B::Appended(log[p as usize].len() as i64));
                                log[p as usize].push(Some((t, *i)));
                                seq[t][p as usize] += 1;
                            }
                            _ => prop_assert_eq!(o, B::InvalidTxnState),
                        }
                    }
                    Op::Plain(p) => {
                        let o = w.produce(p, (-1, -1, -1, false));
                        prop_assert_eq!(o, B::Appended(log[p as usize].len() as i64));
                        log[p as usize].push(None);
                    }
                    Op::Zombie(t, p) => {
                        if epoch[t] < 1 { continue; }
                        let o = w.produce(p, (pids[t], epoch[t] - 1, 0, true));
                        prop_assert_eq!(o, B::Fenced);
                    }
                    Op::End(t, commit, fence) => {
                        if epoch[t] < 0 { continue; }
                        let parts: Vec<i32> = open[t].as_ref().map(|(_, p)| p.iter().copied().collect()).unwrap_or_default();
                        let o = w.end(["a", "b"][t], pids[t], epoch[t], commit, &parts, fence);
                        match open[t].take() {
                            Some((i, _)) => {
                                prop_assert!(matches!(o, TxnOutcome::Ended { .. }), "{:?}", o);
                                fate.insert(i, commit);
                                for p in parts {
                                    log[p as usize].push(None);
                                }
                                if fence { epoch[t] += 1; seq[t] = [0; 3]; }
                            }
                            None => {
                                let ended = matches!(o, TxnOutcome::Ended { .. });
                                prop_assert!(!ended, "{:?}", o)
                            }
                        }
                    }
                }
                // The invariant, on every partition.
                for (p, records) in log.iter().enumerate() {
                    let part = w.part(p as i32);
                    prop_assert_eq!(part.high_watermark, records.len() as i64);
                    let lso = part.last_stable_offset();
                    for (offset, r) in records.iter().enumerate() {
                        let Some((t, i)) = r else { continue };
                        let offset = offset as i64;
                        let aborted = part.aborted.iter().any(|a| a.producer_id == pids[*t] && a.first_offset <= offset && offset <= a.last_offset);
                        match fate.get(i) {
                            None => prop_assert!(offset >= lso, "open record {offset} below LSO {lso}"),
                            Some(true) => prop_assert!(!aborted, "committed record {offset} listed aborted"),
                            Some(false) => prop_assert!(aborted, "aborted record {offset} not listed"),
                        }
                    }
                }
            }
        }
    }
}
