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
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
];

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
        "cleanup.policy" => match value {
            "delete" => Ok(()),
            "compact" | "compact,delete" | "delete,compact" => Err(err(format!(
                "{name}={value:?}: log compaction is not supported yet; only \"delete\" is"
            ))),
            _ => Err(err(format!("{name}={value:?}: expected \"delete\""))),
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

impl TopicConfig {
    /// Validates every override and builds the typed config.
    pub fn parse(overrides: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        for (k, v) in &overrides {
            validate(k, v)?;
        }
        Ok(Self::from_overrides(overrides))
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
        Self {
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
        assert!(validate("cleanup.policy", "compact")
            .unwrap_err()
            .message
            .contains("not supported"));
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
