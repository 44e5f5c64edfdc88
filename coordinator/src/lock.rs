//! A lock held through a metadata-store lease: one holder at a time for a
//! background job (checkpoints, retention, compaction, object GC).
//!
//! A lease lock is a courtesy, not a fence: a holder paused for longer than
//! the lease may still be running when the next one starts. Every job is
//! therefore safe without it (checkpoints compare on the pointer, compaction
//! compares on the index, GC acts only on what the log says); the lock only
//! keeps agents from doing the same work twice.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::metastore::{Compare, CompareOp, LeaseId, MetaError, MetaStore, Txn, TxnOp};

/// A held lock; released by [`Lock::release`], or when its lease runs out
/// after it is dropped.
pub struct Lock {
    store: Arc<dyn MetaStore>,
    lease: LeaseId,
    keepalive: JoinHandle<()>,
}

impl Lock {
    /// Takes the lock at `key` if no one holds it; keeps it alive until
    /// released.
    pub async fn try_acquire(
        store: Arc<dyn MetaStore>,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lock>, MetaError> {
        let lease = store.lease_grant(ttl).await?;
        let taken = store
            .txn(Txn {
                compares: vec![Compare::version(key, CompareOp::Equal, 0)],
                success: vec![TxnOp::Put {
                    key: key.to_string(),
                    value: Bytes::from(holder.to_string()),
                    lease: Some(lease),
                }],
                failure: vec![],
            })
            .await;
        match taken {
            Ok(r) if r.succeeded => {}
            other => {
                let _ = store.lease_revoke(lease).await;
                return other.map(|_| None);
            }
        }
        let keepalive = {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    if store.lease_keep_alive(lease).await.is_err() {
                        return;
                    }
                }
            })
        };
        Ok(Some(Lock {
            store,
            lease,
            keepalive,
        }))
    }

    /// Whether the lease is still being kept alive (a failed keep-alive
    /// means the lock may have passed to another holder).
    pub fn is_alive(&self) -> bool {
        !self.keepalive.is_finished()
    }

    pub async fn release(self) {
        self.keepalive.abort();
        let _ = self.store.lease_revoke(self.lease).await;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    #[tokio::test]
    async fn one_holder_at_a_time() {
        let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let ttl = Duration::from_secs(5);
        let a = Lock::try_acquire(store.clone(), "/l", "a", ttl)
            .await
            .unwrap()
            .expect("free");
        assert!(Lock::try_acquire(store.clone(), "/l", "b", ttl)
            .await
            .unwrap()
            .is_none());
        a.release().await;
        assert!(Lock::try_acquire(store.clone(), "/l", "b", ttl)
            .await
            .unwrap()
            .is_some());
    }
}
