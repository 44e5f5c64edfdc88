//! The classic consumer-group protocol, run in memory by the group's
//! coordinator agent (chosen by rendezvous hashing over live agents).
//! Committed offsets live in the metadata store ([`offsets`]), so they
//! survive the coordinator moving to another agent; membership does not,
//! and members simply rejoin.

pub mod consumer;
pub mod persist;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use tokio::{sync::oneshot, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::error::{Classify, ErrorKind};

/// Why the group protocol refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("this agent is not the group's coordinator")]
    NotCoordinator,
    #[error("the group's offsets are unavailable")]
    CoordinatorUnavailable,
    #[error("the generation is not the group's current one")]
    IllegalGeneration,
    #[error("the member's protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("session timeout outside the allowed range")]
    InvalidSessionTimeout,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("a newer instance with this group.instance.id joined")]
    FencedInstanceId,
    #[error("the group does not exist")]
    GroupIdNotFound,
    #[error("the group still has members")]
    NonEmptyGroup,
    #[error("the group is subscribed to the topic")]
    SubscribedToTopic,
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("a member id is required: join again with the one given")]
    MemberIdRequired,
    #[error("the group has as many members as it may")]
    GroupMaxSizeReached,
    #[error("the member epoch is fenced: the member must rejoin")]
    FencedMemberEpoch,
    #[error("the instance id is still used by another member")]
    UnreleasedInstanceId,
    #[error("the assignor is not supported")]
    UnsupportedAssignor,
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    #[error("the request is invalid")]
    InvalidRequest,
    #[error("the regular expression is not valid")]
    InvalidRegularExpression,
}

impl Classify for GroupError {
    fn kind(&self) -> ErrorKind {
        match self {
            GroupError::NotCoordinator => ErrorKind::NotCoordinator,
            GroupError::CoordinatorUnavailable => ErrorKind::CoordinatorUnavailable,
            GroupError::IllegalGeneration => ErrorKind::IllegalGeneration,
            GroupError::InconsistentGroupProtocol => ErrorKind::InconsistentGroupProtocol,
            GroupError::UnknownMemberId => ErrorKind::UnknownMemberId,
            GroupError::InvalidSessionTimeout => ErrorKind::InvalidSessionTimeout,
            GroupError::RebalanceInProgress => ErrorKind::RebalanceInProgress,
            GroupError::FencedInstanceId => ErrorKind::FencedInstanceId,
            GroupError::GroupIdNotFound => ErrorKind::GroupIdNotFound,
            GroupError::NonEmptyGroup => ErrorKind::NonEmptyGroup,
            GroupError::SubscribedToTopic => ErrorKind::GroupSubscribedToTopic,
            GroupError::InvalidGroupId => ErrorKind::InvalidGroupId,
            GroupError::MemberIdRequired => ErrorKind::MemberIdRequired,
            GroupError::GroupMaxSizeReached => ErrorKind::GroupMaxSizeReached,
            GroupError::FencedMemberEpoch => ErrorKind::FencedMemberEpoch,
            GroupError::UnreleasedInstanceId => ErrorKind::UnreleasedInstanceId,
            GroupError::UnsupportedAssignor => ErrorKind::UnsupportedAssignor,
            GroupError::StaleMemberEpoch => ErrorKind::StaleMemberEpoch,
            GroupError::InvalidRequest => ErrorKind::InvalidRequest,
            GroupError::InvalidRegularExpression => ErrorKind::InvalidRegularExpression,
        }
    }
}

/// The code of a group operation's result (0 for success).
pub fn result_code(r: Result<(), GroupError>) -> i16 {
    r.err().map_or(0, |e| e.code())
}

/// The group settings of Kafka's broker config.
#[derive(Debug, Clone)]
pub struct GroupLimits {
    /// `group.max.size`: members (and members asked for their id) per
    /// group at most.
    pub max_members: usize,
    /// `group.min.session.timeout.ms`.
    pub min_session: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session: Duration,
    /// `group.initial.rebalance.delay.ms`: the first rebalance of an empty
    /// group waits this long for more members.
    pub initial_delay: Duration,
    /// Groups of the consumer protocol (KIP-848).
    pub consumer: consumer::ConsumerLimits,
}

impl Default for GroupLimits {
    /// Kafka's defaults.
    fn default() -> Self {
        Self {
            max_members: 1000,
            min_session: Duration::from_secs(6),
            max_session: Duration::from_secs(1800),
            initial_delay: Duration::from_secs(3),
            consumer: consumer::ConsumerLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: Option<GroupError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    /// JoinGroup v4+ (KIP-394): a new member without a group instance id
    /// first gets MEMBER_ID_REQUIRED with its id, and joins with it.
    pub require_known_member_id: bool,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

pub struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    rebalance_deadline: Option<Instant>,
    /// During the first rebalance of an empty group, wait for the deadline
    /// even when everyone known has joined: more members are likely coming.
    initial: bool,
    /// How long that first rebalance waits.
    initial_delay: Duration,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or
    /// their session timeout passes (KIP-394).
    pending: BTreeMap<String, Instant>,
    /// Changed since it was last persisted.
    dirty: bool,
}

/// A snapshot for DescribeGroups.
pub struct Described {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

impl Group {
    fn new() -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline: None,
            initial: false,
            initial_delay: GroupLimits::default().initial_delay,
            pending: BTreeMap::new(),
            dirty: false,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == State::PreparingRebalance {
            return;
        }
        // Members waiting for an assignment of the old generation must rejoin.
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult {
                    error: Some(GroupError::RebalanceInProgress),
                    ..Default::default()
                });
            }
        }
        self.initial = self.state == State::Empty;
        let timeout = if self.initial {
            self.initial_delay
        } else {
            self.members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or(Duration::from_secs(30))
        };
        self.state = State::PreparingRebalance;
        self.rebalance_deadline = Some(now + timeout);
    }

    fn all_joined(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Ends the join phase: members that did not rejoin are dropped, the
    /// generation advances, and every waiting member gets its answer.
    fn complete_join(&mut self) {
        self.dirty = true;
        self.members.retain(|_, m| m.join_waiter.is_some());
        self.rebalance_deadline = None;
        self.initial = false;
        self.generation += 1;
        crate::metrics::global().rebalances.inc();
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            self.protocol = None;
            self.protocol_type = None;
            return;
        }
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = vote(self.members.values().map(|m| &m.protocols));
        let Some(protocol) = protocol else {
            for (_, m) in std::mem::take(&mut self.members) {
                if let Some(w) = m.join_waiter {
                    let _ = w.send(JoinResult {
                        error: Some(GroupError::InconsistentGroupProtocol),
                        ..Default::default()
                    });
                }
            }
            self.state = State::Empty;
            return;
        };
        self.protocol = Some(protocol.clone());
        self.state = State::CompletingRebalance;
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (id.clone(), m.instance_id.clone(), meta)
            })
            .collect();
        let now = Instant::now();
        for (id, m) in self.members.iter_mut() {
            m.assignment = Bytes::new();
            m.last_seen = now;
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    fn current(&self, member_id: &str) -> JoinResult {
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }

    fn remove(&mut self, member_id: &str, now: Instant) {
        self.dirty = true;
        if let Some(mut m) = self.members.remove(member_id) {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: Some(GroupError::UnknownMemberId),
                    ..Default::default()
                });
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        if self.members.is_empty() {
            self.state = State::Empty;
            self.rebalance_deadline = None;
            self.generation += 1;
        } else {
            self.prepare_rebalance(now);
            if self.all_joined() && !self.initial {
                self.complete_join();
            }
        }
    }

    /// Checks a member and generation for Sync/Heartbeat/OffsetCommit.
    fn check(
        &self,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let Some(m) = self.members.get(member_id) else {
            // A static member replaced by a newer instance is fenced.
            if let Some(i) = instance_id {
                if self
                    .members
                    .values()
                    .any(|m| m.instance_id.as_deref() == Some(i))
                {
                    return Err(GroupError::FencedInstanceId);
                }
            }
            return Err(GroupError::UnknownMemberId);
        };
        if instance_id.is_some() && m.instance_id.as_deref() != instance_id {
            return Err(GroupError::FencedInstanceId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }
}

/// Kafka's protocol selection: among the protocols every member supports,
/// each member votes for the first of its own preference order; the most
/// votes win (ties go to the candidate named first by the first member).
fn vote<'a>(members: impl Iterator<Item = &'a Vec<(String, Bytes)>> + Clone) -> Option<String> {
    let first = members.clone().next()?;
    let candidates: Vec<&String> = first
        .iter()
        .map(|(n, _)| n)
        .filter(|n| members.clone().all(|m| m.iter().any(|(p, _)| p == *n)))
        .collect();
    let mut votes = vec![0usize; candidates.len()];
    for m in members {
        if let Some(i) = m
            .iter()
            .find_map(|(p, _)| candidates.iter().position(|c| *c == p))
        {
            votes[i] += 1;
        }
    }
    let best = votes.iter().copied().max()?;
    candidates
        .into_iter()
        .zip(votes)
        .find(|(_, v)| *v == best)
        .map(|(c, _)| c.clone())
}

/// All groups this agent coordinates.
pub struct Groups {
    groups: Mutex<HashMap<String, Arc<Mutex<Group>>>>,
    /// Groups of the consumer protocol (KIP-848). A group id is in one map
    /// at most while it has members.
    consumers: Mutex<HashMap<String, Arc<Mutex<consumer::ConsumerGroup>>>>,
    /// Members (and members asked for their id) per group at most.
    max_members: usize,
    limits: GroupLimits,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Groups {
    pub fn new(max_members: usize) -> Self {
        Self::with_limits(GroupLimits {
            max_members,
            ..GroupLimits::default()
        })
    }

    pub fn with_limits(limits: GroupLimits) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            max_members: limits.max_members.max(1),
            limits,
        }
    }

    /// Whether the group is held here.
    pub fn contains(&self, id: &str) -> bool {
        lock(&self.groups).contains_key(id) || lock(&self.consumers).contains_key(id)
    }

    /// Resumes a group from its persisted state (another coordinator's),
    /// unless it is already here.
    pub fn restore(&self, id: &str, snapshot: &persist::Snapshot) {
        let snapshot = match snapshot {
            persist::Snapshot::Classic(s) => s,
            persist::Snapshot::Consumer(c) => {
                let mut g = c.clone();
                g.resume(Instant::now());
                g.dirty = false;
                tracing::info!(
                    group = id,
                    epoch = g.epoch,
                    members = g.members.len(),
                    "resuming consumer group from its persisted state"
                );
                lock(&self.consumers)
                    .entry(id.to_string())
                    .or_insert_with(|| Arc::new(Mutex::new(g)));
                return;
            }
        };
        if let Some(mut g) = snapshot.restore(Instant::now()) {
            g.initial_delay = self.limits.initial_delay;
            tracing::info!(
                group = id,
                generation = g.generation,
                members = g.members.len(),
                "resuming group from its persisted state"
            );
            lock(&self.groups)
                .entry(id.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(g)));
        }
    }

    /// Groups changed since last asked, with their state to persist (`None`
    /// for a group left empty: its state is deleted).
    pub fn take_dirty(&self) -> Vec<(String, Option<persist::Snapshot>)> {
        let groups: Vec<_> = lock(&self.groups)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out: Vec<(String, Option<persist::Snapshot>)> = groups
            .into_iter()
            .filter_map(|(id, g)| {
                let mut g = lock(&g);
                if !std::mem::take(&mut g.dirty) {
                    return None;
                }
                let keep = !g.members.is_empty() && g.state != State::Empty;
                Some((
                    id,
                    keep.then(|| persist::Snapshot::Classic(persist::GroupSnapshot::of(&g))),
                ))
            })
            .collect();
        let consumers: Vec<_> = lock(&self.consumers)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, g) in consumers {
            let mut g = lock(&g);
            if std::mem::take(&mut g.dirty) {
                let keep = !g.members.is_empty();
                out.push((id, keep.then(|| persist::Snapshot::Consumer(g.clone()))));
            }
        }
        out
    }

    /// Marks a group to be persisted again (its last write failed).
    pub fn mark_dirty(&self, id: &str) {
        let g = lock(&self.groups).get(id).cloned();
        if let Some(g) = g {
            lock(&g).dirty = true;
        }
        let c = lock(&self.consumers).get(id).cloned();
        if let Some(c) = c {
            lock(&c).dirty = true;
        }
    }

    /// Groups held in memory.
    pub fn len(&self) -> usize {
        lock(&self.groups).len() + lock(&self.consumers).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Classic groups, consumer-protocol groups, and their members, held
    /// here (for metrics).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let classic: Vec<_> = lock(&self.groups).values().cloned().collect();
        let consumers: Vec<_> = lock(&self.consumers).values().cloned().collect();
        let members = classic.iter().map(|g| lock(g).members.len()).sum::<usize>()
            + consumers
                .iter()
                .map(|g| lock(g).members.len())
                .sum::<usize>();
        (classic.len(), consumers.len(), members)
    }

    fn group(&self, id: &str) -> Arc<Mutex<Group>> {
        lock(&self.groups)
            .entry(id.to_string())
            .or_insert_with(|| {
                let mut g = Group::new();
                g.initial_delay = self.limits.initial_delay;
                Arc::new(Mutex::new(g))
            })
            .clone()
    }

    fn existing(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        lock(&self.groups).get(id).cloned()
    }

    /// Expires members and ends overdue join phases; run until `shutdown`.
    pub async fn run_timers(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.tick(Instant::now()),
            }
        }
    }

    pub fn tick(&self, now: Instant) {
        let groups: Vec<_> = lock(&self.groups).values().cloned().collect();
        for g in groups {
            let mut g = lock(&g);
            g.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now > m.last_seen + m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(member = %id, "group member session expired");
                g.remove(&id, now);
            }
            if g.state == State::PreparingRebalance
                && g.rebalance_deadline.is_some_and(|d| now >= d)
            {
                g.complete_join();
            }
        }
        let consumers: Vec<_> = lock(&self.consumers).values().cloned().collect();
        for c in consumers {
            lock(&c).expire(now, self.limits.consumer.session_timeout);
        }
        lock(&self.consumers).retain(|_, g| {
            Arc::strong_count(g) > 1 || {
                let g = lock(g);
                g.dirty || !g.members.is_empty()
            }
        });
        // Empty groups leave memory (their committed offsets stay in the
        // metadata store until they expire).
        lock(&self.groups).retain(|_, g| {
            Arc::strong_count(g) > 1 || {
                let g = lock(g);
                g.dirty
                    || !(g.state == State::Empty && g.members.is_empty() && g.pending.is_empty())
            }
        });
    }

    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinResult {
        let fail = |error| JoinResult {
            error: Some(error),
            member_id: req.member_id.clone(),
            ..Default::default()
        };
        if req.session_timeout < self.limits.min_session
            || req.session_timeout > self.limits.max_session
        {
            return fail(GroupError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        // A group of the consumer protocol with members takes no classic
        // member (mixed groups are not supported).
        if self.consumer_members(group_id) > 0 {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        let group = self.group(group_id);
        let rx = {
            let mut g = lock(&group);
            let now = Instant::now();
            if g.state != State::Empty
                && g.protocol_type.as_deref() != Some(req.protocol_type.as_str())
            {
                return fail(GroupError::InconsistentGroupProtocol);
            }
            if !g.members.is_empty()
                && !req.protocols.iter().any(|(n, _)| {
                    g.members
                        .values()
                        .all(|m| m.protocols.iter().any(|(p, _)| p == n))
                })
            {
                return fail(GroupError::InconsistentGroupProtocol);
            }
            let mut member_id = req.member_id.clone();
            // A member id handed out with MEMBER_ID_REQUIRED joins as new.
            let pending = !member_id.is_empty() && g.pending.remove(&member_id).is_some();
            if !member_id.is_empty() && !pending && !g.members.contains_key(&member_id) {
                // A static member replaced by a newer instance is fenced.
                if let Some(i) = &req.instance_id {
                    if g.members
                        .values()
                        .any(|m| m.instance_id.as_ref() == Some(i))
                    {
                        return fail(GroupError::FencedInstanceId);
                    }
                }
                return fail(GroupError::UnknownMemberId);
            }
            if member_id.is_empty() || pending {
                let static_prev = req.instance_id.as_ref().and_then(|i| {
                    g.members
                        .iter()
                        .find(|(_, m)| m.instance_id.as_ref() == Some(i))
                        .map(|(id, _)| id.clone())
                });
                if static_prev.is_none() && g.members.len() + g.pending.len() >= self.max_members {
                    return fail(GroupError::GroupMaxSizeReached);
                }
                if member_id.is_empty() {
                    let prefix = req
                        .instance_id
                        .clone()
                        .unwrap_or_else(|| req.client_id.clone());
                    member_id = format!("{prefix}-{}", ulid::Ulid::new());
                    if req.require_known_member_id && req.instance_id.is_none() {
                        g.pending
                            .insert(member_id.clone(), now + req.session_timeout);
                        return JoinResult {
                            error: Some(GroupError::MemberIdRequired),
                            member_id,
                            ..Default::default()
                        };
                    }
                }
                if let Some(prev) = static_prev {
                    // A static member restarting takes its old place: same
                    // assignment, no rebalance unless its protocols changed.
                    let mut old = g.members.remove(&prev).expect("found above");
                    if let Some(w) = old.join_waiter.take() {
                        let _ = w.send(JoinResult {
                            error: Some(GroupError::FencedInstanceId),
                            ..Default::default()
                        });
                    }
                    let same = old.protocols == req.protocols;
                    old.protocols = req.protocols.clone();
                    old.session_timeout = req.session_timeout;
                    old.rebalance_timeout = req.rebalance_timeout;
                    old.last_seen = now;
                    if let Some(w) = old.sync_waiter.take() {
                        let _ = w.send(SyncResult {
                            error: Some(GroupError::FencedInstanceId),
                            ..Default::default()
                        });
                    }
                    g.members.insert(member_id.clone(), old);
                    g.dirty = true;
                    if g.leader.as_deref() == Some(prev.as_str()) {
                        g.leader = Some(member_id.clone());
                    }
                    if same
                        && g.state == State::Stable
                        && g.leader.as_deref() != Some(member_id.as_str())
                    {
                        return g.current(&member_id);
                    }
                } else {
                    g.members.insert(
                        member_id.clone(),
                        Member {
                            instance_id: req.instance_id.clone(),
                            client_id: req.client_id.clone(),
                            client_host: req.client_host.clone(),
                            session_timeout: req.session_timeout,
                            rebalance_timeout: req.rebalance_timeout,
                            protocols: req.protocols.clone(),
                            assignment: Bytes::new(),
                            last_seen: now,
                            join_waiter: None,
                            sync_waiter: None,
                        },
                    );
                }
                if g.state == State::Empty {
                    g.protocol_type = Some(req.protocol_type.clone());
                }
                g.prepare_rebalance(now);
            } else {
                let leader = g.leader.clone();
                let state = g.state;
                let Some(m) = g.members.get_mut(&member_id) else {
                    return fail(GroupError::UnknownMemberId);
                };
                let same = m.protocols == req.protocols;
                m.protocols = req.protocols.clone();
                m.session_timeout = req.session_timeout;
                m.rebalance_timeout = req.rebalance_timeout;
                m.last_seen = now;
                if state == State::Stable && same && leader.as_deref() != Some(member_id.as_str()) {
                    return g.current(&member_id);
                }
                if state == State::CompletingRebalance && same {
                    // Rejoining while the leader computes the assignment:
                    // keep this generation, answer as the first time.
                    let mut r = g.current(&member_id);
                    if leader.as_deref() == Some(member_id.as_str()) {
                        r.members = g
                            .members
                            .iter()
                            .map(|(id, m)| {
                                let p = g.protocol.clone().unwrap_or_default();
                                let meta = m
                                    .protocols
                                    .iter()
                                    .find(|(n, _)| *n == p)
                                    .map(|(_, b)| b.clone());
                                (id.clone(), m.instance_id.clone(), meta.unwrap_or_default())
                            })
                            .collect();
                    }
                    return r;
                }
                g.prepare_rebalance(now);
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = g.members.get_mut(&member_id) {
                if let Some(old) = m.join_waiter.replace(tx) {
                    let _ = old.send(JoinResult {
                        error: Some(GroupError::UnknownMemberId),
                        ..Default::default()
                    });
                }
            }
            if g.all_joined() && !g.initial {
                g.complete_join();
            }
            rx
        };
        rx.await.unwrap_or(JoinResult {
            error: Some(GroupError::RebalanceInProgress),
            ..Default::default()
        })
    }

    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let fail = |error| SyncResult {
            error: Some(error),
            ..Default::default()
        };
        let Some(group) = self.existing(group_id) else {
            return fail(GroupError::UnknownMemberId);
        };
        let rx = {
            let mut g = lock(&group);
            if let Err(err) = g.check(member_id, generation, instance_id) {
                return fail(err);
            }
            let now = Instant::now();
            if let Some(m) = g.members.get_mut(member_id) {
                m.last_seen = now;
            }
            match g.state {
                State::Empty | State::PreparingRebalance => {
                    return fail(GroupError::RebalanceInProgress)
                }
                State::Stable => {
                    return SyncResult {
                        error: None,
                        protocol_type: g.protocol_type.clone(),
                        protocol: g.protocol.clone(),
                        assignment: g.members[member_id].assignment.clone(),
                    }
                }
                State::CompletingRebalance => {}
            }
            if g.leader.as_deref() == Some(member_id) {
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                let (pt, p) = (g.protocol_type.clone(), g.protocol.clone());
                for (id, m) in g.members.iter_mut() {
                    m.assignment = given.remove(id).unwrap_or_default();
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncResult {
                            error: None,
                            protocol_type: pt.clone(),
                            protocol: p.clone(),
                            assignment: m.assignment.clone(),
                        });
                    }
                }
                g.state = State::Stable;
                g.dirty = true;
                return SyncResult {
                    error: None,
                    protocol_type: pt,
                    protocol: p,
                    assignment: g.members[member_id].assignment.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = g.members.get_mut(member_id) {
                m.sync_waiter = Some(tx);
            }
            rx
        };
        rx.await.unwrap_or(SyncResult {
            error: Some(GroupError::RebalanceInProgress),
            ..Default::default()
        })
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let Some(group) = self.existing(group_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        let mut g = lock(&group);
        g.check(member_id, generation, instance_id)?;
        if let Some(m) = g.members.get_mut(member_id) {
            m.last_seen = Instant::now();
        }
        match g.state {
            State::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            State::Empty => Err(GroupError::UnknownMemberId),
            _ => Ok(()),
        }
    }

    /// Removes members (by member id, or by instance id when the member id
    /// is empty). Returns a result per member.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<Result<(), GroupError>> {
        let Some(group) = self.existing(group_id) else {
            return vec![Err(GroupError::UnknownMemberId); members.len()];
        };
        let mut g = lock(&group);
        let now = Instant::now();
        members
            .iter()
            .map(|(member_id, instance)| {
                let id = if member_id.is_empty() {
                    instance.as_ref().and_then(|i| {
                        g.members
                            .iter()
                            .find(|(_, m)| m.instance_id.as_ref() == Some(i))
                            .map(|(id, _)| id.clone())
                    })
                } else {
                    Some(member_id.clone())
                };
                match id {
                    Some(id) if g.members.contains_key(&id) => {
                        if instance.is_some() && g.members[&id].instance_id != *instance {
                            return Err(GroupError::FencedInstanceId);
                        }
                        g.remove(&id, now);
                        Ok(())
                    }
                    // A replaced static member leaving is fenced, not unknown.
                    _ if instance.as_ref().is_some_and(|i| {
                        g.members
                            .values()
                            .any(|m| m.instance_id.as_ref() == Some(i))
                    }) =>
                    {
                        Err(GroupError::FencedInstanceId)
                    }
                    _ => Err(GroupError::UnknownMemberId),
                }
            })
            .collect()
    }

    /// Whether an offset commit from this member and generation is allowed.
    /// Generation -1 with no member is a "simple" commit, allowed while
    /// the group has no members.
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if let Some(c) = self.consumer(group_id) {
            return lock(&c)
                .check_member_epoch(member_id, generation)
                .map_err(|(e, _)| e);
        }
        // A "simple" commit (generation -1) names no member.
        if generation < 0 && !member_id.is_empty() {
            return Err(GroupError::UnknownMemberId);
        }
        let Some(group) = self.existing(group_id) else {
            // No group here: only simple commits are allowed.
            return if generation < 0 {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration)
            };
        };
        let mut g = lock(&group);
        if generation < 0 {
            // Allowed while the group has no members, unless it claims the
            // instance id of a member (a replaced static member).
            if let Some(i) = instance_id {
                if g.members
                    .values()
                    .any(|m| m.instance_id.as_deref() == Some(i))
                {
                    return Err(GroupError::FencedInstanceId);
                }
            }
            return if g.members.is_empty() {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        }
        g.check(member_id, generation, instance_id)?;
        // As Kafka: a member of the current generation may still commit
        // while the group prepares a rebalance (consumers commit what they
        // processed before giving partitions up); only while assignments
        // are being handed out is it told to wait.
        if g.state == State::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if let Some(m) = g.members.get_mut(member_id) {
            m.last_seen = Instant::now();
        }
        Ok(())
    }

    pub fn describe(&self, group_id: &str) -> Option<Described> {
        let group = self.existing(group_id)?;
        let g = lock(&group);
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(Described {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == State::Stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .iter()
                .map(|(id, m)| DescribedMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// (group id, protocol type, state) of every group held in memory.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let groups: Vec<_> = lock(&self.groups)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out: Vec<(String, String, &'static str)> = groups
            .into_iter()
            .map(|(id, g)| {
                let g = lock(&g);
                (
                    id,
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect();
        let consumers: Vec<_> = lock(&self.consumers)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, g) in consumers {
            let state = lock(&g).state_name();
            out.retain(|(i, _, _)| *i != id);
            out.push((id, "consumer".to_string(), state));
        }
        out
    }

    /// Whether the group has members (offsets of a live group are not deleted).
    pub fn has_members(&self, group_id: &str) -> bool {
        self.existing(group_id)
            .is_some_and(|g| !lock(&g).members.is_empty())
            || self.consumer_members(group_id) > 0
    }

    /// Forgets an empty group (DeleteGroups).
    pub fn forget(&self, group_id: &str) {
        lock(&self.groups).remove(group_id);
        lock(&self.consumers).remove(group_id);
    }

    fn consumer(&self, id: &str) -> Option<Arc<Mutex<consumer::ConsumerGroup>>> {
        lock(&self.consumers).get(id).cloned()
    }

    /// Members of the group if it is a consumer-protocol group held here.
    pub fn consumer_members(&self, group_id: &str) -> usize {
        self.consumer(group_id)
            .map_or(0, |g| lock(&g).members.len())
    }

    /// Whether the group is a consumer-protocol group held here.
    pub fn is_consumer_group(&self, group_id: &str) -> bool {
        self.consumer(group_id).is_some()
    }

    /// A copy of a consumer-protocol group (ConsumerGroupDescribe).
    pub fn consumer_group(&self, group_id: &str) -> Option<consumer::ConsumerGroup> {
        self.consumer(group_id).map(|g| lock(&g).clone())
    }

    /// The consumer group settings.
    pub fn consumer_limits(&self) -> &consumer::ConsumerLimits {
        &self.limits.consumer
    }

    /// One ConsumerGroupHeartbeat.
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        req: &consumer::Heartbeat,
        view: &consumer::TopicView<'_>,
    ) -> Result<consumer::Answer, consumer::Refusal> {
        if self
            .existing(group_id)
            .is_some_and(|g| !lock(&g).members.is_empty())
        {
            return Err((
                GroupError::GroupIdNotFound,
                format!(
                    "group {group_id} is a classic group with members; a consumer of the \
                     consumer protocol cannot join it until they leave"
                ),
            ));
        }
        let leaving =
            req.epoch == consumer::LEAVE_EPOCH || req.epoch == consumer::STATIC_LEAVE_EPOCH;
        let group = if req.epoch == 0 {
            lock(&self.groups).remove(group_id);
            lock(&self.consumers)
                .entry(group_id.to_string())
                .or_default()
                .clone()
        } else {
            match self.consumer(group_id) {
                Some(g) => g,
                None if leaving => {
                    return Err((
                        GroupError::GroupIdNotFound,
                        format!("consumer group {group_id} not found"),
                    ))
                }
                None => {
                    return Err((
                        GroupError::UnknownMemberId,
                        format!("consumer group {group_id} has no member {}", req.member_id),
                    ))
                }
            }
        };
        let mut g = lock(&group);
        if leaving {
            g.leave(req)
        } else {
            g.heartbeat(req, Instant::now(), &self.limits.consumer, view)
        }
    }

    /// Checks the member and epoch an OffsetFetch (v9+) names, for a
    /// consumer-protocol group; classic groups are not checked.
    pub fn check_fetch(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), GroupError> {
        if epoch < 0 && member_id.is_empty() {
            return Ok(());
        }
        match self.consumer(group_id) {
            Some(c) => lock(&c)
                .check_member_epoch(member_id, epoch)
                .map_err(|(e, _)| e),
            None => Ok(()),
        }
    }

    /// Drops groups this agent no longer coordinates; their members get
    /// NOT_COORDINATOR and find the new coordinator.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        lock(&self.consumers).retain(|k, _| keep(k));
        let dropped: Vec<Arc<Mutex<Group>>> = {
            let mut groups = lock(&self.groups);
            let ids: Vec<String> = groups.keys().filter(|k| !keep(k)).cloned().collect();
            ids.into_iter()
                .filter_map(|id| groups.remove(&id))
                .collect()
        };
        for g in dropped {
            let mut g = lock(&g);
            for m in g.members.values_mut() {
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(JoinResult {
                        error: Some(GroupError::NotCoordinator),
                        ..Default::default()
                    });
                }
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult {
                        error: Some(GroupError::NotCoordinator),
                        ..Default::default()
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_req(member: &str, proto: &str) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            instance_id: None,
            require_known_member_id: false,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(5),
            protocol_type: "consumer".into(),
            protocols: vec![(proto.into(), Bytes::from_static(b"meta"))],
        }
    }

    /// Two members join "g" together (generation 1); returns (leader, follower).
    async fn join_two(
        groups: &Arc<Groups>,
        a: JoinRequest,
        b: JoinRequest,
    ) -> (JoinResult, JoinResult) {
        let g = groups.clone();
        let ja = tokio::spawn(async move { g.join("g", a).await });
        let jb = groups.join("g", b).await;
        let ja = ja.await.unwrap();
        assert_eq!((ja.error, jb.error), (None, None));
        assert_eq!((ja.generation, ja.leader == jb.leader), (1, true));
        if ja.member_id == ja.leader {
            (ja, jb)
        } else {
            (jb, ja)
        }
    }

    fn static_req(instance: &str) -> JoinRequest {
        JoinRequest {
            instance_id: Some(instance.into()),
            ..join_req("", "range")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_members_join_sync_and_rebalance_on_leave() {
        let groups = Arc::new(Groups::new(1000));
        let timers = tokio::spawn(groups.clone().run_timers(CancellationToken::new()));
        let (leader, follower) =
            join_two(&groups, join_req("", "range"), join_req("", "range")).await;
        assert_eq!(leader.members.len(), 2);
        assert!(follower.members.is_empty());
        // Follower waits for the leader's assignment.
        let g3 = groups.clone();
        let fid = follower.member_id.clone();
        let f = tokio::spawn(async move { g3.sync("g", &fid, 1, None, vec![]).await });
        tokio::task::yield_now().await;
        let assignments = vec![
            (leader.member_id.clone(), Bytes::from_static(b"L")),
            (follower.member_id.clone(), Bytes::from_static(b"F")),
        ];
        let l = groups
            .sync("g", &leader.member_id, 1, None, assignments)
            .await;
        assert_eq!(&l.assignment[..], b"L");
        assert_eq!(&f.await.unwrap().assignment[..], b"F");
        assert_eq!(groups.heartbeat("g", &follower.member_id, 1, None), Ok(()));
        assert_eq!(
            groups.heartbeat("g", &follower.member_id, 0, None),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            groups.heartbeat("g", "nobody", 1, None),
            Err(GroupError::UnknownMemberId)
        );
        // The leader leaves: the follower learns of the rebalance and rejoins alone.
        assert_eq!(
            groups.leave("g", &[(leader.member_id.clone(), None)]),
            vec![Ok(())]
        );
        assert_eq!(
            groups.heartbeat("g", &follower.member_id, 1, None),
            Err(GroupError::RebalanceInProgress)
        );
        let r = groups
            .join("g", join_req(&follower.member_id, "range"))
            .await;
        assert_eq!(
            (r.error, r.generation, r.leader.clone()),
            (None, 2, follower.member_id.clone())
        );
        // A silent member is expired after its session timeout; the group,
        // empty, leaves memory.
        assert_eq!(groups.describe("g").unwrap().members.len(), 1);
        tokio::time::sleep(Duration::from_secs(11)).await;
        // (Once its emptiness is persisted.)
        assert!(groups
            .take_dirty()
            .iter()
            .any(|(g, s)| g == "g" && s.is_none()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(groups.describe("g").is_none());
        timers.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn static_member_rejoin_keeps_assignment_without_rebalance() {
        let groups = Arc::new(Groups::new(1000));
        let timers = tokio::spawn(groups.clone().run_timers(CancellationToken::new()));
        let (leader, other) = join_two(&groups, static_req("i-1"), static_req("i-2")).await;
        let (leader, other) = (&leader, &other);
        let g2 = groups.clone();
        let oid = other.member_id.clone();
        let f = tokio::spawn(async move { g2.sync("g", &oid, 1, None, vec![]).await });
        tokio::task::yield_now().await;
        groups
            .sync(
                "g",
                &leader.member_id,
                1,
                None,
                vec![(other.member_id.clone(), Bytes::from_static(b"X"))],
            )
            .await;
        f.await.unwrap();
        // The non-leader restarts with the same instance id and an empty member id.
        let instance = if other.member_id.starts_with("i-1-") {
            "i-1"
        } else {
            "i-2"
        };
        let mut again = join_req("", "range");
        again.instance_id = Some(instance.into());
        let r = groups.join("g", again).await;
        assert_eq!((r.error, r.generation), (None, 1), "no rebalance");
        let s = groups
            .sync("g", &r.member_id, 1, Some(instance), vec![])
            .await;
        assert_eq!(&s.assignment[..], b"X");
        // The old member id is fenced.
        assert_eq!(
            groups.heartbeat("g", &other.member_id, 1, Some(instance)),
            Err(GroupError::FencedInstanceId)
        );
        timers.abort();
    }

    /// KIP-394: a new member without an instance id first gets
    /// MEMBER_ID_REQUIRED and its id; only a join with that id makes it a
    /// member, so abandoned first joins leave no phantom members.
    #[tokio::test(start_paused = true)]
    async fn new_members_first_get_their_id() {
        let groups = Arc::new(Groups::new(1000));
        let timers = tokio::spawn(groups.clone().run_timers(CancellationToken::new()));
        let mut req = join_req("", "range");
        req.require_known_member_id = true;
        let first = groups.join("g", req).await;
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        assert!(!first.member_id.is_empty());
        assert!(
            groups.describe("g").unwrap().members.is_empty(),
            "not a member yet"
        );
        let mut again = join_req(&first.member_id, "range");
        again.require_known_member_id = true;
        let joined = groups.join("g", again).await;
        assert_eq!((joined.error, joined.generation), (None, 1));
        assert_eq!(joined.member_id, first.member_id);
        // An id never handed out is unknown.
        let r = groups.join("g", join_req("made-up", "range")).await;
        assert_eq!(r.error, Some(GroupError::UnknownMemberId));
        // A handed-out id not used within the session timeout expires.
        let mut req = join_req("", "range");
        req.require_known_member_id = true;
        let abandoned = groups.join("g", req).await;
        assert_eq!(abandoned.error, Some(GroupError::MemberIdRequired));
        tokio::time::sleep(Duration::from_secs(11)).await;
        let late = groups
            .join("g", join_req(&abandoned.member_id, "range"))
            .await;
        assert_eq!(late.error, Some(GroupError::UnknownMemberId));
        timers.abort();
    }

    /// KIP-345: a static member replaced by a newer instance is fenced in
    /// every request it still makes.
    #[tokio::test(start_paused = true)]
    async fn a_replaced_static_member_is_fenced_everywhere() {
        let groups = Arc::new(Groups::new(1000));
        let timers = tokio::spawn(groups.clone().run_timers(CancellationToken::new()));
        let (leader, follower) = join_two(&groups, static_req("i1"), static_req("i2")).await;
        // The follower parks in SyncGroup, waiting for the leader.
        let g2 = groups.clone();
        let fid = follower.member_id.clone();
        let finst = if fid.starts_with("i1-") { "i1" } else { "i2" };
        let parked = tokio::spawn(async move { g2.sync("g", &fid, 1, Some(finst), vec![]).await });
        tokio::task::yield_now().await;
        // A new instance with the follower's instance id replaces it.
        let mut newer = join_req("", "range");
        newer.instance_id = Some(finst.into());
        let replaced = groups.join("g", newer).await;
        assert_eq!(replaced.error, None);
        assert_eq!(
            parked.await.unwrap().error,
            Some(GroupError::FencedInstanceId)
        );
        let mut stale = join_req(&follower.member_id, "range");
        stale.instance_id = Some(finst.into());
        assert_eq!(
            groups.join("g", stale).await.error,
            Some(GroupError::FencedInstanceId)
        );
        assert_eq!(
            groups.leave("g", &[(follower.member_id.clone(), Some(finst.into()))]),
            vec![Err(GroupError::FencedInstanceId)]
        );
        assert_eq!(
            groups.check_commit("g", "", -1, Some(finst)),
            Err(GroupError::FencedInstanceId)
        );
        let _ = leader;
        timers.abort();
    }

    #[test]
    fn the_protocol_is_chosen_by_votes() {
        let p = |names: &[&str]| -> Vec<(String, Bytes)> {
            names
                .iter()
                .map(|n| (n.to_string(), Bytes::new()))
                .collect()
        };
        let members = [
            p(&["range", "roundrobin"]),
            p(&["roundrobin", "range"]),
            p(&["roundrobin", "range", "sticky"]),
        ];
        assert_eq!(vote(members.iter()).as_deref(), Some("roundrobin"));
        // Only protocols every member supports are candidates.
        let members = [p(&["sticky", "range"]), p(&["range"])];
        assert_eq!(vote(members.iter()).as_deref(), Some("range"));
        let members = [p(&["a"]), p(&["b"])];
        assert_eq!(vote(members.iter()), None);
    }

    #[tokio::test]
    async fn commit_checks_follow_kafka() {
        let groups = Groups::new(10);
        // Generation -1 names no member.
        assert_eq!(
            groups.check_commit("g", "someone", -1, None),
            Err(GroupError::UnknownMemberId)
        );
        // A generation for a group this coordinator does not know.
        assert_eq!(
            groups.check_commit("g", "someone", 3, None),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(groups.check_commit("g", "", -1, None), Ok(()));
    }

    /// Console-consumer style: many short-lived groups leave memory once
    /// empty.
    #[tokio::test(start_paused = true)]
    async fn empty_groups_leave_memory() {
        let groups = Arc::new(Groups::new(10));
        let timers = tokio::spawn(groups.clone().run_timers(CancellationToken::new()));
        let n = 50_000;
        let mut joins = Vec::with_capacity(n);
        for i in 0..n {
            let g = groups.clone();
            joins.push(tokio::spawn(async move {
                let r = g.join(&format!("console-{i}"), join_req("", "range")).await;
                (i, r.member_id)
            }));
        }
        let mut members = Vec::with_capacity(n);
        for j in joins {
            members.push(j.await.unwrap());
        }
        assert_eq!(groups.len(), n);
        for (i, m) in members {
            assert_eq!(
                groups.leave(&format!("console-{i}"), &[(m, None)]),
                vec![Ok(())]
            );
        }
        // Their emptiness is persisted, then they are forgotten.
        assert_eq!(groups.take_dirty().len(), n);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(groups.len(), 0, "empty groups are forgotten");
        timers.abort();
    }

    /// A group persisted while completing a rebalance (its coordinator
    /// stopped between the join and the assignments) rebalances again at
    /// the next coordinator: it must not wait for a SyncGroup the leader
    /// already sent elsewhere.
    #[tokio::test(start_paused = true)]
    async fn a_group_resumed_mid_rebalance_rebalances_again() {
        let here = Arc::new(Groups::new(1000));
        let timers = tokio::spawn(here.clone().run_timers(CancellationToken::new()));
        let joined = here.join("g", join_req("", "range")).await;
        assert_eq!(joined.error, None);
        // Persisted now: completing the rebalance, no assignment yet.
        let (_, snap) = here.take_dirty().into_iter().next().unwrap();
        let snap = snap.unwrap();
        let persist::Snapshot::Classic(classic) = &snap else {
            panic!("a classic group persists as one")
        };
        assert_eq!(classic.state, "CompletingRebalance");
        timers.abort();
        let there = Arc::new(Groups::new(1000));
        let timers = tokio::spawn(there.clone().run_timers(CancellationToken::new()));
        there.restore("g", &snap);
        assert_eq!(
            there.heartbeat("g", &joined.member_id, 1, None),
            Err(GroupError::RebalanceInProgress),
            "the member is told to rejoin"
        );
        let again = there.join("g", join_req(&joined.member_id, "range")).await;
        assert_eq!((again.error, again.generation), (None, 2));
        let s = there
            .sync(
                "g",
                &joined.member_id,
                2,
                None,
                vec![(joined.member_id.clone(), Bytes::from_static(b"A"))],
            )
            .await;
        assert_eq!(s.error, None);
        assert_eq!(there.check_commit("g", &joined.member_id, 2, None), Ok(()));
        timers.abort();
    }

    /// A group resumed from its persisted state by another coordinator
    /// goes on without a rebalance: members keep ids, generation and
    /// assignments.
    #[tokio::test(start_paused = true)]
    async fn a_group_resumes_elsewhere_without_a_rebalance() {
        let here = Arc::new(Groups::new(1000));
        let timers = tokio::spawn(here.clone().run_timers(CancellationToken::new()));
        let (leader, follower) = join_two(&here, static_req("i1"), join_req("", "range")).await;
        let h = here.clone();
        let fid = follower.member_id.clone();
        let f = tokio::spawn(async move { h.sync("g", &fid, 1, None, vec![]).await });
        tokio::task::yield_now().await;
        here.sync(
            "g",
            &leader.member_id,
            1,
            None,
            vec![
                (leader.member_id.clone(), Bytes::from_static(b"L")),
                (follower.member_id.clone(), Bytes::from_static(b"F")),
            ],
        )
        .await;
        f.await.unwrap();
        let dirty = here.take_dirty();
        let (_, snap) = dirty.into_iter().find(|(g, _)| g == "g").unwrap();
        let snap = persist::Snapshot::decode(&snap.unwrap().encode()).unwrap();
        timers.abort();

        // Another coordinator resumes it.
        let there = Arc::new(Groups::new(1000));
        let timers = tokio::spawn(there.clone().run_timers(CancellationToken::new()));
        there.restore("g", &snap);
        assert_eq!(there.describe("g").unwrap().state, "Stable");
        for m in [&leader.member_id, &follower.member_id] {
            assert_eq!(
                there.heartbeat("g", m, 1, None).map(|_| ()),
                Ok(()),
                "no rebalance"
            );
        }
        let s = there.sync("g", &follower.member_id, 1, None, vec![]).await;
        assert_eq!((s.error, &s.assignment[..]), (None, &b"F"[..]));
        // A member rejoining with the same protocols keeps its generation.
        let r = there
            .join("g", join_req(&follower.member_id, "range"))
            .await;
        assert_eq!((r.error, r.generation), (None, 1));
        assert_eq!(there.check_commit("g", &leader.member_id, 1, None), Ok(()));
        timers.abort();
    }
}
