//! The read path on in-memory parts: offsets rewritten, byte limits,
//! LogAppendTime, errors, timestamp lookups and long polls woken per
//! partition.

use std::time::Duration;

use object_store::{memory::InMemory, ObjectStore};
use silt_coordinator::EmbeddedStore;
use silt_tiering::{batch::simple_batch, NoCache};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    clock::ManualClock,
    produce::{validate, PartitionAppend, Pipeline, ProduceConfig, Producer},
    topics::Topics,
};

struct Rig {
    read: ReadPath,
    producer: Producer,
    topics: Topics,
    clock: ManualClock,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn rig() -> Rig {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let log = MetaLog::open(
        Arc::new(EmbeddedStore::in_memory()),
        store.clone(),
        "c",
        "w",
    )
    .await
    .unwrap();
    let reader = ObjectReader::new(store.clone(), Arc::new(NoCache::default()), 4096);
    let clock = ManualClock::new(1_000);
    let shutdown = CancellationToken::new();
    let (producer, _done) = Producer::start(
        ProduceConfig {
            flush_interval: Duration::from_millis(5),
            flush_bytes: 1 << 30,
            max_inflight_bytes: 1 << 24,
            max_concurrent_uploads: 2,
            max_commit_record_bytes: 512 * 1024,
        },
        Pipeline {
            store,
            log: log.clone(),
            reader: reader.clone(),
            clock: Arc::new(clock.clone()),
            ids: Arc::new(silt_tiering::segment::RandomIds),
        },
        shutdown.clone(),
    );
    Rig {
        read: ReadPath::new(log.clone(), reader),
        producer,
        topics: Topics::new(log, false, 1),
        clock,
        _shutdown: shutdown.drop_guard(),
    }
}

impl Rig {
    async fn topic(&self, name: &str, log_append_time: bool) -> TopicId {
        let mut config = std::collections::BTreeMap::new();
        if log_append_time {
            config.insert("message.timestamp.type".into(), "LogAppendTime".into());
        }
        self.topics.create(name, 2, config, false).await.unwrap().id
    }

    /// Produces one append of `batches` batches of `records` records at
    /// timestamp `ts`; returns its base offset.
    async fn produce(
        &self,
        topic: TopicId,
        partition: i32,
        batches: usize,
        records: i32,
        ts: i64,
    ) -> i64 {
        let mut data = Vec::new();
        for _ in 0..batches {
            data.extend(simple_batch(records, ts, &[7u8; 100], None));
        }
        let v = validate(Bytes::from(data), &Default::default(), Default::default()).unwrap();
        let got = self
            .producer
            .submit(vec![PartitionAppend {
                topic,
                partition,
                data: v.data,
                batches: v.batches,
                min_timestamp: v.min_timestamp,
            }])
            .await
            .await;
        got[0].clone().unwrap()
    }
}

/// (base offset, record count, max timestamp, attributes) of each batch.
fn batches(bytes: &[u8]) -> Vec<(i64, u32, i64, i16)> {
    batch::parse_all(bytes)
        .unwrap()
        .into_iter()
        .scan(0usize, |at, h| {
            let base = i64::from_be_bytes(bytes[*at..*at + 8].try_into().unwrap());
            *at += h.size as usize;
            Some((base, h.record_count(), h.max_timestamp, h.attributes))
        })
        .collect()
}

const ALL: Limits = Limits {
    max_bytes: usize::MAX,
    min_one: true,
};

#[tokio::test]
async fn reads_rewrite_offsets_and_respect_limits() {
    let r = rig().await;
    let t = r.topic("t", false).await;
    assert_eq!(r.produce(t, 0, 2, 3, 10).await, 0);
    assert_eq!(r.produce(t, 0, 1, 4, 20).await, 6);
    assert_eq!(r.produce(t, 1, 1, 1, 30).await, 0);

    let all = r.read.read("t", 0, 0, ALL).await.unwrap();
    assert_eq!((all.high_watermark, all.log_start_offset), (10, 0));
    assert_eq!(
        batches(&all.bytes)
            .iter()
            .map(|b| (b.0, b.1))
            .collect::<Vec<_>>(),
        vec![(0, 3), (3, 3), (6, 4)]
    );
    // The CRC still holds after the rewrite (it does not cover the offset).
    batch::parse_all(&all.bytes).unwrap();

    // From the middle of a batch: that whole batch and what follows.
    let mid = r.read.read("t", 0, 4, ALL).await.unwrap();
    assert_eq!(batches(&mid.bytes)[0].0, 3);

    // A limit below one batch: one batch when it is the first data of the
    // response, nothing otherwise.
    let tiny = Limits {
        max_bytes: 1,
        min_one: true,
    };
    assert_eq!(
        batches(&r.read.read("t", 0, 0, tiny).await.unwrap().bytes).len(),
        1
    );
    let none = Limits {
        max_bytes: 0,
        min_one: false,
    };
    assert!(r.read.read("t", 0, 0, none).await.unwrap().bytes.is_empty());
    // A limit of two batches' bytes.
    let one_batch = batches(&r.read.read("t", 0, 0, tiny).await.unwrap().bytes);
    assert_eq!(one_batch.len(), 1);
    let two = r.read.read("t", 0, 0, tiny).await.unwrap().bytes.len() * 2;
    let got = r
        .read
        .read(
            "t",
            0,
            0,
            Limits {
                max_bytes: two,
                min_one: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(batches(&got.bytes).len(), 2);

    // At the high watermark: nothing, no error.
    assert!(r.read.read("t", 0, 10, ALL).await.unwrap().bytes.is_empty());
    // Beyond it, or unknown: errors with their Kafka codes.
    let e = r.read.read("t", 0, 11, ALL).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OffsetOutOfRange);
    let e = r.read.read("t", 5, 0, ALL).await.unwrap_err();
    assert_eq!(e.code(), 3);
    let e = r.read.read("nope", 0, 0, ALL).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownTopicOrPartition);
}

#[tokio::test]
async fn log_append_time_topics_carry_the_seal_time() {
    let r = rig().await;
    let t = r.topic("la", true).await;
    r.clock.set(1_700_000_000_123);
    r.produce(t, 0, 1, 2, 5).await;
    let got = r.read.read("la", 0, 0, ALL).await.unwrap();
    let b = batches(&got.bytes);
    assert_eq!(b[0].2, 1_700_000_000_123);
    assert_ne!(b[0].3 & 0x08, 0, "timestamp type bit set");
    // CreateTime topics keep the producer's timestamps.
    let c = r.topic("ct", false).await;
    r.produce(c, 0, 1, 2, 5).await;
    let got = r.read.read("ct", 0, 0, ALL).await.unwrap();
    assert_eq!(batches(&got.bytes)[0].2, 5);
}

#[tokio::test]
async fn offsets_for_timestamps() {
    let r = rig().await;
    let t = r.topic("ts", false).await;
    r.produce(t, 0, 1, 2, 100).await; // offsets 0-1
    r.produce(t, 0, 1, 2, 300).await; // 2-3
    r.produce(t, 0, 1, 2, 200).await; // 4-5
    let q = |ts| OffsetQuery::from_kafka(ts).unwrap();
    let at = |ts| r.read.offset_for("ts", 0, q(ts));
    assert_eq!(at(-1).await.unwrap(), Some((-1, 6)));
    assert_eq!(at(-2).await.unwrap(), Some((-1, 0)));
    assert_eq!(at(150).await.unwrap(), Some((300, 2)));
    assert_eq!(at(50).await.unwrap(), Some((100, 0)));
    // The first record holding the largest timestamp.
    assert_eq!(at(-3).await.unwrap(), Some((300, 2)));
    assert_eq!(at(999).await.unwrap(), None);
    assert_eq!(
        OffsetQuery::from_kafka(-7).unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    assert_eq!(
        r.read.offset_for("ts", 9, q(-1)).await.unwrap_err().kind(),
        ErrorKind::UnknownTopicOrPartition
    );
}

#[tokio::test]
async fn long_polls_wake_for_their_partition_only() {
    let r = Arc::new(rig().await);
    let t = r.topic("lp", false).await;
    let p0 = r.read.waiter([(t, 0)]);
    let p1 = r.read.waiter([(t, 1)]);
    let armed0 = p0.arm();
    let armed1 = p1.arm();
    // A change before anyone awaits is not missed.
    r.produce(t, 0, 1, 1, 1).await;
    tokio::time::timeout(Duration::from_secs(5), armed0.changed())
        .await
        .expect("partition 0 changed");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), armed1.changed())
            .await
            .is_err(),
        "partition 1 did not change"
    );
    // A waiter armed before a later append wakes for it.
    let armed1 = p1.arm();
    let r2 = r.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        r2.produce(t, 1, 1, 1, 1).await
    });
    tokio::time::timeout(Duration::from_secs(5), armed1.changed())
        .await
        .expect("partition 1 changed");
    assert_eq!(writer.await.unwrap(), 0);
    // Deleting the topic wakes every waiter.
    let armed0 = p0.arm();
    r.topics.delete("lp").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), armed0.changed())
        .await
        .expect("topic deletion wakes readers");
}

/// Defect: an agent whose watch lags answered OFFSET_OUT_OF_RANGE for an
/// offset a faster agent had already handed out.
#[tokio::test]
async fn a_lagging_agent_catches_up_before_calling_an_offset_out_of_range() {
    use silt_coordinator::{faulty::Pausable, MetaStore};
    let r = rig().await;
    let t = r.topic("lag", false).await;
    // A second agent's view of the same metadata store and bucket.
    let meta = r.read.log.store();
    let lagging_store = Arc::new(Pausable::new(meta));
    let lagging_log = MetaLog::open(
        lagging_store.clone() as Arc<dyn MetaStore>,
        Arc::new(InMemory::new()),
        "c",
        "lagging",
    )
    .await
    .unwrap();
    let lagging = ReadPath::new(lagging_log.clone(), r.read.reader.clone());
    assert!(lagging.position("lag", 0).is_ok());
    lagging_store.pause();
    r.produce(t, 0, 1, 3, 1).await;
    r.produce(t, 0, 1, 3, 1).await;
    assert_eq!(lagging.position("lag", 0).unwrap().high_watermark, 0);
    // Still paused: it cannot catch up, so it answers empty, not an error.
    let got = lagging.read("lag", 0, 3, ALL).await.unwrap();
    assert!(got.bytes.is_empty());
    // Its watch resumes while it waits: it catches up and serves offset 3.
    let resume = lagging_store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        resume.resume();
    });
    let got = lagging.read("lag", 0, 3, ALL).await.unwrap();
    assert_eq!(batches(&got.bytes)[0].0, 3);
    assert_eq!(got.high_watermark, 6);
    // Once current, an offset beyond the end is out of range.
    let e = lagging.read("lag", 0, 7, ALL).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OffsetOutOfRange);
}

/// A batch of one record per timestamp, compressed with `compression`,
/// optionally from an idempotent producer (id, first sequence).
fn timed_batch(
    timestamps: &[i64],
    compression: kafka_protocol::records::Compression,
    producer: Option<(i64, i32)>,
) -> Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, ts)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.map_or(-1, |p| p.0),
            producer_epoch: if producer.is_some() { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: producer.map_or(-1, |p| p.1 + i as i32),
            timestamp: *ts,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

impl Rig {
    async fn produce_bytes(
        &self,
        topic: TopicId,
        partition: i32,
        data: Bytes,
    ) -> Vec<Result<i64, crate::produce::AppendError>> {
        let v = validate(data, &Default::default(), Default::default()).unwrap();
        self.producer
            .submit(vec![PartitionAppend {
                topic,
                partition,
                data: v.data,
                batches: v.batches,
                min_timestamp: v.min_timestamp,
            }])
            .await
            .await
    }
}

/// Defect: ListOffsets by timestamp answered a whole batch's first offset;
/// Kafka answers the first *record* at or after the timestamp, compressed
/// or not.
#[tokio::test]
async fn offsets_for_times_are_record_accurate() {
    use kafka_protocol::records::Compression;
    let r = rig().await;
    let t = r.topic("rec", false).await;
    for (p, codec) in [(0, Compression::None), (1, Compression::Gzip)] {
        assert_eq!(
            r.produce_bytes(t, p, timed_batch(&[10, 30, 20, 40], codec, None))
                .await,
            vec![Ok(0)]
        );
        let at = |ts| r.read.offset_for("rec", p, OffsetQuery::Timestamp(ts));
        assert_eq!(at(15).await.unwrap(), Some((30, 1)), "{codec:?}");
        assert_eq!(at(31).await.unwrap(), Some((40, 3)), "{codec:?}");
        assert_eq!(at(5).await.unwrap(), Some((10, 0)), "{codec:?}");
        assert_eq!(at(41).await.unwrap(), None, "{codec:?}");
        assert_eq!(
            r.read
                .offset_for("rec", p, OffsetQuery::MaxTimestamp)
                .await
                .unwrap(),
            Some((40, 3)),
            "{codec:?}"
        );
    }
}

/// Defect: a duplicate idempotent batch in the middle of a chunk splits it
/// into index entries that all carry the chunk's max timestamp; the lookup
/// took the first and answered -1.
#[tokio::test]
async fn offsets_for_times_look_past_entries_of_a_split_chunk() {
    use kafka_protocol::records::Compression;
    let r = rig().await;
    let t = r.topic("split", false).await;
    let x = timed_batch(&[10], Compression::None, Some((7, 0)));
    assert_eq!(r.produce_bytes(t, 0, x.clone()).await, vec![Ok(0)]);
    // One chunk: another producer's early batch, the retried duplicate of
    // x, then x's successor with a late timestamp.
    let mut chunk = Vec::new();
    chunk.extend_from_slice(&timed_batch(&[11], Compression::None, Some((8, 0))));
    chunk.extend_from_slice(&x);
    chunk.extend_from_slice(&timed_batch(&[100], Compression::None, Some((7, 1))));
    r.produce_bytes(t, 0, Bytes::from(chunk)).await;
    assert_eq!(r.read.position("split", 0).unwrap().high_watermark, 3);
    assert_eq!(
        r.read
            .offset_for("split", 0, OffsetQuery::Timestamp(50))
            .await
            .unwrap(),
        Some((100, 2))
    );
    assert_eq!(
        r.read
            .offset_for("split", 0, OffsetQuery::MaxTimestamp)
            .await
            .unwrap(),
        Some((100, 2))
    );
}

/// An agent whose state lags reads an object that compaction replaced and
/// GC deleted meanwhile: the read fails, the agent catches up, and reads
/// the records again from where they are now.
#[tokio::test]
async fn a_lagging_reader_catches_up_when_its_object_is_gone() {
    use silt_coordinator::{faulty::Pausable, MetaStore};
    use silt_tiering::jobs::*;
    let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let writer = MetaLog::open(meta.clone(), bucket.clone(), "c", "w")
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let reader = ObjectReader::new(bucket.clone(), Arc::new(NoCache::default()), 4096);
    let (producer, _done) = Producer::start(
        ProduceConfig {
            flush_interval: Duration::from_millis(5),
            flush_bytes: 1 << 30,
            max_inflight_bytes: 1 << 24,
            max_concurrent_uploads: 1,
            max_commit_record_bytes: 512 * 1024,
        },
        Pipeline {
            store: bucket.clone(),
            log: writer.clone(),
            reader: reader.clone(),
            clock: Arc::new(ManualClock::new(1_000)),
            ids: Arc::new(silt_tiering::segment::RandomIds),
        },
        shutdown.clone(),
    );
    let _guard = shutdown.drop_guard();
    let topic = Topics::new(writer.clone(), false, 1)
        .create("t", 1, Default::default(), false)
        .await
        .unwrap()
        .id;
    for _ in 0..3 {
        let v = validate(
            Bytes::from(simple_batch(4, 1_000, &[7u8; 100], None)),
            &Default::default(),
            Default::default(),
        )
        .unwrap();
        let got = producer
            .submit(vec![PartitionAppend {
                topic,
                partition: 0,
                data: v.data,
                batches: v.batches,
                min_timestamp: v.min_timestamp,
            }])
            .await
            .await;
        got[0].clone().unwrap();
    }
    let lag = Arc::new(Pausable::new(meta.clone()));
    let rlog = MetaLog::open(lag.clone(), bucket.clone(), "c", "r")
        .await
        .unwrap();
    assert_eq!(rlog.state().partition("t", 0).unwrap().high_watermark, 12);
    lag.pause();
    // Compaction moves the records; GC deletes the segments at once.
    let settings = JobSettings {
        retention: RetentionDefaults {
            ms: None,
            bytes: None,
        },
        compaction: CompactionSettings {
            run_bytes: 64,
            object_bytes: 1 << 20,
            entry_bytes: 1 << 20,
            min_age: Duration::ZERO,
            max_lag: Duration::ZERO,
        },
        cleaner: silt_tiering::jobs::CleanerSettings::default(),
        tables: silt_tiering::jobs::TableSettings::default(),
        gc: GcSettings {
            grace: Duration::ZERO,
            orphan_age: Duration::from_secs(3600),
            batch: 10,
        },
    };
    let jobs = Jobs::new(
        writer.clone(),
        bucket.clone(),
        Arc::new(ManualClock::new(2_000)),
        settings,
        "c",
        "w",
    );
    let budget = Budget {
        time: Duration::from_secs(10),
        bytes: 1 << 30,
    };
    let r = jobs.run(Job::Compaction, budget).await.unwrap().unwrap();
    assert_eq!(r.entries_compacted, 3);
    let r = jobs.run(Job::Gc, budget).await.unwrap().unwrap();
    assert_eq!(r.objects_deleted, 3);
    // The lagging agent still names the deleted segments; its watch comes
    // back while it reads.
    let resume = {
        let lag = lag.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            lag.resume();
        })
    };
    let got = ReadPath::new(rlog.clone(), reader)
        .read("t", 0, 0, ALL)
        .await
        .unwrap();
    resume.await.unwrap();
    let offsets: Vec<i64> = batches(&got.bytes).iter().map(|b| b.0).collect();
    assert_eq!(offsets, vec![0, 4, 8]);
}
