//! Segment compaction: rewrites a partition's bytes scattered over many
//! small multi-partition segments into one contiguous run inside a larger
//! object, so a cold read of the partition needs one GET per read-ahead
//! window instead of one per segment. The bytes (batches, CRCs, timestamps,
//! producer data) are copied exactly; the index entries are swapped by one
//! `Compact` record that applies only if the entries it replaces are still
//! those it read.
//!
//! Policy (two levels; docs/decisions/0005-tiering-jobs.md): a run is
//! *final* once it lies in a compacted object and holds at least
//! `run_bytes`. A partition's oldest stretch of non-final entries is
//! rewritten when it holds `run_bytes` or more (one write for busy
//! partitions), or, for its raw-segment entries only, once the oldest is
//! `max_lag` old (so quiet partitions still leave the small segments); the
//! small runs that makes are merged once more when together they reach
//! `run_bytes`. Every byte is thus written at most twice.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use object_store::{path::Path as ObjectPath, ObjectStoreExt, PutPayload};
use silt_coordinator::{
    records::{CompactRun, EntryRef, NewEntry},
    Command, IndexEntry, Outcome, State, TimestampType, TopicId,
};

use super::{Job, JobError, Jobs, Report, COMPACTED_PREFIX};
use crate::{batch, segment};

#[derive(Debug, Clone, Copy)]
pub struct CompactionSettings {
    /// A partition's run in a compacted object is final at this size.
    pub run_bytes: u64,
    /// Largest object written (its bytes are held in memory while
    /// written, so a pass holds about twice this).
    pub object_bytes: u64,
    /// Largest index entry written; a read fetches whole entries.
    pub entry_bytes: u64,
    /// Entries younger than this (by seal time) are left alone.
    pub min_age: Duration,
    /// Raw-segment entries this old are compacted even into a small run.
    pub max_lag: Duration,
}

impl Default for CompactionSettings {
    fn default() -> Self {
        Self {
            run_bytes: 16 << 20,
            object_bytes: 32 << 20,
            entry_bytes: 1 << 20,
            min_age: Duration::from_secs(60),
            max_lag: Duration::from_secs(600),
        }
    }
}

/// Index entries one compaction object replaces at most: its `Compact`
/// record names each (about 150 bytes of JSON), and a metadata-store
/// request must stay well under etcd's 1.5 MiB.
pub const MAX_ENTRIES_PER_OBJECT: usize = 2000;

/// Largest gap between two ranges of one source object read in one GET.
const COALESCE_GAP: u64 = 64 << 10;
/// Largest single GET of a source object.
const MAX_GET: u64 = 16 << 20;

/// One partition's stretch of entries to rewrite into one run.
#[derive(Debug, Clone)]
pub(super) struct Piece {
    topic: TopicId,
    partition: i32,
    timestamp_type: TimestampType,
    entries: Vec<(IndexEntry, u64)>,
}

impl Piece {
    fn bytes(&self) -> u64 {
        self.entries.iter().map(|(e, _)| e.length).sum()
    }
}

fn is_compacted(object: &str) -> bool {
    object.starts_with(COMPACTED_PREFIX)
}

/// Groups a partition's entries into runs: entries that follow each other
/// byte for byte in one object.
fn runs(index: &[IndexEntry]) -> Vec<&[IndexEntry]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=index.len() {
        let split = i == index.len() || {
            let (a, b) = (&index[i - 1], &index[i]);
            a.object != b.object || a.position + a.length != b.position
        };
        if split {
            out.push(&index[start..i]);
            start = i;
        }
    }
    out
}

/// The pieces compaction rewrites in one partition now: its oldest
/// stretch of non-final entries, cut into pieces of about equal size.
fn pieces_for(state: &State, topic: &str, p: i32, now: i64, s: &CompactionSettings) -> Vec<Piece> {
    let young = now - s.min_age.as_millis() as i64;
    let lagging = now - s.max_lag.as_millis() as i64;
    let (Some(t), Some(index)) = (state.topic(topic), state.index(topic, p)) else {
        return Vec::new();
    };
    let size = |e: &IndexEntry| state.object_size(&e.object).unwrap_or(0);
    // The oldest stretch of non-final runs old enough to touch.
    let mut stretch: Vec<&IndexEntry> = Vec::new();
    for run in runs(index) {
        let bytes: u64 = run.iter().map(|e| e.length).sum();
        let fin = is_compacted(&run[0].object) && bytes >= s.run_bytes;
        if fin {
            if stretch.is_empty() {
                continue;
            }
            break;
        }
        let old: Vec<&IndexEntry> = run.iter().take_while(|e| e.append_time <= young).collect();
        let whole = old.len() == run.len();
        stretch.extend(old);
        if !whole {
            break;
        }
    }
    let total: u64 = stretch.iter().map(|e| e.length).sum();
    let chosen: Vec<&IndexEntry> = if total >= s.run_bytes && stretch.len() > 1 {
        stretch
    } else {
        // Raw-segment entries only, from the first lagging one.
        let first = stretch
            .iter()
            .position(|e| !is_compacted(&e.object) && e.append_time <= lagging);
        match first {
            Some(i) => stretch[i..]
                .iter()
                .take_while(|e| !is_compacted(&e.object))
                .copied()
                .collect(),
            None => Vec::new(),
        }
    };
    if chosen.is_empty() {
        return Vec::new();
    }
    // Cut into pieces as large as an object (a sequential read then
    // needs the fewest GETs); a last piece below a run's size shares the
    // bytes of the one before it evenly, so every piece is final.
    let mut out: Vec<Piece> = Vec::new();
    let mut piece = Piece {
        topic: t.id(),
        partition: p,
        timestamp_type: t.config().timestamp_type,
        entries: Vec::new(),
    };
    for e in chosen {
        let full = piece.bytes() + e.length > s.object_bytes
            || piece.entries.len() >= MAX_ENTRIES_PER_OBJECT;
        if !piece.entries.is_empty() && full {
            let next = Piece {
                entries: Vec::new(),
                ..piece.clone()
            };
            out.push(std::mem::replace(&mut piece, next));
        }
        piece.entries.push(((*e).clone(), size(e)));
    }
    if piece.bytes() < s.run_bytes {
        if let Some(prev) = out.pop() {
            let tail = std::mem::take(&mut piece.entries);
            let entries: Vec<_> = prev.entries.into_iter().chain(tail).collect();
            let half = entries.iter().map(|(e, _)| e.length).sum::<u64>() / 2;
            let mut first = Vec::new();
            let mut second = Vec::new();
            let mut at = 0;
            for x in entries {
                at += x.0.length;
                if at <= half || first.is_empty() {
                    first.push(x);
                } else {
                    second.push(x);
                }
            }
            out.push(Piece {
                entries: first,
                ..piece.clone()
            });
            piece.entries = second;
        }
    }
    if !piece.entries.is_empty() {
        out.push(piece);
    }
    out
}

/// Packs pieces into objects of at most `object_bytes`, one piece per
/// partition per object.
fn pack(pieces: Vec<Piece>, object_bytes: u64) -> Vec<Vec<Piece>> {
    let mut objects: Vec<Vec<Piece>> = Vec::new();
    for piece in pieces {
        let fits = objects.last().is_some_and(|o| {
            let used: u64 = o.iter().map(Piece::bytes).sum();
            let entries: usize = o.iter().map(|p| p.entries.len()).sum();
            used + piece.bytes() <= object_bytes
                && entries + piece.entries.len() <= MAX_ENTRIES_PER_OBJECT
                && !o
                    .iter()
                    .any(|q| q.topic == piece.topic && q.partition == piece.partition)
        });
        match objects.last_mut() {
            Some(o) if fits => o.push(piece),
            _ => objects.push(vec![piece]),
        }
    }
    objects
}

pub(super) async fn run(
    jobs: &Jobs,
    deadline: tokio::time::Instant,
    budget: u64,
) -> Result<Report, JobError> {
    let s = jobs.settings.compaction;
    let now = jobs.now();
    let mut report = Report::default();
    // From where the last pass stopped, so that every partition gets its
    // turn; the state is locked per partition.
    let mut pieces = Vec::new();
    let mut planned = 0;
    let mut stopped = None;
    for key in jobs.rotation(Job::Compaction) {
        let found = pieces_for(&jobs.log.state(), &key.0, key.1, now, &s);
        let bytes: u64 = found.iter().map(Piece::bytes).sum();
        if planned + bytes > budget && !pieces.is_empty() {
            report.more = true;
            stopped = Some(key);
            break;
        }
        planned += bytes;
        pieces.extend(found);
    }
    jobs.set_cursor(Job::Compaction, stopped);
    for object in pack(pieces, s.object_bytes) {
        if tokio::time::Instant::now() >= deadline {
            report.more = true;
            break;
        }
        write_object(jobs, &s, object, &mut report).await?;
    }
    Ok(report)
}

/// Reads the pieces' bytes, writes them as one object, and proposes the
/// swap.
async fn write_object(
    jobs: &Jobs,
    s: &CompactionSettings,
    pieces: Vec<Piece>,
    report: &mut Report,
) -> Result<(), JobError> {
    // Taken before the upload: the commit horizon refuses a swap whose
    // object GC may have taken for an orphan.
    let time = jobs.now();
    let data = read_sources(jobs, &pieces, report).await?;
    let mut builder = segment::SegmentBuilder::new();
    for piece in &pieces {
        let mut bytes = Vec::with_capacity(piece.bytes() as usize);
        let mut metas = Vec::new();
        let mut min_ts = i64::MAX;
        for (e, _) in &piece.entries {
            let chunk = &data[&(e.object.clone(), e.position)];
            let headers = batch::parse_all(chunk).map_err(|err| JobError::Corrupt {
                object: e.object.clone(),
                message: err.to_string(),
            })?;
            let records: u64 = headers.iter().map(|h| h.record_count() as u64).sum();
            if records != (e.end_offset - e.base_offset) as u64 {
                return Err(JobError::Corrupt {
                    object: e.object.clone(),
                    message: format!(
                        "entry {}..{} holds {records} records",
                        e.base_offset, e.end_offset
                    ),
                });
            }
            for h in headers {
                min_ts = min_ts.min(h.base_timestamp);
                metas.push(segment::BatchMeta::from(&h));
            }
            bytes.extend_from_slice(chunk);
        }
        builder.append(
            piece.topic.0,
            piece.partition,
            Bytes::from(bytes),
            metas,
            min_ts,
        );
    }
    let (object, chunks) = builder.finish();
    let key = segment::dated_key(COMPACTED_PREFIX, jobs.ids.next());
    let mut runs = Vec::with_capacity(pieces.len());
    for (piece, chunk) in pieces.iter().zip(&chunks) {
        runs.push(CompactRun {
            topic: piece.topic,
            partition: piece.partition,
            replaces: piece
                .entries
                .iter()
                .map(|(e, _)| EntryRef::from(e))
                .collect(),
            entries: collapse(piece, chunk.position, s.entry_bytes),
        });
    }
    let size = object.len() as u64;
    debug_assert!(runs.iter().map(|r| r.replaces.len()).sum::<usize>() <= MAX_ENTRIES_PER_OBJECT);
    jobs.store
        .put(&ObjectPath::from(key.as_str()), PutPayload::from(object))
        .await?;
    report.bytes_written += size;
    report.objects_written += 1;
    let outcome = jobs
        .log
        .propose(Command::Compact {
            object: key.clone(),
            size,
            time,
            at: jobs.now(),
            runs: runs.clone(),
        })
        .await?;
    match outcome {
        Outcome::Compacted(applied) => {
            for (run, ok) in runs.iter().zip(applied) {
                if ok {
                    report.entries_compacted += run.replaces.len() as u64;
                    report.entries_written += run.entries.len() as u64;
                } else {
                    report.runs_refused += 1;
                }
            }
        }
        other => {
            tracing::warn!(object = %key, outcome = ?other, "compaction refused");
            report.runs_refused += runs.len() as u64;
        }
    }
    Ok(())
}

/// The new index entries of a piece laid out from `position`: neighbours
/// merge up to `entry_bytes`, unless the topic stamps LogAppendTime and
/// their append times differ (the read path stamps an entry's batches with
/// its one append time), or the cleaner passed them at different times and
/// tombstones remain in one (they expire at different times; a raw entry,
/// never cleaned, may hold tombstones the cleaner has not seen).
fn collapse(piece: &Piece, position: u64, entry_bytes: u64) -> Vec<NewEntry> {
    let mut out: Vec<NewEntry> = Vec::new();
    let mut at = position;
    for (e, _) in &piece.entries {
        let merge = out.last().is_some_and(|l| {
            l.length + e.length <= entry_bytes
                && (l.cleaned_at == e.cleaned_at
                    || (l.cleaned_at > 0 && e.cleaned_at > 0 && !l.tombstones && !e.tombstones))
                && (piece.timestamp_type == TimestampType::CreateTime
                    || l.append_time == e.append_time)
        });
        if merge {
            let l = out.last_mut().expect("checked");
            l.end_offset = e.end_offset;
            l.length += e.length;
            l.max_timestamp = l.max_timestamp.max(e.max_timestamp);
            l.append_time = l.append_time.max(e.append_time);
            l.tombstones |= e.tombstones;
            l.cleaned_at = l.cleaned_at.max(e.cleaned_at);
        } else {
            out.push(NewEntry {
                base_offset: e.base_offset,
                end_offset: e.end_offset,
                position: at,
                length: e.length,
                max_timestamp: e.max_timestamp,
                append_time: e.append_time,
                cleaned_at: e.cleaned_at,
                tombstones: e.tombstones,
            });
        }
        at += e.length;
    }
    out
}

/// The bytes of every entry of `pieces` (see [`read_entries`]).
async fn read_sources(
    jobs: &Jobs,
    pieces: &[Piece],
    report: &mut Report,
) -> Result<BTreeMap<(String, u64), Bytes>, JobError> {
    read_entries(
        jobs,
        pieces.iter().flat_map(|p| &p.entries).map(|(e, _)| e),
        report,
    )
    .await
}

/// Each entry's bytes, keyed by (object, position); ranges of one source
/// object close together are read in one GET.
pub(super) async fn read_entries<'a>(
    jobs: &Jobs,
    entries: impl Iterator<Item = &'a IndexEntry>,
    report: &mut Report,
) -> Result<BTreeMap<(String, u64), Bytes>, JobError> {
    let mut by_object: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for e in entries {
        by_object
            .entry(e.object.as_str())
            .or_default()
            .push((e.position, e.length));
    }
    let mut out = BTreeMap::new();
    for (object, mut ranges) in by_object {
        ranges.sort_unstable();
        let mut i = 0;
        while i < ranges.len() {
            let start = ranges[i].0;
            let mut end = start + ranges[i].1;
            let mut j = i + 1;
            while j < ranges.len()
                && ranges[j].0 <= end + COALESCE_GAP
                && ranges[j].0 + ranges[j].1 - start <= MAX_GET
            {
                end = end.max(ranges[j].0 + ranges[j].1);
                j += 1;
            }
            let bytes = jobs
                .store
                .get_range(&ObjectPath::from(object), start..end)
                .await?;
            if bytes.len() as u64 != end - start {
                return Err(JobError::Corrupt {
                    object: object.to_string(),
                    message: format!("range {start}..{end} returned {} bytes", bytes.len()),
                });
            }
            report.bytes_read += end - start;
            for &(pos, len) in &ranges[i..j] {
                let at = (pos - start) as usize;
                out.insert(
                    (object.to_string(), pos),
                    bytes.slice(at..at + len as usize),
                );
            }
            i = j;
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) fn plan_for_test(state: &State, now: i64, s: &CompactionSettings) -> Vec<Piece> {
    state
        .topics()
        .flat_map(|t| (0..t.partition_count() as i32).map(move |p| (t.name().to_string(), p)))
        .flat_map(|(t, p)| pieces_for(state, &t, p, now, s))
        .collect()
}

#[cfg(test)]
pub(super) async fn write_for_test(
    jobs: &Jobs,
    pieces: Vec<Piece>,
    report: &mut Report,
) -> Result<(), JobError> {
    let s = jobs.settings.compaction;
    for object in pack(pieces, s.object_bytes) {
        write_object(jobs, &s, object, report).await?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) fn piece_sizes(pieces: &[Piece]) -> Vec<u64> {
    pieces.iter().map(Piece::bytes).collect()
}
