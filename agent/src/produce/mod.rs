//! The write path: batches from every connection and partition go into one
//! open segment; a sealed segment is uploaded with a create-only PUT, then
//! committed through the commit log, and only then are producers answered
//! with the offsets the commit assigned.
//!
//! Uploads run concurrently, but commits happen one at a time in seal
//! order, so batches sent in order on a connection get increasing offsets.
//! Retries of failed uploads belong to the object store wrapper
//! (`silt_tiering::store::Retrying`), not to this pipeline.

mod validate;

use std::{sync::Arc, time::Duration};
use tracing::Instrument;

use bytes::Bytes;
use object_store::{path::Path as ObjectPath, ObjectStore, PutMode, PutOptions, PutPayload};
use silt_coordinator::{
    BatchOutcome, BatchRef, ChunkOutcome, ChunkRef, Command, MetaLog, Outcome, TopicId,
};
use silt_tiering::{
    jobs::SEGMENTS_PREFIX,
    segment::{BatchMeta, ChunkMeta, ObjectIds, SegmentBuilder},
    ObjectReader,
};
use tokio::{
    sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

pub use validate::{validate, Limits, Validated};

use crate::{
    clock::Clock,
    error::{Classify, ErrorKind},
};

/// Batches for one partition of a produce request, already validated.
pub struct PartitionAppend {
    pub topic: TopicId,
    pub partition: i32,
    pub data: Bytes,
    pub batches: Vec<BatchMeta>,
    pub min_timestamp: i64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AppendError {
    /// The record set does not parse or fails its checksum.
    #[error("{0}")]
    Invalid(String),
    /// A batch whose header contradicts itself (Kafka's INVALID_RECORD).
    #[error("{0}")]
    InvalidRecord(String),
    /// Record batches other than magic 2.
    #[error("{0}")]
    UnsupportedFormat(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: u32, max: i32 },
    /// A transactional batch whose producer has no open transaction
    /// holding the partition (AddPartitionsToTxn first).
    #[error("the producer's transaction does not hold this partition")]
    InvalidTxnState,
    /// A CreateTime batch outside `message.timestamp.before/after.max.ms`.
    #[error("{0}")]
    InvalidTimestamp(String),
    /// The segment upload failed, or its commit was refused as too old:
    /// nothing was committed; retry.
    #[error("{0}")]
    Upload(String),
    /// The commit's outcome is unknown (the metadata store failed or did
    /// not answer); retry, idempotent producers are deduplicated.
    #[error("{0}")]
    Commit(String),
    /// The topic or partition vanished before the commit.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// An idempotent producer's batch does not follow its previous one.
    #[error("out of order sequence number")]
    OutOfOrderSequence,
    /// An idempotent producer's epoch is older than one already seen.
    #[error("producer epoch is stale (fenced)")]
    InvalidProducerEpoch,
    #[error("agent shutting down")]
    ShuttingDown,
    /// This agent is not (or no longer) registered, so its commits are
    /// fenced off: nothing was committed; the client should use the
    /// leader Metadata names.
    #[error("{0}")]
    NotRegistered(String),
}

impl Classify for AppendError {
    fn kind(&self) -> ErrorKind {
        match self {
            AppendError::Invalid(_) => ErrorKind::CorruptRecord,
            AppendError::InvalidRecord(_) => ErrorKind::InvalidRecord,
            AppendError::UnsupportedFormat(_) => ErrorKind::UnsupportedRecordFormat,
            AppendError::TooLarge { .. } => ErrorKind::RecordTooLarge,
            AppendError::InvalidTimestamp(_) => ErrorKind::InvalidTimestamp,
            AppendError::InvalidTxnState => ErrorKind::InvalidTxnState,
            AppendError::Upload(_) => ErrorKind::StorageUnavailable,
            AppendError::Commit(_) => ErrorKind::MetadataTimeout,
            AppendError::UnknownTopicOrPartition => ErrorKind::UnknownTopicOrPartition,
            AppendError::OutOfOrderSequence => ErrorKind::OutOfOrderSequence,
            AppendError::InvalidProducerEpoch => ErrorKind::ProducerFenced,
            AppendError::ShuttingDown | AppendError::NotRegistered(_) => ErrorKind::ShuttingDown,
        }
    }
}

/// The base offset assigned to each partition append, or why it failed.
pub type AppendResult = Vec<Result<i64, AppendError>>;

struct Pending {
    parts: Vec<PartitionAppend>,
    reply: oneshot::Sender<AppendResult>,
    permit: OwnedSemaphorePermit,
    /// The registration when the request arrived (`None`: commits are not
    /// fenced).
    registration: Option<(String, i64)>,
}

struct Waiter {
    /// Per partition append: (chunk index, batches before it in the chunk,
    /// its batch count).
    slots: Vec<(usize, u64, usize)>,
    reply: oneshot::Sender<AppendResult>,
    _permit: OwnedSemaphorePermit,
}

const NOT_REGISTERED: &str = "this agent's registration in the cluster lapsed (its membership lease) while the records waited; nothing was written";

/// This agent's registration fence ([`silt_coordinator::Membership::fence`]):
/// `None` while it is not registered.
pub type Fence = Arc<dyn Fn() -> Option<(String, i64)> + Send + Sync>;

struct Sealed {
    key: String,
    /// The registration its batches were accepted under.
    fence: Option<(String, i64)>,
    size: u64,
    /// Wall clock at sealing: the LogAppendTime of the segment's records.
    append_time: i64,
    chunks: Vec<ChunkMeta>,
    waiters: Vec<Waiter>,
    upload: Option<JoinHandle<Result<(), AppendError>>>,
}

#[derive(Clone)]
pub struct ProduceConfig {
    pub flush_interval: Duration,
    pub flush_bytes: u64,
    pub max_inflight_bytes: u32,
    pub max_concurrent_uploads: usize,
    /// A segment is sealed before its commit record could grow past this
    /// (etcd refuses requests above 1.5 MiB by default).
    pub max_commit_record_bytes: usize,
}

/// Upper bounds of a commit record's size: per chunk (partition) and per
/// record batch listed, in its JSON encoding, plus the record's envelope.
const COMMIT_BYTES_PER_CHUNK: usize = 256;
const COMMIT_BYTES_PER_BATCH: usize = 128;
const COMMIT_BYTES_BASE: usize = 256;

/// Commit-record bytes `parts` can add to a segment, counting each as a new
/// chunk.
fn commit_bytes(parts: &[PartitionAppend]) -> usize {
    parts
        .iter()
        .map(|p| COMMIT_BYTES_PER_CHUNK + p.batches.len() * COMMIT_BYTES_PER_BATCH)
        .sum()
}

/// What the pipeline works with.
#[derive(Clone)]
pub struct Pipeline {
    pub store: Arc<dyn ObjectStore>,
    pub log: Arc<MetaLog>,
    /// Freshly uploaded segments are offered to the reader's cache.
    pub reader: ObjectReader,
    pub clock: Arc<dyn Clock>,
    /// Names the segments.
    pub ids: Arc<dyn ObjectIds>,
}

/// Cheap handle used by connections to append.
#[derive(Clone)]
pub struct Producer {
    tx: mpsc::Sender<Pending>,
    budget: Arc<Semaphore>,
    max_inflight: u32,
    max_commit_bytes: usize,
    fence: Arc<std::sync::OnceLock<Fence>>,
}

impl Producer {
    /// Starts the segment writer and committer. They stop once `shutdown`
    /// fires and everything accepted before has been flushed and answered;
    /// await the returned handle to know when.
    pub fn start(
        config: ProduceConfig,
        parts: Pipeline,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1024);
        let (sealed_tx, sealed_rx) = mpsc::channel(config.max_concurrent_uploads.max(1));
        let budget = Arc::new(Semaphore::new(config.max_inflight_bytes as usize));
        let log = parts.log.clone();
        let fence = Arc::new(std::sync::OnceLock::new());
        let writer = tokio::spawn(segment_writer(
            config.clone(),
            rx,
            sealed_tx,
            parts,
            fence.clone(),
            shutdown,
        ));
        let committer = tokio::spawn(committer(sealed_rx, log));
        let done = tokio::spawn(async move {
            let _ = writer.await;
            let _ = committer.await;
        });
        (
            Self {
                tx,
                budget,
                max_inflight: config.max_inflight_bytes,
                max_commit_bytes: config.max_commit_record_bytes,
                fence,
            },
            done,
        )
    }

    /// Fences every commit from now on on this agent's registration: data
    /// is accepted only while registered, and a segment commits only if
    /// the registration it was accepted under is still the agent's, so an
    /// agent that other agents (and so clients) may have given up on never
    /// commits records a client has meanwhile sent elsewhere. Set once,
    /// after joining the cluster; without it (silt-http, tests) commits are
    /// not fenced.
    pub fn set_fence(&self, fence: Fence) {
        let _ = self.fence.set(fence);
    }

    /// Bytes of produce requests in flight (accepted, not yet answered),
    /// and the budget they count against (`max_inflight_bytes`).
    pub fn inflight_bytes(&self) -> (u64, u64) {
        let budget = self.max_inflight as u64;
        let free = self.budget.available_permits() as u64;
        (budget.saturating_sub(free), budget)
    }

    /// Queues partitions' batches behind everything queued before; the
    /// returned future resolves once they are committed (or failed). Waits
    /// here, before queueing, while the in-flight byte budget is full.
    ///
    /// Callers queue a connection's requests one after another, so batches
    /// sent in order on a connection are appended in that order.
    ///
    /// A request whose commit record would be large (many partitions or
    /// many idempotent batches) is queued in groups of at most half a
    /// commit record each, so that no segment's commit can grow past
    /// `max_commit_record_bytes`.
    pub async fn submit(
        &self,
        parts: Vec<PartitionAppend>,
    ) -> impl std::future::Future<Output = AppendResult> + Send + 'static {
        // The registration is read as the request arrives, not when the
        // segment writer gets to it: requests that waited out an outage
        // (for the byte budget, in the queue) while clients gave up on
        // this agent must not commit under a registration made since.
        let registration = match self.fence.get().map(|f| f()) {
            None => None,
            Some(Some(r)) => Some(r),
            Some(None) => {
                let n = parts.len();
                return futures::future::Either::Left(std::future::ready(vec![
                    Err(
                        AppendError::NotRegistered(NOT_REGISTERED.into())
                    );
                    n
                ]));
            }
        };
        let mut groups: Vec<Vec<PartitionAppend>> = Vec::new();
        let mut size = 0;
        for p in parts {
            let add = commit_bytes(std::slice::from_ref(&p));
            if groups.is_empty() || size + add > self.max_commit_bytes / 2 {
                groups.push(Vec::new());
                size = 0;
            }
            size += add;
            groups.last_mut().expect("pushed above").push(p);
        }
        let mut queued = Vec::with_capacity(groups.len());
        for parts in groups {
            let n = parts.len();
            let bytes: u64 = parts.iter().map(|p| p.data.len() as u64).sum();
            // A request larger than the whole budget takes all of it.
            let permits = bytes.clamp(1, self.max_inflight as u64) as u32;
            let rx = match self.budget.clone().acquire_many_owned(permits).await {
                Ok(permit) => {
                    let (reply, rx) = oneshot::channel();
                    let pending = Pending {
                        parts,
                        reply,
                        permit,
                        registration: registration.clone(),
                    };
                    self.tx.send(pending).await.ok().map(|()| rx)
                }
                Err(_) => None,
            };
            queued.push((n, rx));
        }
        futures::future::Either::Right(async move {
            let mut out = Vec::new();
            for (n, rx) in queued {
                let fail = || vec![Err(AppendError::ShuttingDown); n];
                out.extend(match rx {
                    Some(rx) => rx.await.unwrap_or_else(|_| fail()),
                    None => fail(),
                });
            }
            out
        })
    }
}

fn segment_key(ulid: ulid::Ulid) -> String {
    silt_tiering::segment::dated_key(SEGMENTS_PREFIX, ulid)
}

/// The segment being filled, and what its commit record will hold.
#[derive(Default)]
struct Open {
    builder: SegmentBuilder,
    waiters: Vec<Waiter>,
    /// Records per partition (chunk) so far.
    partitions: std::collections::BTreeMap<(TopicId, i32), u64>,
    /// Upper bound of the commit record's size.
    commit_bytes: usize,
    /// The registration the batches were accepted under.
    fence: Option<(String, i64)>,
}

/// Records in one chunk at most: the state machine refuses a chunk of
/// i32::MAX records or more, and a request brings at most
/// `validate::MAX_RECORDS_PER_PARTITION`.
const MAX_CHUNK_RECORDS: u64 = 1 << 30;

impl Open {
    /// Commit-record bytes adding `p` would cost.
    fn cost(&self, p: &Pending) -> usize {
        p.parts
            .iter()
            .map(|a| {
                let chunk = if self.partitions.contains_key(&(a.topic, a.partition)) {
                    0
                } else {
                    COMMIT_BYTES_PER_CHUNK
                };
                chunk + a.batches.len() * COMMIT_BYTES_PER_BATCH
            })
            .sum()
    }

    /// Whether `p` fits in this segment: its commit record stays within
    /// `room` and no chunk grows past [`MAX_CHUNK_RECORDS`].
    fn fits(&self, p: &Pending, room: usize) -> bool {
        self.builder.is_empty()
            || (self.commit_bytes + self.cost(p) <= room
                && p.parts.iter().all(|a| {
                    let records: u64 = a.batches.iter().map(|b| b.records as u64).sum();
                    self.partitions
                        .get(&(a.topic, a.partition))
                        .copied()
                        .unwrap_or(0)
                        + records
                        <= MAX_CHUNK_RECORDS
                }))
    }

    fn add(&mut self, p: Pending) {
        self.commit_bytes += self.cost(&p);
        let slots = p
            .parts
            .into_iter()
            .map(|a| {
                let records: u64 = a.batches.iter().map(|b| b.records as u64).sum();
                *self.partitions.entry((a.topic, a.partition)).or_default() += records;
                let n = a.batches.len();
                let (chunk, before) =
                    self.builder
                        .append(a.topic.0, a.partition, a.data, a.batches, a.min_timestamp);
                (chunk, before, n)
            })
            .collect();
        self.waiters.push(Waiter {
            slots,
            reply: p.reply,
            _permit: p.permit,
        });
    }
}

async fn segment_writer(
    config: ProduceConfig,
    mut rx: mpsc::Receiver<Pending>,
    sealed_tx: mpsc::Sender<Sealed>,
    parts: Pipeline,
    fence: Arc<std::sync::OnceLock<Fence>>,
    shutdown: CancellationToken,
) {
    let mut open = Open::default();
    let mut deadline: Option<Instant> = None;
    let room = config
        .max_commit_record_bytes
        .saturating_sub(COMMIT_BYTES_BASE);
    loop {
        let seal_now = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                // Take what is already queued, then seal and stop.
                rx.close();
                while let Ok(p) = rx.try_recv() {
                    take(&mut open, p, room, &fence, &sealed_tx, &parts).await;
                }
                seal(&mut open, &sealed_tx, &parts, "shutdown").await;
                return;
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => Some("time"),
            p = rx.recv() => match p {
                Some(p) => {
                    if take(&mut open, p, room, &fence, &sealed_tx, &parts).await
                        && (deadline.is_none() || open.waiters.len() == 1)
                    {
                        deadline = Some(Instant::now() + config.flush_interval);
                    }
                    (open.builder.data_len() >= config.flush_bytes).then_some("bytes")
                }
                None => {
                    seal(&mut open, &sealed_tx, &parts, "shutdown").await;
                    return;
                }
            },
        };
        if let Some(reason) = seal_now {
            deadline = None;
            seal(&mut open, &sealed_tx, &parts, reason).await;
        }
    }
}

/// Adds `p` to the open segment, sealing it first if `p` does not fit or
/// was accepted under another registration; refuses `p` while this agent
/// is not registered. Whether `p` was added.
async fn take(
    open: &mut Open,
    p: Pending,
    room: usize,
    fence: &std::sync::OnceLock<Fence>,
    sealed_tx: &mpsc::Sender<Sealed>,
    parts: &Pipeline,
) -> bool {
    // Refused if the registration it arrived under is no longer this
    // agent's (the agent stepped down, or registered anew, meanwhile).
    let registration = p.registration.clone();
    if let Some(f) = fence.get() {
        if registration.is_none() || f() != registration {
            let n = p.parts.len();
            let _ = p.reply.send(vec![
                Err(AppendError::NotRegistered(NOT_REGISTERED.into()));
                n
            ]);
            return false;
        }
    }
    if !open.builder.is_empty() && (!open.fits(&p, room) || open.fence != registration) {
        // Its commit record or a chunk would grow too large, or the
        // registration changed: seal first.
        let reason = if open.fence != registration {
            "registration"
        } else {
            "full"
        };
        seal(open, sealed_tx, parts, reason).await;
    }
    open.fence = registration;
    open.add(p);
    true
}

/// Seals the open segment and starts its upload; `reason` says what
/// sealed it (`time`, `bytes`, `full`, `registration`, `shutdown`).
async fn seal(
    open: &mut Open,
    sealed_tx: &mpsc::Sender<Sealed>,
    parts: &Pipeline,
    reason: &'static str,
) {
    if open.builder.is_empty() {
        return;
    }
    let Open {
        builder,
        waiters,
        fence,
        ..
    } = std::mem::take(open);
    let (bytes, chunks) = builder.finish();
    let key = segment_key(parts.ids.next());
    let size = bytes.len() as u64;
    crate::metrics::global()
        .seal_bytes
        .get_or_create(&[("reason", reason)])
        .observe(size as f64);
    tracing::debug!(object = %key, bytes = size, chunks = chunks.len(), producers = waiters.len(), reason, "segment sealed");
    let upload = tokio::spawn(upload(
        parts.store.clone(),
        parts.reader.clone(),
        key.clone(),
        bytes,
    ));
    let append_time = parts.clock.now_ms();
    let sealed = Sealed {
        key,
        fence,
        size,
        append_time,
        chunks,
        waiters,
        upload: Some(upload),
    };
    // Waits while `max_concurrent_uploads` segments are ahead of this one.
    if let Err(mpsc::error::SendError(s)) = sealed_tx.send(sealed).await {
        if let Some(u) = s.upload {
            u.abort();
        }
        for w in s.waiters {
            let _ = w
                .reply
                .send(vec![Err(AppendError::ShuttingDown); w.slots.len()]);
        }
    }
}

/// One create-only PUT under a key unique to this segment.
async fn upload(
    store: Arc<dyn ObjectStore>,
    reader: ObjectReader,
    key: String,
    bytes: Bytes,
) -> Result<(), AppendError> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let started = Instant::now();
    let span = tracing::debug_span!("upload", object = %key, bytes = bytes.len());
    store
        .put_opts(
            &ObjectPath::from(key.as_str()),
            PutPayload::from(bytes.clone()),
            opts,
        )
        .instrument(span)
        .await
        .map_err(|e| {
            crate::metrics::global().upload_failures.inc();
            AppendError::Upload(format!("segment {key}: upload failed: {e}"))
        })?;
    let took = started.elapsed();
    crate::metrics::global()
        .upload_seconds
        .observe(took.as_secs_f64());
    tracing::debug!(object = %key, bytes = bytes.len(), ms = took.as_millis() as u64, "segment uploaded");
    reader.warm(&key, &bytes);
    Ok(())
}

async fn committer(mut rx: mpsc::Receiver<Sealed>, log: Arc<MetaLog>) {
    while let Some(mut s) = rx.recv().await {
        let started = Instant::now();
        let upload = s.upload.take().expect("sealed segments carry their upload");
        let result = match upload.await {
            Ok(Ok(())) => {
                let proposed = Instant::now();
                let span = tracing::debug_span!("commit", object = %s.key, chunks = s.chunks.len());
                let r = commit(&log, &s).instrument(span).await;
                if r.is_ok() {
                    crate::metrics::global()
                        .commit_seconds
                        .observe(proposed.elapsed().as_secs_f64());
                }
                r
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(AppendError::Upload(format!(
                "segment {}: upload task: {e}",
                s.key
            ))),
        };
        match &result {
            Ok(_) => {
                tracing::debug!(object = %s.key, bytes = s.size, chunks = s.chunks.len(), applied_revision = log.applied(), ms = started.elapsed().as_millis() as u64, "segment committed; acknowledging its producers")
            }
            Err(e) => {
                tracing::warn!(object = %s.key, error = %e, "segment not committed; producers get a retriable error")
            }
        }
        for w in s.waiters {
            let answer = match &result {
                Ok(outcomes) => w
                    .slots
                    .iter()
                    .map(|(chunk, first, n)| {
                        slot_result(&s.chunks, outcomes, *chunk, *first as usize, *n)
                    })
                    .collect(),
                Err(e) => vec![Err(e.clone()); w.slots.len()],
            };
            let _ = w.reply.send(answer);
        }
    }
}

/// Where a committed segment's chunks landed, read from the index: each
/// chunk's entry (same object and position) and its base offset. `None`
/// unless every chunk is found covering all of its records (a chunk some of
/// whose idempotent batches were duplicates is not: its outcome is per
/// batch, and the producer's retry is deduplicated).
fn placed_in_index(
    state: &silt_coordinator::state::State,
    object: &str,
    chunks: &[ChunkMeta],
) -> Option<Vec<ChunkOutcome>> {
    chunks
        .iter()
        .map(|c| {
            let topic = state.topic_by_id(&TopicId(c.topic_id))?;
            let entry = state
                .index(topic.name(), c.partition)?
                .iter()
                .find(|e| e.object == object && e.position == c.position)?;
            (entry.end_offset - entry.base_offset == c.records as i64).then_some(
                ChunkOutcome::Appended {
                    base: entry.base_offset,
                },
            )
        })
        .collect()
}

/// The base offset of one partition append (`n` batches from `first` in
/// chunk `chunk`), from the commit's outcome.
fn slot_result(
    chunks: &[ChunkMeta],
    outcomes: &[ChunkOutcome],
    chunk: usize,
    first: usize,
    n: usize,
) -> Result<i64, AppendError> {
    match outcomes.get(chunk) {
        None | Some(ChunkOutcome::Rejected) => Err(AppendError::UnknownTopicOrPartition),
        Some(ChunkOutcome::Appended { base }) => {
            let before: u64 = chunks[chunk].batches[..first]
                .iter()
                .map(|b| b.records as u64)
                .sum();
            Ok(base + before as i64)
        }
        Some(ChunkOutcome::PerBatch(v)) => {
            let mine = v
                .get(first..first + n)
                .ok_or(AppendError::UnknownTopicOrPartition)?;
            if mine.contains(&BatchOutcome::Fenced) {
                return Err(AppendError::InvalidProducerEpoch);
            }
            if mine.contains(&BatchOutcome::OutOfOrder) {
                return Err(AppendError::OutOfOrderSequence);
            }
            if mine.contains(&BatchOutcome::InvalidTxnState) {
                return Err(AppendError::InvalidTxnState);
            }
            match mine.first() {
                Some(BatchOutcome::Appended(o)) | Some(BatchOutcome::Duplicate(o)) => Ok(*o),
                _ => Err(AppendError::UnknownTopicOrPartition),
            }
        }
    }
}

async fn commit(log: &MetaLog, s: &Sealed) -> Result<Vec<ChunkOutcome>, AppendError> {
    let chunks = s
        .chunks
        .iter()
        .map(|c| {
            // Batch detail only where sequences must be checked.
            let idempotent = c.batches.iter().any(|b| b.producer_id >= 0);
            ChunkRef {
                topic: TopicId(c.topic_id),
                partition: c.partition,
                position: c.position,
                length: c.length,
                records: c.records,
                max_timestamp: c.max_timestamp,
                append_time: s.append_time,
                batches: if idempotent {
                    c.batches
                        .iter()
                        .map(|b| BatchRef {
                            records: b.records,
                            size: b.size,
                            producer_id: b.producer_id,
                            epoch: b.producer_epoch,
                            sequence: b.base_sequence,
                            transactional: b.transactional,
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    let command = Command::Commit {
        object: s.key.clone(),
        size: s.size,
        chunks,
    };
    match log.propose_fenced(command, s.fence.clone()).await {
        Ok(Outcome::Committed(bases)) => Ok(bases),
        Err(silt_coordinator::LogError::Fenced(key)) => Err(AppendError::NotRegistered(format!(
            "segment {}: not committed: this agent's registration {key} lapsed after the records were accepted",
            s.key
        ))),
        // Known not to be committed: like a failed upload, retriable.
        Ok(Outcome::StaleCommit) => Err(AppendError::Upload(format!(
            "segment {}: sealed before the commit horizon (it took longer than half of gc_orphan_age to commit); refused",
            s.key
        ))),
        // The record was applied, but this process caught up through a
        // checkpoint and kept no outcome for it: where the chunks landed is
        // in the index. Answering an error here would report committed
        // records as failed (and a client's resend would duplicate them).
        Ok(Outcome::Invalid(m)) if log.state().knows_object(&s.key) => {
            match placed_in_index(&log.state(), &s.key, &s.chunks) {
                Some(outcomes) => {
                    tracing::info!(object = %s.key, "commit outcome recovered from the index");
                    Ok(outcomes)
                }
                None => Err(AppendError::Commit(format!(
                    "segment {}: committed ({m}), but its chunks are no longer in the index whole",
                    s.key
                ))),
            }
        }
        Ok(other) => Err(AppendError::Commit(format!(
            "segment {}: unexpected commit outcome {other:?}",
            s.key
        ))),
        Err(e) => Err(AppendError::Commit(format!(
            "segment {}: commit failed: {e}",
            s.key
        ))),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn segment_keys_are_dated() {
        let u = ulid::Ulid::from_parts(1_767_225_600_000, 7); // 2026-01-01T00:00:00Z
        assert!(
            segment_key(u).starts_with("segments/2026/01/01/"),
            "{}",
            segment_key(u)
        );
        let u = ulid::Ulid::from_parts(951_782_400_000, 7); // 2000-02-29
        assert!(segment_key(u).starts_with("segments/2000/02/29/"));
    }
}
