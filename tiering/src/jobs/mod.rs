//! Background jobs over the bucket and the index: retention, segment
//! compaction, the cleaner (key compaction of compacted topics), table
//! export (Parquet) and object GC.
//!
//! Each job is one library call, [`Jobs::run`], bounded by a [`Budget`];
//! agents run them in a loop (one holder per job at a time, by a lease lock
//! on the metadata store), `silt jobs run` runs them as a process, and a
//! scheduled function can call the same entry. None of them depends on the
//! lock for safety: retention only moves log starts forward, compaction
//! replaces index entries by compare-and-swap, and GC deletes only objects
//! the log says have been unreferenced for the grace period (or never
//! referenced, behind the commit horizon).

mod cleaner;
mod compaction;
mod gc;
mod retention;
mod tables;

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use object_store::ObjectStore;
use silt_coordinator::{keys::Layout, Lock, LogError, MetaLog};

use crate::clock::Clock;

pub use cleaner::{CleanerSettings, MAP_BYTES_PER_KEY, MAX_CLEANER_BATCH_BYTES};
pub use compaction::CompactionSettings;
pub use gc::GcSettings;
pub use retention::RetentionDefaults;
pub use tables::{
    date_hour, table_schema, TableSettings, DEAD_LETTER_PREFIX, ROW_GROUP_ROWS, TABLES_PREFIX,
    TABLE_LIST_MAX,
};

/// Object key prefix of segments written by the produce path.
pub const SEGMENTS_PREFIX: &str = "segments/";
/// Object key prefix of objects written by compaction.
pub const COMPACTED_PREFIX: &str = "compacted/";
/// Object key prefix of checkpoints.
pub const CHECKPOINTS_PREFIX: &str = "checkpoints/";

/// A job's lease: a holder that dies lets another take over within it.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a pass waits for its state to reach the metadata store's
/// revision before giving up (a pass must not act on an old state).
const CATCH_UP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Job {
    Retention,
    Compaction,
    Cleaner,
    Tables,
    Gc,
}

impl Job {
    pub const ALL: [Job; 5] = [
        Job::Retention,
        Job::Compaction,
        Job::Cleaner,
        Job::Tables,
        Job::Gc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Retention => "retention",
            Job::Compaction => "compaction",
            Job::Cleaner => "cleaner",
            Job::Tables => "tables",
            Job::Gc => "gc",
        }
    }

    /// The record kinds its records need every agent to understand.
    fn feature(self) -> &'static str {
        match self {
            Job::Cleaner => "cleaner",
            Job::Tables => "tables",
            _ => "tiering",
        }
    }

    pub fn parse(s: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == s)
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one pass may spend.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Stop starting new work after this long.
    pub time: Duration,
    /// Bytes a pass may read (compaction).
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("metadata store: {0}")]
    Meta(#[from] silt_coordinator::MetaError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("object {object}: {message}")]
    Corrupt { object: String, message: String },
}

/// Job settings.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub retention: RetentionDefaults,
    pub compaction: CompactionSettings,
    pub cleaner: CleanerSettings,
    pub tables: TableSettings,
    pub gc: GcSettings,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Partitions whose log start moved (retention).
    pub partitions_trimmed: u64,
    /// Index entries rewritten (compaction) and the entries they became.
    pub entries_compacted: u64,
    pub entries_written: u64,
    /// Partitions the cleaner cleaned, and the records it removed.
    pub partitions_cleaned: u64,
    pub records_cleaned: u64,
    /// Table export: rows and files written, values sent to dead-letter
    /// files, files deleted by the table's retention.
    pub table_rows_exported: u64,
    pub table_files_written: u64,
    pub table_dead_letters: u64,
    pub table_files_deleted: u64,
    /// Compaction runs refused because the index changed under them.
    pub runs_refused: u64,
    pub objects_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Objects deleted after their grace period, orphans, old checkpoints.
    pub objects_deleted: u64,
    pub orphans_deleted: u64,
    pub checkpoints_deleted: u64,
    /// Partitions a pass skipped after an error (tried again next pass).
    pub partitions_failed: u64,
    /// Work left for the next pass (budget spent).
    pub more: bool,
}

/// Counters over every pass of this process, for metrics.
#[derive(Debug)]
pub struct JobCounters {
    /// Pass durations by job.
    pub durations: crate::metrics::Histograms<[(&'static str, &'static str); 1]>,
    runs: [AtomicU64; 5],
    failures: [AtomicU64; 5],
    partitions_cleaned: AtomicU64,
    records_cleaned: AtomicU64,
    table_rows_exported: AtomicU64,
    table_files_written: AtomicU64,
    table_dead_letters: AtomicU64,
    table_files_deleted: AtomicU64,
    partitions_failed: AtomicU64,
    partitions_trimmed: AtomicU64,
    entries_compacted: AtomicU64,
    runs_refused: AtomicU64,
    objects_written: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    objects_deleted: AtomicU64,
    orphans_deleted: AtomicU64,
    checkpoints_deleted: AtomicU64,
}

impl Default for JobCounters {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Self {
            durations: crate::metrics::latency_family(),
            runs: Default::default(),
            failures: Default::default(),
            partitions_cleaned: z(),
            records_cleaned: z(),
            table_rows_exported: z(),
            table_files_written: z(),
            table_dead_letters: z(),
            table_files_deleted: z(),
            partitions_failed: z(),
            partitions_trimmed: z(),
            entries_compacted: z(),
            runs_refused: z(),
            objects_written: z(),
            bytes_read: z(),
            bytes_written: z(),
            objects_deleted: z(),
            orphans_deleted: z(),
            checkpoints_deleted: z(),
        }
    }
}

impl JobCounters {
    fn record(&self, job: Job, result: &Result<Report, JobError>, took: Duration) {
        self.durations
            .get_or_create(&[("job", job.name())])
            .observe(took.as_secs_f64());
        let i = job as usize;
        self.runs[i].fetch_add(1, Ordering::Relaxed);
        let r = match result {
            Ok(r) => r,
            Err(_) => {
                self.failures[i].fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let add = |a: &AtomicU64, v: u64| a.fetch_add(v, Ordering::Relaxed);
        add(&self.partitions_trimmed, r.partitions_trimmed);
        add(&self.partitions_cleaned, r.partitions_cleaned);
        add(&self.records_cleaned, r.records_cleaned);
        add(&self.table_rows_exported, r.table_rows_exported);
        add(&self.table_files_written, r.table_files_written);
        add(&self.table_dead_letters, r.table_dead_letters);
        add(&self.table_files_deleted, r.table_files_deleted);
        add(&self.partitions_failed, r.partitions_failed);
        add(&self.entries_compacted, r.entries_compacted);
        add(&self.runs_refused, r.runs_refused);
        add(&self.objects_written, r.objects_written);
        add(&self.bytes_read, r.bytes_read);
        add(&self.bytes_written, r.bytes_written);
        add(&self.objects_deleted, r.objects_deleted);
        add(&self.orphans_deleted, r.orphans_deleted);
        add(&self.checkpoints_deleted, r.checkpoints_deleted);
    }

    /// Writes the counters (the duration family is registered by the
    /// caller, as it is a live metric).
    pub fn encode(
        &self,
        enc: &mut prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, values) in [
            ("silt_job_runs", "background job passes", &self.runs),
            (
                "silt_job_failures",
                "background job passes that failed",
                &self.failures,
            ),
        ] {
            let per_job: Vec<([(&str, &str); 1], u64)> = Job::ALL
                .iter()
                .map(|j| ([("job", j.name())], c(&values[*j as usize])))
                .collect();
            crate::metrics::counters(enc, name, help, &per_job)?;
        }
        for (name, help, v) in [
            (
                "silt_retention_partitions_trimmed",
                "log start offsets moved by retention",
                &self.partitions_trimmed,
            ),
            (
                "silt_cleaner_partitions_cleaned",
                "partitions of compacted topics cleaned",
                &self.partitions_cleaned,
            ),
            (
                "silt_cleaner_records_removed",
                "superseded records and expired tombstones the cleaner removed",
                &self.records_cleaned,
            ),
            (
                "silt_job_partitions_failed",
                "partitions a job pass skipped after an error (tried again next pass)",
                &self.partitions_failed,
            ),
            (
                "silt_table_rows_exported",
                "records written to table files",
                &self.table_rows_exported,
            ),
            (
                "silt_table_files_written",
                "Parquet table files written",
                &self.table_files_written,
            ),
            (
                "silt_table_dead_letters",
                "values that did not match the table's schema, written to dead-letter files",
                &self.table_dead_letters,
            ),
            (
                "silt_table_files_deleted",
                "table files deleted by silt.table.retention.ms",
                &self.table_files_deleted,
            ),
            (
                "silt_compaction_entries",
                "index entries rewritten by compaction",
                &self.entries_compacted,
            ),
            (
                "silt_compaction_runs_refused",
                "compaction runs refused because the index changed under them",
                &self.runs_refused,
            ),
            (
                "silt_compaction_objects_written",
                "objects written by compaction",
                &self.objects_written,
            ),
            (
                "silt_compaction_read_bytes",
                "bytes compaction read",
                &self.bytes_read,
            ),
            (
                "silt_compaction_written_bytes",
                "bytes compaction wrote",
                &self.bytes_written,
            ),
            (
                "silt_gc_objects_deleted",
                "unreferenced objects deleted after the grace period",
                &self.objects_deleted,
            ),
            (
                "silt_gc_orphans_deleted",
                "uploads never committed, deleted after their age limit",
                &self.orphans_deleted,
            ),
            (
                "silt_gc_checkpoints_deleted",
                "old checkpoint objects deleted",
                &self.checkpoints_deleted,
            ),
        ] {
            crate::metrics::counter(enc, name, help, c(v))?;
        }
        Ok(())
    }
}

/// The object naming the cluster a bucket (or prefix) belongs to.
pub const CLUSTER_MARKER: &str = "silt-cluster.json";

/// Claims the bucket for `cluster`, or checks that it is already its own.
/// Object GC deletes every segment the cluster's log does not know, so two
/// clusters on one bucket and prefix would delete each other's data.
pub async fn claim_bucket(store: &dyn ObjectStore, cluster: &str) -> Result<(), String> {
    use object_store::{ObjectStoreExt, PutMode, PutOptions};
    let path = object_store::path::Path::from(CLUSTER_MARKER);
    let body = format!("{{\"cluster\":{cluster:?}}}\n");
    let put = store
        .put_opts(
            &path,
            body.clone().into(),
            PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            },
        )
        .await;
    match put {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let found = store
                .get(&path)
                .await
                .map_err(|e| format!("reading {CLUSTER_MARKER}: {e}"))?
                .bytes()
                .await
                .map_err(|e| format!("reading {CLUSTER_MARKER}: {e}"))?;
            if found == body.as_bytes() {
                Ok(())
            } else {
                Err(format!(
                    "the bucket holds another cluster's data ({CLUSTER_MARKER}: {}); give cluster {cluster:?} its own bucket or prefix (s3://bucket/prefix)",
                    String::from_utf8_lossy(&found).trim()
                ))
            }
        }
        Err(e) => Err(format!("writing {CLUSTER_MARKER}: {e}")),
    }
}

/// The jobs of one cluster, over its log and bucket.
pub struct Jobs {
    log: Arc<MetaLog>,
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    settings: JobSettings,
    layout: Layout,
    cluster: String,
    holder: String,
    counters: Arc<JobCounters>,
    /// Where the orphan listing stopped (prefix index, last key); the next
    /// pass resumes there.
    orphan_cursor: std::sync::Mutex<Option<(usize, String)>>,
    /// Per job, the partition where its last pass stopped.
    cursors: std::sync::Mutex<[Option<(String, i32)>; 5]>,
    /// Names the objects compaction writes.
    ids: Arc<dyn crate::segment::ObjectIds>,
}

impl Jobs {
    pub fn new(
        log: Arc<MetaLog>,
        store: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
        settings: JobSettings,
        cluster: &str,
        holder: &str,
    ) -> Self {
        Self {
            log,
            store,
            clock,
            settings,
            layout: Layout::new(cluster),
            cluster: cluster.to_string(),
            holder: holder.to_string(),
            counters: Arc::default(),
            orphan_cursor: Default::default(),
            cursors: Default::default(),
            ids: Arc::new(crate::segment::RandomIds),
        }
    }

    /// Names compacted objects with `ids` (deterministic tests).
    pub fn with_ids(mut self, ids: Arc<dyn crate::segment::ObjectIds>) -> Self {
        self.ids = ids;
        self
    }

    pub fn counters(&self) -> Arc<JobCounters> {
        self.counters.clone()
    }

    /// One pass of `job` under its lock. `None` when another process holds
    /// the lock.
    pub async fn run(&self, job: Job, budget: Budget) -> Result<Option<Report>, JobError> {
        let Some(lock) = Lock::try_acquire(
            self.log.store(),
            &self.layout.lock(job.name()),
            &self.holder,
            LOCK_TTL,
        )
        .await?
        else {
            tracing::debug!(%job, "job lock held elsewhere");
            return Ok(None);
        };
        let result = match self.older_agent(job.feature()).await {
            Ok(Some(agent)) => {
                tracing::warn!(
                    %job,
                    agent = %agent,
                    "an agent of an older version is registered: it would skip the job's records; the job waits until every agent is upgraded"
                );
                Ok(Report {
                    more: true,
                    ..Default::default()
                })
            }
            Ok(None) => self.run_unlocked(job, budget).await,
            Err(e) => Err(e.into()),
        };
        lock.release().await;
        result.map(Some)
    }

    /// A registered agent that does not understand the records of
    /// `feature`, if any.
    async fn older_agent(
        &self,
        feature: &str,
    ) -> Result<Option<String>, silt_coordinator::MetaError> {
        let agents =
            silt_coordinator::membership::registered_agents(&*self.log.store(), &self.cluster)
                .await?;
        Ok(agents
            .into_iter()
            .find(|a| !a.features.iter().any(|f| f == feature))
            .map(|a| a.agent_id))
    }

    /// One pass of `job` without the lock (safe, only wasteful when two
    /// run at once).
    pub async fn run_unlocked(&self, job: Job, budget: Budget) -> Result<Report, JobError> {
        let started = tokio::time::Instant::now();
        let result = if !self.log.catch_up(CATCH_UP).await {
            tracing::warn!(%job, "state is behind the metadata store; skipping the pass");
            Ok(Report {
                more: true,
                ..Default::default()
            })
        } else {
            let deadline = started + budget.time;
            match job {
                Job::Retention => retention::run(self, deadline).await,
                Job::Compaction => compaction::run(self, deadline, budget.bytes).await,
                Job::Cleaner => cleaner::run(self, deadline, budget.bytes).await,
                Job::Tables => tables::run(self, deadline, budget.bytes).await,
                Job::Gc => gc::run(self, deadline).await,
            }
        };
        self.counters.record(job, &result, started.elapsed());
        match &result {
            Ok(r) => tracing::info!(
                %job,
                elapsed_ms = started.elapsed().as_millis() as u64,
                trimmed = r.partitions_trimmed,
                compacted = r.entries_compacted,
                cleaned = r.partitions_cleaned,
                removed = r.records_cleaned,
                table_rows = r.table_rows_exported,
                table_files = r.table_files_written,
                refused = r.runs_refused,
                written = r.objects_written,
                bytes_read = r.bytes_read,
                bytes_written = r.bytes_written,
                deleted = r.objects_deleted,
                orphans = r.orphans_deleted,
                checkpoints = r.checkpoints_deleted,
                more = r.more,
                "job pass"
            ),
            Err(e) => tracing::warn!(%job, error = %e, "job pass failed"),
        }
        result
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Every partition in (topic, partition) order, from the one where
    /// `job`'s last pass stopped, wrapping around.
    fn rotation(&self, job: Job) -> Vec<(String, i32)> {
        let all: Vec<(String, i32)> = {
            let state = self.log.state();
            state
                .topics()
                .flat_map(|t| {
                    (0..t.partition_count() as i32).map(move |p| (t.name().to_string(), p))
                })
                .collect()
        };
        let cursor = self.cursors.lock().unwrap_or_else(|p| p.into_inner())[job as usize].clone();
        let at = cursor.map_or(0, |c| all.partition_point(|k| *k < c));
        let mut out = all[at..].to_vec();
        out.extend_from_slice(&all[..at]);
        out
    }

    fn set_cursor(&self, job: Job, key: Option<(String, i32)>) {
        self.cursors.lock().unwrap_or_else(|p| p.into_inner())[job as usize] = key;
    }
}

#[cfg(test)]
mod tests;
