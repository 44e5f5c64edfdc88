//! The read path: "read partition P from offset O within these limits".
//!
//! The index (in the replicated state) says which object ranges hold the
//! records; the bytes come through the block cache (a miss is one ranged
//! GET); each batch's base offset (and, for LogAppendTime topics, its
//! timestamps) is rewritten on the way out, never decompressed. Readers
//! at the end of a partition wait on that partition alone ([`Waiter`]).
//! Fetch and ListOffsets use it, and so will every other reader.

use std::{pin::Pin, sync::Arc};

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use silt_coordinator::{
    ChunkLocation, MetaLog, PartitionSnapshot, TimestampQuery, TimestampType, TopicId,
};
use silt_tiering::{
    batch::{self, BatchError},
    ObjectReader, ReadError,
};
use tokio::sync::{futures::Notified, Notify};

use crate::error::{Classify, ErrorKind};

/// Index entries looked at by one read of one partition. Each is one
/// producer flush's worth of the partition; with the byte limits this
/// bounds the work of a read.
pub const MAX_CHUNKS_PER_READ: usize = 64;

/// How long a read beyond this agent's high watermark waits for the agent
/// to catch up with the metadata store before answering empty.
pub const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{topic}-{partition} does not exist")]
    UnknownTopicOrPartition { topic: String, partition: i32 },
    #[error("offset {offset} is outside {log_start}..={high_watermark}")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error("timestamp {0} is not a timestamp or a ListOffsets special value")]
    InvalidTimestamp(i64),
    #[error(transparent)]
    Storage(#[from] ReadError),
    #[error("object {object}: stored records are damaged: {source}")]
    Corrupt {
        object: String,
        #[source]
        source: BatchError,
    },
    #[error("object {object}: records cannot be decoded: {message}")]
    Undecodable { object: String, message: String },
}

impl Classify for FetchError {
    fn kind(&self) -> ErrorKind {
        match self {
            FetchError::UnknownTopicOrPartition { .. } => ErrorKind::UnknownTopicOrPartition,
            FetchError::OffsetOutOfRange { .. } => ErrorKind::OffsetOutOfRange,
            FetchError::InvalidTimestamp(_) => ErrorKind::InvalidRequest,
            FetchError::Storage(e) => e.kind(),
            FetchError::Corrupt { .. } | FetchError::Undecodable { .. } => ErrorKind::CorruptRecord,
        }
    }
}

/// How much one read may return.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Record bytes at most (whole batches).
    pub max_bytes: usize,
    /// Return the first batch even if it alone exceeds `max_bytes`, so a
    /// consumer can always make progress (Kafka's rule for the first
    /// partition with data in a response).
    pub min_one: bool,
}

/// Records read from a partition, with its position at the time.
#[derive(Debug, Clone)]
pub struct Records {
    /// Whole record batches with their committed offsets.
    pub bytes: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// The first offset of the oldest open transaction, else the high
    /// watermark.
    pub last_stable_offset: i64,
    /// For a `read_committed` read: the aborted transactions whose ranges
    /// reach into the records returned.
    pub aborted: Vec<silt_coordinator::state::AbortedTxn>,
}

/// What ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Latest,
    Earliest,
    MaxTimestamp,
    /// The first record with a timestamp at or after this one.
    Timestamp(i64),
}

impl OffsetQuery {
    /// Kafka's encoding: -1 latest, -2 earliest, -3 max timestamp, else a
    /// timestamp.
    pub fn from_kafka(ts: i64) -> Result<Self, FetchError> {
        match ts {
            -1 => Ok(Self::Latest),
            -2 => Ok(Self::Earliest),
            -3 => Ok(Self::MaxTimestamp),
            t if t >= 0 => Ok(Self::Timestamp(t)),
            t => Err(FetchError::InvalidTimestamp(t)),
        }
    }
}

#[derive(Clone)]
pub struct ReadPath {
    log: Arc<MetaLog>,
    reader: ObjectReader,
}

impl ReadPath {
    pub fn new(log: Arc<MetaLog>, reader: ObjectReader) -> Self {
        Self { log, reader }
    }

    /// Waits (up to [`CATCH_UP_WAIT`]) until this agent has applied what
    /// the metadata store holds now; whether it has. Offset answers should
    /// follow it: a lagging agent would give an old end of the log.
    pub async fn catch_up(&self) -> bool {
        self.log.catch_up(CATCH_UP_WAIT).await
    }

    /// The partition's position now.
    pub fn position(&self, topic: &str, partition: i32) -> Result<PartitionSnapshot, FetchError> {
        self.log.state().partition(topic, partition).ok_or_else(|| {
            FetchError::UnknownTopicOrPartition {
                topic: topic.to_string(),
                partition,
            }
        })
    }

    /// Reads whole batches from `offset` on within `limits`. A read that
    /// fails after some batches were read returns those batches; the
    /// client asks again from where they end.
    ///
    /// A read that fails on an object this agent's state still names may
    /// come from a state that lags: compaction or retention moved the
    /// records and object GC deleted the object after its grace period. The
    /// agent then catches up and, if its state moved on, reads again.
    pub async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: Limits,
    ) -> Result<Records, FetchError> {
        self.read_isolated(topic, partition, offset, limits, false)
            .await
    }

    /// [`ReadPath::read`]; with `committed` (Kafka's `read_committed`),
    /// only batches below the last stable offset, with the aborted
    /// transactions among them.
    pub async fn read_isolated(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: Limits,
        committed: bool,
    ) -> Result<Records, FetchError> {
        let before = self.log.applied();
        match self
            .read_once(topic, partition, offset, limits, committed)
            .await
        {
            Err(FetchError::Storage(e)) => {
                if self.log.catch_up(CATCH_UP_WAIT).await && self.log.applied() > before {
                    tracing::debug!(topic, partition, error = %e, "read failed on a lagging state; reading again");
                    self.read_once(topic, partition, offset, limits, committed)
                        .await
                } else {
                    Err(FetchError::Storage(e))
                }
            }
            other => other,
        }
    }

    async fn read_once(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: Limits,
        committed: bool,
    ) -> Result<Records, FetchError> {
        let mut caught_up = false;
        let (snap, chunks, aborted_from) = loop {
            // Decided under the state lock; the lock is never held across
            // an await.
            let found = {
                let state = self.log.state();
                let snap = state.partition(topic, partition).ok_or_else(|| {
                    FetchError::UnknownTopicOrPartition {
                        topic: topic.to_string(),
                        partition,
                    }
                })?;
                (offset <= snap.high_watermark)
                    .then(|| {
                        (
                            snap,
                            state.chunks_from(topic, partition, offset, MAX_CHUNKS_PER_READ),
                            // From the same state as the chunks: retention
                            // may prune the list while they are read.
                            if committed {
                                state.aborted_txns(topic, partition, offset, i64::MAX)
                            } else {
                                Vec::new()
                            },
                        )
                    })
                    .ok_or(snap)
            };
            let snap = match found {
                Ok(read) => break read,
                Err(snap) => snap,
            };
            // Beyond this agent's high watermark. The offset may come from
            // an agent ahead of this one: only an agent that has caught up
            // may call it out of range.
            if caught_up {
                return Err(FetchError::OffsetOutOfRange {
                    offset,
                    log_start: snap.log_start_offset,
                    high_watermark: snap.high_watermark,
                });
            }
            if !self.log.catch_up(CATCH_UP_WAIT).await {
                return Ok(Records {
                    bytes: Bytes::new(),
                    high_watermark: snap.high_watermark,
                    log_start_offset: snap.log_start_offset,
                    last_stable_offset: snap.last_stable_offset,
                    aborted: Vec::new(),
                });
            }
            caught_up = true;
        };
        if offset < snap.log_start_offset {
            return Err(FetchError::OffsetOutOfRange {
                offset,
                log_start: snap.log_start_offset,
                high_watermark: snap.high_watermark,
            });
        }
        // A read_committed reader stops at the last stable offset, which
        // is always a batch's first offset.
        let bound = if committed {
            snap.last_stable_offset
        } else {
            i64::MAX
        };
        let mut out = Vec::new();
        let mut failure = None;
        for c in &chunks {
            if out.len() >= limits.max_bytes && !(out.is_empty() && limits.min_one) {
                break;
            }
            if c.entry.base_offset >= bound {
                break;
            }
            let room = limits.max_bytes.saturating_sub(out.len());
            let min_one = out.is_empty() && limits.min_one;
            match self
                .read_chunk(c, offset, room, min_one, snap.timestamp_type)
                .await
            {
                Ok((bytes, cut)) => {
                    let kept = below(&bytes, bound);
                    out.extend_from_slice(&bytes[..kept]);
                    if cut || kept < bytes.len() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(topic, partition, object = %c.entry.object, error = %e, "read failed");
                    failure = Some(e);
                    break;
                }
            }
        }
        match failure {
            Some(e) if out.is_empty() => Err(e),
            _ => {
                let aborted = match last_offset(&out) {
                    Some(last) => aborted_from
                        .into_iter()
                        .filter(|a| a.first_offset <= last)
                        .collect(),
                    None => Vec::new(),
                };
                Ok(Records {
                    bytes: Bytes::from(out),
                    high_watermark: snap.high_watermark,
                    log_start_offset: snap.log_start_offset,
                    last_stable_offset: snap.last_stable_offset,
                    aborted,
                })
            }
        }
    }

    /// The partition's last stable offset now.
    pub fn last_stable_offset(&self, topic: &str, partition: i32) -> Result<i64, FetchError> {
        self.position(topic, partition)
            .map(|p| p.last_stable_offset)
    }

    /// One index entry's batches from `from` on, rewritten; and whether
    /// the byte limit cut them.
    async fn read_chunk(
        &self,
        c: &ChunkLocation,
        from: i64,
        room: usize,
        min_one: bool,
        timestamps: TimestampType,
    ) -> Result<(Vec<u8>, bool), FetchError> {
        let e = &c.entry;
        let bytes = self
            .reader
            .read_ahead(
                &e.object,
                c.object_size,
                e.position..e.position + e.length,
                c.run_end,
            )
            .await?;
        let append_time = (timestamps == TimestampType::LogAppendTime).then_some(e.append_time);
        let (out, _next, cut) =
            batch::rewrite_chunk(&bytes, e.base_offset, from, room, min_one, append_time).map_err(
                |source| FetchError::Corrupt {
                    object: e.object.clone(),
                    source,
                },
            )?;
        Ok((out, cut))
    }

    /// ListOffsets: `(timestamp, offset)` for the query, or `None` when no
    /// record is at or after the timestamp. The answer is the first
    /// *record* whose timestamp reaches the target (or the first holding the
    /// largest timestamp), as Kafka answers: the candidate batches are
    /// decompressed to find it. Topics stamped with LogAppendTime share one
    /// time per batch, so their answer is the batch's first record.
    pub async fn offset_for(
        &self,
        topic: &str,
        partition: i32,
        query: OffsetQuery,
    ) -> Result<Option<(i64, i64)>, FetchError> {
        let snap = self.position(topic, partition)?;
        let wanted = match query {
            OffsetQuery::Latest => return Ok(Some((-1, snap.high_watermark))),
            OffsetQuery::Earliest => return Ok(Some((-1, snap.log_start_offset))),
            OffsetQuery::MaxTimestamp => TimestampQuery::Max,
            OffsetQuery::Timestamp(t) => TimestampQuery::AtOrAfter(t),
        };
        let candidates =
            self.log
                .state()
                .chunks_for_timestamp(topic, partition, wanted, MAX_CHUNKS_PER_READ);
        let append_time = snap.timestamp_type == TimestampType::LogAppendTime;
        for c in candidates {
            let e = &c.entry;
            let bytes = self
                .reader
                .read(&e.object, c.object_size, e.position..e.position + e.length)
                .await?;
            let corrupt = |source| FetchError::Corrupt {
                object: e.object.clone(),
                source,
            };
            // Batches from the log start on, with their committed offsets.
            let (batches, _, _) = batch::rewrite_chunk(
                &bytes,
                e.base_offset,
                snap.log_start_offset,
                usize::MAX,
                true,
                append_time.then_some(e.append_time),
            )
            .map_err(corrupt)?;
            let mut at = 0usize;
            while at < batches.len() {
                let h = batch::parse_one(&batches, at).map_err(corrupt)?;
                let one = &batches[at..at + h.size as usize];
                at += h.size as usize;
                let target = match wanted {
                    TimestampQuery::AtOrAfter(t) if h.max_timestamp >= t => t,
                    TimestampQuery::Max if c.entry.max_timestamp == h.max_timestamp => {
                        h.max_timestamp
                    }
                    _ => continue,
                };
                let first = i64::from_be_bytes(one[0..8].try_into().expect("8 bytes"));
                if append_time {
                    return Ok(Some((h.max_timestamp, first.max(snap.log_start_offset))));
                }
                let mut buf = Bytes::copy_from_slice(one);
                let records = RecordBatchDecoder::decode(&mut buf)
                    .map_err(|err| FetchError::Undecodable {
                        object: e.object.clone(),
                        message: err.to_string(),
                    })?
                    .records;
                let found = records.iter().find(|r| {
                    r.offset >= snap.log_start_offset
                        && match wanted {
                            TimestampQuery::AtOrAfter(_) => r.timestamp >= target,
                            TimestampQuery::Max => r.timestamp == target,
                        }
                });
                if let Some(r) = found {
                    return Ok(Some((r.timestamp, r.offset)));
                }
            }
        }
        Ok(None)
    }

    /// A waiter for changes to these partitions (long polls).
    pub fn waiter(&self, partitions: impl IntoIterator<Item = (TopicId, i32)>) -> Waiter {
        Waiter {
            notifies: partitions
                .into_iter()
                .map(|(t, p)| self.log.partition_changes(t, p))
                .collect(),
        }
    }

    /// What the block cache did, for metrics.
    pub fn cache_stats(&self) -> silt_tiering::CacheStats {
        self.reader.cache_stats()
    }

    /// The topic id of a topic, for [`ReadPath::waiter`].
    pub fn topic_id(&self, topic: &str) -> Option<TopicId> {
        self.log.state().topic(topic).map(|t| t.id())
    }
}

/// Waits for any of a set of partitions to change.
pub struct Waiter {
    notifies: Vec<Arc<Notify>>,
}

/// Interest registered before a read: a change after [`Waiter::arm`] is
/// never missed.
pub struct Armed<'a> {
    waits: Vec<Pin<Box<Notified<'a>>>>,
}

impl Waiter {
    /// Registers interest now; await [`Armed::changed`] after reading.
    pub fn arm(&self) -> Armed<'_> {
        let mut waits: Vec<_> = self
            .notifies
            .iter()
            .map(|n| Box::pin(n.notified()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        Armed { waits }
    }
}

impl Armed<'_> {
    /// Resolves once any of the partitions changed since `arm`.
    pub async fn changed(self) {
        let _waiting = crate::metrics::Held::new(&crate::metrics::global().long_poll_waiters);
        if self.waits.is_empty() {
            std::future::pending::<()>().await;
        }
        futures::future::select_all(self.waits).await;
    }
}

#[cfg(test)]
mod tests;

/// How many bytes of `batches` (whole batches with their offsets) hold
/// batches that start below `bound`.
fn below(batches: &[u8], bound: i64) -> usize {
    let mut at = 0;
    while at + batch::LOG_OVERHEAD <= batches.len() {
        let base = i64::from_be_bytes(batches[at..at + 8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(batches[at + 8..at + 12].try_into().expect("4 bytes"));
        if base >= bound || len < 0 {
            break;
        }
        at += batch::LOG_OVERHEAD + len as usize;
    }
    at.min(batches.len())
}

/// The last offset of the last batch in `batches`, if any.
fn last_offset(batches: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut last = None;
    while at + batch::LOG_OVERHEAD + 27 <= batches.len() {
        let base = i64::from_be_bytes(batches[at..at + 8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(batches[at + 8..at + 12].try_into().expect("4 bytes"));
        let delta = i32::from_be_bytes(batches[at + 23..at + 27].try_into().expect("4 bytes"));
        last = Some(base + delta as i64);
        if len < 0 {
            break;
        }
        at += batch::LOG_OVERHEAD + len as usize;
    }
    last
}
