//! Agent membership and partition/group placement.
//!
//! Each agent registers `/silt/<cluster>/agents/<agent-id>` under a lease and
//! keeps it alive; a dead agent's key vanishes within the lease TTL. Every
//! agent polls the live set. A partition's "leader" (only a hint for
//! clients: any agent accepts any write) is chosen by rendezvous hashing
//! over the live agents, preferring the client's zone when it names one.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{
    keys::Layout,
    metastore::{
        Compare, CompareOp, KeyRange, LeaseId, MetaError, MetaStore, Revision, Txn, TxnOp,
        TxnOpResponse,
    },
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_id: String,
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    #[serde(default)]
    pub zone: Option<String>,
    /// Log record kinds this agent's build understands beyond the first
    /// format ([`crate::records::FEATURES`]); writers of newer kinds wait
    /// until every registered agent lists them.
    #[serde(default)]
    pub features: Vec<String>,
    /// Set while the agent shuts down: it leads nothing and coordinates
    /// nothing, but stays listed as a broker while it finishes what it
    /// accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
    /// Advertised addresses by listener (security protocol name) when the
    /// agent has several; `host`/`port` are its first listener's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Endpoint>,
}

/// One listener's advertised address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

impl AgentInfo {
    /// The address to give a client that connected on `listener`: that
    /// listener's, else the first listener's (agents with one listener,
    /// and older agents, list none).
    pub fn address(&self, listener: &str) -> (&str, i32) {
        self.listeners
            .iter()
            .find(|e| e.listener == listener)
            .map_or((self.host.as_str(), self.port), |e| {
                (e.host.as_str(), e.port)
            })
    }
}

/// Every registered agent, read from the metadata store.
pub async fn registered_agents(
    store: &dyn MetaStore,
    cluster: &str,
) -> Result<Vec<AgentInfo>, MetaError> {
    let kvs = store
        .range(KeyRange::Prefix(crate::keys::Layout::new(cluster).agents()))
        .await?
        .kvs;
    Ok(kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

/// Kafka broker ids are i32: derive a stable, non-negative one from the id.
pub fn node_id_for(agent_id: &str) -> i32 {
    (fnv1a(agent_id.as_bytes()) & 0x3fff_ffff) as i32
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser: spreads FNV's weak low bits.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The agent with the highest score for `key` among `agents`, preferring
/// those in `zone` when any is.
pub fn rendezvous<'a>(
    agents: &'a [AgentInfo],
    key: &[u8],
    zone: Option<&str>,
) -> Option<&'a AgentInfo> {
    let in_zone = |a: &&AgentInfo| zone.is_some() && a.zone.as_deref() == zone;
    let pool: Vec<&AgentInfo> = if agents.iter().any(|a| in_zone(&a)) {
        agents.iter().filter(in_zone).collect()
    } else {
        agents.iter().collect()
    };
    pool.into_iter().max_by_key(|a| {
        let mut buf = Vec::with_capacity(a.agent_id.len() + key.len() + 1);
        buf.extend_from_slice(a.agent_id.as_bytes());
        buf.push(0);
        buf.extend_from_slice(key);
        (mix(fnv1a(&buf)), a.node_id)
    })
}

/// The zone a client names in its client.id as `silt_az=<zone>`.
pub fn client_zone(client_id: Option<&str>) -> Option<&str> {
    let s = client_id?;
    let at = s.find("silt_az=")? + "silt_az=".len();
    let rest = &s[at..];
    let end = rest
        .find(|c: char| c == ',' || c == ';' || c == '&' || c.is_whitespace())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

pub struct Membership {
    store: Arc<dyn MetaStore>,
    prefix: String,
    key: String,
    me: AgentInfo,
    ttl: Duration,
    live: RwLock<Vec<AgentInfo>>,
    /// The lease this agent is registered under, and until when it is
    /// surely valid (its last successful keep-alive plus the TTL); `None`
    /// while unregistered. An agent past that instant (paused, starved,
    /// cut off) steps down at once, before the store has even told it.
    lease: std::sync::Mutex<Option<(LeaseId, tokio::time::Instant)>>,
    /// Every agent seen registered, with when it was last seen.
    seen: RwLock<std::collections::BTreeMap<String, (AgentInfo, tokio::time::Instant)>>,
    /// The create revision of our registration key: commits are fenced on
    /// it (see [`Membership::fence`]).
    created: std::sync::Mutex<Option<Revision>>,
    /// Shutting down: not live, still a broker.
    leaving: std::sync::atomic::AtomicBool,
    /// Our key vanished or was replaced while our lease lives.
    broken: std::sync::atomic::AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("agent id {0:?} is already registered by a live agent (two agents with one id?)")]
    DuplicateId(String),
    #[error("agent ids {0:?} and {1:?} map to the same node id {2}; choose another agent id")]
    NodeIdClash(String, String, i32),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl Membership {
    /// Registers this agent and starts keeping the registration alive and
    /// the live set fresh until `shutdown`.
    pub async fn join(
        store: Arc<dyn MetaStore>,
        cluster: &str,
        me: AgentInfo,
        ttl: Duration,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, MembershipError> {
        let layout = Layout::new(cluster);
        let m = Arc::new(Self {
            store,
            prefix: layout.agents(),
            key: layout.agent(&me.agent_id),
            me,
            ttl,
            live: RwLock::new(Vec::new()),
            lease: std::sync::Mutex::new(None),
            seen: RwLock::new(Default::default()),
            created: std::sync::Mutex::new(None),
            leaving: std::sync::atomic::AtomicBool::new(false),
            broken: std::sync::atomic::AtomicBool::new(false),
        });
        let existing = m.store.range(KeyRange::Prefix(m.prefix.clone())).await?.kvs;
        for kv in &existing {
            if let Ok(other) = serde_json::from_slice::<AgentInfo>(&kv.value) {
                if other.agent_id != m.me.agent_id && other.node_id == m.me.node_id {
                    return Err(MembershipError::NodeIdClash(
                        other.agent_id,
                        m.me.agent_id.clone(),
                        m.me.node_id,
                    ));
                }
            }
        }
        let lease = m.register(true).await?;
        m.set_lease(Some(lease));
        m.refresh().await?;
        // Keep-alives run on a task of their own, so that a slow refresh
        // of the live set can never delay them.
        tokio::spawn(m.clone().keep_alive(lease, shutdown.clone()));
        tokio::spawn(m.clone().poll_live(shutdown));
        Ok(m)
    }

    fn key(&self) -> String {
        self.key.clone()
    }

    /// Puts our key under a fresh lease. On first start, refuses to take
    /// over a key another live process holds for the same id; a key that
    /// names our own address is this agent's previous run (restarted
    /// within the lease TTL, two processes cannot listen on one address),
    /// and is taken over.
    async fn register(&self, first: bool) -> Result<LeaseId, MembershipError> {
        let lease = self.store.lease_grant(self.ttl).await?;
        // A registration made again while shutting down stays leaving.
        let me = AgentInfo {
            leaving: self.leaving.load(std::sync::atomic::Ordering::SeqCst),
            ..self.me.clone()
        };
        let value = Bytes::from(serde_json::to_vec(&me).expect("agent info serializes"));
        let put = vec![
            TxnOp::Put {
                key: self.key(),
                value,
                lease: Some(lease),
            },
            // Read back: its create revision is the commit fence.
            TxnOp::Range(KeyRange::Key(self.key())),
        ];
        let txn = if first {
            let existing = self.store.get(&self.key()).await?;
            let ours = existing.as_ref().and_then(|kv| {
                serde_json::from_slice::<AgentInfo>(&kv.value)
                    .ok()
                    .filter(|a| a.host == self.me.host && a.port == self.me.port)
                    .map(|_| kv.mod_revision)
            });
            if let Some(rev) = ours {
                // Deleted, then created anew below: a new create revision
                // fences the previous run's commits should it still be
                // alive somewhere (paused, cut off) and come back.
                tracing::info!(agent = %self.me.agent_id, "taking over this agent's registration from its previous run");
                self.store
                    .txn(Txn {
                        compares: vec![Compare::mod_revision(self.key(), CompareOp::Equal, rev)],
                        success: vec![TxnOp::Delete(KeyRange::Key(self.key()))],
                        failure: vec![],
                    })
                    .await?;
            }
            Txn {
                compares: vec![Compare::version(self.key(), CompareOp::Equal, 0)],
                success: put,
                failure: vec![],
            }
        } else {
            Txn {
                compares: vec![],
                success: put,
                failure: vec![],
            }
        };
        let r = self.store.txn(txn).await?;
        if !r.succeeded {
            let _ = self.store.lease_revoke(lease).await;
            return Err(MembershipError::DuplicateId(self.me.agent_id.clone()));
        }
        let created = r.responses.iter().find_map(|op| match op {
            TxnOpResponse::Range(kvs) => kvs.first().map(|kv| kv.create_revision),
            _ => None,
        });
        *self.created.lock().unwrap_or_else(|p| p.into_inner()) = created;
        Ok(lease)
    }

    /// What a commit of data this agent accepted is fenced on: its
    /// registration key and that key's create revision, while this agent
    /// is surely registered. A commit made under the fence succeeds only
    /// if the registration still exists unbroken: an agent whose key
    /// expired (and that other agents may already have dropped from
    /// Metadata, making clients send its in-flight requests elsewhere)
    /// cannot commit what it accepted before.
    pub fn fence(&self) -> Option<(String, Revision)> {
        if !self.registered() {
            return None;
        }
        let created = (*self.created.lock().unwrap_or_else(|p| p.into_inner()))?;
        Some((self.key(), created))
    }

    /// Starts a clean shutdown: the registration is marked leaving, so
    /// other agents (and this one) stop choosing this agent as a leader or
    /// group coordinator at their next refresh, while the registration
    /// and the commit fence stay valid for what it still has to flush;
    /// [`Membership::leave`] ends it.
    pub async fn start_leaving(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (Some(lease), Some(created)) = (
            self.lease(),
            *self.created.lock().unwrap_or_else(|p| p.into_inner()),
        ) else {
            return;
        };
        let me = AgentInfo {
            leaving: true,
            ..self.me.clone()
        };
        let txn = Txn {
            // Never recreate a registration that has already expired.
            compares: vec![Compare {
                key: self.key(),
                op: CompareOp::Equal,
                target: crate::metastore::CompareTarget::CreateRevision(created),
            }],
            success: vec![TxnOp::Put {
                key: self.key(),
                value: Bytes::from(serde_json::to_vec(&me).expect("agent info serializes")),
                lease: Some(lease),
            }],
            failure: vec![],
        };
        if let Err(e) = self.store.txn(txn).await {
            tracing::warn!(error = %e, "marking the registration leaving failed");
        }
    }

    /// Reads the live agents now (after a change to this agent's own
    /// registration).
    pub async fn refresh_now(&self) {
        if let Err(e) = self.refresh().await {
            tracing::debug!(error = %e, "refreshing live agents failed");
        }
    }

    async fn refresh(&self) -> Result<(), MetaError> {
        let read = self
            .store
            .range(KeyRange::Prefix(self.prefix.clone()))
            .await?;
        // Our own key gone or made anew by someone else (deleted by hand,
        // taken over) while our lease lives: the fence can never hold
        // again, so the registration counts as lost.
        let created = *self.created.lock().unwrap_or_else(|p| p.into_inner());
        if let (true, Some(created)) = (self.registered(), created) {
            let ours = read.kvs.iter().find(|kv| kv.key == self.key);
            if read.revision > created && ours.is_none_or(|kv| kv.create_revision != created) {
                tracing::warn!(agent = %self.me.agent_id, "this agent's registration key is gone or was replaced; registering again");
                self.broken.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let kvs = read.kvs;
        let mut agents: Vec<AgentInfo> = kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        // A leaving agent stays a broker (below) but leads nothing.
        let leaving: Vec<AgentInfo> = agents.iter().filter(|a| a.leaving).cloned().collect();
        agents.retain(|a| !a.leaving);
        agents.sort_by_key(|a: &AgentInfo| a.node_id);
        {
            let now = crate::clock::monotonic_now();
            let grace = self.broker_grace();
            let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
            for a in agents.iter().chain(&leaving) {
                seen.insert(a.agent_id.clone(), (a.clone(), now));
            }
            seen.retain(|_, (_, at)| now.duration_since(*at) <= grace);
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = agents;
        Ok(())
    }

    fn set_lease(&self, lease: Option<LeaseId>) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) =
            lease.map(|l| (l, crate::clock::monotonic_now() + self.ttl));
    }

    /// The lease this agent is registered under, while surely valid.
    pub fn lease(&self) -> Option<LeaseId> {
        let now = crate::clock::monotonic_now();
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(|(_, until)| now < *until)
            .map(|(l, _)| l)
    }

    /// Whether this agent is registered (its lease surely valid).
    pub fn registered(&self) -> bool {
        self.lease().is_some()
    }

    /// Leaves the cluster now (revokes the registration), ahead of a
    /// shutdown: other agents take over at their next refresh.
    pub async fn leave(&self) {
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((l, _)) = lease {
            let _ = self.store.lease_revoke(l).await;
        }
    }

    async fn keep_alive(self: Arc<Self>, lease: LeaseId, shutdown: CancellationToken) {
        let beat = (self.ttl / 3).max(Duration::from_millis(200));
        let mut keepalive = tokio::time::interval(beat);
        // The lease our key is under; None after stepping down until a new
        // registration succeeds. The old lease is never kept alive again:
        // it may have survived on the server (etcd extends leases across a
        // leader election), and keeping it alive would keep our key listed
        // for everyone while we count ourselves out.
        let mut current = Some(lease);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // Leave at once rather than after the TTL.
                    self.leave().await;
                    return;
                }
                _ = keepalive.tick() => {}
            }
            let Some(lease) = current else {
                current = self.register_again(None).await;
                continue;
            };
            let sent = crate::clock::monotonic_now();
            let broken = self.broken.swap(false, std::sync::atomic::Ordering::SeqCst);
            let lost = broken
                || match self.store.lease_keep_alive(lease).await {
                    Ok(()) => {
                        // Valid for a TTL from when the keep-alive was sent.
                        let mut l = self.lease.lock().unwrap_or_else(|p| p.into_inner());
                        if l.is_some() {
                            *l = Some((lease, sent + self.ttl));
                        }
                        false
                    }
                    Err(MetaError::LeaseNotFound(_)) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "membership keep-alive failed");
                        // Past the TTL the lease has expired on the server.
                        !self.registered()
                    }
                };
            if lost {
                tracing::warn!(agent = %self.me.agent_id, "membership lease lost; stepping down and registering again");
                self.set_lease(None);
                current = self.register_again(Some(lease)).await;
            }
        }
    }

    /// A new registration (our key under a fresh lease); the lease we
    /// stepped down from is revoked once the key has moved off it.
    async fn register_again(&self, old: Option<LeaseId>) -> Option<LeaseId> {
        match self.register(false).await {
            Ok(l) => {
                self.set_lease(Some(l));
                tracing::info!(agent = %self.me.agent_id, "registered again");
                if let Some(old) = old {
                    let _ = self.store.lease_revoke(old).await;
                }
                Some(l)
            }
            Err(e) => {
                tracing::warn!(error = %e, "re-registering failed");
                None
            }
        }
    }

    async fn poll_live(self: Arc<Self>, shutdown: CancellationToken) {
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = poll.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::debug!(error = %e, "refreshing live agents failed");
                    }
                }
            }
        }
    }

    pub fn me(&self) -> &AgentInfo {
        &self.me
    }

    /// How long an agent that vanished from the registrations stays listed
    /// as a broker: two lease TTLs.
    fn broker_grace(&self) -> Duration {
        self.ttl * 2
    }

    /// The agents to list as brokers in Metadata: the live ones, this
    /// agent, and agents seen within the last two lease TTLs. A broker that
    /// vanishes from Metadata makes clients drop its connection and send
    /// its in-flight requests again elsewhere (librdkafka treats them as
    /// never persisted), which duplicates records of non-idempotent
    /// producers whenever an agent's lease merely flickers. Partition
    /// leaders are still chosen among the live agents only.
    pub fn brokers(&self) -> Vec<AgentInfo> {
        let mut out: std::collections::BTreeMap<String, AgentInfo> = self
            .seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(a, _)| (a.agent_id.clone(), a.clone()))
            .collect();
        for a in self.live() {
            out.insert(a.agent_id.clone(), a);
        }
        out.insert(self.me.agent_id.clone(), self.me.clone());
        let mut v: Vec<AgentInfo> = out.into_values().collect();
        v.sort_by_key(|a| a.node_id);
        v
    }

    /// Live agents, by node id. Contains this agent exactly while it is
    /// registered: an agent whose lease is gone is not live, even to itself.
    pub fn live(&self) -> Vec<AgentInfo> {
        let mut live = self.live.read().unwrap_or_else(|p| p.into_inner()).clone();
        let registered =
            self.registered() && !self.leaving.load(std::sync::atomic::Ordering::SeqCst);
        live.retain(|a| registered || a.agent_id != self.me.agent_id);
        if registered && !live.iter().any(|a| a.agent_id == self.me.agent_id) {
            live.push(self.me.clone());
            live.sort_by_key(|a| a.node_id);
        }
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, zone: Option<&str>) -> AgentInfo {
        AgentInfo {
            agent_id: id.into(),
            node_id: node_id_for(id),
            host: "h".into(),
            port: 1,
            zone: zone.map(Into::into),
            features: vec![],
            leaving: false,
            listeners: vec![],
        }
    }

    #[test]
    fn rendezvous_spreads_and_is_stable() {
        let agents = vec![
            agent("a", Some("z1")),
            agent("b", Some("z1")),
            agent("c", Some("z2")),
        ];
        let mut counts = std::collections::BTreeMap::new();
        for p in 0..300u32 {
            let key = p.to_be_bytes();
            let chosen = rendezvous(&agents, &key, None).unwrap();
            *counts.entry(chosen.agent_id.clone()).or_insert(0) += 1;
            // Removing an agent moves only that agent's keys.
            let without_c: Vec<_> = agents
                .iter()
                .filter(|a| a.agent_id != "c")
                .cloned()
                .collect();
            if chosen.agent_id != "c" {
                assert_eq!(
                    rendezvous(&without_c, &key, None).unwrap().agent_id,
                    chosen.agent_id
                );
            }
            // A zone restricts the choice to that zone.
            assert_eq!(rendezvous(&agents, &key, Some("z2")).unwrap().agent_id, "c");
            assert_ne!(rendezvous(&agents, &key, Some("z1")).unwrap().agent_id, "c");
            // An unknown zone falls back to everyone.
            assert_eq!(
                rendezvous(&agents, &key, Some("zz")).unwrap().agent_id,
                chosen.agent_id
            );
        }
        assert!(counts.values().all(|c| *c > 60), "{counts:?}");
    }

    #[tokio::test]
    async fn a_restart_within_the_lease_takes_over_its_registration() {
        use crate::EmbeddedStore;
        let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let me = agent("a1", None);
        // A previous run's registration, still under a live lease.
        let lease = store.lease_grant(Duration::from_secs(60)).await.unwrap();
        let previous = store
            .put(
                "/silt/c/agents/a1",
                Bytes::from(serde_json::to_vec(&me).unwrap()),
                Some(lease),
            )
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let m = Membership::join(
            store.clone(),
            "c",
            me.clone(),
            Duration::from_secs(10),
            stop.clone(),
        )
        .await
        .expect("the agent's own registration is taken over");
        assert_eq!(m.live(), vec![me.clone()]);
        // Made anew: the previous run's commits, fenced on the old
        // creation, can no longer land.
        let kv = store.get("/silt/c/agents/a1").await.unwrap().unwrap();
        assert_eq!(
            m.fence(),
            Some(("/silt/c/agents/a1".into(), kv.create_revision))
        );
        assert_ne!(kv.create_revision, previous);
        // Another process with the same id elsewhere is refused.
        let mut elsewhere = me.clone();
        elsewhere.host = "other".into();
        let e = Membership::join(store, "c", elsewhere, Duration::from_secs(10), stop.clone())
            .await
            .err()
            .expect("duplicate id refused");
        assert!(matches!(e, MembershipError::DuplicateId(_)), "{e}");
        stop.cancel();
    }

    /// An agent whose registration vanishes leaves the live set at once
    /// but stays listed as a broker for a grace period, so clients do not
    /// drop its connections (and resend their in-flight requests).
    #[tokio::test(start_paused = true)]
    async fn a_vanished_agent_stays_a_broker_for_a_while() {
        use crate::EmbeddedStore;
        let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let stop = CancellationToken::new();
        let ttl = Duration::from_secs(5);
        let a = Membership::join(store.clone(), "c", agent("a", None), ttl, stop.clone())
            .await
            .unwrap();
        let b_stop = CancellationToken::new();
        let b = Membership::join(store.clone(), "c", agent("b", None), ttl, b_stop.clone())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ids = |v: Vec<AgentInfo>| v.into_iter().map(|a| a.agent_id).collect::<Vec<_>>();
        let mut both = ids(a.live());
        both.sort();
        assert_eq!(both, vec!["a", "b"]);
        // b leaves (its registration is gone).
        b.leave().await;
        b_stop.cancel();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(ids(a.live()), vec!["a"]);
        let mut brokers = ids(a.brokers());
        brokers.sort();
        assert_eq!(brokers, vec!["a", "b"], "still listed within the grace");
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert_eq!(ids(a.brokers()), vec!["a"], "gone after the grace");
        stop.cancel();
    }

    /// The metadata store is down (no leader) for longer than the TTL, so
    /// the agent steps down; but its lease survived on the server (etcd
    /// extends leases across a leader election). Once the store answers
    /// again the agent must be registered again, not stay stepped down
    /// while its old lease keeps its key alive for everyone else.
    #[tokio::test(start_paused = true)]
    async fn an_agent_that_stepped_down_registers_again_when_its_old_lease_survived() {
        use crate::metastore::*;
        use crate::EmbeddedStore;
        use std::sync::atomic::{AtomicBool, Ordering};

        struct Outage {
            inner: Arc<dyn MetaStore>,
            down: AtomicBool,
        }
        impl Outage {
            fn check(&self) -> Result<()> {
                if self.down.load(Ordering::SeqCst) {
                    Err(MetaError::Unavailable("etcdserver: no leader".into()))
                } else {
                    Ok(())
                }
            }
        }
        #[async_trait::async_trait]
        impl MetaStore for Outage {
            async fn range(&self, r: KeyRange) -> Result<RangeResponse> {
                self.check()?;
                self.inner.range(r).await
            }
            async fn put(&self, k: &str, v: Bytes, l: Option<LeaseId>) -> Result<Revision> {
                self.check()?;
                self.inner.put(k, v, l).await
            }
            async fn delete(&self, r: KeyRange) -> Result<(u64, Revision)> {
                self.check()?;
                self.inner.delete(r).await
            }
            async fn txn(&self, t: Txn) -> Result<TxnResponse> {
                self.check()?;
                self.inner.txn(t).await
            }
            async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
                self.check()?;
                self.inner.lease_grant(ttl).await
            }
            async fn lease_keep_alive(&self, l: LeaseId) -> Result<()> {
                self.check()?;
                self.inner.lease_keep_alive(l).await
            }
            async fn lease_revoke(&self, l: LeaseId) -> Result<()> {
                self.check()?;
                self.inner.lease_revoke(l).await
            }
            async fn watch(&self, r: KeyRange, start: Revision) -> Result<WatchStream> {
                self.check()?;
                self.inner.watch(r, start).await
            }
            async fn compact(&self, rev: Revision) -> Result<()> {
                self.inner.compact(rev).await
            }
        }

        let inner: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let store = Arc::new(Outage {
            inner: inner.clone(),
            down: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        let ttl = Duration::from_secs(3);
        let me = agent("a3", None);
        let m = Membership::join(store.clone(), "c", me.clone(), ttl, stop.clone())
            .await
            .unwrap();
        let old = m.lease().expect("registered");
        store.down.store(true, Ordering::SeqCst);
        // Past the TTL: the agent stepped down. The server kept the lease.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            inner.lease_keep_alive(old).await.unwrap();
        }
        assert!(!m.registered(), "stepped down during the outage");
        store.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(ttl * 2).await;
        assert!(m.registered(), "registered again after the outage");
        assert!(
            m.live().iter().any(|a| a.agent_id == "a3"),
            "{:?}",
            m.live()
        );
        // Its key is alive under the lease it keeps alive.
        let kv = inner.get("/silt/c/agents/a3").await.unwrap().expect("key");
        assert_eq!(Some(kv.lease), m.lease());
        stop.cancel();
    }

    /// A leaving agent leads nothing (it is not live, to others or to
    /// itself) but stays a broker, and its commit fence stays valid until
    /// it leaves; after that, and after a lapse, the fence is gone.
    #[tokio::test(start_paused = true)]
    async fn a_leaving_agent_keeps_its_fence_until_it_leaves() {
        use crate::EmbeddedStore;
        let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let stop = CancellationToken::new();
        let ttl = Duration::from_secs(5);
        let a = Membership::join(store.clone(), "c", agent("a", None), ttl, stop.clone())
            .await
            .unwrap();
        let b = Membership::join(store.clone(), "c", agent("b", None), ttl, stop.clone())
            .await
            .unwrap();
        let fence = a.fence().expect("registered");
        assert_eq!(fence.0, "/silt/c/agents/a");
        let kv = store.get(&fence.0).await.unwrap().unwrap();
        assert_eq!(kv.create_revision, fence.1);
        a.start_leaving().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ids = |v: Vec<AgentInfo>| v.into_iter().map(|a| a.agent_id).collect::<Vec<_>>();
        assert_eq!(ids(b.live()), vec!["b"], "a leads nothing");
        assert!(!ids(a.live()).contains(&"a".to_string()));
        let mut brokers = ids(b.brokers());
        brokers.sort();
        assert_eq!(brokers, vec!["a", "b"], "a is still a broker");
        assert_eq!(
            a.fence(),
            Some(fence.clone()),
            "the fence holds while leaving"
        );
        let kv = store.get(&fence.0).await.unwrap().unwrap();
        assert_eq!(
            kv.create_revision, fence.1,
            "marking kept the key's creation"
        );
        a.leave().await;
        assert_eq!(a.fence(), None);
        assert!(store.get(&fence.0).await.unwrap().is_none());
        stop.cancel();
    }

    /// Our key deleted (by hand) while our lease lives: the agent notices
    /// at its next refresh and registers again, with a new fence.
    #[tokio::test(start_paused = true)]
    async fn a_vanished_key_is_registered_again() {
        use crate::EmbeddedStore;
        let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let stop = CancellationToken::new();
        let m = Membership::join(
            store.clone(),
            "c",
            agent("a", None),
            Duration::from_secs(6),
            stop.clone(),
        )
        .await
        .unwrap();
        let before = m.fence().unwrap();
        store.delete(KeyRange::Key(before.0.clone())).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = m.fence().expect("registered again");
        assert_ne!(after, before);
        let kv = store.get(&after.0).await.unwrap().expect("key back");
        assert_eq!(kv.create_revision, after.1);
        stop.cancel();
    }

    #[test]
    fn zone_from_client_id() {
        assert_eq!(
            client_zone(Some("app,silt_az=us-east-1a")),
            Some("us-east-1a")
        );
        assert_eq!(client_zone(Some("silt_az=z2;x=y")), Some("z2"));
        assert_eq!(client_zone(Some("rdkafka")), None);
        assert_eq!(client_zone(Some("silt_az=")), None);
        assert_eq!(client_zone(None), None);
    }
}
