//! Retention: moves each partition's log start past records older than
//! `retention.ms` or beyond `retention.bytes`, whole index entries at a time
//! (as Kafka deletes whole segments), through a `DeleteRecords` record bound
//! to the topic's id.

use silt_coordinator::{Command, Outcome, State, TimestampType};

use super::{JobError, Jobs, Report};

/// Cluster defaults for topics without their own `retention.*` config
/// (Kafka's `log.retention.ms`, `log.retention.bytes`).
#[derive(Debug, Clone, Copy)]
pub struct RetentionDefaults {
    /// `None` keeps records forever.
    pub ms: Option<i64>,
    pub bytes: Option<i64>,
}

impl Default for RetentionDefaults {
    fn default() -> Self {
        Self {
            ms: Some(7 * 24 * 3600 * 1000),
            bytes: None,
        }
    }
}

/// A log start to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trim {
    pub topic: String,
    pub id: silt_coordinator::TopicId,
    pub partition: i32,
    pub offset: i64,
}

/// The log starts retention moves at `now` (ms), in topic and partition
/// order.
pub fn plan(state: &State, now: i64, defaults: RetentionDefaults) -> Vec<Trim> {
    let mut out = Vec::new();
    for t in state.topics() {
        let c = t.config();
        let ms = if c.overrides().contains_key("retention.ms") {
            c.retention_ms
        } else {
            defaults.ms
        };
        let bytes = if c.overrides().contains_key("retention.bytes") {
            c.retention_bytes
        } else {
            defaults.bytes
        };
        if ms.is_none() && bytes.is_none() {
            continue;
        }
        for p in 0..t.partition_count() as i32 {
            let (Some(snap), Some(index)) =
                (state.partition(t.name(), p), state.index(t.name(), p))
            else {
                continue;
            };
            let mut start = snap.log_start_offset;
            if let Some(ms) = ms {
                let cutoff = now.saturating_sub(ms);
                for e in index {
                    // Batches without timestamps (-1) age by their append
                    // time, as Kafka falls back to the segment's mtime.
                    let ts = match snap.timestamp_type {
                        TimestampType::CreateTime if e.max_timestamp >= 0 => e.max_timestamp,
                        _ => e.append_time,
                    };
                    if ts >= cutoff {
                        break;
                    }
                    start = start.max(e.end_offset);
                }
            }
            if let Some(limit) = bytes {
                let mut total: i64 = index.iter().map(|e| e.length as i64).sum();
                for e in index {
                    if total - (e.length as i64) < limit {
                        break;
                    }
                    total -= e.length as i64;
                    start = start.max(e.end_offset);
                }
            }
            if start > snap.log_start_offset {
                out.push(Trim {
                    topic: t.name().to_string(),
                    id: t.id(),
                    partition: p,
                    offset: start,
                });
            }
        }
    }
    out
}

pub(super) async fn run(jobs: &Jobs, deadline: tokio::time::Instant) -> Result<Report, JobError> {
    let now = jobs.now();
    let trims = plan(&jobs.log.state(), now, jobs.settings.retention);
    let mut report = Report::default();
    for t in trims {
        if tokio::time::Instant::now() >= deadline {
            report.more = true;
            break;
        }
        let outcome = jobs
            .log
            .propose(Command::DeleteRecords {
                name: t.topic.clone(),
                partition: t.partition,
                offset: t.offset,
                topic_id: Some(t.id),
                // When the entries leave the index: their grace starts now.
                time: jobs.now(),
            })
            .await?;
        if let Outcome::RecordsDeleted(start) = outcome {
            tracing::debug!(topic = %t.topic, partition = t.partition, start, "retention moved the log start");
            report.partitions_trimmed += 1;
        }
    }
    Ok(report)
}
