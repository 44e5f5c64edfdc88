//! `silt-jobs`: one pass of each tiering job per invocation (an EventBridge
//! schedule), under the same locks as agents; answers a JSON summary.
//!
//! The event may name jobs, `{"jobs": ["retention"]}`; any other event (a
//! scheduled event) runs those of the `jobs` setting. Every pass ends
//! before the function's deadline, with a margin.

use std::time::{Duration, SystemTime};

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};
use silt_tiering::jobs::{Budget, Job};

/// Time kept back from the function's deadline for answering and the
/// checkpoint after the passes: a tenth of the time left, at most this.
const MARGIN: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    silt_lambda::init_logging();
    let settings = silt_lambda::settings()?;
    let (jobs, log) = silt_agent::cluster::open_jobs(&settings, None).await?;
    let configured = if settings.jobs.trim() == "none" {
        Job::ALL.to_vec()
    } else {
        settings.job_list().map_err(anyhow::Error::msg)?
    };
    let settings = &settings;
    let (jobs, log, configured) = (&jobs, &log, &configured);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let list = match event.payload.get("jobs").and_then(Value::as_array) {
            Some(names) => names
                .iter()
                .map(|n| {
                    n.as_str()
                        .and_then(Job::parse)
                        .ok_or_else(|| anyhow::anyhow!("unknown job {n} (retention, compaction, gc)"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => configured.clone(),
        };
        let left = match event.context.deadline().duration_since(SystemTime::now()) {
            Ok(left) => left,
            // Never so on AWS; local emulators may send a bare timeout.
            Err(_) => {
                tracing::warn!(
                    deadline_ms = event.context.deadline,
                    "the invocation's deadline is in the past; passes get jobs_pass_time"
                );
                settings.jobs_pass_time * list.len() as u32
            }
        };
        let left = left.saturating_sub(MARGIN.min(left / 10));
        let per_job = (left / list.len().max(1) as u32).min(settings.jobs_pass_time);
        let budget = Budget {
            time: per_job,
            bytes: settings.compaction_pass_bytes.as_u64(),
        };
        // Current first: the passes decide on the latest state.
        log.catch_up(Duration::from_secs(5)).await;
        let (reports, failed) = silt_agent::cluster::run_once(jobs, &list, budget).await;
        // The log since the last checkpoint shrinks too, so that cold starts
        // (of this function and of agents) stay short with no agent running.
        let checkpoint = match log.checkpoint().await {
            Ok(rev) => json!(rev),
            Err(e) => json!({"error": e.to_string()}),
        };
        let summary = json!({"jobs": reports, "checkpoint": checkpoint, "budget_ms": per_job.as_millis() as u64});
        tracing::info!(%summary, "jobs pass done");
        match failed {
            Some(e) => Err(lambda_runtime::Error::from(format!("{e:#}: {summary}"))),
            None => Ok::<Value, lambda_runtime::Error>(summary),
        }
    }))
    .await
}
