//! `silt-http`: the HTTP API as a Lambda function (function URL or API
//! Gateway), with no agent running.

use std::{sync::Arc, time::Instant};

use silt_agent::{
    clock::SystemClock,
    runtime::{open_core, Components},
};

/// The flush interval unless `SILT_FLUSH_INTERVAL` says otherwise.
const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    silt_lambda::init_logging();
    let started = Instant::now();
    let mut settings = silt_lambda::settings()?;
    // One request at a time per function instance: waiting to batch with
    // other requests would only add latency (and billed time).
    if std::env::var_os("SILT_FLUSH_INTERVAL").is_none() {
        settings.flush_interval = FLUSH_INTERVAL;
    }
    let (meta, bucket) = silt_agent::cluster::connect(&settings, None).await?;
    // No block cache: a function's memory is better spent on the request;
    // reads are ranged GETs, with read-ahead for sequential fetches.
    let core = open_core(
        &settings,
        Components {
            meta,
            bucket,
            cache: Arc::new(silt_tiering::NoCache::default()),
            clock: Arc::new(SystemClock),
        },
    )
    .await?;
    let state = core.log.state().totals();
    tracing::info!(
        cold_start_ms = started.elapsed().as_millis() as u64,
        revision = core.log.applied(),
        topics = state.topics,
        partitions = state.partitions,
        "metadata loaded; serving the HTTP API"
    );
    let router = Arc::new(core.api(&settings)).router();
    lambda_http::run(router).await
}
