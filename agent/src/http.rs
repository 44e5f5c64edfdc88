//! The HTTP endpoint: `GET /health` and `GET /metrics` (Prometheus text).
//! Deliberately tiny: two read-only routes need no HTTP framework.

use std::sync::Arc;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Connections of the HTTP endpoint at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// Metrics pages rendered at once (each as large as the cluster's series).
const MAX_SCRAPES: usize = 4;

pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let scrapes = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    let tls = broker
        .settings
        .http_tls
        .then(|| broker.security.tls.clone())
        .flatten();
    let auth = (broker.settings.http_authentication == "basic").then(|| {
        Arc::new(crate::security::http_auth::HttpAuth::new(
            broker.security.clone(),
        ))
    });
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let broker = broker.clone();
        let (tls, auth, scrapes) = (tls.clone(), auth.clone(), scrapes.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => answer(stream, peer.ip(), &broker, auth.as_deref(), &scrapes).await,
                Some(tls) => {
                    let accepted = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        tls.acceptor().accept(stream),
                    )
                    .await;
                    if let Ok(Ok(s)) = accepted {
                        answer(s, peer.ip(), &broker, auth.as_deref(), &scrapes).await;
                    }
                }
            }
        });
    }
}

/// One request: `/health` always, `/metrics` after authentication (and
/// DESCRIBE on the cluster under the authorizer) when configured.
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    ip: std::net::IpAddr,
    broker: &Broker,
    auth: Option<&crate::security::http_auth::HttpAuth>,
    scrapes: &tokio::sync::Semaphore,
) {
    let mut buf = vec![0u8; 4096];
    let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
    {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let authorization = request.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_string())
    });
    let (status, body) = match path {
        "/health" => ("200 OK", "ok\n".to_string()),
        "/metrics" => match auth {
            None if broker.security.acls_enabled
                && !broker.security.authorize(
                    crate::security::ANONYMOUS,
                    &ip.to_canonical().to_string(),
                    crate::security::acl::op::DESCRIBE,
                    crate::security::acl::resource::CLUSTER,
                    crate::security::acl::CLUSTER_NAME,
                ) =>
            {
                (
                    "403 Forbidden",
                    "not authorized (User:ANONYMOUS; set http_authentication = \"basic\")\n"
                        .to_string(),
                )
            }
            None => ("200 OK", metrics(broker, scrapes).await),
            Some(auth) => match auth.authenticate(authorization.as_deref(), ip).await {
                Ok(principal) => {
                    if broker.security.authorize(
                        &principal,
                        &ip.to_string(),
                        crate::security::acl::op::DESCRIBE,
                        crate::security::acl::resource::CLUSTER,
                        crate::security::acl::CLUSTER_NAME,
                    ) {
                        ("200 OK", metrics(broker, scrapes).await)
                    } else {
                        ("403 Forbidden", "not authorized\n".to_string())
                    }
                }
                Err(_) => ("401 Unauthorized", "authentication required\n".to_string()),
            },
        },
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let challenge = if status.starts_with("401") {
        "www-authenticate: Basic realm=\"silt\"\r\n"
    } else {
        ""
    };
    let content_type = if status.starts_with("200") && path == "/metrics" {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n{challenge}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The metrics page.
async fn metrics(broker: &Broker, scrapes: &tokio::sync::Semaphore) -> String {
    let _one = scrapes.acquire().await;
    let scrape = Scrape::read(broker).await;
    let store_latency = broker.counters.latency.clone();
    let job_durations = broker.job_counters.durations.clone();
    crate::metrics::render(move |r| {
        r.register(
            "silt_object_store_request_duration_seconds",
            "object-store requests by operation and outcome (GET: to the response headers)",
            store_latency,
        );
        r.register(
            "silt_job_duration_seconds",
            "background job passes, by job",
            job_durations,
        );
        r.register_collector(Box::new(scrape));
    })
}

/// How long a scrape waits for the metadata store's newest log revision.
const APPLY_LAG_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Values read from the agent's state at one scrape.
#[derive(Debug)]
struct Scrape {
    store: Arc<silt_tiering::store::StoreCounters>,
    jobs: Arc<silt_tiering::jobs::JobCounters>,
    gauges: Vec<(&'static str, &'static str, i64)>,
    counters: Vec<(&'static str, &'static str, u64)>,
    build: Vec<(&'static str, String)>,
    cache: silt_tiering::CacheStats,
    groups: (usize, usize, usize),
    /// Present on the agent exporting consumer lag: the committed offsets
    /// and the lag of each.
    lag: Option<(Arc<crate::lag::Committed>, Vec<Option<i64>>)>,
}

impl Scrape {
    async fn read(broker: &Broker) -> Self {
        use crate::security::sasl::{AUTHENTICATIONS, EXPIRED, FAILURES, REAUTHENTICATIONS};
        use std::sync::atomic::Ordering::Relaxed;
        // A slow metadata store must not hold up the scrape: -1 then.
        let behind = tokio::time::timeout(APPLY_LAG_WAIT, broker.log.records_behind())
            .await
            .ok()
            .flatten();
        let state = broker.log.state();
        let totals = state.totals();
        let applied = broker.log.applied();
        let (inflight, budget) = broker.producer.inflight_bytes();
        let lag = broker.lag.committed().map(|c| {
            let lags = crate::lag::lags(&state, &c);
            (c, lags)
        });
        drop(state);
        let gauges = vec![
            ("silt_topics", "topics", totals.topics as i64),
            ("silt_partitions", "partitions", totals.partitions as i64),
            ("silt_records", "records retained (high watermark - log start, summed)", totals.records),
            ("silt_live_agents", "agents registered and live, as this agent sees them", broker.membership.live().len() as i64),
            ("silt_applied_revision", "metadata-store revision of the last log record applied here", applied),
            ("silt_apply_lag_revisions", "revisions of log records in the metadata store not yet applied here (-1: the store could not be read)", behind.unwrap_or(-1)),
            ("silt_produce_inflight_bytes", "produce bytes accepted and not yet answered", inflight as i64),
            ("silt_produce_inflight_budget_bytes", "the in-flight produce budget (max_inflight_bytes)", budget as i64),
        ];
        let counters = vec![
            (
                "silt_sasl_authentications",
                "SASL authentications that succeeded",
                AUTHENTICATIONS.load(Relaxed),
            ),
            (
                "silt_sasl_reauthentications",
                "SASL re-authentications (KIP-368) that succeeded",
                REAUTHENTICATIONS.load(Relaxed),
            ),
            (
                "silt_sasl_authentication_failures",
                "SASL authentications refused",
                FAILURES.load(Relaxed),
            ),
            (
                "silt_sasl_sessions_expired",
                "connections closed: their SASL session expired (connections_max_reauth)",
                EXPIRED.load(Relaxed),
            ),
        ];
        let me = broker.membership.me();
        let build = vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("cluster", broker.settings.cluster.clone()),
            ("agent_id", me.agent_id.clone()),
            ("node_id", me.node_id.to_string()),
            ("zone", me.zone.clone().unwrap_or_default()),
        ];
        Self {
            store: broker.counters.clone(),
            jobs: broker.job_counters.clone(),
            gauges,
            counters,
            build,
            cache: broker.read.cache_stats(),
            groups: broker.groups.sizes(),
            lag,
        }
    }
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use silt_tiering::metrics::{counter, counters, gauge, gauges};
        let e = &mut enc;
        gauges(
            e,
            "silt_build_info",
            "this agent: version and identity",
            &[(self.build.clone(), 1)],
        )?;
        for (name, help, v) in &self.gauges {
            gauge(e, name, help, *v)?;
        }
        for (name, help, v) in &self.counters {
            counter(e, name, help, *v)?;
        }
        self.store.encode(e)?;
        self.jobs.encode(e)?;
        let c = &self.cache;
        counters(
            e,
            "silt_cache_hits",
            "block reads served by the cache, by tier",
            &[
                ([("tier", "memory")], c.memory_hits),
                ([("tier", "disk")], c.disk_hits),
            ],
        )?;
        counter(
            e,
            "silt_cache_misses",
            "block reads fetched from object storage",
            c.misses,
        )?;
        counter(
            e,
            "silt_cache_evictions",
            "blocks evicted from the memory tier",
            c.memory_evictions,
        )?;
        counter(
            e,
            "silt_cache_evicted_bytes",
            "bytes evicted from the memory tier",
            c.memory_evicted_bytes,
        )?;
        gauges(
            e,
            "silt_cache_bytes",
            "bytes held by the cache, by tier (the disk tier's is not measured)",
            &[([("tier", "memory")], c.memory_bytes as i64)],
        )?;
        gauges(
            e,
            "silt_cache_capacity_bytes",
            "the cache's capacity, by tier",
            &[
                ([("tier", "memory")], c.memory_capacity as i64),
                ([("tier", "disk")], c.disk_capacity as i64),
            ],
        )?;
        let (classic, consumer, members) = self.groups;
        gauges(
            e,
            "silt_groups",
            "consumer groups this agent coordinates, by protocol",
            &[
                ([("protocol", "classic")], classic as i64),
                ([("protocol", "consumer")], consumer as i64),
            ],
        )?;
        gauge(
            e,
            "silt_group_members",
            "members of the groups this agent coordinates",
            members as i64,
        )?;
        gauge(
            e,
            "silt_consumer_lag_exporter",
            "1 on the agent exporting consumer lag for the cluster",
            i64::from(self.lag.is_some()),
        )?;
        if let Some((committed, lags)) = &self.lag {
            let series: Vec<_> = committed
                .offsets
                .iter()
                .zip(lags)
                .filter_map(|((g, t, p, _), lag)| {
                    Some((
                        (
                            [("group", g.as_str()), ("topic", t.as_str())],
                            [("partition", p.to_string())],
                        ),
                        (*lag)?,
                    ))
                })
                .collect();
            gauges(
                e,
                "silt_consumer_group_lag",
                "records between a partition's high watermark and the group's committed offset",
                &series,
            )?;
            gauge(
                e,
                "silt_consumer_lag_truncated",
                "1 when committed offsets past consumer_lag_max_partitions were left out",
                i64::from(committed.truncated),
            )?;
        }
        Ok(())
    }
}
