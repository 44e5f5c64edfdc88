//! Object GC: deletes objects the index stopped referencing once the grace
//! period has passed, uploads that were never committed (orphans) once they
//! are older than the orphan age, and checkpoint objects older than the
//! current one.
//!
//! Orphans are fenced before they are deleted: a `ForgetObjects` record
//! moves the commit horizon to half the orphan age ago, so a commit (or a
//! compaction) of an upload that old is refused from then on, whatever an
//! agent paused between its PUT and its commit does later.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::{path::Path as ObjectPath, ObjectStore};
use silt_coordinator::{Command, Outcome};

use super::{JobError, Jobs, Report, CHECKPOINTS_PREFIX, COMPACTED_PREFIX, SEGMENTS_PREFIX};

#[derive(Debug, Clone, Copy)]
pub struct GcSettings {
    /// An unreferenced object is deleted this long after it left the index.
    pub grace: Duration,
    /// An object the log never named is deleted once it is this old.
    pub orphan_age: Duration,
    /// Objects named in one `ForgetObjects` record at most.
    pub batch: usize,
}

impl Default for GcSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(600),
            orphan_age: Duration::from_secs(3600),
            batch: 1000,
        }
    }
}

pub(super) async fn run(jobs: &Jobs, deadline: tokio::time::Instant) -> Result<Report, JobError> {
    let mut report = Report::default();
    let s = jobs.settings.gc;
    let now = jobs.now();
    let horizon = now - s.orphan_age.as_millis() as i64 / 2;

    // Unreferenced objects past the grace period.
    let due: Vec<String> = jobs
        .log
        .state()
        .due_for_deletion(now, s.grace.as_millis() as i64)
        .take(MAX_DELETES_PER_PASS)
        .map(str::to_string)
        .collect();
    for batch in due.chunks(s.batch.max(1)) {
        if tokio::time::Instant::now() >= deadline {
            report.more = true;
            return Ok(report);
        }
        delete(&*jobs.store, batch).await?;
        let out = jobs
            .log
            .propose_guarded(
                Command::ForgetObjects {
                    horizon_key: true,
                    time: now,
                    horizon,
                    objects: batch.to_vec(),
                },
                None,
                horizon_guard(jobs),
            )
            .await?;
        if let Outcome::Forgotten(n) = out {
            report.objects_deleted += n as u64;
        }
    }

    // Orphans: listed, fenced, checked again, deleted.
    let candidates = orphan_candidates(jobs, now, deadline, &mut report).await?;
    if !candidates.is_empty() {
        jobs.log
            .propose_guarded(
                Command::ForgetObjects {
                    horizon_key: true,
                    time: now,
                    horizon,
                    objects: vec![],
                },
                None,
                horizon_guard(jobs),
            )
            .await?;
        delete_orphans(jobs, candidates, &mut report).await?;
    }

    // Checkpoints older than the current one (left by failed or
    // interrupted checkpoints; a successful one deletes its predecessor).
    if let Some(current) = jobs.log.checkpoint_revision().await? {
        let mut old = Vec::new();
        let mut list = jobs.store.list(Some(&ObjectPath::from(CHECKPOINTS_PREFIX)));
        while let Some(meta) = list.try_next().await? {
            let key = meta.location.to_string();
            let revision = key
                .strip_prefix(CHECKPOINTS_PREFIX)
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<i64>().ok());
            if revision.is_some_and(|r| r < current) {
                old.push(key);
            }
        }
        delete(&*jobs.store, &old).await?;
        report.checkpoints_deleted += old.len() as u64;
    }
    Ok(report)
}

/// Objects listed per pass at most while looking for orphans; the listing
/// resumes where it stopped at the next pass.
const ORPHAN_LIST_MAX: usize = 10_000;
/// Unreferenced objects one pass deletes at most.
const MAX_DELETES_PER_PASS: usize = 100_000;

/// Uploads the state does not know, older than the orphan age: up to
/// `ORPHAN_LIST_MAX` keys listed from where the last pass stopped.
pub(super) async fn orphan_candidates(
    jobs: &Jobs,
    now: i64,
    deadline: tokio::time::Instant,
    report: &mut Report,
) -> Result<Vec<(String, i64)>, JobError> {
    let cutoff = now - jobs.settings.gc.orphan_age.as_millis() as i64;
    let start = jobs
        .orphan_cursor
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut cursor = None;
    let mut candidates = Vec::new();
    let mut listed = 0;
    let prefixes = [SEGMENTS_PREFIX, COMPACTED_PREFIX];
    let first = start.as_ref().map_or(0, |(i, _)| *i);
    'prefixes: for (i, prefix) in prefixes.iter().enumerate().skip(first) {
        let p = ObjectPath::from(*prefix);
        let mut list = match &start {
            Some((at, key)) if *at == i => jobs
                .store
                .list_with_offset(Some(&p), &ObjectPath::from(key.as_str())),
            _ => jobs.store.list(Some(&p)),
        };
        while let Some(meta) = list.try_next().await? {
            let key = meta.location.to_string();
            listed += 1;
            let modified = meta.last_modified.timestamp_millis();
            if modified < cutoff && !jobs.log.state().knows_object(&key) {
                candidates.push((key.clone(), modified));
            }
            if listed >= ORPHAN_LIST_MAX || tokio::time::Instant::now() >= deadline {
                report.more = true;
                cursor = Some((i, key));
                break 'prefixes;
            }
        }
    }
    *jobs.orphan_cursor.lock().unwrap_or_else(|p| p.into_inner()) = cursor;
    Ok(candidates)
}

/// Deletes the candidates the fence covers: still unknown to the state
/// (every record before the fence is applied, so one committed meanwhile is
/// known), and written before the commit horizon by at least half the
/// orphan age (so no commit of it can be accepted any more).
pub(super) async fn delete_orphans(
    jobs: &Jobs,
    candidates: Vec<(String, i64)>,
    report: &mut Report,
) -> Result<(), JobError> {
    let half_age = jobs.settings.gc.orphan_age.as_millis() as i64 / 2;
    let orphans: Vec<String> = {
        let state = jobs.log.state();
        let horizon = state.commit_horizon();
        candidates
            .into_iter()
            .filter(|(k, modified)| !state.knows_object(k) && modified + half_age <= horizon)
            .map(|(k, _)| k)
            .collect()
    };
    for batch in orphans.chunks(jobs.settings.gc.batch.max(1)) {
        delete(&*jobs.store, batch).await?;
        report.orphans_deleted += batch.len() as u64;
        tracing::info!(objects = batch.len(), first = %batch[0], "orphaned uploads deleted");
    }
    Ok(())
}

/// Deletes objects in bulk requests (S3 DeleteObjects); objects already
/// gone count as deleted.
async fn delete(store: &dyn ObjectStore, keys: &[String]) -> Result<(), JobError> {
    if keys.is_empty() {
        return Ok(());
    }
    let paths = futures::stream::iter(
        keys.iter()
            .map(|k| Ok(ObjectPath::from(k.as_str())))
            .collect::<Vec<_>>(),
    )
    .boxed();
    let mut results = store.delete_stream(paths);
    while let Some(r) = results.next().await {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The `gc-horizon` key goes with every record that moves the commit
/// horizon (a transaction's end compares it: decision 0011).
fn horizon_guard(jobs: &Jobs) -> silt_coordinator::Guard {
    silt_coordinator::Guard {
        compares: Vec::new(),
        ops: vec![silt_coordinator::metastore::TxnOp::Put {
            key: jobs.layout.gc_horizon(),
            value: bytes::Bytes::new(),
            lease: None,
        }],
    }
}
