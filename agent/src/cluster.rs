//! `silt agent`: one stateless agent of a cluster, with metadata in etcd
//! and data in an S3-compatible bucket.

use std::sync::Arc;

use anyhow::{bail, Context};
use object_store::{
    aws::AmazonS3Builder, local::LocalFileSystem, prefix::PrefixStore, ObjectStore,
};
use silt_coordinator::{EtcdStore, MetaStore};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::SystemClock,
    config::Settings,
    faults::TestFaults,
    runtime::{self, Components},
};

/// Opens the bucket named by `s3://bucket[/prefix]` (endpoint, region and
/// credentials from the standard AWS environment) or `file:///path`.
pub fn open_bucket(url: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("setting bucket: {url:?} names no bucket");
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        // Segments carry their own checksums (CRC-32C per record batch and
        // per footer), so hashing every payload for SigV4 is redundant work:
        // it took a fifth of the agent's CPU. AWS_UNSIGNED_PAYLOAD=false
        // turns payload signing back on (docs/decisions/0003-unsigned-payload.md).
        if std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_none() {
            builder = builder.with_unsigned_payload(true);
        }
        let s3 = builder
            .build()
            .with_context(|| format!("setting bucket: configuring S3 for {url}"))?;
        let prefix = prefix.trim_matches('/');
        return Ok(if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        });
    }
    if let Some(path) = url.strip_prefix("file://") {
        std::fs::create_dir_all(path)
            .with_context(|| format!("setting bucket: creating {path}"))?;
        return Ok(Arc::new(
            local_bucket(std::path::Path::new(path))
                .with_context(|| format!("setting bucket: opening {path}"))?,
        ));
    }
    bail!("setting bucket: {url:?} must start with s3:// or file://")
}

/// A directory as a bucket. Every object is fsynced, with its directory,
/// before the PUT returns: a record is acknowledged only once durable, and
/// a checkpoint is never an empty file after a power loss.
pub fn local_bucket(dir: &std::path::Path) -> object_store::Result<LocalFileSystem> {
    Ok(LocalFileSystem::new_with_prefix(dir)?.with_fsync(true))
}

pub async fn run(
    settings: Settings,
    faults: Option<TestFaults>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let endpoints = settings.etcd_endpoints();
    let objects = open_bucket(settings.bucket.as_deref().unwrap_or_default())?;
    // Fail at start, with the setting named, when the bucket is unreachable.
    {
        use futures::StreamExt;
        let mut list = objects.list(Some(&object_store::path::Path::from("checkpoints")));
        if let Some(Err(e)) = tokio::time::timeout(std::time::Duration::from_secs(30), list.next())
            .await
            .context("setting bucket: listing the bucket timed out")?
        {
            bail!(
                "setting bucket: cannot list {}: {e}",
                settings.bucket.as_deref().unwrap_or_default()
            );
        }
    }
    let meta: Arc<dyn MetaStore> = Arc::new(
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            EtcdStore::connect(&endpoints),
        )
        .await
        .context("setting etcd: connecting timed out")?
        .with_context(|| format!("setting etcd: cannot connect to {}", endpoints.join(",")))?,
    );
    let (meta, objects) = match &faults {
        Some(f) => (f.wrap_meta(meta, &settings.cluster), f.wrap_bucket(objects)),
        None => (meta, objects),
    };
    let parts = Components {
        meta,
        bucket: objects,
        cache: runtime::open_cache(&settings).await?,
        clock: Arc::new(SystemClock),
    };
    runtime::serve(settings, parts, None, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect: `file://` buckets (and `silt dev`) acknowledged records
    /// whose bytes could still be only in the page cache.
    #[test]
    fn file_buckets_fsync_their_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_bucket(dir.path()).unwrap();
        assert!(format!("{store:?}").contains("fsync: true"), "{store:?}");
        let url = format!("file://{}", dir.path().display());
        let opened = open_bucket(&url).unwrap();
        assert!(format!("{opened:?}").contains("fsync: true"), "{opened:?}");
    }
}
