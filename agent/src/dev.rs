//! `silt dev`: one agent on a local directory bucket, embedded metadata and
//! a local cache, all under one data directory.

use std::sync::Arc;

use anyhow::Context;
use object_store::ObjectStore;
use silt_coordinator::{EmbeddedStore, MetaStore};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::SystemClock,
    config::Settings,
    faults::TestFaults,
    runtime::{self, Components},
};

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
    let parts = Components {
        meta,
        bucket: objects,
        cache: runtime::open_cache(&settings).await?,
        clock: Arc::new(SystemClock),
    };
    runtime::serve(settings, parts, None, shutdown).await
}
