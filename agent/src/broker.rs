//! The running agent: settings plus the live components every handler uses.

use std::sync::Arc;

use silt_coordinator::{
    membership::rendezvous, AgentInfo, Membership, MetaLog, OffsetStore, ProducerIds,
};
use silt_tiering::store::StoreCounters;

use crate::{config::Settings, fetch::ReadPath, group::Groups, produce::Producer, topics::Topics};

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
}
