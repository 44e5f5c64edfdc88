//! The cleaner: key compaction of topics with `cleanup.policy=compact`, as
//! Kafka's log cleaner does it.
//!
//! A partition is cleaned when its dirty part (records after its clean
//! offset, old enough by `min.compaction.lag.ms`) holds at least
//! `min.cleanable.dirty.ratio` of its cleanable bytes, or when its oldest
//! dirty record is older than `max.compaction.lag.ms`. A pass first reads
//! the dirty part and maps each key (a salted 128-bit digest) to its last
//! offset, within `dedupe_bytes`; the dirty part ends where the map is
//! full, so any key count is cleaned in several passes. It then rewrites
//! the partition from its log start to the end of that dirty part, in
//! pieces of at most one object each, keeping a record when no later
//! record of its key is in the map, dropping records without a key, and
//! dropping tombstones (null values) whose entry the cleaner first passed
//! more than `delete.retention.ms` ago.
//!
//! Kept records are copied byte for byte (offset and timestamp deltas,
//! key, value, headers) into batches that keep the original batch's base
//! timestamp, producer fields and codec. Offsets never change: a batch
//! keeps its offsets, and the offsets of removed records are covered by
//! the batch before them (its last offset delta grows), or, at the start
//! of a piece, by the batch after them (its base offset moves back and its
//! records' deltas grow), so the batches of an index entry still tile its
//! offsets and the read path assigns every record its original offset.
//! Only a piece left with no record at all, or removed offsets just before
//! a batch that is kept as it is (a control batch, or one too large to
//! look into), are covered by an empty batch, as Kafka's cleaner leaves
//! them.
//!
//! Each piece is swapped into the index by a `Clean` record, a
//! compare-and-swap like segment compaction's; the last piece of a pass
//! also moves the clean offset. A refused piece ends the partition's pass
//! (the next pass starts over): removing a record is safe on its own,
//! since the later record of its key stays in the log; and a tombstone's
//! entry is marked as cleaned only when its own piece applies, after the
//! pieces before it, which removed the older records of its key (they
//! precede it). Past a batch the cleaner cannot look into (kept whole),
//! tombstones are kept: an older value may hide in it.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use md5::{Digest, Md5};
use object_store::{path::Path as ObjectPath, ObjectStoreExt, PutPayload};
use silt_coordinator::{
    records::{CompactRun, EntryRef, NewEntry},
    Command, IndexEntry, Outcome, State, TimestampType, TopicId,
};

use super::{compaction::read_entries, Job, JobError, Jobs, Report, COMPACTED_PREFIX};
use crate::{
    batch::{self, BatchHeader},
    records::{self, BatchShape},
    segment,
};

#[derive(Debug, Clone, Copy)]
pub struct CleanerSettings {
    /// Memory for the key map of one pass (Kafka's
    /// `log.cleaner.dedupe.buffer.size`).
    pub dedupe_bytes: u64,
}

impl Default for CleanerSettings {
    fn default() -> Self {
        Self {
            dedupe_bytes: 128 << 20,
        }
    }
}

/// Bytes the key map counts per key: a 16-byte digest, an 8-byte offset,
/// and the hash table's own overhead.
pub const MAP_BYTES_PER_KEY: u64 = 40;

/// Largest decompressed batch the cleaner looks into; a larger one (or
/// one that does not decode) is kept as it is, and its keys do not enter
/// the map, which only keeps more records than needed.
pub const MAX_CLEANER_BATCH_BYTES: usize = 64 << 20;

/// The transactional bit of a batch's attributes.
const TRANSACTIONAL: i16 = 0x10;

/// Bytes of source entries read at once.
const READ_GROUP_BYTES: u64 = 16 << 20;

/// A partition the cleaner should clean now.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    topic: TopicId,
    partition: i32,
    timestamp_type: TimestampType,
    delete_retention_ms: i64,
    /// From the log start to the end of the cleanable part.
    entries: Vec<IndexEntry>,
    /// The first entry holding dirty records, when they are to be cleaned.
    dirty_from: Option<usize>,
    /// Otherwise: entries up to this one hold tombstones to remove.
    expired_to: usize,
    /// The partition's aborted transactions: their records never enter
    /// the key map.
    aborted: Vec<silt_coordinator::state::AbortedTxn>,
}

/// What the cleaner would clean in one partition at `now`, if anything.
pub(super) fn plan_for(state: &State, topic: &str, p: i32, now: i64) -> Option<Plan> {
    let t = state.topic(topic)?;
    let c = t.config();
    if !c.compact {
        return None;
    }
    let index = state.index(topic, p)?;
    let clean = state.clean_offset(topic, p)?;
    let lag_cut = now.saturating_sub(c.min_compaction_lag_ms);
    // Nothing at or past the last stable offset is cleaned: an open
    // transaction's records may still be aborted.
    let stable = state.partition(topic, p)?.last_stable_offset;
    let cleanable: Vec<IndexEntry> = index
        .iter()
        .take_while(|e| e.append_time <= lag_cut && e.end_offset <= stable)
        .cloned()
        .collect();
    let dirty_from = cleanable
        .iter()
        .position(|e| e.end_offset > clean)
        .filter(|&i| {
            let total: u128 = cleanable.iter().map(|e| e.length as u128).sum();
            let dirty: u128 = cleanable[i..].iter().map(|e| e.length as u128).sum();
            let overdue = cleanable[i].append_time <= now.saturating_sub(c.max_compaction_lag_ms);
            overdue || dirty * 1_000_000 >= c.min_cleanable_dirty_ratio_ppm as u128 * total
        });
    // Tombstones past `delete.retention.ms` are removed even when nothing
    // is dirty enough.
    let horizon = now.saturating_sub(c.delete_retention_ms);
    let expired = cleanable
        .iter()
        .rposition(|e| e.tombstones && e.cleaned_at > 0 && e.cleaned_at <= horizon);
    if dirty_from.is_none() && expired.is_none() {
        return None;
    }
    Some(Plan {
        topic: t.id(),
        partition: p,
        timestamp_type: c.timestamp_type,
        delete_retention_ms: c.delete_retention_ms,
        entries: cleanable,
        dirty_from,
        expired_to: expired.map_or(0, |i| i + 1),
        aborted: state.aborted_txns(topic, p, 0, i64::MAX),
    })
}

pub(super) async fn run(
    jobs: &Jobs,
    deadline: tokio::time::Instant,
    budget: u64,
) -> Result<Report, JobError> {
    let mut report = Report::default();
    for key in jobs.rotation(Job::Cleaner) {
        if tokio::time::Instant::now() >= deadline || report.bytes_read >= budget {
            report.more = true;
            jobs.set_cursor(Job::Cleaner, Some(key));
            return Ok(report);
        }
        let now = jobs.now();
        let Some(plan) = plan_for(&jobs.log.state(), &key.0, key.1, now) else {
            continue;
        };
        // One partition's failure (a damaged object, say) must not hold
        // up the others: it is tried again next pass.
        if let Err(e) = clean_partition(jobs, &key.0, plan, now, &mut report).await {
            tracing::warn!(topic = %key.0, partition = key.1, error = %e, "cleaning a partition failed");
            report.partitions_failed += 1;
        }
    }
    jobs.set_cursor(Job::Cleaner, None);
    Ok(report)
}

/// A key's salted digest. The salt is chosen per pass, so keys cannot be
/// crafted to collide with another's.
fn digest(salt: &[u8; 16], key: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(salt);
    h.update(key);
    h.finalize().into()
}

/// An entry's batches with their offsets: each batch's base offset is
/// written into it (stored batches carry the producer's).
fn entry_batches(e: &IndexEntry, bytes: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, JobError> {
    let corrupt = |message: String| JobError::Corrupt {
        object: e.object.clone(),
        message,
    };
    let (out, next, _) =
        batch::rewrite_chunk(bytes, e.base_offset, e.base_offset, usize::MAX, true, None)
            .map_err(|err| corrupt(err.to_string()))?;
    if next != e.end_offset {
        return Err(corrupt(format!(
            "entry {}..{} holds batches up to {next}",
            e.base_offset, e.end_offset
        )));
    }
    let out = Bytes::from(out);
    let mut batches = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let h = batch::parse_one(&out, at).map_err(|err| corrupt(err.to_string()))?;
        batches.push((h, out.slice(at..at + h.size as usize)));
        at += h.size as usize;
    }
    Ok(batches)
}

fn base_of(batch: &[u8]) -> i64 {
    i64::from_be_bytes(batch[0..8].try_into().expect("a batch has a header"))
}

/// The keys of a batch with their offsets, or `None` when the cleaner does
/// not look into it (a control batch, too large, or undecodable).
fn keys_of(batch: &[u8], salt: &[u8; 16]) -> Option<Vec<([u8; 16], i64)>> {
    let records = records::decode_batch(batch, MAX_CLEANER_BATCH_BYTES).ok()??;
    let mut out = Vec::new();
    for r in records {
        let r = r.ok()?;
        if let Some(k) = &r.key {
            out.push((digest(salt, k), r.offset));
        }
    }
    Some(out)
}

/// Groups consecutive entries into reads of about `READ_GROUP_BYTES`.
fn read_groups(entries: &[IndexEntry]) -> Vec<&[IndexEntry]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, e) in entries.iter().enumerate() {
        if i > start && bytes + e.length > READ_GROUP_BYTES {
            out.push(&entries[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += e.length;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

async fn clean_partition(
    jobs: &Jobs,
    topic: &str,
    plan: Plan,
    now: i64,
    report: &mut Report,
) -> Result<(), JobError> {
    let s = jobs.settings.cleaner;
    let salt: [u8; 16] = ulid::Ulid::new().0.to_be_bytes();
    let capacity = (s.dedupe_bytes / MAP_BYTES_PER_KEY).max(1) as usize;
    // 1. The key map of the dirty part, as far as it fits.
    let mut map: HashMap<[u8; 16], i64> = HashMap::new();
    let dirty_from = plan.dirty_from.unwrap_or(plan.entries.len());
    let mut dirty_to = dirty_from;
    'map: for group in read_groups(&plan.entries[dirty_from..]) {
        let data = read_entries(jobs, group.iter(), report).await?;
        for e in group {
            let mut keys = Vec::new();
            for (h, b) in entry_batches(e, &data[&(e.object.clone(), e.position)])? {
                // An aborted transaction's value never supersedes another.
                let base = base_of(&b);
                let aborted = h.attributes & TRANSACTIONAL != 0
                    && plan.aborted.iter().any(|a| {
                        a.producer_id == h.producer_id
                            && a.first_offset <= base
                            && base <= a.last_offset
                    });
                if !aborted {
                    keys.extend(keys_of(&b, &salt).unwrap_or_default());
                }
            }
            let new = keys.iter().filter(|(k, _)| !map.contains_key(k)).count();
            // The first dirty entry always enters, so every pass moves on.
            if dirty_to > dirty_from && map.len() + new > capacity {
                break 'map;
            }
            for (k, o) in keys {
                map.insert(k, o);
            }
            dirty_to += 1;
        }
    }
    // 2. Rewrite from the log start to there (or to the last expired
    // tombstone), piece by piece.
    let (end, clean_to) = match plan.dirty_from {
        Some(_) => (dirty_to, plan.entries[dirty_to - 1].end_offset),
        None => (plan.expired_to, 0),
    };
    let entries = &plan.entries[..end];
    let object_bytes = jobs.settings.compaction.object_bytes;
    let mut pieces: Vec<&[IndexEntry]> = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, e) in entries.iter().enumerate() {
        if i > start
            && (bytes + e.length > object_bytes
                || i - start >= super::compaction::MAX_ENTRIES_PER_OBJECT)
        {
            pieces.push(&entries[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += e.length;
    }
    pieces.push(&entries[start..]);
    let last = pieces.len() - 1;
    let rules = Rules {
        map: &map,
        salt: &salt,
        tombstones_before: now.saturating_sub(plan.delete_retention_ms),
        now,
        opaque: AtomicBool::new(false),
    };
    for (i, piece) in pieces.into_iter().enumerate() {
        let applied = clean_piece(
            jobs,
            &plan,
            piece,
            &rules,
            if i == last { clean_to } else { 0 },
            report,
        )
        .await?;
        if !applied {
            tracing::debug!(
                topic,
                partition = plan.partition,
                "a cleaned piece was refused; the next pass starts over"
            );
            report.runs_refused += 1;
            return Ok(());
        }
    }
    if rules.opaque.load(Ordering::Relaxed) {
        tracing::warn!(
            topic,
            partition = plan.partition,
            "a record batch the cleaner cannot look into is kept whole; tombstones after it are kept"
        );
    }
    report.partitions_cleaned += 1;
    tracing::debug!(
        topic,
        partition = plan.partition,
        clean_to,
        keys = map.len(),
        "partition cleaned"
    );
    Ok(())
}

/// What a pass keeps.
struct Rules<'a> {
    map: &'a HashMap<[u8; 16], i64>,
    salt: &'a [u8; 16],
    /// Tombstones in entries first cleaned before this time go.
    tombstones_before: i64,
    now: i64,
    /// The pass met a batch it cannot look into (kept whole): tombstones
    /// after it stay.
    opaque: AtomicBool,
}

/// A batch being rebuilt: records kept so far, and the offsets it covers.
struct Open {
    shape: BatchShape,
    base: i64,
    end: i64,
    body: Vec<u8>,
    count: i32,
    max_timestamp: i64,
    meta: Meta,
}

/// What an index entry built from batches carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    append_time: i64,
    cleaned_at: i64,
    /// The batch holds tombstones.
    tombstones: bool,
}

/// The batches a piece becomes, tiling its offsets.
struct Output {
    batches: Vec<(Vec<u8>, i64, i64, Meta)>,
    open: Option<Open>,
    /// Removed offsets from here not yet covered by a batch.
    gap: Option<(i64, Meta)>,
}

impl Output {
    fn close(&mut self) -> Result<(), JobError> {
        if let Some(o) = self.open.take() {
            let delta = (o.end - o.base - 1) as i32;
            let b =
                records::build_batch(&o.shape, o.base, delta, o.count, o.max_timestamp, &o.body)
                    .map_err(|e| JobError::Corrupt {
                        object: "(cleaned batch)".into(),
                        message: e.to_string(),
                    })?;
            self.batches.push((b, o.base, o.max_timestamp, o.meta));
        }
        Ok(())
    }

    /// Covers removed offsets `[from, to)` with empty batches.
    fn fill(&mut self, from: i64, to: i64, meta: Meta) -> Result<(), JobError> {
        let mut at = from;
        while at < to {
            let span = (to - at).min(i32::MAX as i64);
            let b = records::build_batch(&BatchShape::EMPTY, at, (span - 1) as i32, 0, -1, &[])
                .map_err(|e| JobError::Corrupt {
                    object: "(empty batch)".into(),
                    message: e.to_string(),
                })?;
            self.batches.push((b, at, -1, meta));
            at += span;
        }
        Ok(())
    }

    /// Offsets `[from, to)` whose records were all removed.
    fn removed(&mut self, from: i64, to: i64, meta: Meta) -> Result<(), JobError> {
        match &mut self.open {
            Some(o) if to - o.base <= i32::MAX as i64 => o.end = to,
            Some(_) => {
                // The open batch cannot span more offsets.
                self.close()?;
                self.gap = Some((from, meta));
            }
            None => {
                if self.gap.is_none() {
                    self.gap = Some((from, meta));
                }
            }
        }
        Ok(())
    }
}

/// Rewrites one piece and proposes its swap; whether it applied.
async fn clean_piece(
    jobs: &Jobs,
    plan: &Plan,
    piece: &[IndexEntry],
    rules: &Rules<'_>,
    clean_to: i64,
    report: &mut Report,
) -> Result<bool, JobError> {
    // Taken before the upload, as compaction does.
    let time = jobs.now();
    let mut out = Output {
        batches: Vec::new(),
        open: None,
        gap: None,
    };
    let mut removed = 0u64;
    for group in read_groups(piece) {
        let data = read_entries(jobs, group.iter(), report).await?;
        for e in group {
            let meta = Meta {
                append_time: e.append_time,
                cleaned_at: if e.cleaned_at > 0 {
                    e.cleaned_at
                } else {
                    rules.now
                },
                tombstones: false,
            };
            let expired = e.cleaned_at > 0 && e.cleaned_at <= rules.tombstones_before;
            for (h, b) in entry_batches(e, &data[&(e.object.clone(), e.position)])? {
                let base = base_of(&b);
                let end = base + h.last_offset_delta as i64 + 1;
                removed += clean_batch(&mut out, &h, b, base, end, meta, expired, rules)?;
            }
        }
    }
    out.close()?;
    let piece_end = piece.last().expect("pieces are not empty").end_offset;
    if let Some((from, meta)) = out.gap.take() {
        out.fill(from, piece_end, meta)?;
    }
    // One object holding the piece's batches, which must span exactly the
    // piece's offsets, one after another: checked here, before anything
    // is written, not assumed.
    let mut bytes = Vec::new();
    let mut metas = Vec::with_capacity(out.batches.len());
    let mut min_ts = i64::MAX;
    let mut next = piece[0].base_offset;
    for (b, base, ..) in &out.batches {
        let broken = |message: String| JobError::Corrupt {
            object: "(cleaned batch)".into(),
            message,
        };
        let h = batch::parse_one(b, 0).map_err(|err| broken(err.to_string()))?;
        if *base != next {
            return Err(broken(format!(
                "a cleaned batch starts at {base}, not {next}"
            )));
        }
        next = base + h.last_offset_delta as i64 + 1;
        min_ts = min_ts.min(h.base_timestamp);
        metas.push(segment::BatchMeta::from(&h));
        bytes.extend_from_slice(b);
    }
    if next != piece_end || out.batches.is_empty() {
        return Err(JobError::Corrupt {
            object: "(cleaned batch)".into(),
            message: format!("cleaned batches end at {next}, not {piece_end}"),
        });
    }
    let mut builder = segment::SegmentBuilder::new();
    builder.append(
        plan.topic.0,
        plan.partition,
        Bytes::from(bytes),
        metas,
        min_ts,
    );
    let (object, chunks) = builder.finish();
    let entries = new_entries(
        &out.batches,
        chunks[0].position,
        piece_end,
        jobs.settings.compaction.entry_bytes,
        plan.timestamp_type,
        rules.tombstones_before,
    );
    let key = segment::dated_key(COMPACTED_PREFIX, jobs.ids.next());
    let size = object.len() as u64;
    jobs.store
        .put(&ObjectPath::from(key.as_str()), PutPayload::from(object))
        .await?;
    report.bytes_written += size;
    report.objects_written += 1;
    let run = CompactRun {
        topic: plan.topic,
        partition: plan.partition,
        replaces: piece.iter().map(EntryRef::from).collect(),
        entries,
    };
    let (replaced, written) = (run.replaces.len() as u64, run.entries.len() as u64);
    let outcome = jobs
        .log
        .propose(Command::Clean {
            object: key.clone(),
            size,
            time,
            at: jobs.now(),
            run,
            clean_to,
        })
        .await?;
    match outcome {
        Outcome::Cleaned(true) => {
            report.entries_compacted += replaced;
            report.entries_written += written;
            report.records_cleaned += removed;
            Ok(true)
        }
        other => {
            tracing::debug!(object = %key, outcome = ?other, "cleaned piece refused");
            Ok(false)
        }
    }
}

/// Adds one source batch to the output; how many of its records were
/// removed.
#[allow(clippy::too_many_arguments)]
fn clean_batch(
    out: &mut Output,
    h: &BatchHeader,
    b: Bytes,
    base: i64,
    end: i64,
    meta: Meta,
    expired: bool,
    rules: &Rules<'_>,
) -> Result<u64, JobError> {
    let verbatim = |out: &mut Output, b: Bytes| -> Result<u64, JobError> {
        out.close()?;
        if let Some((from, gap_meta)) = out.gap.take() {
            out.fill(from, base, gap_meta)?;
        }
        out.batches.push((b.to_vec(), base, h.max_timestamp, meta));
        Ok(0)
    };
    let opaque = || rules.opaque.store(true, Ordering::Relaxed);
    // Transactional batches are kept whole (committed or aborted): their
    // markers and aborted ranges stay exact. An older value of a key may
    // then remain in one, so tombstones after it stay too.
    if h.attributes & TRANSACTIONAL != 0 {
        opaque();
        return verbatim(out, b);
    }
    let mut records = match records::decode_batch(&b, MAX_CLEANER_BATCH_BYTES) {
        Ok(Some(records)) => records,
        // A control batch holds no keys.
        Ok(None) => return verbatim(out, b),
        Err(_) => {
            opaque();
            return verbatim(out, b);
        }
    };
    let mut kept: Vec<(records::Record, Bytes)> = Vec::new();
    let mut removed = 0u64;
    while let Some(r) = records.next_raw() {
        let Ok((r, raw)) = r else {
            opaque();
            return verbatim(out, b);
        };
        let keep = match &r.key {
            None => false,
            Some(k) => {
                let superseded = rules
                    .map
                    .get(&digest(rules.salt, k))
                    .is_some_and(|&latest| r.offset < latest);
                // Past a batch the cleaner cannot look into, an older value
                // of this key may be in it: the tombstone stays.
                let expired_tombstone =
                    r.value.is_none() && expired && !rules.opaque.load(Ordering::Relaxed);
                !superseded && !expired_tombstone
            }
        };
        if keep {
            kept.push((r, raw));
        } else {
            removed += 1;
        }
    }
    if kept.is_empty() {
        out.removed(base, end, meta)?;
        return Ok(removed);
    }
    out.close()?;
    // Removed offsets just before: this batch starts there instead (or,
    // past what one batch can span, an empty batch covers them).
    let mut from = match out.gap.take() {
        Some((from, _)) => from,
        None => base,
    };
    if end - from > i32::MAX as i64 {
        out.fill(from, base, meta)?;
        from = base;
    }
    let shift = base - from;
    let mut body = Vec::with_capacity(kept.iter().map(|(_, raw)| raw.len()).sum());
    for (_, raw) in &kept {
        if shift == 0 {
            body.extend_from_slice(raw);
        } else {
            let moved = records::rebase_record(raw, shift).map_err(|e| JobError::Corrupt {
                object: "(cleaned batch)".into(),
                message: e.to_string(),
            })?;
            body.extend_from_slice(&moved);
        }
    }
    let create_time = h.attributes & 0x08 == 0;
    out.open = Some(Open {
        shape: BatchShape::from(h),
        base: from,
        end,
        body,
        count: kept.len() as i32,
        max_timestamp: if create_time {
            kept.iter().map(|(r, _)| r.timestamp).max().unwrap_or(-1)
        } else {
            h.max_timestamp
        },
        meta: Meta {
            tombstones: kept.iter().any(|(r, _)| r.value.is_none()),
            ..meta
        },
    });
    Ok(removed)
}

/// The index entries of a piece's batches laid out from `position`:
/// neighbours merge up to `entry_bytes` while their cleaning time agrees
/// (or both have expired tombstones) and, for LogAppendTime topics, their
/// append time.
fn new_entries(
    batches: &[(Vec<u8>, i64, i64, Meta)],
    position: u64,
    piece_end: i64,
    entry_bytes: u64,
    timestamp_type: TimestampType,
    tombstones_before: i64,
) -> Vec<NewEntry> {
    let mut out: Vec<NewEntry> = Vec::new();
    let mut at = position;
    for (i, (b, base, max_ts, meta)) in batches.iter().enumerate() {
        let end = batches.get(i + 1).map_or(piece_end, |n| n.1);
        let len = b.len() as u64;
        let merge = out.last().is_some_and(|l| {
            // Entries whose tombstones expire at different times stay
            // apart; without tombstones the time does not matter.
            let same_clean = l.cleaned_at == meta.cleaned_at
                || (!l.tombstones && !meta.tombstones)
                || (l.cleaned_at <= tombstones_before && meta.cleaned_at <= tombstones_before);
            l.length + len <= entry_bytes
                && same_clean
                && (timestamp_type == TimestampType::CreateTime
                    || l.append_time == meta.append_time)
        });
        if merge {
            let l = out.last_mut().expect("checked");
            l.end_offset = end;
            l.length += len;
            l.max_timestamp = l.max_timestamp.max(*max_ts);
            l.append_time = l.append_time.max(meta.append_time);
            l.cleaned_at = l.cleaned_at.max(meta.cleaned_at);
            l.tombstones |= meta.tombstones;
        } else {
            out.push(NewEntry {
                base_offset: *base,
                end_offset: end,
                position: at,
                length: len,
                max_timestamp: *max_ts,
                append_time: meta.append_time,
                cleaned_at: meta.cleaned_at,
                tombstones: meta.tombstones,
            });
        }
        at += len;
    }
    out
}
