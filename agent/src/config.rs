//! Agent settings: defaults, then `silt.toml`, then `SILT_*` environment
//! variables, then command-line flags (highest).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use bytesize::ByteSize;
use serde::Deserialize;
use silt_tiering::store::RetryConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the Kafka listener binds.
    pub listen: SocketAddr,
    /// Address given to clients in Metadata (defaults to `listen`).
    pub advertise: Option<String>,
    /// Kafka's `listeners`: `PROTOCOL://HOST:PORT,...` with PLAINTEXT, SSL,
    /// SASL_PLAINTEXT, SASL_SSL; unset: one PLAINTEXT listener on `listen`.
    pub listeners: Option<String>,
    /// Kafka's `advertised.listeners`, same form: what Metadata gives a
    /// client per listener it connected to (unset: `advertise` for the
    /// first listener, the bound address for the others).
    pub advertised_listeners: Option<String>,
    /// PEM certificate chain of the SSL and SASL_SSL listeners and of the
    /// HTTP endpoints' TLS (reloaded on change or SIGHUP).
    pub ssl_certificate_file: Option<PathBuf>,
    /// PEM private key of `ssl_certificate_file`.
    pub ssl_key_file: Option<PathBuf>,
    /// PEM CA certificates of client certificates (`ssl_client_auth`).
    pub ssl_ca_file: Option<PathBuf>,
    /// Kafka's `ssl.client.auth`: `none`, `requested` or `required`.
    pub ssl_client_auth: String,
    /// Kafka's `sasl.enabled.mechanisms`: of PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512.
    pub sasl_enabled_mechanisms: String,
    /// Kafka's `connections.max.reauth.ms`: a SASL session must
    /// re-authenticate within this (0: never).
    #[serde(with = "humantime_serde")]
    pub connections_max_reauth: Duration,
    /// Kafka's `connection.failed.authentication.delay.ms`: the least wait
    /// before a failed authentication is answered and the connection
    /// closed (it grows with repeated failures from one address).
    #[serde(with = "humantime_serde")]
    pub connection_failed_authentication_delay: Duration,
    /// `acl` turns Kafka's authorizer on (every request checked against
    /// the ACLs); `none` lets every connection do everything.
    pub authorizer: String,
    /// Kafka's `super.users`: principals allowed everything, `;`-separated
    /// (`User:admin;User:ops`).
    pub super_users: String,
    /// Kafka's `allow.everyone.if.no.acl.found`.
    pub allow_everyone_if_no_acl_found: bool,
    /// ACL bindings stored at most.
    pub max_acls: usize,
    /// SCRAM credentials (users × mechanisms) stored at most.
    pub max_scram_credentials: usize,
    /// `basic`: the HTTP API requires HTTP Basic authentication with a
    /// SASL user's password, and the authorizer decides per request;
    /// `none`: open.
    pub rest_authentication: String,
    /// The HTTP API over TLS (`ssl_certificate_file`).
    pub rest_tls: bool,
    /// `basic`: `/metrics` requires HTTP Basic authentication (and DESCRIBE
    /// on the cluster when the authorizer is on); `/health` stays open.
    pub http_authentication: String,
    /// `/health` and `/metrics` over TLS (`ssl_certificate_file`).
    pub http_tls: bool,
    /// Root for the local bucket, metadata and cache in `silt dev`.
    pub data_dir: PathBuf,
    /// Name of the cluster; prefixes every metadata key.
    pub cluster: String,
    /// Stable id of this agent.
    pub agent_id: String,
    /// Seal the open segment after this long.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Seal the open segment once it holds this many bytes.
    pub flush_bytes: ByteSize,
    /// Produce waits once open and uploading segments hold this many bytes.
    pub max_inflight_bytes: ByteSize,
    /// Segments uploading at once.
    pub max_concurrent_uploads: usize,
    /// A segment is sealed before its commit record could exceed this
    /// (etcd refuses requests above 1.5 MiB by default).
    pub max_commit_record_bytes: ByteSize,
    /// Frames larger than this close the connection.
    pub max_request_bytes: ByteSize,
    /// Create unknown topics on Metadata and Produce.
    pub auto_create_topics: bool,
    pub default_partitions: u32,
    /// Memory and disk budget of the block cache.
    pub cache_memory: ByteSize,
    pub cache_disk: ByteSize,
    pub cache_block: ByteSize,
    /// Write a checkpoint after this many applied log records.
    pub checkpoint_every: u64,
    /// Upper bound on a fetch's long poll.
    #[serde(with = "humantime_serde")]
    pub max_fetch_wait: Duration,
    /// Record bytes in one Fetch response at most (Kafka's
    /// `fetch.max.bytes`), whatever the request asks.
    pub fetch_max_bytes: ByteSize,
    /// Response bytes a connection may hold before they are written; a
    /// client that does not read its responses stops being served.
    pub connection_response_bytes: ByteSize,
    /// Open client connections at most; more are closed at once.
    pub max_connections: usize,
    /// Topics whose produce and fetch metrics carry a `topic` label of
    /// their own, at most; later topics share the label `_other`, and 0
    /// drops per-topic labels altogether (for very many topics).
    pub metrics_topic_labels: usize,
    /// How often the agent exporting consumer lag (one per cluster, by
    /// lease) reads the committed offsets.
    #[serde(with = "humantime_serde")]
    pub consumer_lag_interval: Duration,
    /// Partitions of committed offsets the lag export covers at most (one
    /// series each); offsets past it are not exported, and
    /// `silt_consumer_lag_truncated` says so.
    pub consumer_lag_max_partitions: usize,
    /// Members of one consumer group at most (Kafka's `group.max.size`).
    pub group_max_size: usize,
    /// The shortest session timeout a member may ask for (Kafka's
    /// `group.min.session.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub group_min_session_timeout: Duration,
    /// The longest session timeout a member may ask for (Kafka's
    /// `group.max.session.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub group_max_session_timeout: Duration,
    /// How long the first rebalance of an empty group waits for more
    /// members (Kafka's `group.initial.rebalance.delay.ms`).
    #[serde(with = "humantime_serde")]
    pub group_initial_rebalance_delay: Duration,
    /// A member of a consumer-protocol group (KIP-848) that has not
    /// heartbeated this long is removed (Kafka's
    /// `group.consumer.session.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub group_consumer_session_timeout: Duration,
    /// How often members of consumer-protocol groups heartbeat (Kafka's
    /// `group.consumer.heartbeat.interval.ms`).
    #[serde(with = "humantime_serde")]
    pub group_consumer_heartbeat_interval: Duration,
    /// Members of one consumer-protocol group at most (Kafka's
    /// `group.consumer.max.size`).
    pub group_consumer_max_size: usize,
    /// Server-side assignors offered to consumer-protocol groups, the
    /// default first (Kafka's `group.consumer.assignors`): `uniform`,
    /// `range`.
    pub group_consumer_assignors: String,
    /// The longest `transaction.timeout.ms` a transactional producer may
    /// ask for (Kafka's `transaction.max.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub transaction_max_timeout: Duration,
    /// A transactional id unused this long is forgotten (Kafka's
    /// `transactional.id.expiration.ms`).
    #[serde(with = "humantime_serde")]
    pub transactional_id_expiration: Duration,
    /// The largest record batch a topic accepts unless its
    /// `max.message.bytes` says otherwise (Kafka's `message.max.bytes`).
    pub message_max_bytes: u32,
    /// JoinGroup and SyncGroup requests one connection may have waiting
    /// for their groups at once.
    pub max_group_waits_per_connection: usize,
    /// Longest metadata string an offset commit may carry (Kafka's
    /// `offset.metadata.max.bytes`).
    pub offset_metadata_max_bytes: usize,
    /// Committed offsets of a group without members expire this long after
    /// they were committed (Kafka's `offsets.retention.minutes`).
    #[serde(with = "humantime_serde")]
    pub offsets_retention: Duration,
    /// How often expired offsets are looked for (Kafka's
    /// `offsets.retention.check.interval.ms`).
    #[serde(with = "humantime_serde")]
    pub offsets_retention_check_interval: Duration,
    /// A connection that sends nothing for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    #[serde(with = "humantime_serde")]
    pub connections_max_idle: Duration,
    /// `text` or `json`.
    pub log_format: String,
    /// etcd endpoints, comma-separated (`silt agent`).
    pub etcd: String,
    /// PEM file of the CA that signed the etcd servers' certificates
    /// (needed for `https://` endpoints).
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM certificate this agent presents to etcd (etcd's
    /// `--client-cert-auth`), with `etcd_key_file`.
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM private key of `etcd_cert_file`.
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user (etcd's `auth enable`), with `etcd_password`.
    pub etcd_user: Option<String>,
    /// Password of `etcd_user`; never logged or shown.
    pub etcd_password: Option<Secret>,
    /// `s3://bucket/prefix` or `file:///path` (`silt agent`).
    pub bucket: Option<String>,
    /// This agent's zone, for zone-aware placement.
    pub zone: Option<String>,
    /// Block cache directory (default: `<data_dir>/cache`).
    pub cache_dir: Option<PathBuf>,
    /// Address of the HTTP endpoint (`/health`, `/metrics`); off when unset.
    pub http: Option<SocketAddr>,
    /// Address of the HTTP API (`docs/http-api.md`); off when unset
    /// (`silt dev`: 127.0.0.1:8082 unless `--no-rest`).
    pub rest: Option<SocketAddr>,
    /// One HTTP API request body at most.
    pub rest_max_request_bytes: ByteSize,
    /// Record bytes one HTTP fetch reads at most (a batch decompresses to
    /// at most eight times this).
    pub rest_fetch_max_bytes: ByteSize,
    /// Open HTTP API connections at most; more wait to be accepted.
    pub rest_max_connections: usize,
    /// Records in one HTTP produce request or fetch answer at most.
    pub rest_max_records: usize,
    /// Time for an HTTP API request body to arrive.
    #[serde(with = "humantime_serde")]
    pub rest_request_timeout: Duration,
    /// Bytes of HTTP API request bodies held at once, across connections;
    /// a request waits for its share (at least `rest_max_request_bytes`).
    pub rest_buffer_bytes: ByteSize,
    /// Set by `silt dev` when it chose `rest` itself: a busy port turns the
    /// HTTP API off with a warning instead of failing.
    #[serde(skip)]
    pub rest_optional: bool,
    /// Membership lease TTL: a dead agent leaves Metadata within it.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Bytes one GET may fetch past the block a sequential read misses on
    /// (along a partition's contiguous run in a compacted object).
    pub cache_readahead: ByteSize,
    /// Timeout of one object store request (`s3://` buckets).
    #[serde(with = "humantime_serde")]
    pub object_store_timeout: Duration,
    /// Background jobs this agent takes part in (one holder per job in the
    /// cluster at a time): `retention,compaction,cleaner,tables,gc`, or
    /// `none`.
    pub jobs: String,
    /// Most time one job pass spends before it leaves the rest for the
    /// next pass.
    #[serde(with = "humantime_serde")]
    pub jobs_pass_time: Duration,
    /// Cluster default `retention.ms` for topics without their own (Kafka's
    /// `log.retention.ms`); -1 keeps records forever.
    pub log_retention_ms: i64,
    /// Cluster default `retention.bytes` per partition (Kafka's
    /// `log.retention.bytes`); -1 for no size limit.
    pub log_retention_bytes: i64,
    /// How often retention looks for records to delete (Kafka's
    /// `log.retention.check.interval.ms`).
    #[serde(with = "humantime_serde")]
    pub retention_check_interval: Duration,
    /// How often compaction looks for small segments to merge.
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
    /// A partition's run in a compacted object is final at this size.
    pub compaction_run_bytes: ByteSize,
    /// Largest object compaction writes (it holds about twice this in
    /// memory while it writes one).
    pub compaction_object_bytes: ByteSize,
    /// Largest index entry compaction writes (a fetch reads whole entries).
    pub compaction_entry_bytes: ByteSize,
    /// Bytes one compaction pass reads at most.
    pub compaction_pass_bytes: ByteSize,
    /// Records sealed less than this long ago are not compacted.
    #[serde(with = "humantime_serde")]
    pub compaction_min_age: Duration,
    /// Records in small segments this old are compacted even when their
    /// partition has less than a run's worth.
    #[serde(with = "humantime_serde")]
    pub compaction_max_lag: Duration,
    /// How often the cleaner looks for compacted topics' partitions to
    /// clean (Kafka's `log.cleaner.backoff.ms`).
    #[serde(with = "humantime_serde")]
    pub cleaner_interval: Duration,
    /// Memory for the cleaner's map of keys in one pass (Kafka's
    /// `log.cleaner.dedupe.buffer.size`); a partition with more keys is
    /// cleaned in several passes.
    pub cleaner_dedupe_buffer_bytes: ByteSize,
    /// How often table export looks for records to write as Parquet.
    #[serde(with = "humantime_serde")]
    pub tables_interval: Duration,
    /// Export topics without their own `silt.table.enable` as tables.
    pub table_enable_default: bool,
    /// Record bytes of one table file at most (it is built in memory).
    pub table_file_bytes: ByteSize,
    /// A table file is written once the oldest record waiting is this old,
    /// even below `table_file_bytes`.
    #[serde(with = "humantime_serde")]
    pub table_max_age: Duration,
    /// How often object GC runs.
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
    /// An object is deleted this long after the index stopped referencing
    /// it (readers that looked it up before may still read it).
    #[serde(with = "humantime_serde")]
    pub gc_grace: Duration,
    /// An upload the log never committed is deleted once this old.
    #[serde(with = "humantime_serde")]
    pub gc_orphan_age: Duration,
    /// The settings given in the file, the environment or on the command
    /// line (DescribeConfigs reports them as STATIC_BROKER_CONFIG).
    #[serde(skip)]
    pub explicit: std::collections::BTreeSet<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9092".parse().expect("valid default address"),
            advertise: None,
            listeners: None,
            advertised_listeners: None,
            ssl_certificate_file: None,
            ssl_key_file: None,
            ssl_ca_file: None,
            ssl_client_auth: "none".into(),
            sasl_enabled_mechanisms: "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN".into(),
            connections_max_reauth: Duration::ZERO,
            connection_failed_authentication_delay: Duration::from_millis(100),
            authorizer: "none".into(),
            super_users: String::new(),
            allow_everyone_if_no_acl_found: false,
            max_acls: 10_000,
            max_scram_credentials: 10_000,
            rest_authentication: "none".into(),
            rest_tls: false,
            http_authentication: "none".into(),
            http_tls: false,
            data_dir: PathBuf::from("./silt-data"),
            cluster: "dev".into(),
            agent_id: String::new(),
            flush_interval: Duration::from_millis(250),
            flush_bytes: ByteSize::mib(8),
            max_inflight_bytes: ByteSize::mib(64),
            max_concurrent_uploads: 4,
            max_commit_record_bytes: ByteSize::kib(512),
            max_request_bytes: ByteSize::mib(100),
            auto_create_topics: true,
            default_partitions: 1,
            cache_memory: ByteSize::mib(256),
            cache_disk: ByteSize::gib(2),
            cache_block: ByteSize::mib(1),
            checkpoint_every: 1000,
            max_fetch_wait: Duration::from_secs(30),
            fetch_max_bytes: ByteSize::b(57_671_680),
            connection_response_bytes: ByteSize::mib(128),
            max_connections: 10_000,
            metrics_topic_labels: 1000,
            consumer_lag_interval: Duration::from_secs(10),
            consumer_lag_max_partitions: 100_000,
            group_max_size: 1000,
            group_min_session_timeout: Duration::from_secs(6),
            group_max_session_timeout: Duration::from_secs(1800),
            group_initial_rebalance_delay: Duration::from_secs(3),
            group_consumer_session_timeout: Duration::from_secs(45),
            group_consumer_heartbeat_interval: Duration::from_secs(5),
            group_consumer_max_size: 1000,
            group_consumer_assignors: "uniform,range".into(),
            message_max_bytes: 1_048_588,
            transaction_max_timeout: Duration::from_secs(900),
            transactional_id_expiration: Duration::from_secs(7 * 24 * 3600),
            max_group_waits_per_connection: 64,
            offset_metadata_max_bytes: 4096,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
            connections_max_idle: Duration::from_secs(600),
            log_format: "text".into(),
            etcd: String::new(),
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
            etcd_user: None,
            etcd_password: None,
            bucket: None,
            zone: None,
            cache_dir: None,
            http: None,
            rest: None,
            rest_max_request_bytes: ByteSize::mib(16),
            rest_fetch_max_bytes: ByteSize::mib(1),
            rest_max_connections: 1024,
            rest_max_records: 10_000,
            rest_request_timeout: Duration::from_secs(30),
            rest_buffer_bytes: ByteSize::mib(256),
            rest_optional: false,
            lease_ttl: Duration::from_secs(10),
            cache_readahead: ByteSize::mib(16),
            object_store_timeout: Duration::from_secs(30),
            jobs: "retention,compaction,cleaner,tables,gc".into(),
            jobs_pass_time: Duration::from_secs(120),
            log_retention_ms: 604_800_000,
            log_retention_bytes: -1,
            retention_check_interval: Duration::from_secs(60),
            compaction_interval: Duration::from_secs(30),
            compaction_run_bytes: ByteSize::mib(16),
            compaction_object_bytes: ByteSize::mib(32),
            compaction_entry_bytes: ByteSize::mib(1),
            compaction_pass_bytes: ByteSize::gib(1),
            compaction_min_age: Duration::from_secs(60),
            compaction_max_lag: Duration::from_secs(600),
            cleaner_interval: Duration::from_secs(15),
            cleaner_dedupe_buffer_bytes: ByteSize::mib(128),
            tables_interval: Duration::from_secs(30),
            table_enable_default: false,
            table_file_bytes: ByteSize::mib(128),
            table_max_age: Duration::from_secs(300),
            gc_interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(600),
            gc_orphan_age: Duration::from_secs(3600),
            explicit: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("setting {name}: {message}")]
    Invalid { name: String, message: String },
}

/// Every setting, by its file key; `SILT_<KEY>` in the environment.
pub const KEYS: &[&str] = &[
    "listen",
    "advertise",
    "listeners",
    "advertised_listeners",
    "ssl_certificate_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_client_auth",
    "sasl_enabled_mechanisms",
    "connections_max_reauth",
    "connection_failed_authentication_delay",
    "authorizer",
    "super_users",
    "allow_everyone_if_no_acl_found",
    "max_acls",
    "max_scram_credentials",
    "rest_authentication",
    "rest_tls",
    "http_authentication",
    "http_tls",
    "data_dir",
    "cluster",
    "agent_id",
    "flush_interval",
    "flush_bytes",
    "max_inflight_bytes",
    "max_concurrent_uploads",
    "max_commit_record_bytes",
    "max_request_bytes",
    "auto_create_topics",
    "default_partitions",
    "cache_memory",
    "cache_disk",
    "cache_block",
    "checkpoint_every",
    "max_fetch_wait",
    "fetch_max_bytes",
    "connection_response_bytes",
    "max_connections",
    "metrics_topic_labels",
    "consumer_lag_interval",
    "consumer_lag_max_partitions",
    "group_max_size",
    "group_min_session_timeout",
    "group_max_session_timeout",
    "group_initial_rebalance_delay",
    "group_consumer_session_timeout",
    "group_consumer_heartbeat_interval",
    "group_consumer_max_size",
    "group_consumer_assignors",
    "message_max_bytes",
    "transaction_max_timeout",
    "transactional_id_expiration",
    "max_group_waits_per_connection",
    "offset_metadata_max_bytes",
    "offsets_retention",
    "offsets_retention_check_interval",
    "connections_max_idle",
    "log_format",
    "etcd",
    "etcd_ca_file",
    "etcd_cert_file",
    "etcd_key_file",
    "etcd_user",
    "etcd_password",
    "bucket",
    "zone",
    "cache_dir",
    "http",
    "rest",
    "rest_max_request_bytes",
    "rest_fetch_max_bytes",
    "rest_max_connections",
    "rest_max_records",
    "rest_request_timeout",
    "rest_buffer_bytes",
    "lease_ttl",
    "cache_readahead",
    "object_store_timeout",
    "jobs",
    "jobs_pass_time",
    "log_retention_ms",
    "log_retention_bytes",
    "retention_check_interval",
    "compaction_interval",
    "compaction_run_bytes",
    "compaction_object_bytes",
    "compaction_entry_bytes",
    "compaction_pass_bytes",
    "compaction_min_age",
    "compaction_max_lag",
    "cleaner_interval",
    "cleaner_dedupe_buffer_bytes",
    "tables_interval",
    "table_enable_default",
    "table_file_bytes",
    "table_max_age",
    "gc_interval",
    "gc_grace",
    "gc_orphan_age",
];

impl Settings {
    /// Layers the file (if any), the environment, then `overrides`
    /// (`key=value` pairs from flags) over the defaults.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl Iterator<Item = (String, String)>,
        overrides: &[(&str, String)],
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let parsed = text.parse::<toml::Table>().map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            table = crate::kafka_config::from_kafka_names(parsed)?;
        }
        let mut layer = toml::Table::new();
        for (k, v) in env {
            if let Some(name) = k.strip_prefix("SILT_") {
                let key = name.to_ascii_lowercase();
                if KEYS.contains(&key.as_str()) {
                    let v = value_of(&key, &v);
                    layer.insert(key, v);
                } else if let Some(kafka) = crate::kafka_config::env_name(&key) {
                    layer.insert(kafka.to_string(), guess_value(&v));
                }
            }
        }
        table.extend(crate::kafka_config::from_kafka_names(layer)?);
        let mut layer = toml::Table::new();
        for (k, v) in overrides {
            layer.insert((*k).to_string(), value_of(k, v));
        }
        table.extend(crate::kafka_config::from_kafka_names(layer)?);
        // Parse key by key so an error names the setting.
        let mut settings = Settings::default();
        let mut merged = toml::Table::new();
        for (k, v) in table {
            if !KEYS.contains(&k.as_str()) {
                return Err(ConfigError::Invalid {
                    name: k,
                    message: format!("unknown setting (known: {})", KEYS.join(", ")),
                });
            }
            let mut one = toml::Table::new();
            one.insert(k.clone(), v.clone());
            if let Err(e) = one.try_into::<Settings>() {
                return Err(ConfigError::Invalid {
                    name: k,
                    message: e.message().to_string(),
                });
            }
            merged.insert(k, v);
        }
        let explicit = merged.keys().cloned().collect();
        if !merged.is_empty() {
            settings = merged
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    name: "config".into(),
                    message: e.message().to_string(),
                })?;
        }
        settings.explicit = explicit;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, message: &str| {
            Err(ConfigError::Invalid {
                name: name.into(),
                message: message.into(),
            })
        };
        if self.flush_interval.is_zero() {
            return bad("flush_interval", "must be positive");
        }
        if self.flush_bytes.as_u64() == 0 {
            return bad("flush_bytes", "must be positive");
        }
        if self.max_inflight_bytes.as_u64() < self.flush_bytes.as_u64() {
            return bad("max_inflight_bytes", "must be at least flush_bytes");
        }
        if self.max_inflight_bytes.as_u64() > u32::MAX as u64 {
            return bad("max_inflight_bytes", "must be below 4 GiB");
        }
        if self.max_concurrent_uploads == 0 {
            return bad("max_concurrent_uploads", "must be at least 1");
        }
        if self.default_partitions == 0 || self.default_partitions > 10_000 {
            return bad("default_partitions", "must be between 1 and 10000");
        }
        if self.cluster.is_empty() || self.cluster.contains('/') {
            return bad("cluster", "must be non-empty and contain no '/'");
        }
        if self.agent_id.contains('/') {
            return bad("agent_id", "must contain no '/'");
        }
        if self.log_format != "text" && self.log_format != "json" {
            return bad("log_format", "must be \"text\" or \"json\"");
        }
        self.check_security()?;
        if let Some(a) = &self.advertise {
            if parse_host_port(a).is_none() {
                return bad("advertise", "must be HOST:PORT");
            }
        } else if self.listen.ip().is_unspecified() {
            return bad(
                "advertise",
                "required when listen is a wildcard address: clients need an address to connect to",
            );
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return bad("lease_ttl", "must be at least 1s");
        }
        if self.fetch_max_bytes.as_u64() == 0 || self.fetch_max_bytes.as_u64() > u32::MAX as u64 {
            return bad("fetch_max_bytes", "must be between 1B and 4GiB");
        }
        if self.connection_response_bytes.as_u64() < 1024
            || self.connection_response_bytes.as_u64() > u32::MAX as u64
        {
            return bad("connection_response_bytes", "must be between 1KiB and 4GiB");
        }
        if self.max_commit_record_bytes.as_u64() < 4096 {
            return bad("max_commit_record_bytes", "must be at least 4KiB");
        }
        if self.rest_max_request_bytes.as_u64() < 1024
            || self.rest_max_request_bytes.as_u64() > u32::MAX as u64
        {
            return bad("rest_max_request_bytes", "must be between 1KiB and 4GiB");
        }
        if self.rest_fetch_max_bytes.as_u64() == 0 || self.rest_fetch_max_bytes.as_u64() > 256 << 20
        {
            return bad("rest_fetch_max_bytes", "must be between 1B and 256MiB");
        }
        if self.rest_buffer_bytes.as_u64() < self.rest_max_request_bytes.as_u64()
            || self.rest_buffer_bytes.as_u64() > u32::MAX as u64
        {
            return bad(
                "rest_buffer_bytes",
                "must be at least rest_max_request_bytes and below 4GiB",
            );
        }
        if self.rest_request_timeout < Duration::from_millis(100) {
            return bad("rest_request_timeout", "must be at least 100ms");
        }
        if self.rest_max_records == 0 {
            return bad("rest_max_records", "must be at least 1");
        }
        if self.rest_max_connections == 0 {
            return bad("rest_max_connections", "must be at least 1");
        }
        if self.consumer_lag_interval.is_zero() {
            return bad("consumer_lag_interval", "must be more than 0");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if self.group_min_session_timeout > self.group_max_session_timeout {
            return bad(
                "group_min_session_timeout",
                "must not exceed group_max_session_timeout",
            );
        }
        if self.group_initial_rebalance_delay > Duration::from_secs(300) {
            return bad("group_initial_rebalance_delay", "must be at most 5min");
        }
        if self.group_consumer_heartbeat_interval < Duration::from_millis(100)
            || self.group_consumer_heartbeat_interval >= self.group_consumer_session_timeout
        {
            return bad(
                "group_consumer_heartbeat_interval",
                "must be at least 100ms and below group_consumer_session_timeout",
            );
        }
        if self.group_consumer_max_size == 0 {
            return bad("group_consumer_max_size", "must be at least 1");
        }
        if let Err(m) = self.consumer_assignors() {
            return bad("group_consumer_assignors", &m);
        }
        if self.message_max_bytes > i32::MAX as u32 {
            return bad("message_max_bytes", "must be below 2GiB");
        }
        if self.connections_max_idle < Duration::from_millis(100) {
            return bad("connections_max_idle", "must be at least 100ms");
        }
        if let Err(m) = self.job_list() {
            return bad("jobs", &m);
        }
        if self.log_retention_ms < -1 {
            return bad("log_retention_ms", "must be -1 (forever) or at least 0");
        }
        if self.log_retention_bytes < -1 {
            return bad("log_retention_bytes", "must be -1 (no limit) or at least 0");
        }
        for (name, d) in [
            ("retention_check_interval", self.retention_check_interval),
            ("compaction_interval", self.compaction_interval),
            ("cleaner_interval", self.cleaner_interval),
            ("tables_interval", self.tables_interval),
            ("table_max_age", self.table_max_age),
            ("gc_interval", self.gc_interval),
            ("jobs_pass_time", self.jobs_pass_time),
        ] {
            if d < Duration::from_millis(100) {
                return bad(name, "must be at least 100ms");
            }
        }
        if self.compaction_run_bytes.as_u64() == 0
            || self.compaction_object_bytes.as_u64() < 2 * self.compaction_run_bytes.as_u64()
        {
            return bad(
                "compaction_object_bytes",
                "must be at least twice compaction_run_bytes (so every cut run is final)",
            );
        }
        if self.compaction_object_bytes.as_u64() > 1 << 30 {
            return bad("compaction_object_bytes", "must be at most 1GiB");
        }
        if self.compaction_entry_bytes.as_u64() < 4096 {
            return bad("compaction_entry_bytes", "must be at least 4KiB");
        }
        if !(1 << 10..=1 << 30).contains(&self.table_file_bytes.as_u64()) {
            return bad("table_file_bytes", "must be between 1KiB and 1GiB");
        }
        if self.cleaner_dedupe_buffer_bytes.as_u64() < 1 << 20 {
            return bad("cleaner_dedupe_buffer_bytes", "must be at least 1MiB");
        }
        if self.cache_readahead.as_u64() > 256 << 20 {
            return bad("cache_readahead", "must be at most 256MiB");
        }
        if self.object_store_timeout < Duration::from_millis(100) {
            return bad("object_store_timeout", "must be at least 100ms");
        }
        // A reader looks an object up in its state, then reads it: the
        // longest such read is every attempt of a GET timing out.
        let longest_read = self.object_store_timeout * RetryConfig::default().attempts;
        if self.gc_grace < 2 * longest_read {
            return bad(
                "gc_grace",
                &format!(
                    "must be at least twice the longest read that may still use an object ({}ms: {} attempts of object_store_timeout)",
                    longest_read.as_millis(),
                    RetryConfig::default().attempts
                ),
            );
        }
        if self.gc_orphan_age < Duration::from_secs(10) {
            return bad(
                "gc_orphan_age",
                "must be at least 10s (commits sealed more than half of it ago are refused)",
            );
        }
        Ok(())
    }

    /// The jobs this agent runs.
    /// The consumer-protocol assignors offered, the default first.
    pub fn consumer_assignors(&self) -> Result<Vec<crate::group::consumer::Assignor>, String> {
        let list: Vec<_> = self
            .group_consumer_assignors
            .split(',')
            .map(|a| {
                let a = a.trim();
                crate::group::consumer::Assignor::parse(a)
                    .ok_or_else(|| format!("unknown assignor {a:?} (known: uniform, range)"))
            })
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err("name at least one assignor".into());
        }
        Ok(list)
    }

    pub fn job_list(&self) -> Result<Vec<silt_tiering::jobs::Job>, String> {
        let s = self.jobs.trim();
        if s.is_empty() || s == "none" {
            return Ok(Vec::new());
        }
        s.split(',')
            .map(|j| {
                silt_tiering::jobs::Job::parse(j.trim()).ok_or_else(|| {
                    format!(
                        "unknown job {j:?} (known: retention, compaction, cleaner, tables, gc, or none)"
                    )
                })
            })
            .collect()
    }

    /// The jobs' settings.
    pub fn job_settings(&self) -> silt_tiering::jobs::JobSettings {
        use silt_tiering::jobs::*;
        let limit = |v: i64| (v >= 0).then_some(v);
        JobSettings {
            retention: RetentionDefaults {
                ms: limit(self.log_retention_ms),
                bytes: limit(self.log_retention_bytes),
            },
            compaction: CompactionSettings {
                run_bytes: self.compaction_run_bytes.as_u64(),
                object_bytes: self.compaction_object_bytes.as_u64(),
                entry_bytes: self.compaction_entry_bytes.as_u64(),
                min_age: self.compaction_min_age,
                max_lag: self.compaction_max_lag,
            },
            cleaner: CleanerSettings {
                dedupe_bytes: self.cleaner_dedupe_buffer_bytes.as_u64(),
            },
            tables: TableSettings {
                enable_default: self.table_enable_default,
                file_bytes: self.table_file_bytes.as_u64(),
                max_age: self.table_max_age,
            },
            gc: GcSettings {
                grace: self.gc_grace,
                orphan_age: self.gc_orphan_age,
                batch: 1000,
            },
        }
    }

    /// Checks what `silt agent` needs beyond `silt dev`.
    pub fn validate_agent(&self) -> Result<(), ConfigError> {
        self.validate_etcd()?;
        match self.bucket.as_deref() {
            None | Some("") => Err(ConfigError::Invalid {
                name: "bucket".into(),
                message:
                    "missing: give --bucket s3://bucket[/prefix] (or file:///path) or SILT_BUCKET"
                        .into(),
            }),
            Some(b) if b.starts_with("s3://") || b.starts_with("file://") => Ok(()),
            Some(b) => Err(ConfigError::Invalid {
                name: "bucket".into(),
                message: format!("{b:?} must start with s3:// or file://"),
            }),
        }
    }

    /// Checks the etcd settings (`silt users` needs only those).
    pub fn validate_etcd(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, message: String| {
            Err(ConfigError::Invalid {
                name: name.into(),
                message,
            })
        };
        let endpoints = self.etcd_endpoints();
        if endpoints.is_empty() {
            return bad(
                "etcd",
                "missing: give --etcd http://host:2379[,...] or SILT_ETCD".into(),
            );
        }
        for e in &endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return bad(
                    "etcd",
                    format!("endpoint {e:?} must start with http:// or https://"),
                );
            }
        }
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if https > 0 && https < endpoints.len() {
            return bad(
                "etcd",
                "give every endpoint as https:// or none (TLS is per cluster)".into(),
            );
        }
        if https > 0 && self.etcd_ca_file.is_none() {
            return bad(
                "etcd_ca_file",
                "missing: https:// etcd endpoints need the PEM file of the CA of their certificates"
                    .into(),
            );
        }
        if self.etcd_cert_file.is_some() != self.etcd_key_file.is_some() {
            return bad(
                "etcd_cert_file",
                "give etcd_cert_file and etcd_key_file together".into(),
            );
        }
        if self.etcd_cert_file.is_some() && https == 0 {
            return bad(
                "etcd_cert_file",
                "a client certificate needs https:// etcd endpoints".into(),
            );
        }
        if self.etcd_user.is_some() != self.etcd_password.is_some() {
            return bad(
                "etcd_user",
                "give etcd_user and etcd_password together".into(),
            );
        }
        Ok(())
    }

    fn check_security(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, message: String| {
            Err(ConfigError::Invalid {
                name: name.into(),
                message,
            })
        };
        let listeners = self
            .listener_specs()
            .map_err(|(name, message)| ConfigError::Invalid {
                name: name.into(),
                message,
            })?;
        let tls = listeners.iter().any(|l| l.protocol.tls()) || self.rest_tls || self.http_tls;
        for (name, v) in [
            ("rest_authentication", &self.rest_authentication),
            ("http_authentication", &self.http_authentication),
        ] {
            if v != "none" && v != "basic" {
                return bad(name, "must be none or basic".into());
            }
        }
        if tls && (self.ssl_certificate_file.is_none() || self.ssl_key_file.is_none()) {
            return bad(
                "ssl_certificate_file",
                "SSL and SASL_SSL listeners, rest_tls and http_tls need ssl_certificate_file and ssl_key_file".into(),
            );
        }
        match crate::security::tls::ClientAuth::parse(&self.ssl_client_auth) {
            None => {
                return bad(
                    "ssl_client_auth",
                    "must be none, requested or required".into(),
                )
            }
            Some(crate::security::tls::ClientAuth::None) => {}
            Some(_) if self.ssl_ca_file.is_none() => {
                return bad(
                    "ssl_ca_file",
                    "missing: ssl_client_auth needs the CA of client certificates".into(),
                )
            }
            Some(_) => {}
        }
        if let Err(m) = self.sasl_mechanisms() {
            return bad("sasl_enabled_mechanisms", m);
        }
        if self.authorizer != "none" && self.authorizer != "acl" {
            return bad("authorizer", "must be none or acl".into());
        }
        for u in self.super_user_list() {
            if !u.starts_with("User:") || u.len() <= 5 {
                return bad("super_users", format!("{u:?} is not of the form User:NAME"));
            }
        }
        if self.max_acls == 0 || self.max_scram_credentials == 0 {
            return bad(
                "max_acls",
                "max_acls and max_scram_credentials must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// The enabled SASL mechanisms.
    pub fn sasl_mechanisms(&self) -> Result<Vec<crate::security::sasl::Mech>, String> {
        let mut out = Vec::new();
        for m in self
            .sasl_enabled_mechanisms
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            let mech = crate::security::sasl::Mech::parse(m)
                .ok_or_else(|| format!("{m:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))?;
            if !out.contains(&mech) {
                out.push(mech);
            }
        }
        if out.is_empty() {
            return Err("no mechanism".into());
        }
        Ok(out)
    }

    /// `super_users`, split.
    pub fn super_user_list(&self) -> Vec<String> {
        self.super_users
            .split(';')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect()
    }

    /// The Kafka listeners to bind: `listeners`, else one PLAINTEXT
    /// listener on `listen` advertised as `advertise`. Errors name the
    /// setting.
    pub fn listener_specs(
        &self,
    ) -> Result<Vec<crate::security::ListenerSpec>, (&'static str, String)> {
        use crate::security::{parse_listeners, ListenerSpec, Protocol};
        let Some(spec) = &self.listeners else {
            return Ok(vec![ListenerSpec {
                protocol: Protocol::Plaintext,
                bind: self.listen,
                advertise: self
                    .advertise
                    .as_deref()
                    .and_then(parse_host_port)
                    .map(|(h, p)| (h, p as u16)),
            }]);
        };
        let bound = parse_listeners(spec).map_err(|m| ("listeners", m))?;
        let advertised = match &self.advertised_listeners {
            Some(a) => parse_listeners(a).map_err(|m| ("advertised_listeners", m))?,
            None => Vec::new(),
        };
        let mut out = Vec::new();
        for (i, (protocol, host, port)) in bound.into_iter().enumerate() {
            let bind: SocketAddr = format!("{}:{port}", bracket(&host)).parse().map_err(|_| {
                (
                    "listeners",
                    format!("{}: {host:?} is not an IP address to bind", protocol.name()),
                )
            })?;
            let advertise = advertised
                .iter()
                .find(|(p, _, _)| *p == protocol)
                .map(|(_, h, p)| (h.clone(), *p))
                .or_else(|| {
                    (i == 0)
                        .then(|| self.advertise.as_deref().and_then(parse_host_port))
                        .flatten()
                        .map(|(h, p)| (h, p as u16))
                });
            if advertise.is_none() && bind.ip().is_unspecified() {
                return Err((
                    "advertised_listeners",
                    format!(
                        "{} binds a wildcard address: give its address for clients in advertised_listeners",
                        protocol.name()
                    ),
                ));
            }
            out.push(ListenerSpec {
                protocol,
                bind,
                advertise,
            });
        }
        for (p, _, _) in &advertised {
            if !out.iter().any(|l| l.protocol == *p) {
                return Err((
                    "advertised_listeners",
                    format!("{} is not in listeners", p.name()),
                ));
            }
        }
        Ok(out)
    }

    /// TLS files read and etcd credentials, for `EtcdStore::connect`.
    pub fn etcd_access(&self) -> Result<silt_coordinator::etcd::EtcdAccess, ConfigError> {
        let read = |name: &str, path: &Option<PathBuf>| -> Result<Option<Vec<u8>>, ConfigError> {
            path.as_ref()
                .map(|p| {
                    std::fs::read(p).map_err(|e| ConfigError::Invalid {
                        name: name.into(),
                        message: format!("cannot read {}: {e}", p.display()),
                    })
                })
                .transpose()
        };
        let cert = read("etcd_cert_file", &self.etcd_cert_file)?;
        let key = read("etcd_key_file", &self.etcd_key_file)?;
        Ok(silt_coordinator::etcd::EtcdAccess {
            ca_pem: read("etcd_ca_file", &self.etcd_ca_file)?,
            identity: cert.zip(key),
            user: self
                .etcd_user
                .clone()
                .zip(self.etcd_password.as_ref().map(|p| p.expose().to_string())),
        })
    }

    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// This agent's id: the one set, else `<host name>-<listen port>`,
    /// which is stable across restarts and unique among the agents of a
    /// machine (two cannot listen on one port), so agents started without
    /// an id do not collide.
    pub fn agent_id(&self) -> String {
        if !self.agent_id.is_empty() {
            return self.agent_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let host = if host.is_empty() {
            "agent".into()
        } else {
            host
        };
        format!("{host}-{}", self.listen.port())
    }

    /// The block cache directory: the one set, else one per agent under
    /// the data directory (agents sharing a data directory never share a
    /// cache).
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache").join(self.agent_id()))
    }

    /// Host and port given to clients.
    pub fn advertised(&self) -> (String, i32) {
        self.advertise
            .as_deref()
            .and_then(parse_host_port)
            .unwrap_or_else(|| (self.listen.ip().to_string(), self.listen.port() as i32))
    }
}

fn parse_host_port(s: &str) -> Option<(String, i32)> {
    let (h, p) = s.rsplit_once(':')?;
    let port: u16 = p.parse().ok()?;
    (!h.is_empty()).then(|| (h.trim_matches(['[', ']']).to_string(), port as i32))
}

/// Settings whose values are secrets: taken as written (never guessed to
/// be numbers), and never shown.
pub const SECRET_KEYS: &[&str] = &["etcd_password"];

fn value_of(key: &str, v: &str) -> toml::Value {
    if SECRET_KEYS.contains(&key) {
        toml::Value::String(v.to_string())
    } else {
        guess_value(v)
    }
}

/// A secret setting: its `Debug` form and its parse errors never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[hidden]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            // Any other value: an error that does not repeat it.
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("must be a string (quote it)"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("must be a string (quote it)"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("must be a string (quote it)"))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("must be a string (quote it)"))
            }
        }
        d.deserialize_str(V)
    }
}

/// An IPv6 address in brackets, for `host:port` parsing.
fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Environment and flag values are strings; numbers and booleans are
/// recognised so they parse into typed settings.
fn guess_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if v.contains('.') && !v.contains(':') {
        if let Ok(f) = v.parse::<f64>() {
            return toml::Value::Float(f);
        }
    }
    match v {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_taken_as_written_and_never_shown() {
        let env = [
            (
                "SILT_ETCD".to_string(),
                "https://127.0.0.1:2379".to_string(),
            ),
            ("SILT_BUCKET".to_string(), "file:///tmp/b".to_string()),
            (
                "SILT_ETCD_CA_FILE".to_string(),
                "/nonexistent/ca.pem".to_string(),
            ),
            ("SILT_ETCD_USER".to_string(), "root".to_string()),
            ("SILT_ETCD_PASSWORD".to_string(), "0123e5".to_string()),
        ];
        let s = Settings::load(None, env.into_iter(), &[]).unwrap();
        // Digits stay the string they were (not the number 12300000).
        assert_eq!(s.etcd_password.as_ref().unwrap().expose(), "0123e5");
        assert!(!format!("{s:?}").contains("0123e5"));
        s.validate_agent().unwrap();
        // The CA file is read when connecting: its error names the setting.
        let e = s.etcd_access().unwrap_err().to_string();
        assert!(e.contains("etcd_ca_file"), "{e}");
        assert!(!format!(
            "{:?}",
            Settings {
                etcd_ca_file: None,
                ..s.clone()
            }
            .etcd_access()
            .unwrap()
        )
        .contains("0123e5"));

        // In a file, a password that is not a string is refused without
        // being repeated.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("silt.toml");
        std::fs::write(&f, "etcd_password = 987654321\n").unwrap();
        let e = Settings::load(Some(&f), std::iter::empty(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("etcd_password") && !e.contains("987654321"),
            "{e}"
        );
    }

    #[test]
    fn etcd_tls_settings_are_checked_together() {
        let base = Settings {
            etcd: "https://a:2379".into(),
            bucket: Some("file:///tmp/b".into()),
            ..Settings::default()
        };
        let err = |s: Settings| s.validate_agent().unwrap_err().to_string();
        assert!(err(base.clone()).contains("etcd_ca_file"));
        let with_ca = Settings {
            etcd_ca_file: Some("/ca.pem".into()),
            ..base.clone()
        };
        with_ca.validate_agent().unwrap();
        assert!(err(Settings {
            etcd: "https://a:2379,http://b:2379".into(),
            ..with_ca.clone()
        })
        .contains("https://"));
        assert!(err(Settings {
            etcd_cert_file: Some("/c.pem".into()),
            ..with_ca.clone()
        })
        .contains("etcd_key_file"));
        assert!(err(Settings {
            etcd: "http://a:2379".into(),
            etcd_cert_file: Some("/c.pem".into()),
            etcd_key_file: Some("/k.pem".into()),
            ..with_ca.clone()
        })
        .contains("https://"));
        assert!(err(Settings {
            etcd_user: Some("root".into()),
            ..with_ca
        })
        .contains("etcd_password"));
    }

    #[test]
    fn layers_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("silt.toml");
        std::fs::write(
            &f,
            "flush_interval = \"100ms\"\ndefault_partitions = 3\nflush_bytes = \"1MiB\"\n",
        )
        .unwrap();
        let env = vec![
            ("SILT_DEFAULT_PARTITIONS".to_string(), "5".to_string()),
            ("SILT_FLUSH_BYTES".to_string(), "2MiB".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let s =
            Settings::load(Some(&f), env.into_iter(), &[("flush_bytes", "4MiB".into())]).unwrap();
        assert_eq!(s.flush_interval, Duration::from_millis(100));
        assert_eq!(s.default_partitions, 5);
        assert_eq!(s.flush_bytes, ByteSize::mib(4));
    }

    #[test]
    fn agent_settings_are_checked() {
        let s = Settings::load(None, std::iter::empty(), &[]).unwrap();
        let e = s.validate_agent().unwrap_err().to_string();
        assert!(e.contains("etcd"), "{e}");
        let env = vec![
            (
                "SILT_ETCD".to_string(),
                "http://127.0.0.1:1,http://127.0.0.1:2".to_string(),
            ),
            ("SILT_DEFAULT_PARTITIONS".to_string(), "4".to_string()),
        ];
        let s = Settings::load(None, env.into_iter(), &[("bucket", "gs://x".into())]).unwrap();
        assert_eq!(s.etcd_endpoints().len(), 2);
        assert_eq!(s.default_partitions, 4);
        let e = s.validate_agent().unwrap_err().to_string();
        assert!(e.contains("bucket"), "{e}");
        let e = Settings::load(
            None,
            std::iter::empty(),
            &[("listen", "0.0.0.0:9092".into())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("advertise"), "{e}");
    }

    #[test]
    fn agents_without_an_id_get_distinct_stable_ones() {
        let at = |port: &str| {
            Settings::load(None, std::iter::empty(), &[("listen", port.into())]).unwrap()
        };
        let (a, b) = (at("127.0.0.1:9092"), at("127.0.0.1:9093"));
        assert_ne!(a.agent_id(), b.agent_id());
        assert_eq!(a.agent_id(), at("127.0.0.1:9092").agent_id());
        assert!(a.agent_id().ends_with("-9092"), "{}", a.agent_id());
        assert_ne!(a.cache_dir(), b.cache_dir());
        let named = Settings::load(None, std::iter::empty(), &[("agent_id", "x1".into())]).unwrap();
        assert_eq!(named.agent_id(), "x1");
    }

    #[test]
    fn errors_name_the_setting() {
        let e = Settings::load(
            None,
            std::iter::empty(),
            &[("flush_interval", "soon".into())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("flush_interval"), "{e}");
        let e = Settings::load(
            None,
            std::iter::empty(),
            &[("default_partitions", "0".into())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("default_partitions"), "{e}");
        let e = Settings::load(None, std::iter::empty(), &[("nonsense", "1".into())]).unwrap_err();
        assert!(e.to_string().contains("nonsense"), "{e}");
        // Test-only fault settings are not user settings.
        let e = Settings::load(
            None,
            std::iter::empty(),
            &[("fault_put_error_rate", "0.1".into())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown setting"), "{e}");
    }
}
