//! Deterministic simulation of the coordination layer and the write path.
//!
//! Several logical agents (each with its own commit log, state machine,
//! segment writer and read path) run over one in-memory metadata store and
//! one in-memory bucket, on tokio's paused clock, driven by one seed. Faults
//! come from seeded wrappers, never from code in the write path: object-store
//! PUTs that fail (before or after writing), commit answers lost after the
//! write (reported as a failure or as the store being unavailable), watches
//! that lag, checkpoints at any moment by any agent, agents restarted,
//! agents' registrations lapsing without them knowing (their commits are
//! fenced on it) and made again, idempotent producers retrying, and
//! compaction and object GC passes (a
//! grace period of a few steps, so agents whose watch lags still hold
//! locations of objects GC may delete). Reads in the middle of a run, through
//! any agent, may fail but must return acknowledged records at their
//! offsets. After each run the checker asserts:
//!
//! - every acknowledged append is in every agent's state exactly once, at
//!   the offset it was acknowledged with (read back through the read path);
//! - an append refused because the agent's registration had lapsed is in
//!   no state at all;
//! - offsets are dense from the log start;
//! - on a compacted topic (one seed in three: keyed records over a few
//!   keys, and cleaner passes with a key map of a few keys), every record
//!   read is the one acknowledged at its offset, and an acknowledged record
//!   may be missing only when a record of its key is at a later offset;
//! - all agents' states are equal once they have applied the same records,
//!   and equal to a fresh agent's loaded from checkpoint and log;
//! - the checkpoint pointer never moved backwards;
//! - every object the index references can still be read;
//! - in transactional runs (one seed in four: a transactional producer
//!   begins, writes to several partitions and commits or aborts through any
//!   agent, under the same faults; its answers may be lost), reading every
//!   partition `read_committed` as a Kafka client does (below the last
//!   stable offset, without aborted ranges and control batches), each
//!   transaction is there whole or not at all, a transaction whose commit
//!   was acknowledged is there, and one whose abort was acknowledged, or
//!   that never ended, is not.
//!
//! `SILT_SIM_SEEDS` sets how many seeds run (default 2000), `SILT_SIM_SEED`
//! replays one; a failure prints the command that replays its seed.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use object_store::{memory::InMemory, ObjectStore};
use silt_coordinator::{
    faulty::{LosesAnswers, Pausable},
    keys::Layout,
    EmbeddedStore, MetaLog, MetaStore, TopicId,
};
use silt_tiering::{
    batch::{self, keyed_batch},
    clock::Clock,
    jobs::{
        Budget, CleanerSettings, CompactionSettings, GcSettings, Job, JobSettings, Jobs,
        RetentionDefaults,
    },
    segment::SequentialIds,
    store::{FaultConfig, Faulty, RetryConfig, Retrying},
    NoCache, ObjectReader,
};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::ManualClock,
    fetch::{Limits, ReadPath},
    produce::{validate, PartitionAppend, Pipeline, ProduceConfig, Producer},
    topics::Topics,
};

const CLUSTER: &str = "sim";
const TOPIC: &str = "t";
const GROUP: &str = "sim-group";

/// xorshift64*: every choice of a run comes from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// One logical agent.
struct Agent {
    log: Arc<MetaLog>,
    producer: Producer,
    done: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
    read: ReadPath,
    watch: Arc<Pausable>,
    /// As a group coordinator: its token and membership lease.
    token: String,
    lease: silt_coordinator::metastore::LeaseId,
    /// Its registration as it believes it to be (key, create revision):
    /// what its commits are fenced on. The key may be gone meanwhile.
    registration: Arc<Mutex<Option<(String, i64)>>>,
    /// The transaction coordinator's parts.
    txns: crate::txn::Transactions,
    producer_ids: silt_coordinator::ProducerIds,
    offsets: silt_coordinator::OffsetStore,
    clock: ManualClock,
}

impl Agent {
    fn txn_ctx(&self) -> crate::txn::TxnCtx<'_> {
        crate::txn::TxnCtx {
            log: &self.log,
            producer_ids: &self.producer_ids,
            offsets: &self.offsets,
            clock: &self.clock,
            max_timeout: Duration::from_secs(900),
            cluster: CLUSTER,
            // The simulation's agents all run this build.
            check_features: false,
        }
    }

    /// Registers again: a new registration key (a new create revision).
    async fn register(&self, meta: &dyn MetaStore, i: usize) {
        let key = Layout::new(CLUSTER).agent(&format!("a{i}"));
        let _ = meta
            .delete(silt_coordinator::metastore::KeyRange::Key(key.clone()))
            .await;
        let created = meta
            .put(&key, Bytes::from_static(b"agent"), None)
            .await
            .unwrap();
        *self.registration.lock().unwrap() = Some((key, created));
    }
}

struct World {
    seed: u64,
    meta: Arc<dyn MetaStore>,
    bucket: Arc<InMemory>,
    topic: TopicId,
    partitions: i32,
    /// `cleanup.policy=compact`: keyed records, cleaner passes.
    compacted: bool,
    incarnation: u64,
    /// The wall clock every agent and job reads; each step moves it on.
    clock: ManualClock,
    /// Object keys, counted: the same seed makes the same keys.
    ids: Arc<SequentialIds>,
}

impl World {
    async fn start_agent(&mut self, i: usize, rng: &mut Rng) -> Agent {
        self.incarnation += 1;
        let watch = Arc::new(Pausable::new(self.meta.clone()));
        // Commit answers lost after the write, reported either way.
        let lossy = LosesAnswers::new(
            watch.clone() as Arc<dyn MetaStore>,
            Layout::new(CLUSTER).log(),
            [0.0, 0.05, 0.2][rng.below(3) as usize],
            rng.next(),
        );
        let lossy = if rng.chance(0.5) {
            lossy.as_unavailable()
        } else {
            lossy
        };
        let meta: Arc<dyn MetaStore> = Arc::new(lossy);
        let faulty: Arc<dyn ObjectStore> = Arc::new(Faulty::new(
            self.bucket.clone(),
            FaultConfig {
                put_error_rate: [0.0, 0.1, 0.4][rng.below(3) as usize],
                seed: rng.next(),
                ..Default::default()
            },
        ));
        let objects: Arc<dyn ObjectStore> = Arc::new(Retrying::new(
            faulty,
            RetryConfig {
                attempts: 3,
                backoff: Duration::from_millis(20),
            },
        ));
        let writer = format!("a{i}-{}", self.incarnation);
        let log = MetaLog::open(meta, objects.clone(), CLUSTER, &writer)
            .await
            .unwrap_or_else(|e| panic!("seed {}: agent {i} cannot load: {e}", self.seed));
        let reader = ObjectReader::new(objects.clone(), Arc::new(NoCache::default()), 4096);
        let shutdown = CancellationToken::new();
        let (producer, done) = Producer::start(
            ProduceConfig {
                flush_interval: Duration::from_millis(5 + rng.below(40)),
                flush_bytes: 1 << 20,
                max_inflight_bytes: 1 << 24,
                max_concurrent_uploads: 1 + rng.below(3) as usize,
                max_commit_record_bytes: 64 * 1024,
            },
            Pipeline {
                store: objects.clone(),
                log: log.clone(),
                reader: reader.clone(),
                clock: Arc::new(self.clock.clone()),
                ids: self.ids.clone(),
            },
            shutdown.clone(),
        );
        let objects_for_txns = objects;
        let lease = self
            .meta
            .lease_grant(Duration::from_secs(3600))
            .await
            .unwrap();
        let registration: Arc<Mutex<Option<(String, i64)>>> = Arc::default();
        {
            let r = registration.clone();
            producer.set_fence(Arc::new(move || r.lock().unwrap().clone()));
        }
        let txns = crate::txn::Transactions::new(
            objects_for_txns,
            reader.clone(),
            self.ids.clone(),
            CLUSTER,
        );
        let agent = Agent {
            txns,
            producer_ids: silt_coordinator::ProducerIds::new(self.meta.clone(), CLUSTER),
            offsets: silt_coordinator::OffsetStore::new(self.meta.clone(), CLUSTER),
            clock: self.clock.clone(),
            read: ReadPath::new(log.clone(), reader),
            log,
            producer,
            done,
            shutdown,
            watch,
            token: writer,
            lease,
            registration,
        };
        agent.register(&*self.meta, i).await;
        agent
    }
}

/// What producers were told.
#[derive(Default)]
struct Acks {
    /// id -> (partition, base offset, records) of acknowledged appends.
    acked: BTreeMap<u64, (i32, i64, u32)>,
    /// ids whose final answer was an error (they may or may not be there).
    failed: BTreeSet<u64>,
    /// ids refused because the agent's registration had lapsed: surely
    /// not written.
    not_written: BTreeSet<u64>,
    /// Records of every id sent.
    sent: BTreeMap<u64, u32>,
}

/// Keys of a compacted topic's records: few, so that they are overwritten.
const KEYS: u64 = 5;

/// The key of the `i`th record of append `id` on a compacted topic.
fn key_of(id: u64, i: i64) -> Vec<u8> {
    format!("k{}", (id * 7 + i as u64) % KEYS).into_bytes()
}

/// Record values of the simple batches the simulation writes: 8-byte ids,
/// with each record's offset.
fn values(batch_bytes: &[u8]) -> Vec<(i64, u64)> {
    keyed_values(batch_bytes)
        .into_iter()
        .map(|(o, id, _)| (o, id))
        .collect()
}

/// [`values`] with each record's key.
fn keyed_values(batch_bytes: &[u8]) -> Vec<(i64, u64, Option<Vec<u8>>)> {
    fn varint(b: &[u8], at: &mut usize) -> i64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*at];
            *at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < batch_bytes.len() {
        let h = batch::parse_one(batch_bytes, at).expect("stored batches parse");
        let base = i64::from_be_bytes(batch_bytes[at..at + 8].try_into().unwrap());
        if h.attributes & CONTROL != 0 {
            // A transaction marker: one record, no id of ours.
            out.push((base, MARKER, None));
            at += h.size as usize;
            continue;
        }
        let mut r = at + batch::HEADER_LEN;
        for _ in 0..h.records {
            let _len = varint(batch_bytes, &mut r);
            r += 1; // attributes
            let _ts = varint(batch_bytes, &mut r);
            let delta = varint(batch_bytes, &mut r);
            let key_len = varint(batch_bytes, &mut r);
            let key = (key_len >= 0).then(|| batch_bytes[r..r + key_len as usize].to_vec());
            r += key_len.max(0) as usize;
            let vlen = varint(batch_bytes, &mut r) as usize;
            let id = u64::from_be_bytes(batch_bytes[r..r + 8].try_into().unwrap());
            r += vlen;
            let _headers = varint(batch_bytes, &mut r);
            out.push((base + delta, id, key));
        }
        at += h.size as usize;
    }
    out
}

/// The control bit of a batch's attributes (transaction markers).
const CONTROL: i16 = 0x20;
/// The transactional bit.
const TRANSACTIONAL: i16 = 0x10;
/// The id [`keyed_values`] gives a transaction marker.
const MARKER: u64 = u64::MAX;
/// The simulation's transactional id.
const TXN_ID: &str = "tx";

/// A transactional producer: its producer id and epoch, its open
/// transaction (instance number, partitions added) and its sequences.
#[derive(Default)]
struct TxnClient {
    pid: Option<(i64, i16)>,
    open: Option<(u64, BTreeSet<i32>)>,
    seq: BTreeMap<i32, i32>,
    next: u64,
}

/// What the transactional producer was told.
#[derive(Default)]
struct TxnAcks {
    /// Instance -> how its end was acknowledged: a commit (true), an abort
    /// (false), or no answer (also: never ended).
    ended: BTreeMap<u64, Option<bool>>,
    /// Transactional appends acknowledged: id -> (instance, partition,
    /// base offset, records).
    acked: BTreeMap<u64, (u64, i32, i64, u32)>,
    /// Every transactional append sent: id -> instance.
    sent: BTreeMap<u64, u64>,
    /// Records of every transactional append sent.
    records: BTreeMap<u64, u32>,
}

/// Sets a batch's transactional bit (and its CRC).
fn transactional(mut batch: Vec<u8>) -> Vec<u8> {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | TRANSACTIONAL;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// The ids a `read_committed` Kafka client reads from a partition: below
/// the last stable offset, without control batches and without batches of
/// aborted transactions.
async fn read_committed_ids(read: &ReadPath, partition: i32, seed: u64) -> BTreeSet<u64> {
    let pos = read.position(TOPIC, partition).unwrap();
    let mut out = BTreeSet::new();
    let mut next = pos.log_start_offset;
    while next < pos.last_stable_offset {
        let r = read
            .read_isolated(
                TOPIC,
                partition,
                next,
                Limits {
                    max_bytes: 1 << 20,
                    min_one: true,
                },
                true,
            )
            .await
            .unwrap_or_else(|e| {
                panic!("seed {seed}: reading p{partition} committed at {next}: {e}")
            });
        assert!(
            !r.bytes.is_empty(),
            "seed {seed}: p{partition}: nothing committed at {next} below {}",
            pos.last_stable_offset
        );
        let mut at = 0;
        while at < r.bytes.len() {
            let h = batch::parse_one(&r.bytes, at).expect("read batches parse");
            let base = i64::from_be_bytes(r.bytes[at..at + 8].try_into().unwrap());
            let one = &r.bytes[at..at + h.size as usize];
            at += h.size as usize;
            let aborted = h.attributes & TRANSACTIONAL != 0
                && r.aborted.iter().any(|a| {
                    a.producer_id == h.producer_id
                        && a.first_offset <= base
                        && base <= a.last_offset
                });
            if h.attributes & CONTROL != 0 || aborted {
                continue;
            }
            for (offset, id, _) in keyed_values(one) {
                if offset >= next {
                    out.insert(id);
                }
            }
        }
        let end = batches_end(&r.bytes);
        assert!(
            end > next,
            "seed {seed}: p{partition}: no committed progress at {next}"
        );
        next = end;
    }
    out
}

/// One past the last offset the batches span.
fn batches_end(bytes: &[u8]) -> i64 {
    let mut at = 0;
    let mut end = 0;
    while at < bytes.len() {
        let h = batch::parse_one(bytes, at).expect("read batches parse");
        let base = i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        end = base + h.last_offset_delta as i64 + 1;
        at += h.size as usize;
    }
    end
}

/// A partition's records: offset -> (id, key).
type Records = BTreeMap<i64, (u64, Option<Vec<u8>>)>;

/// Every record of a partition, read through `read`.
async fn read_all(read: &ReadPath, partition: i32, seed: u64) -> (i64, Records) {
    let pos = read.position(TOPIC, partition).unwrap();
    let mut out = BTreeMap::new();
    let mut next = pos.log_start_offset;
    while next < pos.high_watermark {
        let r = read
            .read(
                TOPIC,
                partition,
                next,
                Limits {
                    max_bytes: 1 << 20,
                    min_one: true,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: reading p{partition} at {next}: {e}"));
        assert!(
            !r.bytes.is_empty(),
            "seed {seed}: p{partition}: nothing at {next}"
        );
        for (offset, id, key) in keyed_values(&r.bytes) {
            if offset >= next {
                assert!(
                    out.insert(offset, (id, key)).is_none(),
                    "seed {seed}: p{partition}: offset {offset} read twice"
                );
            }
        }
        // Where the batches end, not their last record: on a compacted
        // topic a batch may end with removed offsets.
        let end = batches_end(&r.bytes);
        assert!(
            end > next,
            "seed {seed}: p{partition}: no progress at {next}"
        );
        next = end;
    }
    (pos.high_watermark, out)
}

/// What a run did, for the totals.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    acked: usize,
    failed: usize,
    checkpoints: usize,
    restarts: usize,
    pauses: usize,
    claims: usize,
    fenced: usize,
    /// Registrations that lapsed, and appends refused for it.
    lapses: usize,
    not_written: usize,
    /// Compaction runs swapped in, and objects GC deleted.
    compacted: u64,
    collected: u64,
    /// Reads in the middle of a run that returned records.
    reads: u64,
    /// Compaction runs refused because the index changed under them.
    refused: u64,
    /// Runs on a compacted topic, and records the cleaner removed.
    compacted_runs: usize,
    cleaned: u64,
    /// Transactional runs, steps, and transactions acknowledged committed
    /// and aborted.
    txn_runs: usize,
    txn_steps: usize,
    txn_committed: usize,
    txn_aborted: usize,
}

async fn run(seed: u64) -> Stats {
    let mut stats = Stats::default();
    let mut rng = Rng::new(seed);
    let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
    let bucket = Arc::new(InMemory::new());
    let partitions = 1 + rng.below(3) as i32;
    let admin = MetaLog::open(meta.clone(), bucket.clone(), CLUSTER, "admin")
        .await
        .unwrap();
    // Decided by the seed alone, so that the other draws stay as they were.
    let compacted = seed.is_multiple_of(3);
    let config = if compacted {
        stats.compacted_runs = 1;
        [
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    } else {
        Default::default()
    };
    let topic = Topics::new(admin.clone(), false, 1)
        .create(TOPIC, partitions, config, false)
        .await
        .unwrap()
        .id;
    let topic_config = admin.state().topic(TOPIC).unwrap().config().clone();
    let mut world = World {
        seed,
        meta: meta.clone(),
        bucket,
        topic,
        partitions,
        compacted,
        incarnation: 0,
        clock: ManualClock::new(1_000_000),
        ids: Arc::default(),
    };
    let n_agents = 2 + rng.below(2) as usize;
    let mut agents = Vec::new();
    for i in 0..n_agents {
        agents.push(world.start_agent(i, &mut rng).await);
    }
    let acks = Arc::new(Mutex::new(Acks::default()));
    let mut pending = Vec::new();
    let mut job_passes = Vec::new();
    let mut next_id = 0u64;
    // Idempotent producers: (producer id, next sequence per partition).
    let mut idem: Vec<(i64, BTreeMap<i32, i32>)> =
        (0..2).map(|p| (100 + p, BTreeMap::new())).collect();
    let mut pointer = 0i64;
    // Group offsets: who coordinates the group, and the last offset the
    // coordinator committed.
    let offsets = silt_coordinator::OffsetStore::new(meta.clone(), CLUSTER);
    let mut owner: Option<usize> = None;
    let mut next_offset = 0i64;
    let mut last_committed: Option<i64> = None;
    // One seed in four has a transactional producer too.
    let txn_run = seed % 4 == 1;
    let mut txn = TxnClient::default();
    let mut txn_acks = TxnAcks::default();
    let steps = 40 + rng.below(60);
    for _ in 0..steps {
        let a = rng.below(agents.len() as u64) as usize;
        // An agent whose registration lapsed notices (a TTL later) and
        // registers again.
        if rng.chance(0.2) {
            let key = Layout::new(CLUSTER).agent(&format!("a{a}"));
            if meta.get(&key).await.unwrap().is_none() {
                agents[a].register(&*meta, a).await;
            }
        }
        if txn_run && rng.chance(0.3) {
            txn_step(
                &mut rng,
                &world,
                &agents,
                a,
                &topic_config,
                &mut txn,
                &mut txn_acks,
                &mut next_id,
            )
            .await;
            stats.txn_steps += 1;
            world.clock.set(world.clock.now_ms() + rng.below(10) as i64);
            continue;
        }
        match rng.below(100) {
            0..=59 => {
                let partition = rng.below(world.partitions as u64) as i32;
                let records = 1 + rng.below(3) as i32;
                let id = next_id;
                next_id += 1;
                let producer_state = if rng.chance(0.5) {
                    let p = rng.below(idem.len() as u64) as usize;
                    let seq = idem[p].1.entry(partition).or_insert(0);
                    let s = *seq;
                    *seq = s.wrapping_add(records);
                    Some((idem[p].0, 0i16, s))
                } else {
                    None
                };
                let data = keyed_batch(records, 1, &id.to_be_bytes(), producer_state, |i| {
                    compacted.then(|| key_of(id, i as i64))
                });
                let v = validate(
                    Bytes::from(data),
                    &topic_config,
                    crate::produce::Limits::new(1_048_588, 0),
                )
                .unwrap();
                let append = move || PartitionAppend {
                    topic: world.topic,
                    partition,
                    data: v.data.clone(),
                    batches: v.batches.clone(),
                    min_timestamp: v.min_timestamp,
                };
                // Idempotent producers retry a failed batch (same sequence)
                // through any agent; others report the failure.
                let tries = if producer_state.is_some() { 4 } else { 1 };
                let producers: Vec<Producer> = (0..tries)
                    .map(|t| agents[(a + t) % agents.len()].producer.clone())
                    .collect();
                let acks = acks.clone();
                acks.lock().unwrap().sent.insert(id, records as u32);
                pending.push(tokio::spawn(async move {
                    let mut all_refused = true;
                    for p in producers {
                        let got = p.submit(vec![append()]).await.await;
                        match &got[0] {
                            Ok(base) => {
                                acks.lock()
                                    .unwrap()
                                    .acked
                                    .insert(id, (partition, *base, records as u32));
                                return;
                            }
                            Err(crate::produce::AppendError::NotRegistered(_)) => {}
                            Err(_) => all_refused = false,
                        }
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    let mut acks = acks.lock().unwrap();
                    acks.failed.insert(id);
                    if all_refused {
                        acks.not_written.insert(id);
                    }
                }));
            }
            60..=69 => {
                let w = &agents[a].watch;
                if rng.chance(0.5) {
                    w.pause();
                    stats.pauses += 1;
                } else {
                    w.resume();
                }
            }
            70..=79 => {
                if let Ok(Some(_)) = agents[a].log.checkpoint().await {
                    stats.checkpoints += 1;
                }
                if let Some(p) = current_pointer(&*meta).await {
                    assert!(
                        p >= pointer,
                        "seed {seed}: checkpoint pointer moved back from {pointer} to {p}"
                    );
                    pointer = p;
                }
            }
            80..=84 if rng.chance(0.4) => {
                // The agent's registration lapses without it knowing (its
                // commits must now fail the fence), or, lapsed, is made
                // again.
                let key = Layout::new(CLUSTER).agent(&format!("a{a}"));
                if meta.get(&key).await.unwrap().is_some() {
                    meta.delete(silt_coordinator::metastore::KeyRange::Key(key))
                        .await
                        .unwrap();
                    stats.lapses += 1;
                    // Half the time the agent has noticed already.
                    if rng.chance(0.5) {
                        *agents[a].registration.lock().unwrap() = None;
                    }
                } else {
                    agents[a].register(&*meta, a).await;
                }
            }
            80..=84 => {
                // Restart: flush, stop, load again from checkpoint and log.
                stats.restarts += 1;
                let old = std::mem::replace(&mut agents[a], world.start_agent(a, &mut rng).await);
                old.watch.resume();
                old.shutdown.cancel();
                let _ = old.done.await;
                old.log.close();
                // Its membership lease ends, and with it any group claim.
                let _ = meta.lease_revoke(old.lease).await;
                if owner == Some(a) {
                    owner = None;
                }
            }
            85..=88 => {
                // The group's coordinator moves to agent `a`.
                offsets
                    .claim(GROUP, &agents[a].token, agents[a].lease)
                    .await
                    .unwrap();
                owner = Some(a);
                stats.claims += 1;
            }
            89..=94 => {
                // Agent `a` commits the group's next offset: only the
                // coordinator of record may; a stale one is fenced.
                next_offset += 1;
                let committed = silt_coordinator::Committed {
                    offset: next_offset,
                    leader_epoch: -1,
                    metadata: None,
                    commit_time: 1,
                };
                let r = offsets
                    .commit(
                        GROUP,
                        Some(&agents[a].token),
                        &[(TOPIC.into(), 0, committed)],
                    )
                    .await;
                if owner == Some(a) {
                    assert_eq!(r, Ok(()), "seed {seed}: the coordinator's commit failed");
                    last_committed = Some(next_offset);
                } else {
                    assert_eq!(
                        r,
                        Err((0, silt_coordinator::offsets::OffsetError::Fenced)),
                        "seed {seed}: agent {a}, not the coordinator, committed"
                    );
                    stats.fenced += 1;
                }
            }
            95..=97 => {
                // A compaction or GC pass, run by agent `a` against the
                // bucket, with a grace period of at most a few steps.
                let settings = JobSettings {
                    retention: RetentionDefaults {
                        ms: None,
                        bytes: None,
                    },
                    compaction: CompactionSettings {
                        run_bytes: 64 << rng.below(4),
                        object_bytes: 4096,
                        entry_bytes: 64 << rng.below(4),
                        min_age: Duration::ZERO,
                        max_lag: Duration::ZERO,
                    },
                    cleaner: CleanerSettings {
                        dedupe_bytes: silt_tiering::jobs::MAP_BYTES_PER_KEY * (1 + rng.below(6)),
                    },
                    tables: silt_tiering::jobs::TableSettings::default(),
                    gc: GcSettings {
                        grace: Duration::from_millis(rng.below(30)),
                        orphan_age: Duration::from_secs(3600),
                        batch: 1 + rng.below(4) as usize,
                    },
                };
                let jobs = Jobs::new(
                    agents[a].log.clone(),
                    world.bucket.clone(),
                    Arc::new(world.clock.clone()),
                    settings,
                    CLUSTER,
                    &agents[a].token,
                )
                .with_ids(world.ids.clone());
                let job = if compacted && rng.chance(0.4) {
                    Job::Cleaner
                } else if rng.chance(0.5) {
                    Job::Compaction
                } else {
                    Job::Gc
                };
                let budget = Budget {
                    time: Duration::from_secs(5),
                    bytes: 1 << 20,
                };
                // In the background, overlapping later steps; half of the
                // passes without the lock (a holder paused past its lease),
                // so that compactions race with each other too.
                let locked = rng.chance(0.5);
                job_passes.push(tokio::spawn(async move {
                    let r = if locked {
                        jobs.run(job, budget).await
                    } else {
                        jobs.run_unlocked(job, budget).await.map(Some)
                    };
                    match r {
                        Ok(Some(r)) => (
                            r.entries_compacted,
                            r.objects_deleted,
                            r.runs_refused,
                            r.records_cleaned,
                        ),
                        _ => (0, 0, 0, 0),
                    }
                }));
            }
            98 => {
                // A read in the middle of everything, through an agent
                // that may lag (its watch paused while compaction and GC
                // move and delete objects): it may fail, but whatever it
                // returns is what was acknowledged at those offsets.
                let partition = rng.below(world.partitions as u64) as i32;
                let from = agents[a]
                    .read
                    .position(TOPIC, partition)
                    .map_or(0, |p| p.log_start_offset);
                let read = tokio::time::timeout(
                    Duration::from_secs(5),
                    agents[a].read.read(
                        TOPIC,
                        partition,
                        from,
                        Limits {
                            max_bytes: 1 << 16,
                            min_one: true,
                        },
                    ),
                )
                .await;
                if let Ok(Ok(r)) = read {
                    stats.reads += 1;
                    let acks = acks.lock().unwrap();
                    for (offset, id) in values(&r.bytes) {
                        if let Some((p, base, n)) = acks.acked.get(&id) {
                            if *p == partition && offset >= from {
                                assert!(
                                    (*base..*base + *n as i64).contains(&offset),
                                    "seed {seed}: p{partition} offset {offset} holds record {id}, acknowledged at {base}"
                                );
                            }
                        }
                    }
                }
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
            }
        }
        world.clock.set(world.clock.now_ms() + rng.below(10) as i64);
    }
    // Heal, let every producer finish, and let every agent catch up.
    for a in &agents {
        a.watch.resume();
    }
    for p in pending {
        p.await.unwrap();
    }
    for j in job_passes {
        let (compacted, collected, refused, cleaned) = j.await.unwrap();
        stats.cleaned += cleaned;
        stats.compacted += compacted;
        stats.collected += collected;
        stats.refused += refused;
    }
    let _ = agents[0].log.checkpoint().await;
    if let Some(p) = current_pointer(&*meta).await {
        assert!(p >= pointer, "seed {seed}: checkpoint pointer moved back");
    }
    for a in &agents {
        assert!(
            a.log.catch_up(Duration::from_secs(60)).await,
            "seed {seed}: an agent never caught up"
        );
    }
    // The group's offset is the last one its coordinator committed: no
    // stale coordinator ever overwrote it.
    let stored = offsets
        .fetch(GROUP)
        .await
        .unwrap()
        .get(TOPIC)
        .and_then(|p| p.get(&0))
        .map(|c| c.offset);
    assert_eq!(
        stored, last_committed,
        "seed {seed}: the group's committed offset"
    );
    // Every producer task has finished: the answers are final.
    let mut acks = std::mem::take(&mut *acks.lock().unwrap());
    acks.sent
        .extend(txn_acks.records.iter().map(|(id, n)| (*id, *n)));
    stats.acked = acks.acked.len();
    stats.failed = acks.failed.len();
    stats.not_written = acks.not_written.len();
    check(seed, &world, &agents, &acks).await;
    if txn_run {
        stats.txn_runs = 1;
        stats.txn_committed = txn_acks
            .ended
            .values()
            .filter(|t| **t == Some(true))
            .count();
        stats.txn_aborted = txn_acks
            .ended
            .values()
            .filter(|t| **t == Some(false))
            .count();
        check_transactions(seed, &world, &agents, &txn_acks, &txn).await;
    }
    for a in agents {
        a.shutdown.cancel();
        let _ = a.done.await;
        a.log.close();
    }
    admin.close();
    stats
}

/// One step of the transactional producer through agent `a`: InitProducerId,
/// begin, add a partition and write to it, or end (commit or abort).
#[allow(clippy::too_many_arguments)]
async fn txn_step(
    rng: &mut Rng,
    world: &World,
    agents: &[Agent],
    a: usize,
    topic_config: &silt_coordinator::TopicConfig,
    txn: &mut TxnClient,
    acks: &mut TxnAcks,
    next_id: &mut u64,
) {
    use crate::txn::TxnError;
    let wait = Duration::from_secs(20);
    let agent = &agents[a];
    let Some((pid, epoch)) = txn.pid else {
        // InitProducerId: aborts (and fences) a transaction left open.
        if let Ok(Ok(p)) = tokio::time::timeout(
            wait,
            agent
                .txns
                .init_producer_id(&agent.txn_ctx(), TXN_ID, 60_000, None),
        )
        .await
        {
            txn.pid = Some(p);
            txn.seq.clear();
            txn.open = None;
        }
        return;
    };
    let Some((instance, mut parts)) = txn.open.take() else {
        txn.next += 1;
        txn.open = Some((txn.next, BTreeSet::new()));
        acks.ended.insert(txn.next, None);
        return;
    };
    if rng.below(10) < 7 {
        let partition = rng.below(world.partitions as u64) as i32;
        if !parts.contains(&partition) {
            let added = tokio::time::timeout(
                wait,
                agent.txns.add_partitions(
                    &agent.txn_ctx(),
                    TXN_ID,
                    pid,
                    epoch,
                    &[silt_coordinator::records::TxnPartition {
                        topic: world.topic,
                        partition,
                    }],
                ),
            )
            .await;
            match added {
                Ok(Ok(())) => {
                    parts.insert(partition);
                }
                Ok(Err(TxnError::Fenced(_))) => {
                    txn.pid = None;
                    return;
                }
                // No answer: added or not, the producer goes on later.
                _ => {
                    txn.open = Some((instance, parts));
                    return;
                }
            }
        }
        let records = 1 + rng.below(3) as i32;
        let id = *next_id;
        *next_id += 1;
        let seq = *txn.seq.entry(partition).or_insert(0);
        let data = transactional(keyed_batch(
            records,
            1,
            &id.to_be_bytes(),
            Some((pid, epoch, seq)),
            |i| world.compacted.then(|| key_of(id, i as i64)),
        ));
        let v = validate(
            Bytes::from(data),
            topic_config,
            crate::produce::Limits::new(1_048_588, 0),
        )
        .unwrap();
        acks.sent.insert(id, instance);
        acks.records.insert(id, records as u32);
        // Retried with the same sequence through other agents.
        for t in 0..3 {
            let p = agents[(a + t) % agents.len()].producer.clone();
            let append = PartitionAppend {
                topic: world.topic,
                partition,
                data: v.data.clone(),
                batches: v.batches.clone(),
                min_timestamp: v.min_timestamp,
            };
            // Not bounded here: the write path answers every append (a
            // dropped wait would leave it to commit after the checks).
            let got = p.submit(vec![append]).await.await;
            match &got[0] {
                Ok(base) => {
                    acks.acked
                        .insert(id, (instance, partition, *base, records as u32));
                    txn.seq.insert(partition, seq.wrapping_add(records));
                    txn.open = Some((instance, parts));
                    return;
                }
                Err(crate::produce::AppendError::InvalidTxnState)
                | Err(crate::produce::AppendError::InvalidProducerEpoch) => break,
                _ => {}
            }
        }
        // Refused or unknown: this producer instance starts over (its
        // InitProducerId aborts the transaction if it is still open).
        txn.pid = None;
        return;
    }
    let commit = rng.below(3) < 2;
    let mut told = None;
    for t in 0..3 {
        let agent = &agents[(a + t) % agents.len()];
        let ended = tokio::time::timeout(
            wait,
            agent.txns.end(
                &agent.txn_ctx(),
                TXN_ID,
                pid,
                epoch,
                commit,
                crate::txn::EndOpts::default(),
            ),
        )
        .await;
        match ended {
            Ok(Ok(())) => {
                told = Some(commit);
                break;
            }
            Ok(Err(TxnError::Fenced(_))) | Ok(Err(TxnError::InvalidState(_))) => break,
            _ => {}
        }
    }
    acks.ended.insert(instance, told);
    if told.is_none() {
        // Ended or not, the next InitProducerId settles it.
        txn.pid = None;
    }
}

/// The transactional producer's rules, read `read_committed` through a
/// fresh agent: every transaction whole or absent; acknowledged commits
/// present; acknowledged aborts, and transactions still open, absent.
async fn check_transactions(
    seed: u64,
    world: &World,
    agents: &[Agent],
    acks: &TxnAcks,
    txn: &TxnClient,
) {
    let fresh_log = MetaLog::open(
        world.meta.clone(),
        world.bucket.clone(),
        CLUSTER,
        "txn-checker",
    )
    .await
    .unwrap();
    let fresh = ReadPath::new(
        fresh_log.clone(),
        ObjectReader::new(world.bucket.clone(), Arc::new(NoCache::default()), 4096),
    );
    let mut visible = BTreeSet::new();
    for p in 0..world.partitions {
        let ids = read_committed_ids(&fresh, p, seed).await;
        for (i, a) in agents.iter().enumerate() {
            assert_eq!(
                read_committed_ids(&a.read, p, seed).await,
                ids,
                "seed {seed}: agent {i} reads p{p} read_committed differently"
            );
        }
        visible.extend(ids);
    }
    let still_open = txn.open.as_ref().map(|(i, _)| *i);
    for (instance, told) in &acks.ended {
        let sent: Vec<u64> = acks
            .sent
            .iter()
            .filter(|(_, i)| *i == instance)
            .map(|(id, _)| *id)
            .collect();
        let acked: Vec<u64> = acks
            .acked
            .iter()
            .filter(|(_, (i, ..))| i == instance)
            .map(|(id, _)| *id)
            .collect();
        let seen: Vec<u64> = sent
            .iter()
            .copied()
            .filter(|id| visible.contains(id))
            .collect();
        if !seen.is_empty() {
            for id in &acked {
                assert!(
                    visible.contains(id),
                    "seed {seed}: transaction {instance} is partly visible: {seen:?} but not its acknowledged record {id}"
                );
            }
        }
        match told {
            Some(true) => assert!(
                acked.is_empty() || !seen.is_empty(),
                "seed {seed}: transaction {instance} was acknowledged committed but none of {acked:?} is visible"
            ),
            Some(false) => assert!(
                seen.is_empty(),
                "seed {seed}: transaction {instance} was acknowledged aborted but {seen:?} are visible"
            ),
            None if still_open == Some(*instance) && txn.pid.is_some() => {
                // Still open unless something ended it meanwhile (no end
                // was answered): its records are past the stable offset.
                let open = fresh_log
                    .state()
                    .transaction(TXN_ID)
                    .is_some_and(|t| t.state == silt_coordinator::state::TxnState::Ongoing);
                if open {
                    assert!(
                        seen.is_empty(),
                        "seed {seed}: transaction {instance} is open but {seen:?} are visible"
                    );
                }
            }
            None => {}
        }
    }
    fresh_log.close();
}

async fn current_pointer(meta: &dyn MetaStore) -> Option<i64> {
    let kv = meta.get(&Layout::new(CLUSTER).checkpoint()).await.ok()??;
    let v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
    v["revision"].as_i64()
}

async fn check(seed: u64, world: &World, agents: &[Agent], acks: &Acks) {
    // A fresh agent, loaded from the checkpoint and the log.
    let fresh_log = MetaLog::open(world.meta.clone(), world.bucket.clone(), CLUSTER, "checker")
        .await
        .unwrap();
    let fresh = ReadPath::new(
        fresh_log.clone(),
        ObjectReader::new(world.bucket.clone(), Arc::new(NoCache::default()), 4096),
    );
    let mut views = Vec::new();
    for p in 0..world.partitions {
        views.push(read_all(&fresh, p, seed).await);
    }
    for (i, a) in agents.iter().enumerate() {
        assert_eq!(
            *a.log.state(),
            *fresh_log.state(),
            "seed {seed}: agent {i}'s state differs from a fresh load"
        );
        for p in 0..world.partitions {
            assert_eq!(
                read_all(&a.read, p, seed).await,
                views[p as usize],
                "seed {seed}: agent {i} reads p{p} differently"
            );
        }
    }
    for (p, (hwm, records)) in views.iter().enumerate() {
        // Dense from the log start (0: nothing is deleted here), unless
        // the cleaner removed records.
        let offsets: Vec<i64> = records.keys().copied().collect();
        if !world.compacted {
            assert_eq!(
                offsets,
                (0..*hwm).collect::<Vec<_>>(),
                "seed {seed}: p{p} offsets not dense"
            );
        }
        assert!(
            offsets.last().is_none_or(|o| o < hwm),
            "seed {seed}: p{p}: offsets beyond the high watermark"
        );
        // No id twice in a partition.
        let mut seen = BTreeMap::new();
        for (offset, (id, _)) in records {
            if *id == MARKER {
                continue;
            }
            let first = *seen.entry(*id).or_insert(*offset);
            let n = acks.sent.get(id).copied().unwrap_or(1);
            assert!(
                *offset < first + n as i64,
                "seed {seed}: p{p}: record {id} at {first} and again at {offset}"
            );
        }
    }
    // An append refused for a lapsed registration was not written, not
    // even by an agent that went on believing it was registered.
    for (p, (_, records)) in views.iter().enumerate() {
        for (offset, (id, _)) in records {
            assert!(
                !acks.not_written.contains(id),
                "seed {seed}: p{p} offset {offset} holds record {id}, refused as not written"
            );
        }
    }
    for (id, (p, base, n)) in &acks.acked {
        let (_, records) = &views[*p as usize];
        for o in *base..*base + *n as i64 {
            let key = world.compacted.then(|| key_of(*id, o - base));
            match records.get(&o) {
                Some(got) => assert_eq!(
                    got,
                    &(*id, key),
                    "seed {seed}: p{p} offset {o} holds another record than {id}"
                ),
                // Removed by the cleaner: a later record of its key is there.
                None if world.compacted => assert!(
                    records.range(o + 1..).any(|(_, (_, k))| *k == key),
                    "seed {seed}: acknowledged record {id} at p{p} offset {o} is gone, and no later record of its key {key:?} is there"
                ),
                None => panic!("seed {seed}: acknowledged record {id} is not at p{p} offset {o}"),
            }
        }
    }
    fresh_log.close();
}

fn replay_hint(seed: u64) -> String {
    format!("SILT_SIM_SEED={seed} cargo test -p silt-agent --lib sim::")
}

#[test]
fn many_seeded_runs_keep_every_acknowledged_write() {
    let seeds: Vec<u64> = match std::env::var("SILT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SILT_SIM_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("SILT_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(2000);
            (1..=n).collect()
        }
    };
    let mut total = Stats::default();
    for seed in seeds {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(run(seed))));
        match result {
            Ok(s) => {
                total.acked += s.acked;
                total.failed += s.failed;
                total.checkpoints += s.checkpoints;
                total.restarts += s.restarts;
                total.pauses += s.pauses;
                total.claims += s.claims;
                total.fenced += s.fenced;
                total.lapses += s.lapses;
                total.not_written += s.not_written;
                total.compacted += s.compacted;
                total.collected += s.collected;
                total.reads += s.reads;
                total.refused += s.refused;
                total.compacted_runs += s.compacted_runs;
                total.cleaned += s.cleaned;
                total.txn_runs += s.txn_runs;
                total.txn_steps += s.txn_steps;
                total.txn_committed += s.txn_committed;
                total.txn_aborted += s.txn_aborted;
            }
            Err(e) => {
                eprintln!("simulation failed; replay with: {}", replay_hint(seed));
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!("simulation totals: {total:?}");
    // A run that acknowledged nothing or injected nothing proves nothing.
    assert!(total.acked > 0, "{total:?}");
    if std::env::var("SILT_SIM_SEED").is_err() {
        assert!(
            total.failed > 0
                && total.checkpoints > 0
                && total.restarts > 0
                && total.claims > 0
                && total.fenced > 0
                && total.lapses > 0
                && total.not_written > 0
                && total.compacted > 0
                && total.collected > 0
                && total.reads > 0
                && total.cleaned > 0
                && total.txn_committed > 0
                && total.txn_aborted > 0,
            "{total:?}"
        );
    }
}
