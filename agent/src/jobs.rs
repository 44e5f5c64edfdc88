//! The background jobs loop of an agent, and `silt jobs run`.
//!
//! Each job the agent takes part in (setting `jobs`) runs on its own
//! interval; a pass takes the job's lock, so one agent in the cluster runs
//! each job at a time. Abandoning a pass at any point is safe (an upload
//! without its swap is an orphan that GC removes).

use std::{sync::Arc, time::Duration};

use silt_tiering::jobs::{Budget, Job, Jobs};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

/// How often each job runs.
pub fn interval(settings: &Settings, job: Job) -> Duration {
    match job {
        Job::Retention => settings.retention_check_interval,
        Job::Compaction => settings.compaction_interval,
        Job::Cleaner => settings.cleaner_interval,
        Job::Tables => settings.tables_interval,
        Job::Gc => settings.gc_interval,
    }
}

pub fn budget(settings: &Settings) -> Budget {
    Budget {
        time: settings.jobs_pass_time,
        bytes: settings.compaction_pass_bytes.as_u64(),
    }
}

/// Runs `list` on their intervals until `shutdown`.
pub async fn run_loop(
    jobs: Arc<Jobs>,
    list: Vec<(Job, Duration)>,
    budget: Budget,
    shutdown: CancellationToken,
) {
    if list.is_empty() {
        return;
    }
    let mut next: Vec<tokio::time::Instant> = list
        .iter()
        .map(|(_, every)| tokio::time::Instant::now() + *every)
        .collect();
    loop {
        let (i, at) = next
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, at)| *at)
            .expect("list is not empty");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(at) => {}
        }
        let job = list[i].0;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = jobs.run(job, budget) => {
                if let Err(e) = r {
                    tracing::warn!(%job, error = %e, "job pass failed");
                }
            }
        }
        next[i] = tokio::time::Instant::now() + list[i].1;
    }
}
