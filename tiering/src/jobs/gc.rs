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
    let grace_ms = s.grace.as_millis() as i64;
    let due: Vec<String> = jobs
        .log
        .state()
        .unreferenced()
        .filter(|(_, u)| u.time <= now - grace_ms)
        .map(|(o, _)| o.to_string())
        .collect();
    for batch in due.chunks(s.batch.max(1)) {
        if tokio::time::Instant::now() >= deadline {
            report.more = true;
            return Ok(report);
        }
        delete(&*jobs.store, batch).await?;
        let out = jobs
            .log
            .propose(Command::ForgetObjects {
                time: now,
                horizon,
                objects: batch.to_vec(),
            })
            .await?;
        if let Outcome::Forgotten(n) = out {
            report.objects_deleted += n as u64;
        }
    }

    // Orphans: listed, fenced, checked again, deleted.
    let orphan_cutoff = now - s.orphan_age.as_millis() as i64;
    let mut candidates = Vec::new();
    for prefix in [SEGMENTS_PREFIX, COMPACTED_PREFIX] {
        let mut list = jobs.store.list(Some(&ObjectPath::from(prefix)));
        while let Some(meta) = list.try_next().await? {
            if tokio::time::Instant::now() >= deadline {
                report.more = true;
                break;
            }
            let key = meta.location.to_string();
            if meta.last_modified.timestamp_millis() < orphan_cutoff
                && !jobs.log.state().knows_object(&key)
            {
                candidates.push(key);
            }
        }
    }
    if !candidates.is_empty() {
        jobs.log
            .propose(Command::ForgetObjects {
                time: now,
                horizon,
                objects: vec![],
            })
            .await?;
        // Every record before the fence is applied now: a candidate
        // committed meanwhile is known to the state.
        let orphans: Vec<String> = {
            let state = jobs.log.state();
            candidates
                .into_iter()
                .filter(|k| !state.knows_object(k))
                .collect()
        };
        for batch in orphans.chunks(s.batch.max(1)) {
            delete(&*jobs.store, batch).await?;
            report.orphans_deleted += batch.len() as u64;
            tracing::info!(objects = batch.len(), first = %batch[0], "orphaned uploads deleted");
        }
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
