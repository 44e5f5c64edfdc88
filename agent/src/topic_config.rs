//! Topic configurations silt understands: their defaults and validation.

/// (name, default) of every supported topic config.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
];

pub fn is_known(name: &str) -> bool {
    DEFAULTS.iter().any(|(k, _)| *k == name)
}

/// Checks one config value; the error says what is accepted.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let long_at_least = |min: i64| match value.parse::<i64>() {
        Ok(v) if v >= min => Ok(()),
        _ => Err(format!("{name}={value:?}: expected an integer >= {min}")),
    };
    match name {
        "retention.ms" | "retention.bytes" => long_at_least(-1),
        "max.message.bytes" => match value.parse::<i32>() {
            Ok(v) if v >= 0 => Ok(()),
            _ => Err(format!(
                "{name}={value:?}: expected a non-negative 32-bit integer"
            )),
        },
        "cleanup.policy" => match value {
            "delete" => Ok(()),
            "compact" | "compact,delete" | "delete,compact" => Err(format!(
                "{name}={value:?}: log compaction is not supported yet; only \"delete\" is"
            )),
            _ => Err(format!("{name}={value:?}: expected \"delete\"")),
        },
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!(
                "{name}={value:?}: expected CreateTime or LogAppendTime"
            )),
        },
        _ => Err(format!(
            "unsupported topic config {name:?} (supported: {})",
            DEFAULTS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("cleanup.policy", "compact")
            .unwrap_err()
            .contains("not supported"));
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("segment.bytes", "1").is_err());
        for (k, v) in DEFAULTS {
            validate(k, v).unwrap();
        }
    }
}
