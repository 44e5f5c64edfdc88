//! Retention: moves each partition's log start past records older than
//! `retention.ms` or beyond `retention.bytes`, whole index entries at a time
//! (as Kafka deletes whole segments), through a `DeleteRecords` record bound
//! to the topic's id.

use silt_coordinator::{Command, Outcome, State, TimestampType};

use super::{Job, JobError, Jobs, Report};

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

/// Where retention moves a partition's log start at `now` (ms), if it
/// moves.
pub fn trim_for(
    state: &State,
    topic: &str,
    p: i32,
    now: i64,
    defaults: RetentionDefaults,
) -> Option<Trim> {
    let t = state.topic(topic)?;
    let c = t.config();
    // `cleanup.policy=compact` alone: nothing is deleted by age or size.
    if !c.delete {
        return None;
    }
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
        return None;
    }
    let (snap, index) = (state.partition(topic, p)?, state.index(topic, p)?);
    let mut start = snap.log_start_offset;
    if let Some(ms) = ms {
        let cutoff = now.saturating_sub(ms);
        for e in index {
            // Batches without timestamps (-1) age by their append time,
            // as Kafka falls back to the segment's mtime.
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
    (start > snap.log_start_offset).then(|| Trim {
        topic: topic.to_string(),
        id: t.id(),
        partition: p,
        offset: start,
    })
}

pub(super) async fn run(jobs: &Jobs, deadline: tokio::time::Instant) -> Result<Report, JobError> {
    let mut report = Report::default();
    // From where the last pass stopped, so that every partition gets its
    // turn however many there are; the state is locked per partition.
    for key in jobs.rotation(Job::Retention) {
        if tokio::time::Instant::now() >= deadline {
            report.more = true;
            jobs.set_cursor(Job::Retention, Some(key));
            return Ok(report);
        }
        let trim = trim_for(
            &jobs.log.state(),
            &key.0,
            key.1,
            jobs.now(),
            jobs.settings.retention,
        );
        let Some(t) = trim else { continue };
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
    jobs.set_cursor(Job::Retention, None);
    Ok(report)
}
