//! Runs an agent on given metadata and object stores: the part `silt dev`
//! and `silt agent` share.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use object_store::ObjectStore;
use silt_coordinator::{MetaLog, MetaStore};
use silt_tiering::{
    store::{FaultConfig, Faulty, Instrumented},
    BlockCache, FoyerCache, ObjectReader,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::Broker,
    config::Settings,
    http,
    membership::{node_id_for, AgentInfo, Membership},
    produce::{ProduceConfig, Producer},
    server,
};

/// Serves Kafka until `shutdown` fires; then stops accepting, flushes the
/// open segment, answers waiting producers, leaves the membership and
/// writes a checkpoint.
pub async fn serve(
    settings: Settings,
    meta: Arc<dyn MetaStore>,
    bucket: Arc<dyn ObjectStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let faults = FaultConfig {
        put_error_rate: settings.fault_put_error_rate,
        get_error_rate: settings.fault_get_error_rate,
        latency: settings.fault_latency,
        seed: settings.fault_seed,
    };
    let bucket: Arc<dyn ObjectStore> = if faults.is_active() {
        tracing::warn!(
            ?faults,
            "object-store fault injection is ON (test configuration)"
        );
        Arc::new(Faulty::new(bucket, faults))
    } else {
        bucket
    };
    let instrumented = Arc::new(Instrumented::new(bucket));
    let counters = instrumented.counters.clone();
    let objects: Arc<dyn ObjectStore> = instrumented;

    let cache_dir = settings.cache_dir();
    let cache = Arc::new(
        FoyerCache::open(
            &cache_dir,
            settings.cache_memory.as_u64() as usize,
            settings.cache_disk.as_u64() as usize,
        )
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("opening block cache in {}", cache_dir.display()))?,
    );
    let reader = ObjectReader::new(
        objects.clone(),
        cache.clone(),
        settings.cache_block.as_u64(),
    );
    let writer = format!("{}-{}", settings.agent_id, ulid::Ulid::new());
    let log = MetaLog::open(meta.clone(), objects.clone(), &settings.cluster, &writer)
        .await
        .context("loading metadata")?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding Kafka listener on {}", settings.listen))?;
    let (host, port) = settings.advertised();
    let me = AgentInfo {
        agent_id: settings.agent_id.clone(),
        node_id: node_id_for(&settings.agent_id),
        host,
        port,
        zone: settings.zone.clone(),
    };
    let membership_stop = CancellationToken::new();
    let membership = Membership::join(
        meta.clone(),
        &settings.cluster,
        me,
        settings.lease_ttl,
        membership_stop.clone(),
    )
    .await
    .context("joining the cluster")?;

    let producer_shutdown = CancellationToken::new();
    let (producer, producer_done) = Producer::start(
        ProduceConfig {
            flush_interval: settings.flush_interval,
            flush_bytes: settings.flush_bytes.as_u64(),
            max_inflight_bytes: settings.max_inflight_bytes.as_u64() as u32,
            max_concurrent_uploads: settings.max_concurrent_uploads,
            commit_ack_loss: (settings.fault_commit_ack_loss_rate, settings.fault_seed),
        },
        objects.clone(),
        log.clone(),
        reader.clone(),
        producer_shutdown.clone(),
    );
    let groups = Arc::new(crate::group::Groups::new());
    let group_timers = tokio::spawn(groups.clone().run_timers(shutdown.clone()));
    let broker = Arc::new(Broker {
        node_id: membership.me().node_id,
        cluster_id: format!("silt-{}", settings.cluster),
        settings: settings.clone(),
        log: log.clone(),
        reader,
        producer,
        membership: membership.clone(),
        counters,
        groups,
        offsets: crate::group::offsets::OffsetStore::new(meta.clone(), &settings.cluster),
        producer_ids: crate::producer_ids::ProducerIds::new(meta.clone(), &settings.cluster),
    });
    // Groups whose coordinator moved to another agent are dropped here;
    // their members find the new coordinator and rejoin.
    let handoff = {
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => broker.groups.retain(|g| broker.is_group_coordinator(g)),
                }
            }
        })
    };
    let http = match settings.http {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding HTTP endpoint on {addr}"))?;
            Some(tokio::spawn(http::run(l, broker.clone(), shutdown.clone())))
        }
        None => None,
    };
    let checkpoints = tokio::spawn(checkpoint_loop(
        log.clone(),
        settings.checkpoint_every,
        shutdown.clone(),
    ));
    tracing::info!(
        listen = %settings.listen,
        agent = %settings.agent_id,
        node_id = broker.node_id,
        cluster = %settings.cluster,
        "serving Kafka"
    );

    let serving = tokio::spawn(server::run(listener, broker, shutdown.clone()));
    shutdown.cancelled().await;
    tracing::info!("shutting down: flushing the open segment");
    producer_shutdown.cancel();
    let _ = producer_done.await;
    let _ = tokio::time::timeout(Duration::from_secs(30), serving).await;
    membership_stop.cancel();
    let _ = checkpoints.await;
    let _ = group_timers.await;
    let _ = handoff.await;
    if let Some(h) = http {
        let _ = h.await;
    }
    if let Err(e) = log.checkpoint().await {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
    log.close();
    cache.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn checkpoint_loop(log: Arc<MetaLog>, every: u64, shutdown: CancellationToken) {
    let mut last = log.applied();
    let mut rx = log.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
        let now = *rx.borrow_and_update();
        // The applied revision advances with every record in the log prefix,
        // so the distance approximates the records since the last checkpoint.
        if (now - last) as u64 >= every.max(1) {
            match log.checkpoint().await {
                Ok(Some(rev)) => last = rev,
                Ok(None) => last = now,
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
        }
    }
}
