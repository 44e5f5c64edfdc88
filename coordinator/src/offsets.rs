//! Committed consumer-group offsets: plain keys in the metadata store
//! (`/silt/<cluster>/groups/<group>/offsets/<topic>/<partition>`); they need
//! no total order with the data, so they bypass the commit log.

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    keys::Layout,
    metastore::{Compare, CompareOp, KeyRange, LeaseId, MetaError, MetaStore, Txn, TxnOp},
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    #[serde(default)]
    pub metadata: Option<String>,
    /// When it was committed (ms since the epoch, the coordinator's clock);
    /// 0 when unknown. Offsets expire by it.
    #[serde(default)]
    pub commit_time: i64,
}

/// Why offsets were not (all) written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    /// Another agent coordinates the group now: this one must step down.
    #[error("another agent coordinates the group")]
    Fenced,
    #[error(transparent)]
    Store(#[from] MetaError),
}

/// etcd allows 128 operations per transaction by default.
const OPS_PER_TXN: usize = 100;

pub struct OffsetStore {
    store: Arc<dyn MetaStore>,
    layout: Layout,
}

impl OffsetStore {
    pub fn new(store: Arc<dyn MetaStore>, cluster: &str) -> Self {
        Self {
            store,
            layout: Layout::new(cluster),
        }
    }

    fn prefix(&self, group: &str) -> String {
        self.layout.group_offsets(group)
    }

    fn key(&self, group: &str, topic: &str, partition: i32) -> String {
        self.layout.group_offset(group, topic, partition)
    }

    /// Applies `ops` in transactions of at most [`OPS_PER_TXN`] operations.
    async fn apply(&self, ops: Vec<TxnOp>) -> Result<(), MetaError> {
        self.apply_counted(None, ops)
            .await
            .map_err(|(_, e)| match e {
                OffsetError::Store(e) => e,
                OffsetError::Fenced => MetaError::Other("fenced".into()),
            })
    }

    /// Like `apply`, each transaction conditioned on `fence` (the group's
    /// coordinator key holding this agent's token); on failure, also says
    /// how many of the operations (a prefix) were applied before it.
    async fn apply_counted(
        &self,
        fence: Option<(&str, &str)>,
        ops: Vec<TxnOp>,
    ) -> Result<(), (usize, OffsetError)> {
        let compares: Vec<Compare> = fence
            .map(|(group, token)| {
                Compare::value(
                    self.layout.group_coordinator(group),
                    CompareOp::Equal,
                    Bytes::from(token.to_string()),
                )
            })
            .into_iter()
            .collect();
        let mut done = 0;
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let success: Vec<TxnOp> = ops.by_ref().take(OPS_PER_TXN).collect();
            let n = success.len();
            let r = self
                .store
                .txn(Txn {
                    compares: compares.clone(),
                    success,
                    failure: vec![],
                })
                .await
                .map_err(|e| (done, OffsetError::Store(e)))?;
            if !r.succeeded {
                return Err((done, OffsetError::Fenced));
            }
            done += n;
        }
        Ok(())
    }

    /// Writes the group's persisted state (`None`: deletes it), under the
    /// coordinator's fence.
    pub async fn put_group_state(
        &self,
        group: &str,
        token: &str,
        state: Option<Bytes>,
    ) -> Result<(), OffsetError> {
        let key = self.layout.group_state(group);
        let op = match state {
            Some(value) => TxnOp::Put {
                key,
                value,
                lease: None,
            },
            None => TxnOp::Delete(KeyRange::Key(key)),
        };
        self.apply_counted(Some((group, token)), vec![op])
            .await
            .map_err(|(_, e)| e)
    }

    /// The group's persisted state, if any.
    pub async fn group_state(&self, group: &str) -> Result<Option<Bytes>, MetaError> {
        Ok(self
            .store
            .get(&self.layout.group_state(group))
            .await?
            .map(|kv| kv.value))
    }

    /// Makes this agent (`token`, unique to the process) the group's
    /// coordinator of record, under its membership `lease`: the key goes
    /// away with the lease, and every later write of another token fails.
    pub async fn claim(&self, group: &str, token: &str, lease: LeaseId) -> Result<(), MetaError> {
        self.store
            .put(
                &self.layout.group_coordinator(group),
                Bytes::from(token.to_string()),
                Some(lease),
            )
            .await
            .map(|_| ())
    }

    /// Writes offsets, each transaction conditioned on the group's
    /// coordinator key holding `token` (when given).
    pub async fn commit(
        &self,
        group: &str,
        token: Option<&str>,
        offsets: &[(String, i32, Committed)],
    ) -> Result<(), (usize, OffsetError)> {
        // More offsets than one metadata transaction holds are written in
        // several; on a failure the caller learns which ones were written
        // (a prefix) and answers each partition truthfully.
        let mut ops: Vec<TxnOp> = offsets
            .iter()
            .map(|(t, p, c)| TxnOp::Put {
                key: self.key(group, t, *p),
                value: Bytes::from(serde_json::to_vec(c).expect("offsets serialize")),
                lease: None,
            })
            .collect();
        // The group's index entry goes with its offsets (first, so that a
        // partly written commit is listed too).
        if !ops.is_empty() {
            ops.insert(
                0,
                TxnOp::Put {
                    key: self.layout.group_index_entry(group),
                    value: Bytes::new(),
                    lease: None,
                },
            );
        }
        match self.apply_counted(token.map(|t| (group, t)), ops).await {
            Ok(()) => Ok(()),
            // Count offsets written, not the index entry.
            Err((done, e)) => Err((done.saturating_sub(1), e)),
        }
    }

    /// The write of one committed offset (and the group's index entry), for
    /// a caller that makes it part of its own transaction.
    pub fn offset_ops(&self, group: &str, offsets: &[(String, i32, Committed)]) -> Vec<TxnOp> {
        let mut ops = vec![TxnOp::Put {
            key: self.layout.group_index_entry(group),
            value: Bytes::new(),
            lease: None,
        }];
        ops.extend(offsets.iter().map(|(t, p, c)| TxnOp::Put {
            key: self.key(group, t, *p),
            value: Bytes::from(serde_json::to_vec(c).expect("offsets serialize")),
            lease: None,
        }));
        ops
    }

    /// Writes offsets from outside the group's membership (a consumer that
    /// is no member, as Kafka's commits with generation -1): only while the
    /// group has no live members — its persisted state has none by
    /// `has_members`, or no agent coordinates it (its coordinator key went
    /// with that agent's lease; its members must rejoin elsewhere) — in one
    /// transaction that fails if either changed meanwhile. At most
    /// [`OPS_PER_TXN`] - 1 offsets, each partition once. `Ok(false)`: the
    /// group has live members (or they changed), nothing was written.
    pub async fn commit_standalone(
        &self,
        group: &str,
        offsets: &[(String, i32, Committed)],
        has_members: impl Fn(&[u8]) -> bool,
    ) -> Result<bool, MetaError> {
        if offsets.len() >= OPS_PER_TXN {
            return Err(MetaError::Other(format!(
                "at most {} offsets in one commit",
                OPS_PER_TXN - 1
            )));
        }
        let state_key = self.layout.group_state(group);
        let coordinator_key = self.layout.group_coordinator(group);
        let state = self.store.get(&state_key).await?;
        let coordinator = self.store.get(&coordinator_key).await?;
        if coordinator.is_some() && state.as_ref().is_some_and(|kv| has_members(&kv.value)) {
            return Ok(false);
        }
        let unchanged = |key: String, kv: Option<crate::metastore::KeyValue>| Compare {
            key,
            op: CompareOp::Equal,
            target: crate::metastore::CompareTarget::ModRevision(
                kv.map_or(0, |kv| kv.mod_revision),
            ),
        };
        let mut success = vec![TxnOp::Put {
            key: self.layout.group_index_entry(group),
            value: Bytes::new(),
            lease: None,
        }];
        success.extend(offsets.iter().map(|(t, p, c)| TxnOp::Put {
            key: self.key(group, t, *p),
            value: Bytes::from(serde_json::to_vec(c).expect("offsets serialize")),
            lease: None,
        }));
        let r = self
            .store
            .txn(Txn {
                compares: vec![
                    unchanged(state_key, state),
                    unchanged(coordinator_key, coordinator),
                ],
                success,
                failure: vec![],
            })
            .await?;
        Ok(r.succeeded)
    }

    /// Every committed offset of the group: topic -> partition -> offset.
    pub async fn fetch(
        &self,
        group: &str,
    ) -> Result<BTreeMap<String, BTreeMap<i32, Committed>>, MetaError> {
        let prefix = self.prefix(group);
        let kvs = self
            .store
            .range(KeyRange::Prefix(prefix.clone()))
            .await?
            .kvs;
        let mut out: BTreeMap<String, BTreeMap<i32, Committed>> = BTreeMap::new();
        for kv in kvs {
            let Some((topic, partition)) = kv.key[prefix.len()..].rsplit_once('/') else {
                continue;
            };
            let (Ok(p), Ok(c)) = (
                partition.parse::<i32>(),
                serde_json::from_slice::<Committed>(&kv.value),
            ) else {
                continue;
            };
            out.entry(topic.to_string()).or_default().insert(p, c);
        }
        Ok(out)
    }

    pub async fn delete_group(&self, group: &str) -> Result<(), MetaError> {
        self.store
            .delete(KeyRange::Prefix(self.prefix(group)))
            .await?;
        self.store
            .delete(KeyRange::Key(self.layout.group_index_entry(group)))
            .await?;
        // And its persisted state: a deleted group must not be resumed.
        self.store
            .delete(KeyRange::Key(self.layout.group_state(group)))
            .await?;
        Ok(())
    }

    /// Deletes the group's offsets committed before `cutoff` (ms since the
    /// epoch); returns how many.
    pub async fn expire(&self, group: &str, cutoff: i64) -> Result<usize, MetaError> {
        let old: Vec<(String, i32)> = self
            .fetch(group)
            .await?
            .into_iter()
            .flat_map(|(t, parts)| {
                parts
                    .into_iter()
                    .filter(|(_, c)| c.commit_time > 0 && c.commit_time < cutoff)
                    .map(move |(p, _)| (t.clone(), p))
            })
            .collect();
        self.delete(group, &old).await?;
        // A group left with no offsets leaves the index.
        if !old.is_empty() && self.fetch(group).await?.is_empty() {
            self.store
                .delete(KeyRange::Key(self.layout.group_index_entry(group)))
                .await?;
        }
        Ok(old.len())
    }

    pub async fn delete(&self, group: &str, partitions: &[(String, i32)]) -> Result<(), MetaError> {
        let ops = partitions
            .iter()
            .map(|(t, p)| TxnOp::Delete(KeyRange::Key(self.key(group, t, *p))))
            .collect();
        self.apply(ops).await
    }

    /// Groups that have committed offsets.
    /// Groups that have committed offsets: one small key read per group,
    /// not every offset.
    pub async fn groups(&self) -> Result<Vec<String>, MetaError> {
        let kvs = self
            .store
            .range(KeyRange::Prefix(self.layout.group_index()))
            .await?
            .kvs;
        Ok(kvs
            .iter()
            .filter_map(|kv| self.layout.group_of_index(&kv.key))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;
    use std::time::Duration;

    #[tokio::test]
    async fn commit_fetch_delete() {
        let s = OffsetStore::new(Arc::new(EmbeddedStore::in_memory()), "c");
        let c = |o| Committed {
            offset: o,
            leader_epoch: -1,
            metadata: None,
            commit_time: 1000 + o,
        };
        s.commit(
            "g/1",
            None,
            &[
                ("t".into(), 0, c(5)),
                ("t".into(), 1, c(7)),
                ("u".into(), 0, c(1)),
            ],
        )
        .await
        .unwrap();
        s.commit("g2", None, &[("t".into(), 0, c(9))])
            .await
            .unwrap();
        let got = s.fetch("g/1").await.unwrap();
        assert_eq!(got["t"][&1].offset, 7);
        assert_eq!(got["u"][&0].offset, 1);
        assert_eq!(
            s.groups().await.unwrap(),
            vec!["g/1".to_string(), "g2".to_string()]
        );
        s.delete("g/1", &[("t".into(), 0)]).await.unwrap();
        assert!(!s.fetch("g/1").await.unwrap()["t"].contains_key(&0));
        s.delete_group("g/1").await.unwrap();
        assert!(s.fetch("g/1").await.unwrap().is_empty());
        assert_eq!(s.fetch("g2").await.unwrap()["t"][&0].offset, 9);
        // More partitions than one transaction takes.
        let many: Vec<_> = (0..250)
            .map(|p| ("big".to_string(), p, c(p as i64)))
            .collect();
        s.commit("g3", None, &many).await.unwrap();
        assert_eq!(s.fetch("g3").await.unwrap()["big"].len(), 250);
        let gone: Vec<_> = (0..240).map(|p| ("big".to_string(), p)).collect();
        s.delete("g3", &gone).await.unwrap();
        assert_eq!(s.fetch("g3").await.unwrap()["big"].len(), 10);
        // Offsets committed before the cutoff expire; later ones stay.
        assert_eq!(s.expire("g3", 1000 + 245).await.unwrap(), 5);
        let left: Vec<i32> = s.fetch("g3").await.unwrap()["big"]
            .keys()
            .copied()
            .collect();
        assert_eq!(left, (245..250).collect::<Vec<_>>());
        // A group whose offsets all expired leaves the index.
        assert!(s.groups().await.unwrap().contains(&"g3".to_string()));
        s.expire("g3", i64::MAX).await.unwrap();
        assert!(!s.groups().await.unwrap().contains(&"g3".to_string()));
    }

    /// A coordinator that lost the group (another agent claimed it, or its
    /// own lease expired) can no longer write the group's offsets.
    #[tokio::test]
    async fn commits_are_fenced_by_the_coordinator_claim() {
        let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let s = OffsetStore::new(store.clone(), "c");
        let c = |o| Committed {
            offset: o,
            leader_epoch: -1,
            metadata: None,
            commit_time: 1,
        };
        let la = store.lease_grant(Duration::from_secs(60)).await.unwrap();
        let lb = store.lease_grant(Duration::from_secs(60)).await.unwrap();
        // Nobody claimed the group: a fenced commit fails.
        assert_eq!(
            s.commit("g", Some("a/1"), &[("t".into(), 0, c(1))]).await,
            Err((0, OffsetError::Fenced))
        );
        s.claim("g", "a/1", la).await.unwrap();
        s.commit("g", Some("a/1"), &[("t".into(), 0, c(100))])
            .await
            .unwrap();
        // B takes the group over; A's commit is refused.
        s.claim("g", "b/1", lb).await.unwrap();
        s.commit("g", Some("b/1"), &[("t".into(), 0, c(5000))])
            .await
            .unwrap();
        assert_eq!(
            s.commit("g", Some("a/1"), &[("t".into(), 0, c(100))]).await,
            Err((0, OffsetError::Fenced))
        );
        assert_eq!(s.fetch("g").await.unwrap()["t"][&0].offset, 5000);
        // B's lease ends: its claim goes with it.
        store.lease_revoke(lb).await.unwrap();
        assert_eq!(
            s.commit("g", Some("b/1"), &[("t".into(), 0, c(6000))])
                .await,
            Err((0, OffsetError::Fenced))
        );
        assert_eq!(s.fetch("g").await.unwrap()["t"][&0].offset, 5000);
        // A deleted group leaves no state to resume.
        let lc = store.lease_grant(Duration::from_secs(60)).await.unwrap();
        s.claim("g", "c/1", lc).await.unwrap();
        s.put_group_state("g", "c/1", Some(Bytes::from_static(b"{}")))
            .await
            .unwrap();
        assert!(s.group_state("g").await.unwrap().is_some());
        s.delete_group("g").await.unwrap();
        assert_eq!(s.group_state("g").await.unwrap(), None);
        assert!(!s.groups().await.unwrap().contains(&"g".to_string()));
    }
}
