//! The running agent: settings plus the live components every handler uses.

use std::sync::Arc;

use silt_coordinator::{
    membership::rendezvous, AgentInfo, Membership, MetaLog, OffsetStore, ProducerIds,
};
use silt_tiering::store::StoreCounters;

use crate::{
    clock::Clock,
    config::Settings,
    fetch::ReadPath,
    group::{GroupError, Groups},
    produce::Producer,
    topics::Topics,
};

pub struct Broker {
    pub settings: Settings,
    pub node_id: i32,
    pub cluster_id: String,
    /// The replicated metadata; handlers read it through `topics` and
    /// `read`, never directly.
    pub log: Arc<MetaLog>,
    pub topics: Topics,
    pub read: ReadPath,
    pub producer: Producer,
    pub membership: Arc<Membership>,
    pub counters: Arc<StoreCounters>,
    /// What this agent's job passes did.
    pub job_counters: Arc<silt_tiering::jobs::JobCounters>,
    pub groups: Arc<Groups>,
    pub offsets: OffsetStore,
    pub producer_ids: ProducerIds,
    pub clock: Arc<dyn Clock>,
    /// This process's token as a group coordinator (agent id and
    /// incarnation): offset writes are conditioned on the group's
    /// coordinator key holding it.
    pub token: String,
    /// Groups this agent has claimed, with the lease of the claim.
    pub claims:
        std::sync::Mutex<std::collections::HashMap<String, silt_coordinator::metastore::LeaseId>>,
    /// One persisting pass at a time, so that an older snapshot of a group
    /// never lands after a newer one.
    pub persisting: tokio::sync::Mutex<()>,
    /// Users, ACLs, SASL and TLS.
    pub security: Arc<crate::security::Security>,
    /// The transaction coordinator.
    pub txns: crate::txn::Transactions,
    /// Committed offsets for the consumer lag this agent exports, if it
    /// holds the lag lock.
    pub lag: crate::lag::Lag,
}

impl Broker {
    /// The live agent coordinating `group`, if any agent is live.
    pub fn group_coordinator(&self, group: &str) -> Option<AgentInfo> {
        let live = self.membership.live();
        let key = format!("group:{group}");
        rendezvous(&live, key.as_bytes(), None).cloned()
    }

    /// The transaction coordinator's view of this agent.
    pub fn txn_ctx(&self) -> crate::txn::TxnCtx<'_> {
        crate::txn::TxnCtx {
            log: &self.log,
            producer_ids: &self.producer_ids,
            offsets: &self.offsets,
            clock: &*self.clock,
            max_timeout: self.settings.transaction_max_timeout,
            cluster: &self.settings.cluster,
            check_features: true,
        }
    }

    /// The live agent coordinating transactional id `id` (FindCoordinator
    /// with key type 1), if any agent is live.
    pub fn txn_coordinator(&self, id: &str) -> Option<AgentInfo> {
        let live = self.membership.live();
        let key = format!("txn:{id}");
        rendezvous(&live, key.as_bytes(), None).cloned()
    }

    /// Whether this agent coordinates transactional id `id`.
    pub fn is_txn_coordinator(&self, id: &str) -> bool {
        self.membership.registered()
            && self
                .txn_coordinator(id)
                .is_some_and(|a| a.node_id == self.node_id)
    }

    /// Whether this agent coordinates `group`: it is registered (its lease
    /// surely valid) and the group's choice among the live agents.
    pub fn is_group_coordinator(&self, group: &str) -> bool {
        self.membership.registered()
            && self
                .group_coordinator(group)
                .is_some_and(|a| a.node_id == self.node_id)
    }

    /// Makes this agent the group's coordinator of record (once per lease),
    /// so that its offset writes pass the fence and a stale coordinator's
    /// fail.
    pub async fn claim_group(&self, group: &str) -> Result<(), GroupError> {
        let lease = self.membership.lease().ok_or(GroupError::NotCoordinator)?;
        let claimed = self
            .claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            == Some(&lease);
        if claimed {
            return Ok(());
        }
        self.offsets
            .claim(group, &self.token, lease)
            .await
            .map_err(|e| {
                tracing::warn!(group, error = %e, "claiming the group failed");
                GroupError::CoordinatorUnavailable
            })?;
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group.to_string(), lease);
        Ok(())
    }

    /// Resumes the group from its persisted state if it is not here yet
    /// (the coordinator moved to this agent).
    pub async fn load_group(&self, group: &str) {
        if self.groups.contains(group) {
            return;
        }
        match self.offsets.group_state(group).await {
            Ok(Some(b)) => match crate::group::persist::Snapshot::decode(&b) {
                Some(snap) => self.groups.restore(group, &snap),
                None => tracing::warn!(
                    group,
                    "persisted group state is unreadable; starting afresh"
                ),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(group, error = %e, "reading persisted group state failed"),
        }
    }

    /// Writes the state of every group that changed (fenced: a stale
    /// coordinator's writes fail and it steps down); returns the groups
    /// whose state could not be written (they are written again later).
    pub async fn persist_groups(&self) -> Vec<String> {
        let _one = self.persisting.lock().await;
        let mut failed = Vec::new();
        for (group, snap) in self.groups.take_dirty() {
            let r = self
                .offsets
                .put_group_state(&group, &self.token, snap.map(|s| s.encode()))
                .await;
            match r {
                Ok(()) => {}
                Err(silt_coordinator::offsets::OffsetError::Fenced) => {
                    self.lose_group(&group);
                    failed.push(group);
                }
                Err(e) => {
                    tracing::warn!(group, error = %e, "persisting group state failed");
                    self.groups.mark_dirty(&group);
                    failed.push(group);
                }
            }
        }
        failed
    }

    /// Steps down as the group's coordinator (another agent holds it).
    pub fn lose_group(&self, group: &str) {
        tracing::warn!(
            group,
            "another agent coordinates the group now; stepping down"
        );
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(group);
        // Parked joins and syncs of the group get NOT_COORDINATOR.
        self.groups.retain(|g| g != group);
    }

    /// Drops groups (and claims) this agent no longer coordinates.
    pub fn drop_moved_groups(&self) {
        self.groups.retain(|g| self.is_group_coordinator(g));
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|g, _| self.is_group_coordinator(g));
    }

    /// Deletes committed offsets older than `offsets_retention` of the
    /// groups this agent coordinates that have no members; returns how
    /// many were deleted.
    pub async fn expire_offsets(&self) -> usize {
        let cutoff = self.clock.now_ms() - self.settings.offsets_retention.as_millis() as i64;
        let groups = match self.offsets.groups().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "listing groups for offset expiry failed");
                return 0;
            }
        };
        let mut expired = 0;
        for g in groups {
            if !self.is_group_coordinator(&g) || self.groups.has_members(&g) {
                continue;
            }
            match self.offsets.expire(&g, cutoff).await {
                Ok(n) if n > 0 => {
                    tracing::info!(group = %g, offsets = n, "expired committed offsets");
                    expired += n;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(group = %g, error = %e, "expiring offsets failed"),
            }
        }
        expired
    }
}
