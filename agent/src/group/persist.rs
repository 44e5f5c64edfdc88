//! What a group coordinator persists so that another agent can resume the
//! group where it was left: generation, protocol, leader, and members with
//! their instance ids, timeouts, subscriptions and assignments (what Kafka
//! keeps in `__consumer_offsets`). Written as JSON to the group's state key
//! under the coordinator's fence.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Group, Member, State};

/// A persisted group of either protocol.
#[derive(Debug, Clone)]
pub enum Snapshot {
    Classic(GroupSnapshot),
    /// A consumer-protocol group (KIP-848), stored whole (its JSON has
    /// `"kind": "consumer"`).
    Consumer(super::consumer::ConsumerGroup),
}

impl Snapshot {
    pub fn encode(&self) -> Bytes {
        match self {
            Snapshot::Classic(s) => s.encode(),
            Snapshot::Consumer(g) => {
                Bytes::from(serde_json::to_vec(g).expect("group snapshots serialize"))
            }
        }
    }

    /// Whether the group has members.
    pub fn has_members(&self) -> bool {
        match self {
            Snapshot::Classic(s) => !s.members.is_empty(),
            Snapshot::Consumer(g) => !g.members.is_empty(),
        }
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(b).ok()?;
        if v.get("kind").and_then(|k| k.as_str()) == Some("consumer") {
            serde_json::from_value(v).ok().map(Snapshot::Consumer)
        } else {
            serde_json::from_value(v).ok().map(Snapshot::Classic)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub state: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// (protocol name, subscription metadata as hex)
    pub protocols: Vec<(String, String)>,
    /// The member's assignment, as hex.
    pub assignment: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Bytes> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

impl GroupSnapshot {
    pub fn of(g: &Group) -> Self {
        Self {
            state: g.state.name().to_string(),
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            leader: g.leader.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberSnapshot {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|(n, b)| (n.clone(), hex(b)))
                        .collect(),
                    assignment: hex(&m.assignment),
                })
                .collect(),
        }
    }

    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("group snapshots serialize"))
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        serde_json::from_slice(b).ok()
    }

    /// The group as a new coordinator resumes it: members keep their ids
    /// and assignments, and have a session timeout from `now` to show up.
    /// A group that was rebalancing rebalances again.
    pub fn restore(&self, now: Instant) -> Option<Group> {
        let mut g = Group::new();
        g.generation = self.generation;
        g.protocol_type = self.protocol_type.clone();
        g.protocol = self.protocol.clone();
        g.leader = self.leader.clone();
        let mut members = BTreeMap::new();
        for m in &self.members {
            let protocols = m
                .protocols
                .iter()
                .map(|(n, b)| Some((n.clone(), unhex(b)?)))
                .collect::<Option<Vec<_>>>()?;
            members.insert(
                m.member_id.clone(),
                Member {
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: Duration::from_millis(m.session_timeout_ms),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                    protocols,
                    assignment: unhex(&m.assignment)?,
                    last_seen: now,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        if members.is_empty() {
            return None;
        }
        g.members = members;
        // A group persisted between its join and its assignments (the old
        // coordinator stopped in between) cannot complete there: its leader
        // may already have synced with the old coordinator and never sync
        // again. Like Kafka, which persists a group only once assigned,
        // resume only a Stable group as it was; any other rebalances again
        // (heartbeats answer REBALANCE_IN_PROGRESS and members rejoin).
        g.state = State::Stable;
        if self.state != "Stable" {
            g.prepare_rebalance(now);
        }
        Some(g)
    }
}
