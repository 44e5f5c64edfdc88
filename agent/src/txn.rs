//! The transaction coordinator (decision 0011). Every decision is taken on
//! this agent's view of the state machine and written as a log record
//! guarded by the transactional id's key: a stale view fails the guard,
//! catches up and decides again, so any agent may serve any transactional
//! id, and one record ends a transaction on every partition.

use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use silt_coordinator::{
    keys::Layout,
    metastore::{Compare, CompareOp, TxnOp},
    records::{TxnOffset, TxnPartition},
    state::{State, TxnEntry, TxnOutcome, TxnState},
    ChunkRef, Command, Committed, Guard, LogError, TopicId,
};
use silt_tiering::{
    cache::ObjectReader,
    segment::{BatchMeta, ObjectIds, SegmentBuilder},
};

use crate::{
    broker::Broker,
    error::{Classify, ErrorKind},
};

/// Attempts at one decision before CONCURRENT_TRANSACTIONS.
const ATTEMPTS: usize = 8;
/// How long a writer waits to catch up after a conflict.
const CATCH_UP: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// A newer instance of the producer exists.
    #[error("producer fenced: transactional id {0} has a newer producer epoch")]
    Fenced(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    InvalidMapping(String),
    #[error("unknown topic or partition {0}")]
    UnknownPartition(String),
    #[error("{0}")]
    InvalidTimeout(String),
    /// Other writers kept changing the transaction; retry.
    #[error("{0}")]
    Concurrent(String),
    /// The metadata store or object storage failed; retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    TooLarge(String),
}

impl Classify for TxnError {
    fn kind(&self) -> ErrorKind {
        match self {
            TxnError::Fenced(_) => ErrorKind::TxnProducerFenced,
            TxnError::InvalidState(_) => ErrorKind::InvalidTxnState,
            TxnError::InvalidMapping(_) => ErrorKind::InvalidProducerIdMapping,
            TxnError::UnknownPartition(_) => ErrorKind::UnknownTopicOrPartition,
            TxnError::InvalidTimeout(_) => ErrorKind::InvalidTransactionTimeout,
            TxnError::Concurrent(_) => ErrorKind::ConcurrentTransactions,
            TxnError::Unavailable(_) => ErrorKind::CoordinatorUnavailable,
            TxnError::TooLarge(_) => ErrorKind::InvalidRequest,
        }
    }
}

/// What the coordinator decides with: the commit log, the producer-id
/// allocator, the offset store, the clock and the timeout bound.
pub struct TxnCtx<'a> {
    pub log: &'a silt_coordinator::MetaLog,
    pub producer_ids: &'a silt_coordinator::ProducerIds,
    pub offsets: &'a silt_coordinator::OffsetStore,
    pub clock: &'a dyn crate::clock::Clock,
    /// `transaction_max_timeout`.
    pub max_timeout: Duration,
    /// The cluster's name (where the agents are registered).
    pub cluster: &'a str,
    /// Refuse to write transaction records while a registered agent does
    /// not advertise the `transactions` feature (it would skip them).
    pub check_features: bool,
}

/// How [`Transactions::end`] ends a transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndOpts {
    /// Bump the producer's epoch, fencing the instance that left the
    /// transaction open (timeouts, a new instance's InitProducerId).
    pub fence: bool,
    /// End only the transaction that started at this time: once it has
    /// ended, a later one of the same epoch is not touched.
    pub started: Option<i64>,
    /// End it only while it is past its timeout (the coordinator's own
    /// abort: the producer may have ended it meanwhile).
    pub only_if_expired: bool,
}

/// Where the coordinator writes its marker objects.
pub struct Transactions {
    store: Arc<dyn ObjectStore>,
    reader: ObjectReader,
    ids: Arc<dyn ObjectIds>,
    layout: Layout,
}

/// What one attempt decided.
enum Step<T> {
    /// Answer without writing anything.
    Answer(T),
    /// Write this record (and these extra operations) and read its outcome.
    Write(Command, Vec<TxnOp>),
}

impl Transactions {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        reader: ObjectReader,
        ids: Arc<dyn ObjectIds>,
        cluster: &str,
    ) -> Self {
        Self {
            store,
            reader,
            ids,
            layout: Layout::new(cluster),
        }
    }

    /// The guard of a record about transactional id `id`: its key must be
    /// where this view last saw it, and moves to the record's revision.
    fn guard(&self, revision: Option<i64>, id: &str, extra: Vec<TxnOp>) -> Guard {
        let key = self.layout.transaction(id);
        let compare = at_revision(&key, revision);
        let mut ops = vec![TxnOp::Put {
            key,
            value: Bytes::new(),
            lease: None,
        }];
        ops.extend(extra);
        Guard {
            compares: vec![compare],
            ops,
        }
    }

    /// Decides on the current view and writes the decision, again after
    /// each conflict; `interpret` turns the record's outcome into an
    /// answer, or `None` to decide again.
    async fn decide<T>(
        &self,
        cx: &TxnCtx<'_>,
        id: &str,
        mut step: impl FnMut(&State) -> Result<Step<T>, TxnError>,
        mut interpret: impl FnMut(TxnOutcome) -> Option<Result<T, TxnError>>,
    ) -> Result<T, TxnError> {
        Self::gate(cx).await?;
        for _ in 0..ATTEMPTS {
            Self::current(cx).await?;
            let (command, guard) = {
                let state = cx.log.state();
                match step(&state)? {
                    Step::Answer(t) => return Ok(t),
                    Step::Write(command, extra) => {
                        (command, self.guard(state.txn_key_revision(id), id, extra))
                    }
                }
            };
            match cx.log.propose_guarded(command, None, guard).await {
                Ok(silt_coordinator::state::Outcome::Txn(o)) => {
                    if let Some(answer) = interpret(o) {
                        return answer;
                    }
                }
                Ok(other) => {
                    return Err(TxnError::Unavailable(format!(
                        "transactional id {id}: unexpected outcome {other:?}"
                    )))
                }
                Err(LogError::Conflict(_)) => {}
                Err(e) => return Err(TxnError::Unavailable(e.to_string())),
            }
            cx.log.catch_up(CATCH_UP).await;
        }
        Err(TxnError::Concurrent(format!(
            "transactional id {id} kept changing; retry"
        )))
    }

    /// InitProducerId with a transactional id: the producer id and the
    /// next epoch; an open transaction of an older instance is aborted
    /// first, and the producer that left it fenced.
    pub async fn init_producer_id(
        &self,
        cx: &TxnCtx<'_>,
        id: &str,
        timeout_ms: i32,
        given: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        let max = cx.max_timeout.as_millis() as i64;
        if timeout_ms <= 0 || timeout_ms as i64 > max {
            return Err(TxnError::InvalidTimeout(format!(
                "transaction.timeout.ms {timeout_ms} is not in 1..={max} (transaction_max_timeout)"
            )));
        }
        Self::gate(cx).await?;
        let mut fresh: Option<i64> = None;
        for _ in 0..ATTEMPTS {
            Self::current(cx).await?;
            let current = cx.log.state().transaction(id).cloned();
            if let (Some(e), Some((pid, epoch))) = (&current, given) {
                // KIP-360: a producer naming its id and epoch must be the
                // current instance, or the one the coordinator fenced by a
                // timeout (the epoch before).
                if e.producer_id != pid || (e.epoch != epoch && e.epoch != epoch.saturating_add(1))
                {
                    return Err(TxnError::Fenced(id.to_string()));
                }
            }
            if let Some(e) = current.as_ref().filter(|e| e.state == TxnState::Ongoing) {
                let opts = EndOpts {
                    fence: true,
                    started: Some(e.start_time),
                    only_if_expired: false,
                };
                match self.end(cx, id, e.producer_id, e.epoch, false, opts).await {
                    // Another writer ended or changed it meanwhile: decide again.
                    Ok(()) | Err(TxnError::InvalidState(_)) | Err(TxnError::Fenced(_)) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            let (pid, epoch) = match &current {
                Some(e) if e.epoch < i16::MAX - 1 => (e.producer_id, e.epoch + 1),
                _ => {
                    let pid = match fresh {
                        Some(p) => p,
                        None => {
                            let p = cx
                                .producer_ids
                                .next()
                                .await
                                .map_err(|e| TxnError::Unavailable(e.to_string()))?;
                            fresh = Some(p);
                            p
                        }
                    };
                    (pid, 0)
                }
            };
            let now = cx.clock.now_ms();
            let done = self
                .decide(
                    cx,
                    id,
                    |state| {
                        // Decided above; only write if nothing changed.
                        if state
                            .transaction(id)
                            .map(|e| (e.producer_id, e.epoch, e.state))
                            != current.as_ref().map(|e| (e.producer_id, e.epoch, e.state))
                        {
                            return Ok(Step::Answer(false));
                        }
                        Ok(Step::Write(
                            Command::InitTxn {
                                id: id.to_string(),
                                producer_id: pid,
                                epoch,
                                timeout_ms: timeout_ms as i64,
                                time: now,
                            },
                            Vec::new(),
                        ))
                    },
                    |o| match o {
                        TxnOutcome::Done => Some(Ok(true)),
                        _ => Some(Ok(false)),
                    },
                )
                .await?;
            if done {
                return Ok((pid, epoch));
            }
            cx.log.catch_up(CATCH_UP).await;
        }
        Err(TxnError::Concurrent(format!(
            "transactional id {id} kept changing; retry"
        )))
    }

    /// Refuses while an agent that cannot read transaction records is
    /// registered (a rolling upgrade): it would skip them and diverge.
    async fn gate(cx: &TxnCtx<'_>) -> Result<(), TxnError> {
        if !cx.check_features {
            return Ok(());
        }
        let agents = silt_coordinator::membership::registered_agents(&*cx.log.store(), cx.cluster)
            .await
            .map_err(|e| TxnError::Unavailable(e.to_string()))?;
        match agents
            .iter()
            .find(|a| !a.features.iter().any(|f| f == "transactions"))
        {
            Some(old) => Err(TxnError::Unavailable(format!(
                "agent {} runs a silt without transactions; retry once every agent is upgraded",
                old.agent_id
            ))),
            None => Ok(()),
        }
    }

    /// Catches up with the metadata store before deciding: an answer given
    /// without writing (a repeated EndTxn, partitions already added) must
    /// come from the current state, not from a view that lags (which could
    /// take the end of an earlier transaction for this one's).
    async fn current(cx: &TxnCtx<'_>) -> Result<(), TxnError> {
        if cx.log.catch_up(CATCH_UP).await {
            Ok(())
        } else {
            Err(TxnError::Unavailable(
                "the metadata store did not answer; retry".into(),
            ))
        }
    }

    /// The transaction a request of (`pid`, `epoch`) may act on.
    fn check<'a>(
        state: &'a State,
        id: &str,
        pid: i64,
        epoch: i16,
    ) -> Result<&'a TxnEntry, TxnError> {
        let e = state.transaction(id).ok_or_else(|| {
            TxnError::InvalidMapping(format!("transactional id {id} has no producer id"))
        })?;
        if e.producer_id != pid {
            return Err(TxnError::InvalidMapping(format!(
                "producer id {pid} is not transactional id {id}'s"
            )));
        }
        if epoch < e.epoch {
            return Err(TxnError::Fenced(id.to_string()));
        }
        if epoch > e.epoch {
            return Err(TxnError::InvalidState(format!(
                "epoch {epoch} of transactional id {id} is unknown"
            )));
        }
        Ok(e)
    }

    fn interpret(id: &str, o: TxnOutcome) -> Option<Result<(), TxnError>> {
        Some(match o {
            TxnOutcome::Done | TxnOutcome::Ended { .. } | TxnOutcome::AlreadyEnded => Ok(()),
            TxnOutcome::Fenced => Err(TxnError::Fenced(id.to_string())),
            TxnOutcome::Invalid(m) => Err(TxnError::InvalidState(m)),
            TxnOutcome::UnknownPartition(p) => Err(TxnError::UnknownPartition(format!(
                "{}-{}",
                p.topic, p.partition
            ))),
        })
    }

    /// AddPartitionsToTxn.
    pub async fn add_partitions(
        &self,
        cx: &TxnCtx<'_>,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[TxnPartition],
    ) -> Result<(), TxnError> {
        let now = cx.clock.now_ms();
        self.decide(
            cx,
            id,
            |state| {
                let e = Self::check(state, id, pid, epoch)?;
                if e.state == TxnState::Ongoing
                    && partitions.iter().all(|p| e.partitions.contains(p))
                {
                    return Ok(Step::Answer(()));
                }
                Ok(Step::Write(
                    Command::AddTxnPartitions {
                        id: id.to_string(),
                        producer_id: pid,
                        epoch,
                        partitions: partitions.to_vec(),
                        time: now,
                    },
                    Vec::new(),
                ))
            },
            |o| Self::interpret(id, o),
        )
        .await
    }

    /// AddOffsetsToTxn.
    pub async fn add_group(
        &self,
        cx: &TxnCtx<'_>,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        let now = cx.clock.now_ms();
        self.decide(
            cx,
            id,
            |state| {
                let e = Self::check(state, id, pid, epoch)?;
                if e.state == TxnState::Ongoing && e.groups.contains_key(group) {
                    return Ok(Step::Answer(()));
                }
                Ok(Step::Write(
                    Command::AddTxnGroup {
                        id: id.to_string(),
                        producer_id: pid,
                        epoch,
                        group: group.to_string(),
                        time: now,
                    },
                    Vec::new(),
                ))
            },
            |o| Self::interpret(id, o),
        )
        .await
    }

    /// TxnOffsetCommit (the group's checks done by the caller).
    pub async fn offsets(
        &self,
        cx: &TxnCtx<'_>,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<TxnOffset>,
    ) -> Result<(), TxnError> {
        let now = cx.clock.now_ms();
        self.decide(
            cx,
            id,
            |state| {
                let e = Self::check(state, id, pid, epoch)?;
                if e.state != TxnState::Ongoing || !e.groups.contains_key(group) {
                    return Err(TxnError::InvalidState(format!(
                        "group {group} is not in transactional id {id}'s transaction: AddOffsetsToTxn first"
                    )));
                }
                Ok(Step::Write(
                    Command::TxnOffsets {
                        id: id.to_string(),
                        producer_id: pid,
                        epoch,
                        group: group.to_string(),
                        offsets: offsets.clone(),
                        time: now,
                    },
                    Vec::new(),
                ))
            },
            |o| Self::interpret(id, o),
        )
        .await
    }

    /// EndTxn, or the coordinator's own abort (`fence`: the producer's
    /// epoch is bumped, fencing the instance that left it open).
    pub async fn end(
        &self,
        cx: &TxnCtx<'_>,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        opts: EndOpts,
    ) -> Result<(), TxnError> {
        let fence = opts.fence;
        Self::gate(cx).await?;
        // The transaction this call ends: the one open at its first look.
        let mut started = opts.started;
        for _ in 0..ATTEMPTS {
            Self::current(cx).await?;
            let (entry, guard_state, gc_key, horizon) = {
                let state = cx.log.state();
                let e = Self::check(&state, id, pid, epoch)?.clone();
                (
                    e,
                    state.txn_key_revision(id),
                    state.gc_key_revision(),
                    state.commit_horizon(),
                )
            };
            if entry.state == TxnState::Ongoing {
                match started {
                    // A later transaction of the same epoch: the one asked
                    // for has ended (a retry elsewhere ended it).
                    Some(s) if s != entry.start_time => return Ok(()),
                    None => started = Some(entry.start_time),
                    _ => {}
                }
                if opts.only_if_expired
                    && cx.clock.now_ms() <= entry.last_update.saturating_add(entry.timeout_ms)
                {
                    return Ok(());
                }
            }
            match (entry.state, commit) {
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if !fence => {
                    return Ok(())
                }
                // Asked to end one transaction, which has ended.
                _ if opts.started.is_some() && entry.state != TxnState::Ongoing => return Ok(()),
                (TxnState::Ongoing, _) => {}
                (s, _) => {
                    return Err(TxnError::InvalidState(format!(
                        "transactional id {id} is {}: nothing to {}",
                        s.name(),
                        if commit { "commit" } else { "abort" }
                    )))
                }
            }
            let now = cx.clock.now_ms();
            // A record older than the commit horizon would be refused after
            // its offsets were written: never propose one.
            if now < horizon {
                return Err(TxnError::Unavailable(format!(
                    "this agent's clock ({now}) is behind the commit horizon ({horizon}); retry"
                )));
            }
            let (object, size, markers) =
                self.write_markers(&entry, pid, epoch, commit, now).await?;
            let mut extra = Vec::new();
            if commit {
                for (group, offsets) in &entry.groups {
                    if offsets.is_empty() {
                        continue;
                    }
                    let committed: Vec<(String, i32, Committed)> = offsets
                        .iter()
                        .map(|o| {
                            (
                                o.topic.clone(),
                                o.partition,
                                Committed {
                                    offset: o.offset,
                                    leader_epoch: o.leader_epoch,
                                    metadata: o.metadata.clone(),
                                    commit_time: now,
                                },
                            )
                        })
                        .collect();
                    extra.extend(cx.offsets.offset_ops(group, &committed));
                }
            }
            let command = Command::EndTxn {
                id: id.to_string(),
                producer_id: pid,
                epoch,
                commit,
                object,
                size,
                markers,
                time: now,
                fence,
            };
            let mut guard = self.guard(guard_state, id, extra);
            // ... and the horizon must not move before it lands.
            let gc = self.layout.gc_horizon();
            guard.compares.push(at_revision(&gc, gc_key));
            match cx.log.propose_guarded(command, None, guard).await {
                Ok(silt_coordinator::state::Outcome::Txn(o)) => {
                    if let Some(r) = Self::interpret(id, o) {
                        if r.is_ok() {
                            tracing::info!(
                                transactional_id = id,
                                producer_id = pid,
                                epoch,
                                commit,
                                fence,
                                partitions = entry.partitions.len(),
                                "transaction ended"
                            );
                        }
                        return r;
                    }
                }
                Ok(silt_coordinator::state::Outcome::StaleCommit)
                | Ok(silt_coordinator::state::Outcome::DuplicateObject) => {}
                Ok(other) => {
                    return Err(TxnError::Unavailable(format!(
                        "transactional id {id}: unexpected outcome {other:?}"
                    )))
                }
                Err(LogError::Conflict(_)) => {}
                Err(e) => return Err(TxnError::Unavailable(e.to_string())),
            }
            cx.log.catch_up(CATCH_UP).await;
        }
        Err(TxnError::Concurrent(format!(
            "transactional id {id} kept changing; retry"
        )))
    }

    /// Forgets a transactional id unused for `idle` (Kafka's
    /// `transactional.id.expiration.ms`): its state and its key go.
    pub async fn forget(
        &self,
        cx: &TxnCtx<'_>,
        id: &str,
        idle: Duration,
    ) -> Result<bool, TxnError> {
        Self::gate(cx).await?;
        Self::current(cx).await?;
        let now = cx.clock.now_ms();
        let (last_update, revision) = {
            let state = cx.log.state();
            let Some(e) = state.transaction(id) else {
                return Ok(false);
            };
            if e.state == TxnState::Ongoing
                || now.saturating_sub(e.last_update) < idle.as_millis() as i64
            {
                return Ok(false);
            }
            (e.last_update, state.txn_key_revision(id))
        };
        let key = self.layout.transaction(id);
        let guard = Guard {
            compares: vec![at_revision(&key, revision)],
            ops: vec![TxnOp::Delete(silt_coordinator::metastore::KeyRange::Key(
                key,
            ))],
        };
        let command = Command::ForgetTxn {
            id: id.to_string(),
            last_update,
            idle_ms: idle.as_millis() as i64,
            time: now,
        };
        match cx.log.propose_guarded(command, None, guard).await {
            Ok(silt_coordinator::state::Outcome::Txn(TxnOutcome::Done)) => Ok(true),
            Ok(_) | Err(LogError::Conflict(_)) => Ok(false),
            Err(e) => Err(TxnError::Unavailable(e.to_string())),
        }
    }

    /// Uploads one object holding a commit or abort marker for every
    /// partition of the transaction; returns its key, size and chunks.
    async fn write_markers(
        &self,
        entry: &TxnEntry,
        pid: i64,
        epoch: i16,
        commit: bool,
        now: i64,
    ) -> Result<(String, u64, Vec<ChunkRef>), TxnError> {
        let marker = control_batch(pid, epoch, commit, now);
        let header = silt_tiering::batch::parse_all(&marker)
            .map_err(|e| TxnError::Unavailable(format!("marker batch: {e}")))?;
        let mut builder = SegmentBuilder::new();
        for p in &entry.partitions {
            builder.append(
                p.topic.0,
                p.partition,
                marker.clone(),
                header.iter().map(BatchMeta::from).collect(),
                now,
            );
        }
        let (bytes, chunks) = builder.finish();
        let key =
            silt_tiering::segment::dated_key(silt_tiering::jobs::SEGMENTS_PREFIX, self.ids.next());
        let size = bytes.len() as u64;
        if !chunks.is_empty() {
            self.store
                .put_opts(
                    &object_store::path::Path::from(key.as_str()),
                    PutPayload::from(bytes.clone()),
                    PutOptions {
                        mode: PutMode::Create,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| TxnError::Unavailable(format!("markers {key}: upload failed: {e}")))?;
            self.reader.warm(&key, &bytes);
        }
        Ok((
            key,
            size,
            chunks
                .iter()
                .map(|c| ChunkRef {
                    topic: TopicId(c.topic_id),
                    partition: c.partition,
                    position: c.position,
                    length: c.length,
                    records: c.records,
                    max_timestamp: c.max_timestamp,
                    append_time: now,
                    batches: Vec::new(),
                })
                .collect(),
        ))
    }

    /// Aborts, with a bumped epoch, the open transactions this agent
    /// coordinates that no request touched for their timeout; every second
    /// until `shutdown`.
    pub async fn run_timeouts(broker: Arc<Broker>, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = broker.clock.now_ms();
            let idle = broker.settings.transactional_id_expiration;
            let unused: Vec<String> = broker
                .log
                .state()
                .transactions()
                .filter(|(_, e)| {
                    e.state != TxnState::Ongoing
                        && now.saturating_sub(e.last_update) >= idle.as_millis() as i64
                })
                .filter(|(id, _)| broker.is_txn_coordinator(id))
                .map(|(id, _)| id.clone())
                .take(100)
                .collect();
            for id in unused {
                match broker.txns.forget(&broker.txn_ctx(), &id, idle).await {
                    Ok(true) => tracing::info!(transactional_id = %id, "transactional id expired"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(transactional_id = %id, error = %e, "expiring a transactional id failed; retrying")
                    }
                }
            }
            let expired: Vec<(String, i64, i16, i64)> = broker
                .log
                .state()
                .transactions()
                .filter(|(_, e)| {
                    e.state == TxnState::Ongoing && now > e.last_update.saturating_add(e.timeout_ms)
                })
                .filter(|(id, _)| broker.is_txn_coordinator(id))
                .map(|(id, e)| (id.clone(), e.producer_id, e.epoch, e.start_time))
                .collect();
            for (id, pid, epoch, started) in expired {
                let opts = EndOpts {
                    fence: true,
                    started: Some(started),
                    only_if_expired: true,
                };
                match broker
                    .txns
                    .end(&broker.txn_ctx(), &id, pid, epoch, false, opts)
                    .await
                {
                    Ok(()) => tracing::info!(
                        transactional_id = %id,
                        producer_id = pid,
                        epoch,
                        "transaction timed out and was aborted; its producer is fenced"
                    ),
                    Err(e) => {
                        tracing::warn!(transactional_id = %id, error = %e, "aborting a timed-out transaction failed; retrying")
                    }
                }
            }
        }
    }
}

/// The compare that `key` is where a state saw it: modified last at
/// `revision`, or absent when the state knows no revision for it.
fn at_revision(key: &str, revision: Option<i64>) -> Compare {
    match revision {
        Some(r) => Compare::mod_revision(key, CompareOp::Equal, r),
        None => Compare::version(key, CompareOp::Equal, 0),
    }
}

/// A control batch of one commit or abort marker (Kafka's
/// `EndTransactionMarker`: key version 0 and type, value version 0 and the
/// coordinator epoch).
pub fn control_batch(pid: i64, epoch: i16, commit: bool, now: i64) -> Bytes {
    let kind: i16 = if commit { 1 } else { 0 };
    let mut key = BytesMut::new();
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = BytesMut::new();
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&0i32.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        partition_leader_epoch: 0,
        delete_horizon: false,
        producer_id: pid,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::slice::from_ref(&record),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("a control batch encodes");
    buf.freeze()
}
