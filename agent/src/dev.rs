//! `silt dev`: one agent on a local directory bucket, embedded metadata and
//! a local cache, all under one data directory.

use std::sync::Arc;

use anyhow::Context;
use object_store::{local::LocalFileSystem, ObjectStore};
use silt_coordinator::{EmbeddedStore, MetaStore};
use tokio_util::sync::CancellationToken;

use crate::{config::Settings, runtime};

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
    runtime::serve(settings, meta, objects, shutdown).await
}
