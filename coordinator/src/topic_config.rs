//! Topic configuration: the configs silt understands, their defaults and
//! validation, and [`TopicConfig`], the typed form parsed once from a
//! topic's overrides.
//!
//! The state keeps a topic's overrides exactly as they were set (they are
//! what DescribeConfigs reports and what a checkpoint stores); the typed
//! fields are derived from them when the config is set or loaded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// (name, default) of every supported topic config.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("delete.retention.ms", "86400000"),
    ("max.compaction.lag.ms", "9223372036854775807"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("min.cleanable.dirty.ratio", "0.5"),
    ("min.compaction.lag.ms", "0"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("silt.table.enable", "false"),
    ("silt.table.retention.ms", "-1"),
    ("silt.table.value.schema", ""),
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
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: i32,
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

pub fn is_known(name: &str) -> bool {
    DEFAULTS.iter().any(|(k, _)| *k == name)
}

/// Checks one config value; the error says what is accepted.
pub fn validate(name: &str, value: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError {
        name: name.to_string(),
        message,
    };
    let long_at_least = |min: i64| match value.parse::<i64>() {
        Ok(v) if v >= min => Ok(()),
        _ => Err(err(format!(
            "{name}={value:?}: expected an integer >= {min}"
        ))),
    };
    match name {
        "retention.ms" | "retention.bytes" => long_at_least(-1),
        "max.message.bytes" => match value.parse::<i32>() {
            Ok(v) if v >= 0 => Ok(()),
            _ => Err(err(format!(
                "{name}={value:?}: expected a non-negative 32-bit integer"
            ))),
        },
        "cleanup.policy" => match parse_policy(value) {
            Some(_) => Ok(()),
            None => Err(err(format!(
                "{name}={value:?}: expected \"delete\", \"compact\" or \"compact,delete\""
            ))),
        },
        "delete.retention.ms" | "min.compaction.lag.ms" => long_at_least(0),
        "max.compaction.lag.ms" => long_at_least(1),
        "silt.table.enable" => match value {
            "true" | "false" => Ok(()),
            _ => Err(err(format!("{name}={value:?}: expected true or false"))),
        },
        "silt.table.retention.ms" => long_at_least(-1),
        "silt.table.value.schema" => parse_table_schema(value)
            .map(|_| ())
            .map_err(|m| err(format!("{name}: {m}"))),
        "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(err(format!(
                "{name}={value:?}: expected a number between 0 and 1"
            ))),
        },
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(err(format!(
                "{name}={value:?}: expected CreateTime or LogAppendTime"
            ))),
        },
        _ => Err(err(format!(
            "unsupported topic config {name:?} (supported: {})",
            DEFAULTS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
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
                .map(String::as_str)
                .or_else(|| DEFAULTS.iter().find(|(d, _)| *d == k).map(|(_, v)| *v))
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
        let ratio = match get("min.cleanable.dirty.ratio").trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => (v * 1e6).round() as u32,
            _ => 500_000,
        };
        Self {
            table_enable: match overrides.get("silt.table.enable").map(String::as_str) {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            },
            table_retention_ms: limit("silt.table.retention.ms", None),
            table_fields: parse_table_schema(get("silt.table.value.schema")).unwrap_or_default(),
            delete,
            compact,
            delete_retention_ms: at_least("delete.retention.ms", 0, 86_400_000),
            min_compaction_lag_ms: at_least("min.compaction.lag.ms", 0, 0),
            max_compaction_lag_ms: at_least("max.compaction.lag.ms", 1, i64::MAX),
            min_cleanable_dirty_ratio_ppm: ratio,
            max_message_bytes: get("max.message.bytes").parse().unwrap_or(1_048_588),
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

    /// Every supported config with its value and whether it is an override.
    pub fn describe(&self) -> impl Iterator<Item = (&'static str, String, bool)> + '_ {
        DEFAULTS
            .iter()
            .map(|(k, default)| match self.overrides.get(*k) {
                Some(v) => (*k, v.clone(), true),
                None => (*k, default.to_string(), false),
            })
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
        let e = validate("segment.bytes", "1").unwrap_err();
        assert_eq!(e.name, "segment.bytes");
        for (k, v) in DEFAULTS {
            validate(k, v).unwrap();
        }
    }

    #[test]
    fn typed_fields_follow_overrides() {
        let d = TopicConfig::default();
        assert_eq!(d.max_message_bytes, 1_048_588);
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
        assert_eq!(c.max_message_bytes, 10);
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
        assert_eq!(described.len(), DEFAULTS.len());
        assert!(described.contains(&("retention.bytes", "1000".into(), true)));
        assert!(described.contains(&("cleanup.policy", "delete".into(), false)));
    }
}
