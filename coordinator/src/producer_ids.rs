//! Producer ids for idempotent producers: blocks claimed from a counter in
//! the metadata store with a compare-and-swap, handed out locally.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::{
    keys::Layout,
    metastore::{Compare, CompareOp, MetaError, MetaStore, Txn, TxnOp},
};

const BLOCK: i64 = 1000;

pub struct ProducerIds {
    store: Arc<dyn MetaStore>,
    key: String,
    /// The next id to hand out and the end of the claimed block.
    range: Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub fn new(store: Arc<dyn MetaStore>, cluster: &str) -> Self {
        Self {
            store,
            key: Layout::new(cluster).producer_ids(),
            range: Mutex::new((0, 0)),
        }
    }

    pub async fn next(&self) -> Result<i64, MetaError> {
        let mut range = self.range.lock().await;
        if range.0 >= range.1 {
            *range = self.claim().await?;
        }
        let id = range.0;
        range.0 += 1;
        Ok(id)
    }

    async fn claim(&self) -> Result<(i64, i64), MetaError> {
        loop {
            let current = self.store.get(&self.key).await?;
            let (start, compare) = match &current {
                Some(kv) => (
                    std::str::from_utf8(&kv.value)
                        .ok()
                        .and_then(|v| v.parse::<i64>().ok())
                        .ok_or_else(|| MetaError::Other(format!("{}: not a number", self.key)))?,
                    Compare::mod_revision(&self.key, CompareOp::Equal, kv.mod_revision),
                ),
                None => (0, Compare::version(&self.key, CompareOp::Equal, 0)),
            };
            let end = start + BLOCK;
            let swapped = self
                .store
                .txn(Txn {
                    compares: vec![compare],
                    success: vec![TxnOp::Put {
                        key: self.key.clone(),
                        value: Bytes::from(end.to_string()),
                        lease: None,
                    }],
                    failure: vec![],
                })
                .await?;
            if swapped.succeeded {
                return Ok((start, end));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    #[tokio::test]
    async fn agents_get_disjoint_ids() {
        let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let a = Arc::new(ProducerIds::new(store.clone(), "c"));
        let b = Arc::new(ProducerIds::new(store, "c"));
        let mut ids = Vec::new();
        for _ in 0..1500 {
            ids.push(a.next().await.unwrap());
            ids.push(b.next().await.unwrap());
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
