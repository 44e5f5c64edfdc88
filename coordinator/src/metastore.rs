//! The etcd-shaped metadata store interface.
//!
//! It mirrors the etcd v3 KV, lease and watch APIs closely enough that the
//! etcd implementation is a thin translation: keys and values are bytes,
//! every mutation bumps a global revision, transactions compare then apply,
//! and a watch delivers every event from a revision on, in order.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub type Revision = i64;
pub type LeaseId = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
    pub lease: LeaseId,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MetaError {
    #[error("watch start revision {requested} was compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("metadata store: {0}")]
    Other(String),
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// A key range: one key, or every key with a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    Key(String),
    Prefix(String),
}

impl KeyRange {
    pub fn contains(&self, key: &str) -> bool {
        match self {
            KeyRange::Key(k) => k == key,
            KeyRange::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// Number of modifications since creation; 0 when the key is absent.
    Version(i64),
    CreateRevision(Revision),
    ModRevision(Revision),
    Value(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    pub fn version(key: impl Into<String>, op: CompareOp, v: i64) -> Self {
        Self {
            key: key.into(),
            op,
            target: CompareTarget::Version(v),
        }
    }
    pub fn value(key: impl Into<String>, op: CompareOp, v: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            op,
            target: CompareTarget::Value(v.into()),
        }
    }
    pub fn mod_revision(key: impl Into<String>, op: CompareOp, r: Revision) -> Self {
        Self {
            key: key.into(),
            op,
            target: CompareTarget::ModRevision(r),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Put {
        key: String,
        value: Bytes,
        lease: Option<LeaseId>,
    },
    Delete(KeyRange),
    Range(KeyRange),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResponse {
    Put,
    Delete { deleted: u64 },
    Range(Vec<KeyValue>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: Revision,
    pub responses: Vec<TxnOpResponse>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For deletes: the key, with `mod_revision` set to the delete's revision.
    pub kv: KeyValue,
}

/// A watch: batches of events in revision order, never with gaps.
pub type WatchStream = BoxStream<'static, Result<Vec<Event>>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    pub revision: Revision,
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Keys in `range`, sorted by key, at the current revision.
    async fn range(&self, range: KeyRange) -> Result<RangeResponse>;
    /// Returns the new revision.
    async fn put(&self, key: &str, value: Bytes, lease: Option<LeaseId>) -> Result<Revision>;
    /// Returns how many keys were deleted and the revision after.
    async fn delete(&self, range: KeyRange) -> Result<(u64, Revision)>;
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId>;
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<()>;
    async fn lease_revoke(&self, lease: LeaseId) -> Result<()>;
    /// Every event on `range` with revision >= `start`, in order.
    async fn watch(&self, range: KeyRange, start: Revision) -> Result<WatchStream>;
    /// Drops history at or below `revision`; watches from there fail with
    /// [`MetaError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The highest mod revision among the keys under `prefix` (`None` when
    /// there are none). Implementations should ask for that one key only
    /// (etcd: sorted by mod revision, descending, limit 1, keys only).
    async fn latest_mod_revision(&self, prefix: &str) -> Result<Option<Revision>> {
        Ok(self
            .range(KeyRange::Prefix(prefix.to_string()))
            .await?
            .kvs
            .iter()
            .map(|kv| kv.mod_revision)
            .max())
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self
            .range(KeyRange::Key(key.to_string()))
            .await?
            .kvs
            .into_iter()
            .next())
    }
}
