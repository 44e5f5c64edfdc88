//! Topics: creation (explicit and automatic), deletion, partitions,
//! configuration and deleted records. Every change goes through the commit
//! log; reads come from the replicated state.

use std::{collections::BTreeMap, sync::Arc};

use silt_coordinator::{
    state::MAX_PARTITIONS, topic_config::ConfigError, Command, LogError, MetaLog, Outcome,
    TopicConfig, TopicId,
};

use crate::{
    clock::{Clock, SystemClock},
    error::{Classify, ErrorKind},
};

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A request silt cannot honour (replica assignments, …).
    #[error("{0}")]
    Unsupported(String),
    #[error("topic {0} does not exist")]
    NotFound(String),
    #[error("topic {0} already exists")]
    Exists(String),
    #[error("{topic}-{partition}: offset {offset} is outside {low}..={high}")]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
        low: i64,
        high: i64,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Log(#[from] LogError),
    /// The log refused the change for a reason the checks above missed
    /// (a concurrent change won).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    PolicyViolation(String),
}

impl Classify for TopicError {
    fn kind(&self) -> ErrorKind {
        match self {
            TopicError::InvalidName(_) => ErrorKind::InvalidTopic,
            TopicError::InvalidPartitions(_) => ErrorKind::InvalidPartitions,
            TopicError::InvalidReplicationFactor(_) => ErrorKind::InvalidReplicationFactor,
            TopicError::Unsupported(_) => ErrorKind::InvalidRequest,
            TopicError::NotFound(_) => ErrorKind::UnknownTopicOrPartition,
            TopicError::Exists(_) => ErrorKind::TopicExists,
            TopicError::OffsetOutOfRange { .. } => ErrorKind::OffsetOutOfRange,
            TopicError::Config(e) => e.kind(),
            TopicError::Log(e) => e.kind(),
            TopicError::Refused(_) => ErrorKind::InvalidRequest,
            TopicError::PolicyViolation(_) => ErrorKind::PolicyViolation,
        }
    }
}

/// Kafka's rule for legal topic names.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(TopicError::InvalidName(format!(
            "topic name {name:?} is not allowed"
        )));
    }
    if name.len() > 249 {
        return Err(TopicError::InvalidName(format!(
            "topic name is {} characters long, the limit is 249",
            name.len()
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(TopicError::InvalidName(format!(
            "topic name {name:?} may contain only ASCII letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn check_partition_count(partitions: i32) -> Result<(), TopicError> {
    if !(1..=MAX_PARTITIONS as i32).contains(&partitions) {
        return Err(TopicError::InvalidPartitions(format!(
            "partition count {partitions} must be between 1 and {MAX_PARTITIONS}"
        )));
    }
    Ok(())
}

/// A topic as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: TopicId,
    pub partitions: usize,
}

pub struct Topics {
    log: Arc<MetaLog>,
    auto_create: bool,
    default_partitions: u32,
    /// Stamps deletions (when their objects became unreferenced).
    clock: Arc<dyn Clock>,
}

impl Topics {
    pub fn new(log: Arc<MetaLog>, auto_create: bool, default_partitions: u32) -> Self {
        Self {
            log,
            auto_create,
            default_partitions,
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for the times deletions carry.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Partitions of topics created without a count.
    pub fn default_partitions(&self) -> u32 {
        self.default_partitions
    }

    pub fn get(&self, name: &str) -> Option<TopicInfo> {
        self.log.state().topic(name).map(|t| TopicInfo {
            id: t.id(),
            partitions: t.partition_count(),
        })
    }

    pub fn name_of(&self, id: &TopicId) -> Option<String> {
        self.log
            .state()
            .topic_by_id(id)
            .map(|t| t.name().to_string())
    }

    pub fn config(&self, name: &str) -> Option<TopicConfig> {
        self.log.state().topic(name).map(|t| t.config().clone())
    }

    /// Every topic with its partition count, by name.
    pub fn list(&self) -> Vec<(String, TopicInfo)> {
        self.log
            .state()
            .topics()
            .map(|t| {
                (
                    t.name().to_string(),
                    TopicInfo {
                        id: t.id(),
                        partitions: t.partition_count(),
                    },
                )
            })
            .collect()
    }

    /// Validates and creates a topic. With `validate_only`, only checks.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicInfo, TopicError> {
        validate_topic_name(name)?;
        check_partition_count(partitions)?;
        TopicConfig::parse(overrides.clone())?;
        if validate_only {
            if self.get(name).is_some() {
                return Err(TopicError::Exists(name.to_string()));
            }
            return Ok(TopicInfo {
                id: TopicId::default(),
                partitions: partitions as usize,
            });
        }
        let id = TopicId(ulid::Ulid::new().to_bytes());
        let outcome = self
            .log
            .propose(Command::CreateTopic {
                name: name.to_string(),
                id,
                partitions: partitions as u32,
                config: overrides,
            })
            .await?;
        match outcome {
            Outcome::TopicCreated(id) => {
                tracing::info!(topic = name, partitions, id = %id, "topic created");
                Ok(TopicInfo {
                    id,
                    partitions: partitions as usize,
                })
            }
            Outcome::TopicExists(_) => Err(TopicError::Exists(name.to_string())),
            other => Err(TopicError::Refused(format!(
                "create topic {name}: {other:?}"
            ))),
        }
    }

    /// Looks a topic up, creating it with the default partition count when
    /// auto-creation is on and `allow` says the request permits it.
    pub async fn resolve(&self, name: &str, allow: bool) -> Option<TopicInfo> {
        if let Some(t) = self.get(name) {
            return Some(t);
        }
        if !(allow && self.auto_create) {
            return None;
        }
        match self
            .create(name, self.default_partitions as i32, BTreeMap::new(), false)
            .await
        {
            Ok(t) => Some(t),
            // Another agent created it first.
            Err(TopicError::Exists(_)) => self.get(name),
            Err(e) => {
                tracing::debug!(topic = name, error = %e, "auto-create refused");
                None
            }
        }
    }

    pub async fn delete(&self, name: &str) -> Result<TopicId, TopicError> {
        match self
            .log
            .propose(Command::DeleteTopic {
                name: name.to_string(),
                time: self.clock.now_ms(),
            })
            .await?
        {
            Outcome::TopicDeleted(id) => {
                tracing::info!(topic = %name, id = %id, "topic deleted");
                Ok(id)
            }
            _ => Err(TopicError::NotFound(name.to_string())),
        }
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let current = self
            .get(name)
            .ok_or_else(|| TopicError::NotFound(name.to_string()))?
            .partitions as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {count} must be larger"
            )));
        }
        if count as u32 > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitions(format!(
                "at most {MAX_PARTITIONS} partitions per topic"
            )));
        }
        if validate_only {
            return Ok(());
        }
        match self
            .log
            .propose(Command::CreatePartitions {
                name: name.to_string(),
                partitions: count as u32,
            })
            .await?
        {
            Outcome::PartitionsCreated => {
                tracing::info!(topic = %name, partitions = count, "partitions added");
                Ok(())
            }
            Outcome::Invalid(m) => Err(TopicError::InvalidPartitions(m)),
            _ => Err(TopicError::NotFound(name.to_string())),
        }
    }

    /// Edits a topic's overrides, validates the result and sets it.
    pub async fn alter_config(
        &self,
        name: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ConfigError>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let mut overrides = self
            .config(name)
            .ok_or_else(|| TopicError::NotFound(name.to_string()))?
            .overrides()
            .clone();
        edit(&mut overrides)?;
        TopicConfig::parse(overrides.clone())?;
        if validate_only {
            return Ok(());
        }
        match self
            .log
            .propose(Command::SetTopicConfig {
                name: name.to_string(),
                config: overrides,
            })
            .await?
        {
            Outcome::ConfigSet => Ok(()),
            _ => Err(TopicError::NotFound(name.to_string())),
        }
    }

    /// Advances a partition's log start offset; `offset` -1 means the high
    /// watermark. Returns the new log start offset.
    pub async fn delete_records(
        &self,
        name: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i64, TopicError> {
        let p = self
            .log
            .state()
            .partition(name, partition)
            .ok_or_else(|| TopicError::NotFound(name.to_string()))?;
        let offset = if offset == -1 {
            p.high_watermark
        } else {
            offset
        };
        let out_of_range = || TopicError::OffsetOutOfRange {
            topic: name.to_string(),
            partition,
            offset,
            low: 0,
            high: p.high_watermark,
        };
        if offset < 0 || offset > p.high_watermark {
            return Err(out_of_range());
        }
        // Kafka's rule: records of a topic without the delete policy stay
        // until the cleaner removes them.
        let deletable = self
            .log
            .state()
            .topic(name)
            .is_some_and(|t| t.config().delete);
        if !deletable {
            return Err(TopicError::PolicyViolation(format!(
                "Records of partition {name}-{partition} can not be deleted due to the configured policy"
            )));
        }
        match self
            .log
            .propose(Command::DeleteRecords {
                name: name.to_string(),
                partition,
                offset,
                topic_id: None,
                time: self.clock.now_ms(),
            })
            .await?
        {
            Outcome::RecordsDeleted(low) => Ok(low),
            Outcome::Invalid(_) => Err(out_of_range()),
            _ => Err(TopicError::NotFound(name.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use silt_coordinator::EmbeddedStore;

    async fn topics(auto: bool) -> Topics {
        let log = MetaLog::open(
            Arc::new(EmbeddedStore::in_memory()),
            Arc::new(InMemory::new()),
            "t",
            "w",
        )
        .await
        .unwrap();
        Topics::new(log, auto, 3)
    }

    fn kind(r: Result<impl std::fmt::Debug, TopicError>) -> ErrorKind {
        r.unwrap_err().kind()
    }

    #[tokio::test]
    async fn create_validate_and_errors() {
        let t = topics(true).await;
        let cfg = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(
            kind(t.create("bad name", 1, BTreeMap::new(), false).await),
            ErrorKind::InvalidTopic
        );
        assert_eq!(
            kind(t.create("a", 0, BTreeMap::new(), false).await),
            ErrorKind::InvalidPartitions
        );
        assert_eq!(
            kind(t.create("a", 1, cfg("segment.bytes", "1"), false).await),
            ErrorKind::InvalidConfig
        );
        t.create("a", 1, BTreeMap::new(), true).await.unwrap();
        assert!(t.get("a").is_none(), "validate_only creates nothing");
        let a = t
            .create("a", 2, cfg("retention.ms", "-1"), false)
            .await
            .unwrap();
        assert_eq!(a.partitions, 2);
        assert_eq!(
            kind(t.create("a", 2, BTreeMap::new(), false).await),
            ErrorKind::TopicExists
        );
        assert_eq!(t.config("a").unwrap().retention_ms, None);
        assert_eq!(t.name_of(&a.id).as_deref(), Some("a"));
        // Auto-creation with the default partition count.
        assert_eq!(t.resolve("auto", true).await.unwrap().partitions, 3);
        assert!(t.resolve("not-allowed", false).await.is_none());
        // Partitions only grow.
        assert_eq!(
            kind(t.create_partitions("a", 2, false).await),
            ErrorKind::InvalidPartitions
        );
        t.create_partitions("a", 4, false).await.unwrap();
        assert_eq!(t.get("a").unwrap().partitions, 4);
        assert_eq!(
            kind(t.create_partitions("nope", 4, false).await),
            ErrorKind::UnknownTopicOrPartition
        );
        // Configs are validated after the edit.
        t.alter_config(
            "a",
            |c| {
                c.insert("message.timestamp.type".into(), "LogAppendTime".into());
                Ok(())
            },
            false,
        )
        .await
        .unwrap();
        assert_eq!(
            t.config("a").unwrap().timestamp_type,
            silt_coordinator::TimestampType::LogAppendTime
        );
        assert_eq!(
            kind(
                t.alter_config(
                    "a",
                    |c| {
                        c.insert("retention.ms".into(), "-5".into());
                        Ok(())
                    },
                    false
                )
                .await
            ),
            ErrorKind::InvalidConfig
        );
        assert_eq!(
            kind(t.delete_records("a", 0, 5).await),
            ErrorKind::OffsetOutOfRange
        );
        assert_eq!(t.delete_records("a", 0, -1).await.unwrap(), 0);
        t.delete("a").await.unwrap();
        assert_eq!(
            kind(t.delete("a").await),
            ErrorKind::UnknownTopicOrPartition
        );
        // Without auto-creation, unknown topics stay unknown.
        let t = topics(false).await;
        assert!(t.resolve("x", true).await.is_none());
    }
}
