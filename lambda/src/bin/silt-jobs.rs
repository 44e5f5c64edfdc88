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

/// Time kept back from the function's deadline for the checkpoint after
/// the passes and the answer: a tenth of the time left, at most this.
const MARGIN: Duration = Duration::from_secs(5);

/// Time left before the invocation's deadline.
fn time_left(context: &lambda_runtime::Context) -> Duration {
    match context.deadline().duration_since(SystemTime::now()) {
        Ok(left) => left,
        // Never so on AWS; local emulators may send a bare timeout.
        Err(_) => {
            tracing::warn!(
                deadline_ms = context.deadline,
                "the invocation's deadline is in the past; assuming 60 s"
            );
            Duration::from_secs(60)
        }
    }
}

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
                        .ok_or_else(|| anyhow::anyhow!("unknown job {n} (retention, compaction, cleaner, tables, gc)"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => configured.clone(),
        };
        // Current first: the passes decide on the latest state.
        log.catch_up(Duration::from_secs(5).min(time_left(&event.context) / 10))
            .await;
        let left = time_left(&event.context);
        let margin = MARGIN.min(left / 10);
        let work = left.saturating_sub(margin);
        let per_job = (work / list.len().max(1) as u32).min(settings.jobs_pass_time);
        let budget = Budget {
            time: per_job,
            bytes: settings.compaction_pass_bytes.as_u64(),
        };
        // A pass checks its budget between units of work; the timeout ends
        // it regardless (abandoning a pass is safe: an upload without its
        // swap is an orphan that GC removes).
        let (reports, failed) = match tokio::time::timeout(
            work,
            silt_agent::cluster::run_once(jobs, &list, budget),
        )
        .await
        {
            Ok(done) => done,
            Err(_) => (
                vec![json!({"timed_out": true, "after_ms": work.as_millis() as u64})],
                None,
            ),
        };
        // The log since the last checkpoint shrinks too, so that cold starts
        // (of this function and of agents) stay short with no agent running.
        let checkpoint = match tokio::time::timeout(margin / 2, log.checkpoint()).await {
            Ok(Ok(rev)) => json!(rev),
            Ok(Err(e)) => json!({"error": e.to_string()}),
            Err(_) => json!({"error": "no time left before the deadline"}),
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
