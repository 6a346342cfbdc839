//! `weft serve` options and how they are resolved.
//!
//! Each option is taken from the first place that sets it: the command-line flag, then the
//! environment variable `WEFT_<NAME>`, then `weft.toml`, then the built-in default. The config
//! file is `--config`, else `$WEFT_CONFIG`, else `./weft.toml` when it exists. Keys in the file
//! are the flag names in snake_case (`data_dir = "…"`); a `[log]` table holds the default
//! settings of new partitions (`segment_bytes`, `retention_ms`, `durability`, …). With an
//! external cluster (`kafka_bootstrap`), a `[kafka_client]` table holds the librdkafka
//! properties (`security.protocol`, `sasl.*`, `ssl.*`…) of every Kafka client `weft serve`
//! itself runs (gateway, lag sampler, outbox relay); secret values never reach a log.
//!
//! Resolution is a pure function of (flags, environment, file text) so that the precedence
//! rules are tested without touching the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use weft_log::{CleanupPolicy, Durability, LogConfig, TimestampType};

/// Name of the config file looked for in the working directory.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "weft.toml";

/// Flags of `weft serve`. All optional: unset flags fall back to env, file, default.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct ServeArgs {
    /// Config file [env: WEFT_CONFIG] [default: ./weft.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Directory for everything the embedded mode stores [env: WEFT_DATA_DIR] [default: ./weft-data]
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Kafka protocol listener [env: WEFT_KAFKA_LISTEN] [default: 127.0.0.1:9092]
    #[arg(long, value_name = "ADDR")]
    pub(crate) kafka_listen: Option<SocketAddr>,
    /// Address told to Kafka clients in metadata [env: WEFT_KAFKA_ADVERTISED] [default: the bound Kafka listener]
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) kafka_advertised: Option<String>,
    /// HTTP listener: /healthz, /readyz [env: WEFT_HTTP_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub(crate) http_listen: Option<SocketAddr>,
    /// Schema registry listener (Confluent API) [env: WEFT_REGISTRY_LISTEN] [default: 127.0.0.1:8081]
    #[arg(long, value_name = "ADDR")]
    pub(crate) registry_listen: Option<SocketAddr>,
    /// State database: postgres://USER:PASSWORD@HOST:PORT/DB or sqlite:PATH [env: WEFT_DATABASE]
    /// [default: sqlite:<data-dir>/state.db]
    #[arg(long, value_name = "URL")]
    pub(crate) database: Option<String>,
    /// External Kafka cluster instead of the embedded broker (not used yet) [env: WEFT_KAFKA_BOOTSTRAP]
    #[arg(long, value_name = "HOST:PORT,…")]
    pub(crate) kafka_bootstrap: Option<String>,
    /// Broker id of this node [env: WEFT_NODE_ID] [default: 0]
    #[arg(long, value_name = "ID")]
    pub(crate) node_id: Option<i32>,
    /// Log output format [env: WEFT_LOG_FORMAT] [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormat>,
    /// Log level or filter, e.g. `debug` or `weft=debug,info`; RUST_LOG wins when set
    /// [env: WEFT_LOG_LEVEL] [default: info]
    #[arg(long, value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// Consumer-lag sampling interval in milliseconds [env: WEFT_LAG_INTERVAL_MS] [default: 5000]
    #[arg(long, value_name = "MS")]
    pub(crate) lag_interval_ms: Option<u64>,
    /// Samples per partition in the lag status window [env: WEFT_LAG_WINDOW] [default: 10]
    #[arg(long, value_name = "N")]
    pub(crate) lag_window: Option<usize>,
    /// OTLP/HTTP endpoint traces are exported to, e.g. http://127.0.0.1:4318; no traces
    /// without one [env: WEFT_OTLP_ENDPOINT] [file: observe.otlp_endpoint]
    #[arg(long, value_name = "URL")]
    pub(crate) otlp_endpoint: Option<String>,
    /// Fraction of new traces recorded, 0 to 1 [env: WEFT_TRACE_SAMPLE_RATIO]
    /// [file: observe.trace_sample_ratio] [default: 1]
    #[arg(long, value_name = "RATIO")]
    pub(crate) trace_sample_ratio: Option<f64>,
    /// Record metrics and serve /metrics [env: WEFT_METRICS] [file: observe.metrics] [default: true]
    #[arg(long, value_name = "BOOL")]
    pub(crate) metrics: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per line
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`, expected `text` or `json`"
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Contents of `weft.toml`. Unknown keys are an error, not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kafka_listen: Option<SocketAddr>,
    kafka_advertised: Option<String>,
    http_listen: Option<SocketAddr>,
    registry_listen: Option<SocketAddr>,
    database: Option<String>,
    kafka_bootstrap: Option<String>,
    node_id: Option<i32>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    lag_interval_ms: Option<u64>,
    lag_window: Option<usize>,
    #[serde(default)]
    log: BTreeMap<String, toml::Value>,
    #[serde(default)]
    broker: BrokerDefaults,
    /// `[[outbox.sources]]`: the outbox relay's sources (weft-outbox owns the keys).
    #[serde(default)]
    outbox: weft_outbox::OutboxConfig,
    /// `[observe]`: metrics, traces, masking, dashboard (weft-observe owns the keys).
    #[serde(default)]
    observe: weft_observe::Config,
    /// `[security]`: listeners, SASL, ACLs, JWT, TLS (weft-auth owns the keys).
    #[serde(default)]
    security: weft_auth::SecurityConfig,
    /// `[gateway]`: the HTTP gateway's limits (weft-gateway owns the keys; each key's
    /// `WEFT_GATEWAY_<KEY>` variable wins over it, applied by `weft_gateway::Config`).
    #[serde(default)]
    gateway: weft_gateway::Settings,
    /// `[kafka_client]`: librdkafka properties of `weft serve`'s own clients of an external
    /// cluster.
    #[serde(default)]
    kafka_client: BTreeMap<String, toml::Value>,
}

/// The `[broker]` table of `weft.toml`: Kafka broker-level settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BrokerDefaults {
    /// `auto.create.topics.enable`: Metadata and Produce create unknown topics.
    pub(crate) auto_create_topics: bool,
    /// `num.partitions`: partitions of an auto-created topic.
    pub(crate) num_partitions: i32,
    /// `offsets.retention.minutes`: committed offsets of a group without members expire
    /// after this long.
    pub(crate) offsets_retention_minutes: u64,
    /// `group.consumer.session.timeout.ms`: a KIP-848 member that sends no heartbeat for
    /// this long is removed.
    pub(crate) group_consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms`: the interval KIP-848 members are told.
    pub(crate) group_consumer_heartbeat_interval_ms: u64,
    /// `group.initial.rebalance.delay.ms`: how long a new (empty) classic group waits for
    /// more members before its first rebalance (extended by each join, up to the rebalance
    /// timeout); 0 for none.
    pub(crate) group_initial_rebalance_delay_ms: u64,
}

impl Default for BrokerDefaults {
    fn default() -> Self {
        BrokerDefaults {
            auto_create_topics: true,
            num_partitions: 1,
            offsets_retention_minutes: 10_080,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_initial_rebalance_delay_ms: 3_000,
        }
    }
}

/// The resolved options of `weft serve`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) data_dir: PathBuf,
    pub(crate) kafka_listen: SocketAddr,
    /// `None`: advertise the address the Kafka listener actually bound.
    pub(crate) kafka_advertised: Option<String>,
    pub(crate) http_listen: SocketAddr,
    pub(crate) registry_listen: SocketAddr,
    pub(crate) database: Option<String>,
    pub(crate) kafka_bootstrap: Option<String>,
    pub(crate) node_id: i32,
    pub(crate) log_format: LogFormat,
    pub(crate) log_level: String,
    /// The `[log]` table of `weft.toml`, already validated by [`Settings::log_config`].
    pub(crate) log_defaults: BTreeMap<String, toml::Value>,
    /// The `[broker]` table of `weft.toml`.
    pub(crate) broker: BrokerDefaults,
    /// The `[outbox]` table of `weft.toml`, already validated.
    pub(crate) outbox: weft_outbox::OutboxConfig,
    /// The `[observe]` table with the observability flags applied, validated.
    pub(crate) observe: weft_observe::Config,
    /// The `[security]` table of `weft.toml`.
    pub(crate) security: weft_auth::SecurityConfig,
    /// The `[gateway]` table of `weft.toml`.
    pub(crate) gateway: weft_gateway::Settings,
    /// The `[kafka_client]` table: properties of the internal clients of an external
    /// cluster (empty with the embedded broker). `Debug` masks secrets.
    pub(crate) kafka_client: weft_gateway::kafka::ClientProperties,
    /// Consumer-lag sampling interval and window (`weft-lag`), already validated.
    pub(crate) lag: weft_lag::Config,
    /// The config file that was read, if any.
    pub(crate) config_file: Option<PathBuf>,
}

impl Settings {
    /// Resolves settings from the real environment and file system.
    pub(crate) fn load(args: &ServeArgs) -> anyhow::Result<Settings> {
        let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        let path = match args
            .config
            .clone()
            .or_else(|| env("WEFT_CONFIG").map(PathBuf::from))
        {
            Some(explicit) => Some(explicit),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                default.is_file().then_some(default)
            }
        };
        let text = match &path {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?,
            ),
            None => None,
        };
        let file = path.as_deref().zip(text.as_deref());
        Settings::resolve(args, &env, file)
    }

    /// Resolves settings from flags, an environment lookup and the config file's path and
    /// text. Pure: no I/O.
    pub(crate) fn resolve(
        args: &ServeArgs,
        env: &dyn Fn(&str) -> Option<String>,
        file: Option<(&Path, &str)>,
    ) -> anyhow::Result<Settings> {
        let f: FileConfig = match file {
            Some((path, text)) => toml::from_str(text)
                .with_context(|| format!("invalid config file {}", path.display()))?,
            None => FileConfig::default(),
        };
        let a = args.clone();
        let settings = Settings {
            data_dir: pick("data_dir", a.data_dir, env, f.data_dir)?
                .unwrap_or_else(|| PathBuf::from("./weft-data")),
            kafka_listen: pick("kafka_listen", a.kafka_listen, env, f.kafka_listen)?
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9092))),
            kafka_advertised: pick(
                "kafka_advertised",
                a.kafka_advertised,
                env,
                f.kafka_advertised,
            )?,
            http_listen: pick("http_listen", a.http_listen, env, f.http_listen)?
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            registry_listen: pick("registry_listen", a.registry_listen, env, f.registry_listen)?
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8081))),
            database: pick("database", a.database, env, f.database)?,
            kafka_bootstrap: pick("kafka_bootstrap", a.kafka_bootstrap, env, f.kafka_bootstrap)?,
            node_id: pick("node_id", a.node_id, env, f.node_id)?.unwrap_or(0),
            log_format: pick("log_format", a.log_format, env, f.log_format)?
                .unwrap_or(LogFormat::Text),
            log_level: pick("log_level", a.log_level, env, f.log_level)?
                .unwrap_or_else(|| "info".to_owned()),
            log_defaults: f.log,
            broker: f.broker,
            outbox: f.outbox,
            observe: {
                let mut o = f.observe;
                o.otlp_endpoint = pick("otlp_endpoint", a.otlp_endpoint, env, o.otlp_endpoint)?;
                o.trace_sample_ratio = pick(
                    "trace_sample_ratio",
                    a.trace_sample_ratio,
                    env,
                    Some(o.trace_sample_ratio),
                )?
                .unwrap_or(1.0);
                o.metrics = pick("metrics", a.metrics, env, Some(o.metrics))?.unwrap_or(true);
                o
            },
            security: f.security,
            gateway: f.gateway,
            kafka_client: kafka_client_properties(&f.kafka_client)
                .context("invalid [kafka_client] table")?,
            lag: weft_lag::Config {
                interval: std::time::Duration::from_millis(
                    pick("lag_interval_ms", a.lag_interval_ms, env, f.lag_interval_ms)?
                        .unwrap_or(5000),
                ),
                window: pick("lag_window", a.lag_window, env, f.lag_window)?.unwrap_or(10),
            },
            config_file: file.map(|(p, _)| p.to_path_buf()),
        };
        settings.lag.validate()?;
        settings
            .observe
            .validate()
            .context("invalid [observe] settings")?;
        settings
            .outbox
            .validate()
            .context("invalid [outbox] table")?;
        let b = &settings.broker;
        if b.offsets_retention_minutes == 0 {
            bail!("broker.offsets_retention_minutes must be at least 1");
        }
        if b.group_consumer_heartbeat_interval_ms == 0
            || b.group_consumer_heartbeat_interval_ms >= b.group_consumer_session_timeout_ms
        {
            bail!(
                "broker.group_consumer_heartbeat_interval_ms must be at least 1 and below \
                 broker.group_consumer_session_timeout_ms"
            );
        }
        if !settings.kafka_client.0.is_empty() && settings.kafka_bootstrap.is_none() {
            bail!(
                "[kafka_client] is for an external cluster (kafka_bootstrap); the embedded \
                 broker's own clients use its internal listener"
            );
        }
        if settings.broker.num_partitions < 1 {
            bail!("broker.num_partitions must be at least 1");
        }
        // Validate the `[log]` table now so a typo fails before anything is opened.
        settings
            .log_config()
            .with_context(|| match &settings.config_file {
                Some(p) => format!("invalid [log] table in config file {}", p.display()),
                None => "invalid [log] table".to_owned(),
            })?;
        Ok(settings)
    }

    /// The state database URL: `--database`, else SQLite at `<data-dir>/state.db`.
    pub(crate) fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| weft_store::sqlite_url(&self.data_dir.join("state.db")))
    }

    /// The Kafka address told to clients, given the address the listener actually bound.
    pub(crate) fn kafka_advertised_or(&self, bound: SocketAddr) -> String {
        self.kafka_advertised
            .clone()
            .unwrap_or_else(|| bound.to_string())
    }

    /// Default settings of new partitions: `LogConfig::default()` overridden by `[log]`.
    pub(crate) fn log_config(&self) -> anyhow::Result<LogConfig> {
        let mut c = LogConfig::default();
        for (key, value) in &self.log_defaults {
            if !LOG_KEYS.contains(&key.as_str()) {
                bail!(
                    "unknown key `log.{key}`; expected one of: {}",
                    LOG_KEYS.join(", ")
                );
            }
            set_log_key(&mut c, key, value).with_context(|| format!("in `log.{key}`"))?;
        }
        Ok(c)
    }
}

/// `[kafka_client]` values as librdkafka takes them: strings, or integers and booleans
/// written bare. `bootstrap.servers` is `kafka_bootstrap`.
fn kafka_client_properties(
    table: &BTreeMap<String, toml::Value>,
) -> anyhow::Result<weft_gateway::kafka::ClientProperties> {
    let mut out = Vec::with_capacity(table.len());
    for (key, value) in table {
        if key == "bootstrap.servers" {
            bail!("bootstrap.servers is set by kafka_bootstrap");
        }
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!("{key}: expected a string, found {}", other.type_str()),
        };
        out.push((key.clone(), value));
    }
    Ok(weft_gateway::kafka::ClientProperties(out))
}

fn set_log_key(c: &mut LogConfig, key: &str, value: &toml::Value) -> anyhow::Result<()> {
    match key {
        "segment_bytes" => c.segment_bytes = unsigned(value)?,
        "segment_ms" => c.segment_ms = integer(value)?,
        "retention_ms" => {
            c.retention_ms = minus_one_is_none(value)?.map(i64::try_from).transpose()?
        }
        "retention_bytes" => c.retention_bytes = minus_one_is_none(value)?,
        "cleanup_policy" => {
            let s = string(value)?;
            c.cleanup_policy = CleanupPolicy::parse(&s).ok_or_else(|| {
                anyhow!("`{s}` is not a cleanup policy: use delete, compact or compact,delete")
            })?;
        }
        "min_compaction_lag_ms" => c.min_compaction_lag_ms = integer(value)?,
        "delete_retention_ms" => c.delete_retention_ms = integer(value)?,
        "max_message_bytes" => c.max_message_bytes = usize::try_from(unsigned(value)?)?,
        "index_interval_bytes" => c.index_interval_bytes = unsigned(value)?,
        "timestamp_type" => {
            c.timestamp_type = match string(value)?.as_str() {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                other => {
                    bail!("`{other}` is not a timestamp type: use CreateTime or LogAppendTime")
                }
            }
        }
        "durability" => {
            let s = string(value)?;
            c.durability = Durability::parse(&s).ok_or_else(|| {
                anyhow!("`{s}` is not a durability: use batch, os, group or group:<ms>[:<bytes>]")
            })?;
        }
        // `log_config` checks keys against LOG_KEYS first; keep both lists in step.
        other => bail!("unknown key `log.{other}`"),
    }
    Ok(())
}

/// Keys accepted in the `[log]` table.
const LOG_KEYS: &[&str] = &[
    "segment_bytes",
    "segment_ms",
    "retention_ms",
    "retention_bytes",
    "cleanup_policy",
    "min_compaction_lag_ms",
    "delete_retention_ms",
    "max_message_bytes",
    "index_interval_bytes",
    "timestamp_type",
    "durability",
];

/// flag > `WEFT_<NAME>` > file. An empty environment variable counts as unset.
fn pick<T>(
    name: &str,
    flag: Option<T>,
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<T>,
) -> anyhow::Result<Option<T>>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    if flag.is_some() {
        return Ok(flag);
    }
    let var = format!("WEFT_{}", name.to_ascii_uppercase());
    if let Some(raw) = env(&var).filter(|v| !v.is_empty()) {
        let value = raw
            .parse()
            .map_err(|e| anyhow!("invalid {var}={raw:?}: {e}"))?;
        return Ok(Some(value));
    }
    Ok(file)
}

/// An integer, written as a TOML integer or as a string (Kafka configs are strings).
fn integer(v: &toml::Value) -> anyhow::Result<i64> {
    match v {
        toml::Value::Integer(i) => Ok(*i),
        toml::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|e| anyhow!("`{s}` is not an integer: {e}")),
        other => bail!("expected an integer, found {}", other.type_str()),
    }
}

fn unsigned(v: &toml::Value) -> anyhow::Result<u64> {
    let i = integer(v)?;
    u64::try_from(i).map_err(|_| anyhow!("expected a non-negative integer, found {i}"))
}

/// Kafka's convention for "no limit": -1 means `None`; other negatives are errors.
fn minus_one_is_none(v: &toml::Value) -> anyhow::Result<Option<u64>> {
    match integer(v)? {
        -1 => Ok(None),
        i => u64::try_from(i)
            .map(Some)
            .map_err(|_| anyhow!("expected -1 (no limit) or a non-negative integer, found {i}")),
    }
}

fn string(v: &toml::Value) -> anyhow::Result<String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        other => bail!("expected a string, found {}", other.type_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Argv {
        #[command(flatten)]
        serve: ServeArgs,
    }

    type Flags = &'static [&'static str];
    type Env = &'static [(&'static str, &'static str)];

    fn resolve(flags: &[&str], env: &[(&str, &str)], toml: &str) -> anyhow::Result<Settings> {
        let argv = std::iter::once("weft").chain(flags.iter().copied());
        let args = Argv::try_parse_from(argv)?.serve;
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let file = (!toml.is_empty()).then_some((Path::new("weft.toml"), toml));
        Settings::resolve(&args, &lookup, file)
    }

    /// Renders one named field so a table of cases can name what it checks.
    fn field(s: &Settings, name: &str) -> String {
        match name {
            "data_dir" => s.data_dir.display().to_string(),
            "kafka_listen" => s.kafka_listen.to_string(),
            "kafka_advertised" => format!("{:?}", s.kafka_advertised),
            "http_listen" => s.http_listen.to_string(),
            "registry_listen" => s.registry_listen.to_string(),
            "database" => format!("{:?}", s.database),
            "kafka_bootstrap" => format!("{:?}", s.kafka_bootstrap),
            "node_id" => s.node_id.to_string(),
            "log_format" => s.log_format.to_string(),
            "log_level" => s.log_level.clone(),
            "lag" => format!("{:?}/{}", s.lag.interval, s.lag.window),
            other => panic!("no field {other}"),
        }
    }

    #[test]
    fn precedence() {
        // (flags, env, weft.toml, field, expected)
        #[rustfmt::skip]
        let cases: &[(Flags, Env, &str, &str, &str)] = &[
            // defaults
            (&[], &[], "", "data_dir", "./weft-data"),
            (&[], &[], "", "kafka_listen", "127.0.0.1:9092"),
            (&[], &[], "", "kafka_advertised", "None"),
            (&[], &[], "", "http_listen", "127.0.0.1:8080"),
            (&[], &[], "", "registry_listen", "127.0.0.1:8081"),
            (&[], &[], "", "database", "None"),
            (&[], &[], "", "kafka_bootstrap", "None"),
            (&[], &[], "", "node_id", "0"),
            (&[], &[], "", "log_format", "text"),
            (&[], &[], "", "log_level", "info"),
            (&[], &[], "", "lag", "5s/10"),
            (&[], &[], "lag_interval_ms = 200\nlag_window = 4", "lag", "200ms/4"),
            (&["--lag-interval-ms", "100"], &[("WEFT_LAG_WINDOW", "3")], "lag_window = 4", "lag", "100ms/3"),
            // file beats default
            (&[], &[], "data_dir = '/t'", "data_dir", "/t"),
            (&[], &[], "http_listen = '0.0.0.0:1'", "http_listen", "0.0.0.0:1"),
            (&[], &[], "node_id = 7", "node_id", "7"),
            (&[], &[], "log_format = 'json'", "log_format", "json"),
            (&[], &[], "database = 'postgres://x'", "database", "Some(\"postgres://x\")"),
            // env beats file
            (&[], &[("WEFT_DATA_DIR", "/e")], "data_dir = '/t'", "data_dir", "/e"),
            (&[], &[("WEFT_NODE_ID", "3")], "node_id = 7", "node_id", "3"),
            (&[], &[("WEFT_LOG_FORMAT", "json")], "log_format = 'text'", "log_format", "json"),
            (&[], &[("WEFT_KAFKA_ADVERTISED", "h:1")], "", "kafka_advertised", "Some(\"h:1\")"),
            // an empty env var counts as unset
            (&[], &[("WEFT_DATA_DIR", "")], "data_dir = '/t'", "data_dir", "/t"),
            // flag beats env and file
            (&["--data-dir", "/f"], &[("WEFT_DATA_DIR", "/e")], "data_dir = '/t'", "data_dir", "/f"),
            (&["--node-id", "1"], &[("WEFT_NODE_ID", "3")], "node_id = 7", "node_id", "1"),
            (&["--log-format", "text"], &[("WEFT_LOG_FORMAT", "json")], "", "log_format", "text"),
            (&["--kafka-listen", "127.0.0.1:0"], &[], "kafka_listen = '127.0.0.1:5'", "kafka_listen", "127.0.0.1:0"),
            (&["--log-level", "debug"], &[("WEFT_LOG_LEVEL", "warn")], "log_level = 'error'", "log_level", "debug"),
            // each source is independent per field
            (&["--data-dir", "/f"], &[], "node_id = 7", "node_id", "7"),
            (&[], &[("WEFT_NODE_ID", "3")], "data_dir = '/t'", "data_dir", "/t"),
        ];
        for (flags, env, toml, name, expected) in cases {
            let s = resolve(flags, env, toml)
                .unwrap_or_else(|e| panic!("{flags:?} {env:?} {toml:?}: {e:#}"));
            assert_eq!(
                field(&s, name),
                *expected,
                "{name} for {flags:?} {env:?} {toml:?}"
            );
        }
    }

    #[test]
    fn errors() {
        // (flags, env, weft.toml, a fragment the error must contain)
        #[rustfmt::skip]
        let cases: &[(Flags, Env, &str, &str)] = &[
            (&[], &[], "bogus = 1", "unknown field `bogus`"),
            (&[], &[], "bogus = 1", "weft.toml"),
            (&[], &[], "node_id = 'x'", "node_id"),
            (&[], &[], "lag_window = 1", "at least 2 samples"),
            (&["--lag-interval-ms", "0"], &[], "", "interval must be above zero"),
            (&[], &[("WEFT_NODE_ID", "x")], "", "invalid WEFT_NODE_ID=\"x\""),
            (&[], &[("WEFT_HTTP_LISTEN", "nope")], "", "WEFT_HTTP_LISTEN"),
            (&[], &[("WEFT_LOG_FORMAT", "xml")], "", "unknown log format `xml`"),
            (&[], &[], "[log]\nsegmnet_bytes = 1", "unknown key `log.segmnet_bytes`"),
            (&[], &[], "[log]\nsegmnet_bytes = 1", "weft.toml"),
            (&[], &[], "[log]\nsegment_bytes = -5", "non-negative"),
            (&[], &[], "[log]\nretention_ms = -2", "-1 (no limit)"),
            (&[], &[], "[log]\ncleanup_policy = 'shred'", "not a cleanup policy"),
            (&[], &[], "[log]\ndurability = 'sometimes'", "not a durability"),
            (&[], &[], "[log]\nsegment_ms = true", "expected an integer, found boolean"),
            (&[], &[], "[broker]\nnum_partitions = 0", "at least 1"),
            (
                &[],
                &[],
                "[broker]\noffsets_retention_minutes = 0",
                "offsets_retention_minutes must be at least 1",
            ),
            (
                &[],
                &[],
                "[broker]\ngroup_consumer_session_timeout_ms = 3000\n\
                 group_consumer_heartbeat_interval_ms = 5000",
                "below broker.group_consumer_session_timeout_ms",
            ),
            (&[], &[], "[broker]\nauto_create = false", "unknown field `auto_create`"),
        ];
        for (flags, env, toml, fragment) in cases {
            let err = match resolve(flags, env, toml) {
                Ok(s) => panic!("{flags:?} {env:?} {toml:?}: expected an error, got {s:?}"),
                Err(e) => format!("{e:#}"),
            };
            assert!(
                err.contains(fragment),
                "{toml:?}: {err:?} lacks {fragment:?}"
            );
        }
    }

    #[test]
    fn kafka_client_table() {
        let s = resolve(
            &[],
            &[],
            "kafka_bootstrap = 'k:9092'\n[kafka_client]\n'security.protocol' = 'SASL_SSL'\n\
             'sasl.mechanism' = 'SCRAM-SHA-512'\n'sasl.username' = 'weft'\n\
             'sasl.password' = 'hunter2'\n'ssl.ca.location' = '/ca.pem'\n\
             'socket.keepalive.enable' = true\n'message.max.bytes' = 2000000",
        )
        .expect("valid");
        let got: Vec<(&str, &str)> = s
            .kafka_client
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("message.max.bytes", "2000000"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.password", "hunter2"),
                ("sasl.username", "weft"),
                ("security.protocol", "SASL_SSL"),
                ("socket.keepalive.enable", "true"),
                ("ssl.ca.location", "/ca.pem"),
            ]
        );
        // Neither the settings' Debug nor an error shows the password.
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("sasl.username"),
            "{shown}"
        );
        // (weft.toml, a fragment the error must contain)
        let cases: &[(&str, &str)] = &[
            (
                "[kafka_client]\n'sasl.username' = 'x'",
                "for an external cluster",
            ),
            (
                "kafka_bootstrap = 'k:1'\n[kafka_client]\n'bootstrap.servers' = 'x'",
                "set by kafka_bootstrap",
            ),
            (
                "kafka_bootstrap = 'k:1'\n[kafka_client]\n'sasl.password' = ['hunter2']",
                "expected a string, found array",
            ),
        ];
        for (toml, fragment) in cases {
            let err = format!("{:#}", resolve(&[], &[], toml).expect_err(toml));
            assert!(err.contains(fragment), "{toml}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn broker_table() {
        assert_eq!(
            resolve(&[], &[], "").expect("defaults").broker,
            BrokerDefaults::default()
        );
        let s = resolve(
            &[],
            &[],
            "[broker]\nauto_create_topics = false\nnum_partitions = 6\n\
             offsets_retention_minutes = 60\ngroup_consumer_session_timeout_ms = 6000\n\
             group_consumer_heartbeat_interval_ms = 1000\ngroup_initial_rebalance_delay_ms = 0",
        )
        .expect("valid");
        let want = BrokerDefaults {
            auto_create_topics: false,
            num_partitions: 6,
            offsets_retention_minutes: 60,
            group_consumer_session_timeout_ms: 6000,
            group_consumer_heartbeat_interval_ms: 1000,
            group_initial_rebalance_delay_ms: 0,
        };
        assert_eq!(s.broker, want);
    }

    #[test]
    fn log_table() {
        let s = resolve(
            &[],
            &[],
            "[log]\nsegment_bytes = 1024\nretention_ms = -1\nretention_bytes = '2048'\n\
             cleanup_policy = 'compact,delete'\ndurability = 'batch'\nmax_message_bytes = 10\n\
             timestamp_type = 'LogAppendTime'\nsegment_ms = 5\nmin_compaction_lag_ms = 6\n\
             delete_retention_ms = 7\nindex_interval_bytes = 8",
        )
        .expect("valid");
        let c = s.log_config().expect("valid");
        let expected = LogConfig {
            segment_bytes: 1024,
            segment_ms: 5,
            retention_ms: None,
            retention_bytes: Some(2048),
            cleanup_policy: CleanupPolicy::CompactDelete,
            min_compaction_lag_ms: 6,
            delete_retention_ms: 7,
            max_message_bytes: 10,
            timestamp_type: TimestampType::LogAppendTime,
            durability: Durability::EveryBatch,
            index_interval_bytes: 8,
        };
        assert_eq!(c, expected);
        // Without a [log] table the engine's defaults apply.
        let s = resolve(&[], &[], "").expect("valid");
        assert_eq!(s.log_config().expect("valid"), LogConfig::default());
        // retention_ms keeps its value when not -1.
        let s = resolve(&[], &[], "[log]\nretention_ms = 60000").expect("valid");
        assert_eq!(s.log_config().expect("valid").retention_ms, Some(60000));
    }
}
