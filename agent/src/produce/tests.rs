//! The write path on in-memory parts: order and offsets across seals,
//! failures answered with retriable errors, the shutdown flush, and
//! back-pressure.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::{
    memory::InMemory, path::Path, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    PutMultipartOptions, PutResult,
};
use silt_coordinator::{faulty::LosesAnswers, keys::Layout, EmbeddedStore, MetaStore};
use silt_tiering::{
    batch::simple_batch,
    store::{FaultConfig, Faulty},
    NoCache,
};
use tokio::sync::Semaphore;

use super::*;
use crate::{clock::ManualClock, topics::Topics};

const TOPIC: &str = "t";

struct Rig {
    producer: Producer,
    done: JoinHandle<()>,
    shutdown: CancellationToken,
    log: Arc<MetaLog>,
    topic: TopicId,
}

fn config(flush_interval: Duration, flush_bytes: u64, inflight: u32) -> ProduceConfig {
    ProduceConfig {
        flush_interval,
        flush_bytes,
        max_inflight_bytes: inflight,
        max_concurrent_uploads: 4,
        max_commit_record_bytes: 512 * 1024,
    }
}

/// A rig whose pipeline commits through `meta`; the topic is created
/// through `setup`, a view of the same store without faults.
async fn rig_on(
    config: ProduceConfig,
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    setup: Arc<dyn MetaStore>,
) -> Rig {
    let admin = MetaLog::open(setup, Arc::new(InMemory::new()), "c", "admin")
        .await
        .unwrap();
    let topic = Topics::new(admin, false, 1)
        .create(TOPIC, 300, Default::default(), false)
        .await
        .unwrap()
        .id;
    let log = MetaLog::open(meta, Arc::new(InMemory::new()), "c", "w")
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let reader = ObjectReader::new(store.clone(), Arc::new(NoCache::default()), 4096);
    let (producer, done) = Producer::start(
        config,
        Pipeline {
            store,
            log: log.clone(),
            reader,
            clock: Arc::new(ManualClock::new(1_000)),
            ids: Arc::new(silt_tiering::segment::RandomIds),
        },
        shutdown.clone(),
    );
    Rig {
        producer,
        done,
        shutdown,
        log,
        topic,
    }
}

async fn rig(config: ProduceConfig) -> Rig {
    let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
    rig_on(config, Arc::new(InMemory::new()), meta.clone(), meta).await
}

/// One partition append of `batches` batches of `records` records each.
fn append(topic: TopicId, partition: i32, batches: usize, records: i32) -> PartitionAppend {
    append_as(topic, partition, batches, records, None)
}

fn append_as(
    topic: TopicId,
    partition: i32,
    batches: usize,
    records: i32,
    producer: Option<(i64, i16, i32)>,
) -> PartitionAppend {
    let mut data = Vec::new();
    for b in 0..batches {
        let p = producer.map(|(id, epoch, seq)| (id, epoch, seq + (b as i32) * records));
        data.extend(simple_batch(records, 1_000, b"value", p));
    }
    validate::validate(Bytes::from(data), &Default::default(), Default::default())
        .map(|v| PartitionAppend {
            topic,
            partition,
            data: v.data,
            batches: v.batches,
            min_timestamp: v.min_timestamp,
        })
        .unwrap()
}

fn hwm(log: &MetaLog, partition: i32) -> i64 {
    log.state()
        .partition(TOPIC, partition)
        .unwrap()
        .high_watermark
}

#[tokio::test]
async fn offsets_are_dense_and_in_submit_order_across_seals() {
    // Every submit seals a segment of its own (flush_bytes is tiny) and
    // several uploads run at once; commits still follow submit order.
    let r = rig(config(Duration::from_secs(3600), 1, 1 << 20)).await;
    let mut pending = Vec::new();
    for i in 0..20 {
        let parts = vec![
            append(r.topic, 0, 1 + i % 3, 2),
            append(r.topic, 1, 1, 5),
            append(r.topic, 0, 1, 1),
        ];
        pending.push(r.producer.submit(parts).await);
    }
    let mut next = [0i64; 2];
    for (i, p) in pending.into_iter().enumerate() {
        let got = p.await;
        let first = 2 * (1 + i % 3) as i64;
        assert_eq!(
            got,
            vec![Ok(next[0]), Ok(next[1]), Ok(next[0] + first)],
            "submit {i}"
        );
        next[0] += first + 1;
        next[1] += 5;
    }
    assert_eq!((hwm(&r.log, 0), hwm(&r.log, 1)), (next[0], next[1]));
    r.shutdown.cancel();
    r.done.await.unwrap();
}

/// A segment sealed before the commit horizon (object GC may have taken
/// its upload for an orphan) is refused with a retriable storage error and
/// nothing of it is visible; later segments commit.
#[tokio::test]
async fn a_commit_behind_the_horizon_is_refused_and_retriable() {
    let r = rig(config(Duration::from_secs(3600), 1, 1 << 20)).await;
    // Another agent, whose clock says 5,000 ms, committed (the horizon
    // never passes the newest commit)...
    r.log
        .propose(Command::Commit {
            object: "segments/other".into(),
            size: 100,
            chunks: vec![ChunkRef {
                topic: r.topic,
                partition: 1,
                position: 0,
                length: 10,
                records: 1,
                max_timestamp: 0,
                append_time: 5_000,
                batches: vec![],
            }],
        })
        .await
        .unwrap();
    // ...and GC fenced everything before 2,000; the rig's clock says 1,000.
    r.log
        .propose(Command::ForgetObjects {
            horizon_key: false,
            time: 5_000,
            horizon: 2_000,
            objects: vec![],
        })
        .await
        .unwrap();
    let got = r
        .producer
        .submit(vec![append(r.topic, 0, 1, 3)])
        .await
        .await;
    assert!(
        matches!(&got[..], [Err(e)] if e.kind() == ErrorKind::StorageUnavailable),
        "{got:?}"
    );
    assert_eq!(hwm(&r.log, 0), 0);
    r.shutdown.cancel();
    r.done.await.unwrap();
}

#[tokio::test]
async fn batches_sealed_together_get_consecutive_offsets() {
    let r = rig(config(Duration::from_millis(20), 1 << 30, 1 << 20)).await;
    let a = r.producer.submit(vec![append(r.topic, 2, 3, 4)]).await;
    let b = r.producer.submit(vec![append(r.topic, 2, 1, 7)]).await;
    assert_eq!(a.await, vec![Ok(0)]);
    assert_eq!(b.await, vec![Ok(12)]);
    assert_eq!(hwm(&r.log, 2), 19);
    r.shutdown.cancel();
    r.done.await.unwrap();
}

#[tokio::test]
async fn failed_upload_is_a_retriable_error_and_commits_nothing() {
    let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
    let failing: Arc<dyn ObjectStore> = Arc::new(Faulty::new(
        Arc::new(InMemory::new()),
        FaultConfig {
            put_error_rate: 1.0,
            seed: 3,
            ..Default::default()
        },
    ));
    let r = rig_on(
        config(Duration::from_millis(10), 1 << 30, 1 << 20),
        failing,
        meta.clone(),
        meta,
    )
    .await;
    let got = r
        .producer
        .submit(vec![append(r.topic, 0, 1, 3), append(r.topic, 1, 1, 3)])
        .await
        .await;
    assert_eq!(got.len(), 2);
    for g in got {
        let e = g.unwrap_err();
        assert!(matches!(e, AppendError::Upload(_)), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::StorageUnavailable);
        assert!(e.kind().kafka().is_retriable());
    }
    assert_eq!((hwm(&r.log, 0), hwm(&r.log, 1)), (0, 0));
    r.shutdown.cancel();
    r.done.await.unwrap();
}

#[tokio::test]
async fn a_retry_after_a_lost_commit_answer_keeps_its_first_offset() {
    // Every commit is written but its answer is lost: the producer hears
    // a retriable error although its batch is in the log.
    let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
    let lossy: Arc<dyn MetaStore> = Arc::new(LosesAnswers::new(
        meta.clone(),
        Layout::new("c").log(),
        1.0,
        5,
    ));
    let r = rig_on(
        config(Duration::from_millis(10), 1 << 30, 1 << 20),
        Arc::new(InMemory::new()),
        lossy,
        meta.clone(),
    )
    .await;
    let idem = |seq| append_as(r.topic, 0, 1, 4, Some((42, 0, seq)));
    let first = r.producer.submit(vec![idem(0)]).await.await;
    let e = first[0].clone().unwrap_err();
    assert!(matches!(e, AppendError::Commit(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::MetadataTimeout);
    // The record was applied all the same.
    r.log
        .subscribe()
        .wait_for(|_| hwm(&r.log, 0) == 4)
        .await
        .unwrap();
    // Its retry (same producer, epoch and sequence) is a duplicate: no new
    // offsets. The answer is lost again, so read the state.
    let _ = r.producer.submit(vec![idem(0)]).await.await;
    let now = meta
        .range(silt_coordinator::metastore::KeyRange::Key("x".into()))
        .await
        .unwrap()
        .revision;
    r.log.subscribe().wait_for(|a| *a >= now).await.unwrap();
    assert_eq!(hwm(&r.log, 0), 4, "the retry was deduplicated");
    // The next batch follows at once.
    let _ = r.producer.submit(vec![idem(4)]).await.await;
    r.log
        .subscribe()
        .wait_for(|_| hwm(&r.log, 0) == 8)
        .await
        .unwrap();
    r.shutdown.cancel();
    r.done.await.unwrap();
}

#[tokio::test]
async fn shutdown_flushes_and_answers_every_waiter() {
    // Nothing would seal for an hour; the shutdown seals at once.
    let r = rig(config(Duration::from_secs(3600), 1 << 30, 1 << 20)).await;
    let mut pending = Vec::new();
    for i in 0..50 {
        pending.push(r.producer.submit(vec![append(r.topic, i % 4, 1, 1)]).await);
    }
    r.shutdown.cancel();
    let answers = futures::future::join_all(pending).await;
    assert!(
        answers.iter().all(|a| a.len() == 1 && a[0].is_ok()),
        "{answers:?}"
    );
    let total: i64 = (0..4).map(|p| hwm(&r.log, p)).sum();
    assert_eq!(total, 50);
    tokio::time::timeout(Duration::from_secs(10), r.done)
        .await
        .expect("the pipeline stops after the flush")
        .unwrap();
    // Later submits are refused, retriably.
    let late = r
        .producer
        .submit(vec![append(r.topic, 0, 1, 1)])
        .await
        .await;
    assert_eq!(late, vec![Err(AppendError::ShuttingDown)]);
    assert!(AppendError::ShuttingDown.kind().kafka().is_retriable());
}

/// A bucket whose PUTs wait for a permit: uploads stay in flight until the
/// test lets them through.
#[derive(Debug)]
struct Gated {
    inner: InMemory,
    gate: Arc<Semaphore>,
}

impl fmt::Display for Gated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gated")
    }
}

#[async_trait]
impl ObjectStore for Gated {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.gate.acquire().await.expect("gate open").forget();
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_full_byte_budget_holds_producers_back() {
    let gate = Arc::new(Semaphore::new(0));
    let store = Arc::new(Gated {
        inner: InMemory::new(),
        gate: gate.clone(),
    });
    let one = append(r_topic_placeholder(), 0, 1, 1).data.len() as u32;
    let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
    let r = rig_on(
        // Room for two appends in flight.
        config(Duration::from_millis(5), 1 << 30, 2 * one),
        store,
        meta.clone(),
        meta,
    )
    .await;
    let first = r.producer.submit(vec![append(r.topic, 0, 1, 1)]).await;
    let second = r.producer.submit(vec![append(r.topic, 0, 1, 1)]).await;
    // The budget is spent while their upload waits at the gate: a third
    // producer waits before it is queued.
    let third = tokio::time::timeout(
        Duration::from_millis(300),
        r.producer.submit(vec![append(r.topic, 0, 1, 1)]),
    )
    .await;
    assert!(third.is_err(), "the third submit should wait for budget");
    // Let the uploads through: the first two commit and free the budget.
    gate.add_permits(100);
    assert_eq!(first.await, vec![Ok(0)]);
    assert_eq!(second.await, vec![Ok(1)]);
    let third = tokio::time::timeout(
        Duration::from_secs(10),
        r.producer.submit(vec![append(r.topic, 0, 1, 1)]),
    )
    .await
    .expect("budget is free again");
    assert_eq!(third.await, vec![Ok(2)]);
    r.shutdown.cancel();
    r.done.await.unwrap();
}

/// Sizes do not depend on the topic id.
fn r_topic_placeholder() -> TopicId {
    TopicId([0; 16])
}

/// Defect: thousands of partitions (or of idempotent batches) in one flush
/// made a commit record above etcd's request limit, and the commit failed
/// for every producer in it, forever.
#[tokio::test]
async fn commit_records_stay_under_their_bound() {
    let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
    let bound = 16 * 1024;
    let r = rig_on(
        ProduceConfig {
            max_commit_record_bytes: bound,
            ..config(Duration::from_millis(20), 1 << 30, 1 << 24)
        },
        Arc::new(InMemory::new()),
        meta.clone(),
        meta.clone(),
    )
    .await;
    // One request with 300 partitions, and idempotent producers with many
    // batches each, all within one flush interval.
    let wide: Vec<_> = (0..300).map(|p| append(r.topic, p, 1, 1)).collect();
    let wide = r.producer.submit(wide).await;
    let mut idem = Vec::new();
    for pid in 0..20 {
        idem.push(
            r.producer
                .submit(vec![append_as(
                    r.topic,
                    pid,
                    30,
                    1,
                    Some((pid as i64, 0, 0)),
                )])
                .await,
        );
    }
    assert!(wide.await.iter().all(|r| *r == Ok(0)));
    for (pid, i) in idem.into_iter().enumerate() {
        assert_eq!(i.await, vec![Ok(1)], "producer {pid}");
    }
    let log = meta
        .range(silt_coordinator::metastore::KeyRange::Prefix(
            Layout::new("c").log(),
        ))
        .await
        .unwrap();
    let commits: Vec<_> = log
        .kvs
        .iter()
        .filter(|kv| kv.value.starts_with(b"{\"v\":1,\"op\":\"commit\""))
        .collect();
    assert!(
        commits.len() > 2,
        "the flush was split into several segments"
    );
    for kv in commits {
        assert!(
            kv.value.len() <= bound,
            "commit record of {} bytes exceeds {bound}",
            kv.value.len()
        );
    }
    r.shutdown.cancel();
    r.done.await.unwrap();
}

/// A batch whose header claims `records` records, with a valid CRC.
fn claiming(records: i32) -> Bytes {
    let mut b = simple_batch(1, 1_000, b"v", None);
    b[23..27].copy_from_slice(&(records - 1).to_be_bytes()); // lastOffsetDelta
    b[57..61].copy_from_slice(&records.to_be_bytes()); // record count
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// Defect: one batch claiming two billion records (a hostile
/// lastOffsetDelta) made the whole chunk unacceptable, failing every other
/// producer's batches for that partition in the same flush.
#[tokio::test]
async fn a_hostile_record_count_fails_only_its_own_request() {
    let e = validate::validate(claiming(i32::MAX), &Default::default(), Default::default())
        .unwrap_err();
    assert!(matches!(e, AppendError::InvalidRecord(_)), "{e:?}");
    assert_eq!(e.code(), 87);
    // lastOffsetDelta and the record count must agree.
    let mut b = simple_batch(2, 1_000, b"v", None);
    b[23..27].copy_from_slice(&5i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        validate::validate(Bytes::from(b), &Default::default(), Default::default()),
        Err(AppendError::InvalidRecord(_))
    ));
    // A plausible count passes.
    validate::validate(claiming(1), &Default::default(), Default::default()).unwrap();
}

/// A commit applied while this process caught up through a checkpoint has
/// no kept outcome; where its chunks landed is read from the index, so the
/// records are answered as committed (not as a retriable failure a client
/// would resend, duplicating them).
#[tokio::test]
async fn a_commit_whose_outcome_was_lost_to_a_reload_is_placed_from_the_index() {
    let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
    let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let log = MetaLog::open(meta, objects, "c", "w-1").await.unwrap();
    let topic = TopicId([9; 16]);
    log.propose(Command::CreateTopic {
        name: "t".into(),
        id: topic,
        partitions: 2,
        config: Default::default(),
    })
    .await
    .unwrap();
    let chunk = |partition: i32, position: u64, records: u64| ChunkMeta {
        topic_id: topic.0,
        partition,
        position,
        length: 100,
        records,
        min_timestamp: 1,
        max_timestamp: 2,
        batches: vec![],
    };
    let commit = |object: &str, chunks: &[ChunkMeta]| Command::Commit {
        object: object.into(),
        size: 1000,
        chunks: chunks
            .iter()
            .map(|c| ChunkRef {
                topic,
                partition: c.partition,
                position: c.position,
                length: c.length,
                records: c.records,
                max_timestamp: c.max_timestamp,
                append_time: 0,
                batches: vec![],
            })
            .collect(),
    };
    let first = [chunk(0, 0, 3), chunk(1, 100, 4)];
    let second = [chunk(0, 0, 5), chunk(1, 100, 1)];
    log.propose(commit("segments/a.silt", &first))
        .await
        .unwrap();
    let answered = log
        .propose(commit("segments/b.silt", &second))
        .await
        .unwrap();
    let Outcome::Committed(bases) = answered else {
        panic!("{answered:?}")
    };
    assert_eq!(
        placed_in_index(&log.state(), "segments/b.silt", &second),
        Some(bases),
        "the index gives what the commit answered"
    );
    assert_eq!(
        placed_in_index(&log.state(), "segments/b.silt", &second)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                ChunkOutcome::Appended { base } => base,
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    // Not committed, or not whole: no answer from the index.
    assert_eq!(
        placed_in_index(&log.state(), "segments/c.silt", &second),
        None
    );
    assert_eq!(
        placed_in_index(&log.state(), "segments/b.silt", &[chunk(0, 0, 6)]),
        None
    );
}

/// Data is accepted only while the agent is registered, and a segment
/// commits only if the registration it was accepted under still exists
/// unbroken: an agent whose registration lapsed (other agents may have
/// dropped it from Metadata, and clients sent its in-flight batches
/// elsewhere) never commits them later.
#[tokio::test]
async fn commits_are_fenced_on_the_registration_they_were_accepted_under() {
    let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
    let r = rig_on(
        config(Duration::from_millis(500), 1 << 30, 1 << 20),
        Arc::new(InMemory::new()),
        meta.clone(),
        meta.clone(),
    )
    .await;
    let key = "/silt/c/agents/a1".to_string();
    let created = meta
        .put(&key, Bytes::from_static(b"a1"), None)
        .await
        .unwrap();
    let registration = Arc::new(std::sync::Mutex::new(Some((key.clone(), created))));
    {
        let reg = registration.clone();
        r.producer
            .set_fence(Arc::new(move || reg.lock().unwrap().clone()));
    }
    // Accepted under the registration, which lapses before the commit.
    let pending = r.producer.submit(vec![append(r.topic, 0, 1, 3)]).await;
    meta.delete(silt_coordinator::metastore::KeyRange::Key(key.clone()))
        .await
        .unwrap();
    let got = pending.await;
    assert!(
        matches!(got.as_slice(), [Err(AppendError::NotRegistered(_))]),
        "{got:?}"
    );
    assert_eq!(hwm(&r.log, 0), 0, "nothing of it was committed");

    // Not registered: refused at once.
    *registration.lock().unwrap() = None;
    let got = r
        .producer
        .submit(vec![append(r.topic, 0, 1, 3)])
        .await
        .await;
    assert!(
        matches!(got.as_slice(), [Err(AppendError::NotRegistered(_))]),
        "{got:?}"
    );

    // Registered again (a new key): accepted and committed.
    let again = meta
        .put(&key, Bytes::from_static(b"a1"), None)
        .await
        .unwrap();
    *registration.lock().unwrap() = Some((key.clone(), again));
    let got = r
        .producer
        .submit(vec![append(r.topic, 0, 1, 3)])
        .await
        .await;
    assert_eq!(got, vec![Ok(0)]);
    // An overwrite of the same key (a leaving mark, a new lease over a
    // surviving key) keeps the fence.
    meta.put(&key, Bytes::from_static(b"a1 leaving"), None)
        .await
        .unwrap();
    let got = r
        .producer
        .submit(vec![append(r.topic, 0, 1, 3)])
        .await
        .await;
    assert_eq!(got, vec![Ok(3)]);
    assert_eq!(hwm(&r.log, 0), 6);
    r.shutdown.cancel();
    r.done.await.unwrap();
}
