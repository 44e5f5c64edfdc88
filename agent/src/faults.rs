//! Fault injection, for tests only: never part of the user's settings.
//!
//! `SILT_TEST_FAULTS` (read by the `silt` binary at start) lists faults as
//! `key=value` pairs separated by commas, for example
//! `put_error_rate=0.1,latency=200ms,seed=7`:
//!
//! | key | meaning |
//! |---|---|
//! | `put_error_rate` | fraction of object-store PUTs that fail (half of them after writing) |
//! | `get_error_rate` | fraction of object-store GETs that fail |
//! | `latency` | added to every object-store request |
//! | `commit_ack_loss_rate` | fraction of segment commits whose answer is lost after the write |
//! | `seed` | seed of the fault sequences, so a failing run can be repeated |
//!
//! Each fault is a wrapper around a store the agent is given; nothing in
//! the write or read path knows about them.

use std::sync::Arc;

use object_store::ObjectStore;
use silt_coordinator::{faulty::LosesAnswers, keys::Layout, MetaStore};
use silt_tiering::store::{FaultConfig, Faulty};

/// The environment variable that turns faults on.
pub const ENV: &str = "SILT_TEST_FAULTS";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestFaults {
    pub store: FaultConfig,
    pub commit_ack_loss_rate: f64,
}

impl TestFaults {
    /// Faults from [`ENV`], if set.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(ENV) {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v).map(Some),
            _ => Ok(None),
        }
    }

    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut f = TestFaults {
            store: FaultConfig {
                seed: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{ENV}: {pair:?} is not key=value"))?;
            let rate = || match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(format!(
                    "{ENV}: {k}={v:?}: expected a number between 0 and 1"
                )),
            };
            match k {
                "put_error_rate" => f.store.put_error_rate = rate()?,
                "get_error_rate" => f.store.get_error_rate = rate()?,
                "commit_ack_loss_rate" => f.commit_ack_loss_rate = rate()?,
                "latency" => {
                    f.store.latency = humantime_serde::re::humantime::parse_duration(v)
                        .map_err(|e| format!("{ENV}: latency={v:?}: {e}"))?
                }
                "seed" => {
                    f.store.seed = v
                        .parse()
                        .map_err(|_| format!("{ENV}: seed={v:?}: expected an integer"))?
                }
                _ => return Err(format!("{ENV}: unknown fault {k:?}")),
            }
        }
        Ok(f)
    }

    /// Wraps the bucket with the object-store faults.
    pub fn wrap_bucket(&self, bucket: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        if !self.store.is_active() {
            return bucket;
        }
        tracing::warn!(faults = ?self.store, "object-store fault injection is ON (test configuration)");
        Arc::new(Faulty::new(bucket, self.store.clone()))
    }

    /// Wraps the metadata store with the commit-log faults.
    pub fn wrap_meta(&self, meta: Arc<dyn MetaStore>, cluster: &str) -> Arc<dyn MetaStore> {
        if self.commit_ack_loss_rate <= 0.0 {
            return meta;
        }
        tracing::warn!(
            rate = self.commit_ack_loss_rate,
            "commit acknowledgement loss is ON (test configuration)"
        );
        Arc::new(
            LosesAnswers::new(
                meta,
                Layout::new(cluster).log(),
                self.commit_ack_loss_rate,
                self.store.seed,
            )
            .commits_only(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_and_names_bad_keys() {
        let f =
            TestFaults::parse("put_error_rate=0.1, latency=200ms,seed=7,commit_ack_loss_rate=0.2")
                .unwrap();
        assert_eq!(f.store.put_error_rate, 0.1);
        assert_eq!(f.store.latency, Duration::from_millis(200));
        assert_eq!(f.store.seed, 7);
        assert_eq!(f.commit_ack_loss_rate, 0.2);
        assert!(TestFaults::parse("put_error_rate=2")
            .unwrap_err()
            .contains("put_error_rate"));
        assert!(TestFaults::parse("nonsense=1")
            .unwrap_err()
            .contains("nonsense"));
        assert!(TestFaults::parse("latency").is_err());
        assert_eq!(TestFaults::parse("").unwrap().store.seed, 1);
    }
}
