//! The metadata model: an ordered commit log on an etcd-shaped store,
//! replayed by every agent into a deterministic state machine.

pub mod conformance;
pub mod embedded;
pub mod etcd;
pub mod log;
pub mod metastore;
pub mod records;
pub mod state;

pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;
pub use log::{LogError, MetaLog};
pub use metastore::{MetaError, MetaStore};
pub use records::{BatchRef, ChunkRef, Command, TopicId};
pub use state::{BatchOutcome, ChunkOutcome, IndexEntry, Outcome, State};
