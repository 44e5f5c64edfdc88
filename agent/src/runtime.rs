//! Runs an agent on the components it is given: the part `silt dev`,
//! `silt agent` and the agent's own tests share.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use object_store::ObjectStore;
use silt_coordinator::{
    membership::node_id_for, AgentInfo, Membership, MetaLog, MetaStore, OffsetStore, ProducerIds,
};
use silt_tiering::{
    jobs::Jobs,
    store::{Instrumented, RetryConfig, Retrying},
    BlockCache, FoyerCache, NoCache, ObjectReader,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::Broker,
    clock::{Clock, SystemClock},
    config::Settings,
    fetch::ReadPath,
    group::Groups,
    http,
    produce::{Pipeline, ProduceConfig, Producer},
    server,
    topics::Topics,
};

/// The live parts an agent runs on. Tests pass in-memory ones.
#[derive(Clone)]
pub struct Components {
    pub meta: Arc<dyn MetaStore>,
    /// The bucket, as the agent should see it (fault wrappers included).
    pub bucket: Arc<dyn ObjectStore>,
    pub cache: Arc<dyn BlockCache>,
    pub clock: Arc<dyn Clock>,
}

impl Components {
    /// In-memory everything: metadata, bucket, no cache, the system clock.
    pub fn in_memory() -> Self {
        Self {
            meta: Arc::new(silt_coordinator::EmbeddedStore::in_memory()),
            bucket: Arc::new(object_store::memory::InMemory::new()),
            cache: Arc::new(NoCache::default()),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Opens the foyer block cache the settings describe.
pub async fn open_cache(settings: &Settings) -> anyhow::Result<Arc<dyn BlockCache>> {
    let dir = settings.cache_dir();
    let cache = FoyerCache::open(
        &dir,
        settings.cache_memory.as_u64() as usize,
        settings.cache_disk.as_u64() as usize,
    )
    .await
    .with_context(|| format!("opening block cache in {}", dir.display()))?;
    Ok(Arc::new(cache))
}

/// Serves Kafka on `meta` and `bucket` with the system clock and the block
/// cache the settings name (`silt dev`, `silt agent`).
pub async fn serve_on(
    settings: Settings,
    meta: Arc<dyn MetaStore>,
    bucket: Arc<dyn ObjectStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let parts = Components {
        meta,
        bucket,
        cache: open_cache(&settings).await?,
        clock: Arc::new(SystemClock),
    };
    serve(settings, parts, None, shutdown).await
}

/// The write and read paths on a cluster's metadata and bucket, without a
/// Kafka listener or membership: what an agent is built on, and all the
/// HTTP API needs (the `silt-http` Lambda function runs on one).
pub struct Core {
    pub meta: Arc<dyn MetaStore>,
    /// The bucket with request counters and retries.
    pub objects: Arc<dyn ObjectStore>,
    pub counters: Arc<silt_tiering::store::StoreCounters>,
    pub cache: Arc<dyn BlockCache>,
    pub clock: Arc<dyn Clock>,
    pub reader: ObjectReader,
    pub log: Arc<MetaLog>,
    /// This process's writer id in the commit log (unique per process).
    pub writer: String,
    pub producer: Producer,
    /// Cancel to flush the open segment and stop the producer.
    pub producer_stop: CancellationToken,
    /// Ends once the producer stopped.
    pub producer_done: tokio::task::JoinHandle<()>,
}

/// Loads the metadata (checkpoint, then the log since) and starts the
/// segment writer.
pub async fn open_core(settings: &Settings, parts: Components) -> anyhow::Result<Core> {
    let Components {
        meta,
        bucket,
        cache,
        clock,
    } = parts;
    // Requests are counted as they reach the bucket; failed ones are
    // retried above the count.
    let instrumented = Arc::new(Instrumented::new(bucket));
    let counters = instrumented.counters.clone();
    let objects: Arc<dyn ObjectStore> =
        Arc::new(Retrying::new(instrumented, RetryConfig::default()));

    let reader = ObjectReader::new(
        objects.clone(),
        cache.clone(),
        settings.cache_block.as_u64(),
    )
    .with_readahead(settings.cache_readahead.as_u64())
    .with_ahead_bytes(settings.cache_memory.as_u64() / 2);
    let writer = format!("{}-{}", settings.agent_id(), ulid::Ulid::new());
    silt_tiering::jobs::claim_bucket(&*objects, &settings.cluster)
        .await
        .map_err(|e| anyhow::anyhow!("setting bucket: {e}"))?;
    let log = MetaLog::open(meta.clone(), objects.clone(), &settings.cluster, &writer)
        .await
        .context("loading metadata")?;
    let producer_stop = CancellationToken::new();
    let (producer, producer_done) = Producer::start(
        ProduceConfig {
            flush_interval: settings.flush_interval,
            flush_bytes: settings.flush_bytes.as_u64(),
            max_inflight_bytes: settings.max_inflight_bytes.as_u64() as u32,
            max_concurrent_uploads: settings.max_concurrent_uploads,
            max_commit_record_bytes: settings.max_commit_record_bytes.as_u64() as usize,
        },
        Pipeline {
            store: objects.clone(),
            log: log.clone(),
            reader: reader.clone(),
            clock: clock.clone(),
            ids: Arc::new(silt_tiering::segment::RandomIds),
        },
        producer_stop.clone(),
    );
    Ok(Core {
        meta,
        objects,
        counters,
        cache,
        clock,
        reader,
        log,
        writer,
        producer,
        producer_stop,
        producer_done,
    })
}

impl Core {
    /// The HTTP API on this core.
    pub fn api(&self, settings: &Settings) -> crate::rest::Api {
        rest_api(
            settings,
            &self.log,
            ReadPath::new(self.log.clone(), self.reader.clone()),
            self.producer.clone(),
            &self.meta,
            &self.clock,
        )
    }
}

fn rest_api(
    settings: &Settings,
    log: &Arc<MetaLog>,
    read: ReadPath,
    producer: Producer,
    meta: &Arc<dyn MetaStore>,
    clock: &Arc<dyn Clock>,
) -> crate::rest::Api {
    crate::rest::Api::new(
        format!("silt-{}", settings.cluster),
        Topics::new(
            log.clone(),
            settings.auto_create_topics,
            settings.default_partitions,
        )
        .with_clock(clock.clone()),
        read,
        producer,
        OffsetStore::new(meta.clone(), &settings.cluster),
        clock.clone(),
        crate::rest::Limits::from_settings(settings),
    )
}

/// Users, ACLs, SASL and TLS of this agent, from its settings.
async fn build_security(
    settings: &Settings,
    specs: &[crate::security::ListenerSpec],
    meta: Arc<dyn MetaStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<crate::security::Security>> {
    use crate::security::{acl, sasl, store, tls, Security};
    let store = store::SecurityStore::open(
        meta,
        &settings.cluster,
        store::Limits {
            max_credentials: settings.max_scram_credentials,
            max_acls: settings.max_acls,
        },
        shutdown.clone(),
    )
    .await
    .context("loading users and ACLs")?;
    let tls = match (&settings.ssl_certificate_file, &settings.ssl_key_file) {
        (Some(cert), Some(key)) => Some(
            tls::Reloading::start(
                tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: settings.ssl_ca_file.clone(),
                    client_auth: tls::ClientAuth::parse(&settings.ssl_client_auth)
                        .unwrap_or(tls::ClientAuth::None),
                },
                shutdown,
            )
            .map_err(|e| anyhow::anyhow!("setting {e}"))?,
        ),
        _ => None,
    };
    let mechanisms = settings
        .sasl_mechanisms()
        .map_err(|m| anyhow::anyhow!("setting sasl_enabled_mechanisms: {m}"))?;
    if mechanisms.contains(&sasl::Mech::Plain)
        && specs
            .iter()
            .any(|s| s.protocol == crate::security::Protocol::SaslPlaintext)
    {
        tracing::warn!("SASL/PLAIN on a SASL_PLAINTEXT listener sends passwords in clear text; use SASL_SSL or SCRAM");
    }
    let mut fake_key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut fake_key).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let acls_enabled = settings.authorizer == "acl";
    if acls_enabled && settings.super_user_list().is_empty() {
        tracing::warn!("authorizer = acl without super_users: only ACLs grant anything (create the first ones with an ACL-free admin listener or super_users)");
    }
    Ok(Arc::new(Security {
        store: store.clone(),
        sasl: Arc::new(sasl::SaslContext {
            store,
            mechanisms,
            max_reauth: settings.connections_max_reauth,
            throttle: sasl::Throttle::new(settings.connection_failed_authentication_delay),
            plain_checks: Arc::new(tokio::sync::Semaphore::new(2)),
            fake_key,
        }),
        tls,
        acls_enabled,
        policy: acl::Policy {
            super_users: settings.super_user_list(),
            allow_if_no_acl: settings.allow_everyone_if_no_acl_found,
        },
    }))
}

/// Serves Kafka until `shutdown` fires; then stops accepting, flushes the
/// open segment, answers waiting producers, leaves the membership and
/// writes a checkpoint. Listens on `listener` if given (tests bind port 0),
/// else binds `settings.listen` once the metadata is loaded.
pub async fn serve(
    settings: Settings,
    parts: Components,
    mut listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Core {
        meta,
        objects,
        counters,
        cache,
        clock,
        reader,
        log,
        writer,
        producer,
        producer_stop: producer_shutdown,
        producer_done,
    } = open_core(&settings, parts).await?;
    let agent_id = settings.agent_id();
    let specs = settings
        .listener_specs()
        .map_err(|(name, m)| anyhow::anyhow!("setting {name}: {m}"))?;
    // The first listener may come bound (tests bind port 0).
    let mut bound: Vec<(crate::security::ListenerSpec, TcpListener)> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let l = match (i, &listener) {
            (0, Some(_)) => listener.take().expect("checked"),
            _ => TcpListener::bind(spec.bind).await.with_context(|| {
                format!(
                    "binding the {} Kafka listener on {}",
                    spec.protocol.name(),
                    spec.bind
                )
            })?,
        };
        bound.push((spec.clone(), l));
    }
    // Advertise the port actually bound when the settings leave it to us.
    let advertised: Vec<silt_coordinator::membership::Endpoint> = bound
        .iter()
        .map(|(spec, l)| {
            let (host, port) = match (&spec.advertise, l.local_addr()) {
                (Some((h, p)), _) => (h.clone(), *p as i32),
                (None, Ok(addr)) => (addr.ip().to_string(), addr.port() as i32),
                (None, Err(_)) => (spec.bind.ip().to_string(), spec.bind.port() as i32),
            };
            silt_coordinator::membership::Endpoint {
                listener: spec.protocol.name().to_string(),
                host,
                port,
            }
        })
        .collect();
    let security = build_security(&settings, &specs, meta.clone(), shutdown.clone()).await?;
    let me = AgentInfo {
        agent_id: agent_id.clone(),
        node_id: node_id_for(&agent_id),
        host: advertised[0].host.clone(),
        port: advertised[0].port,
        zone: settings.zone.clone(),
        features: silt_coordinator::records::FEATURES
            .iter()
            .map(|f| f.to_string())
            .collect(),
        leaving: false,
        listeners: if advertised.len() > 1 {
            advertised.clone()
        } else {
            Vec::new()
        },
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
    {
        let m = membership.clone();
        producer.set_fence(Arc::new(move || m.fence()));
    }

    let jobs = Arc::new(Jobs::new(
        log.clone(),
        objects.clone(),
        clock.clone(),
        settings.job_settings(),
        &settings.cluster,
        &writer,
    ));
    let job_list = settings
        .job_list()
        .map_err(|m| anyhow::anyhow!("setting jobs: {m}"))?
        .into_iter()
        .map(|j| (j, crate::jobs::interval(&settings, j)))
        .collect();
    let job_loop = tokio::spawn(crate::jobs::run_loop(
        jobs.clone(),
        job_list,
        crate::jobs::budget(&settings),
        shutdown.clone(),
    ));
    let groups = Arc::new(Groups::with_limits(crate::group::GroupLimits {
        max_members: settings.group_max_size,
        min_session: settings.group_min_session_timeout,
        max_session: settings.group_max_session_timeout,
        initial_delay: settings.group_initial_rebalance_delay,
        consumer: crate::group::consumer::ConsumerLimits {
            session_timeout: settings.group_consumer_session_timeout,
            heartbeat_interval: settings.group_consumer_heartbeat_interval,
            max_members: settings.group_consumer_max_size,
            assignors: settings
                .consumer_assignors()
                .map_err(|m| anyhow::anyhow!("setting group_consumer_assignors: {m}"))?,
        },
    }));
    let group_timers = tokio::spawn(groups.clone().run_timers(shutdown.clone()));
    let broker = Arc::new(Broker {
        node_id: membership.me().node_id,
        cluster_id: format!("silt-{}", settings.cluster),
        topics: Topics::new(
            log.clone(),
            settings.auto_create_topics,
            settings.default_partitions,
        )
        .with_clock(clock.clone()),
        read: ReadPath::new(log.clone(), reader.clone()),
        settings: settings.clone(),
        log: log.clone(),
        producer,
        membership: membership.clone(),
        counters,
        job_counters: jobs.counters(),
        groups,
        offsets: OffsetStore::new(meta.clone(), &settings.cluster),
        producer_ids: ProducerIds::new(meta.clone(), &settings.cluster),
        clock,
        token: writer.clone(),
        claims: Default::default(),
        persisting: Default::default(),
        security,
        txns: crate::txn::Transactions::new(
            objects.clone(),
            reader,
            Arc::new(silt_tiering::segment::RandomIds),
            &settings.cluster,
        ),
        lag: Default::default(),
    });
    crate::metrics::global().set_topic_labels(settings.metrics_topic_labels);
    let lag_export = tokio::spawn(crate::lag::run(broker.clone(), shutdown.clone()));
    let txn_timeouts = tokio::spawn(crate::txn::Transactions::run_timeouts(
        broker.clone(),
        shutdown.clone(),
    ));
    // Groups whose coordinator moved to another agent are dropped here;
    // their members find the new coordinator and rejoin. Offsets of empty
    // groups expire here too.
    let handoff = {
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut expiry =
                tokio::time::interval(broker.settings.offsets_retention_check_interval);
            let mut persist = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => broker.drop_moved_groups(),
                    _ = persist.tick() => {
                        broker.persist_groups().await;
                    }
                    _ = expiry.tick() => {
                        broker.expire_offsets().await;
                    }
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
    let rest = match settings.rest {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(listen = %addr, "serving the HTTP API");
                let mut api = rest_api(
                    &settings,
                    &log,
                    broker.read.clone(),
                    broker.producer.clone(),
                    &meta,
                    &broker.clock,
                );
                let basic = settings.rest_authentication == "basic";
                if basic || broker.security.acls_enabled {
                    api = api.with_auth(
                        Arc::new(crate::security::http_auth::HttpAuth::new(
                            broker.security.clone(),
                        )),
                        basic,
                    );
                }
                let api = Arc::new(api);
                Some(tokio::spawn(crate::rest::serve(
                    l,
                    api,
                    settings.rest_max_connections,
                    settings.connections_max_idle,
                    settings
                        .rest_tls
                        .then(|| broker.security.tls.clone())
                        .flatten(),
                    shutdown.clone(),
                )))
            }
            Err(e) if settings.rest_optional => {
                tracing::warn!(listen = %addr, error = %e, "HTTP API off: its address is taken (set --rest)");
                None
            }
            Err(e) => {
                return Err(e).with_context(|| format!("binding the HTTP API on {addr}"));
            }
        },
        None => None,
    };
    let checkpoints = tokio::spawn(checkpoint_loop(
        log.clone(),
        settings.checkpoint_every,
        shutdown.clone(),
    ));
    tracing::info!(
        listeners = %bound
            .iter()
            .map(|(spec, l)| format!(
                "{}://{}",
                spec.protocol.name(),
                l.local_addr().map_or_else(|_| spec.bind.to_string(), |a| a.to_string())
            ))
            .collect::<Vec<_>>()
            .join(","),
        agent = %agent_id,
        node_id = broker.node_id,
        cluster = %settings.cluster,
        "serving Kafka"
    );

    let listening = bound
        .into_iter()
        .map(|(spec, listener)| server::Listening {
            listener,
            protocol: spec.protocol,
        })
        .collect();
    let serving = tokio::spawn(server::run(listening, broker.clone(), shutdown.clone()));
    shutdown.cancelled().await;
    // Give up the groups first: leave the cluster (other agents take over
    // at their next refresh, about a second) and answer parked JoinGroup
    // and SyncGroup requests with NOT_COORDINATOR, so a rolling restart
    // does not wait for this agent's lease to run out.
    broker.persist_groups().await;
    membership.start_leaving().await;
    membership.refresh_now().await;
    broker.groups.retain(|_| false);
    tracing::info!("shutting down: leaving the cluster; flushing the open segment");
    producer_shutdown.cancel();
    let _ = producer_done.await;
    // Left only now: the segment was committed under the registration it
    // was accepted under.
    membership_stop.cancel();
    membership.leave().await;
    let _ = tokio::time::timeout(Duration::from_secs(30), serving).await;
    let _ = checkpoints.await;
    let _ = job_loop.await;
    let _ = group_timers.await;
    let _ = txn_timeouts.await;
    let _ = lag_export.await;
    let _ = handoff.await;
    for h in [http, rest].into_iter().flatten() {
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

#[cfg(test)]
mod tests {
    //! A whole agent on in-memory parts, driven over TCP with Kafka requests.

    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::{
        messages::{
            fetch_request::{FetchPartition, FetchTopic},
            produce_request::{PartitionProduceData, TopicProduceData},
            ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, RequestHeader,
            ResponseHeader, TopicName,
        },
        protocol::{Decodable, Encodable, StrBytes},
    };
    use silt_tiering::batch::simple_batch;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;

    async fn send<Req: Encodable>(
        conn: &mut TcpStream,
        key: ApiKey,
        version: i16,
        correlation: i32,
        req: &Req,
    ) {
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("test")))
            .encode(&mut body, key.request_header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        conn.write_all(&frame).await.unwrap();
    }

    async fn recv<Resp: Decodable>(conn: &mut TcpStream, key: ApiKey, version: i16) -> (i32, Resp) {
        let len = conn.read_i32().await.unwrap();
        let mut buf = vec![0u8; len as usize];
        conn.read_exact(&mut buf).await.unwrap();
        let mut buf = bytes::Bytes::from(buf);
        let header =
            ResponseHeader::decode(&mut buf, key.response_header_version(version)).unwrap();
        let resp = Resp::decode(&mut buf, version).unwrap();
        assert!(!buf.has_remaining(), "whole response decoded");
        (header.correlation_id, resp)
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        conn: &mut TcpStream,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        send(conn, key, version, 7, req).await;
        let (correlation, resp) = recv(conn, key, version).await;
        assert_eq!(correlation, 7);
        resp
    }

    struct Running {
        addr: std::net::SocketAddr,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    impl Running {
        async fn start(settings: Settings) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(serve(
                settings,
                Components::in_memory(),
                Some(listener),
                shutdown.clone(),
            ));
            Self {
                addr,
                shutdown,
                task,
            }
        }

        async fn connect(&self) -> TcpStream {
            TcpStream::connect(self.addr).await.unwrap()
        }

        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.unwrap().unwrap();
        }
    }

    fn quick() -> Settings {
        Settings {
            flush_interval: Duration::from_millis(10),
            ..Settings::default()
        }
    }

    fn produce_request(topic: &'static str, partition: i32, records: &[u8]) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(bytes::Bytes::copy_from_slice(records)))])])
    }

    /// Defect: a 4 KB Fetch (no byte limit, the same partition listed many
    /// times) built a response of every listing's records.
    #[tokio::test]
    async fn a_hostile_fetch_is_bounded_by_fetch_max_bytes() {
        let agent = Running::start(Settings {
            fetch_max_bytes: bytesize::ByteSize::kib(64),
            ..quick()
        })
        .await;
        let mut conn = agent.connect().await;
        let batch = simple_batch(10, 1_000, &[1u8; 1000], None);
        for _ in 0..20 {
            let r: ProduceResponse = call(
                &mut conn,
                ApiKey::Produce,
                9,
                &produce_request("big", 0, &batch),
            )
            .await;
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
        let listing = FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(i32::MAX);
        let fetch = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("big")))
                .with_partitions(vec![listing; 50])]);
        let r: FetchResponse = call(&mut conn, ApiKey::Fetch, 12, &fetch).await;
        let total: usize = r.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
            .sum();
        assert!(total > 0);
        assert!(
            total <= 64 * 1024 + batch.len(),
            "response of {total} bytes exceeds fetch_max_bytes"
        );
        agent.stop().await;
    }

    /// Defect: pipelined requests that change state ran concurrently, so an
    /// older offset commit could overwrite a newer one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pipelined_offset_commits_take_effect_in_order() {
        use kafka_protocol::messages::{
            offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
            offset_fetch_request::OffsetFetchRequestTopic,
            GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
            OffsetFetchResponse,
        };
        let agent = Running::start(quick()).await;
        let mut conn = agent.connect().await;
        let r: ProduceResponse = call(
            &mut conn,
            ApiKey::Produce,
            9,
            &produce_request("oc", 0, &simple_batch(1, 1, b"x", None)),
        )
        .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        let commit = |offset: i64| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("oc")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])])
        };
        for round in 0..5 {
            let n = 200;
            for i in 1..=n {
                send(
                    &mut conn,
                    ApiKey::OffsetCommit,
                    7,
                    i,
                    &commit(round * 1000 + i as i64),
                )
                .await;
            }
            for i in 1..=n {
                let (c, r): (i32, OffsetCommitResponse) =
                    recv(&mut conn, ApiKey::OffsetCommit, 7).await;
                assert_eq!(c, i, "responses in request order");
                assert_eq!(r.topics[0].partitions[0].error_code, 0);
            }
            let fetch = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("oc")))
                    .with_partition_indexes(vec![0])]));
            let r: OffsetFetchResponse = call(&mut conn, ApiKey::OffsetFetch, 7, &fetch).await;
            assert_eq!(
                r.topics[0].partitions[0].committed_offset,
                round * 1000 + n as i64,
                "the last commit sent is the one that holds"
            );
        }
        agent.stop().await;
    }

    /// Defect: offset commits could fill the metadata store: metadata of
    /// any size, and offsets of empty groups kept forever.
    #[tokio::test]
    async fn offset_metadata_is_bounded_and_old_offsets_expire() {
        use kafka_protocol::messages::{
            offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
            offset_fetch_request::OffsetFetchRequestTopic,
            GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
            OffsetFetchResponse,
        };
        let agent = Running::start(Settings {
            offset_metadata_max_bytes: 10,
            offsets_retention: Duration::from_millis(500),
            offsets_retention_check_interval: Duration::from_millis(100),
            ..quick()
        })
        .await;
        let mut conn = agent.connect().await;
        let r: ProduceResponse = call(
            &mut conn,
            ApiKey::Produce,
            9,
            &produce_request("om", 0, &simple_batch(1, 1, b"x", None)),
        )
        .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        let commit = |metadata: &'static str| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("om")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(StrBytes::from_static_str(
                            metadata,
                        )))])])
        };
        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("om")))
                .with_partition_indexes(vec![0])]));
        let r: OffsetCommitResponse = call(
            &mut conn,
            ApiKey::OffsetCommit,
            7,
            &commit("far too long metadata"),
        )
        .await;
        assert_eq!(
            r.topics[0].partitions[0].error_code, 12,
            "OFFSET_METADATA_TOO_LARGE"
        );
        let r: OffsetFetchResponse = call(&mut conn, ApiKey::OffsetFetch, 7, &fetch).await;
        assert_eq!(
            r.topics[0].partitions[0].committed_offset, -1,
            "nothing stored"
        );
        let r: OffsetCommitResponse = call(&mut conn, ApiKey::OffsetCommit, 7, &commit("ok")).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        let r: OffsetFetchResponse = call(&mut conn, ApiKey::OffsetFetch, 7, &fetch).await;
        assert_eq!(r.topics[0].partitions[0].committed_offset, 1);
        // The group has no members: its offset expires after the retention.
        let mut expired = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r: OffsetFetchResponse = call(&mut conn, ApiKey::OffsetFetch, 7, &fetch).await;
            if r.topics[0].partitions[0].committed_offset == -1 {
                expired = true;
                break;
            }
        }
        assert!(expired, "the offset of an empty group expired");
        agent.stop().await;
    }

    /// Kafka's rules at the protocol edge, where clients hide them.
    #[tokio::test]
    async fn group_and_producer_rules_at_the_protocol_edge() {
        use kafka_protocol::messages::{
            join_group_request::JoinGroupRequestProtocol,
            offset_fetch_request::OffsetFetchRequestTopic, GroupId, InitProducerIdRequest,
            InitProducerIdResponse, JoinGroupRequest, JoinGroupResponse, OffsetFetchRequest,
            OffsetFetchResponse, ProducerId,
        };
        let agent = Running::start(quick()).await;
        let mut conn = agent.connect().await;
        // OffsetFetch v1 has no top-level error: it is on every partition.
        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_indexes(vec![0, 1])]));
        let r: OffsetFetchResponse = call(&mut conn, ApiKey::OffsetFetch, 1, &fetch).await;
        let parts = &r.topics[0].partitions;
        assert_eq!(parts.len(), 2);
        assert!(
            parts
                .iter()
                .all(|p| p.error_code == 24 && p.committed_offset == -1),
            "{parts:?}"
        );
        // JoinGroup v4+ with no member id: MEMBER_ID_REQUIRED and an id.
        let join = |member: StrBytes| {
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("jg")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(member)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(bytes::Bytes::from_static(b"m"))])
        };
        let r: JoinGroupResponse =
            call(&mut conn, ApiKey::JoinGroup, 5, &join(StrBytes::default())).await;
        assert_eq!(r.error_code, 79);
        assert!(!r.member_id.is_empty());
        let r: JoinGroupResponse = call(&mut conn, ApiKey::JoinGroup, 5, &join(r.member_id)).await;
        assert_eq!((r.error_code, r.generation_id), (0, 1));
        // JoinGroup v3 and older: no member id round trip.
        let r: JoinGroupResponse =
            call(&mut conn, ApiKey::JoinGroup, 3, &join(StrBytes::default())).await;
        assert_eq!(r.error_code, 0, "v3 joins at once");
        // InitProducerId without a transactional id: always a new id.
        let first: InitProducerIdResponse = call(
            &mut conn,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
        let again: InitProducerIdResponse = call(
            &mut conn,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(first.producer_id)
                .with_producer_epoch(first.producer_epoch),
        )
        .await;
        assert_eq!(again.error_code, 0);
        assert_ne!(again.producer_id, first.producer_id);
        assert_eq!(again.producer_epoch, 0);
        // A batch with a producer id and no sequence is INVALID_RECORD.
        let r: ProduceResponse = call(
            &mut conn,
            ApiKey::Produce,
            9,
            &produce_request(
                "seq",
                0,
                &simple_batch(1, 1, b"x", Some((first.producer_id.0, 0, -1))),
            ),
        )
        .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 87);
        agent.stop().await;
    }

    /// Agents "a" and "b" on shared in-memory stores, and a group that
    /// "a" coordinates.
    async fn two_agents() -> (Running, Running, String) {
        use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
        let shared = Components::in_memory();
        let start = |id: &'static str| {
            let parts = shared.clone();
            async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let shutdown = CancellationToken::new();
                let settings = Settings {
                    agent_id: id.into(),
                    lease_ttl: Duration::from_secs(30),
                    ..quick()
                };
                let task = tokio::spawn(serve(settings, parts, Some(listener), shutdown.clone()));
                Running {
                    addr,
                    shutdown,
                    task,
                }
            }
        };
        let a = start("a").await;
        let b = start("b").await;
        let node_a = silt_coordinator::membership::node_id_for("a");
        let mut conn_b = b.connect().await;
        for attempt in 0..400 {
            let g = format!("g{}", attempt % 50);
            let r: FindCoordinatorResponse = call(
                &mut conn_b,
                ApiKey::FindCoordinator,
                1,
                &FindCoordinatorRequest::default().with_key(StrBytes::from_string(g.clone())),
            )
            .await;
            if r.node_id.0 == node_a {
                return (a, b, g);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no group is coordinated by a");
    }

    /// A group whose coordinator moves goes on at the new one without a
    /// rebalance: its members heartbeat and commit with their generation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_survives_its_coordinator_moving() {
        use kafka_protocol::messages::{
            join_group_request::JoinGroupRequestProtocol,
            offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
            sync_group_request::SyncGroupRequestAssignment,
            GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
            OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse,
        };
        let (a, b, group) = two_agents().await;
        let gid = || GroupId(StrBytes::from_string(group.clone()));
        let mut conn_a = a.connect().await;
        let r: ProduceResponse = call(
            &mut conn_a,
            ApiKey::Produce,
            9,
            &produce_request("moved", 0, &simple_batch(1, 1, b"x", None)),
        )
        .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        let join = JoinGroupRequest::default()
            .with_group_id(gid())
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(b"m"))]);
        let joined: JoinGroupResponse = call(&mut conn_a, ApiKey::JoinGroup, 3, &join).await;
        assert_eq!((joined.error_code, joined.generation_id), (0, 1));
        let me = joined.member_id.clone();
        let sync = SyncGroupRequest::default()
            .with_group_id(gid())
            .with_generation_id(1)
            .with_member_id(me.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(me.clone())
                .with_assignment(bytes::Bytes::from_static(b"mine"))]);
        let synced: SyncGroupResponse = call(&mut conn_a, ApiKey::SyncGroup, 3, &sync).await;
        assert_eq!(
            (synced.error_code, &synced.assignment[..]),
            (0, &b"mine"[..])
        );
        // A stops (its state is persisted); B coordinates the group now.
        a.shutdown.cancel();
        a.task.await.unwrap().unwrap();
        let mut conn_b = b.connect().await;
        let heartbeat = HeartbeatRequest::default()
            .with_group_id(gid())
            .with_generation_id(1)
            .with_member_id(me.clone());
        let mut answered = None;
        for _ in 0..100 {
            let r: HeartbeatResponse = call(&mut conn_b, ApiKey::Heartbeat, 3, &heartbeat).await;
            if r.error_code != 16 {
                answered = Some(r.error_code);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            answered,
            Some(0),
            "the member heartbeats on at B: no rebalance"
        );
        let commit = OffsetCommitRequest::default()
            .with_group_id(gid())
            .with_generation_id_or_member_epoch(1)
            .with_member_id(me.clone())
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("moved")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(1)])]);
        let r: OffsetCommitResponse = call(&mut conn_b, ApiKey::OffsetCommit, 7, &commit).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        let again: SyncGroupResponse = call(&mut conn_b, ApiKey::SyncGroup, 3, &sync).await;
        assert_eq!((again.error_code, &again.assignment[..]), (0, &b"mine"[..]));
        b.stop().await;
    }

    /// On shutdown an agent gives its groups up first: parked joins get
    /// NOT_COORDINATOR at once and another agent coordinates the group
    /// within about a second, not after the lease runs out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopping_agent_hands_its_groups_over_at_once() {
        use kafka_protocol::messages::{
            join_group_request::JoinGroupRequestProtocol, FindCoordinatorRequest,
            FindCoordinatorResponse, GroupId, JoinGroupRequest, JoinGroupResponse,
        };
        let (a, b, group) = two_agents().await;
        let node_b = silt_coordinator::membership::node_id_for("b");
        let find = |group: String| {
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group))
        };
        let mut conn_b = b.connect().await;
        let join = || {
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                .with_session_timeout_ms(30_000)
                .with_rebalance_timeout_ms(60_000)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(bytes::Bytes::from_static(b"m"))])
        };
        let mut first = a.connect().await;
        let r: JoinGroupResponse = call(&mut first, ApiKey::JoinGroup, 3, &join()).await;
        assert_eq!(r.error_code, 0);
        // A second member's join parks: the first must rejoin first.
        let mut second = a.connect().await;
        send(&mut second, ApiKey::JoinGroup, 3, 9, &join()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stopped = tokio::time::Instant::now();
        a.shutdown.cancel();
        let (_, parked): (i32, JoinGroupResponse) = tokio::time::timeout(
            Duration::from_secs(5),
            recv(&mut second, ApiKey::JoinGroup, 3),
        )
        .await
        .expect("the parked join is answered at once");
        assert_eq!(parked.error_code, 16, "NOT_COORDINATOR");
        // B coordinates the group within about a second.
        loop {
            let r: FindCoordinatorResponse = call(
                &mut conn_b,
                ApiKey::FindCoordinator,
                1,
                &find(group.clone()),
            )
            .await;
            if r.error_code == 0 && r.node_id.0 == node_b {
                break;
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(5),
                "B did not take the group over"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let handover = stopped.elapsed();
        assert!(
            handover < Duration::from_secs(3),
            "handover took {handover:?}"
        );
        a.task.await.unwrap().unwrap();
        b.stop().await;
    }

    /// A connection cannot park more than `max_group_waits_per_connection`
    /// joins at once: the next is not read until one is answered.
    /// KIP-848 at the protocol edge: join, revocation before assignment,
    /// member epochs on OffsetCommit/OffsetFetch v9, ConsumerGroupDescribe,
    /// Kafka's request checks, and the errors of mixed groups.
    #[tokio::test]
    async fn consumer_protocol_groups_at_the_protocol_edge() {
        use kafka_protocol::messages::{
            consumer_group_heartbeat_request::TopicPartitions as Owned,
            join_group_request::JoinGroupRequestProtocol,
            offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
            offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics},
            ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
            ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribeGroupsRequest,
            DescribeGroupsResponse, GroupId, JoinGroupRequest, JoinGroupResponse,
            OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
        };
        let agent = Running::start(Settings {
            default_partitions: 4,
            group_initial_rebalance_delay: Duration::ZERO,
            ..quick()
        })
        .await;
        let mut conn = agent.connect().await;
        let r: ProduceResponse = call(
            &mut conn,
            ApiKey::Produce,
            9,
            &produce_request("cg", 0, &simple_batch(1, 1, b"x", None)),
        )
        .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        let sb = StrBytes::from_static_str;
        let join = |member: &'static str| {
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(sb("g848")))
                .with_member_id(sb(member))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(sb("cg"))]))
                .with_topic_partitions(Some(vec![]))
        };
        let hb = |member: &'static str, epoch: i32, owned: Vec<Owned>| {
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(sb("g848")))
                .with_member_id(sb(member))
                .with_member_epoch(epoch)
                .with_rebalance_timeout_ms(-1)
                .with_topic_partitions(Some(owned))
        };
        async fn beat(
            conn: &mut TcpStream,
            r: ConsumerGroupHeartbeatRequest,
        ) -> ConsumerGroupHeartbeatResponse {
            call(conn, ApiKey::ConsumerGroupHeartbeat, 1, &r).await
        }
        let owned = |resp: &ConsumerGroupHeartbeatResponse| -> Vec<Owned> {
            resp.assignment
                .as_ref()
                .expect("an assignment")
                .topic_partitions
                .iter()
                .map(|tp| {
                    Owned::default()
                        .with_topic_id(tp.topic_id)
                        .with_partitions(tp.partitions.clone())
                })
                .collect()
        };
        let count = |o: &[Owned]| o.iter().map(|t| t.partitions.len()).sum::<usize>();

        // Kafka's request checks.
        let r = beat(&mut conn, join("a").with_subscribed_topic_names(None)).await;
        assert_eq!(r.error_code, 42, "{r:?}");
        let r = beat(
            &mut conn,
            join("a").with_server_assignor(Some(sb("sticky"))),
        )
        .await;
        assert_eq!(r.error_code, 112, "UNSUPPORTED_ASSIGNOR: {r:?}");
        assert!(r.error_message.unwrap().contains("uniform, range"));
        let r = beat(
            &mut conn,
            join("a").with_subscribed_topic_regex(Some(sb("("))),
        )
        .await;
        assert_eq!(r.error_code, 128, "INVALID_REGULAR_EXPRESSION: {r:?}");
        let r = beat(&mut conn, hb("a", -3, vec![])).await;
        assert_eq!(r.error_code, 42, "{r:?}");

        // a joins: epoch 1, every partition.
        let a1 = beat(&mut conn, join("a")).await;
        assert_eq!((a1.error_code, a1.member_epoch), (0, 1), "{a1:?}");
        assert_eq!(a1.heartbeat_interval_ms, 5000);
        let a_owned = owned(&a1);
        assert_eq!(count(&a_owned), 4);
        let topic_id = a_owned[0].topic_id;

        // A classic member cannot join it; DescribeGroups does not describe it.
        let classic = JoinGroupRequest::default()
            .with_group_id(GroupId(sb("g848")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(sb("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(sb("range"))
                .with_metadata(bytes::Bytes::from_static(b"m"))]);
        let r: JoinGroupResponse = call(&mut conn, ApiKey::JoinGroup, 3, &classic).await;
        assert_eq!(r.error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");
        let r: DescribeGroupsResponse = call(
            &mut conn,
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb("g848"))]),
        )
        .await;
        assert_eq!(r.groups[0].error_code, 69, "GROUP_ID_NOT_FOUND");

        // Offsets at the member epoch; a stale epoch is refused.
        let commit = |epoch: i32| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(sb("g848")))
                .with_member_id(sb("a"))
                .with_generation_id_or_member_epoch(epoch)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(sb("cg")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)])])
        };
        let r: OffsetCommitResponse = call(&mut conn, ApiKey::OffsetCommit, 9, &commit(1)).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        let r: OffsetCommitResponse = call(&mut conn, ApiKey::OffsetCommit, 9, &commit(0)).await;
        assert_eq!(
            r.topics[0].partitions[0].error_code, 113,
            "STALE_MEMBER_EPOCH"
        );
        let fetch = |epoch: i32| {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(sb("g848")))
                .with_member_id(Some(sb("a")))
                .with_member_epoch(epoch)
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(sb("cg")))
                    .with_partition_indexes(vec![0])]))])
        };
        let r: OffsetFetchResponse = call(&mut conn, ApiKey::OffsetFetch, 9, &fetch(1)).await;
        assert_eq!(r.groups[0].error_code, 0);
        assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 1);
        let r: OffsetFetchResponse = call(&mut conn, ApiKey::OffsetFetch, 9, &fetch(7)).await;
        assert_eq!(r.groups[0].error_code, 113, "STALE_MEMBER_EPOCH");

        // b joins: it gets nothing until a gives up half; a keeps epoch 1.
        let b1 = beat(&mut conn, join("b")).await;
        assert_eq!((b1.error_code, b1.member_epoch), (0, 2), "{b1:?}");
        assert_eq!(count(&owned(&b1)), 0);
        let a2 = beat(&mut conn, hb("a", 1, a_owned.clone())).await;
        assert_eq!((a2.error_code, a2.member_epoch), (0, 1), "{a2:?}");
        let a_kept = owned(&a2);
        assert_eq!(count(&a_kept), 2);
        let b2 = beat(&mut conn, hb("b", 2, vec![])).await;
        assert_eq!(count(&owned(&b2)), 0, "a has not given them up yet");
        let a3 = beat(&mut conn, hb("a", 1, a_kept.clone())).await;
        assert_eq!((a3.error_code, a3.member_epoch), (0, 2), "{a3:?}");
        let b3 = beat(&mut conn, hb("b", 2, vec![])).await;
        let b_owned = owned(&b3);
        assert_eq!(count(&b_owned), 2);
        for t in &b_owned {
            assert_eq!(t.topic_id, topic_id);
            for p in &t.partitions {
                assert!(!a_kept[0].partitions.contains(p), "{p} has two owners");
            }
        }
        // An epoch from the future is fenced.
        let r = beat(&mut conn, hb("b", 9, b_owned.clone())).await;
        assert_eq!(r.error_code, 110, "FENCED_MEMBER_EPOCH");

        let d: ConsumerGroupDescribeResponse = call(
            &mut conn,
            ApiKey::ConsumerGroupDescribe,
            1,
            &ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(sb("g848")), GroupId(sb("nope"))]),
        )
        .await;
        let g = &d.groups[0];
        assert_eq!(g.error_code, 0);
        assert_eq!(
            (
                g.group_state.as_str(),
                g.group_epoch,
                g.assignor_name.as_str()
            ),
            ("Stable", 2, "uniform")
        );
        assert_eq!(g.members.len(), 2);
        assert!(g
            .members
            .iter()
            .all(|m| m.member_epoch == 2 && m.member_type == 1));
        assert_eq!(
            g.members[0].assignment.topic_partitions[0]
                .topic_name
                .0
                .as_str(),
            "cg"
        );
        assert_eq!(d.groups[1].error_code, 69);

        // A consumer-protocol member cannot join a classic group with members.
        let classic = classic.with_group_id(GroupId(sb("gclassic")));
        let r: JoinGroupResponse = call(&mut conn, ApiKey::JoinGroup, 3, &classic).await;
        assert_eq!(r.error_code, 0);
        let r = beat(&mut conn, join("c").with_group_id(GroupId(sb("gclassic")))).await;
        assert_eq!(r.error_code, 69, "{r:?}");
        assert!(r.error_message.unwrap().contains("classic group"));

        // A pattern subscription: the topics whose whole name matches.
        let r = beat(
            &mut conn,
            join("r")
                .with_group_id(GroupId(sb("g848r")))
                .with_subscribed_topic_names(None)
                .with_subscribed_topic_regex(Some(sb("c[g]"))),
        )
        .await;
        assert_eq!(r.error_code, 0, "{r:?}");
        assert_eq!(count(&owned(&r)), 4);
        let r = beat(
            &mut conn,
            join("r2")
                .with_group_id(GroupId(sb("g848r2")))
                .with_subscribed_topic_names(None)
                .with_subscribed_topic_regex(Some(sb("c"))),
        )
        .await;
        assert_eq!(count(&owned(&r)), 0, "a pattern matches whole names");

        // Leaving: b's partitions go back to a at its next heartbeat.
        let r = beat(&mut conn, hb("b", -1, vec![])).await;
        assert_eq!((r.error_code, r.member_epoch), (0, -1));
        let a4 = beat(&mut conn, hb("a", 2, a_kept)).await;
        assert_eq!((a4.error_code, a4.member_epoch), (0, 3));
        assert_eq!(count(&owned(&a4)), 4);
        agent.stop().await;
    }

    #[tokio::test]
    async fn parked_joins_per_connection_are_bounded() {
        use kafka_protocol::messages::{
            join_group_request::JoinGroupRequestProtocol, GroupId, JoinGroupRequest,
            JoinGroupResponse,
        };
        let agent = Running::start(Settings {
            max_group_waits_per_connection: 2,
            ..quick()
        })
        .await;
        let mut conn = agent.connect().await;
        let join = |g: &'static str| {
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(g)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(bytes::Bytes::from_static(b"m"))])
        };
        // Each first join of an empty group waits the initial rebalance
        // delay (1 s).
        let sent = tokio::time::Instant::now();
        for (i, g) in ["p1", "p2", "p3"].into_iter().enumerate() {
            send(&mut conn, ApiKey::JoinGroup, 3, i as i32, &join(g)).await;
        }
        let mut answered = Vec::new();
        for _ in 0..3 {
            let (c, r): (i32, JoinGroupResponse) = recv(&mut conn, ApiKey::JoinGroup, 3).await;
            assert_eq!(r.error_code, 0);
            answered.push((c, sent.elapsed()));
        }
        assert_eq!(
            answered.iter().map(|a| a.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        // The third was read only once a wait was free: a second delay.
        assert!(
            answered[2].1 >= Duration::from_millis(1900),
            "third join answered after {:?}",
            answered[2].1
        );
        agent.stop().await;
    }

    #[tokio::test]
    async fn connections_are_limited_and_idle_ones_closed() {
        let agent = Running::start(Settings {
            max_connections: 2,
            connections_max_idle: Duration::from_millis(300),
            ..quick()
        })
        .await;
        let closed = |mut c: TcpStream| async move {
            let mut b = [0u8; 1];
            matches!(
                tokio::time::timeout(Duration::from_secs(5), c.read(&mut b)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        };
        let a = agent.connect().await;
        let b = agent.connect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = agent.connect().await;
        assert!(closed(third).await, "a third connection is closed at once");
        // Idle connections are closed after connections_max_idle.
        let started = tokio::time::Instant::now();
        assert!(closed(a).await && closed(b).await);
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Their slots are free again.
        let mut again = agent.connect().await;
        let r: ProduceResponse = call(
            &mut again,
            ApiKey::Produce,
            9,
            &produce_request("idle", 0, &simple_batch(1, 1, b"x", None)),
        )
        .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        agent.stop().await;
    }

    #[tokio::test]
    async fn a_whole_agent_runs_on_in_memory_parts() {
        let settings = Settings {
            flush_interval: Duration::from_millis(10),
            ..Settings::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let parts = Components::in_memory();
        let bucket = parts.bucket.clone();
        let shutdown = CancellationToken::new();
        let agent = tokio::spawn(serve(settings, parts, Some(listener), shutdown.clone()));
        let mut conn = TcpStream::connect(addr).await.unwrap();

        let records = simple_batch(3, 1_000, b"hello", None);
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("auto")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records.clone().into()))])]);
        for expected in [0, 3] {
            let r: ProduceResponse = call(&mut conn, ApiKey::Produce, 9, &produce).await;
            let p = &r.responses[0].partition_responses[0];
            assert_eq!((p.error_code, p.base_offset), (0, expected));
        }
        let fetch = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("auto")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let r: FetchResponse = call(&mut conn, ApiKey::Fetch, 12, &fetch).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, 6));
        let bytes = p.records.clone().unwrap();
        assert_eq!(bytes.len(), 2 * records.len());
        // The second batch carries its committed offset.
        assert_eq!(
            &bytes[records.len()..records.len() + 8],
            &3i64.to_be_bytes()
        );
        // Each flush wrote one segment object to the bucket.
        let objects: Vec<_> = futures::StreamExt::collect::<Vec<_>>(
            bucket.list(Some(&object_store::path::Path::from("segments"))),
        )
        .await;
        assert_eq!(objects.len(), 2);

        shutdown.cancel();
        agent.await.unwrap().unwrap();
    }
}
