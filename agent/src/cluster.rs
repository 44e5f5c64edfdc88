//! `silt agent`: one stateless agent of a cluster, with metadata in etcd
//! and data in an S3-compatible bucket.

use std::sync::Arc;

use anyhow::{bail, Context};
use object_store::{
    aws::AmazonS3Builder, local::LocalFileSystem, prefix::PrefixStore, ObjectStore,
};
use silt_coordinator::{EtcdStore, MetaLog, MetaStore};
use silt_tiering::{
    jobs::{Budget, Job, Jobs},
    store::{RetryConfig, Retrying},
};
use tokio_util::sync::CancellationToken;

use crate::{clock::SystemClock, config::Settings, faults::TestFaults, runtime};

/// Opens the bucket named by `s3://bucket[/prefix]` (endpoint, region and
/// credentials from the standard AWS environment) or `file:///path`.
pub fn open_bucket(
    url: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("setting bucket: {url:?} names no bucket");
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            // One option on top of those from the environment (which
            // `with_client_options` would replace).
            .with_config(
                object_store::aws::AmazonS3ConfigKey::Client(
                    object_store::ClientConfigKey::Timeout,
                ),
                format!("{}ms", timeout.as_millis()),
            );
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

/// Connects to the cluster's etcd and bucket, failing with the setting
/// named when either is unreachable.
pub async fn connect(
    settings: &Settings,
    faults: Option<&TestFaults>,
) -> anyhow::Result<(Arc<dyn MetaStore>, Arc<dyn ObjectStore>)> {
    let objects = open_bucket(
        settings.bucket.as_deref().unwrap_or_default(),
        settings.object_store_timeout,
    )?;
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
    let meta = connect_etcd(settings).await?;
    Ok(match faults {
        Some(f) => (f.wrap_meta(meta, &settings.cluster), f.wrap_bucket(objects)),
        None => (meta, objects),
    })
}

/// Connects to the cluster's etcd and reads from it once, so that a
/// refused certificate, an untrusted CA or a wrong password is reported
/// with the settings to check, not at the first metadata request.
pub async fn connect_etcd(settings: &Settings) -> anyhow::Result<Arc<dyn MetaStore>> {
    let endpoints = settings.etcd_endpoints();
    let meta: Arc<dyn MetaStore> = Arc::new(
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            EtcdStore::connect(&endpoints, &settings.etcd_access()?),
        )
        .await
        .context("setting etcd: connecting timed out")?
        .with_context(|| format!("setting etcd: cannot connect to {}", endpoints.join(",")))?,
    );
    let probe = format!("/silt/{}/cluster", settings.cluster);
    match tokio::time::timeout(std::time::Duration::from_secs(30), meta.get(&probe)).await {
        Ok(Ok(_)) => Ok(meta),
        Ok(Err(e)) => bail!(
            "setting etcd: cannot read from {} (check etcd_ca_file, etcd_cert_file, etcd_key_file, etcd_user and etcd_password): {e}",
            endpoints.join(",")
        ),
        Err(_) => bail!(
            "setting etcd: no answer from {} within 30 s",
            endpoints.join(",")
        ),
    }
}

/// What `silt users` does.
pub enum UsersAction {
    /// Sets the user's SCRAM credential for `mechanism` from `password`.
    Add {
        name: String,
        mechanism: crate::security::scram::Mechanism,
        iterations: u32,
        password: String,
    },
    Delete {
        name: String,
        mechanism: crate::security::scram::Mechanism,
    },
    List,
}

/// `silt users`: SCRAM credentials in the cluster's etcd, for the first
/// administrator before any client can authenticate (afterwards Kafka's
/// AlterUserScramCredentials does the same). Only salted keys are stored.
pub async fn users(settings: &Settings, action: UsersAction) -> anyhow::Result<()> {
    use crate::security::{scram::Credential, store};
    let meta = connect_etcd(settings).await?;
    let stop = CancellationToken::new();
    let users = store::SecurityStore::open(
        meta,
        &settings.cluster,
        store::Limits {
            max_credentials: settings.max_scram_credentials,
            max_acls: settings.max_acls,
        },
        stop.clone(),
    )
    .await?;
    let result = match action {
        UsersAction::Add {
            name,
            mechanism,
            iterations,
            password,
        } => {
            if name.is_empty() {
                bail!("the user name is empty");
            }
            if password.is_empty() {
                bail!("the password is empty");
            }
            let c = Credential::from_password(mechanism, &password, iterations);
            users.put_credential(&name, mechanism, &c).await?;
            println!(
                "{name}: {} credential set ({iterations} iterations)",
                mechanism.name()
            );
            Ok(())
        }
        UsersAction::Delete { name, mechanism } => {
            if users.delete_credential(&name, mechanism).await? {
                println!("{name}: {} credential deleted", mechanism.name());
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{name} has no {} credential",
                    mechanism.name()
                ))
            }
        }
        UsersAction::List => {
            for (name, mechs) in users.users() {
                let m: Vec<String> = mechs
                    .iter()
                    .map(|(m, i)| format!("{} ({i} iterations)", m.name()))
                    .collect();
                println!("{name}: {}", m.join(", "));
            }
            Ok(())
        }
    };
    stop.cancel();
    result
}

pub async fn run(
    settings: Settings,
    faults: Option<TestFaults>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (meta, objects) = connect(&settings, faults.as_ref()).await?;
    runtime::serve_on(settings, meta, objects, shutdown).await
}

/// `silt jobs run`: the tiering jobs as a process of their own, against the
/// cluster's etcd and bucket, under the same locks as agents. With `once`,
/// one pass of each job (or of `only`), each pass's report printed as a
/// JSON line; otherwise on their intervals until `shutdown`.
/// The jobs on a cluster's etcd and bucket, and the metadata they run on
/// (`silt jobs run`, the `silt-jobs` Lambda function).
pub async fn open_jobs(
    settings: &Settings,
    faults: Option<&TestFaults>,
) -> anyhow::Result<(Arc<Jobs>, Arc<MetaLog>)> {
    let (meta, objects) = connect(settings, faults).await?;
    let objects: Arc<dyn ObjectStore> = Arc::new(Retrying::new(objects, RetryConfig::default()));
    let writer = format!("jobs-{}-{}", settings.agent_id(), ulid::Ulid::new());
    silt_tiering::jobs::claim_bucket(&*objects, &settings.cluster)
        .await
        .map_err(|e| anyhow::anyhow!("setting bucket: {e}"))?;
    let log = MetaLog::open(meta, objects.clone(), &settings.cluster, &writer)
        .await
        .context("loading metadata")?;
    let jobs = Arc::new(Jobs::new(
        log.clone(),
        objects,
        Arc::new(SystemClock),
        settings.job_settings(),
        &settings.cluster,
        &writer,
    ));
    Ok((jobs, log))
}

/// One pass of each job of `list`, each within `budget`: a JSON report per
/// job, and the first failure.
pub async fn run_once(
    jobs: &Jobs,
    list: &[Job],
    budget: Budget,
) -> (Vec<serde_json::Value>, Option<anyhow::Error>) {
    let mut failed = None;
    let mut lines = Vec::with_capacity(list.len());
    for &job in list {
        lines.push(match jobs.run(job, budget).await {
            Ok(Some(r)) => serde_json::json!({
                "job": job.name(),
                "ran": true,
                "partitions_trimmed": r.partitions_trimmed,
                "entries_compacted": r.entries_compacted,
                "entries_written": r.entries_written,
                "runs_refused": r.runs_refused,
                "objects_written": r.objects_written,
                "bytes_read": r.bytes_read,
                "bytes_written": r.bytes_written,
                "objects_deleted": r.objects_deleted,
                "orphans_deleted": r.orphans_deleted,
                "checkpoints_deleted": r.checkpoints_deleted,
                "partitions_cleaned": r.partitions_cleaned,
                "records_cleaned": r.records_cleaned,
                "table_rows_exported": r.table_rows_exported,
                "table_files_written": r.table_files_written,
                "table_dead_letters": r.table_dead_letters,
                "table_files_deleted": r.table_files_deleted,
                "partitions_failed": r.partitions_failed,
                "more": r.more,
            }),
            Ok(None) => serde_json::json!({
                "job": job.name(),
                "ran": false,
                "reason": "another process holds the job's lock",
            }),
            Err(e) => {
                let line =
                    serde_json::json!({"job": job.name(), "ran": false, "error": e.to_string()});
                failed.get_or_insert(anyhow::anyhow!("job {job}: {e}"));
                line
            }
        });
    }
    (lines, failed)
}

pub async fn run_jobs(
    settings: Settings,
    faults: Option<TestFaults>,
    once: bool,
    only: Option<Job>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let list = match only {
        Some(j) => vec![j],
        None if settings.jobs.trim() == "none" => Job::ALL.to_vec(),
        None => settings
            .job_list()
            .map_err(|m| anyhow::anyhow!("setting jobs: {m}"))?,
    };
    let (jobs, log) = open_jobs(&settings, faults.as_ref()).await?;
    let budget = crate::jobs::budget(&settings);
    let result = if once {
        let (lines, failed) = run_once(&jobs, &list, budget).await;
        for line in lines {
            println!("{line}");
        }
        failed.map_or(Ok(()), Err)
    } else {
        let list = list
            .into_iter()
            .map(|j| (j, crate::jobs::interval(&settings, j)))
            .collect();
        crate::jobs::run_loop(jobs, list, budget, shutdown).await;
        Ok(())
    };
    log.close();
    result
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
        let opened = open_bucket(&url, std::time::Duration::from_secs(1)).unwrap();
        assert!(format!("{opened:?}").contains("fsync: true"), "{opened:?}");
    }
}
