//! The metadata model: an ordered commit log on an etcd-shaped store,
//! replayed by every agent into a deterministic state machine.

pub mod clock;
pub mod conformance;
pub mod embedded;
pub mod etcd;
pub mod faulty;
pub mod keys;
pub mod lock;
pub mod log;
pub mod membership;
pub mod metastore;
pub mod offsets;
pub mod producer_ids;
pub mod records;
pub mod state;
pub mod topic_config;

pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;
pub use lock::Lock;
pub use log::{Guard, LogError, MetaLog};
pub use membership::{AgentInfo, Membership};
pub use metastore::{MetaError, MetaStore};
pub use offsets::{Committed, OffsetStore};
pub use producer_ids::ProducerIds;
pub use records::{BatchRef, ChunkRef, Command, TopicId};
pub use state::{
    BatchOutcome, ChunkLocation, ChunkOutcome, IndexEntry, Outcome, PartitionSnapshot, State,
    TimestampQuery,
};
pub use topic_config::{TimestampType, TopicConfig};
