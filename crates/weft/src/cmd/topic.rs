//! `weft topic create|list|describe|alter|delete`: topic administration through librdkafka's
//! admin client (CreateTopics, Metadata, ListOffsets, DescribeConfigs, AlterConfigs,
//! CreatePartitions, DeleteTopics).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use super::{ClientArgs, REQUEST_TIMEOUT, describe_code, describe_error, parse_kv};

#[derive(Debug, clap::Args)]
pub(crate) struct TopicArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a topic
    Create {
        name: String,
        /// Number of partitions
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
        /// Topic config, `key=value` (repeatable)
        #[arg(long = "config", value_name = "K=V", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// List topic names, one per line
    List,
    /// Partitions (leader, replicas, watermarks) and configs (value and source) of a topic
    Describe { name: String },
    /// Change topic configs and/or grow the partition count
    Alter {
        name: String,
        /// Set a topic config, `key=value` (repeatable)
        #[arg(long = "config", value_name = "K=V", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
        /// Reset a topic config to its default (repeatable)
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
        /// New (larger) partition count
        #[arg(long)]
        partitions: Option<usize>,
    },
    /// Delete a topic
    Delete { name: String },
}

pub(crate) async fn run(args: TopicArgs) -> anyhow::Result<ExitCode> {
    // The admin client's futures need no particular runtime; they are awaited here, on
    // the reactor, since they do not block. Metadata and watermark calls do block, so the
    // commands that make them run on a blocking thread.
    let admin: AdminClient<DefaultClientContext> = args
        .client
        .config(&[])
        .create()
        .context("creating the admin client")?;
    let options = AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT));
    match args.action {
        Action::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            super::unique_configs(&configs)?;
            let mut topic = NewTopic::new(
                &name,
                partitions,
                TopicReplication::Fixed(replication_factor),
            );
            for (k, v) in &configs {
                topic = topic.set(k, v);
            }
            let results = admin
                .create_topics([&topic], &options)
                .await
                .map_err(|e| super::no_answer(e, &args.client.bootstrap))?;
            for result in results {
                if let Err((topic, code)) = result {
                    bail!("cannot create topic {topic:?}: {}", describe_code(code));
                }
            }
            eprintln!("created topic {name:?} with {partitions} partition(s)");
        }
        Action::List => {
            let bootstrap = args.client.bootstrap.clone();
            let consumer = metadata_client(&args.client)?;
            let metadata = blocking(move || consumer.fetch_metadata(None, REQUEST_TIMEOUT))
                .await?
                .map_err(|e| super::no_answer(e, &bootstrap))?;
            let mut names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
            names.sort_unstable();
            for name in names {
                println!("{name}");
            }
        }
        Action::Describe { name } => describe(&admin, &options, &args.client, &name).await?,
        Action::Alter {
            name,
            configs,
            delete_configs,
            partitions,
        } => {
            if configs.is_empty() && delete_configs.is_empty() && partitions.is_none() {
                bail!("nothing to alter: give --config, --delete-config or --partitions");
            }
            super::unique_configs(&configs)?;
            if let Some(count) = partitions {
                let results = admin
                    .create_partitions([&NewPartitions::new(&name, count)], &options)
                    .await
                    .map_err(|e| super::no_answer(e, &args.client.bootstrap))?;
                for result in results {
                    if let Err((topic, code)) = result {
                        bail!(
                            "cannot grow topic {topic:?} to {count} partitions: {}",
                            describe_code(code)
                        );
                    }
                }
                eprintln!("topic {name:?} now has {count} partitions");
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                alter_configs(
                    &admin,
                    &options,
                    &args.client,
                    &name,
                    &configs,
                    &delete_configs,
                )
                .await?;
            }
        }
        Action::Delete { name } => {
            let results = admin
                .delete_topics(&[&name], &options)
                .await
                .map_err(|e| super::no_answer(e, &args.client.bootstrap))?;
            for result in results {
                if let Err((topic, code)) = result {
                    bail!("cannot delete topic {topic:?}: {}", describe_code(code));
                }
            }
            eprintln!("deleted topic {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A consumer used only for metadata and ListOffsets: it never subscribes nor commits, but
/// librdkafka's consumer wants a `group.id` all the same.
fn metadata_client(client: &ClientArgs) -> anyhow::Result<BaseConsumer> {
    client
        .config(&[("group.id", "weft-cli"), ("enable.auto.commit", "false")])
        .create()
        .context("creating the metadata client")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("metadata thread panicked")
}

/// Current configs of `topic`, name → (value, source).
async fn topic_configs(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    client: &ClientArgs,
    topic: &str,
) -> anyhow::Result<BTreeMap<String, (Option<String>, ConfigSource)>> {
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], options)
        .await
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    let mut out = BTreeMap::new();
    for result in results {
        let resource = result.map_err(|code| {
            anyhow::anyhow!(
                "cannot describe configs of topic {topic:?}: {}",
                describe_code(code)
            )
        })?;
        for entry in resource.entries {
            out.insert(entry.name, (entry.value, entry.source));
        }
    }
    Ok(out)
}

fn source_name(source: &ConfigSource) -> &'static str {
    match source {
        ConfigSource::Unknown => "unknown",
        ConfigSource::DynamicTopic => "topic",
        ConfigSource::DynamicBroker => "dynamic broker",
        ConfigSource::DynamicDefaultBroker => "dynamic broker default",
        ConfigSource::StaticBroker => "static broker",
        ConfigSource::Default => "default",
    }
}

async fn describe(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    client: &ClientArgs,
    name: &str,
) -> anyhow::Result<()> {
    let consumer = metadata_client(client)?;
    let topic = name.to_owned();
    let bootstrap = client.bootstrap.clone();
    // Partition rows: id, leader, replicas, isr, low, high.
    type Row = (i32, i32, Vec<i32>, Vec<i32>, i64, i64);
    let rows = blocking(move || -> anyhow::Result<Vec<Row>> {
        let metadata = consumer
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(|e| super::no_answer(e, &bootstrap))?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            bail!("topic {topic:?} not found");
        };
        if let Some(err) = t.error() {
            let code = RDKafkaErrorCode::from(err);
            bail!("cannot describe topic {topic:?}: {}", describe_code(code));
        }
        let mut rows = Vec::new();
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p.id(), REQUEST_TIMEOUT)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the watermarks of {topic}/{}: {}",
                        p.id(),
                        describe_error(&e)
                    )
                })?;
            rows.push((
                p.id(),
                p.leader(),
                p.replicas().to_vec(),
                p.isr().to_vec(),
                low,
                high,
            ));
        }
        rows.sort_by_key(|r| r.0);
        Ok(rows)
    })
    .await??;
    let configs = topic_configs(admin, options, client, name).await?;

    println!("topic: {name}");
    println!("partitions: {}", rows.len());
    println!(
        "{:>9}  {:>6}  {:>8}  {:>8}  {:>12}  {:>12}",
        "partition", "leader", "replicas", "isr", "low", "high"
    );
    let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for (id, leader, replicas, isr, low, high) in &rows {
        println!(
            "{id:>9}  {leader:>6}  {:>8}  {:>8}  {low:>12}  {high:>12}",
            ids(replicas),
            ids(isr)
        );
    }
    println!("configs:");
    for (key, (value, source)) in &configs {
        let value = value.as_deref().unwrap_or("(null)");
        println!("  {key}={value} ({})", source_name(source));
    }
    Ok(())
}

/// AlterConfigs replaces a topic's whole set of topic-level configs, so the configs already
/// set on the topic are sent along with the changes. The rdkafka crate reports success for a
/// resource even when the broker refused it, so the result is checked by reading back.
async fn alter_configs(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    client: &ClientArgs,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    let current = topic_configs(admin, options, client, name).await?;
    let mut wanted: BTreeMap<&str, &str> = current
        .iter()
        .filter(|(_, (_, source))| *source == ConfigSource::DynamicTopic)
        .filter_map(|(k, (v, _))| Some((k.as_str(), v.as_deref()?)))
        .collect();
    for key in delete {
        wanted.remove(key.as_str());
    }
    for (k, v) in set {
        wanted.insert(k, v);
    }
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
    for (k, v) in &wanted {
        alter = alter.set(k, v);
    }
    let results = admin
        .alter_configs([&alter], options)
        .await
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    for result in results {
        if let Err((_, code)) = result {
            bail!(
                "cannot alter configs of topic {name:?}: {}",
                describe_code(code)
            );
        }
    }
    let after = topic_configs(admin, options, client, name).await?;
    for (k, v) in set {
        match after.get(k) {
            Some((Some(now), _)) if now == v => {}
            Some((now, _)) => bail!(
                "broker did not apply {k}={v} to topic {name:?} (it reads {}); \
                 the value or the config name is probably invalid (INVALID_CONFIG)",
                now.as_deref().unwrap_or("null")
            ),
            None => bail!("broker does not know config {k:?} of topic {name:?} (INVALID_CONFIG)"),
        }
    }
    for key in delete {
        if let Some((_, ConfigSource::DynamicTopic)) = after.get(key) {
            bail!("broker kept {key} set on topic {name:?}");
        }
    }
    eprintln!("altered configs of topic {name:?}");
    Ok(())
}
