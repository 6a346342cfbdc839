//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, alter_configs_response,
    incremental_alter_configs_response,
};
use weft_log::LogConfig;

use super::str;
use crate::server::{Inner, blocking};
use crate::topic_config::{
    self, CONFIGS, ConfigType, SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER,
};
use crate::topics::Refusal;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn entry(
    name: &str,
    value: String,
    source: i8,
    kind: ConfigType,
    doc: &str,
    read_only: bool,
    include_doc: bool,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str(name))
        .with_value(Some(str(value)))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_config_type(kind as i8)
        .with_documentation(include_doc.then(|| str(doc)))
}

pub(crate) fn describe_configs(
    inner: &Inner,
    r: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let defaults = inner.log.defaults();
    let kafka_defaults = LogConfig::default();
    let results = r
        .resources
        .into_iter()
        .map(|res| {
            let out = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let keys: Option<Vec<String>> = res
                .configuration_keys
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
            match res.resource_type {
                RESOURCE_TOPIC => {
                    let Some(t) = inner.topics.get(res.resource_name.as_str()) else {
                        return out
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str(format!(
                                "topic {} does not exist",
                                res.resource_name.as_str()
                            ))));
                    };
                    let effective = topic_config::effective(defaults, &t.configs);
                    let configs = CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| {
                            // Broker defaults come from weft.toml; those equal to Kafka's own
                            // default are reported as defaults.
                            let default_value = d.render(defaults);
                            let default_source = if default_value == d.render(&kafka_defaults) {
                                SOURCE_DEFAULT
                            } else {
                                SOURCE_STATIC_BROKER
                            };
                            let (source, value) = match t.configs.get(d.name) {
                                Some(stored) => (
                                    SOURCE_DYNAMIC_TOPIC,
                                    topic_config::shown(d, &effective, stored),
                                ),
                                None => (default_source, default_value.clone()),
                            };
                            let mut e = entry(
                                d.name,
                                value.clone(),
                                source,
                                d.kind,
                                d.doc,
                                false,
                                r.include_documentation,
                            );
                            if r.include_synonyms {
                                let mut syn = Vec::new();
                                if source == SOURCE_DYNAMIC_TOPIC {
                                    syn.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(str(d.name))
                                            .with_value(Some(str(value)))
                                            .with_source(SOURCE_DYNAMIC_TOPIC),
                                    );
                                }
                                syn.push(
                                    DescribeConfigsSynonym::default()
                                        .with_name(str(d.broker_name))
                                        .with_value(Some(str(default_value)))
                                        .with_source(default_source),
                                );
                                e = e.with_synonyms(syn);
                            }
                            e
                        })
                        .collect();
                    out.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let name = res.resource_name.as_str();
                    if !name.is_empty() && name != inner.config.node_id.to_string() {
                        return out
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str(format!("unknown broker {name}"))));
                    }
                    let c = &inner.config;
                    let mut configs: Vec<DescribeConfigsResourceResult> = vec![
                        ("node.id", c.node_id.to_string(), ConfigType::Int),
                        (
                            "num.partitions",
                            c.num_partitions.to_string(),
                            ConfigType::Int,
                        ),
                        (
                            "auto.create.topics.enable",
                            c.auto_create_topics.to_string(),
                            ConfigType::String,
                        ),
                        (
                            "socket.request.max.bytes",
                            c.socket_request_max_bytes.to_string(),
                            ConfigType::Int,
                        ),
                        (
                            "connections.max.idle.ms",
                            c.connections_max_idle.as_millis().to_string(),
                            ConfigType::Long,
                        ),
                        (
                            "producer.id.expiration.ms",
                            c.producer_id_expiration.as_millis().to_string(),
                            ConfigType::Int,
                        ),
                    ]
                    .into_iter()
                    .filter(|(n, _, _)| wanted(n))
                    .map(|(n, v, k)| entry(n, v, SOURCE_STATIC_BROKER, k, "", true, false))
                    .collect();
                    configs.extend(CONFIGS.iter().filter(|d| wanted(d.broker_name)).map(|d| {
                        entry(
                            d.broker_name,
                            d.render(defaults),
                            SOURCE_STATIC_BROKER,
                            d.kind,
                            d.doc,
                            true,
                            r.include_documentation,
                        )
                    }));
                    out.with_configs(configs)
                }
                other => out
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str(format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Result of altering one resource: (error code, message).
type Altered = (i16, Option<String>);

fn refused(r: Refusal) -> Altered {
    (r.error.code(), Some(r.message))
}

async fn alter_topic(
    inner: &Arc<Inner>,
    resource_type: i8,
    name: String,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal>
    + Send
    + 'static,
    validate_only: bool,
) -> Altered {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return (
                ResponseError::InvalidConfig.code(),
                Some("broker configs are static (weft.toml); alter topic configs instead".into()),
            );
        }
        other => {
            return (
                ResponseError::InvalidRequest.code(),
                Some(format!("resource type {other} is not supported")),
            );
        }
    }
    let i = Arc::clone(inner);
    let result = blocking(move || {
        let Some(t) = i.topics.get(&name) else {
            return Err(Refusal {
                error: ResponseError::UnknownTopicOrPartition,
                message: format!("topic {name} does not exist"),
            });
        };
        let new = change(&t.configs)?;
        i.topics.set_configs(&name, new, validate_only)
    })
    .await;
    match result {
        Ok(Ok(())) => (0, None),
        Ok(Err(r)) => refused(r),
        Err(e) => (
            ResponseError::UnknownServerError.code(),
            Some(e.to_string()),
        ),
    }
}

pub(crate) async fn alter_configs(
    inner: &Arc<Inner>,
    r: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for res in r.resources {
        // Legacy AlterConfigs replaces the whole set of overrides.
        let new: BTreeMap<String, String> = res
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let (code, msg) = alter_topic(
            inner,
            res.resource_type,
            res.resource_name.to_string(),
            move |_| Ok(new),
            r.validate_only,
        )
        .await;
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(str))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub(crate) async fn incremental_alter_configs(
    inner: &Arc<Inner>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for res in r.resources {
        let ops: Vec<(String, i8, Option<String>)> = res
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let defaults = inner.log.defaults().clone();
        let change = move |current: &BTreeMap<String, String>| {
            let mut new = current.clone();
            let invalid = |m: String| Refusal {
                error: ResponseError::InvalidConfig,
                message: m,
            };
            for (name, op, value) in ops {
                let def = topic_config::find(&name)
                    .ok_or_else(|| invalid(format!("unknown topic config {name}")))?;
                match op {
                    OP_SET => {
                        let v =
                            value.ok_or_else(|| invalid(format!("SET {name} without a value")))?;
                        new.insert(name, v);
                    }
                    OP_DELETE => {
                        new.remove(&name);
                    }
                    OP_APPEND | OP_SUBTRACT if matches!(def.kind, ConfigType::List) => {
                        let v = value.ok_or_else(|| {
                            invalid(format!("APPEND/SUBTRACT {name} without a value"))
                        })?;
                        let cur = new.get(&name).cloned().unwrap_or_else(|| {
                            def.render(&topic_config::effective(&defaults, current))
                        });
                        let mut items: Vec<String> = cur
                            .split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect();
                        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                            if op == OP_APPEND {
                                if !items.iter().any(|x| x == item) {
                                    items.push(item.to_owned());
                                }
                            } else {
                                items.retain(|x| x != item);
                            }
                        }
                        new.insert(name, items.join(","));
                    }
                    OP_APPEND | OP_SUBTRACT => {
                        return Err(invalid(format!("{name} is not a list config")));
                    }
                    other => return Err(invalid(format!("unknown config operation {other}"))),
                }
            }
            Ok(new)
        };
        let (code, msg) = alter_topic(
            inner,
            res.resource_type,
            res.resource_name.to_string(),
            change,
            r.validate_only,
        )
        .await;
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(str))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
