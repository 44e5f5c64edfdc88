//! `silt dev`: one agent on a local directory bucket, embedded metadata and
//! a local cache, all under one data directory.

use std::sync::Arc;

use anyhow::Context;
use object_store::{local::LocalFileSystem, ObjectStore};
use silt_coordinator::{EmbeddedStore, MetaLog, MetaStore};
use silt_tiering::{BlockCache, FoyerCache, ObjectReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::Broker,
    config::Settings,
    produce::{ProduceConfig, Producer},
    server,
};

/// Runs until `shutdown` fires; then stops accepting, flushes the open
/// segment, answers waiting producers and writes a checkpoint.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = &settings.data_dir;
    let bucket = dir.join("bucket");
    std::fs::create_dir_all(&bucket)
        .with_context(|| format!("creating bucket directory {}", bucket.display()))?;
    let objects: Arc<dyn ObjectStore> = Arc::new(
        LocalFileSystem::new_with_prefix(&bucket)
            .with_context(|| format!("opening bucket directory {}", bucket.display()))?,
    );
    let meta: Arc<dyn MetaStore> = Arc::new(
        EmbeddedStore::open(&dir.join("meta"))
            .with_context(|| format!("opening metadata in {}", dir.display()))?,
    );
    let cache = Arc::new(
        FoyerCache::open(
            &dir.join("cache"),
            settings.cache_memory.as_u64() as usize,
            settings.cache_disk.as_u64() as usize,
        )
        .await
        .map_err(anyhow::Error::msg)
        .context("opening block cache")?,
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
    let producer_shutdown = CancellationToken::new();
    let (producer, producer_done) = Producer::start(
        ProduceConfig {
            flush_interval: settings.flush_interval,
            flush_bytes: settings.flush_bytes.as_u64(),
            max_inflight_bytes: settings.max_inflight_bytes.as_u64() as u32,
            max_concurrent_uploads: settings.max_concurrent_uploads,
        },
        objects.clone(),
        log.clone(),
        reader.clone(),
        producer_shutdown.clone(),
    );
    let broker = Arc::new(Broker {
        node_id: 0,
        cluster_id: format!("silt-{}", settings.cluster),
        settings: settings.clone(),
        log: log.clone(),
        reader,
        producer,
    });
    let checkpoints = tokio::spawn(checkpoint_loop(
        log.clone(),
        settings.checkpoint_every,
        shutdown.clone(),
    ));
    tracing::info!(listen = %settings.listen, data_dir = %dir.display(), "silt dev is serving Kafka");

    // The server returns once connections finished their requests; producers
    // waiting on the open segment are answered by the final flush, which the
    // producer does when told to stop.
    let serving = tokio::spawn(server::run(listener, broker, shutdown.clone()));
    shutdown.cancelled().await;
    tracing::info!("shutting down: flushing the open segment");
    producer_shutdown.cancel();
    let _ = producer_done.await;
    let _ = serving.await;
    let _ = checkpoints.await;
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
        // Revisions advance once per record in the log prefix we watch, so
        // the distance approximates the number of records since the last
        // checkpoint.
        if (now - last) as u64 >= every.max(1) {
            match log.checkpoint().await {
                Ok(Some(rev)) => last = rev,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
        }
    }
}
