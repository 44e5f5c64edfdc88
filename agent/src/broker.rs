//! The running agent: settings plus the live components every handler uses.

use std::sync::Arc;

use silt_coordinator::{
    membership::rendezvous, AgentInfo, Membership, MetaLog, OffsetStore, ProducerIds,
};
use silt_tiering::store::StoreCounters;

use crate::{
    clock::Clock, config::Settings, fetch::ReadPath, group::Groups, produce::Producer,
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
    pub groups: Arc<Groups>,
    pub offsets: OffsetStore,
    pub producer_ids: ProducerIds,
    pub clock: Arc<dyn Clock>,
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
