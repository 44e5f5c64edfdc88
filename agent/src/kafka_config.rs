//! Kafka's broker config names: settings may be given under them (in the
//! config file, or as `SILT_<NAME_WITH_UNDERSCORES>`), and DescribeConfigs
//! for a broker reports them, typed, with their source.
//!
//! In the TOML file a Kafka name is written as it is in `server.properties`
//! (`group.min.session.timeout.ms = 1000`): TOML reads the dots as nested
//! tables, which are flattened back into the dotted name here.

use std::time::Duration;

use silt_coordinator::topic_config::Kind;

use crate::config::{ConfigError, Settings};

/// How a Kafka value becomes silt's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conv {
    /// The same value.
    Same,
    /// Milliseconds to a duration setting.
    Ms,
    /// Minutes to a duration setting.
    Minutes,
    /// Minutes to milliseconds (-1 stays -1: for ever).
    MinutesToMs,
    /// Hours to milliseconds (-1 stays -1).
    HoursToMs,
}

/// One broker config: its Kafka name (or silt's file key), type, the silt
/// setting it sets, and its value in Kafka's units.
struct Entry {
    name: &'static str,
    kind: Kind,
    /// The silt setting, when the config can be set; `None`: read-only.
    key: Option<&'static str>,
    conv: Conv,
    value: fn(&Settings, i32) -> Option<String>,
    doc: &'static str,
}

fn ms(d: Duration) -> Option<String> {
    Some(d.as_millis().to_string())
}

fn text(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// Listeners as Metadata sees them: Kafka's `listeners`, else one PLAINTEXT
/// listener.
fn listeners(s: &Settings) -> String {
    s.listeners
        .clone()
        .unwrap_or_else(|| format!("PLAINTEXT://{}", s.listen))
}

fn advertised(s: &Settings) -> String {
    s.advertised_listeners
        .clone()
        .or_else(|| {
            s.listeners
                .is_none()
                .then(|| s.advertise.as_ref().map(|a| format!("PLAINTEXT://{a}")))
                .flatten()
        })
        .unwrap_or_else(|| listeners(s))
}

const fn entry(
    name: &'static str,
    kind: Kind,
    key: Option<&'static str>,
    conv: Conv,
    value: fn(&Settings, i32) -> Option<String>,
    doc: &'static str,
) -> Entry {
    Entry {
        name,
        kind,
        key,
        conv,
        value,
        doc,
    }
}

use Conv::*;
use Kind as K;

/// The broker configs under Kafka's names, then silt's own that tools may
/// want to see. Kafka names that are read-only here report silt's fixed
/// behaviour.
const ENTRIES: &[Entry] = &[
    entry(
        "advertised.listeners",
        K::String,
        Some("advertised_listeners"),
        Same,
        |s, _| text(advertised(s)),
        "listeners given to clients in Metadata",
    ),
    entry(
        "allow.everyone.if.no.acl.found",
        K::Boolean,
        Some("allow_everyone_if_no_acl_found"),
        Same,
        |s, _| text(s.allow_everyone_if_no_acl_found),
        "a resource without ACLs is open to all",
    ),
    entry(
        "auto.create.topics.enable",
        K::Boolean,
        Some("auto_create_topics"),
        Same,
        |s, _| text(s.auto_create_topics),
        "Metadata and Produce create unknown topics",
    ),
    entry(
        "broker.id",
        K::Int,
        None,
        Same,
        |_, id| text(id),
        "this agent's node id, assigned at registration",
    ),
    entry(
        "broker.rack",
        K::String,
        Some("zone"),
        Same,
        |s, _| s.zone.clone(),
        "this agent's zone",
    ),
    entry(
        "compression.type",
        K::String,
        None,
        Same,
        |_, _| text("producer"),
        "batches are stored as the producer compressed them",
    ),
    entry(
        "connection.failed.authentication.delay.ms",
        K::Int,
        Some("connection_failed_authentication_delay"),
        Ms,
        |s, _| ms(s.connection_failed_authentication_delay),
        "the least wait before a failed authentication is answered",
    ),
    entry(
        "connections.max.idle.ms",
        K::Long,
        Some("connections_max_idle"),
        Ms,
        |s, _| ms(s.connections_max_idle),
        "idle connections are closed after this",
    ),
    entry(
        "connections.max.reauth.ms",
        K::Long,
        Some("connections_max_reauth"),
        Ms,
        |s, _| ms(s.connections_max_reauth),
        "SASL sessions re-authenticate within this (0: never)",
    ),
    entry(
        "default.replication.factor",
        K::Int,
        None,
        Same,
        |_, _| text(1),
        "no replicas: every write is in object storage",
    ),
    entry(
        "delete.topic.enable",
        K::Boolean,
        None,
        Same,
        |_, _| text(true),
        "DeleteTopics is served",
    ),
    entry(
        "fetch.max.bytes",
        K::Int,
        Some("fetch_max_bytes"),
        Same,
        |s, _| text(s.fetch_max_bytes.as_u64()),
        "record bytes in one Fetch response at most",
    ),
    entry(
        "group.consumer.assignors",
        K::List,
        Some("group_consumer_assignors"),
        Same,
        |s, _| text(&s.group_consumer_assignors),
        "server-side assignors of consumer-protocol groups, the default first",
    ),
    entry(
        "group.consumer.heartbeat.interval.ms",
        K::Int,
        Some("group_consumer_heartbeat_interval"),
        Ms,
        |s, _| ms(s.group_consumer_heartbeat_interval),
        "how often members of consumer-protocol groups heartbeat",
    ),
    entry(
        "group.consumer.max.size",
        K::Int,
        Some("group_consumer_max_size"),
        Same,
        |s, _| text(s.group_consumer_max_size),
        "members of one consumer-protocol group at most",
    ),
    entry(
        "group.consumer.session.timeout.ms",
        K::Int,
        Some("group_consumer_session_timeout"),
        Ms,
        |s, _| ms(s.group_consumer_session_timeout),
        "a consumer-protocol member silent this long is removed",
    ),
    entry(
        "group.initial.rebalance.delay.ms",
        K::Int,
        Some("group_initial_rebalance_delay"),
        Ms,
        |s, _| ms(s.group_initial_rebalance_delay),
        "the first rebalance of an empty group waits this long for more members",
    ),
    entry(
        "group.max.session.timeout.ms",
        K::Int,
        Some("group_max_session_timeout"),
        Ms,
        |s, _| ms(s.group_max_session_timeout),
        "the longest session timeout a member may ask for",
    ),
    entry(
        "group.max.size",
        K::Int,
        Some("group_max_size"),
        Same,
        |s, _| text(s.group_max_size),
        "members of one group at most",
    ),
    entry(
        "group.min.session.timeout.ms",
        K::Int,
        Some("group_min_session_timeout"),
        Ms,
        |s, _| ms(s.group_min_session_timeout),
        "the shortest session timeout a member may ask for",
    ),
    entry(
        "listeners",
        K::String,
        Some("listeners"),
        Same,
        |s, _| text(listeners(s)),
        "the Kafka listeners this agent binds",
    ),
    entry(
        "log.cleaner.dedupe.buffer.size",
        K::Long,
        Some("cleaner_dedupe_buffer_bytes"),
        Same,
        |s, _| text(s.cleaner_dedupe_buffer_bytes.as_u64()),
        "memory of one cleaner pass's key map",
    ),
    entry(
        "log.cleanup.policy",
        K::List,
        None,
        Same,
        |_, _| text("delete"),
        "the cleanup.policy of topics that set none",
    ),
    entry(
        "log.message.timestamp.type",
        K::String,
        None,
        Same,
        |_, _| text("CreateTime"),
        "the message.timestamp.type of topics that set none",
    ),
    entry(
        "log.retention.bytes",
        K::Long,
        Some("log_retention_bytes"),
        Same,
        |s, _| text(s.log_retention_bytes),
        "the retention.bytes of topics that set none",
    ),
    entry(
        "log.retention.check.interval.ms",
        K::Long,
        Some("retention_check_interval"),
        Ms,
        |s, _| ms(s.retention_check_interval),
        "how often retention runs",
    ),
    entry(
        "log.retention.hours",
        K::Int,
        Some("log_retention_ms"),
        HoursToMs,
        |s, _| {
            (s.log_retention_ms % 3_600_000 == 0)
                .then(|| (s.log_retention_ms / 3_600_000).max(-1).to_string())
        },
        "the retention.ms of topics that set none, in hours",
    ),
    entry(
        "log.retention.minutes",
        K::Int,
        Some("log_retention_ms"),
        MinutesToMs,
        |s, _| {
            (s.log_retention_ms % 60_000 == 0)
                .then(|| (s.log_retention_ms / 60_000).max(-1).to_string())
        },
        "the retention.ms of topics that set none, in minutes",
    ),
    entry(
        "log.retention.ms",
        K::Long,
        Some("log_retention_ms"),
        Same,
        |s, _| text(s.log_retention_ms),
        "the retention.ms of topics that set none",
    ),
    entry(
        "log.segment.bytes",
        K::Int,
        None,
        Same,
        |_, _| text(1_073_741_824),
        "segment objects are cut by flush_bytes and flush_interval",
    ),
    entry(
        "max.connections",
        K::Int,
        Some("max_connections"),
        Same,
        |s, _| text(s.max_connections),
        "open client connections at most",
    ),
    entry(
        "message.max.bytes",
        K::Int,
        Some("message_max_bytes"),
        Same,
        |s, _| text(s.message_max_bytes),
        "the max.message.bytes of topics that set none",
    ),
    entry(
        "min.insync.replicas",
        K::Int,
        None,
        Same,
        |_, _| text(1),
        "every acknowledged write is in object storage",
    ),
    entry(
        "node.id",
        K::Int,
        None,
        Same,
        |_, id| text(id),
        "this agent's node id, assigned at registration",
    ),
    entry(
        "num.partitions",
        K::Int,
        Some("default_partitions"),
        Same,
        |s, _| text(s.default_partitions),
        "partitions of a topic created without a count",
    ),
    entry(
        "offset.metadata.max.bytes",
        K::Int,
        Some("offset_metadata_max_bytes"),
        Same,
        |s, _| text(s.offset_metadata_max_bytes),
        "the longest metadata string of a committed offset",
    ),
    entry(
        "offsets.retention.check.interval.ms",
        K::Long,
        Some("offsets_retention_check_interval"),
        Ms,
        |s, _| ms(s.offsets_retention_check_interval),
        "how often expired offsets are looked for",
    ),
    entry(
        "offsets.retention.minutes",
        K::Int,
        Some("offsets_retention"),
        Minutes,
        |s, _| text(s.offsets_retention.as_secs() / 60),
        "offsets of a group without members expire after this",
    ),
    entry(
        "offsets.topic.replication.factor",
        K::Short,
        None,
        Same,
        |_, _| text(1),
        "offsets live in the metadata store",
    ),
    entry(
        "sasl.enabled.mechanisms",
        K::List,
        Some("sasl_enabled_mechanisms"),
        Same,
        |s, _| text(&s.sasl_enabled_mechanisms),
        "SASL mechanisms offered",
    ),
    entry(
        "socket.request.max.bytes",
        K::Int,
        Some("max_request_bytes"),
        Same,
        |s, _| text(s.max_request_bytes.as_u64()),
        "the largest request accepted",
    ),
    entry(
        "ssl.client.auth",
        K::String,
        Some("ssl_client_auth"),
        Same,
        |s, _| text(&s.ssl_client_auth),
        "none, requested or required",
    ),
    entry(
        "super.users",
        K::String,
        Some("super_users"),
        Same,
        |s, _| text(&s.super_users),
        "principals allowed everything",
    ),
    entry(
        "transaction.max.timeout.ms",
        K::Int,
        Some("transaction_max_timeout"),
        Ms,
        |s, _| ms(s.transaction_max_timeout),
        "the longest transaction.timeout.ms a producer may ask for",
    ),
    entry(
        "transactional.id.expiration.ms",
        K::Int,
        Some("transactional_id_expiration"),
        Ms,
        |s, _| ms(s.transactional_id_expiration),
        "a transactional id unused this long is forgotten",
    ),
    entry(
        "transaction.state.log.replication.factor",
        K::Short,
        None,
        Same,
        |_, _| text(1),
        "transaction state lives in the metadata store",
    ),
    entry(
        "unclean.leader.election.enable",
        K::Boolean,
        None,
        Same,
        |_, _| text(false),
        "no replicas: a new leader reads the same object storage",
    ),
    // silt's own settings, under their file keys.
    entry(
        "bucket",
        K::String,
        Some("bucket"),
        Same,
        |s, _| s.bucket.clone(),
        "the object-store bucket",
    ),
    entry(
        "cluster",
        K::String,
        Some("cluster"),
        Same,
        |s, _| text(&s.cluster),
        "the cluster's name in the metadata store",
    ),
    entry(
        "etcd",
        K::String,
        Some("etcd"),
        Same,
        |s, _| text(&s.etcd),
        "etcd endpoints",
    ),
    entry(
        "etcd_password",
        K::Password,
        Some("etcd_password"),
        Same,
        |_, _| None,
        "the etcd user's password",
    ),
    entry(
        "etcd_user",
        K::String,
        Some("etcd_user"),
        Same,
        |s, _| s.etcd_user.clone(),
        "the etcd user",
    ),
    entry(
        "flush_bytes",
        K::Long,
        Some("flush_bytes"),
        Same,
        |s, _| text(s.flush_bytes.as_u64()),
        "a segment is sealed once it holds this many bytes",
    ),
    entry(
        "flush_interval",
        K::String,
        Some("flush_interval"),
        Same,
        |s, _| text(humantime::format_duration(s.flush_interval)),
        "a segment is sealed after this long",
    ),
    entry(
        "jobs",
        K::List,
        Some("jobs"),
        Same,
        |s, _| text(&s.jobs),
        "the background jobs this agent runs",
    ),
    entry(
        "max_inflight_bytes",
        K::Long,
        Some("max_inflight_bytes"),
        Same,
        |s, _| text(s.max_inflight_bytes.as_u64()),
        "produce waits once open and uploading segments hold this many bytes",
    ),
    entry(
        "table_enable_default",
        K::Boolean,
        Some("table_enable_default"),
        Same,
        |s, _| text(s.table_enable_default),
        "the silt.table.enable of topics that set none",
    ),
];

/// DescribeConfigs' config sources.
pub const STATIC_BROKER_CONFIG: i8 = 4;
pub const DEFAULT_CONFIG: i8 = 5;

/// One broker config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: &'static str,
    /// `None` for sensitive configs and configs without a value.
    pub value: Option<String>,
    pub kind: Kind,
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
    pub doc: &'static str,
}

/// Every broker config of this agent (node `node_id`).
pub fn describe(settings: &Settings, node_id: i32) -> Vec<Described> {
    ENTRIES
        .iter()
        .map(|e| {
            let explicit = e.key.is_some_and(|k| settings.explicit.contains(k))
                || matches!(e.name, "broker.id" | "node.id");
            let sensitive = e.kind == K::Password;
            Described {
                name: e.name,
                value: if sensitive {
                    None
                } else {
                    (e.value)(settings, node_id)
                },
                kind: e.kind,
                source: if explicit {
                    STATIC_BROKER_CONFIG
                } else {
                    DEFAULT_CONFIG
                },
                read_only: true,
                sensitive,
                doc: e.doc,
            }
        })
        .collect()
}

/// The Kafka name of a `SILT_` variable that is not a silt key:
/// `group_min_session_timeout_ms` → `group.min.session.timeout.ms`.
pub fn env_name(lower: &str) -> Option<&'static str> {
    ENTRIES
        .iter()
        .filter(|e| e.name.contains('.') && e.key.is_some())
        .map(|e| e.name)
        .find(|n| n.replace('.', "_") == lower)
}

/// Flattens TOML's dotted keys back into names (`a.b = 1` reads as the
/// table `a = {b = 1}`).
fn flatten(prefix: &str, table: toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let name = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&name, t, out),
            v => out.push((name, v)),
        }
    }
}

/// Turns one layer of settings (file, environment or flags) with Kafka's
/// names into silt's keys. Kafka's precedence holds within a layer
/// (`log.retention.ms` over `.minutes` over `.hours`); one setting given
/// under two other names in one layer is an error.
pub fn from_kafka_names(table: toml::Table) -> Result<toml::Table, ConfigError> {
    let mut flat = Vec::new();
    flatten("", table, &mut flat);
    let mut out = toml::Table::new();
    // (silt key → (the name it came from, its precedence)).
    let mut given: std::collections::BTreeMap<String, (String, u8)> = Default::default();
    for (name, value) in flat {
        let (key, value, rank) = if !name.contains('.') {
            (name.clone(), value, 0)
        } else {
            let Some(e) = ENTRIES.iter().find(|e| e.name == name) else {
                return Err(ConfigError::Invalid {
                    name: name.clone(),
                    message:
                        "unknown setting: not a Kafka broker config silt takes (README lists them)"
                            .into(),
                });
            };
            let Some(key) = e.key else {
                return Err(ConfigError::Invalid {
                    name,
                    message: format!("cannot be set in silt: {}", e.doc),
                });
            };
            let rank = match e.conv {
                HoursToMs => 3,
                MinutesToMs => 2,
                _ => 1,
            };
            (key.to_string(), convert(&name, e.conv, value)?, rank)
        };
        if let Some((other, r)) = given.get(&key) {
            let (r, other) = (*r, other.clone());
            // 1 (a Kafka name in ms) beats 2 (minutes) beats 3 (hours).
            if r >= 1 && rank >= 1 && r != rank {
                if rank < r {
                    given.insert(key.clone(), (name, rank));
                    out.insert(key, value);
                }
                continue;
            }
            return Err(ConfigError::Invalid {
                name,
                message: format!("sets the same setting as {other}: give one of them"),
            });
        }
        given.insert(key.clone(), (name, rank));
        out.insert(key, value);
    }
    Ok(out)
}

fn convert(name: &str, conv: Conv, value: toml::Value) -> Result<toml::Value, ConfigError> {
    let int = || {
        match &value {
            toml::Value::Integer(i) => Ok(*i),
            toml::Value::String(s) => s.trim().parse::<i64>().map_err(|_| ()),
            _ => Err(()),
        }
        .map_err(|()| ConfigError::Invalid {
            name: name.to_string(),
            message: format!("expected an integer, not {value:?}"),
        })
    };
    let at_least_0 = |v: i64| {
        if v < 0 {
            Err(ConfigError::Invalid {
                name: name.to_string(),
                message: "must be at least 0".into(),
            })
        } else {
            Ok(v)
        }
    };
    Ok(match conv {
        Same => value.clone(),
        Ms => toml::Value::String(format!("{}ms", at_least_0(int()?)?)),
        Minutes => toml::Value::String(format!("{}m", at_least_0(int()?)?)),
        MinutesToMs => toml::Value::Integer(match int()? {
            v if v < 0 => v,
            v => v.saturating_mul(60_000),
        }),
        HoursToMs => toml::Value::Integer(match int()? {
            v if v < 0 => v,
            v => v.saturating_mul(3_600_000),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("silt.toml");
        std::fs::write(&f, file).unwrap();
        Settings::load(
            Some(&f),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &[],
        )
    }

    #[test]
    fn kafka_names_set_silt_settings() {
        let s = load(
            "group.min.session.timeout.ms = 1000\n\
             group.initial.rebalance.delay.ms = 0\n\
             offsets.retention.minutes = 1440\n\
             num.partitions = 3\n\
             auto.create.topics.enable = false\n\
             message.max.bytes = 2000000\n\
             log.retention.hours = 24\n\
             [socket.request.max]\n\
             bytes = 1048576\n",
            &[("SILT_GROUP_MAX_SIZE", "50")],
        )
        .unwrap();
        assert_eq!(s.group_min_session_timeout, Duration::from_secs(1));
        assert_eq!(s.group_initial_rebalance_delay, Duration::ZERO);
        assert_eq!(s.offsets_retention, Duration::from_secs(86_400));
        assert_eq!(s.default_partitions, 3);
        assert!(!s.auto_create_topics);
        assert_eq!(s.message_max_bytes, 2_000_000);
        assert_eq!(s.log_retention_ms, 86_400_000);
        assert_eq!(s.group_max_size, 50);
        assert_eq!(s.max_request_bytes.as_u64(), 1 << 20);
        for k in [
            "group_min_session_timeout",
            "default_partitions",
            "max_request_bytes",
        ] {
            assert!(s.explicit.contains(k), "{k}");
        }
        assert!(!s.explicit.contains("flush_bytes"));
    }

    #[test]
    fn kafka_precedence_and_conflicts() {
        // ms beats minutes beats hours, in either order.
        let s = load("log.retention.ms = 5000\nlog.retention.hours = 1\n", &[]).unwrap();
        assert_eq!(s.log_retention_ms, 5000);
        let s = load("log.retention.hours = 1\nlog.retention.minutes = 2\n", &[]).unwrap();
        assert_eq!(s.log_retention_ms, 120_000);
        let s = load("log.retention.hours = -1\n", &[]).unwrap();
        assert_eq!(s.log_retention_ms, -1);
        // A silt key and its Kafka name in one layer: which one is meant?
        let e = load("num.partitions = 3\ndefault_partitions = 4\n", &[]).unwrap_err();
        assert!(e.to_string().contains("give one of them"), "{e}");
        // A later layer wins over an earlier one, whatever the name.
        let s = load("num.partitions = 3\n", &[("SILT_DEFAULT_PARTITIONS", "5")]).unwrap();
        assert_eq!(s.default_partitions, 5);
        let s = load("default_partitions = 3\n", &[("SILT_NUM_PARTITIONS", "6")]).unwrap();
        assert_eq!(s.default_partitions, 6);
        // Unknown and read-only Kafka names are refused, by name.
        let e = load("log.dirs = \"/tmp\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("log.dirs"), "{e}");
        let e = load("default.replication.factor = 3\n", &[]).unwrap_err();
        assert!(e.to_string().contains("cannot be set"), "{e}");
        let e = load("group.min.session.timeout.ms = -5\n", &[]).unwrap_err();
        assert!(e.to_string().contains("at least 0"), "{e}");
        let e = load(
            "group.min.session.timeout.ms = 60000\ngroup.max.session.timeout.ms = 1000\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("group_min_session_timeout"), "{e}");
    }

    #[test]
    fn described_with_types_sources_and_secrets_hidden() {
        let s = load("num.partitions = 3\netcd_password = \"hunter2\"\n", &[]).unwrap();
        let d = describe(&s, 7);
        let get = |n: &str| d.iter().find(|c| c.name == n).unwrap().clone();
        let p = get("num.partitions");
        assert_eq!(
            (p.value.as_deref(), p.kind, p.source),
            (Some("3"), K::Int, STATIC_BROKER_CONFIG)
        );
        let g = get("group.min.session.timeout.ms");
        assert_eq!(
            (g.value.as_deref(), g.source),
            (Some("6000"), DEFAULT_CONFIG)
        );
        assert_eq!(get("broker.id").value.as_deref(), Some("7"));
        assert_eq!(get("log.retention.hours").value.as_deref(), Some("168"));
        assert_eq!(
            get("offsets.retention.minutes").value.as_deref(),
            Some("10080")
        );
        assert_eq!(
            get("advertised.listeners").value.as_deref(),
            Some("PLAINTEXT://127.0.0.1:9092")
        );
        let pw = get("etcd_password");
        assert!(pw.sensitive && pw.value.is_none() && pw.kind == K::Password);
        assert_eq!(pw.source, STATIC_BROKER_CONFIG);
        assert!(!format!("{d:?}").contains("hunter2"));
        // docs/kafka-configs.md has a row for every name.
        let doc = include_str!("../../docs/kafka-configs.md");
        for e in ENTRIES {
            assert!(
                doc.contains(&format!("| `{}` |", e.name)),
                "{} is not documented",
                e.name
            );
        }
        // Every settable Kafka name maps to a silt key, and names are unique.
        let mut names: Vec<_> = ENTRIES.iter().map(|e| e.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ENTRIES.len());
        for e in ENTRIES {
            if let Some(k) = e.key {
                assert!(crate::config::KEYS.contains(&k), "{k}");
            }
        }
    }
}
