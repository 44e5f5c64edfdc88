//! `silt dev`: one agent on a local directory bucket, embedded metadata and
//! a local cache, all under one data directory.

use std::sync::Arc;

use anyhow::Context;
use object_store::ObjectStore;
use silt_coordinator::{EmbeddedStore, MetaStore};
use tokio_util::sync::CancellationToken;

use crate::{config::Settings, faults::TestFaults, runtime};

pub async fn run(
    settings: Settings,
    faults: Option<TestFaults>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let dir = &settings.data_dir;
    let bucket = dir.join("bucket");
    std::fs::create_dir_all(&bucket)
        .with_context(|| format!("creating bucket directory {}", bucket.display()))?;
    let objects: Arc<dyn ObjectStore> = Arc::new(
        crate::cluster::local_bucket(&bucket)
            .with_context(|| format!("opening bucket directory {}", bucket.display()))?,
    );
    let meta: Arc<dyn MetaStore> = Arc::new(
        EmbeddedStore::open(&dir.join("meta"))
            .with_context(|| format!("opening metadata in {}", dir.display()))?,
    );
    let (meta, objects) = match &faults {
        Some(f) => (f.wrap_meta(meta, &settings.cluster), f.wrap_bucket(objects)),
        None => (meta, objects),
    };
    runtime::serve_on(settings, meta, objects, shutdown).await
}
