//! The commit log on a [`MetaStore`], replayed into the [`State`].
//!
//! Writers append records under `/silt/<cluster>/log/<writer>/<seq>`; the
//! store's revision orders them. Every agent tails the log with a watch and
//! applies records in revision order; a writer waits until its own record
//! is applied and reads the outcome (e.g. the assigned offsets) from there.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, RwLock, RwLockReadGuard, Weak,
    },
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{watch, Notify},
    task::JoinHandle,
};

use crate::{
    keys::Layout,
    lock::Lock,
    metastore::*,
    records::{Command, LogRecord, TopicId},
    state::{ChunkOutcome, Outcome, State},
};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("checkpoint {key}: {message}")]
    Checkpoint { key: String, message: String },
    #[error("commit log closed")]
    Closed,
    #[error("record at revision {0} was written but not applied within the timeout")]
    ApplyTimeout(Revision),
    /// The writer's fence failed: the record was not written.
    #[error("not written: the writer's registration {0} is gone or was replaced")]
    Fenced(String),
    /// A compare of the record's guard failed: the writer decided on a
    /// stale view; the record was not written.
    #[error("not written: {0} changed since the writer read it")]
    Conflict(String),
}

/// Conditions and writes that go into the same metadata-store transaction
/// as a log record: the record is written only if every compare holds,
/// and then the puts are too.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    pub compares: Vec<Compare>,
    pub ops: Vec<TxnOp>,
}

/// How long a writer waits to see its own record applied.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Lease of the checkpoint lock; kept alive while a checkpoint runs.
const CHECKPOINT_LOCK_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct CheckpointPointer {
    revision: i64,
    object: String,
}

/// The log keys, spelled once (from the cluster's [`Layout`]).
struct Keys {
    log: String,
    checkpoint: String,
    checkpoint_lock: String,
}

impl Keys {
    fn new(cluster: &str) -> Self {
        let layout = Layout::new(cluster);
        Self {
            log: layout.log(),
            checkpoint: layout.checkpoint(),
            checkpoint_lock: layout.checkpoint_lock(),
        }
    }
}

/// Wakes readers waiting for a partition to change (long polls). Holds an
/// entry only while someone waits: entries are weak and swept as the map
/// grows.
#[derive(Default)]
struct Wakers {
    map: Mutex<BTreeMap<(TopicId, i32), Weak<Notify>>>,
    /// Size after the last sweep; the next sweep runs at twice that.
    swept: AtomicUsize,
}

impl Wakers {
    fn get(&self, topic: TopicId, partition: i32) -> Arc<Notify> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(&(topic, partition)).and_then(Weak::upgrade) {
            return n;
        }
        let n = Arc::new(Notify::new());
        map.insert((topic, partition), Arc::downgrade(&n));
        if map.len() > 2 * self.swept.load(Ordering::Relaxed).max(64) {
            map.retain(|_, w| w.strong_count() > 0);
            self.swept.store(map.len(), Ordering::Relaxed);
        }
        n
    }

    fn wake(&self, changed: &[(TopicId, i32)]) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for key in changed {
            if let Some(n) = map.get(key).and_then(Weak::upgrade) {
                n.notify_waiters();
            }
        }
    }

    fn wake_all(&self) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for n in map.values().filter_map(Weak::upgrade) {
            n.notify_waiters();
        }
    }
}

/// Registers a proposal while its proposer waits; removes it on drop.
struct Pending<'a> {
    shared: &'a Shared,
    seq: u64,
}

impl<'a> Pending<'a> {
    fn register(shared: &'a Shared, seq: u64) -> Self {
        shared
            .proposals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq, None);
        Self { shared, seq }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.shared
            .proposals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.seq);
    }
}

struct Shared {
    state: RwLock<State>,
    /// Revision the state reflects (every record at or below it is applied).
    applied: watch::Sender<Revision>,
    /// This writer's proposals in flight, by sequence number, with the
    /// revision and outcome of their record once applied. An entry exists
    /// only while its proposer waits, so nothing accumulates.
    proposals: Mutex<BTreeMap<u64, Option<(Revision, Outcome)>>>,
    writer_prefix: String,
    wakers: Wakers,
}

/// A handle on the replicated log. Cheap to share behind an `Arc`.
pub struct MetaLog {
    store: Arc<dyn MetaStore>,
    objects: Arc<dyn ObjectStore>,
    keys: Keys,
    shared: Arc<Shared>,
    seq: AtomicU64,
    tail: Mutex<Option<JoinHandle<()>>>,
}

impl MetaLog {
    /// Loads the latest checkpoint and the log after it, then tails the log.
    /// `writer` must be unique to this process (agent id + incarnation).
    pub async fn open(
        store: Arc<dyn MetaStore>,
        objects: Arc<dyn ObjectStore>,
        cluster: &str,
        writer: &str,
    ) -> Result<Arc<Self>, LogError> {
        let keys = Keys::new(cluster);
        let (state, applied) = load(&*store, &*objects, &keys).await?;
        let (tx, _) = watch::channel(applied);
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            applied: tx,
            proposals: Mutex::new(BTreeMap::new()),
            writer_prefix: Layout::new(cluster).log_writer(writer),
            wakers: Wakers::default(),
        });
        let log = Arc::new(Self {
            store: store.clone(),
            objects: objects.clone(),
            keys,
            shared: shared.clone(),
            seq: AtomicU64::new(0),
            tail: Mutex::new(None),
        });
        let handle = tokio::spawn(tail(store, objects, Keys::new(cluster), shared));
        *log.tail.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(log)
    }

    /// The metadata store this log is on.
    pub fn store(&self) -> Arc<dyn MetaStore> {
        self.store.clone()
    }

    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.shared.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Notified with the applied revision whenever records are applied.
    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.shared.applied.subscribe()
    }

    /// Notified (`notify_waiters`) whenever a record changes the partition:
    /// records appended, records deleted, the topic deleted or the state
    /// reloaded. Register interest (`Notified::enable`) before reading the
    /// state, then wait.
    pub fn partition_changes(&self, topic: TopicId, partition: i32) -> Arc<Notify> {
        self.shared.wakers.get(topic, partition)
    }

    pub fn applied(&self) -> Revision {
        *self.shared.applied.borrow()
    }

    /// How far this log is behind the metadata store: the revision of the
    /// newest log record there minus the revision applied here (0 when
    /// current); `None` if the store could not be read.
    pub async fn records_behind(&self) -> Option<i64> {
        let latest = self
            .store
            .latest_mod_revision(&self.keys.log)
            .await
            .ok()?
            .unwrap_or(0);
        Some((latest - self.applied()).max(0))
    }

    /// Waits, up to `timeout`, until this log has applied every record the
    /// metadata store holds now (its newest log record, or the checkpoint
    /// when a checkpoint deleted them). Returns whether it is current: an
    /// agent whose watch lags must not answer as if it were.
    pub async fn catch_up(&self, timeout: Duration) -> bool {
        let current = async {
            let target = async {
                let latest = self.store.latest_mod_revision(&self.keys.log).await?;
                let checkpoint = self
                    .store
                    .get(&self.keys.checkpoint)
                    .await?
                    .and_then(|kv| serde_json::from_slice::<CheckpointPointer>(&kv.value).ok())
                    .map(|p| p.revision);
                Ok::<_, MetaError>(latest.max(checkpoint).unwrap_or(0))
            };
            let target = target.await.ok()?;
            let mut rx = self.subscribe();
            rx.wait_for(|applied| *applied >= target)
                .await
                .ok()
                .map(|_| ())
        };
        matches!(tokio::time::timeout(timeout, current).await, Ok(Some(())))
    }

    /// Appends a record and waits until it is applied; returns its outcome.
    pub async fn propose(&self, command: Command) -> Result<Outcome, LogError> {
        self.propose_fenced(command, None).await
    }

    /// [`MetaLog::propose`], written only if `fence` holds at the write:
    /// the key exists with that create revision (an agent's registration,
    /// `Membership::fence`). A fence that fails is [`LogError::Fenced`],
    /// and nothing was written.
    pub async fn propose_fenced(
        &self,
        command: Command,
        fence: Option<(String, Revision)>,
    ) -> Result<Outcome, LogError> {
        self.propose_guarded(command, fence, Guard::default()).await
    }

    /// [`MetaLog::propose_fenced`] with a [`Guard`]: a failed compare is
    /// [`LogError::Conflict`] and nothing was written.
    pub async fn propose_guarded(
        &self,
        command: Command,
        fence: Option<(String, Revision)>,
        guard: Guard,
    ) -> Result<Outcome, LogError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let key = format!("{}{seq:020}", self.shared.writer_prefix);
        let _pending = Pending::register(&self.shared, seq);
        let mut rx = self.shared.applied.subscribe();
        let rev = self
            .append(
                seq,
                &key,
                Bytes::from(LogRecord::new(command).encode()),
                fence.as_ref(),
                &guard,
            )
            .await?;
        // The record is durable; if the watch cannot deliver it in time
        // (metadata store unreachable) the caller gets a retriable error.
        match tokio::time::timeout(APPLY_TIMEOUT, rx.wait_for(|applied| *applied >= rev)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(LogError::Closed),
            Err(_) => return Err(LogError::ApplyTimeout(rev)),
        }
        // The outcome is missing only if the record was applied from a
        // checkpoint after a reload; its effect is in the state either way.
        Ok(self.shared.applied_outcome(seq).map_or_else(
            || {
                Outcome::Invalid(format!(
                    "record at revision {rev} applied through a checkpoint reload"
                ))
            },
            |(_, o)| o,
        ))
    }

    /// Writes a log record exactly once. The put only creates the key, so a
    /// retry after an answer was lost finds the first write. A checkpoint
    /// may have deleted that first write meanwhile, so before each retry
    /// the writer also looks for its record among those already applied;
    /// and should a record still land twice, the state machine refuses a
    /// second commit of the same segment object.
    async fn append(
        &self,
        seq: u64,
        key: &str,
        value: Bytes,
        fence: Option<&(String, Revision)>,
        guard: &Guard,
    ) -> Result<Revision, LogError> {
        let mut compares = vec![Compare::version(key, CompareOp::Equal, 0)];
        compares.extend(guard.compares.iter().cloned());
        let mut success = vec![TxnOp::Put {
            key: key.to_string(),
            value: value.clone(),
            lease: None,
        }];
        success.extend(guard.ops.iter().cloned());
        if let Some((fence_key, created)) = fence {
            compares.push(Compare {
                key: fence_key.clone(),
                op: CompareOp::Equal,
                target: crate::metastore::CompareTarget::CreateRevision(*created),
            });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > 1 {
                if let Some((rev, _)) = self.shared.applied_outcome(seq) {
                    return Ok(rev);
                }
            }
            let result = self
                .store
                .txn(Txn {
                    compares: compares.clone(),
                    success: success.clone(),
                    failure: vec![TxnOp::Range(KeyRange::Key(key.to_string()))],
                })
                .await;
            match result {
                Ok(r) if r.succeeded => return Ok(r.revision),
                Ok(r) => {
                    // Written by an earlier attempt, or the fence failed.
                    let existing = r.responses.into_iter().find_map(|op| match op {
                        TxnOpResponse::Range(kvs) => kvs.into_iter().next(),
                        _ => None,
                    });
                    let guarded = guard.compares.first().map(|c| c.key.clone());
                    return match (existing, fence) {
                        (Some(kv), _) => Ok(kv.mod_revision),
                        // A guard's compare failed: surely not written on
                        // the first attempt.
                        (None, _) if attempt == 1 && guarded.is_some() => Err(LogError::Conflict(
                            guarded.unwrap_or_default(),
                        )),
                        (None, _) if guarded.is_some() => Err(LogError::Meta(MetaError::Unavailable(
                            "a guarded record's compare failed after a lost answer; it may have been written".into(),
                        ))),
                        // Surely not written: no earlier attempt could have.
                        (None, Some((fence_key, _))) if attempt == 1 => {
                            Err(LogError::Fenced(fence_key.clone()))
                        }
                        // An earlier attempt may have been written and a
                        // checkpoint have removed it since: unknown.
                        (None, Some((fence_key, _))) => Err(LogError::Meta(MetaError::Unavailable(
                            format!("fence {fence_key} failed after a lost answer; the record may have been written"),
                        ))),
                        (None, None) => Ok(r.revision),
                    };
                }
                Err(MetaError::Unavailable(e)) if attempt < 3 => {
                    tracing::warn!(key, error = %e, "appending to the log failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes the state to object storage, points the metadata store at it,
    /// and deletes the log records it covers. Returns the checkpoint revision,
    /// or `None` if another writer holds the checkpoint lock or this state is
    /// not newer than the current checkpoint (the pointer only moves forward).
    pub async fn checkpoint(&self) -> Result<Option<Revision>, LogError> {
        let Some(lock) = Lock::try_acquire(
            self.store.clone(),
            &self.keys.checkpoint_lock,
            &self.shared.writer_prefix,
            CHECKPOINT_LOCK_TTL,
        )
        .await?
        else {
            return Ok(None);
        };
        let result = self.checkpoint_locked().await;
        lock.release().await;
        result
    }

    async fn checkpoint_locked(&self) -> Result<Option<Revision>, LogError> {
        // The revision of the last log record in the state, not the store's
        // revision at load: a checkpoint must name a revision other agents'
        // log watches reach, or `catch_up` would wait for it forever.
        let (bytes, revision, skipped) = {
            let state = self.state();
            (
                state.to_checkpoint(),
                state.revision(),
                state.skipped_records(),
            )
        };
        // A state that skipped records it could not decode (written by a
        // newer build) lacks their effect: checkpointing it would delete
        // them from the log for every agent.
        if skipped > 0 {
            return Err(LogError::Checkpoint {
                key: self.keys.checkpoint.clone(),
                message: format!(
                    "this agent skipped {skipped} log records it cannot decode (written by a newer version?); upgrade it before it writes checkpoints"
                ),
            });
        }
        let object = format!("checkpoints/{revision:020}.json");
        let ckpt_err = |message: String| LogError::Checkpoint {
            key: object.clone(),
            message,
        };
        // The pointer only moves forward: an agent behind the current
        // checkpoint (its watch lags) has nothing to add.
        let old = self.store.get(&self.keys.checkpoint).await?;
        let old_pointer = match &old {
            Some(kv) => Some(
                serde_json::from_slice::<CheckpointPointer>(&kv.value).map_err(|e| {
                    LogError::Checkpoint {
                        key: self.keys.checkpoint.clone(),
                        message: format!("bad pointer: {e}"),
                    }
                })?,
            ),
            None => None,
        };
        if let Some(p) = &old_pointer {
            if p.revision >= revision {
                tracing::debug!(
                    applied = revision,
                    checkpoint = p.revision,
                    "state is not newer than the current checkpoint; not checkpointing"
                );
                return Ok(None);
            }
        }
        self.objects
            .put(&ObjectPath::from(object.as_str()), PutPayload::from(bytes))
            .await
            .map_err(|e| ckpt_err(e.to_string()))?;
        let pointer = serde_json::to_vec(&CheckpointPointer {
            revision,
            object: object.clone(),
        })
        .expect("pointer serializes");
        // The compare makes the check above and the swap one step.
        let compare = match &old {
            Some(kv) => {
                Compare::mod_revision(&self.keys.checkpoint, CompareOp::Equal, kv.mod_revision)
            }
            None => Compare::version(&self.keys.checkpoint, CompareOp::Equal, 0),
        };
        let swapped = self
            .store
            .txn(Txn {
                compares: vec![compare],
                success: vec![TxnOp::Put {
                    key: self.keys.checkpoint.clone(),
                    value: Bytes::from(pointer),
                    lease: None,
                }],
                failure: vec![],
            })
            .await?;
        if !swapped.succeeded {
            let _ = self
                .objects
                .delete(&ObjectPath::from(object.as_str()))
                .await;
            return Err(ckpt_err("checkpoint pointer changed concurrently".into()));
        }
        // Delete the records the checkpoint covers, a bounded batch per txn.
        let covered: Vec<String> = self
            .store
            .range(KeyRange::Prefix(self.keys.log.clone()))
            .await?
            .kvs
            .into_iter()
            .filter(|kv| kv.mod_revision <= revision)
            .map(|kv| kv.key)
            .collect();
        for keys in covered.chunks(100) {
            self.store
                .txn(Txn {
                    compares: vec![],
                    success: keys
                        .iter()
                        .map(|k| TxnOp::Delete(KeyRange::Key(k.clone())))
                        .collect(),
                    failure: vec![],
                })
                .await?;
        }
        if let Some(old) = old_pointer {
            if old.object != object {
                let _ = self
                    .objects
                    .delete(&ObjectPath::from(old.object.as_str()))
                    .await;
            }
        }
        // History before the checkpoint is no longer needed; a watcher still
        // behind it reloads from the checkpoint.
        self.store.compact(revision).await?;
        tracing::info!(revision, object = %object, records = covered.len(), "checkpoint written");
        Ok(Some(revision))
    }

    /// Revision of the current checkpoint, if there is one.
    pub async fn checkpoint_revision(&self) -> Result<Option<Revision>, LogError> {
        let Some(kv) = self.store.get(&self.keys.checkpoint).await? else {
            return Ok(None);
        };
        let p: CheckpointPointer =
            serde_json::from_slice(&kv.value).map_err(|e| LogError::Checkpoint {
                key: self.keys.checkpoint.clone(),
                message: format!("bad pointer: {e}"),
            })?;
        Ok(Some(p.revision))
    }

    pub fn close(&self) {
        if let Some(h) = self.tail.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.abort();
        }
    }
}

impl Drop for MetaLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads the checkpoint pointer and the log at one revision, loads the
/// checkpoint and applies the remaining records.
async fn load(
    store: &dyn MetaStore,
    objects: &dyn ObjectStore,
    keys: &Keys,
) -> Result<(State, Revision), LogError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = store
            .txn(Txn {
                compares: vec![],
                success: vec![
                    TxnOp::Range(KeyRange::Key(keys.checkpoint.clone())),
                    TxnOp::Range(KeyRange::Prefix(keys.log.clone())),
                ],
                failure: vec![],
            })
            .await?;
        let mut ranges = resp.responses.into_iter().map(|r| match r {
            TxnOpResponse::Range(kvs) => kvs,
            _ => Vec::new(),
        });
        let pointer = ranges.next().unwrap_or_default().into_iter().next();
        let mut log = ranges.next().unwrap_or_default();
        let mut state = match pointer {
            None => State::default(),
            Some(kv) => {
                let p: CheckpointPointer =
                    serde_json::from_slice(&kv.value).map_err(|e| LogError::Checkpoint {
                        key: keys.checkpoint.clone(),
                        message: format!("bad pointer: {e}"),
                    })?;
                let got = objects.get(&ObjectPath::from(p.object.as_str())).await;
                let bytes = match got {
                    Ok(g) => g.bytes().await,
                    Err(e) => Err(e),
                };
                match bytes {
                    Ok(b) => {
                        State::from_checkpoint(&b).map_err(|message| LogError::Checkpoint {
                            key: p.object.clone(),
                            message,
                        })?
                    }
                    // A concurrent checkpoint may have replaced and deleted it.
                    Err(e) if attempt < 5 => {
                        tracing::warn!(object = %p.object, error = %e, "checkpoint unreadable, retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => {
                        return Err(LogError::Checkpoint {
                            key: p.object,
                            message: e.to_string(),
                        })
                    }
                }
            }
        };
        log.sort_by_key(|kv| kv.mod_revision);
        for kv in log {
            if kv.mod_revision > state.revision() {
                state.apply_bytes(kv.mod_revision, &kv.value);
            }
        }
        tracing::info!(
            revision = resp.revision,
            topics = state.totals().topics,
            "metadata loaded"
        );
        return Ok((state, resp.revision));
    }
}

async fn tail(
    store: Arc<dyn MetaStore>,
    objects: Arc<dyn ObjectStore>,
    keys: Keys,
    shared: Arc<Shared>,
) {
    loop {
        let from = *shared.applied.borrow() + 1;
        let mut stream = match store.watch(KeyRange::Prefix(keys.log.clone()), from).await {
            Ok(s) => s,
            Err(e) => {
                handle_watch_error(&*store, &*objects, &keys, &shared, e).await;
                continue;
            }
        };
        while let Some(batch) = stream.next().await {
            match batch {
                Ok(events) => apply_events(&shared, events),
                Err(e) => {
                    handle_watch_error(&*store, &*objects, &keys, &shared, e).await;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Shared {
    /// Revision and outcome of this writer's record `seq`, once applied.
    fn applied_outcome(&self, seq: u64) -> Option<(Revision, Outcome)> {
        self.proposals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&seq)
            .cloned()
            .flatten()
    }
}

fn apply_events(shared: &Shared, events: Vec<Event>) {
    let mut last = None;
    let mut mine = Vec::new();
    let mut changed = Vec::new();
    let mut wake_all = false;
    {
        let mut state = shared.state.write().unwrap_or_else(|p| p.into_inner());
        for e in events {
            last = Some(e.kv.mod_revision);
            if e.kind != EventKind::Put || e.kv.mod_revision <= state.revision() {
                continue;
            }
            let (outcome, command) = state.apply_bytes(e.kv.mod_revision, &e.kv.value);
            match (&command, &outcome) {
                (Some(Command::Commit { chunks, .. }), Outcome::Committed(outcomes)) => {
                    changed.extend(
                        chunks
                            .iter()
                            .zip(outcomes)
                            .filter(|(_, o)| **o != ChunkOutcome::Rejected)
                            .map(|(c, _)| (c.topic, c.partition)),
                    );
                }
                // Rare records (topic deletion, deleted records, new
                // partitions) wake every waiting reader.
                (Some(_), _) => wake_all = true,
                (None, _) => {}
            }
            if let Some(seq) =
                e.kv.key
                    .strip_prefix(&shared.writer_prefix)
                    .and_then(|s| s.parse::<u64>().ok())
            {
                mine.push((seq, e.kv.mod_revision, outcome));
            }
        }
    }
    if !mine.is_empty() {
        let mut proposals = shared.proposals.lock().unwrap_or_else(|p| p.into_inner());
        for (seq, rev, outcome) in mine {
            // Only proposals someone waits for; the first application wins.
            if let Some(slot @ None) = proposals.get_mut(&seq) {
                *slot = Some((rev, outcome));
            }
        }
    }
    if let Some(rev) = last {
        shared.applied.send_if_modified(|a| {
            if rev > *a {
                *a = rev;
                true
            } else {
                false
            }
        });
    }
    if wake_all {
        shared.wakers.wake_all();
    } else if !changed.is_empty() {
        shared.wakers.wake(&changed);
    }
}

async fn handle_watch_error(
    store: &dyn MetaStore,
    objects: &dyn ObjectStore,
    keys: &Keys,
    shared: &Shared,
    e: MetaError,
) {
    match e {
        MetaError::Compacted { .. } => {
            tracing::warn!(error = %e, "log watch compacted, reloading from checkpoint");
            match load(store, objects, keys).await {
                Ok((state, rev)) => {
                    *shared.state.write().unwrap_or_else(|p| p.into_inner()) = state;
                    shared.applied.send_replace(rev);
                    shared.wakers.wake_all();
                }
                Err(e) => {
                    tracing::error!(error = %e, "reloading metadata failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        e => {
            tracing::warn!(error = %e, "log watch failed, retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{embedded::EmbeddedStore, records::TopicId};
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn propose_checkpoint_and_reload() {
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = MetaLog::open(meta.clone(), objects.clone(), "c", "a-1")
            .await
            .unwrap();
        let b = MetaLog::open(meta.clone(), objects.clone(), "c", "b-1")
            .await
            .unwrap();
        let create = Command::CreateTopic {
            name: "t".into(),
            id: TopicId([7; 16]),
            partitions: 1,
            config: Default::default(),
        };
        assert_eq!(
            a.propose(create.clone()).await.unwrap(),
            Outcome::TopicCreated(TopicId([7; 16]))
        );
        assert_eq!(
            b.propose(create).await.unwrap(),
            Outcome::TopicExists(TopicId([7; 16]))
        );
        let commit = |n| Command::Commit {
            object: format!("o{n}"),
            size: 100,
            chunks: vec![crate::records::ChunkRef {
                topic: TopicId([7; 16]),
                partition: 0,
                position: 8,
                length: 10,
                records: 5,
                max_timestamp: 0,
                append_time: 0,
                batches: vec![],
            }],
        };
        assert_eq!(
            a.propose(commit(1)).await.unwrap(),
            Outcome::Committed(vec![crate::state::ChunkOutcome::Appended { base: 0 }])
        );
        assert_eq!(
            b.propose(commit(2)).await.unwrap(),
            Outcome::Committed(vec![crate::state::ChunkOutcome::Appended { base: 5 }])
        );
        let rev = a.checkpoint().await.unwrap().unwrap();
        assert!(meta
            .range(KeyRange::Prefix("/silt/c/log/".into()))
            .await
            .unwrap()
            .kvs
            .is_empty());
        meta.compact(rev).await.unwrap();
        assert_eq!(
            a.propose(commit(3)).await.unwrap(),
            Outcome::Committed(vec![crate::state::ChunkOutcome::Appended { base: 10 }])
        );
        // A new reader starts from checkpoint + remaining log.
        let c = MetaLog::open(meta.clone(), objects.clone(), "c", "c-1")
            .await
            .unwrap();
        b.subscribe().wait_for(|r| *r >= a.applied()).await.unwrap();
        assert_eq!(*c.state(), *a.state());
        assert_eq!(*b.state(), *a.state());
        assert_eq!(c.state().partition("t", 0).unwrap().high_watermark, 15);
    }

    fn topic(id: u8) -> Command {
        Command::CreateTopic {
            name: format!("t{id}"),
            id: TopicId([id; 16]),
            partitions: 1,
            config: Default::default(),
        }
    }

    fn commit(topic: u8, n: u32) -> Command {
        Command::Commit {
            object: format!("o-{topic}-{n}"),
            size: 100,
            chunks: vec![crate::records::ChunkRef {
                topic: TopicId([topic; 16]),
                partition: 0,
                position: 8,
                length: 10,
                records: 5,
                max_timestamp: 0,
                append_time: 0,
                batches: vec![],
            }],
        }
    }

    /// A guarded record is written with its puts only while its compares
    /// hold; the guarded key's revision is then the record's revision (what
    /// the state machine keeps as a transaction's revision).
    #[tokio::test]
    async fn a_guarded_record_and_its_puts_are_written_together_or_not_at_all() {
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = MetaLog::open(meta.clone(), objects.clone(), "c", "a")
            .await
            .unwrap();
        let key = "/silt/c/txn/x";
        let guard = |compare: Compare| Guard {
            compares: vec![compare],
            ops: vec![
                TxnOp::Put {
                    key: key.into(),
                    value: Bytes::from_static(b"1"),
                    lease: None,
                },
                TxnOp::Put {
                    key: "/silt/c/other".into(),
                    value: Bytes::from_static(b"o"),
                    lease: None,
                },
            ],
        };
        let before = a.state().revision();
        let e = a
            .propose_guarded(
                topic(1),
                None,
                guard(Compare::mod_revision(key, CompareOp::Equal, 7)),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, LogError::Conflict(ref k) if k == key), "{e}");
        assert!(meta.get("/silt/c/other").await.unwrap().is_none());
        assert_eq!(a.state().revision(), before);
        a.propose_guarded(
            topic(1),
            None,
            guard(Compare::version(key, CompareOp::Equal, 0)),
        )
        .await
        .unwrap();
        let kv = meta.get(key).await.unwrap().unwrap();
        assert_eq!(kv.mod_revision, a.state().revision());
        assert!(meta.get("/silt/c/other").await.unwrap().is_some());
    }

    /// A record this build cannot decode (a newer writer's kind) is
    /// skipped, and the agent then refuses to checkpoint: its checkpoint
    /// would delete the record from the log without its effect.
    #[tokio::test]
    async fn an_agent_that_skipped_a_record_does_not_checkpoint() {
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = MetaLog::open(meta.clone(), objects.clone(), "c", "a")
            .await
            .unwrap();
        a.propose(topic(1)).await.unwrap();
        meta.put(
            "/silt/c/log/newer/1",
            Bytes::from_static(br#"{"v":1,"op":"something_newer","x":1}"#),
            None,
        )
        .await
        .unwrap();
        a.propose(commit(1, 0)).await.unwrap();
        assert_eq!(a.state().skipped_records(), 1);
        let err = a.checkpoint().await.unwrap_err().to_string();
        assert!(err.contains("cannot decode"), "{err}");
        assert!(meta.get("/silt/c/checkpoint").await.unwrap().is_none());
    }

    /// Defect: an agent whose watch lags took the checkpoint lock after a
    /// newer checkpoint, swapped the pointer back to its older state and
    /// deleted the newer checkpoint; the records between were lost.
    #[tokio::test]
    async fn a_lagging_checkpoint_never_replaces_a_newer_one() {
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = MetaLog::open(meta.clone(), objects.clone(), "c", "a")
            .await
            .unwrap();
        let lag = Arc::new(crate::faulty::Pausable::new(meta.clone()));
        let b = MetaLog::open(lag.clone(), objects.clone(), "c", "b")
            .await
            .unwrap();
        a.propose(topic(1)).await.unwrap();
        b.subscribe().wait_for(|r| *r >= a.applied()).await.unwrap();
        lag.pause();
        for n in 0..5 {
            a.propose(commit(1, n)).await.unwrap();
        }
        let ra = a.checkpoint().await.unwrap().expect("lock was free");
        assert!(b.applied() < ra, "b is behind");
        // b checkpoints what it has: it must not move the pointer back.
        let _ = b.checkpoint().await;
        let c = MetaLog::open(meta.clone(), objects.clone(), "c", "c")
            .await
            .unwrap();
        assert_eq!(*c.state(), *a.state());
        assert_eq!(c.state().partition("t1", 0).unwrap().high_watermark, 25);
        // And the newer checkpoint object is still there.
        let pointer = meta.get("/silt/c/checkpoint").await.unwrap().unwrap();
        let p: CheckpointPointer = serde_json::from_slice(&pointer.value).unwrap();
        assert_eq!(p.revision, ra);
        objects
            .get(&ObjectPath::from(p.object.as_str()))
            .await
            .unwrap();
    }

    /// A checkpoint written by an agent that has just loaded names the last
    /// log record it holds, not the store's revision at load (which other
    /// agents' log watches never reach), so everyone still catches up.
    #[tokio::test]
    async fn a_checkpoint_after_a_fresh_load_does_not_stall_catch_up() {
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = MetaLog::open(meta.clone(), objects.clone(), "c", "a")
            .await
            .unwrap();
        a.propose(topic(1)).await.unwrap();
        // A write outside the log moves the store's revision past it.
        meta.put("/silt/c/other", Bytes::from_static(b"x"), None)
            .await
            .unwrap();
        let b = MetaLog::open(meta.clone(), objects.clone(), "c", "b")
            .await
            .unwrap();
        let rb = b.checkpoint().await.unwrap().expect("lock was free");
        assert_eq!(rb, a.applied(), "the checkpoint names the last log record");
        assert!(
            a.catch_up(Duration::from_secs(2)).await,
            "a never caught up"
        );
    }

    /// Lets a writer's first log append land, runs a checkpoint that
    /// covers (and deletes) it, and reports the store unavailable: the
    /// writer's retry must not write the record a second time.
    struct LandsThenForgets {
        inner: Arc<dyn MetaStore>,
        checkpointer: Arc<MetaLog>,
        tripped: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl MetaStore for LandsThenForgets {
        async fn range(&self, range: KeyRange) -> crate::metastore::Result<RangeResponse> {
            self.inner.range(range).await
        }
        async fn put(
            &self,
            key: &str,
            value: Bytes,
            lease: Option<LeaseId>,
        ) -> crate::metastore::Result<Revision> {
            self.inner.put(key, value, lease).await
        }
        async fn delete(&self, range: KeyRange) -> crate::metastore::Result<(u64, Revision)> {
            self.inner.delete(range).await
        }
        async fn txn(&self, txn: Txn) -> crate::metastore::Result<TxnResponse> {
            let key = txn.success.iter().find_map(|op| match op {
                TxnOp::Put { key, .. } if key.starts_with("/silt/c/log/w/") => Some(key.clone()),
                _ => None,
            });
            let r = self.inner.txn(txn).await?;
            if let Some(key) = key {
                if !self.tripped.swap(true, Ordering::SeqCst) {
                    // Let the record be applied by the watchers first.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.checkpointer
                        .subscribe()
                        .wait_for(|a| *a >= r.revision)
                        .await
                        .unwrap();
                    let covered = self.checkpointer.checkpoint().await.unwrap();
                    assert!(covered.is_some_and(|c| c >= r.revision));
                    assert!(self.inner.get(&key).await?.is_none(), "deleted");
                    return Err(MetaError::Unavailable("connection reset".into()));
                }
            }
            Ok(r)
        }
        async fn lease_grant(&self, ttl: Duration) -> crate::metastore::Result<LeaseId> {
            self.inner.lease_grant(ttl).await
        }
        async fn lease_keep_alive(&self, lease: LeaseId) -> crate::metastore::Result<()> {
            self.inner.lease_keep_alive(lease).await
        }
        async fn lease_revoke(&self, lease: LeaseId) -> crate::metastore::Result<()> {
            self.inner.lease_revoke(lease).await
        }
        async fn watch(
            &self,
            range: KeyRange,
            start: Revision,
        ) -> crate::metastore::Result<WatchStream> {
            self.inner.watch(range, start).await
        }
        async fn compact(&self, revision: Revision) -> crate::metastore::Result<()> {
            self.inner.compact(revision).await
        }
    }

    /// Defect: a retry after `Unavailable` found the key gone (a checkpoint
    /// had deleted it) and wrote the commit again: every batch got a second
    /// offset range.
    #[tokio::test]
    async fn a_retried_append_never_commits_twice() {
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let admin = MetaLog::open(meta.clone(), objects.clone(), "c", "admin")
            .await
            .unwrap();
        admin.propose(topic(1)).await.unwrap();
        let flaky: Arc<dyn MetaStore> = Arc::new(LandsThenForgets {
            inner: meta.clone(),
            checkpointer: admin.clone(),
            tripped: Default::default(),
        });
        let w = MetaLog::open(flaky, objects.clone(), "c", "w")
            .await
            .unwrap();
        let outcome = w.propose(commit(1, 0)).await.unwrap();
        assert_eq!(
            outcome,
            Outcome::Committed(vec![crate::state::ChunkOutcome::Appended { base: 0 }])
        );
        let next = w.propose(commit(1, 1)).await.unwrap();
        assert_eq!(
            next,
            Outcome::Committed(vec![crate::state::ChunkOutcome::Appended { base: 5 }])
        );
        let fresh = MetaLog::open(meta, objects, "c", "r").await.unwrap();
        assert_eq!(fresh.state().partition("t1", 0).unwrap().high_watermark, 10);
        assert_eq!(*fresh.state(), *w.state());
    }

    /// Defect: a proposal that timed out waiting for its record left its
    /// outcome behind when the record was applied later.
    #[tokio::test(start_paused = true)]
    async fn timed_out_proposals_leave_nothing_behind() {
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let lag = Arc::new(crate::faulty::Pausable::new(meta.clone()));
        let w = MetaLog::open(lag.clone(), objects, "c", "w").await.unwrap();
        lag.pause();
        let e = w.propose(topic(1)).await.unwrap_err();
        assert!(matches!(e, LogError::ApplyTimeout(_)), "{e}");
        lag.resume();
        w.subscribe()
            .wait_for(|_| w.state().topic("t1").is_some())
            .await
            .unwrap();
        assert!(
            w.shared.proposals.lock().unwrap().is_empty(),
            "no outcome kept for a proposal nobody waits for"
        );
    }
}
