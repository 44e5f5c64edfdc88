//! The conformance suite every [`MetaStore`] implementation must pass.
//!
//! Each check takes a fresh store (or a unique key prefix) and panics with a
//! message on a violation; implementations call [`run_all`] from their tests.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::metastore::*;

pub async fn run_all(store: &dyn MetaStore, prefix: &str) {
    put_get_range_delete(store, &format!("{prefix}/kv/")).await;
    txn_compares(store, &format!("{prefix}/txn/")).await;
    watch_from_revision(store, &format!("{prefix}/watch/")).await;
    leases_expire(store, &format!("{prefix}/lease/")).await;
    latest_mod_revision(store, &format!("{prefix}/latest/")).await;
}

pub async fn latest_mod_revision(store: &dyn MetaStore, p: &str) {
    assert_eq!(store.latest_mod_revision(p).await.unwrap(), None);
    let r1 = store
        .put(&format!("{p}b"), Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    let r2 = store
        .put(&format!("{p}a"), Bytes::from_static(b"2"), None)
        .await
        .unwrap();
    // Outside the prefix: not counted.
    let outside = format!("{}zz", p.trim_end_matches('/'));
    store
        .put(&outside, Bytes::from_static(b"4"), None)
        .await
        .unwrap();
    assert!(r2 > r1);
    assert_eq!(store.latest_mod_revision(p).await.unwrap(), Some(r2));
    let r4 = store
        .put(&format!("{p}b"), Bytes::from_static(b"5"), None)
        .await
        .unwrap();
    assert_eq!(store.latest_mod_revision(p).await.unwrap(), Some(r4));
}

pub async fn put_get_range_delete(store: &dyn MetaStore, p: &str) {
    let r1 = store
        .put(&format!("{p}b"), Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    let r2 = store
        .put(&format!("{p}a"), Bytes::from_static(b"2"), None)
        .await
        .unwrap();
    assert!(r2 > r1, "revisions increase");
    let r3 = store
        .put(&format!("{p}b"), Bytes::from_static(b"3"), None)
        .await
        .unwrap();
    let b = store
        .get(&format!("{p}b"))
        .await
        .unwrap()
        .expect("b exists");
    assert_eq!(b.value, Bytes::from_static(b"3"));
    assert_eq!((b.create_revision, b.mod_revision, b.version), (r1, r3, 2));
    assert!(store.get(&format!("{p}zz")).await.unwrap().is_none());
    let all = store.range(KeyRange::Prefix(p.to_string())).await.unwrap();
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(
        keys,
        vec![format!("{p}a"), format!("{p}b")],
        "range is sorted by key"
    );
    assert!(all.revision >= r3);
    let (n, _) = store.delete(KeyRange::Key(format!("{p}a"))).await.unwrap();
    assert_eq!(n, 1);
    let (n, _) = store.delete(KeyRange::Key(format!("{p}a"))).await.unwrap();
    assert_eq!(n, 0);
    let (n, _) = store.delete(KeyRange::Prefix(p.to_string())).await.unwrap();
    assert_eq!(n, 1);
    assert!(store
        .range(KeyRange::Prefix(p.to_string()))
        .await
        .unwrap()
        .kvs
        .is_empty());
}

pub async fn txn_compares(store: &dyn MetaStore, p: &str) {
    let k = format!("{p}lock");
    let create = |v: &'static [u8]| Txn {
        compares: vec![Compare::version(&k, CompareOp::Equal, 0)],
        success: vec![TxnOp::Put {
            key: k.clone(),
            value: Bytes::from_static(v),
            lease: None,
        }],
        failure: vec![TxnOp::Range(KeyRange::Key(k.clone()))],
    };
    let t1 = store.txn(create(b"first")).await.unwrap();
    assert!(t1.succeeded, "create-if-absent succeeds once");
    let t2 = store.txn(create(b"second")).await.unwrap();
    assert!(!t2.succeeded, "second create-if-absent fails");
    match &t2.responses[..] {
        [TxnOpResponse::Range(kvs)] => assert_eq!(kvs[0].value, Bytes::from_static(b"first")),
        other => panic!("failure branch returned {other:?}"),
    }
    let kv = store.get(&k).await.unwrap().unwrap();
    let cas = |rev| Txn {
        compares: vec![Compare::mod_revision(&k, CompareOp::Equal, rev)],
        success: vec![TxnOp::Put {
            key: k.clone(),
            value: Bytes::from_static(b"swapped"),
            lease: None,
        }],
        failure: vec![],
    };
    assert!(!store.txn(cas(kv.mod_revision - 1)).await.unwrap().succeeded);
    assert!(store.txn(cas(kv.mod_revision)).await.unwrap().succeeded);
    let v = Compare::value(&k, CompareOp::Equal, Bytes::from_static(b"swapped"));
    let both = store
        .txn(Txn {
            compares: vec![v],
            success: vec![
                TxnOp::Put {
                    key: format!("{p}x"),
                    value: Bytes::from_static(b"x"),
                    lease: None,
                },
                TxnOp::Put {
                    key: format!("{p}y"),
                    value: Bytes::from_static(b"y"),
                    lease: None,
                },
            ],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(both.succeeded);
    let x = store.get(&format!("{p}x")).await.unwrap().unwrap();
    let y = store.get(&format!("{p}y")).await.unwrap().unwrap();
    assert_eq!(x.mod_revision, y.mod_revision, "a txn is one revision");
    assert_eq!(x.mod_revision, both.revision);
    // Value compare on a missing key is false.
    let missing = Compare::value(
        format!("{p}missing"),
        CompareOp::NotEqual,
        Bytes::from_static(b"q"),
    );
    assert!(
        !store
            .txn(Txn {
                compares: vec![missing],
                success: vec![],
                failure: vec![],
            })
            .await
            .unwrap()
            .succeeded
    );
    store.delete(KeyRange::Prefix(p.to_string())).await.unwrap();
}

pub async fn watch_from_revision(store: &dyn MetaStore, p: &str) {
    let r1 = store
        .put(&format!("{p}1"), Bytes::from_static(b"a"), None)
        .await
        .unwrap();
    store
        .put("/elsewhere/ignored", Bytes::from_static(b"z"), None)
        .await
        .unwrap();
    store
        .put(&format!("{p}2"), Bytes::from_static(b"b"), None)
        .await
        .unwrap();
    let mut w = store
        .watch(KeyRange::Prefix(p.to_string()), r1)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let deadline = crate::clock::monotonic_now() + Duration::from_secs(10);
    let mut put_more = true;
    while seen.len() < 4 {
        let batch = tokio::time::timeout_at(deadline, w.next())
            .await
            .expect("watch delivers events")
            .expect("watch stream open")
            .expect("watch ok");
        seen.extend(batch);
        if put_more && seen.len() >= 2 {
            put_more = false;
            store
                .put(&format!("{p}3"), Bytes::from_static(b"c"), None)
                .await
                .unwrap();
            store.delete(KeyRange::Key(format!("{p}1"))).await.unwrap();
        }
    }
    let summary: Vec<_> = seen
        .iter()
        .map(|e| (e.kind, e.kv.key.trim_start_matches(p).to_string()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventKind::Put, "1".to_string()),
            (EventKind::Put, "2".to_string()),
            (EventKind::Put, "3".to_string()),
            (EventKind::Delete, "1".to_string()),
        ]
    );
    let revs: Vec<_> = seen.iter().map(|e| e.kv.mod_revision).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "events in revision order: {revs:?}"
    );
    assert_eq!(seen[0].kv.mod_revision, r1);
    store.delete(KeyRange::Prefix(p.to_string())).await.unwrap();
}

pub async fn leases_expire(store: &dyn MetaStore, p: &str) {
    let lease = store.lease_grant(Duration::from_secs(2)).await.unwrap();
    let k = format!("{p}member");
    store
        .put(&k, Bytes::from_static(b"alive"), Some(lease))
        .await
        .unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().lease, lease);
    // Kept alive past the TTL.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        store.lease_keep_alive(lease).await.unwrap();
    }
    assert!(
        store.get(&k).await.unwrap().is_some(),
        "kept-alive lease holds its key"
    );
    let deadline = crate::clock::monotonic_now() + Duration::from_secs(10);
    while store.get(&k).await.unwrap().is_some() {
        assert!(
            crate::clock::monotonic_now() < deadline,
            "expired lease deletes its key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(store.lease_keep_alive(lease).await.is_err());
    let l2 = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    store
        .put(&k, Bytes::from_static(b"x"), Some(l2))
        .await
        .unwrap();
    store.lease_revoke(l2).await.unwrap();
    assert!(
        store.get(&k).await.unwrap().is_none(),
        "revoked lease deletes its key"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedStore;

    #[tokio::test]
    async fn embedded_in_memory_conforms() {
        run_all(&EmbeddedStore::in_memory(), "/conf").await;
    }

    #[tokio::test]
    async fn embedded_on_disk_conforms_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let rev = {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            run_all(&s, "/conf").await;
            s.put("/keep/a", Bytes::from_static(b"1"), None)
                .await
                .unwrap();
            let lease = s.lease_grant(Duration::from_secs(60)).await.unwrap();
            s.put("/keep/leased", Bytes::from_static(b"l"), Some(lease))
                .await
                .unwrap();
            s.put("/keep/a", Bytes::from_static(b"2"), None)
                .await
                .unwrap()
        };
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let a = s.get("/keep/a").await.unwrap().unwrap();
        assert_eq!(
            (a.value.as_ref(), a.mod_revision, a.version),
            (&b"2"[..], rev, 2)
        );
        assert!(s.get("/keep/leased").await.unwrap().is_none());
        assert!(s.put("/keep/b", Bytes::new(), None).await.unwrap() > rev);
        // Watching history from before the restart reports compaction.
        assert!(matches!(
            s.watch(KeyRange::Prefix("/keep/".into()), 1).await,
            Err(MetaError::Compacted { .. })
        ));
        // Reopen again, with a torn tail appended.
        drop(s);
        let path = dir.path().join("meta.journal");
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
        std::fs::write(&path, data).unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert!(s.get("/keep/b").await.unwrap().is_some());
    }
}
