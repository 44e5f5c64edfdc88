//! Metadata stores that misbehave on purpose: test configuration only.
//!
//! [`Pausable`] holds back watch events while paused, as a watch that lags
//! far behind the store does.
//!
//! [`LosesAnswers`] wraps any [`MetaStore`] and, for a seeded fraction of
//! the transactions that write under a key prefix, performs the write and
//! then reports a failure, as a client sees when the store's answer is
//! lost on the way back. Pointed at the commit log, this is a segment that
//! was committed although its writer was told it was not: the producers'
//! retries must then be deduplicated, never committed twice.

use std::{sync::Mutex, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

use crate::metastore::*;

pub struct LosesAnswers {
    inner: std::sync::Arc<dyn MetaStore>,
    prefix: String,
    rate: f64,
    rng: Mutex<u64>,
    /// Only writes of segment commit records (not topic changes).
    commits_only: bool,
    /// Report the loss as the store being unavailable (the writer may then
    /// resend) instead of a plain failure.
    unavailable: bool,
}

impl LosesAnswers {
    /// Loses the answer of `rate` (0..=1) of the successful transactions
    /// that put a key starting with `prefix`; `seed` fixes which.
    pub fn new(
        inner: std::sync::Arc<dyn MetaStore>,
        prefix: impl Into<String>,
        rate: f64,
        seed: u64,
    ) -> Self {
        Self {
            inner,
            prefix: prefix.into(),
            rate,
            rng: Mutex::new(seed | 1),
            commits_only: false,
            unavailable: false,
        }
    }

    /// Reports lost answers as `Unavailable`: the commit log resends, and
    /// must then find its own record rather than write it twice.
    pub fn as_unavailable(mut self) -> Self {
        self.unavailable = true;
        self
    }

    /// Loses answers to segment commits only: other log records (topic
    /// changes) are answered truly.
    pub fn commits_only(mut self) -> Self {
        self.commits_only = true;
        self
    }

    fn targets(&self, op: &TxnOp) -> bool {
        match op {
            TxnOp::Put { key, value, .. } if key.starts_with(&self.prefix) => {
                !self.commits_only
                    || matches!(
                        crate::records::LogRecord::decode(value),
                        Ok(r) if matches!(r.command, crate::records::Command::Commit { .. })
                    )
            }
            _ => false,
        }
    }

    /// xorshift64: a reproducible sequence for the seed.
    fn roll(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[async_trait]
impl MetaStore for LosesAnswers {
    async fn range(&self, range: KeyRange) -> Result<RangeResponse> {
        self.inner.range(range).await
    }
    async fn put(&self, key: &str, value: Bytes, lease: Option<LeaseId>) -> Result<Revision> {
        self.inner.put(key, value, lease).await
    }
    async fn delete(&self, range: KeyRange) -> Result<(u64, Revision)> {
        self.inner.delete(range).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let targeted = txn.success.iter().any(|op| self.targets(op));
        let r = self.inner.txn(txn).await?;
        if targeted && r.succeeded && self.roll() < self.rate {
            // Not `Unavailable`: a client resending the request would find
            // its own write and heal the loss before anyone saw it.
            let message = format!(
                "injected loss of the answer to a write at revision {}",
                r.revision
            );
            return Err(if self.unavailable {
                MetaError::Unavailable(message)
            } else {
                MetaError::Other(message)
            });
        }
        Ok(r)
    }
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        self.inner.lease_grant(ttl).await
    }
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.inner.lease_keep_alive(lease).await
    }
    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        self.inner.lease_revoke(lease).await
    }
    async fn watch(&self, range: KeyRange, start: Revision) -> Result<WatchStream> {
        self.inner.watch(range, start).await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
}

/// Delivers watch events only while not paused; everything else passes
/// straight through.
pub struct Pausable {
    inner: std::sync::Arc<dyn MetaStore>,
    paused: tokio::sync::watch::Sender<bool>,
}

impl Pausable {
    pub fn new(inner: std::sync::Arc<dyn MetaStore>) -> Self {
        Self {
            inner,
            paused: tokio::sync::watch::channel(false).0,
        }
    }

    /// Holds back watch events from now on (events already delivered stay).
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

#[async_trait]
impl MetaStore for Pausable {
    async fn range(&self, range: KeyRange) -> Result<RangeResponse> {
        self.inner.range(range).await
    }
    async fn put(&self, key: &str, value: Bytes, lease: Option<LeaseId>) -> Result<Revision> {
        self.inner.put(key, value, lease).await
    }
    async fn delete(&self, range: KeyRange) -> Result<(u64, Revision)> {
        self.inner.delete(range).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.inner.txn(txn).await
    }
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        self.inner.lease_grant(ttl).await
    }
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.inner.lease_keep_alive(lease).await
    }
    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        self.inner.lease_revoke(lease).await
    }
    async fn watch(&self, range: KeyRange, start: Revision) -> Result<WatchStream> {
        use futures::StreamExt;
        let inner = self.inner.watch(range, start).await?;
        let paused = self.paused.subscribe();
        Ok(inner
            .then(move |item| {
                let mut paused = paused.clone();
                async move {
                    let _ = paused.wait_for(|p| !*p).await;
                    item
                }
            })
            .boxed())
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    #[tokio::test]
    async fn writes_happen_but_some_answers_are_lost() {
        let inner: std::sync::Arc<dyn MetaStore> = std::sync::Arc::new(EmbeddedStore::in_memory());
        let store = LosesAnswers::new(inner.clone(), "/log/", 0.5, 3);
        let mut lost = 0;
        for i in 0..100 {
            let r = store
                .txn(Txn {
                    compares: vec![],
                    success: vec![TxnOp::Put {
                        key: format!("/log/{i}"),
                        value: Bytes::from_static(b"x"),
                        lease: None,
                    }],
                    failure: vec![],
                })
                .await;
            if r.is_err() {
                lost += 1;
            }
        }
        assert!((25..75).contains(&lost), "{lost} of 100 lost");
        // Every write happened.
        let kvs = inner.range(KeyRange::Prefix("/log/".into())).await.unwrap();
        assert_eq!(kvs.kvs.len(), 100);
        // Other keys are untouched.
        for i in 0..20 {
            store
                .txn(Txn {
                    compares: vec![],
                    success: vec![TxnOp::Put {
                        key: format!("/other/{i}"),
                        value: Bytes::from_static(b"x"),
                        lease: None,
                    }],
                    failure: vec![],
                })
                .await
                .unwrap();
        }
    }
}
