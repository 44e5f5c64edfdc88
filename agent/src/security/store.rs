//! Users (SCRAM credentials) and ACLs in the metadata store, with a copy
//! in memory kept current by a watch: a change made through any agent
//! reaches every agent within the watch's latency, without a restart.
//!
//! They are plain keys beside the commit log (decision 0010): they have no
//! ordering relation with the data, and every agent reads all of them.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use aws_lc_rs::digest;
use bytes::Bytes;
use futures::StreamExt;
use silt_coordinator::{
    keys::{unescape, Layout},
    metastore::{EventKind, KeyRange, KeyValue, MetaError, MetaStore},
};
use tokio_util::sync::CancellationToken;

use super::{
    acl::{AclBinding, AclFilter},
    scram::{Credential, Mechanism},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("limit reached: {0}")]
    Limit(String),
}

#[derive(Default)]
struct Snapshot {
    scram: BTreeMap<(String, Mechanism), Credential>,
    /// By key.
    acls: BTreeMap<String, AclBinding>,
    /// The bindings, shared with authorizations in flight.
    acl_list: Arc<Vec<AclBinding>>,
    /// The revision each key was last seen at (deletes included), so that
    /// an older event arriving after a newer local write is ignored.
    revisions: std::collections::HashMap<String, i64>,
}

/// Keys whose revisions are remembered at most; beyond, the memory is
/// cleared (an old event can then briefly win a race it would have lost).
const MAX_REVISIONS: usize = 50_000;

impl Snapshot {
    fn apply(&mut self, layout: &Layout, kv: &KeyValue, put: bool) {
        if self
            .revisions
            .get(&kv.key)
            .is_some_and(|seen| *seen >= kv.mod_revision)
        {
            return;
        }
        if self.revisions.len() >= MAX_REVISIONS {
            self.revisions.clear();
        }
        self.revisions.insert(kv.key.clone(), kv.mod_revision);
        if let Some(rest) = kv.key.strip_prefix(&layout.scram_all()) {
            let Some((mech, user)) = rest.split_once('/') else {
                return;
            };
            let Some(mech) = Mechanism::parse(mech) else {
                return;
            };
            let id = (unescape(user), mech);
            if !put {
                self.scram.remove(&id);
            } else if let Ok(c) = serde_json::from_slice::<Credential>(&kv.value) {
                self.scram.insert(id, c);
            } else {
                tracing::warn!(key = %kv.key, "unreadable SCRAM credential ignored");
            }
        } else if kv.key.starts_with(&layout.acls()) {
            if !put {
                self.acls.remove(&kv.key);
            } else if let Ok(b) = serde_json::from_slice::<AclBinding>(&kv.value) {
                self.acls.insert(kv.key.clone(), b);
            } else {
                tracing::warn!(key = %kv.key, "unreadable ACL binding ignored");
            }
            self.acl_list = Arc::new(self.acls.values().cloned().collect());
        }
    }
}

/// Bounds of what the store holds (named settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_scram_credentials`: users × mechanisms.
    pub max_credentials: usize,
    /// `max_acls`: ACL bindings.
    pub max_acls: usize,
}

pub struct SecurityStore {
    meta: Arc<dyn MetaStore>,
    layout: Layout,
    limits: Limits,
    snapshot: RwLock<Snapshot>,
}

impl SecurityStore {
    /// Loads users and ACLs, then keeps them current until `shutdown`.
    pub async fn open(
        meta: Arc<dyn MetaStore>,
        cluster: &str,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, MetaError> {
        let store = Arc::new(Self {
            meta,
            layout: Layout::new(cluster),
            limits,
            snapshot: RwLock::new(Snapshot::default()),
        });
        let revision = store.reload().await?;
        tokio::spawn(store.clone().follow(revision, shutdown));
        Ok(store)
    }

    /// A store that holds nothing and follows nothing (no metadata store
    /// behind it: unit tests of other parts).
    pub fn empty(meta: Arc<dyn MetaStore>, cluster: &str, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            meta,
            layout: Layout::new(cluster),
            limits,
            snapshot: RwLock::new(Snapshot::default()),
        })
    }

    async fn reload(&self) -> Result<i64, MetaError> {
        let r = self
            .meta
            .range(KeyRange::Prefix(self.layout.security()))
            .await?;
        let mut snap = Snapshot::default();
        for kv in &r.kvs {
            snap.apply(&self.layout, kv, true);
        }
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snap;
        Ok(r.revision)
    }

    async fn follow(self: Arc<Self>, mut revision: i64, shutdown: CancellationToken) {
        loop {
            let watch = self
                .meta
                .watch(KeyRange::Prefix(self.layout.security()), revision + 1)
                .await;
            match watch {
                Ok(mut events) => loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        n = events.next() => n,
                    };
                    match next {
                        Some(Ok(batch)) => {
                            let mut snap = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
                            for e in batch {
                                revision = revision.max(e.kv.mod_revision);
                                snap.apply(&self.layout, &e.kv, e.kind == EventKind::Put);
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "users and ACLs watch failed; reloading");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => tracing::warn!(error = %e, "users and ACLs watch failed; reloading"),
            }
            // Start again from a full read (a compacted revision, a lost
            // connection).
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                match self.reload().await {
                    Ok(r) => {
                        revision = r;
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "reloading users and ACLs failed"),
                }
            }
        }
    }

    pub fn credential(&self, user: &str, mech: Mechanism) -> Option<Credential> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .scram
            .get(&(user.to_string(), mech))
            .cloned()
    }

    /// Every user with its mechanisms and iteration counts.
    pub fn users(&self) -> BTreeMap<String, Vec<(Mechanism, u32)>> {
        let snap = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<String, Vec<(Mechanism, u32)>> = BTreeMap::new();
        for ((user, mech), c) in &snap.scram {
            out.entry(user.clone())
                .or_default()
                .push((*mech, c.iterations));
        }
        out
    }

    pub async fn put_credential(
        &self,
        user: &str,
        mech: Mechanism,
        credential: &Credential,
    ) -> Result<(), StoreError> {
        {
            let snap = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
            if !snap.scram.contains_key(&(user.to_string(), mech))
                && snap.scram.len() >= self.limits.max_credentials
            {
                return Err(StoreError::Limit(format!(
                    "max_scram_credentials ({}) credentials are stored",
                    self.limits.max_credentials
                )));
            }
        }
        let key = self.layout.scram(mech.name(), user);
        let value = Bytes::from(serde_json::to_vec(credential).expect("serializes"));
        let revision = self.meta.put(&key, value.clone(), None).await?;
        // Seen here at once, not only when the watch delivers it.
        self.snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&self.layout, &kv(key, value, revision), true);
        Ok(())
    }

    /// Whether the credential existed.
    pub async fn delete_credential(&self, user: &str, mech: Mechanism) -> Result<bool, StoreError> {
        let key = self.layout.scram(mech.name(), user);
        let (n, revision) = self.meta.delete(KeyRange::Key(key.clone())).await?;
        self.snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&self.layout, &kv(key, Bytes::new(), revision), false);
        Ok(n > 0)
    }

    /// The bindings now (cheap: shared).
    pub fn acls(&self) -> Arc<Vec<AclBinding>> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .acl_list
            .clone()
    }

    fn acl_key(&self, b: &AclBinding) -> String {
        let d = digest::digest(&digest::SHA256, &serde_json::to_vec(b).expect("serializes"));
        let hex: String = d.as_ref()[..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        self.layout.acl(&hex)
    }

    /// Stores a binding (storing one twice keeps one).
    pub async fn create_acl(&self, b: &AclBinding) -> Result<(), StoreError> {
        let key = self.acl_key(b);
        {
            let snap = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
            if !snap.acls.contains_key(&key) && snap.acls.len() >= self.limits.max_acls {
                return Err(StoreError::Limit(format!(
                    "max_acls ({}) ACL bindings are stored",
                    self.limits.max_acls
                )));
            }
        }
        let value = Bytes::from(serde_json::to_vec(b).expect("serializes"));
        let revision = self.meta.put(&key, value.clone(), None).await?;
        self.snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&self.layout, &kv(key, value, revision), true);
        Ok(())
    }

    /// Deletes the bindings `filter` matches; returns them.
    pub async fn delete_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, StoreError> {
        let matching: Vec<(String, AclBinding)> = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .acls
            .iter()
            .filter(|(_, b)| filter.matches(b))
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect();
        let mut deleted = Vec::with_capacity(matching.len());
        for (key, b) in matching {
            let (n, revision) = self.meta.delete(KeyRange::Key(key.clone())).await?;
            self.snapshot
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .apply(&self.layout, &kv(key, Bytes::new(), revision), false);
            if n > 0 {
                deleted.push(b);
            }
        }
        Ok(deleted)
    }
}

fn kv(key: String, value: Bytes, revision: i64) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: revision,
        mod_revision: revision,
        version: 1,
        lease: 0,
    }
}
