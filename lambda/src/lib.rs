//! AWS Lambda entry points over the agent's libraries.
//!
//! - `silt-http` serves the HTTP API (`docs/http-api.md`) behind a function
//!   URL or API Gateway: it loads the metadata (checkpoint, then the log
//!   since) at cold start, keeps it current while warm, and writes and
//!   reads like an agent (segment PUT, commit through etcd, ranged GETs).
//!   No agent needs to be running.
//! - `silt-jobs` runs one pass of each tiering job per invocation (an
//!   EventBridge schedule), under the same locks as agents.
//!
//! Both read the agent's settings from `SILT_*` environment variables.

use silt_agent::config::Settings;

/// The agent's settings from `SILT_*` environment variables, checked as an
/// agent's are.
pub fn settings() -> anyhow::Result<Settings> {
    let s = Settings::load(None, std::env::vars(), &[])?;
    s.validate_agent()?;
    Ok(s)
}

/// Logs as JSON lines (CloudWatch), filtered by `SILT_LOG` (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SILT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}
