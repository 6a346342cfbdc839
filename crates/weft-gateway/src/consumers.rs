//! Consumer instances in a group, in the shape of the Confluent REST Proxy v2
//! (`/v1/consumers/{group}/instances/{instance}/…`).
//!
//! Each instance is one librdkafka consumer with `group.id` = the group: a real member of a
//! real Kafka consumer group, visible to `weft group describe` and to any Kafka tool, whose
//! commits any Kafka consumer of the group resumes from. As with the Confluent proxy, the
//! consumer is polled only while a `GET …/records` runs, so a rebalance completes on the
//! next fetch. Blocking librdkafka calls run on `spawn_blocking`; one instance serves one
//! call at a time (its own mutex, never held across an `.await`).
//!
//! Records returned by a fetch are "fetched"; `POST …/offsets` with no body commits the
//! offset after the last fetched record of every partition. Records polled but held back
//! (over `max_bytes`) are kept for the next fetch, never dropped. An instance unused for
//! `instance_timeout` is closed (it leaves the group) by [`Consumers::reap`]; at most
//! `max_instances` exist at once (429 beyond).
//!
//! Instances live in this process's memory, as the Confluent proxy's do: after a restart
//! of `weft serve` an old instance URL answers 404 (a problem body naming the instance),
//! and a new instance in the same group resumes from the offsets the group committed —
//! the commits are the group's, in Kafka, not the instance's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::kafka::{Record, base_config, blocking};
use crate::position::{Format, record_json};
use crate::problem::{ApiError, Problem};

/// Settings of REST consumer instances.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// An instance unused for this long is closed (Confluent's
    /// `consumer.instance.timeout.ms`).
    pub instance_timeout: Duration,
    /// Instances at most, over all groups.
    pub max_instances: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            instance_timeout: Duration::from_secs(300),
            max_instances: 100,
        }
    }
}

/// Longest long poll of one fetch.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// All instances.
pub(crate) struct Consumers {
    config: ConsumerConfig,
    bootstrap: String,
    instances: Mutex<HashMap<(String, String), Arc<Instance>>>,
}

struct Instance {
    group: String,
    id: String,
    format: Format,
    /// Default long-poll wait of a fetch without `timeout`.
    request_timeout: Duration,
    consumer: Mutex<BaseConsumer>,
    state: Mutex<InstanceState>,
    last_used: Mutex<Instant>,
}

#[derive(Default)]
struct InstanceState {
    topics: Vec<String>,
    pattern: Option<String>,
    /// Next offset after the last record returned, per (topic, partition).
    fetched: BTreeMap<(String, i32), i64>,
    /// Records polled but not returned yet (a fetch stopped at `max_bytes`).
    held: VecDeque<(String, Record)>,
}

impl Consumers {
    pub(crate) fn new(config: ConsumerConfig, bootstrap: &str) -> Consumers {
        Consumers {
            config,
            bootstrap: bootstrap.to_owned(),
            instances: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, group: &str, id: &str) -> Result<Arc<Instance>, ApiError> {
        let found = self
            .instances
            .lock()
            .map_err(|_| ApiError::Internal("consumer registry poisoned".into()))?
            .get(&(group.to_owned(), id.to_owned()))
            .cloned();
        let instance = found.ok_or_else(|| not_found(group, id))?;
        instance.touch();
        Ok(instance)
    }

    fn remove(&self, group: &str, id: &str) -> Option<Arc<Instance>> {
        self.instances
            .lock()
            .ok()?
            .remove(&(group.to_owned(), id.to_owned()))
    }

    /// Closes instances unused for `instance_timeout` until `shutdown`, then all of them.
    pub(crate) async fn reap(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let every = (self.config.instance_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => break,
            }
            let expired: Vec<Arc<Instance>> = match self.instances.lock() {
                Ok(mut map) => {
                    let old: Vec<_> = map
                        .iter()
                        .filter(|(_, i)| i.idle() >= self.config.instance_timeout)
                        .map(|(k, _)| k.clone())
                        .collect();
                    old.iter().filter_map(|k| map.remove(k)).collect()
                }
                Err(_) => Vec::new(),
            };
            for i in expired {
                info!(
                    group = i.group,
                    instance = i.id,
                    "consumer instance expired"
                );
                close(i).await;
            }
        }
        let all: Vec<Arc<Instance>> = self
            .instances
            .lock()
            .map(|mut m| m.drain().map(|(_, i)| i).collect())
            .unwrap_or_default();
        for i in all {
            close(i).await;
        }
    }
}

/// The 404 of an unknown instance (Confluent's 40403). Instances live in memory, like the
/// Confluent proxy's: one created before `weft serve` restarted is gone, and the message
/// says what to do instead.
fn not_found(group: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "consumer instance {id:?} of group {group:?} does not exist: it was deleted, expired \
         unused, or created before the gateway restarted (instances are not kept across \
         restarts); create a new instance in the group, it resumes from the group's \
         committed offsets"
    ))
}

impl Instance {
    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn idle(&self) -> Duration {
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }
}

/// Leaves the group: librdkafka's close blocks, so it runs off the reactor.
async fn close(instance: Arc<Instance>) {
    let _ = tokio::task::spawn_blocking(move || drop(instance)).await;
}

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/consumers/{group}", post(create))
        .route(
            "/consumers/{group}/instances/{instance}",
            delete(delete_instance),
        )
        .route(
            "/consumers/{group}/instances/{instance}/subscription",
            post(subscribe).get(subscription).delete(unsubscribe),
        )
        .route(
            "/consumers/{group}/instances/{instance}/assignments",
            get(assignments),
        )
        .route(
            "/consumers/{group}/instances/{instance}/records",
            get(records),
        )
        .route(
            "/consumers/{group}/instances/{instance}/offsets",
            post(commit).get(committed),
        )
}

/// Creates a consumer instance.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConsumer {
    /// Instance name (letters, digits, `.`, `_`, `-`; at most 64); generated when absent.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: Option<String>,
    /// How keys and values are shown: `json` (JSON as JSON, other text as a string,
    /// binary as `{"base64": …}`) or `binary` (always base64).
    #[schema(value_type = Option<crate::rest::FormatName>)]
    pub format: Option<String>,
    /// Where a partition without a committed offset starts: `earliest` or `latest`
    /// (default).
    #[serde(rename = "auto.offset.reset")]
    #[schema(pattern = "^(earliest|latest)$")]
    pub auto_offset_reset: Option<String>,
    /// `"true"`: fetched records are committed periodically by the consumer;
    /// `"false"` (default): only `POST …/offsets` commits.
    #[serde(rename = "auto.commit.enable")]
    #[schema(pattern = "^(true|false)$")]
    pub auto_commit_enable: Option<String>,
    /// Default long-poll wait of a fetch without `timeout`, in ms (default 1000).
    #[serde(rename = "consumer.request.timeout.ms")]
    pub request_timeout_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedConsumer {
    pub instance_id: String,
    /// URL of the instance; the other routes are below it.
    pub base_uri: String,
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A JSON body, with serde's refusals as problems: 422 for a body of the wrong shape, 413
/// over the size limit, 400 otherwise.
pub(crate) fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| match e {
        axum::extract::rejection::JsonRejection::JsonDataError(e) => ApiError::Unprocessable {
            message: e.body_text(),
            details: None,
        },
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(other.body_text())
        }
        other => ApiError::BadRequest(other.body_text()),
    })
}

/// Creates a consumer instance in `group` (a new member once it subscribes and fetches).
#[utoipa::path(post, path = "/v1/consumers/{group}", operation_id = "create_consumer", params(("group" = String, Path)),
    request_body = CreateConsumer,
    responses((status = 200, body = CreatedConsumer), (status = 400, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn create(
    State(gw): State<Gateway>,
    Path(group): Path<String>,
    headers: HeaderMap,
    body: Result<Json<CreateConsumer>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CreatedConsumer>, ApiError> {
    let req = json_body(body)?;
    if !valid_name(&group, 249) {
        return Err(ApiError::BadRequest(format!(
            "group {group:?}: use 1 to 249 letters, digits, '.', '_' or '-'"
        )));
    }
    let consumers = &gw.0.consumers;
    let id = match req.name {
        Some(n) if valid_name(&n, 64) => n,
        Some(n) => {
            return Err(ApiError::Unprocessable {
                message: format!("name {n:?}: use 1 to 64 letters, digits, '.', '_' or '-'"),
                details: None,
            });
        }
        None => {
            let mut b = [0u8; 8];
            crate::webhooks::sign::fill_random(&mut b);
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("rest-{hex}")
        }
    };
    let format = Format::parse(req.format.as_deref()).map_err(|e| ApiError::Unprocessable {
        message: e,
        details: None,
    })?;
    let reset = match req.auto_offset_reset.as_deref() {
        None | Some("latest") => "latest",
        Some("earliest") => "earliest",
        Some(other) => {
            return Err(ApiError::Unprocessable {
                message: format!("auto.offset.reset {other:?} is neither earliest nor latest"),
                details: None,
            });
        }
    };
    let auto_commit = match req.auto_commit_enable.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::Unprocessable {
                message: format!("auto.commit.enable {other:?} is neither \"true\" nor \"false\""),
                details: None,
            });
        }
    };
    let request_timeout =
        Duration::from_millis(req.request_timeout_ms.unwrap_or(1000)).min(MAX_FETCH_WAIT);
    // Checked and reserved under one lock so that two creates cannot both pass the bound.
    {
        let map = consumers
            .instances
            .lock()
            .map_err(|_| ApiError::Internal("consumer registry poisoned".into()))?;
        if map.contains_key(&(group.clone(), id.clone())) {
            return Err(ApiError::Conflict(format!(
                "consumer instance {id:?} already exists in group {group:?}"
            )));
        }
        if map.len() >= consumers.config.max_instances {
            return Err(ApiError::TooMany(format!(
                "at most {} consumer instances; delete one or wait for idle ones to expire",
                consumers.config.max_instances
            )));
        }
    }
    let mut config = base_config(&consumers.bootstrap);
    config
        .set("group.id", &group)
        .set("client.id", format!("weft-gateway-{id}"))
        .set("auto.offset.reset", reset)
        .set(
            "enable.auto.commit",
            if auto_commit { "true" } else { "false" },
        )
        // Only records returned to the caller are stored for auto commit.
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "max.poll.interval.ms",
            (consumers.config.instance_timeout.as_millis() as u64)
                .saturating_add(MAX_FETCH_WAIT.as_millis() as u64)
                .clamp(60_000, 86_400_000)
                .to_string(),
        );
    let consumer: BaseConsumer = blocking(move || {
        config
            .create()
            .map_err(|e| ApiError::Kafka(format!("cannot create consumer: {e}")))
    })
    .await?;
    let instance = Arc::new(Instance {
        group: group.clone(),
        id: id.clone(),
        format,
        request_timeout,
        consumer: Mutex::new(consumer),
        state: Mutex::new(InstanceState::default()),
        last_used: Mutex::new(Instant::now()),
    });
    let refused = {
        let mut map = consumers
            .instances
            .lock()
            .map_err(|_| ApiError::Internal("consumer registry poisoned".into()))?;
        if map.contains_key(&(group.clone(), id.clone()))
            || map.len() >= consumers.config.max_instances
        {
            Some(instance)
        } else {
            map.insert((group.clone(), id.clone()), instance);
            None
        }
    };
    if let Some(instance) = refused {
        close(instance).await;
        return Err(ApiError::Conflict(format!(
            "consumer instance {id:?} of group {group:?} was created concurrently, or the \
             limit was reached meanwhile"
        )));
    }
    info!(group, instance = id, "consumer instance created");
    let path = format!("/v1/consumers/{group}/instances/{id}");
    let base_uri = match headers.get("host").and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}{path}"),
        None => path,
    };
    Ok(Json(CreatedConsumer {
        instance_id: id,
        base_uri,
    }))
}

/// Closes an instance: it leaves the group (its partitions go to the other members).
#[utoipa::path(delete, path = "/v1/consumers/{group}/instances/{instance}",
    params(("group" = String, Path), ("instance" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn delete_instance(
    State(gw): State<Gateway>,
    Path((group, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let instance =
        gw.0.consumers
            .remove(&group, &id)
            .ok_or_else(|| not_found(&group, &id))?;
    close(instance).await;
    info!(group, instance = id, "consumer instance deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Topics to subscribe to: a list, or a regular expression.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression over topic names (instead of `topics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_pattern: Option<String>,
}

/// Subscribes the instance (replacing its subscription); every listed topic must exist.
#[utoipa::path(post, path = "/v1/consumers/{group}/instances/{instance}/subscription",
    params(("group" = String, Path), ("instance" = String, Path)),
    request_body = Subscription,
    responses((status = 204), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn subscribe(
    State(gw): State<Gateway>,
    Path((group, id)): Path<(String, String)>,
    body: Result<Json<Subscription>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let sub = json_body(body)?;
    let instance = gw.0.consumers.get(&group, &id)?;
    let pattern = match (&sub.topic_pattern, sub.topics.is_empty()) {
        (Some(_), false) => {
            return Err(ApiError::Unprocessable {
                message: "give topics or topic_pattern, not both".into(),
                details: None,
            });
        }
        (None, true) => {
            return Err(ApiError::Unprocessable {
                message: "topics is empty and there is no topic_pattern".into(),
                details: None,
            });
        }
        (Some(p), true) => {
            // librdkafka treats a subscription starting with `^` as a regex.
            let p = if p.starts_with('^') {
                p.clone()
            } else {
                format!("^{p}")
            };
            if p.len() > 1024 || p.contains('\0') {
                return Err(ApiError::Unprocessable {
                    message: "topic_pattern is not a usable regular expression".into(),
                    details: None,
                });
            }
            Some(p)
        }
        (None, false) => None,
    };
    if sub.topics.len() > 1000 {
        return Err(ApiError::Unprocessable {
            message: "at most 1000 topics".into(),
            details: None,
        });
    }
    for t in &sub.topics {
        if t.is_empty() || t.starts_with('^') {
            return Err(ApiError::Unprocessable {
                message: format!("{t:?} is not a topic name"),
                details: None,
            });
        }
        gw.0.kafka.partitions(t).await?;
    }
    let topics = sub.topics.clone();
    let inst = Arc::clone(&instance);
    blocking(move || {
        let consumer = inst.lock_consumer()?;
        let names: Vec<&str> = match &pattern {
            Some(p) => vec![p.as_str()],
            None => topics.iter().map(String::as_str).collect(),
        };
        consumer
            .subscribe(&names)
            .map_err(|e| ApiError::Unprocessable {
                message: format!("cannot subscribe: {e}"),
                details: None,
            })?;
        let mut state = inst.lock_state()?;
        state.topics = topics;
        state.pattern = pattern;
        state.held.clear();
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The instance's subscription.
#[utoipa::path(get, path = "/v1/consumers/{group}/instances/{instance}/subscription",
    params(("group" = String, Path), ("instance" = String, Path)),
    responses((status = 200, body = Subscription), (status = 404, body = Problem)))]
pub(crate) async fn subscription(
    State(gw): State<Gateway>,
    Path((group, id)): Path<(String, String)>,
) -> Result<Json<Subscription>, ApiError> {
    let instance = gw.0.consumers.get(&group, &id)?;
    // The state is locked by a running fetch for up to its wait: off the reactor.
    let sub = blocking(move || {
        let state = instance.lock_state()?;
        Ok(Subscription {
            topics: state.topics.clone(),
            topic_pattern: state.pattern.clone(),
        })
    })
    .await?;
    Ok(Json(sub))
}

/// Unsubscribes the instance (it keeps its membership until deleted or expired).
#[utoipa::path(delete, path = "/v1/consumers/{group}/instances/{instance}/subscription",
    params(("group" = String, Path), ("instance" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn unsubscribe(
    State(gw): State<Gateway>,
    Path((group, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let instance = gw.0.consumers.get(&group, &id)?;
    blocking(move || {
        instance.lock_consumer()?.unsubscribe();
        let mut state = instance.lock_state()?;
        *state = InstanceState::default();
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Assignments {
    pub partitions: Vec<TopicPartition>,
}

/// Partitions assigned to the instance by the group now.
#[utoipa::path(get, path = "/v1/consumers/{group}/instances/{instance}/assignments",
    params(("group" = String, Path), ("instance" = String, Path)),
    responses((status = 200, body = Assignments), (status = 404, body = Problem),
        (status = 502, body = Problem)))]
pub(crate) async fn assignments(
    State(gw): State<Gateway>,
    Path((group, id)): Path<(String, String)>,
) -> Result<Json<Assignments>, ApiError> {
    let instance = gw.0.consumers.get(&group, &id)?;
    let partitions = blocking(move || {
        let tpl = instance
            .lock_consumer()?
            .assignment()
            .map_err(|e| ApiError::Kafka(format!("assignment: {e}")))?;
        let mut ps: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition {
                topic: e.topic().to_owned(),
                partition: e.partition(),
            })
            .collect();
        ps.sort();
        Ok(ps)
    })
    .await?;
    Ok(Json(Assignments { partitions }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FetchQuery {
    /// Long polling: wait up to this many ms for a first record (default: the instance's
    /// `consumer.request.timeout.ms`; at most 30000).
    pub timeout: Option<u64>,
    /// Stop adding records once keys and values reach this many bytes (at least one record
    /// is returned; the rest stays for the next fetch). Default 64 MiB.
    pub max_bytes: Option<u64>,
    /// At most this many records (default 500, at most 10000).
    pub max_records: Option<u64>,
}

/// Fetches the next records of the instance's assigned partitions (a JSON array of
/// records: topic, partition, offset, timestamp, key, value, headers).
#[utoipa::path(get, path = "/v1/consumers/{group}/instances/{instance}/records",
    params(("group" = String, Path), ("instance" = String, Path), FetchQuery),
    responses((status = 200, body = Vec<Object>), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn records(
    State(gw): State<Gateway>,
    Path((group, id)): Path<(String, String)>,
    Query(q): Query<FetchQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let instance = gw.0.consumers.get(&group, &id)?;
    let wait = q
        .timeout
        .map_or(instance.request_timeout, Duration::from_millis)
        .min(MAX_FETCH_WAIT);
    let max_bytes = q.max_bytes.unwrap_or(64 << 20).max(1);
    let max_records = q.max_records.unwrap_or(500).clamp(1, 10_000) as usize;
    let inst = Arc::clone(&instance);
    let got = blocking(move || fetch(&inst, wait, max_bytes, max_records)).await;
    instance.touch();
    let got = got?;
    Ok(Json(
        got.iter()
            .map(|(topic, r)| record_json(topic, r, instance.format))
            .collect(),
    ))
}

fn size_of(r: &Record) -> u64 {
    (r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())) as u64
}

/// Blocking: held records first, then polls until `wait` for a first record and takes
/// what is already buffered after it.
fn fetch(
    inst: &Instance,
    wait: Duration,
    max_bytes: u64,
    max_records: usize,
) -> Result<Vec<(String, Record)>, ApiError> {
    let consumer = inst.lock_consumer()?;
    let mut state = inst.lock_state()?;
    if state.topics.is_empty() && state.pattern.is_none() {
        return Err(ApiError::Conflict(format!(
            "consumer instance {:?} is not subscribed to any topic",
            inst.id
        )));
    }
    let mut out: Vec<(String, Record)> = Vec::new();
    let mut bytes = 0u64;
    let full = |out: &Vec<(String, Record)>, bytes: u64, next: &Record| {
        !out.is_empty() && (out.len() >= max_records || bytes + size_of(next) > max_bytes)
    };
    while let Some((topic, r)) = state.held.pop_front() {
        if full(&out, bytes, &r) {
            state.held.push_front((topic, r));
            break;
        }
        bytes += size_of(&r);
        out.push((topic, r));
    }
    let deadline = Instant::now() + wait;
    while state.held.is_empty() && out.len() < max_records {
        let left = if out.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        match consumer.poll(left) {
            None => {
                if !out.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
            Some(Ok(m)) => {
                let topic = rdkafka::Message::topic(&m).to_owned();
                let r = Record::from_message(&m);
                if full(&out, bytes, &r) {
                    state.held.push_back((topic, r));
                    break;
                }
                bytes += size_of(&r);
                out.push((topic, r));
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                if out.is_empty() {
                    return Err(ApiError::Kafka(format!("fetch: {e}")));
                }
                warn!(group = inst.group, instance = inst.id, error = %e, "fetch stopped early");
                break;
            }
        }
    }
    // Returned records are "fetched": committed by a bare `POST …/offsets` and stored for
    // auto commit.
    let mut tpl = TopicPartitionList::new();
    for (topic, r) in &out {
        let next = r.offset + 1;
        let e = state
            .fetched
            .entry((topic.clone(), r.partition))
            .or_insert(next);
        *e = (*e).max(next);
        let _ = tpl.add_partition_offset(topic, r.partition, Offset::Offset(next));
    }
    if tpl.count() > 0
        && let Err(e) = consumer.store_offsets(&tpl)
    {
        // Only a partition revoked meanwhile fails here; the next owner re-reads it.
        warn!(group = inst.group, instance = inst.id, error = %e, "cannot store fetched offsets");
    }
    Ok(out)
}

/// One offset to commit: the offset of the last record processed (the group resumes
/// after it), as in the Confluent REST Proxy v2.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub metadata: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// Offsets to commit; without it (or with no body), every record fetched so far.
    pub offsets: Option<Vec<CommitOffset>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// The committed offset: the next offset the group reads (`-1`: none committed).
    pub offset: i64,
    pub metadata: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommittedOffsets {
    pub offsets: Vec<CommittedOffset>,
}

/// Commits offsets for the group: the given ones, or all fetched records. Returns what was
/// committed (next offsets).
#[utoipa::path(post, path = "/v1/consumers/{group}/instances/{instance}/offsets",
    params(("group" = String, Path), ("instance" = String, Path)),
    request_body(content = CommitRequest, description = "optional"),
    responses((status = 200, body = CommittedOffsets), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 502, body = Problem)))]
pub(crate) async fn commit(
    State(gw): State<Gateway>,
    Path((group, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<CommittedOffsets>, ApiError> {
    let req: CommitRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CommitRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::Unprocessable {
                message: format!("invalid commit request: {e}"),
                details: None,
            },
            _ => ApiError::BadRequest(format!("invalid JSON: {e}")),
        })?
    };
    let instance = gw.0.consumers.get(&group, &id)?;
    let explicit: Option<Vec<(String, i32, i64, String)>> = match req.offsets {
        None => None,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, o) in list.into_iter().enumerate() {
                if o.topic.is_empty() || o.partition < 0 || o.offset < 0 || o.offset == i64::MAX {
                    return Err(ApiError::Unprocessable {
                        message: format!(
                            "offsets[{i}]: a topic, a partition ≥ 0 and an offset ≥ 0 are needed"
                        ),
                        details: None,
                    });
                }
                out.push((
                    o.topic,
                    o.partition,
                    o.offset + 1,
                    o.metadata.unwrap_or_default(),
                ));
            }
            Some(out)
        }
    };
    let offsets = blocking(move || {
        let consumer = instance.lock_consumer()?;
        let items: Vec<(String, i32, i64, String)> = match explicit {
            Some(e) => e,
            None => instance
                .lock_state()?
                .fetched
                .iter()
                .map(|((t, p), o)| (t.clone(), *p, *o, String::new()))
                .collect(),
        };
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p, o, m) in &items {
            let mut e = tpl.add_partition(t, *p);
            e.set_offset(Offset::Offset(*o))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            e.set_metadata(m.as_str());
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| ApiError::Kafka(format!("commit: {e}")))?;
        Ok(items
            .into_iter()
            .map(|(topic, partition, offset, metadata)| CommittedOffset {
                topic,
                partition,
                offset,
                metadata,
            })
            .collect())
    })
    .await?;
    Ok(Json(CommittedOffsets { offsets }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OffsetsQuery {
    /// `topic:partition,…`; default: the partitions assigned to the instance.
    pub partitions: Option<String>,
}

fn parse_partitions(s: &str) -> Result<Vec<(String, i32)>, ApiError> {
    s.split(',')
        .map(|item| {
            item.rsplit_once(':')
                .and_then(|(t, p)| {
                    let p: i32 = p.parse().ok().filter(|p| *p >= 0)?;
                    (!t.is_empty()).then(|| (t.to_owned(), p))
                })
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "partitions: {item:?} is not topic:partition (e.g. orders:0,orders:1)"
                    ))
                })
        })
        .collect()
}

/// The group's committed offsets of some partitions.
#[utoipa::path(get, path = "/v1/consumers/{group}/instances/{instance}/offsets",
    params(("group" = String, Path), ("instance" = String, Path), OffsetsQuery),
    responses((status = 200, body = CommittedOffsets), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn committed(
    State(gw): State<Gateway>,
    Path((group, id)): Path<(String, String)>,
    Query(q): Query<OffsetsQuery>,
) -> Result<Json<CommittedOffsets>, ApiError> {
    let wanted = q.partitions.as_deref().map(parse_partitions).transpose()?;
    let instance = gw.0.consumers.get(&group, &id)?;
    let offsets = blocking(move || {
        let consumer = instance.lock_consumer()?;
        let tpl = match wanted {
            Some(list) => {
                let mut tpl = TopicPartitionList::new();
                for (t, p) in &list {
                    tpl.add_partition(t, *p);
                }
                tpl
            }
            None => consumer
                .assignment()
                .map_err(|e| ApiError::Kafka(format!("assignment: {e}")))?,
        };
        if tpl.count() == 0 {
            return Ok(Vec::new());
        }
        let got = consumer
            .committed_offsets(tpl, crate::kafka::META_TIMEOUT)
            .map_err(|e| ApiError::Kafka(format!("committed offsets: {e}")))?;
        let mut out: Vec<CommittedOffset> = got
            .elements()
            .iter()
            .map(|e| CommittedOffset {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                offset: match e.offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                },
                metadata: e.metadata().to_owned(),
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    })
    .await?;
    Ok(Json(CommittedOffsets { offsets }))
}

impl Instance {
    fn lock_consumer(&self) -> Result<std::sync::MutexGuard<'_, BaseConsumer>, ApiError> {
        self.consumer
            .lock()
            .map_err(|_| ApiError::Internal("consumer instance poisoned".into()))
    }

    fn lock_state(&self) -> Result<std::sync::MutexGuard<'_, InstanceState>, ApiError> {
        self.state
            .lock()
            .map_err(|_| ApiError::Internal("consumer instance poisoned".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_lists() {
        let ok = parse_partitions("orders:0,my:topic:3").expect("valid list");
        assert_eq!(ok, vec![("orders".into(), 0), ("my:topic".into(), 3)]);
        for bad in ["", "orders", ":1", "orders:-1", "orders:x", "a:0,"] {
            assert!(parse_partitions(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("rest-0a", 64));
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad, 64), "{bad:?} accepted");
        }
    }
}
