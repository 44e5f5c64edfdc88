//! The state machine: a pure, deterministic function of the commit log.
//!
//! No clocks, no randomness, no hash-map iteration: every agent applying the
//! same records in the same order reaches the same state and the same
//! offsets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{Command, LogRecord, TopicId};

pub const CHECKPOINT_VERSION: u32 = 1;
/// Upper bound on partitions per topic accepted by the state machine.
pub const MAX_PARTITIONS: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub base_offset: i64,
    /// One past the last offset.
    pub end_offset: i64,
    pub object: String,
    pub position: u64,
    pub length: u64,
    pub max_timestamp: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub index: Vec<IndexEntry>,
}

impl Partition {
    /// Index entries holding `offset` and everything after it.
    pub fn entries_from(&self, offset: i64) -> &[IndexEntry] {
        let i = self.index.partition_point(|e| e.end_offset <= offset);
        &self.index[i..]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub name: String,
    pub id: TopicId,
    pub config: BTreeMap<String, String>,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub size: u64,
    /// Index entries that still point into the object.
    pub refs: u64,
}

/// What applying one record decided; the writer reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    TopicCreated(TopicId),
    TopicExists(TopicId),
    TopicDeleted(TopicId),
    TopicNotFound,
    /// Per chunk of the commit: its base offset, or `None` when its
    /// topic-partition no longer exists.
    Committed(Vec<Option<i64>>),
    Invalid(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Revision of the last record applied.
    pub revision: i64,
    pub topics: BTreeMap<String, Topic>,
    pub topic_names: BTreeMap<TopicId, String>,
    pub objects: BTreeMap<String, ObjectInfo>,
    /// Objects no index entry references any more, with the revision at
    /// which they became unreferenced (input for object GC).
    pub unreferenced: BTreeMap<String, i64>,
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    v: u32,
    state: State,
}

impl State {
    pub fn topic_by_id(&self, id: &TopicId) -> Option<&Topic> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    /// Applies raw record bytes found at `revision`.
    pub fn apply_bytes(&mut self, revision: i64, bytes: &[u8]) -> Outcome {
        match LogRecord::decode(bytes) {
            Ok(r) => self.apply(revision, &r.command),
            Err(e) => {
                self.revision = revision;
                Outcome::Invalid(e)
            }
        }
    }

    pub fn apply(&mut self, revision: i64, command: &Command) -> Outcome {
        debug_assert!(revision > self.revision, "records apply in revision order");
        self.revision = revision;
        match command {
            Command::CreateTopic {
                name,
                id,
                partitions,
                config,
            } => {
                if let Some(t) = self.topics.get(name) {
                    return Outcome::TopicExists(t.id);
                }
                if *partitions == 0 || *partitions > MAX_PARTITIONS {
                    return Outcome::Invalid(format!("topic {name}: {partitions} partitions"));
                }
                if self.topic_names.contains_key(id) {
                    return Outcome::Invalid(format!("topic id {id} already in use"));
                }
                self.topics.insert(
                    name.clone(),
                    Topic {
                        name: name.clone(),
                        id: *id,
                        config: config.clone(),
                        partitions: vec![Partition::default(); *partitions as usize],
                    },
                );
                self.topic_names.insert(*id, name.clone());
                Outcome::TopicCreated(*id)
            }
            Command::DeleteTopic { name } => {
                let Some(topic) = self.topics.remove(name) else {
                    return Outcome::TopicNotFound;
                };
                self.topic_names.remove(&topic.id);
                for p in &topic.partitions {
                    for e in &p.index {
                        self.release(&e.object, revision);
                    }
                }
                Outcome::TopicDeleted(topic.id)
            }
            Command::Commit {
                object,
                size,
                chunks,
            } => {
                let mut out = Vec::with_capacity(chunks.len());
                let mut refs = 0;
                for c in chunks {
                    let in_bounds = c.position.checked_add(c.length).is_some_and(|e| e <= *size);
                    let part = self
                        .topic_names
                        .get(&c.topic)
                        .and_then(|n| self.topics.get_mut(n))
                        .and_then(|t| {
                            usize::try_from(c.partition)
                                .ok()
                                .and_then(|i| t.partitions.get_mut(i))
                        });
                    match part {
                        Some(p) if in_bounds && c.records > 0 && c.records < i32::MAX as u64 => {
                            let base = p.high_watermark;
                            p.high_watermark += c.records as i64;
                            p.index.push(IndexEntry {
                                base_offset: base,
                                end_offset: p.high_watermark,
                                object: object.clone(),
                                position: c.position,
                                length: c.length,
                                max_timestamp: c.max_timestamp,
                            });
                            refs += 1;
                            out.push(Some(base));
                        }
                        _ => out.push(None),
                    }
                }
                if refs > 0 {
                    self.objects
                        .entry(object.clone())
                        .or_insert(ObjectInfo {
                            size: *size,
                            refs: 0,
                        })
                        .refs += refs;
                } else {
                    self.unreferenced.insert(object.clone(), revision);
                }
                Outcome::Committed(out)
            }
        }
    }

    fn release(&mut self, object: &str, revision: i64) {
        if let Some(o) = self.objects.get_mut(object) {
            o.refs -= 1;
            if o.refs == 0 {
                self.objects.remove(object);
                self.unreferenced.insert(object.to_string(), revision);
            }
        }
    }

    pub fn to_checkpoint(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Ref<'a> {
            v: u32,
            state: &'a State,
        }
        serde_json::to_vec(&Ref {
            v: CHECKPOINT_VERSION,
            state: self,
        })
        .expect("state always serializes")
    }

    pub fn from_checkpoint(bytes: &[u8]) -> Result<Self, String> {
        let c: Checkpoint =
            serde_json::from_slice(bytes).map_err(|e| format!("undecodable checkpoint: {e}"))?;
        if c.v != CHECKPOINT_VERSION {
            return Err(format!("unsupported checkpoint version {}", c.v));
        }
        Ok(c.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::ChunkRef;
    use proptest::prelude::*;

    fn create(name: &str, id: u8, partitions: u32) -> Command {
        Command::CreateTopic {
            name: name.into(),
            id: TopicId([id; 16]),
            partitions,
            config: Default::default(),
        }
    }

    fn commit(object: &str, chunks: &[(u8, i32, u64)]) -> Command {
        Command::Commit {
            object: object.into(),
            size: 1000,
            chunks: chunks
                .iter()
                .enumerate()
                .map(|(i, (t, p, n))| ChunkRef {
                    topic: TopicId([*t; 16]),
                    partition: *p,
                    position: 8 + i as u64 * 10,
                    length: 10,
                    records: *n,
                    max_timestamp: 5,
                })
                .collect(),
        }
    }

    #[test]
    fn assigns_dense_offsets_first_writer_wins() {
        let mut s = State::default();
        assert_eq!(
            s.apply(1, &create("a", 1, 2)),
            Outcome::TopicCreated(TopicId([1; 16]))
        );
        assert_eq!(
            s.apply(2, &create("a", 2, 5)),
            Outcome::TopicExists(TopicId([1; 16]))
        );
        assert_eq!(
            s.apply(
                3,
                &commit("o1", &[(1, 0, 3), (1, 1, 2), (9, 0, 1), (1, 7, 1)])
            ),
            Outcome::Committed(vec![Some(0), Some(0), None, None])
        );
        assert_eq!(
            s.apply(4, &commit("o2", &[(1, 0, 4)])),
            Outcome::Committed(vec![Some(3)])
        );
        let p = &s.topics["a"].partitions[0];
        assert_eq!(p.high_watermark, 7);
        assert_eq!(p.entries_from(3)[0].object, "o2");
        assert_eq!(p.entries_from(2)[0].object, "o1");
        assert_eq!(s.objects["o1"].refs, 2);
        assert_eq!(
            s.apply(5, &Command::DeleteTopic { name: "a".into() }),
            Outcome::TopicDeleted(TopicId([1; 16]))
        );
        assert!(s.objects.is_empty());
        assert_eq!(s.unreferenced.len(), 2);
        assert_eq!(
            s.apply(6, &create("a", 1, 0)),
            Outcome::Invalid("topic a: 0 partitions".into())
        );
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (0u8..3, 1u32..4).prop_map(|(t, p)| create(&format!("t{t}"), t, p)),
            (0u8..3).prop_map(|t| Command::DeleteTopic {
                name: format!("t{t}")
            }),
            (
                0u32..1000,
                proptest::collection::vec((0u8..3, -1i32..4, 0u64..50), 1..5)
            )
                .prop_map(|(o, c)| commit(&format!("o{o}"), &c)),
        ]
    }

    proptest! {
        /// Replaying from a checkpoint taken anywhere gives the same state as
        /// replaying from scratch.
        #[test]
        fn replay_from_checkpoint_is_identical(cmds in proptest::collection::vec(arb_command(), 1..60), cut in 0usize..60) {
            let mut full = State::default();
            let mut outcomes = Vec::new();
            for (i, c) in cmds.iter().enumerate() {
                outcomes.push(full.apply(i as i64 + 1, c));
            }
            let cut = cut.min(cmds.len());
            let mut head = State::default();
            for (i, c) in cmds[..cut].iter().enumerate() {
                head.apply(i as i64 + 1, c);
            }
            let mut resumed = State::from_checkpoint(&head.to_checkpoint()).unwrap();
            for (i, c) in cmds.iter().enumerate().skip(cut) {
                prop_assert_eq!(&resumed.apply(i as i64 + 1, c), &outcomes[i]);
            }
            prop_assert_eq!(&resumed, &full);
            prop_assert_eq!(resumed.to_checkpoint(), full.to_checkpoint());
            // Offsets are dense: index entries tile [0, hwm).
            for t in full.topics.values() {
                for p in &t.partitions {
                    let mut next = 0;
                    for e in &p.index {
                        prop_assert_eq!(e.base_offset, next);
                        prop_assert!(e.end_offset > e.base_offset);
                        next = e.end_offset;
                    }
                    prop_assert_eq!(next, p.high_watermark);
                }
            }
        }
    }
}
