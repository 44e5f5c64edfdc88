//! The consumer group protocol of KIP-848 (`group.protocol=consumer`):
//! members heartbeat with ConsumerGroupHeartbeat, the coordinator computes
//! a target assignment with a server-side assignor (uniform or range) and
//! moves each member towards it one step per heartbeat. A partition moves
//! only once its previous owner has acknowledged its revocation, so no
//! partition has two owners at once.
//!
//! Epochs: the group epoch advances when membership or subscriptions (or
//! the partition counts of subscribed topics) change; the target assignment
//! is computed for a group epoch (the assignment epoch); a member's epoch
//! is the assignment epoch it has reconciled to. Offset commits carry the
//! member epoch and are refused when it is stale.
//!
//! The group's state is persisted by its coordinator like a classic
//! group's (see [`persist`](super::persist)), before any heartbeat answer
//! that reveals a change, so a new coordinator resumes the group with the
//! same epochs and assignments and no member has to rejoin.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::GroupError;

/// Partitions by topic name.
pub type Parts = BTreeMap<String, BTreeSet<i32>>;

/// A refusal with Kafka's error and a message for the client.
pub type Refusal = (GroupError, String);

/// The member epoch of a member leaving the group.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member leaving for now (it keeps its
/// partitions until its session times out).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// A server-side assignor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assignor {
    /// Kafka's `uniform`: partitions spread evenly over the members
    /// subscribed to them, keeping a member's partitions where possible.
    Uniform,
    /// Kafka's `range`: per topic, contiguous ranges of partitions by
    /// member order, so co-partitioned topics are assigned alike.
    Range,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }
}

/// The settings of consumer groups (Kafka's `group.consumer.*`).
#[derive(Debug, Clone)]
pub struct ConsumerLimits {
    /// `group.consumer.session.timeout.ms`: a member that has not
    /// heartbeated this long is removed.
    pub session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`: how often members heartbeat.
    pub heartbeat_interval: Duration,
    /// `group.consumer.max.size`: members of one group at most.
    pub max_members: usize,
    /// `group.consumer.assignors`: the assignors offered; the first is the
    /// default.
    pub assignors: Vec<Assignor>,
}

impl Default for ConsumerLimits {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(5),
            max_members: 1000,
            assignors: vec![Assignor::Uniform, Assignor::Range],
        }
    }
}

/// Where a member is on its way to the target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// It owns its target (for its epoch).
    Stable,
    /// It was asked to give up partitions and has not confirmed yet; its
    /// epoch stays until it does.
    UnrevokedPartitions,
    /// It is at the target epoch but waits for partitions that other
    /// members still have to give up.
    UnreleasedPartitions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed: BTreeSet<String>,
    /// A regular expression whose matching topics it also subscribes to.
    #[serde(default)]
    pub regex: Option<String>,
    /// What it is subscribed to now: the named topics that exist and the
    /// topics its regular expression matches.
    #[serde(default)]
    pub topics: BTreeSet<String>,
    pub server_assignor: Option<Assignor>,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// The partitions it owns.
    pub assigned: Parts,
    /// Partitions it was asked to give up and has not confirmed yet.
    pub revoking: Parts,
    #[serde(skip, default = "Instant::now")]
    pub last_seen: Instant,
    /// When it must have confirmed its revocations.
    #[serde(skip)]
    pub revoke_deadline: Option<Instant>,
}

/// One ConsumerGroupHeartbeat, decoded (topics by name).
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged.
    pub subscribed: Option<Vec<String>>,
    /// `None`: unchanged; empty: none.
    pub regex: Option<String>,
    /// `None`: unchanged.
    pub server_assignor: Option<String>,
    /// The partitions the member owns (`None`: not reported).
    pub owned: Option<Parts>,
    pub client_id: String,
    pub client_host: String,
}

/// The topics a heartbeat sees.
pub struct TopicView<'a> {
    /// The partition count of an existing topic.
    pub partitions: &'a dyn Fn(&str) -> Option<usize>,
    /// The existing topics a regular expression matches (whole names).
    pub matching: &'a dyn Fn(&str) -> Vec<String>,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub member_id: String,
    pub epoch: i32,
    /// The member's assignment, when the member must (re)learn it.
    pub assignment: Option<Parts>,
}

/// A group of the consumer protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerGroup {
    /// Always "consumer": tells this snapshot from a classic group's.
    pub kind: String,
    pub epoch: i32,
    pub assignment_epoch: i32,
    /// Partition counts of the subscribed topics that exist, as of the
    /// last heartbeat.
    pub topics: BTreeMap<String, usize>,
    /// The target assignment, per member.
    pub target: BTreeMap<String, Parts>,
    pub members: BTreeMap<String, Member>,
    /// The assignor that computed the target.
    pub assignor: Assignor,
    /// Changed since last persisted.
    #[serde(skip)]
    pub dirty: bool,
}

fn count(p: &Parts) -> usize {
    p.values().map(|s| s.len()).sum()
}

fn minus(a: &Parts, b: &Parts) -> Parts {
    let mut out = Parts::new();
    for (t, ps) in a {
        let other = b.get(t);
        let left: BTreeSet<i32> = ps
            .iter()
            .filter(|p| !other.is_some_and(|o| o.contains(p)))
            .copied()
            .collect();
        if !left.is_empty() {
            out.insert(t.clone(), left);
        }
    }
    out
}

fn intersect(a: &Parts, b: &Parts) -> Parts {
    let mut out = Parts::new();
    for (t, ps) in a {
        if let Some(o) = b.get(t) {
            let both: BTreeSet<i32> = ps.intersection(o).copied().collect();
            if !both.is_empty() {
                out.insert(t.clone(), both);
            }
        }
    }
    out
}

fn overlaps(a: &Parts, b: &Parts) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|o| !ps.is_disjoint(o)))
}

fn is_subset(a: &Parts, b: &Parts) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|o| ps.is_subset(o)))
}

fn insert(p: &mut Parts, topic: &str, partition: i32) {
    p.entry(topic.to_string()).or_default().insert(partition);
}

impl Default for ConsumerGroup {
    fn default() -> Self {
        Self {
            kind: "consumer".into(),
            epoch: 0,
            assignment_epoch: 0,
            topics: BTreeMap::new(),
            target: BTreeMap::new(),
            members: BTreeMap::new(),
            assignor: Assignor::Uniform,
            dirty: false,
        }
    }
}

impl ConsumerGroup {
    /// The group's state as Kafka names it.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.state != MemberState::Stable || m.epoch != self.assignment_epoch)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Checks the epoch a member sent against the one it has: a lost
    /// answer is forgiven (the previous epoch, owning no more than it was
    /// given).
    fn check_epoch(m: &Member, epoch: i32, owned: Option<&Parts>) -> Result<(), Refusal> {
        if epoch > m.epoch {
            return Err((
                GroupError::FencedMemberEpoch,
                format!(
                    "the member epoch {epoch} is newer than the coordinator's ({}); \
                     the member must give up its partitions and rejoin",
                    m.epoch
                ),
            ));
        }
        if epoch < m.epoch
            && (epoch != m.previous_epoch || !owned.is_some_and(|o| is_subset(o, &m.assigned)))
        {
            return Err((
                GroupError::FencedMemberEpoch,
                format!(
                    "the member epoch {epoch} is older than the coordinator's ({}); \
                     the member must give up its partitions and rejoin",
                    m.epoch
                ),
            ));
        }
        Ok(())
    }

    /// Removes a member (it left, or its session or revocation timed out);
    /// its partitions are free for others once the target is recomputed.
    pub fn fence(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.epoch += 1;
            self.dirty = true;
            crate::metrics::global().rebalances.inc();
        }
    }

    /// A member leaves (epoch -1), or a static member leaves for now
    /// (epoch -2: it keeps its partitions until its session times out).
    pub fn leave(&mut self, req: &Heartbeat) -> Result<Answer, Refusal> {
        let id = match &req.instance_id {
            None => {
                if !self.members.contains_key(&req.member_id) {
                    return Err(unknown(&req.member_id));
                }
                req.member_id.clone()
            }
            Some(inst) => {
                let Some((id, _)) = self.static_member(inst) else {
                    return Err((
                        GroupError::UnknownMemberId,
                        format!("instance id {inst} is unknown"),
                    ));
                };
                if id != req.member_id {
                    return Err(fenced_instance(&req.member_id, inst, &id));
                }
                id
            }
        };
        if req.epoch == STATIC_LEAVE_EPOCH && req.instance_id.is_some() {
            let m = self.members.get_mut(&id).expect("checked above");
            m.epoch = STATIC_LEAVE_EPOCH;
            m.revoking.clear();
            m.state = MemberState::Stable;
            m.revoke_deadline = None;
            self.dirty = true;
        } else {
            self.fence(&id);
        }
        Ok(Answer {
            member_id: req.member_id.clone(),
            epoch: req.epoch,
            assignment: None,
        })
    }

    fn static_member(&self, instance: &str) -> Option<(String, &Member)> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, m)| (id.clone(), m))
    }

    /// A regular heartbeat (epoch 0 joins or rejoins). `partitions` gives
    /// the partition count of an existing topic.
    pub fn heartbeat(
        &mut self,
        req: &Heartbeat,
        now: Instant,
        limits: &ConsumerLimits,
        view: &TopicView<'_>,
    ) -> Result<Answer, Refusal> {
        let join = req.epoch == 0;
        let mut member_id = req.member_id.clone();
        if member_id.is_empty() {
            member_id = ulid::Ulid::new().to_string();
        }
        if self.members.len() >= limits.max_members && !self.members.contains_key(&member_id) {
            // A static member replacing its departed self takes no new place.
            let replacing = req.instance_id.as_ref().is_some_and(|i| {
                self.static_member(i)
                    .is_some_and(|(_, m)| m.epoch == STATIC_LEAVE_EPOCH)
            });
            if !replacing {
                return Err((
                    GroupError::GroupMaxSizeReached,
                    format!(
                        "the consumer group has reached its maximum of {} members",
                        limits.max_members
                    ),
                ));
            }
        }
        // Resolve the member: new, rejoining, replacing a departed static
        // member, or heartbeating at its epoch.
        let mut replaced = false;
        let before: Option<Member> = match &req.instance_id {
            None => match self.members.get(&member_id) {
                None if join => None,
                None => return Err(unknown(&member_id)),
                Some(m) => {
                    if !join {
                        Self::check_epoch(m, req.epoch, req.owned.as_ref())?;
                    }
                    Some(m.clone())
                }
            },
            Some(inst) => match self.static_member(inst) {
                None if join => self.members.get(&member_id).cloned(),
                None => {
                    return Err((
                        GroupError::UnknownMemberId,
                        format!("instance id {inst} is unknown"),
                    ))
                }
                Some((id, m)) if id == member_id => {
                    if !join {
                        Self::check_epoch(m, req.epoch, req.owned.as_ref())?;
                    }
                    Some(m.clone())
                }
                Some((id, m)) if join => {
                    if m.epoch != STATIC_LEAVE_EPOCH {
                        return Err((
                            GroupError::UnreleasedInstanceId,
                            format!(
                                "instance id {inst} is still used by member {id}, \
                                 which must leave first"
                            ),
                        ));
                    }
                    // The restarted instance takes the place of its departed
                    // self: same partitions, no rebalance.
                    let mut m = self.members.remove(&id).expect("found above");
                    let target = self.target.remove(&id).unwrap_or_default();
                    self.target.insert(member_id.clone(), target);
                    m.epoch = 0;
                    m.previous_epoch = -1;
                    m.state = MemberState::Stable;
                    self.members.insert(member_id.clone(), m.clone());
                    self.dirty = true;
                    replaced = true;
                    Some(m)
                }
                Some((id, _)) => return Err(fenced_instance(&member_id, inst, &id)),
            },
        };
        let mut m = before.clone().unwrap_or_else(|| Member {
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            subscribed: BTreeSet::new(),
            regex: None,
            topics: BTreeSet::new(),
            server_assignor: None,
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Parts::new(),
            revoking: Parts::new(),
            last_seen: now,
            revoke_deadline: None,
        });
        if join && before.is_some() && !replaced {
            // A member (re)joining has given up every partition it had.
            m.assigned.clear();
            m.revoking.clear();
            m.epoch = 0;
            m.state = MemberState::Stable;
            m.revoke_deadline = None;
        }
        if let Some(i) = &req.instance_id {
            m.instance_id = Some(i.clone());
        }
        if let Some(r) = &req.rack_id {
            m.rack_id = Some(r.clone());
        }
        if req.rebalance_timeout_ms >= 0 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(a) = &req.server_assignor {
            m.server_assignor = Assignor::parse(a);
        }
        let mut bump = before.is_none();
        if let Some(s) = &req.subscribed {
            let s: BTreeSet<String> = s.iter().cloned().collect();
            if s != m.subscribed {
                tracing::info!(member = %member_id, topics = ?s, "consumer group member subscribes");
                m.subscribed = s;
                bump = true;
            }
        }
        if let Some(r) = &req.regex {
            let r = (!r.is_empty()).then(|| r.clone());
            if r != m.regex {
                tracing::info!(member = %member_id, regex = ?r, "consumer group member subscribes");
                m.regex = r;
                bump = true;
            }
        }
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.last_seen = now;
        let changed = before.as_ref().is_none_or(|b| {
            b.instance_id != m.instance_id
                || b.rack_id != m.rack_id
                || b.rebalance_timeout_ms != m.rebalance_timeout_ms
                || b.server_assignor != m.server_assignor
                || b.subscribed != m.subscribed
                || b.regex != m.regex
                || b.assigned != m.assigned
                || b.epoch != m.epoch
        });
        if changed {
            self.dirty = true;
        }
        self.members.insert(member_id.clone(), m);

        // The subscribed topics as they are now: a new topic (named or
        // matched), a deleted one or more partitions change the target.
        let mut matched: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.members.values().filter_map(|m| m.regex.clone()) {
            if let std::collections::btree_map::Entry::Vacant(e) = matched.entry(r) {
                let found = (view.matching)(e.key());
                e.insert(found);
            }
        }
        let mut topics = BTreeMap::new();
        for m in self.members.values_mut() {
            let mut now_topics = BTreeSet::new();
            for t in m.subscribed.iter().chain(
                m.regex
                    .as_ref()
                    .and_then(|r| matched.get(r))
                    .into_iter()
                    .flatten(),
            ) {
                let n = match topics.get(t) {
                    Some(n) => Some(*n),
                    None => (view.partitions)(t),
                };
                if let Some(n) = n {
                    topics.insert(t.clone(), n);
                    now_topics.insert(t.clone());
                }
            }
            if now_topics != m.topics {
                m.topics = now_topics;
                bump = true;
            }
        }
        if topics != self.topics {
            self.topics = topics;
            bump = true;
        }
        if bump {
            self.epoch += 1;
            self.dirty = true;
            crate::metrics::global().rebalances.inc();
        }
        // (A replacing static member took its predecessor's target as is.)
        if self.epoch > self.assignment_epoch {
            self.assignor = self.preferred(limits);
            self.target = assign(self.assignor, &self.members, &self.topics, &self.target);
            self.assignment_epoch = self.epoch;
            self.dirty = true;
            tracing::info!(
                epoch = self.epoch,
                assignor = self.assignor.name(),
                members = self.members.len(),
                "computed the consumer group's target assignment"
            );
        }
        let assigned_before = self.members[&member_id].assigned.clone();
        self.reconcile(&member_id, req.owned.as_ref(), now);
        let m = &self.members[&member_id];
        let changed = m.assigned != assigned_before;
        Ok(Answer {
            member_id: member_id.clone(),
            epoch: m.epoch,
            assignment: (req.owned.is_some() || join || changed).then(|| m.assigned.clone()),
        })
    }

    /// The assignor most members ask for, else the default.
    fn preferred(&self, limits: &ConsumerLimits) -> Assignor {
        let default = limits
            .assignors
            .first()
            .copied()
            .unwrap_or(Assignor::Uniform);
        let mut votes: Vec<(Assignor, usize)> = Vec::new();
        for a in self.members.values().filter_map(|m| m.server_assignor) {
            match votes.iter_mut().find(|(x, _)| *x == a) {
                Some((_, n)) => *n += 1,
                None => votes.push((a, 1)),
            }
        }
        votes
            .iter()
            .max_by_key(|(a, n)| (*n, *a == default))
            .map_or(default, |(a, _)| *a)
    }

    /// Moves a member one step towards its target: first it gives up what
    /// it must (keeping its epoch), then it takes the target epoch and the
    /// target partitions that no other member still holds.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Parts>, now: Instant) {
        let epoch = self.assignment_epoch;
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        if m.epoch == STATIC_LEAVE_EPOCH || (m.state == MemberState::Stable && m.epoch == epoch) {
            return;
        }
        // Still holding partitions it was asked to give up: wait.
        let still_owns = |p: &Parts| owned.is_none_or(|o| overlaps(o, p));
        if m.state == MemberState::UnrevokedPartitions && still_owns(&m.revoking) {
            return;
        }
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let mut held = Parts::new();
        for (id, other) in &self.members {
            if id == member_id {
                continue;
            }
            for (t, ps) in other.assigned.iter().chain(other.revoking.iter()) {
                for p in ps {
                    insert(&mut held, t, *p);
                }
            }
        }
        let m = self.members.get_mut(member_id).expect("checked above");
        let keep = intersect(&m.assigned, &target);
        let revoke = minus(&m.assigned, &target);
        let wanted = minus(&target, &m.assigned);
        let free = minus(&wanted, &held);
        let unreleased = count(&free) < count(&wanted);
        if !revoke.is_empty() && owned.is_none_or(|o| overlaps(o, &revoke)) {
            m.previous_epoch = m.epoch;
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = keep;
            m.revoking = revoke;
            m.revoke_deadline =
                Some(now + Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64));
        } else {
            let mut next = keep;
            for (t, ps) in free {
                next.entry(t).or_default().extend(ps);
            }
            if m.epoch != epoch {
                m.previous_epoch = m.epoch;
                m.epoch = epoch;
            }
            m.assigned = next;
            m.revoking.clear();
            m.revoke_deadline = None;
            m.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
        }
        self.dirty = true;
    }

    /// Members whose session ran out, or who did not give up partitions in
    /// their rebalance timeout, are removed; returns how many.
    pub fn expire(&mut self, now: Instant, session_timeout: Duration) -> usize {
        let gone: Vec<(String, &'static str)> = self
            .members
            .iter()
            .filter_map(|(id, m)| {
                if now > m.last_seen + session_timeout {
                    Some((id.clone(), "its session timed out"))
                } else if m.revoke_deadline.is_some_and(|d| now > d) {
                    Some((
                        id.clone(),
                        "it did not give up partitions in its rebalance timeout",
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in &gone {
            tracing::info!(member = %id, "consumer group member removed: {why}");
            self.fence(id);
        }
        gone.len()
    }

    /// Checks an offset commit or fetch that names a member and epoch.
    /// A commit naming no member (epoch < 0) is allowed while the group
    /// has no members.
    pub fn check_member_epoch(&self, member_id: &str, epoch: i32) -> Result<(), Refusal> {
        if epoch < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(unknown(member_id))
            };
        }
        let Some(m) = self.members.get(member_id) else {
            return Err(unknown(member_id));
        };
        if m.epoch != epoch {
            return Err((
                GroupError::StaleMemberEpoch,
                format!(
                    "member epoch {epoch} is not the member's current epoch {}",
                    m.epoch
                ),
            ));
        }
        Ok(())
    }

    /// Restores the timers of a group resumed from its persisted state.
    pub fn resume(&mut self, now: Instant) {
        for m in self.members.values_mut() {
            m.last_seen = now;
            if m.state == MemberState::UnrevokedPartitions {
                m.revoke_deadline =
                    Some(now + Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64));
            }
        }
    }
}

fn unknown(member_id: &str) -> Refusal {
    (
        GroupError::UnknownMemberId,
        format!("member {member_id} is not in the group"),
    )
}

fn fenced_instance(member_id: &str, instance: &str, by: &str) -> Refusal {
    (
        GroupError::FencedInstanceId,
        format!("member {member_id} with instance id {instance} was replaced by member {by}"),
    )
}

/// Computes the target assignment of every member.
pub fn assign(
    assignor: Assignor,
    members: &BTreeMap<String, Member>,
    topics: &BTreeMap<String, usize>,
    previous: &BTreeMap<String, Parts>,
) -> BTreeMap<String, Parts> {
    let mut out: BTreeMap<String, Parts> = members
        .keys()
        .map(|id| (id.clone(), Parts::new()))
        .collect();
    match assignor {
        Assignor::Range => {
            for (t, &n) in topics {
                let subs: Vec<&String> = members
                    .iter()
                    .filter(|(_, m)| m.topics.contains(t))
                    .map(|(id, _)| id)
                    .collect();
                if subs.is_empty() {
                    continue;
                }
                let (per, extra) = (n / subs.len(), n % subs.len());
                let mut next = 0usize;
                for (i, id) in subs.iter().enumerate() {
                    let len = per + usize::from(i < extra);
                    for p in next..next + len {
                        insert(out.get_mut(*id).expect("every member"), t, p as i32);
                    }
                    next += len;
                }
            }
        }
        Assignor::Uniform => uniform(members, topics, previous, &mut out),
    }
    out
}

/// Even spread with stickiness: every partition stays with its previous
/// owner while that owner is eligible; the rest go to the eligible member
/// with the fewest; then partitions move from the most loaded members to
/// eligible ones with at least two fewer until none can.
fn uniform(
    members: &BTreeMap<String, Member>,
    topics: &BTreeMap<String, usize>,
    previous: &BTreeMap<String, Parts>,
    out: &mut BTreeMap<String, Parts>,
) {
    let eligible = |id: &str, t: &str| members.get(id).is_some_and(|m| m.topics.contains(t));
    let exists = |t: &str, p: i32| topics.get(t).is_some_and(|&n| p >= 0 && (p as usize) < n);
    let mut load: BTreeMap<String, usize> = members.keys().map(|id| (id.clone(), 0)).collect();
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    // Total partitions each member could take, to cap stickiness at a fair
    // share when everyone is subscribed alike.
    let total: usize = topics
        .iter()
        .filter(|(t, _)| members.values().any(|m| m.topics.contains(*t)))
        .map(|(_, n)| *n)
        .sum();
    let fair = if members.is_empty() {
        0
    } else {
        total.div_ceil(members.len())
    };
    for (id, parts) in previous {
        if !members.contains_key(id) {
            continue;
        }
        for (t, ps) in parts {
            for &p in ps {
                if eligible(id, t) && exists(t, p) && load[id] < fair {
                    owner.insert((t.clone(), p), id.clone());
                    *load.get_mut(id).expect("member") += 1;
                }
            }
        }
    }
    for (t, &n) in topics {
        for p in 0..n as i32 {
            if owner.contains_key(&(t.clone(), p)) {
                continue;
            }
            let best = load
                .iter()
                .filter(|(id, _)| eligible(id, t))
                .min_by_key(|(id, l)| (**l, (*id).clone()))
                .map(|(id, _)| id.clone());
            if let Some(id) = best {
                owner.insert((t.clone(), p), id.clone());
                *load.get_mut(&id).expect("member") += 1;
            }
        }
    }
    // Balance: bounded by the number of partitions (each move lowers the
    // spread of loads).
    for _ in 0..=owner.len() {
        let mut moved = false;
        let keys: Vec<(String, i32)> = owner.keys().cloned().collect();
        for key in keys {
            let from = owner[&key].clone();
            let to = load
                .iter()
                .filter(|(id, _)| **id != from && eligible(id, &key.0))
                .min_by_key(|(id, l)| (**l, (*id).clone()))
                .map(|(id, l)| (id.clone(), *l));
            if let Some((to, l)) = to {
                if l + 1 < load[&from] {
                    *load.get_mut(&from).expect("member") -= 1;
                    *load.get_mut(&to).expect("member") += 1;
                    owner.insert(key, to);
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    for ((t, p), id) in owner {
        insert(out.get_mut(&id).expect("every member"), &t, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(v: &[(&str, &[i32])]) -> Parts {
        v.iter()
            .map(|(t, ps)| (t.to_string(), ps.iter().copied().collect()))
            .collect()
    }

    fn join(id: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed: Some(topics.iter().map(|t| t.to_string()).collect()),
            owned: Some(Parts::new()),
            ..Default::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: &Parts) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            epoch,
            rebalance_timeout_ms: -1,
            owned: Some(owned.clone()),
            ..Default::default()
        }
    }

    fn six_of(t: &str) -> Option<usize> {
        (t == "t").then_some(6)
    }

    fn none(_: &str) -> Vec<String> {
        Vec::new()
    }

    const SIX: TopicView<'static> = TopicView {
        partitions: &six_of,
        matching: &none,
    };

    #[test]
    fn a_partition_moves_only_after_its_owner_gives_it_up() {
        let limits = ConsumerLimits::default();
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        let a = g.heartbeat(&join("a", &["t"]), now, &limits, &SIX).unwrap();
        assert_eq!(a.epoch, 1);
        let all = parts(&[("t", &[0, 1, 2, 3, 4, 5])]);
        assert_eq!(a.assignment.as_ref(), Some(&all));
        // b joins: the group epoch advances; b gets nothing yet, a is asked
        // to give up half and keeps epoch 1.
        let b = g.heartbeat(&join("b", &["t"]), now, &limits, &SIX).unwrap();
        assert_eq!(b.epoch, 2);
        assert_eq!(b.assignment, Some(Parts::new()));
        assert_eq!(g.members["b"].state, MemberState::UnreleasedPartitions);
        let a2 = g
            .heartbeat(&beat("a", 1, &all), now, &limits, &SIX)
            .unwrap();
        assert_eq!(a2.epoch, 1, "a keeps its epoch until it revokes");
        let kept = a2.assignment.clone().unwrap();
        assert_eq!(count(&kept), 3);
        // b still gets nothing while a holds them.
        let b2 = g
            .heartbeat(&beat("b", 2, &Parts::new()), now, &limits, &SIX)
            .unwrap();
        assert_eq!(b2.assignment, Some(Parts::new()));
        // a confirms: it reaches epoch 2; then b takes the rest.
        let a3 = g
            .heartbeat(&beat("a", 1, &kept), now, &limits, &SIX)
            .unwrap();
        assert_eq!(a3.epoch, 2);
        let b3 = g
            .heartbeat(&beat("b", 2, &Parts::new()), now, &limits, &SIX)
            .unwrap();
        let got = b3.assignment.unwrap();
        assert_eq!(count(&got), 3);
        assert!(!overlaps(&got, &kept));
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn epochs_are_checked_and_a_lost_answer_is_forgiven() {
        let limits = ConsumerLimits::default();
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        g.heartbeat(&join("a", &["t"]), now, &limits, &SIX).unwrap();
        let all = parts(&[("t", &[0, 1, 2, 3, 4, 5])]);
        let e = g
            .heartbeat(&beat("a", 7, &all), now, &limits, &SIX)
            .unwrap_err();
        assert_eq!(e.0, GroupError::FencedMemberEpoch);
        // The join's answer was lost: the member retries at epoch 0, which
        // is its previous epoch, owning nothing.
        let again = g.heartbeat(&beat("a", 0, &Parts::new()), now, &limits, &SIX);
        assert!(again.is_ok(), "{again:?}");
        let e = g
            .heartbeat(&beat("zz", 1, &all), now, &limits, &SIX)
            .unwrap_err();
        assert_eq!(e.0, GroupError::UnknownMemberId);
        assert_eq!(g.check_member_epoch("a", 1), Ok(()));
        assert_eq!(
            g.check_member_epoch("a", 0).unwrap_err().0,
            GroupError::StaleMemberEpoch
        );
        assert_eq!(
            g.check_member_epoch("", -1).unwrap_err().0,
            GroupError::UnknownMemberId
        );
    }

    #[test]
    fn a_static_member_comes_back_to_its_partitions() {
        let limits = ConsumerLimits::default();
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        let mut j = join("a1", &["t"]);
        j.instance_id = Some("i".into());
        g.heartbeat(&j, now, &limits, &SIX).unwrap();
        let mut j2 = join("b", &["t"]);
        j2.instance_id = Some("j".into());
        g.heartbeat(&j2, now, &limits, &SIX).unwrap();
        let before = g.target["a1"].clone();
        // A second instance with the same id cannot join while a1 is there.
        let mut dup = join("a2", &["t"]);
        dup.instance_id = Some("i".into());
        assert_eq!(
            g.heartbeat(&dup, now, &limits, &SIX).unwrap_err().0,
            GroupError::UnreleasedInstanceId
        );
        let mut leave = beat("a1", STATIC_LEAVE_EPOCH, &Parts::new());
        leave.instance_id = Some("i".into());
        g.leave(&leave).unwrap();
        let epoch = g.epoch;
        g.heartbeat(&dup, now, &limits, &SIX).unwrap();
        assert_eq!(g.epoch, epoch, "no rebalance");
        assert_eq!(g.target["a2"], before);
        assert!(!g.members.contains_key("a1"));
    }

    #[test]
    fn range_gives_contiguous_ranges_and_uniform_balances() {
        let mut members = BTreeMap::new();
        for id in ["a", "b", "c"] {
            members.insert(
                id.to_string(),
                Member {
                    instance_id: None,
                    rack_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    rebalance_timeout_ms: 0,
                    subscribed: ["x".to_string(), "y".to_string()].into(),
                    regex: None,
                    topics: ["x".to_string(), "y".to_string()].into(),
                    server_assignor: None,
                    epoch: 0,
                    previous_epoch: -1,
                    state: MemberState::Stable,
                    assigned: Parts::new(),
                    revoking: Parts::new(),
                    last_seen: Instant::now(),
                    revoke_deadline: None,
                },
            );
        }
        let topics: BTreeMap<String, usize> = [("x".to_string(), 7), ("y".to_string(), 7)].into();
        let r = assign(Assignor::Range, &members, &topics, &BTreeMap::new());
        assert_eq!(r["a"], parts(&[("x", &[0, 1, 2]), ("y", &[0, 1, 2])]));
        assert_eq!(r["c"], parts(&[("x", &[5, 6]), ("y", &[5, 6])]));
        let u = assign(Assignor::Uniform, &members, &topics, &BTreeMap::new());
        let loads: Vec<usize> = u.values().map(count).collect();
        assert_eq!(loads.iter().sum::<usize>(), 14);
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
        // Sticky: one member leaves, the others keep what they had.
        members.remove("c");
        let u2 = assign(Assignor::Uniform, &members, &topics, &u);
        for id in ["a", "b"] {
            assert!(
                is_subset(&u[id], &u2[id]),
                "{id} lost partitions: {u:?} -> {u2:?}"
            );
        }
        assert_eq!(u2.values().map(count).sum::<usize>(), 14);
    }

    #[test]
    fn a_regular_expression_follows_new_topics() {
        use std::cell::RefCell;
        let limits = ConsumerLimits::default();
        let now = Instant::now();
        let existing = RefCell::new(vec!["orders-eu".to_string(), "users".to_string()]);
        let partitions = |t: &str| existing.borrow().iter().any(|x| x == t).then_some(2usize);
        let matching = |r: &str| {
            let r = r.trim_end_matches(".*");
            existing
                .borrow()
                .iter()
                .filter(|t| t.starts_with(r))
                .cloned()
                .collect::<Vec<_>>()
        };
        let view = TopicView {
            partitions: &partitions,
            matching: &matching,
        };
        let mut g = ConsumerGroup::default();
        let mut j = join("a", &[]);
        j.subscribed = None;
        j.regex = Some("orders-.*".into());
        let a = g.heartbeat(&j, now, &limits, &view).unwrap();
        assert_eq!(a.assignment, Some(parts(&[("orders-eu", &[0, 1])])));
        existing.borrow_mut().push("orders-us".into());
        let owned = a.assignment.unwrap();
        let a2 = g
            .heartbeat(&beat("a", a.epoch, &owned), now, &limits, &view)
            .unwrap();
        assert_eq!(
            a2.epoch,
            a.epoch + 1,
            "a new matching topic advances the epoch"
        );
        assert_eq!(
            a2.assignment,
            Some(parts(&[("orders-eu", &[0, 1]), ("orders-us", &[0, 1])]))
        );
    }

    /// Randomized: members join, leave, crash and heartbeat in any order,
    /// behaving as clients do (a client gives up partitions it is no longer
    /// assigned before its next heartbeat). At every step no partition is
    /// owned by two clients, and once everyone heartbeats enough the group
    /// is stable with every partition owned once and loads within one.
    /// xorshift64*: enough for choosing steps.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
        }
    }

    #[test]
    fn randomized_no_partition_has_two_owners() {
        let limits = ConsumerLimits::default();
        let seeds: u64 = std::env::var("SILT_CG_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300);
        for seed in 0..seeds {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut g = ConsumerGroup::default();
            let now = Instant::now();
            // Client view: id -> (epoch, owned).
            let mut clients: BTreeMap<String, (i32, Parts)> = BTreeMap::new();
            let mut next_id = 0;
            let twelve = |t: &str| (t == "t").then_some(12usize);
            let parts_of = TopicView {
                partitions: &twelve,
                matching: &none,
            };
            for _step in 0..200 {
                match rng.below(10) {
                    0 | 1 if clients.len() < 6 => {
                        let id = format!("m{next_id}");
                        next_id += 1;
                        let a = g
                            .heartbeat(&join(&id, &["t"]), now, &limits, &parts_of)
                            .unwrap();
                        clients.insert(id, (a.epoch, a.assignment.unwrap_or_default()));
                    }
                    2 if !clients.is_empty() => {
                        let id = clients
                            .keys()
                            .nth(rng.below(clients.len()))
                            .unwrap()
                            .clone();
                        clients.remove(&id);
                        g.leave(&beat(&id, LEAVE_EPOCH, &Parts::new())).unwrap();
                    }
                    3 if !clients.is_empty() => {
                        // A crash: the session expires (as `expire` does).
                        let id = clients
                            .keys()
                            .nth(rng.below(clients.len()))
                            .unwrap()
                            .clone();
                        clients.remove(&id);
                        g.fence(&id);
                    }
                    _ if !clients.is_empty() => {
                        let id = clients
                            .keys()
                            .nth(rng.below(clients.len()))
                            .unwrap()
                            .clone();
                        let (epoch, owned) = clients[&id].clone();
                        match g.heartbeat(&beat(&id, epoch, &owned), now, &limits, &parts_of) {
                            Ok(a) => {
                                let mut owned = owned;
                                if let Some(new) = a.assignment {
                                    owned = new;
                                }
                                clients.insert(id, (a.epoch, owned));
                            }
                            Err(e) => panic!("seed {seed}: heartbeat of {id} refused: {e:?}"),
                        }
                    }
                    _ => {}
                }
                let mut seen = BTreeMap::new();
                for (id, (_, owned)) in &clients {
                    for (t, ps) in owned {
                        for p in ps {
                            if let Some(other) = seen.insert((t.clone(), *p), id.clone()) {
                                panic!("seed {seed}: {t}-{p} owned by {other} and {id}");
                            }
                        }
                    }
                }
            }
            // Everyone heartbeats until nothing changes.
            for _ in 0..10 {
                let ids: Vec<String> = clients.keys().cloned().collect();
                for id in ids {
                    let (epoch, owned) = clients[&id].clone();
                    let a = g
                        .heartbeat(&beat(&id, epoch, &owned), now, &limits, &parts_of)
                        .unwrap();
                    clients.insert(id, (a.epoch, a.assignment.unwrap_or(owned)));
                }
            }
            if clients.is_empty() {
                continue;
            }
            assert_eq!(g.state_name(), "Stable", "seed {seed}");
            let loads: Vec<usize> = clients.values().map(|(_, o)| count(o)).collect();
            assert_eq!(loads.iter().sum::<usize>(), 12, "seed {seed}: {clients:?}");
            assert!(
                loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
                "seed {seed}: {loads:?}"
            );
        }
    }
}
