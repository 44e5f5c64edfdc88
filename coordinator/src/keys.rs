//! The metadata layout: every key silt keeps in the metadata store, spelled
//! in one place.
//!
//! ```text
//! /silt/<cluster>/log/<writer>/<seq>                 commit log records
//! /silt/<cluster>/checkpoint                         pointer to the latest checkpoint
//! /silt/<cluster>/locks/checkpoint                   checkpoint lock (under a lease)
//! /silt/<cluster>/agents/<agent-id>                  live agents (under leases)
//! /silt/<cluster>/producer_ids                       next unclaimed producer-id block
//! /silt/<cluster>/groups/<group>/offsets/<topic>/<partition>   committed offsets
//! /silt/<cluster>/groups/<group>/coordinator         the group's coordinator (under its lease)
//! /silt/<cluster>/groups/<group>/state               the group's members and generation
//! /silt/<cluster>/group-index/<group>                 one key per group with committed offsets
//! /silt/<cluster>/security/scram/<mechanism>/<user>   a user's SCRAM credential (salted keys)
//! /silt/<cluster>/security/acls/<digest>              one ACL binding
//! ```

/// The keys of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Layout {
    pub fn new(cluster: &str) -> Self {
        Self {
            root: format!("/silt/{cluster}/"),
        }
    }

    /// Prefix of every commit log record.
    pub fn log(&self) -> String {
        format!("{}log/", self.root)
    }

    /// Prefix of one writer's log records.
    pub fn log_writer(&self, writer: &str) -> String {
        format!("{}log/{writer}/", self.root)
    }

    /// Updated with every GC record that moves the commit horizon, so that
    /// a write that must not land past the horizon can compare it.
    pub fn gc_horizon(&self) -> String {
        format!("{}gc-horizon", self.root)
    }

    pub fn checkpoint(&self) -> String {
        format!("{}checkpoint", self.root)
    }

    pub fn checkpoint_lock(&self) -> String {
        self.lock("checkpoint")
    }

    /// The lock one holder of a background job takes (`checkpoint`,
    /// `retention`, `compaction`, `gc`).
    pub fn lock(&self, name: &str) -> String {
        format!("{}locks/{name}", self.root)
    }

    /// Prefix of the users and ACLs (one watch covers both).
    pub fn security(&self) -> String {
        format!("{}security/", self.root)
    }

    /// A user's credential for one SCRAM mechanism; the user name is
    /// escaped so that it is one key segment.
    pub fn scram(&self, mechanism: &str, user: &str) -> String {
        format!("{}security/scram/{mechanism}/{}", self.root, escape(user))
    }

    /// Prefix of every SCRAM credential.
    pub fn scram_all(&self) -> String {
        format!("{}security/scram/", self.root)
    }

    /// One ACL binding, under a digest of its fields.
    pub fn acl(&self, digest: &str) -> String {
        format!("{}security/acls/{digest}", self.root)
    }

    /// Prefix of every ACL binding.
    pub fn acls(&self) -> String {
        format!("{}security/acls/", self.root)
    }

    /// Prefix of the live agents' registrations.
    pub fn agents(&self) -> String {
        format!("{}agents/", self.root)
    }

    pub fn agent(&self, agent_id: &str) -> String {
        format!("{}agents/{agent_id}", self.root)
    }

    pub fn producer_ids(&self) -> String {
        format!("{}producer_ids", self.root)
    }

    /// Prefix of every group's keys.
    pub fn groups(&self) -> String {
        format!("{}groups/", self.root)
    }

    /// Prefix of one group's committed offsets.
    pub fn group_offsets(&self, group: &str) -> String {
        format!("{}groups/{}/offsets/", self.root, escape(group))
    }

    /// The key naming the agent that coordinates the group (under that
    /// agent's lease); offset and group-state writes compare it.
    pub fn group_coordinator(&self, group: &str) -> String {
        format!("{}groups/{}/coordinator", self.root, escape(group))
    }

    /// The group's persisted state (generation, members, assignments).
    pub fn group_state(&self, group: &str) -> String {
        format!("{}groups/{}/state", self.root, escape(group))
    }

    /// A transactional id's key: every log record that changes its
    /// transaction updates it, under a compare of its revision (decision
    /// 0011).
    pub fn transaction(&self, id: &str) -> String {
        format!("{}txn/{}", self.root, escape(id))
    }

    pub fn group_offset(&self, group: &str, topic: &str, partition: i32) -> String {
        format!("{}{topic}/{partition:010}", self.group_offsets(group))
    }

    /// Prefix of the group index: one small key per group with committed
    /// offsets, so that listing groups reads one key per group.
    pub fn group_index(&self) -> String {
        format!("{}group-index/", self.root)
    }

    pub fn group_index_entry(&self, group: &str) -> String {
        format!("{}{}", self.group_index(), escape(group))
    }

    /// The group a key under [`Layout::group_index`] names.
    pub fn group_of_index(&self, key: &str) -> Option<String> {
        key.strip_prefix(&self.group_index()).map(unescape)
    }

    /// The group a key under [`Layout::groups`] belongs to.
    pub fn group_of(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(&self.groups())?;
        rest.split('/').next().map(unescape)
    }
}

/// Names (group ids, user names) are arbitrary strings: escape the
/// characters that structure keys.
pub fn escape(group: &str) -> String {
    let mut out = String::with_capacity(group.len());
    for c in group.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`].
pub fn unescape(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_cluster() {
        let l = Layout::new("prod");
        assert_eq!(l.log(), "/silt/prod/log/");
        assert_eq!(l.log_writer("a1-x"), "/silt/prod/log/a1-x/");
        assert_eq!(l.checkpoint(), "/silt/prod/checkpoint");
        assert_eq!(l.checkpoint_lock(), "/silt/prod/locks/checkpoint");
        assert_eq!(l.agent("a1"), "/silt/prod/agents/a1");
        assert!(l.agent("a1").starts_with(&l.agents()));
        assert_eq!(l.producer_ids(), "/silt/prod/producer_ids");
        let k = l.group_offset("a/b%c", "t", 3);
        assert_eq!(k, "/silt/prod/groups/a%2Fb%25c/offsets/t/0000000003");
        assert!(k.starts_with(&l.group_offsets("a/b%c")));
        assert_eq!(l.group_of(&k).as_deref(), Some("a/b%c"));
    }
}
