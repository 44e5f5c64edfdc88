//! Consumer lag, exported once per cluster: the agent holding the
//! `consumer-lag` lock reads every group's committed offsets every
//! `consumer_lag_interval` (one metadata-store read per group) and, at each
//! scrape, subtracts them from the high watermarks of its replicated state.
//! The other agents export no lag series, so a sum over agents counts each
//! partition once (a brief overlap when the lock moves is why dashboards
//! take the `max` per partition).

use std::{sync::Arc, time::Duration};

use silt_coordinator::{keys::Layout, Lock};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// (group, topic, partition, value): a committed offset, or a lag.
pub type PartitionValue = (String, String, i32, i64);

/// Committed offsets, as last read by the lock holder.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    /// (group, topic, partition, committed offset).
    pub offsets: Vec<PartitionValue>,
    /// Offsets past `consumer_lag_max_partitions` were left out.
    pub truncated: bool,
}

/// The lag exporter's view: `None` while another agent exports.
#[derive(Debug, Default)]
pub struct Lag {
    committed: std::sync::RwLock<Option<Arc<Committed>>>,
}

impl Lag {
    /// The offsets to export lag for, if this agent exports it.
    pub fn committed(&self) -> Option<Arc<Committed>> {
        self.committed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, c: Option<Committed>) {
        *self.committed.write().unwrap_or_else(|p| p.into_inner()) = c.map(Arc::new);
    }
}

/// The lock's name under the cluster's lock prefix.
const LOCK: &str = "consumer-lag";

/// Holds (or waits for) the lag lock and refreshes the committed offsets
/// while held, until `shutdown`.
pub async fn run(broker: Arc<Broker>, shutdown: CancellationToken) {
    let settings = &broker.settings;
    let key = Layout::new(&settings.cluster).lock(LOCK);
    let ttl = settings.lease_ttl.max(Duration::from_secs(2));
    let mut held: Option<Lock> = None;
    let mut tick = tokio::time::interval(settings.consumer_lag_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let store = broker.log.store();
        if held.as_ref().is_some_and(|l| !l.is_alive()) {
            tracing::info!("consumer lag lock lost; another agent exports lag");
            held = None;
        }
        if held.is_none() && broker.membership.registered() {
            match Lock::try_acquire(store.clone(), &key, &broker.token, ttl).await {
                Ok(Some(l)) => {
                    tracing::info!("exporting consumer lag for the cluster");
                    held = Some(l);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "taking the consumer lag lock failed"),
            }
        }
        if held.is_none() {
            broker.lag.set(None);
            continue;
        }
        match read(&broker).await {
            Ok(c) => {
                if c.truncated {
                    tracing::warn!(
                        max = broker.settings.consumer_lag_max_partitions,
                        "more committed offsets than consumer_lag_max_partitions; lag of the rest is not exported"
                    );
                }
                broker.lag.set(Some(c));
            }
            Err(e) => tracing::warn!(error = %e, "reading committed offsets for lag failed"),
        }
    }
    broker.lag.set(None);
    if let Some(l) = held {
        l.release().await;
    }
}

async fn read(broker: &Broker) -> Result<Committed, silt_coordinator::MetaError> {
    let max = broker.settings.consumer_lag_max_partitions;
    let mut out = Committed::default();
    for group in broker.offsets.groups().await? {
        for (topic, parts) in broker.offsets.fetch(&group).await? {
            for (partition, c) in parts {
                if out.offsets.len() >= max {
                    out.truncated = true;
                    return Ok(out);
                }
                out.offsets
                    .push((group.clone(), topic.clone(), partition, c.offset));
            }
        }
    }
    Ok(out)
}

/// The lag of each committed offset, in order: high watermark − committed
/// offset, never below 0; `None` for a partition that no longer exists.
/// Only numbers are made here (it runs under the state's read lock).
pub fn lags(state: &silt_coordinator::state::State, committed: &Committed) -> Vec<Option<i64>> {
    committed
        .offsets
        .iter()
        .map(|(_, t, p, offset)| {
            state
                .partition(t, *p)
                .map(|s| (s.high_watermark - offset).max(0))
        })
        .collect()
}
