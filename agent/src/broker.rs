//! The running agent: settings plus the live components every handler uses.

use std::sync::Arc;

use silt_coordinator::{Command, MetaLog, Outcome, TopicId};
use silt_tiering::{store::StoreCounters, ObjectReader};

use crate::{
    config::Settings,
    group::{offsets::OffsetStore, Groups},
    membership::{rendezvous, AgentInfo, Membership},
    produce::Producer,
};

pub struct Broker {
    pub settings: Settings,
    pub log: Arc<MetaLog>,
    pub reader: ObjectReader,
    pub producer: Producer,
    pub node_id: i32,
    pub cluster_id: String,
    pub membership: Arc<Membership>,
    pub counters: Arc<StoreCounters>,
    pub groups: Arc<Groups>,
    pub offsets: OffsetStore,
    pub producer_ids: crate::producer_ids::ProducerIds,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    InvalidName(String),
    InvalidPartitions(String),
    Exists,
    Storage(String),
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

impl Broker {
    /// The live agent coordinating `group`.
    pub fn group_coordinator(&self, group: &str) -> AgentInfo {
        let live = self.membership.live();
        let key = format!("group:{group}");
        rendezvous(&live, key.as_bytes(), None)
            .cloned()
            .unwrap_or_else(|| self.membership.me().clone())
    }

    pub fn is_group_coordinator(&self, group: &str) -> bool {
        self.group_coordinator(group).node_id == self.node_id
    }

    /// Creates a topic through the commit log. Returns its id, and whether
    /// this call created it.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: std::collections::BTreeMap<String, String>,
    ) -> Result<(TopicId, bool), TopicError> {
        validate_topic_name(name)?;
        if !(1..=silt_coordinator::state::MAX_PARTITIONS as i32).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "partition count {partitions} must be between 1 and {}",
                silt_coordinator::state::MAX_PARTITIONS
            )));
        }
        let id = TopicId(ulid::Ulid::new().to_bytes());
        let outcome = self
            .log
            .propose(Command::CreateTopic {
                name: name.to_string(),
                id,
                partitions: partitions as u32,
                config,
            })
            .await
            .map_err(|e| TopicError::Storage(e.to_string()))?;
        match outcome {
            Outcome::TopicCreated(id) => {
                tracing::info!(topic = name, partitions, id = %id, "topic created");
                Ok((id, true))
            }
            Outcome::TopicExists(id) => Ok((id, false)),
            other => Err(TopicError::Storage(format!(
                "create topic {name}: {other:?}"
            ))),
        }
    }

    /// Looks a topic up, creating it with the default partition count when
    /// auto-creation is on and `allow` says the request permits it.
    pub async fn resolve_topic(&self, name: &str, allow: bool) -> Option<(TopicId, usize)> {
        if let Some(t) = self.log.state().topics.get(name) {
            return Some((t.id, t.partitions.len()));
        }
        if !(allow && self.settings.auto_create_topics) {
            return None;
        }
        match self
            .create_topic(
                name,
                self.settings.default_partitions as i32,
                Default::default(),
            )
            .await
        {
            Ok(_) => self
                .log
                .state()
                .topics
                .get(name)
                .map(|t| (t.id, t.partitions.len())),
            Err(e) => {
                tracing::debug!(topic = name, error = ?e, "auto-create refused");
                None
            }
        }
    }
}
