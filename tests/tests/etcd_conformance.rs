//! The `MetaStore` conformance suite and the commit log against a real etcd.

use std::sync::Arc;

use silt_coordinator::{
    conformance, records::TopicId, Command, EtcdStore, MetaLog, MetaStore, Outcome,
};
use silt_tests::Etcd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_conforms() {
    let etcd = Etcd::start().unwrap();
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), &Default::default())
        .await
        .unwrap();
    conformance::run_all(&store, "/conf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_log_on_etcd_agrees_across_writers_and_reloads_from_checkpoint() {
    let etcd = Etcd::start().unwrap();
    let endpoints = vec![etcd.endpoint.clone()];
    let meta: Arc<dyn MetaStore> = Arc::new(
        EtcdStore::connect(&endpoints, &Default::default())
            .await
            .unwrap(),
    );
    let objects: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::memory::InMemory::new());
    let a = MetaLog::open(meta.clone(), objects.clone(), "c", "a-1")
        .await
        .unwrap();
    let b = MetaLog::open(meta.clone(), objects.clone(), "c", "b-1")
        .await
        .unwrap();
    let id = TopicId([3; 16]);
    let create = Command::CreateTopic {
        name: "t".into(),
        id,
        partitions: 2,
        config: Default::default(),
    };
    assert_eq!(a.propose(create).await.unwrap(), Outcome::TopicCreated(id));
    let commit = |n: u32, p: i32| Command::Commit {
        object: format!("o{n}"),
        size: 100,
        chunks: vec![silt_coordinator::ChunkRef {
            topic: id,
            partition: p,
            position: 8,
            length: 10,
            records: 3,
            max_timestamp: 0,
            append_time: 0,
            batches: vec![],
        }],
    };
    // Two writers committing concurrently get disjoint, dense offsets.
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    for n in 0..20 {
        let (x, y) = tokio::join!(a.propose(commit(2 * n, 0)), b.propose(commit(2 * n + 1, 0)));
        got_a.push(x.unwrap());
        got_b.push(y.unwrap());
    }
    let mut offsets: Vec<i64> = got_a
        .iter()
        .chain(&got_b)
        .map(|o| match o {
            Outcome::Committed(v) => match v[0] {
                silt_coordinator::ChunkOutcome::Appended { base } => base,
                ref other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    offsets.sort();
    assert_eq!(offsets, (0..40).map(|i| i * 3).collect::<Vec<_>>());
    a.checkpoint().await.unwrap().expect("lock is free");
    assert_eq!(
        b.propose(commit(99, 1)).await.unwrap(),
        Outcome::Committed(vec![silt_coordinator::ChunkOutcome::Appended { base: 0 }])
    );
    let c = MetaLog::open(meta.clone(), objects.clone(), "c", "c-1")
        .await
        .unwrap();
    a.subscribe().wait_for(|r| *r >= b.applied()).await.unwrap();
    c.subscribe().wait_for(|r| *r >= b.applied()).await.unwrap();
    assert_eq!(*c.state(), *b.state());
    assert_eq!(*a.state(), *b.state());
}
