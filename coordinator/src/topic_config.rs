//! Topic configuration: the configs silt understands, their defaults and
//! validation, and [`TopicConfig`], the typed form parsed once from a
//! topic's overrides.
//!
//! The state keeps a topic's overrides exactly as they were set (they are
//! what DescribeConfigs reports and what a checkpoint stores); the typed
//! fields are derived from them when the config is set or loaded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A config's type as DescribeConfigs reports it (Kafka's `ConfigType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Password = 9,
}

impl Kind {
    /// The `config_type` code of DescribeConfigs v3+.
    pub fn code(self) -> i8 {
        self as i8
    }
}

/// What silt does with a topic config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Enforced with Kafka's meaning.
    Enforced,
    /// Validated, stored and reported; it has no effect in silt (replicas,
    /// local log segments and flushes do not exist here).
    Stored,
}

/// How a config's value is checked (Kafka's validators).
#[derive(Debug, Clone, Copy)]
enum Check {
    LongAtLeast(i64),
    IntAtLeast(i32),
    IntRange(i32, i32),
    /// gzip: -1 (the codec's default) or 1..=9.
    GzipLevel,
    /// A double between 0 and 1.
    Ratio,
    Bool,
    OneOf(&'static [&'static str]),
    /// `cleanup.policy`: a non-empty list of `delete` and `compact`.
    Policy,
    /// `message.format.version`: a Kafka version such as `2.8` or `3.0-IV1`.
    FormatVersion,
    /// `*`, or a list of `partition:broker` pairs.
    ThrottledReplicas,
    TableSchema,
}

/// One topic config: Kafka's name, default, type and validation, the broker
/// config that sets its cluster default, and what it does in silt.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    check: Check,
    /// The broker config Kafka reports as this config's synonym.
    pub broker_synonym: Option<&'static str>,
    pub effect: Effect,
    /// One line for DescribeConfigs' documentation field.
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";
const CODECS: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

const fn spec(
    name: &'static str,
    default: &'static str,
    kind: Kind,
    check: Check,
    broker_synonym: Option<&'static str>,
    effect: Effect,
    doc: &'static str,
) -> Spec {
    Spec {
        name,
        default,
        kind,
        check,
        broker_synonym,
        effect,
        doc,
    }
}

use Check::*;
use Effect::*;

/// Every topic config Kafka 3.9 and 4.x accept, and silt's own, by name.
pub const SPECS: &[Spec] = &[
    spec("cleanup.policy", "delete", Kind::List, Policy, Some("log.cleanup.policy"), Enforced,
        "delete: retention removes old records; compact: the cleaner keeps the last record of each key"),
    spec("compression.gzip.level", "-1", Kind::Int, GzipLevel, Some("compression.gzip.level"), Stored,
        "gzip level when compression.type is gzip; batches are stored as the producer compressed them"),
    spec("compression.lz4.level", "9", Kind::Int, IntRange(1, 17), Some("compression.lz4.level"), Stored,
        "lz4 level when compression.type is lz4; batches are stored as the producer compressed them"),
    spec("compression.type", "producer", Kind::String, OneOf(CODECS), Some("compression.type"), Stored,
        "accepted; batches are always stored as the producer compressed them (producer semantics)"),
    spec("compression.zstd.level", "3", Kind::Int, IntRange(-131072, 22), Some("compression.zstd.level"), Stored,
        "zstd level when compression.type is zstd; batches are stored as the producer compressed them"),
    spec("delete.retention.ms", "86400000", Kind::Long, LongAtLeast(0), Some("log.cleaner.delete.retention.ms"), Enforced,
        "how long a tombstone stays after the cleaner first passed it"),
    spec("file.delete.delay.ms", "60000", Kind::Long, LongAtLeast(0), Some("log.segment.delete.delay.ms"), Stored,
        "no local files; objects are deleted after the gc_grace setting"),
    spec("flush.messages", LONG_MAX, Kind::Long, LongAtLeast(1), Some("log.flush.interval.messages"), Stored,
        "every acknowledged write is already in object storage"),
    spec("flush.ms", LONG_MAX, Kind::Long, LongAtLeast(0), Some("log.flush.interval.ms"), Stored,
        "every acknowledged write is already in object storage"),
    spec("follower.replication.throttled.replicas", "", Kind::List, ThrottledReplicas, None, Stored,
        "no replication between agents"),
    spec("index.interval.bytes", "4096", Kind::Int, IntAtLeast(0), Some("log.index.interval.bytes"), Stored,
        "the segment index has one entry per batch"),
    spec("leader.replication.throttled.replicas", "", Kind::List, ThrottledReplicas, None, Stored,
        "no replication between agents"),
    spec("local.retention.bytes", "-2", Kind::Long, LongAtLeast(-2), Some("log.local.retention.bytes"), Stored,
        "no local log: all data is in object storage"),
    spec("local.retention.ms", "-2", Kind::Long, LongAtLeast(-2), Some("log.local.retention.ms"), Stored,
        "no local log: all data is in object storage"),
    spec("max.compaction.lag.ms", LONG_MAX, Kind::Long, LongAtLeast(1), Some("log.cleaner.max.compaction.lag.ms"), Enforced,
        "a record older than this is cleaned even below the dirty ratio"),
    spec("max.message.bytes", "1048588", Kind::Int, IntAtLeast(0), Some("message.max.bytes"), Enforced,
        "the largest record batch accepted"),
    spec("message.downconversion.enable", "true", Kind::Boolean, Bool, Some("log.message.downconversion.enable"), Stored,
        "record batches are never down-converted (Produce >= 3, Fetch >= 4)"),
    spec("message.format.version", "3.0-IV1", Kind::String, FormatVersion, Some("log.message.format.version"), Stored,
        "records are stored in the format written (v2)"),
    spec("message.timestamp.after.max.ms", LONG_MAX, Kind::Long, LongAtLeast(0), Some("log.message.timestamp.after.max.ms"), Enforced,
        "CreateTime batches more than this ahead of the agent's clock are refused"),
    spec("message.timestamp.before.max.ms", LONG_MAX, Kind::Long, LongAtLeast(0), Some("log.message.timestamp.before.max.ms"), Enforced,
        "CreateTime batches more than this behind the agent's clock are refused"),
    spec("message.timestamp.difference.max.ms", LONG_MAX, Kind::Long, LongAtLeast(0), Some("log.message.timestamp.difference.max.ms"), Enforced,
        "deprecated: the before and after bounds when those are not set"),
    spec("message.timestamp.type", "CreateTime", Kind::String, OneOf(&["CreateTime", "LogAppendTime"]), Some("log.message.timestamp.type"), Enforced,
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps the append time"),
    spec("min.cleanable.dirty.ratio", "0.5", Kind::Double, Ratio, Some("log.cleaner.min.cleanable.ratio"), Enforced,
        "the dirty share of a compacted partition that starts the cleaner"),
    spec("min.compaction.lag.ms", "0", Kind::Long, LongAtLeast(0), Some("log.cleaner.min.compaction.lag.ms"), Enforced,
        "records younger than this are not cleaned"),
    spec("min.insync.replicas", "1", Kind::Int, IntAtLeast(1), Some("min.insync.replicas"), Stored,
        "every acknowledged write is in object storage, which is stronger than any replica count"),
    spec("preallocate", "false", Kind::Boolean, Bool, Some("log.preallocate"), Stored,
        "no local segment files"),
    spec("remote.log.copy.disable", "false", Kind::Boolean, Bool, None, Stored,
        "all data is in object storage"),
    spec("remote.log.delete.on.disable", "false", Kind::Boolean, Bool, None, Stored,
        "all data is in object storage"),
    spec("remote.storage.enable", "false", Kind::Boolean, Bool, None, Stored,
        "all data is in object storage whatever its value"),
    spec("retention.bytes", "-1", Kind::Long, LongAtLeast(-1), Some("log.retention.bytes"), Enforced,
        "the size a partition keeps; -1 for no limit"),
    spec("retention.ms", "604800000", Kind::Long, LongAtLeast(-1), Some("log.retention.ms"), Enforced,
        "how long records are kept; -1 for ever"),
    spec("segment.bytes", "1073741824", Kind::Int, IntAtLeast(14), Some("log.segment.bytes"), Stored,
        "segment objects are cut by the agents' flush_bytes and flush_interval"),
    spec("segment.index.bytes", "10485760", Kind::Int, IntAtLeast(4), Some("log.index.size.max.bytes"), Stored,
        "the index lives in the metadata store"),
    spec("segment.jitter.ms", "0", Kind::Long, LongAtLeast(0), Some("log.roll.jitter.ms"), Stored,
        "segment objects are cut by the agents' flush_bytes and flush_interval"),
    spec("segment.ms", "604800000", Kind::Long, LongAtLeast(1), Some("log.roll.ms"), Stored,
        "segment objects are cut by the agents' flush_bytes and flush_interval"),
    spec("silt.table.enable", "false", Kind::Boolean, Bool, Some("table_enable_default"), Enforced,
        "export the topic as a Parquet table"),
    spec("silt.table.retention.ms", "-1", Kind::Long, LongAtLeast(-1), None, Enforced,
        "how long table files are kept; -1 for ever"),
    spec("silt.table.value.schema", "", Kind::String, TableSchema, None, Enforced,
        "JSON fields decoded from values into table columns"),
    spec("unclean.leader.election.enable", "false", Kind::Boolean, Bool, Some("unclean.leader.election.enable"), Stored,
        "no replicas: a partition's new leader reads the same object storage"),
];

/// Columns every table has; a value schema's fields may not reuse them.
pub const TABLE_COLUMNS: &[&str] = &[
    "partition",
    "offset",
    "timestamp",
    "timestamp_type",
    "key",
    "value",
    "headers",
    "date",
    "hour",
];

/// The types a table's value schema may give a field.
pub const TABLE_FIELD_TYPES: &[&str] = &["string", "int", "long", "double", "boolean"];

/// One field of a topic's `silt.table.value.schema`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSchema {
    fields: Vec<TableField>,
}

/// Parses `silt.table.value.schema`: `{"fields": [{"name": ..., "type":
/// ...}, ...]}` with types from [`TABLE_FIELD_TYPES`]; empty for none.
pub fn parse_table_schema(value: &str) -> Result<Vec<TableField>, String> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let s: TableSchema = serde_json::from_str(value).map_err(|e| {
        format!("expected {{\"fields\": [{{\"name\": ..., \"type\": ...}}, ...]}}: {e}")
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for f in &s.fields {
        if f.name.is_empty() || TABLE_COLUMNS.contains(&f.name.as_str()) {
            return Err(format!(
                "field name {:?} is empty or one of the fixed columns ({})",
                f.name,
                TABLE_COLUMNS.join(", ")
            ));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(format!("field {:?} appears twice", f.name));
        }
        if !TABLE_FIELD_TYPES.contains(&f.kind.as_str()) {
            return Err(format!(
                "field {:?}: type {:?} is not one of {}",
                f.name,
                f.kind,
                TABLE_FIELD_TYPES.join(", ")
            ));
        }
    }
    if s.fields.is_empty() {
        return Err("a value schema needs at least one field".into());
    }
    Ok(s.fields)
}

/// A topic config value that silt does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub name: String,
    pub message: String,
}

/// Which timestamp a topic's records carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps, as sent.
    #[default]
    CreateTime,
    /// The time the batch was appended (when its segment was sealed).
    LogAppendTime,
}

/// A topic's configuration: the overrides as set, and their typed meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    overrides: BTreeMap<String, String>,
    /// `max.message.bytes` when set on the topic: the largest record batch
    /// accepted (else the cluster's `message.max.bytes`).
    pub max_message_bytes: Option<i32>,
    /// `message.timestamp.before.max.ms` (or the deprecated
    /// `message.timestamp.difference.max.ms`): how far behind the agent's
    /// clock a CreateTime batch may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (or the deprecated difference): how
    /// far ahead of the agent's clock a CreateTime batch may be.
    pub timestamp_after_max_ms: i64,
    pub timestamp_type: TimestampType,
    /// `retention.ms`; `None` keeps records forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes` per partition; `None` means no size limit.
    pub retention_bytes: Option<i64>,
    /// `cleanup.policy` holds `delete`: retention applies.
    pub delete: bool,
    /// `cleanup.policy` holds `compact`: the cleaner keeps the last record
    /// of every key, and records without a key are refused.
    pub compact: bool,
    /// `delete.retention.ms`: how long a tombstone stays after the cleaner
    /// first passed it.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a record older than this is cleaned even
    /// below the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`, in millionths (the state machine holds
    /// no floats).
    pub min_cleanable_dirty_ratio_ppm: u32,
    /// `silt.table.enable` when set on the topic (else the cluster default).
    pub table_enable: Option<bool>,
    /// `silt.table.retention.ms`; `None` keeps table files forever.
    pub table_retention_ms: Option<i64>,
    /// `silt.table.value.schema`: fields decoded from JSON values.
    pub table_fields: Vec<TableField>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self::from_overrides(BTreeMap::new())
    }
}

/// The spec of a topic config, if Kafka or silt knows the name.
pub fn spec_of(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

pub fn is_known(name: &str) -> bool {
    spec_of(name).is_some()
}

/// Checks one config value by Kafka's rules; the error says what is
/// accepted, in Kafka's words.
pub fn validate(name: &str, value: &str) -> Result<(), ConfigError> {
    let err = |why: String| ConfigError {
        name: name.to_string(),
        message: format!("Invalid value {value} for configuration {name}: {why}"),
    };
    let Some(spec) = spec_of(name) else {
        return Err(ConfigError {
            name: name.to_string(),
            message: format!(
                "Unknown topic config name: {name} (docs/compatibility.md lists the topic configs)"
            ),
        });
    };
    let v = value.trim();
    let long = || {
        v.parse::<i64>()
            .map_err(|_| err("Not a number of type LONG".into()))
    };
    let int = || {
        v.parse::<i32>()
            .map_err(|_| err("Not a number of type INT".into()))
    };
    match spec.check {
        LongAtLeast(min) => match long()? {
            x if x >= min => Ok(()),
            _ => Err(err(format!("Value must be at least {min}"))),
        },
        IntAtLeast(min) => match int()? {
            x if x >= min => Ok(()),
            _ => Err(err(format!("Value must be at least {min}"))),
        },
        IntRange(lo, hi) => match int()? {
            x if (lo..=hi).contains(&x) => Ok(()),
            _ => Err(err(format!("Value must be in [{lo}, {hi}]"))),
        },
        GzipLevel => match int()? {
            -1 | 1..=9 => Ok(()),
            _ => Err(err("Value must be -1 or in [1, 9]".into())),
        },
        Ratio => match v.parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(()),
            Ok(_) => Err(err("Value must be between 0 and 1".into())),
            Err(_) => Err(err("Not a number of type DOUBLE".into())),
        },
        Bool => match parse_bool(v) {
            Some(_) => Ok(()),
            None => Err(err("Expected value to be either true or false".into())),
        },
        OneOf(allowed) => match allowed.contains(&v) {
            true => Ok(()),
            false => Err(err(format!(
                "String must be one of: {}",
                allowed.join(", ")
            ))),
        },
        Policy => match parse_policy(v) {
            Some(_) => Ok(()),
            None => Err(err("String must be one of: compact, delete".into())),
        },
        FormatVersion => match is_format_version(v) {
            true => Ok(()),
            false => Err(err(
                "expected a Kafka version such as 2.8, 3.0 or 3.0-IV1".into()
            )),
        },
        ThrottledReplicas => match is_throttled_replicas(v) {
            true => Ok(()),
            false => Err(err(
                "must be * or a list of partition:brokerId pairs, such as 0:1,1:2".into(),
            )),
        },
        TableSchema => parse_table_schema(value).map(|_| ()).map_err(err),
    }
}

/// IncrementalAlterConfigs' APPEND (`append`) or SUBTRACT on a list
/// config: the new value, from the override `current` or the default.
pub fn list_op(
    name: &str,
    current: Option<&str>,
    append: bool,
    items: &str,
) -> Result<String, ConfigError> {
    let spec = spec_of(name)
        .filter(|s| s.kind == Kind::List)
        .ok_or_else(|| ConfigError {
            name: name.to_string(),
            message: format!("{name}: APPEND and SUBTRACT apply to list configs only"),
        })?;
    let split = |v: &str| -> Vec<String> {
        v.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let mut list = split(current.unwrap_or(spec.default));
    for item in split(items) {
        if append && !list.contains(&item) {
            list.push(item);
        } else if !append {
            list.retain(|x| *x != item);
        }
    }
    Ok(list.join(","))
}

/// Kafka's boolean: `true` or `false`, any case.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `0.8.2`, `2.8`, `3.0-IV1`, `3.9-IV0`: dotted numbers, an optional
/// `-IVn` suffix.
fn is_format_version(v: &str) -> bool {
    let (nums, iv) = match v.split_once("-IV") {
        Some((n, iv)) => (n, Some(iv)),
        None => (v, None),
    };
    let parts: Vec<&str> = nums.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && iv.is_none_or(|iv| !iv.is_empty() && iv.bytes().all(|b| b.is_ascii_digit()))
}

/// Kafka's throttled-replicas list: empty, `*`, or `partition:broker`
/// pairs separated by commas.
fn is_throttled_replicas(v: &str) -> bool {
    if v.is_empty() || v == "*" {
        return true;
    }
    v.split(',').all(|pair| {
        let num = |s: &str| {
            let s = s.trim();
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
        };
        matches!(pair.split_once(':'), Some((p, b)) if num(p) && num(b))
    })
}

/// `(delete, compact)` of a `cleanup.policy` value: a comma-separated list
/// of `delete` and `compact` (Kafka accepts either order, with spaces).
fn parse_policy(value: &str) -> Option<(bool, bool)> {
    let (mut delete, mut compact) = (false, false);
    for part in value.split(',') {
        match part.trim() {
            "delete" => delete = true,
            "compact" => compact = true,
            _ => return None,
        }
    }
    (delete || compact).then_some((delete, compact))
}

impl TopicConfig {
    /// Validates every override and builds the typed config.
    pub fn parse(overrides: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        for (k, v) in &overrides {
            validate(k, v)?;
        }
        let c = Self::from_overrides(overrides);
        if c.min_compaction_lag_ms > c.max_compaction_lag_ms {
            return Err(ConfigError {
                name: "min.compaction.lag.ms".into(),
                message: format!(
                    "conflict topic configs: min.compaction.lag.ms {} is greater than max.compaction.lag.ms {}",
                    c.min_compaction_lag_ms, c.max_compaction_lag_ms
                ),
            });
        }
        Ok(c)
    }

    /// Builds the typed config from overrides already in the log. A value
    /// that does not parse (it was validated before it was written, so only
    /// a newer writer could have put it there) falls back to the default:
    /// applying the log must never fail.
    pub fn from_overrides(overrides: BTreeMap<String, String>) -> Self {
        let get = |k: &str| {
            overrides
                .get(k)
                .map(|v| v.trim())
                .or_else(|| spec_of(k).map(|s| s.default))
                .unwrap_or_default()
        };
        let limit = |k: &str, default: Option<i64>| match get(k).parse::<i64>() {
            Ok(v) if v >= 0 => Some(v),
            Ok(-1) => None,
            _ => default,
        };
        let (delete, compact) = parse_policy(get("cleanup.policy")).unwrap_or((true, false));
        let at_least = |k: &str, min: i64, default: i64| match get(k).parse::<i64>() {
            Ok(v) if v >= min => v,
            _ => default,
        };
        let ratio = match get("min.cleanable.dirty.ratio").parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => (v * 1e6).round() as u32,
            _ => 500_000,
        };
        // Kafka's rule: the deprecated difference bounds both sides when
        // the newer bound is left at its default.
        let difference = at_least("message.timestamp.difference.max.ms", 0, i64::MAX);
        let bound = |k: &str| match at_least(k, 0, i64::MAX) {
            i64::MAX => difference,
            v => v,
        };
        Self {
            table_enable: overrides
                .get("silt.table.enable")
                .and_then(|v| parse_bool(v.trim())),
            timestamp_before_max_ms: bound("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: bound("message.timestamp.after.max.ms"),
            table_retention_ms: limit("silt.table.retention.ms", None),
            table_fields: parse_table_schema(get("silt.table.value.schema")).unwrap_or_default(),
            delete,
            compact,
            delete_retention_ms: at_least("delete.retention.ms", 0, 86_400_000),
            min_compaction_lag_ms: at_least("min.compaction.lag.ms", 0, 0),
            max_compaction_lag_ms: at_least("max.compaction.lag.ms", 1, i64::MAX),
            min_cleanable_dirty_ratio_ppm: ratio,
            max_message_bytes: overrides
                .get("max.message.bytes")
                .and_then(|v| v.trim().parse::<i32>().ok())
                .filter(|v| *v >= 0),
            timestamp_type: match get("message.timestamp.type") {
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            retention_ms: limit("retention.ms", Some(604_800_000)),
            retention_bytes: limit("retention.bytes", None),
            overrides,
        }
    }

    /// The overrides as set (what AlterConfigs replaces).
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// The largest record batch accepted: the topic's `max.message.bytes`,
    /// else `broker_default` (the cluster's `message.max.bytes`).
    pub fn max_message_bytes(&self, broker_default: i32) -> i32 {
        self.max_message_bytes.unwrap_or(broker_default)
    }

    /// Every topic config with its override, if set.
    pub fn describe(&self) -> impl Iterator<Item = (&'static Spec, Option<&str>)> + '_ {
        SPECS
            .iter()
            .map(|spec| (spec, self.overrides.get(spec.name).map(String::as_str)))
    }
}

// Checkpoints store the overrides only; the typed fields are derived again.
impl Serialize for TopicConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.overrides.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TopicConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(Self::from_overrides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validates() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        for ok in ["compact", "delete", "compact,delete", "delete, compact"] {
            assert!(validate("cleanup.policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", "compact,", "keep", "compact;delete"] {
            assert!(validate("cleanup.policy", bad).is_err(), "{bad}");
        }
        assert!(validate("min.cleanable.dirty.ratio", "0.01").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("max.compaction.lag.ms", "0").is_err());
        assert!(validate("delete.retention.ms", "-1").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        let e = validate("segment.byte", "1").unwrap_err();
        assert_eq!(e.name, "segment.byte");
        assert!(e.message.starts_with("Unknown topic config name"), "{e}");
        for spec in SPECS {
            validate(spec.name, spec.default).unwrap();
        }
        // APPEND and SUBTRACT on list configs.
        assert_eq!(
            list_op("cleanup.policy", None, true, "compact").unwrap(),
            "delete,compact"
        );
        assert_eq!(
            list_op("cleanup.policy", Some("delete,compact"), false, "delete").unwrap(),
            "compact"
        );
        assert!(list_op("retention.ms", None, true, "1").is_err());
        // Kafka's validators, one case each side of every kind of bound.
        for (k, ok, bad) in [
            ("segment.bytes", "14", "13"),
            ("segment.bytes", " 1048576 ", "2147483648"),
            ("segment.index.bytes", "4", "3"),
            ("segment.ms", "1", "0"),
            ("local.retention.ms", "-2", "-3"),
            ("min.insync.replicas", "1", "0"),
            ("compression.type", "zstd", "brotli"),
            ("compression.type", "uncompressed", "none"),
            ("compression.gzip.level", "-1", "0"),
            ("compression.gzip.level", "9", "10"),
            ("compression.lz4.level", "17", "18"),
            ("compression.zstd.level", "-131072", "23"),
            ("unclean.leader.election.enable", "TRUE", "yes"),
            ("preallocate", "false", "0"),
            ("flush.messages", "1", "0"),
            ("message.format.version", "2.8", "2.x"),
            ("message.format.version", "3.0-IV1", "3"),
            ("message.format.version", "0.10.2", "3.0-IV"),
            ("leader.replication.throttled.replicas", "*", "all"),
            (
                "follower.replication.throttled.replicas",
                "0:1, 1:2",
                "0:1,1",
            ),
            ("message.timestamp.before.max.ms", "0", "-1"),
            ("max.message.bytes", "0", "-1"),
        ] {
            assert!(validate(k, ok).is_ok(), "{k}={ok}");
            let e = validate(k, bad).unwrap_err();
            assert_eq!(e.name, k);
            assert!(e.message.contains(k), "{e}");
        }
    }

    #[test]
    fn typed_fields_follow_overrides() {
        let d = TopicConfig::default();
        assert_eq!(d.max_message_bytes, None);
        assert_eq!(d.max_message_bytes(1_048_588), 1_048_588);
        assert_eq!(d.timestamp_before_max_ms, i64::MAX);
        assert_eq!(d.timestamp_after_max_ms, i64::MAX);
        assert_eq!(d.timestamp_type, TimestampType::CreateTime);
        assert_eq!(d.retention_ms, Some(604_800_000));
        assert_eq!(d.retention_bytes, None);
        let c = TopicConfig::parse(map(&[
            ("message.timestamp.type", "LogAppendTime"),
            ("retention.ms", "-1"),
            ("retention.bytes", "1000"),
            ("max.message.bytes", "10"),
        ]))
        .unwrap();
        assert_eq!(c.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.retention_bytes, Some(1000));
        assert_eq!(c.max_message_bytes(1_048_588), 10);
        // The deprecated difference bounds both sides unless a newer bound
        // is set.
        let t = TopicConfig::parse(map(&[
            ("message.timestamp.difference.max.ms", "5000"),
            ("message.timestamp.after.max.ms", "100"),
        ]))
        .unwrap();
        assert_eq!(t.timestamp_before_max_ms, 5000);
        assert_eq!(t.timestamp_after_max_ms, 100);
        assert!(TopicConfig::parse(map(&[("retention.ms", "soon")])).is_err());
        assert!(d.delete && !d.compact);
        assert_eq!(d.delete_retention_ms, 86_400_000);
        assert_eq!(d.max_compaction_lag_ms, i64::MAX);
        assert_eq!(d.min_cleanable_dirty_ratio_ppm, 500_000);
        let k = TopicConfig::parse(map(&[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "100"),
        ]))
        .unwrap();
        assert!(k.compact && !k.delete);
        assert_eq!(k.min_cleanable_dirty_ratio_ppm, 10_000);
        assert_eq!(k.delete_retention_ms, 100);
        let both = TopicConfig::parse(map(&[("cleanup.policy", "delete,compact")])).unwrap();
        assert!(both.compact && both.delete);
        // Tables.
        assert_eq!(d.table_enable, None);
        assert_eq!(d.table_retention_ms, None);
        let t = TopicConfig::parse(map(&[
            ("silt.table.enable", "true"),
            ("silt.table.retention.ms", "3600000"),
            (
                "silt.table.value.schema",
                r#"{"fields":[{"name":"user","type":"string"},{"name":"n","type":"long"}]}"#,
            ),
        ]))
        .unwrap();
        assert_eq!(t.table_enable, Some(true));
        assert_eq!(t.table_retention_ms, Some(3_600_000));
        assert_eq!(t.table_fields.len(), 2);
        for bad in [
            r#"{"fields":[{"name":"offset","type":"long"}]}"#,
            r#"{"fields":[{"name":"a","type":"decimal"}]}"#,
            r#"{"fields":[{"name":"a","type":"long"},{"name":"a","type":"int"}]}"#,
            r#"{"fields":[]}"#,
            "not json",
        ] {
            assert!(validate("silt.table.value.schema", bad).is_err(), "{bad}");
        }
        assert!(validate("silt.table.enable", "yes").is_err());
        // Kafka refuses a minimum lag above the maximum.
        assert!(TopicConfig::parse(map(&[
            ("min.compaction.lag.ms", "1000"),
            ("max.compaction.lag.ms", "999"),
        ]))
        .is_err());
        // Serialized as the overrides alone; read back to the same config.
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.starts_with("{\"max.message.bytes\":\"10\""), "{json}");
        assert_eq!(serde_json::from_str::<TopicConfig>(&json).unwrap(), c);
        let described: Vec<_> = c.describe().collect();
        assert_eq!(described.len(), SPECS.len());
        assert!(described
            .iter()
            .any(|(s, v)| s.name == "retention.bytes" && *v == Some("1000")));
        assert!(described
            .iter()
            .any(|(s, v)| s.name == "cleanup.policy" && v.is_none() && s.default == "delete"));
        // docs/kafka-configs.md has a row for every config.
        let doc = include_str!("../../docs/kafka-configs.md");
        for spec in SPECS {
            assert!(
                doc.contains(&format!("| `{}` |", spec.name)),
                "{} is not documented",
                spec.name
            );
        }
        // The table is sorted and names each config once.
        assert!(SPECS.windows(2).all(|w| w[0].name < w[1].name));
    }
}
