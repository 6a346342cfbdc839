//! Kafka topic configs ⇄ [`LogConfig`].
//!
//! Topic overrides are kept as Kafka spells them (name → string value), validated when set,
//! and applied over the broker defaults (the log's defaults) to get a partition's
//! [`LogConfig`].

use std::collections::BTreeMap;

use weft_log::{CleanupPolicy, Durability, LogConfig, TimestampType};

/// Kafka's `ConfigType` numbers (DescribeConfigs v3+).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConfigType {
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// Kafka's `ConfigSource` numbers.
pub(crate) const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub(crate) const SOURCE_STATIC_BROKER: i8 = 4;
pub(crate) const SOURCE_DEFAULT: i8 = 5;

/// One supported topic config.
pub(crate) struct ConfigDef {
    pub(crate) name: &'static str,
    /// The broker-level name of its default (`log.retention.ms`...).
    pub(crate) broker_name: &'static str,
    pub(crate) kind: ConfigType,
    pub(crate) doc: &'static str,
    /// The accepted values, for INVALID_CONFIG's message.
    valid: &'static str,
    render: fn(&LogConfig) -> String,
    apply: fn(&mut LogConfig, &str) -> Option<()>,
}

impl ConfigDef {
    pub(crate) fn render(&self, c: &LogConfig) -> String {
        (self.render)(c)
    }
}

fn opt_i64(v: Option<i64>) -> String {
    v.unwrap_or(-1).to_string()
}

/// A Kafka LONG at least `min`.
fn parse_i64_min(s: &str, min: i64) -> Option<i64> {
    s.trim().parse::<i64>().ok().filter(|v| *v >= min)
}

/// A Kafka INT (so at most `i32::MAX`) at least `min`.
fn parse_i32_min(s: &str, min: i32) -> Option<i32> {
    s.trim().parse::<i32>().ok().filter(|v| *v >= min)
}

pub(crate) static CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        kind: ConfigType::List,
        doc: "delete, compact, or compact,delete",
        valid: "delete, compact, or compact,delete",
        render: |c| c.cleanup_policy.render().to_owned(),
        apply: |c, v| {
            c.cleanup_policy = CleanupPolicy::parse(v)?;
            Some(())
        },
    },
    ConfigDef {
        name: "delete.retention.ms",
        broker_name: "log.cleaner.delete.retention.ms",
        kind: ConfigType::Long,
        doc: "how long tombstones survive compaction",
        valid: "a LONG >= 0",
        render: |c| c.delete_retention_ms.to_string(),
        apply: |c, v| {
            c.delete_retention_ms = parse_i64_min(v, 0)?;
            Some(())
        },
    },
    ConfigDef {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        kind: ConfigType::Int,
        doc: "bytes of log between offset index entries",
        valid: "an INT >= 4",
        render: |c| c.index_interval_bytes.to_string(),
        apply: |c, v| {
            c.index_interval_bytes = u64::try_from(parse_i32_min(v, 4)?).ok()?;
            Some(())
        },
    },
    ConfigDef {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        kind: ConfigType::Int,
        doc: "largest record batch accepted",
        valid: "an INT >= 0",
        render: |c| c.max_message_bytes.to_string(),
        apply: |c, v| {
            c.max_message_bytes = usize::try_from(parse_i32_min(v, 0)?).ok()?;
            Some(())
        },
    },
    ConfigDef {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        kind: ConfigType::String,
        doc: "CreateTime or LogAppendTime",
        valid: "CreateTime or LogAppendTime",
        render: |c| match c.timestamp_type {
            TimestampType::CreateTime => "CreateTime".to_owned(),
            TimestampType::LogAppendTime => "LogAppendTime".to_owned(),
        },
        apply: |c, v| {
            c.timestamp_type = match v {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => return None,
            };
            Some(())
        },
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        broker_name: "log.cleaner.min.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "minimum age of a record before compaction may remove it",
        valid: "a LONG >= 0",
        render: |c| c.min_compaction_lag_ms.to_string(),
        apply: |c, v| {
            c.min_compaction_lag_ms = parse_i64_min(v, 0)?;
            Some(())
        },
    },
    ConfigDef {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        kind: ConfigType::Long,
        doc: "partition size above which old segments are deleted; -1 for no limit",
        valid: "a LONG >= -1",
        render: |c| {
            opt_i64(
                c.retention_bytes
                    .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            )
        },
        apply: |c, v| {
            let b = parse_i64_min(v, -1)?;
            c.retention_bytes = if b < 0 { None } else { Some(b as u64) };
            Some(())
        },
    },
    ConfigDef {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        kind: ConfigType::Long,
        doc: "age above which old segments are deleted; -1 to keep forever",
        valid: "a LONG >= -1",
        render: |c| opt_i64(c.retention_ms),
        apply: |c, v| {
            let ms = parse_i64_min(v, -1)?;
            c.retention_ms = if ms < 0 { None } else { Some(ms) };
            Some(())
        },
    },
    ConfigDef {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        kind: ConfigType::Int,
        doc: "segment file size",
        valid: "an INT >= 14",
        render: |c| c.segment_bytes.to_string(),
        apply: |c, v| {
            c.segment_bytes = u64::try_from(parse_i32_min(v, 14)?).ok()?;
            Some(())
        },
    },
    ConfigDef {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        kind: ConfigType::Long,
        doc: "age after which the active segment is rolled",
        valid: "a LONG >= 1",
        render: |c| c.segment_ms.to_string(),
        apply: |c, v| {
            c.segment_ms = parse_i64_min(v, 1)?;
            Some(())
        },
    },
    ConfigDef {
        name: "weft.durability",
        broker_name: "weft.durability",
        kind: ConfigType::String,
        doc: "when appends reach stable storage: batch, group[:<ms>[:<bytes>]], or os",
        valid: "batch, group[:<ms>[:<bytes>]], or os",
        render: |c| c.durability.render(),
        apply: |c, v| {
            c.durability = Durability::parse(v)?;
            Some(())
        },
    },
    // Broker-side schema validation (`schema_validation`): kept as overrides only, they do
    // not touch the log's config.
    ConfigDef {
        name: crate::schema_validation::CONFIG,
        broker_name: crate::schema_validation::CONFIG,
        kind: ConfigType::String,
        doc: "schema validation of produced keys and values: none, id (Confluent wire format \
              naming a schema of the topic's subject) or full (also decodes with it)",
        valid: "none, id or full",
        render: |_| "none".to_owned(),
        apply: |_, v| crate::schema_validation::parse_config(crate::schema_validation::CONFIG, v),
    },
    ConfigDef {
        name: crate::schema_validation::KEY_CONFIG,
        broker_name: crate::schema_validation::KEY_CONFIG,
        kind: ConfigType::String,
        doc: "schema validation of produced keys; inherit follows weft.schema.validation",
        valid: "inherit, none, id or full",
        render: |_| "inherit".to_owned(),
        apply: |_, v| {
            crate::schema_validation::parse_config(crate::schema_validation::KEY_CONFIG, v)
        },
    },
    ConfigDef {
        name: crate::schema_validation::VALUE_CONFIG,
        broker_name: crate::schema_validation::VALUE_CONFIG,
        kind: ConfigType::String,
        doc: "schema validation of produced values; inherit follows weft.schema.validation",
        valid: "inherit, none, id or full",
        render: |_| "inherit".to_owned(),
        apply: |_, v| {
            crate::schema_validation::parse_config(crate::schema_validation::VALUE_CONFIG, v)
        },
    },
];

pub(crate) fn find(name: &str) -> Option<&'static ConfigDef> {
    CONFIGS.iter().find(|d| d.name == name)
}

/// The value shown for `def` when the topic overrides it: our schema-validation configs
/// are not part of [`LogConfig`], so their stored value is shown.
pub(crate) fn shown(def: &ConfigDef, effective: &LogConfig, stored: &str) -> String {
    crate::schema_validation::shown(def.name, stored).unwrap_or_else(|| def.render(effective))
}

/// Why a config override was refused (sent as INVALID_CONFIG's message).
pub(crate) fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = find(name).ok_or_else(|| format!("unknown topic config {name}"))?;
    let mut scratch = LogConfig::default();
    (def.apply)(&mut scratch, value)
        .ok_or_else(|| format!("invalid value {value:?} for {name}: expected {}", def.valid))
}

/// The partition config: `defaults` with `overrides` applied. Overrides were validated when
/// set; one that no longer parses is skipped (and was logged when loaded).
pub(crate) fn effective(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let mut c = defaults.clone();
    for (name, value) in overrides {
        if let Some(def) = find(name) {
            let _ = (def.apply)(&mut c, value);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_round_trips_its_default() {
        let d = LogConfig::default();
        for def in CONFIGS {
            let v = def.render(&d);
            assert_eq!(validate(def.name, &v), Ok(()), "{}", def.name);
            let mut c = LogConfig::default();
            assert!((def.apply)(&mut c, &v).is_some(), "{}", def.name);
            assert_eq!(c, d, "{}", def.name);
        }
    }

    #[test]
    fn overrides_apply_and_bad_values_are_refused() {
        let cases: &[(&str, &str, bool)] = &[
            ("retention.ms", "-1", true),
            ("retention.ms", "1000", true),
            ("retention.ms", "-5", false),
            ("retention.ms", "abc", false),
            ("cleanup.policy", "compact,delete", true),
            ("cleanup.policy", "shred", false),
            ("message.timestamp.type", "LogAppendTime", true),
            ("message.timestamp.type", "Now", false),
            ("weft.durability", "group:5:1024", true),
            ("weft.durability", "sometimes", false),
            ("no.such.config", "1", false),
            // Kafka's types and ranges: INT configs stop at i32::MAX.
            ("index.interval.bytes", "0", false),
            ("index.interval.bytes", "3", false),
            ("index.interval.bytes", "4", true),
            ("index.interval.bytes", "2147483648", false),
            ("segment.bytes", "13", false),
            ("segment.bytes", "14", true),
            ("segment.bytes", "2147483647", true),
            ("segment.bytes", "2147483648", false),
            ("segment.bytes", "9223372036854775807", false),
            ("max.message.bytes", "-1", false),
            ("max.message.bytes", "0", true),
            ("max.message.bytes", "2147483648", false),
            ("segment.ms", "0", false),
            ("segment.ms", "1", true),
            ("retention.bytes", "-2", false),
            ("retention.bytes", "9223372036854775807", true),
            ("min.compaction.lag.ms", "-1", false),
            ("delete.retention.ms", "-1", false),
            ("delete.retention.ms", "0", true),
            ("weft.schema.validation", "id", true),
            ("weft.schema.validation", "inherit", false),
            ("weft.schema.validation", "strict", false),
            ("weft.value.schema.validation", "full", true),
            ("weft.key.schema.validation", "inherit", true),
            ("weft.key.schema.validation", "1", false),
        ];
        for (name, value, ok) in cases {
            assert_eq!(validate(name, value).is_ok(), *ok, "{name}={value}");
        }
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_owned(), "-1".to_owned());
        o.insert("max.message.bytes".to_owned(), "2048".to_owned());
        let c = effective(&LogConfig::default(), &o);
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.max_message_bytes, 2048);
    }
}
