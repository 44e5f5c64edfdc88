//! The jobs against the embedded metadata store and an in-memory bucket,
//! on segments written as the produce path writes them.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use object_store::{memory::InMemory, path::Path as ObjectPath, ObjectStore, ObjectStoreExt};
use silt_coordinator::{
    records::ChunkRef, ChunkOutcome, Command, EmbeddedStore, MetaLog, MetaStore, Outcome, TopicId,
};

use super::*;
use crate::{
    batch::{self, simple_batch},
    clock::{Clock, ManualClock, SystemClock},
    segment::SegmentBuilder,
    store::Instrumented,
    NoCache, ObjectReader,
};

const T0: i64 = 1_800_000_000_000;
const TOPIC: TopicId = TopicId([5; 16]);

struct World {
    meta: Arc<dyn MetaStore>,
    bucket: Arc<Instrumented>,
    log: Arc<MetaLog>,
    clock: ManualClock,
    /// offset -> (partition, value) of every record committed.
    records: BTreeMap<(i32, i64), Vec<u8>>,
    seq: u64,
}

fn settings() -> JobSettings {
    JobSettings {
        retention: RetentionDefaults {
            ms: None,
            bytes: None,
        },
        compaction: CompactionSettings {
            run_bytes: 4 << 10,
            object_bytes: 8 << 10,
            entry_bytes: 1 << 10,
            min_age: Duration::from_secs(1),
            max_lag: Duration::from_secs(10),
        },
        cleaner: CleanerSettings::default(),
        tables: TableSettings::default(),
        gc: GcSettings {
            grace: Duration::from_secs(60),
            orphan_age: Duration::from_secs(3600),
            batch: 3,
        },
    }
}

const BUDGET: Budget = Budget {
    time: Duration::from_secs(60),
    bytes: 1 << 30,
};

impl World {
    async fn new(partitions: u32, config: &[(&str, &str)]) -> World {
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let bucket = Arc::new(Instrumented::new(Arc::new(InMemory::new())));
        let log = MetaLog::open(meta.clone(), bucket.clone(), "c", "w-1")
            .await
            .unwrap();
        log.propose(Command::CreateTopic {
            name: "t".into(),
            id: TOPIC,
            partitions,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await
        .unwrap();
        World {
            meta,
            bucket,
            log,
            clock: ManualClock::new(T0),
            records: BTreeMap::new(),
            seq: 0,
        }
    }

    fn jobs(&self, holder: &str) -> Jobs {
        self.jobs_with(holder, settings())
    }

    fn jobs_with(&self, holder: &str, settings: JobSettings) -> Jobs {
        Jobs::new(
            self.log.clone(),
            self.bucket.clone(),
            Arc::new(self.clock.clone()),
            settings,
            "c",
            holder,
        )
    }

    /// Writes and commits one segment with `n` records (of `size` bytes)
    /// in each of `partitions`, sealed now.
    async fn segment(&mut self, partitions: &[i32], n: i32, size: usize) -> String {
        self.seq += 1;
        let now = self.clock.now_ms();
        let mut b = SegmentBuilder::new();
        let mut values = Vec::new();
        for &p in partitions {
            let value: Vec<u8> = format!("p{p}-s{}-", self.seq)
                .into_bytes()
                .into_iter()
                .cycle()
                .take(size)
                .collect();
            let bytes = simple_batch(n, now, &value, None);
            let h = batch::parse_all(&bytes).unwrap();
            b.append(
                TOPIC.0,
                p,
                Bytes::from(bytes),
                h.iter()
                    .map(|h| crate::segment::BatchMeta {
                        size: h.size,
                        records: h.record_count(),
                        max_timestamp: h.max_timestamp,
                        producer_id: -1,
                        producer_epoch: -1,
                        base_sequence: -1,
                        transactional: false,
                    })
                    .collect(),
                now,
            );
            values.push(value);
        }
        let (object, chunks) = b.finish();
        let key = crate::segment::dated_key(SEGMENTS_PREFIX, ulid::Ulid::new());
        self.bucket
            .put(&ObjectPath::from(key.as_str()), object.clone().into())
            .await
            .unwrap();
        let out = self
            .log
            .propose(Command::Commit {
                object: key.clone(),
                size: object.len() as u64,
                chunks: chunks
                    .iter()
                    .map(|c| ChunkRef {
                        topic: TOPIC,
                        partition: c.partition,
                        position: c.position,
                        length: c.length,
                        records: c.records,
                        max_timestamp: c.max_timestamp,
                        append_time: now,
                        batches: vec![],
                    })
                    .collect(),
            })
            .await
            .unwrap();
        let Outcome::Committed(bases) = out else {
            panic!("{out:?}")
        };
        for ((&p, base), value) in partitions.iter().zip(bases).zip(values) {
            let ChunkOutcome::Appended { base } = base else {
                panic!("{base:?}")
            };
            for i in 0..n as i64 {
                self.records.insert((p, base + i), value.clone());
            }
        }
        key
    }

    /// Whether every index entry of partition `p` lies under `prefix`.
    fn all_under(&self, p: i32, prefix: &str) -> bool {
        self.log
            .state()
            .index("t", p)
            .unwrap()
            .iter()
            .all(|e| e.object.starts_with(prefix))
    }

    fn advance(&self, ms: i64) {
        self.clock.set(self.clock.now_ms() + ms);
    }

    async fn objects(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        self.bucket
            .list(Some(&ObjectPath::from(prefix)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap()
    }

    /// Reads every record of partition `p` back through the index, as the
    /// read path does (offsets rewritten), and checks them against what
    /// was committed: every offset from the log start, once, same bytes.
    async fn check_partition(&self, p: i32, reader: &ObjectReader) {
        let chunks = {
            let s = self.log.state();
            s.chunks_from("t", p, 0, usize::MAX)
        };
        let snap = self.log.state().partition("t", p).unwrap();
        let mut next = snap.log_start_offset;
        for c in chunks {
            let e = &c.entry;
            let bytes = reader
                .read_ahead(
                    &e.object,
                    c.object_size,
                    e.position..e.position + e.length,
                    c.run_end,
                )
                .await
                .unwrap();
            let (out, _, _) =
                batch::rewrite_chunk(&bytes, e.base_offset, next, usize::MAX, true, None).unwrap();
            let mut at = 0;
            while at < out.len() {
                let h = batch::parse_one(&out, at).unwrap();
                let base = i64::from_be_bytes(out[at..at + 8].try_into().unwrap());
                for i in 0..h.record_count() as i64 {
                    let off = base + i;
                    if off < next {
                        continue;
                    }
                    assert_eq!(off, next, "offsets are dense");
                    let value = &self.records[&(p, off)];
                    let body = &out[at..at + h.size as usize];
                    assert!(
                        body.windows(value.len()).any(|w| w == &value[..]),
                        "offset {off} holds its record"
                    );
                    next += 1;
                }
                at += h.size as usize;
            }
        }
        assert_eq!(next, snap.high_watermark, "partition {p} read to its end");
    }
}

#[tokio::test]
async fn retention_by_time_and_size_then_gc_empties_the_state() {
    let mut w = World::new(2, &[("retention.ms", "60000")]).await;
    for _ in 0..4 {
        w.segment(&[0, 1], 3, 100).await;
        w.advance(30_000);
    }
    // Records at T0, +30 s, +60 s, +90 s; now is +120 s: the first two are
    // older than a minute.
    let jobs = w.jobs("a");
    let r = jobs.run(Job::Retention, BUDGET).await.unwrap().unwrap();
    assert_eq!(r.partitions_trimmed, 2);
    for p in 0..2 {
        let s = w.log.state().partition("t", p).unwrap();
        assert_eq!((s.log_start_offset, s.high_watermark), (6, 12));
    }
    // Size: at most one entry's bytes in partition 0 (Kafka drops the
    // oldest segment while the rest still hold the limit).
    let entry = w.log.state().index("t", 0).unwrap()[0].length as i64;
    w.log
        .propose(Command::SetTopicConfig {
            name: "t".into(),
            config: [("retention.bytes".to_string(), entry.to_string())].into(),
        })
        .await
        .unwrap();
    jobs.run(Job::Retention, BUDGET).await.unwrap().unwrap();
    assert_eq!(w.log.state().partition("t", 0).unwrap().log_start_offset, 9);
    // Nothing is deleted before the grace period.
    let segments = w.objects(SEGMENTS_PREFIX).await.len();
    assert_eq!(segments, 4);
    let r = jobs.run(Job::Gc, BUDGET).await.unwrap().unwrap();
    assert_eq!(r.objects_deleted, 0);
    w.advance(60_000);
    let r = jobs.run(Job::Gc, BUDGET).await.unwrap().unwrap();
    // The size limit applies to both partitions: three segments are
    // unreferenced, the fourth holds the last entries.
    assert_eq!(r.objects_deleted, 3);
    assert_eq!(w.objects(SEGMENTS_PREFIX).await.len(), 1);
    // Everything expires: index, objects and the unreferenced set empty.
    w.log
        .propose(Command::SetTopicConfig {
            name: "t".into(),
            config: [("retention.ms".to_string(), "60000".to_string())].into(),
        })
        .await
        .unwrap();
    w.advance(600_000);
    jobs.run(Job::Retention, BUDGET).await.unwrap().unwrap();
    w.advance(60_000);
    jobs.run(Job::Gc, BUDGET).await.unwrap().unwrap();
    {
        let s = w.log.state();
        assert_eq!(
            s.index("t", 0).unwrap().len() + s.index("t", 1).unwrap().len(),
            0
        );
        assert_eq!(s.object_count(), 0);
        assert_eq!(s.unreferenced().count(), 0);
    }
    assert!(w.objects(SEGMENTS_PREFIX).await.is_empty());
}

#[tokio::test]
async fn compaction_keeps_every_record_at_its_offset_and_reads_in_few_gets() {
    let mut w = World::new(3, &[]).await;
    for i in 0..40 {
        // Partitions 0 and 1 busy, partition 2 quiet.
        let parts: &[i32] = if i % 10 == 0 { &[0, 1, 2] } else { &[0, 1] };
        w.segment(parts, 2, 200).await;
        w.advance(100);
    }
    let before = w.objects(SEGMENTS_PREFIX).await.len();
    assert_eq!(before, 40);
    w.advance(2_000);
    let jobs = w.jobs("a");
    let r = jobs.run(Job::Compaction, BUDGET).await.unwrap().unwrap();
    assert!(r.entries_compacted >= 70, "{r:?}");
    assert_eq!(r.runs_refused, 0);
    // Written once, read once: no more than the bytes compacted, each way.
    assert!(r.bytes_read <= 2 * 40 * 420 + 8192, "{r:?}");
    // The quiet partition is not due yet (under run_bytes, not max_lag old).
    assert!(w.all_under(2, SEGMENTS_PREFIX));
    w.advance(10_000);
    jobs.run(Job::Compaction, BUDGET).await.unwrap().unwrap();
    assert!(w.all_under(2, COMPACTED_PREFIX));
    let reader = ObjectReader::new(w.bucket.clone(), Arc::new(NoCache::default()), 1024)
        .with_readahead(8 << 10);
    for p in 0..3 {
        w.check_partition(p, &reader).await;
    }
    // After the grace period the small segments are gone.
    w.advance(60_000);
    jobs.run(Job::Gc, BUDGET).await.unwrap().unwrap();
    let after = w.objects(SEGMENTS_PREFIX).await.len() + w.objects(COMPACTED_PREFIX).await.len();
    assert!(after < before / 4, "{after} objects from {before}");
    for p in 0..3 {
        w.check_partition(p, &reader).await;
    }
    // A cold sequential read of a partition: at most one GET per
    // read-ahead window (8 KiB here), plus one per object it starts in.
    let index = w.log.state().index("t", 0).unwrap().to_vec();
    let bytes: u64 = index.iter().map(|e| e.length).sum();
    let objects: std::collections::BTreeSet<_> = index.iter().map(|e| e.object.clone()).collect();
    let cold = ObjectReader::new(
        w.bucket.clone(),
        Arc::new(
            crate::FoyerCache::open(tempfile::tempdir().unwrap().path(), 1 << 20, 4 << 20)
                .await
                .unwrap(),
        ),
        1024,
    )
    .with_readahead(8 << 10);
    let gets = w
        .bucket
        .counters
        .gets
        .load(std::sync::atomic::Ordering::Relaxed);
    w.check_partition(0, &cold).await;
    let used = w
        .bucket
        .counters
        .gets
        .load(std::sync::atomic::Ordering::Relaxed)
        - gets;
    assert!(
        used <= bytes.div_ceil(8 << 10) + objects.len() as u64,
        "{used} GETs for {bytes} bytes in {} objects",
        objects.len()
    );
}

/// Many tiny entries: each compaction record stays small enough for the
/// metadata store (a bounded number of entries per object).
#[tokio::test]
async fn compaction_records_stay_small_with_many_tiny_entries() {
    let mut w = World::new(1, &[]).await;
    let n = compaction::MAX_ENTRIES_PER_OBJECT + 500;
    for _ in 0..n {
        w.segment(&[0], 1, 1).await;
    }
    w.advance(20_000);
    // Objects large enough for every entry: only the entry bound cuts.
    let mut s = settings();
    s.compaction.object_bytes = 64 << 20;
    let jobs = w.jobs_with("a", s);
    let r = jobs.run(Job::Compaction, BUDGET).await.unwrap().unwrap();
    assert_eq!(r.entries_compacted, n as u64, "{r:?}");
    assert_eq!(r.objects_written, 2, "{r:?}");
    // The records on the log: every one under 512 KiB.
    let records = w
        .meta
        .range(silt_coordinator::metastore::KeyRange::Prefix(
            silt_coordinator::keys::Layout::new("c").log(),
        ))
        .await
        .unwrap();
    let largest = records.kvs.iter().map(|kv| kv.value.len()).max().unwrap();
    assert!(largest < 512 << 10, "a log record of {largest} bytes");
    let reader = ObjectReader::new(w.bucket.clone(), Arc::new(NoCache::default()), 1024);
    w.check_partition(0, &reader).await;
}

#[tokio::test]
async fn a_compaction_that_lost_a_race_changes_nothing() {
    let mut w = World::new(1, &[]).await;
    for _ in 0..10 {
        w.segment(&[0], 5, 300).await;
    }
    w.advance(60_000);
    // Retention moves past the first two entries between plan and swap:
    // the run that replaces them is refused and its object becomes
    // unreferenced; the run over the other entries (a second object) is
    // not affected.
    let plan = w.log.state().clone();
    w.log
        .propose(Command::DeleteRecords {
            name: "t".into(),
            partition: 0,
            offset: 10,
            topic_id: None,
            time: w.clock.now_ms(),
        })
        .await
        .unwrap();
    let pieces = compaction::plan_for_test(&plan, w.clock.now_ms(), &settings().compaction);
    let jobs = w.jobs("a");
    let mut report = Report::default();
    compaction::write_for_test(&jobs, pieces, &mut report)
        .await
        .unwrap();
    assert_eq!(
        (report.runs_refused, report.entries_compacted),
        (1, 5),
        "{report:?}"
    );
    let index = w.log.state().index("t", 0).unwrap().to_vec();
    assert!(index[..3]
        .iter()
        .all(|e| e.object.starts_with(SEGMENTS_PREFIX)));
    assert!(index[3..]
        .iter()
        .all(|e| e.object.starts_with(COMPACTED_PREFIX)));
    let reader = ObjectReader::new(w.bucket.clone(), Arc::new(NoCache::default()), 1024);
    w.check_partition(0, &reader).await;
    assert_eq!(
        w.log
            .state()
            .unreferenced()
            .filter(|(o, _)| o.starts_with(COMPACTED_PREFIX))
            .count(),
        1
    );
}

#[tokio::test]
async fn orphans_are_deleted_after_their_age_and_fenced_for_good() {
    let mut w = World::new(1, &[]).await;
    w.segment(&[0], 1, 10).await;
    // An upload whose commit never happened.
    let orphan = "segments/2026/11/30/01ORPHAN.silt";
    w.bucket
        .put(&ObjectPath::from(orphan), Bytes::from_static(b"x").into())
        .await
        .unwrap();
    // The in-memory bucket stamps objects with the real time.
    let real = SystemClock.now_ms();
    w.clock.set(real + 1_000);
    let jobs = w.jobs("a");
    let r = jobs.run(Job::Gc, BUDGET).await.unwrap().unwrap();
    assert_eq!(r.orphans_deleted, 0, "not before its age");
    assert_eq!(w.objects(SEGMENTS_PREFIX).await.len(), 2);
    w.clock.set(real + 3_600_000 + 1_000);
    let r = jobs.run(Job::Gc, BUDGET).await.unwrap().unwrap();
    assert_eq!(r.orphans_deleted, 1);
    let left = w.objects(SEGMENTS_PREFIX).await;
    assert_eq!(left.len(), 1, "the committed segment stays");
    assert_ne!(left[0], orphan);
    // The paused agent wakes up and commits its upload: refused.
    let out = w
        .log
        .propose(Command::Commit {
            object: orphan.into(),
            size: 1,
            chunks: vec![ChunkRef {
                topic: TOPIC,
                partition: 0,
                position: 0,
                length: 1,
                records: 1,
                max_timestamp: 0,
                append_time: real - 1_000,
                batches: vec![],
            }],
        })
        .await
        .unwrap();
    assert_eq!(out, Outcome::StaleCommit);
}

#[tokio::test]
async fn one_lock_holder_at_a_time() {
    let w = World::new(1, &[]).await;
    let held = silt_coordinator::Lock::try_acquire(
        w.meta.clone(),
        &silt_coordinator::keys::Layout::new("c").lock("gc"),
        "other",
        Duration::from_secs(30),
    )
    .await
    .unwrap()
    .unwrap();
    let jobs = w.jobs("a");
    assert!(jobs.run(Job::Gc, BUDGET).await.unwrap().is_none());
    assert!(jobs.run(Job::Retention, BUDGET).await.unwrap().is_some());
    held.release().await;
    assert!(jobs.run(Job::Gc, BUDGET).await.unwrap().is_some());
}

/// An agent of an older version (no `tiering` feature) would skip the
/// jobs' records and checkpoint without them: the jobs wait for it.
#[tokio::test]
async fn jobs_wait_while_an_older_agent_is_registered() {
    let mut w = World::new(1, &[("retention.ms", "1000")]).await;
    w.segment(&[0], 3, 10).await;
    w.advance(10_000);
    let key = silt_coordinator::keys::Layout::new("c").agent("old");
    w.meta
        .put(
            &key,
            Bytes::from_static(br#"{"agent_id":"old","node_id":1,"host":"h","port":1}"#),
            None,
        )
        .await
        .unwrap();
    let jobs = w.jobs("a");
    let r = jobs.run(Job::Retention, BUDGET).await.unwrap().unwrap();
    assert_eq!((r.partitions_trimmed, r.more), (0, true));
    assert_eq!(w.log.state().partition("t", 0).unwrap().log_start_offset, 0);
    // Upgraded: it lists the feature.
    w.meta
        .put(
            &key,
            Bytes::from_static(
                br#"{"agent_id":"old","node_id":1,"host":"h","port":1,"features":["tiering"]}"#,
            ),
            None,
        )
        .await
        .unwrap();
    let r = jobs.run(Job::Retention, BUDGET).await.unwrap().unwrap();
    assert_eq!(r.partitions_trimmed, 1);
}

/// An upload listed as an orphan but committed before the fence is known
/// to the state after it and stays; the others go.
#[tokio::test]
async fn an_orphan_committed_before_the_fence_is_kept() {
    let mut w = World::new(1, &[]).await;
    w.segment(&[0], 1, 10).await;
    for k in ["segments/2026/01/01/A.silt", "segments/2026/01/01/B.silt"] {
        w.bucket
            .put(
                &ObjectPath::from(k),
                Bytes::from_static(b"0123456789").into(),
            )
            .await
            .unwrap();
    }
    let now = SystemClock.now_ms() + 2 * 3_600_000;
    w.clock.set(now);
    // A commit in the far future keeps the horizon from being clamped.
    w.segment(&[0], 1, 10).await;
    let jobs = w.jobs("a");
    let mut report = Report::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let candidates = gc::orphan_candidates(&jobs, now, deadline, &mut report)
        .await
        .unwrap();
    let mut names: Vec<&str> = candidates.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["segments/2026/01/01/A.silt", "segments/2026/01/01/B.silt"]
    );
    // A's agent was only slow: its commit lands between listing and fence.
    let out = w
        .log
        .propose(Command::Commit {
            object: "segments/2026/01/01/A.silt".into(),
            size: 10,
            chunks: vec![ChunkRef {
                topic: TOPIC,
                partition: 0,
                position: 0,
                length: 10,
                records: 1,
                max_timestamp: 0,
                append_time: now - 60_000,
                batches: vec![],
            }],
        })
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Committed(_)), "{out:?}");
    w.log
        .propose(Command::ForgetObjects {
            horizon_key: false,
            time: now,
            horizon: now - 1_800_000,
            objects: vec![],
        })
        .await
        .unwrap();
    gc::delete_orphans(&jobs, candidates, &mut report)
        .await
        .unwrap();
    assert_eq!(report.orphans_deleted, 1);
    let left = w.objects(SEGMENTS_PREFIX).await;
    assert!(left.iter().any(|k| k.ends_with("/A.silt")), "{left:?}");
    assert!(!left.iter().any(|k| k.ends_with("/B.silt")), "{left:?}");
}

#[tokio::test]
async fn a_bucket_belongs_to_one_cluster() {
    let bucket = InMemory::new();
    claim_bucket(&bucket, "a").await.unwrap();
    claim_bucket(&bucket, "a").await.unwrap();
    let err = claim_bucket(&bucket, "b").await.unwrap_err();
    assert!(
        err.contains("another cluster") && err.contains("\"a\""),
        "{err}"
    );
}

/// A pass whose byte budget runs out resumes at the next partition, so a
/// busy first partition cannot keep the others from ever compacting.
#[tokio::test]
async fn compaction_passes_take_partitions_in_turn() {
    let mut w = World::new(2, &[]).await;
    for _ in 0..10 {
        w.segment(&[0, 1], 2, 200).await;
    }
    w.advance(2_000);
    let p0: u64 = w
        .log
        .state()
        .index("t", 0)
        .unwrap()
        .iter()
        .map(|e| e.length)
        .sum();
    let budget = Budget {
        time: Duration::from_secs(60),
        bytes: p0,
    };
    let jobs = w.jobs("a");
    let r = jobs.run(Job::Compaction, budget).await.unwrap().unwrap();
    assert!(r.more, "{r:?}");
    assert!(w.all_under(0, COMPACTED_PREFIX) && !w.all_under(1, COMPACTED_PREFIX));
    // Partition 0 gets new data; the next pass still turns to partition 1.
    for _ in 0..10 {
        w.segment(&[0], 2, 200).await;
    }
    w.advance(2_000);
    jobs.run(Job::Compaction, budget).await.unwrap().unwrap();
    assert!(
        w.all_under(1, COMPACTED_PREFIX),
        "partition 1 waited behind partition 0"
    );
}

/// Every run compaction cuts is final (at least a run's size), none above
/// an object, and as large as an object where the bytes allow, so that a
/// sequential read needs the fewest GETs.
#[tokio::test]
async fn compaction_cuts_runs_between_run_and_object_size() {
    let mut w = World::new(2, &[]).await;
    for _ in 0..37 {
        w.segment(&[0, 1], 1, 500).await;
    }
    w.advance(2_000);
    let s = settings().compaction; // runs 4 KiB, objects 8 KiB
    let pieces = compaction::plan_for_test(&w.log.state(), w.clock.now_ms(), &s);
    let sizes = compaction::piece_sizes(&pieces);
    assert!(sizes.len() >= 4, "{sizes:?}");
    for b in &sizes {
        assert!((s.run_bytes..=s.object_bytes).contains(b), "{sizes:?}");
    }
    // Per partition, all but the last two are a whole object's worth.
    assert!(sizes[0] + 600 > s.object_bytes, "{sizes:?}");
}

/// A record the cleaner tests produced, as a consumer must see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Produced {
    key: Option<Bytes>,
    value: Option<Bytes>,
    timestamp: i64,
    headers: Vec<(Bytes, Option<Bytes>)>,
}

/// A small deterministic generator (xorshift) for the randomized tests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

impl World {
    /// Commits one segment holding `batches` (each a list of records) in
    /// partition 0, each batch compressed with its codec, sealed now; the
    /// records go into `model` at their offsets.
    async fn keyed_segment(
        &mut self,
        batches: &[(Vec<Produced>, kafka_protocol::records::Compression)],
        model: &mut BTreeMap<i64, Produced>,
    ) {
        use kafka_protocol::{
            protocol::StrBytes,
            records::{Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType},
        };
        self.seq += 1;
        let mut all = Vec::new();
        let mut encoded = Vec::new();
        for (records, compression) in batches {
            let krecords: Vec<KRecord> = records
                .iter()
                .enumerate()
                .map(|(i, r)| KRecord {
                    transactional: false,
                    control: false,
                    partition_leader_epoch: 0,
                    delete_horizon: false,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: -1,
                    timestamp: r.timestamp,
                    key: r.key.clone(),
                    value: r.value.clone(),
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| (StrBytes::from_utf8(k.clone()).unwrap(), v.clone()))
                        .collect(),
                })
                .collect();
            let mut buf = bytes::BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &krecords,
                &RecordEncodeOptions {
                    version: 2,
                    compression: *compression,
                },
            )
            .unwrap();
            encoded.push(buf.freeze());
            all.extend(records.iter().cloned());
        }
        let base = self.commit_batches(TOPIC, encoded).await;
        for (i, r) in all.into_iter().enumerate() {
            model.insert(base + i as i64, r);
        }
    }

    /// Every record of partition 0 as a consumer reads it from offset 0:
    /// (offset, record), in order. Checks that every index entry's batches
    /// tile its offsets.
    async fn read_keyed(&self, reader: &ObjectReader) -> Vec<(i64, Produced)> {
        let chunks = self.log.state().chunks_from("t", 0, 0, usize::MAX);
        let mut out = Vec::new();
        for c in chunks {
            let e = &c.entry;
            let bytes = reader
                .read(&e.object, c.object_size, e.position..e.position + e.length)
                .await
                .unwrap();
            let (batches, next, _) =
                batch::rewrite_chunk(&bytes, e.base_offset, 0, usize::MAX, true, None).unwrap();
            assert_eq!(next, e.end_offset, "the batches of {e:?} tile its offsets");
            let mut at = 0;
            while at < batches.len() {
                let h = batch::parse_one(&batches, at).unwrap();
                let one = &batches[at..at + h.size as usize];
                for r in crate::records::decode_all(one, 1 << 26).unwrap().unwrap() {
                    out.push((
                        r.offset,
                        Produced {
                            key: r.key,
                            value: r.value,
                            timestamp: r.timestamp,
                            headers: r.headers,
                        },
                    ));
                }
                at += h.size as usize;
            }
        }
        out
    }
}

/// Kafka's guarantees for a compacted partition, checked against what was
/// produced: every record read is the one produced at its offset, in offset
/// order; every record from the clean offset on is there; for every key,
/// the last record read is the last produced, or, when the last produced
/// is a tombstone, nothing of the key is left at all.
fn check_compacted(model: &BTreeMap<i64, Produced>, read: &[(i64, Produced)], clean: i64) {
    let mut last_offset = -1;
    for (o, r) in read {
        assert!(
            *o > last_offset,
            "offset {o} after {last_offset}: order kept"
        );
        last_offset = *o;
        assert_eq!(
            Some(r),
            model.get(o),
            "offset {o} holds the record produced there"
        );
    }
    let present: std::collections::BTreeSet<i64> = read.iter().map(|(o, _)| *o).collect();
    for o in model.range(clean..).map(|(o, _)| *o) {
        assert!(
            present.contains(&o),
            "offset {o} at or after the clean offset {clean} is kept"
        );
    }
    let mut last_produced: BTreeMap<&Bytes, (i64, &Produced)> = BTreeMap::new();
    for (o, r) in model {
        if let Some(k) = &r.key {
            last_produced.insert(k, (*o, r));
        }
    }
    let mut last_read: BTreeMap<&Bytes, i64> = BTreeMap::new();
    for (o, r) in read {
        if let Some(k) = &r.key {
            last_read.insert(k, *o);
        }
    }
    for (k, (o, r)) in &last_produced {
        match last_read.get(k) {
            Some(got) => assert_eq!(got, o, "key {k:?}: its last record is kept"),
            None => assert!(
                r.value.is_none(),
                "key {k:?}: its last value (offset {o}) is gone"
            ),
        }
    }
}

/// Randomized runs of the cleaner against a model: keys overwritten many
/// times, tombstones, every codec, a key map too small for the key space
/// (several passes), segment compaction and retention in between, and a
/// compactor racing the cleaner. `SILT_CLEANER_SEEDS` sets how many runs.
#[tokio::test]
async fn the_cleaner_keeps_kafkas_guarantees() {
    use kafka_protocol::records::Compression;
    let seeds: u64 = std::env::var("SILT_CLEANER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let (mut removed, mut passes) = (0u64, 0u64);
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut w = World::new(
            1,
            &[
                ("cleanup.policy", "compact"),
                ("min.cleanable.dirty.ratio", "0.1"),
                ("delete.retention.ms", "5000"),
                ("min.compaction.lag.ms", "1000"),
            ],
        )
        .await;
        let mut s = settings();
        // Room for about 40 keys: the key space needs several passes.
        s.cleaner.dedupe_bytes = 40 * cleaner::MAP_BYTES_PER_KEY;
        let jobs = w.jobs_with("j", s);
        let reader = ObjectReader::new(w.bucket.clone(), Arc::new(NoCache::default()), 1024);
        let mut model = BTreeMap::new();
        let keys = 10 + rng.below(90);
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for step in 0..40 {
            let mut batches = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let n = 1 + rng.below(12);
                let records = (0..n)
                    .map(|i| {
                        let k = rng.below(keys);
                        Produced {
                            key: Some(Bytes::from(format!("key-{k}"))),
                            value: (rng.below(8) != 0).then(|| {
                                Bytes::from(
                                    format!("s{seed}-{step}-{i}-")
                                        .repeat(1 + rng.below(20) as usize),
                                )
                            }),
                            timestamp: w.clock.now_ms() - rng.below(1000) as i64,
                            headers: if rng.below(4) == 0 {
                                vec![(
                                    Bytes::from_static(b"h"),
                                    Some(Bytes::from(format!("{step}"))),
                                )]
                            } else {
                                vec![]
                            },
                        }
                    })
                    .collect();
                batches.push((records, codecs[rng.below(5) as usize]));
            }
            w.keyed_segment(&batches, &mut model).await;
            w.advance(200 + rng.below(2000) as i64);
            match rng.below(6) {
                0..=2 => {
                    let r = jobs.run_unlocked(Job::Cleaner, BUDGET).await.unwrap();
                    removed += r.records_cleaned;
                    passes += r.partitions_cleaned;
                }
                3 => {
                    jobs.run_unlocked(Job::Compaction, BUDGET).await.unwrap();
                }
                4 => {
                    // A compactor that planned before the cleaner swapped.
                    let plan = compaction::plan_for_test(
                        &w.log.state(),
                        w.clock.now_ms(),
                        &jobs.settings.compaction,
                    );
                    jobs.run_unlocked(Job::Cleaner, BUDGET).await.unwrap();
                    let mut report = Report::default();
                    compaction::write_for_test(&jobs, plan, &mut report)
                        .await
                        .unwrap();
                }
                _ => {}
            }
            let clean = w.log.state().clean_offset("t", 0).unwrap();
            check_compacted(&model, &w.read_keyed(&reader).await, clean);
        }
        // Settle: any dirty part is cleanable now; past every lag and the
        // tombstones' retention, clean until the clean offset reaches the
        // end; then nothing superseded and no tombstone is left.
        let config = [
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0"),
            ("delete.retention.ms", "5000"),
        ];
        let outcome = w
            .log
            .propose(Command::SetTopicConfig {
                name: "t".into(),
                config: config
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::ConfigSet);
        for _ in 0..8 {
            w.advance(6000);
            let r = jobs.run_unlocked(Job::Cleaner, BUDGET).await.unwrap();
            removed += r.records_cleaned;
        }
        let read = w.read_keyed(&reader).await;
        let hw = w.log.state().partition("t", 0).unwrap().high_watermark;
        assert_eq!(w.log.state().clean_offset("t", 0), Some(hw), "seed {seed}");
        check_compacted(&model, &read, hw);
        let mut seen = std::collections::BTreeSet::new();
        for (o, r) in &read {
            assert!(
                seen.insert(r.key.clone()),
                "seed {seed}: offset {o}: one record per key"
            );
            assert!(
                r.value.is_some(),
                "seed {seed}: offset {o}: the tombstone expired"
            );
        }
    }
    assert!(
        removed > 0 && passes > 0,
        "the cleaner removed {removed} in {passes} passes"
    );
    eprintln!("cleaner: {seeds} seeds, {passes} partition passes, {removed} records removed");
}

/// Every row of every Parquet file under `prefix`: (offset, record), and
/// the files' typed columns by name.
async fn read_table(
    w: &World,
    prefix: &str,
) -> (Vec<(i64, Produced)>, Vec<BTreeMap<String, String>>) {
    use arrow_array::{cast::AsArray, types::*, Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut rows = Vec::new();
    let mut typed = Vec::new();
    for key in w.objects(prefix).await {
        if !key.ends_with(".parquet") {
            continue;
        }
        let body = w
            .bucket
            .get(&ObjectPath::from(key.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(body)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let offsets = b
                .column_by_name("offset")
                .unwrap()
                .as_primitive::<Int64Type>();
            let ts = b
                .column_by_name("timestamp")
                .unwrap()
                .as_primitive::<TimestampMillisecondType>();
            let keys = b.column_by_name("key").unwrap().as_binary::<i32>();
            let values = b.column_by_name("value").unwrap().as_binary::<i32>();
            let headers = b.column_by_name("headers").unwrap().as_list::<i32>();
            for i in 0..b.num_rows() {
                let h = headers.value(i);
                let h = h.as_struct();
                let hk = h.column(0).as_string::<i32>();
                let hv = h.column(1).as_binary::<i32>();
                let bytes = |a: &arrow_array::BinaryArray, i: usize| {
                    (!a.is_null(i)).then(|| Bytes::copy_from_slice(a.value(i)))
                };
                rows.push((
                    offsets.value(i),
                    Produced {
                        key: bytes(keys, i),
                        value: bytes(values, i),
                        timestamp: ts.value(i),
                        headers: (0..h.len())
                            .map(|j| (Bytes::copy_from_slice(hk.value(j).as_bytes()), bytes(hv, j)))
                            .collect(),
                    },
                ));
                let mut t = BTreeMap::new();
                for (f, col) in b.schema().fields().iter().zip(b.columns()).skip(7) {
                    if !col.is_null(i) {
                        let v = arrow_cast_value(col.as_ref(), i);
                        t.insert(f.name().clone(), v);
                    }
                }
                typed.push(t);
            }
        }
    }
    rows.sort_by_key(|(o, _)| *o);
    (rows, typed)
}

/// A typed cell as text (the test's schema uses string and long).
fn arrow_cast_value(col: &dyn arrow_array::Array, i: usize) -> String {
    use arrow_array::{cast::AsArray, types::Int64Type};
    match col.data_type() {
        arrow_schema::DataType::Int64 => col.as_primitive::<Int64Type>().value(i).to_string(),
        _ => col.as_string::<i32>().value(i).to_string(),
    }
}

/// Table export writes every record once, at its offset, byte for byte:
/// over several steps and hours, after a step that stopped between its
/// files and its progress record (redone from its marker, with a larger
/// file size this time), and with records of many keys, null keys and
/// values, headers and every codec.
#[tokio::test]
async fn table_export_writes_every_record_once() {
    use kafka_protocol::records::Compression;
    let mut w = World::new(1, &[("silt.table.enable", "true")]).await;
    let mut model = BTreeMap::new();
    let mut rng = Rng(42);
    for step in 0..12 {
        let batches: Vec<_> = (0..3)
            .map(|b| {
                let records = (0..20)
                    .map(|i| Produced {
                        key: (i % 5 != 0).then(|| Bytes::from(format!("k{}", rng.below(50)))),
                        value: (i % 7 != 3).then(|| Bytes::from(format!("v{step}-{b}-{i}"))),
                        timestamp: w.clock.now_ms() + i,
                        headers: if i % 3 == 0 {
                            vec![(Bytes::from_static(b"h"), Some(Bytes::from(format!("{i}"))))]
                        } else {
                            vec![]
                        },
                    })
                    .collect();
                let codec = [Compression::None, Compression::Zstd, Compression::Lz4][b];
                (records, codec)
            })
            .collect();
        w.keyed_segment(&batches, &mut model).await;
        // Records over two hours.
        w.advance(if step == 6 { 3_600_000 } else { 1000 });
    }
    let mut s = settings();
    s.tables.file_bytes = 2000;
    s.tables.max_age = Duration::ZERO;
    let small = w.jobs_with("j", s.clone());
    // A step that wrote its marker and files but never counted them.
    let config = w.log.state().topic("t").unwrap().config().clone();
    let mut report = Report::default();
    let crashed = tables::write_step(&small, "t", 0, &config, &mut report)
        .await
        .unwrap()
        .expect("a step is due");
    assert!(report.table_files_written > 0);
    // The job runs again with larger files: the crashed step is finished
    // as it began, then the rest follows.
    s.tables.file_bytes = 6000;
    let jobs = w.jobs_with("j", s);
    for _ in 0..20 {
        jobs.run_unlocked(Job::Tables, BUDGET).await.unwrap();
    }
    let hw = w.log.state().partition("t", 0).unwrap().high_watermark;
    assert_eq!(w.log.state().exported("t", 0), Some(hw));
    let (rows, _) = read_table(&w, TABLES_PREFIX).await;
    let offsets: Vec<i64> = rows.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..hw).collect::<Vec<_>>(), "every offset once");
    for (o, r) in &rows {
        assert_eq!(Some(r), model.get(o), "offset {o}");
    }
    let keys = w.objects(TABLES_PREFIX).await;
    assert!(keys.iter().any(|k| k.contains("/hour=")), "{keys:?}");
    let hours: std::collections::BTreeSet<_> = keys
        .iter()
        .filter_map(|k| k.split("/hour=").nth(1)?.get(..2))
        .collect();
    assert!(hours.len() >= 2, "records of two hours: {keys:?}");
    assert!(
        !keys.iter().any(|k| k.contains("_progress")),
        "markers of counted steps are gone: {keys:?}"
    );
    let _ = crashed;
}

/// With a value schema, JSON values fill typed columns; one that does not
/// match lands in a dead-letter file with its offset, and its row stays.
#[tokio::test]
async fn table_export_decodes_json_and_keeps_bad_values_aside() {
    use kafka_protocol::records::Compression;
    let schema = r#"{"fields":[{"name":"user","type":"string"},{"name":"n","type":"long"}]}"#;
    let mut w = World::new(
        1,
        &[
            ("silt.table.enable", "true"),
            ("silt.table.value.schema", schema),
        ],
    )
    .await;
    let mut model = BTreeMap::new();
    let values = [
        r#"{"user":"ann","n":1}"#,
        r#"{"user":"bob"}"#,
        r#"{"user":"cy","n":"three"}"#,
        r#"{"user":"di","n":4,"more":true}"#,
    ];
    let records = values
        .iter()
        .map(|v| Produced {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from(v.to_string())),
            timestamp: w.clock.now_ms(),
            headers: vec![],
        })
        .collect();
    w.keyed_segment(&[(records, Compression::Gzip)], &mut model)
        .await;
    let mut s = settings();
    s.tables.max_age = Duration::ZERO;
    w.jobs_with("j", s)
        .run_unlocked(Job::Tables, BUDGET)
        .await
        .unwrap();
    let (rows, typed) = read_table(&w, TABLES_PREFIX).await;
    assert_eq!(rows.len(), 4);
    let get = |i: usize, k: &str| typed[i].get(k).cloned();
    assert_eq!(
        (get(0, "user"), get(0, "n")),
        (Some("ann".into()), Some("1".into()))
    );
    assert_eq!((get(1, "user"), get(1, "n")), (Some("bob".into()), None));
    assert_eq!((get(2, "user"), get(2, "n")), (None, None));
    assert_eq!(get(3, "n"), Some("4".into()));
    let dead_files: Vec<String> = w.objects(DEAD_LETTER_PREFIX).await;
    assert_eq!(dead_files.len(), 1, "{dead_files:?}");
    let body = w
        .bucket
        .get(&ObjectPath::from(dead_files[0].as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .unwrap()
        .build()
        .unwrap();
    let b = reader.into_iter().next().unwrap().unwrap();
    use arrow_array::{cast::AsArray, types::Int64Type};
    assert_eq!(b.num_rows(), 1);
    assert_eq!(
        b.column_by_name("offset")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        2
    );
    assert!(b
        .column_by_name("error")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .contains("\"n\""));
}

/// A topic deleted and created again under the same name exports from
/// offset 0 again without meeting the old topic's file names.
#[tokio::test]
async fn a_recreated_topic_exports_under_new_names() {
    use kafka_protocol::records::Compression;
    let mut w = World::new(1, &[("silt.table.enable", "true")]).await;
    let mut s = settings();
    s.tables.max_age = Duration::ZERO;
    let jobs = w.jobs_with("j", s);
    let record = |v: &str| Produced {
        key: None,
        value: Some(Bytes::from(v.to_string())),
        timestamp: T0,
        headers: vec![],
    };
    let mut model = BTreeMap::new();
    w.keyed_segment(&[(vec![record("old")], Compression::None)], &mut model)
        .await;
    jobs.run_unlocked(Job::Tables, BUDGET).await.unwrap();
    assert_eq!(w.objects(TABLES_PREFIX).await.len(), 1);
    w.log
        .propose(Command::DeleteTopic {
            name: "t".into(),
            time: 0,
        })
        .await
        .unwrap();
    // Table files outlive the topic: retention and GC leave them.
    w.advance(3_600_000);
    jobs.run_unlocked(Job::Retention, BUDGET).await.unwrap();
    let gc = jobs.run_unlocked(Job::Gc, BUDGET).await.unwrap();
    assert!(gc.objects_deleted > 0, "{gc:?}");
    assert_eq!(w.objects(TABLES_PREFIX).await.len(), 1);
    const NEW: TopicId = TopicId([6; 16]);
    w.log
        .propose(Command::CreateTopic {
            name: "t".into(),
            id: NEW,
            partitions: 1,
            config: [("silt.table.enable".to_string(), "true".to_string())].into(),
        })
        .await
        .unwrap();
    // One record under the new topic's id.
    let bytes = batch::simple_batch(1, T0, b"new", None);
    w.commit_batches(NEW, vec![Bytes::from(bytes)]).await;
    jobs.run_unlocked(Job::Tables, BUDGET).await.unwrap();
    assert_eq!(w.log.state().exported("t", 0), Some(1));
    let (rows, _) = read_table(&w, TABLES_PREFIX).await;
    let values: Vec<_> = rows.iter().map(|(_, r)| r.value.clone().unwrap()).collect();
    assert_eq!(values, [Bytes::from("old"), Bytes::from("new")]);
}

/// A stored batch nothing can decode (unknown codec bits, valid CRC: the
/// produce path checks headers only): `batch` with its attributes set to
/// `attributes`.
fn undecodable(mut b: Vec<u8>, attributes: i16) -> Vec<u8> {
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

impl World {
    /// Commits one segment of raw batches in partition 0, sealed now.
    async fn raw_segment(&mut self, batches: Vec<Vec<u8>>) {
        self.commit_batches(TOPIC, batches.into_iter().map(Bytes::from).collect())
            .await;
    }

    /// Uploads one segment holding `batches` in partition 0 of topic `id`,
    /// sealed now, and commits it; the base offset it got.
    async fn commit_batches(&self, id: TopicId, batches: Vec<Bytes>) -> i64 {
        let now = self.clock.now_ms();
        let mut b = SegmentBuilder::new();
        for bytes in batches {
            let h = batch::parse_all(&bytes).unwrap();
            let min_ts = h.iter().map(|h| h.base_timestamp).min().unwrap();
            b.append(
                id.0,
                0,
                bytes,
                h.iter().map(crate::segment::BatchMeta::from).collect(),
                min_ts,
            );
        }
        let (object, chunks) = b.finish();
        let key = crate::segment::dated_key(SEGMENTS_PREFIX, ulid::Ulid::new());
        self.bucket
            .put(&ObjectPath::from(key.as_str()), object.clone().into())
            .await
            .unwrap();
        let c = &chunks[0];
        let out = self
            .log
            .propose(Command::Commit {
                object: key,
                size: object.len() as u64,
                chunks: vec![ChunkRef {
                    topic: id,
                    partition: 0,
                    position: c.position,
                    length: c.length,
                    records: c.records,
                    max_timestamp: c.max_timestamp,
                    append_time: now,
                    batches: vec![],
                }],
            })
            .await
            .unwrap();
        let Outcome::Committed(bases) = out else {
            panic!("{out:?}")
        };
        let ChunkOutcome::Appended { base } = bases[0] else {
            panic!("{bases:?}")
        };
        base
    }
}

/// A batch the table export cannot decode goes to the dead-letter file
/// whole, at its first offset, and the export goes on past it.
#[tokio::test]
async fn an_undecodable_batch_goes_to_the_dead_letter_file() {
    let mut w = World::new(1, &[("silt.table.enable", "true")]).await;
    let good = batch::keyed_batch(2, T0, b"ok", None, |i| Some(vec![b'k', i as u8]));
    let bad = undecodable(batch::keyed_batch(3, T0, b"??", None, |_| None), 5);
    w.raw_segment(vec![good.clone(), bad, good]).await;
    let mut s = settings();
    s.tables.max_age = Duration::ZERO;
    let r = w
        .jobs_with("j", s)
        .run_unlocked(Job::Tables, BUDGET)
        .await
        .unwrap();
    assert_eq!((r.partitions_failed, r.table_dead_letters), (0, 1), "{r:?}");
    assert_eq!(w.log.state().exported("t", 0), Some(7));
    let (rows, _) = read_table(&w, TABLES_PREFIX).await;
    let offsets: Vec<i64> = rows.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [0, 1, 5, 6]);
    assert_eq!(w.objects(DEAD_LETTER_PREFIX).await.len(), 1);
}

/// Past a batch the cleaner cannot look into, tombstones stay: an older
/// value of their key may be in it, and would come back.
#[tokio::test]
async fn tombstones_after_an_opaque_batch_stay() {
    let mut w = World::new(
        1,
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0"),
            ("delete.retention.ms", "1000"),
        ],
    )
    .await;
    // k=V, but in a batch nothing can decode; then k's tombstone.
    let hidden = undecodable(
        batch::keyed_batch(1, T0, b"V", None, |_| Some(b"k".to_vec())),
        5,
    );
    w.raw_segment(vec![hidden]).await;
    let tomb = crate::records::encode_batch(&[crate::records::Record {
        offset: 0,
        timestamp: T0,
        key: Some(Bytes::from_static(b"k")),
        value: None,
        headers: vec![],
    }]);
    w.raw_segment(vec![tomb]).await;
    let jobs = w.jobs("j");
    for _ in 0..4 {
        w.advance(5000);
        jobs.run_unlocked(Job::Cleaner, BUDGET).await.unwrap();
        // Something new, so that the cleaner has a dirty part each time.
        let other = batch::keyed_batch(1, w.clock.now_ms(), b"x", None, |_| Some(b"o".to_vec()));
        w.raw_segment(vec![other]).await;
    }
    let reader = ObjectReader::new(w.bucket.clone(), Arc::new(NoCache::default()), 1024);
    let chunks = w.log.state().chunks_from("t", 0, 0, usize::MAX);
    let mut tombstone_kept = false;
    for c in chunks {
        let e = &c.entry;
        let bytes = reader
            .read(&e.object, c.object_size, e.position..e.position + e.length)
            .await
            .unwrap();
        let (batches, _, _) =
            batch::rewrite_chunk(&bytes, e.base_offset, 0, usize::MAX, true, None).unwrap();
        let mut at = 0;
        while at < batches.len() {
            let h = batch::parse_one(&batches, at).unwrap();
            if let Ok(Some(records)) =
                crate::records::decode_all(&batches[at..at + h.size as usize], 1 << 20)
            {
                tombstone_kept |= records
                    .iter()
                    .any(|r| r.offset == 1 && r.key.as_deref() == Some(b"k") && r.value.is_none());
            }
            at += h.size as usize;
        }
    }
    assert!(
        tombstone_kept,
        "the tombstone after the opaque batch was removed"
    );
}
