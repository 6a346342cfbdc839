//! Webhooks: push delivery of a topic's records to HTTP targets.
//!
//! Each enabled subscription has one worker task. It reads its topic through the pooled
//! Kafka readers from its stored position, delivers each matching record as a signed POST
//! (Standard Webhooks), and stores the new position once every record read is settled
//! (delivered, or sent to the DLQ after the last attempt): at-least-once across restarts.
//! With ordering `key`, records of one key go one at a time in offset order while other
//! keys proceed; with `none`, all go concurrently. Every target has its own circuit breaker
//! (`weft_resilience::Breaker`, named `webhook:<id>`: open after `breaker_failures`
//! consecutive failures, one probe after a cool-down; its state is the
//! `weft_breaker_state` gauge) and bulkhead (`weft_resilience::Bulkhead`: a bound on
//! requests in flight), so a slow or dead target only ever delays its own worker. Retries follow a
//! `weft_resilience::RetryPolicy` (exponential, full jitter). A target that has failed
//! without a single success for `disable_after` is disabled.
//!
//! A dead letter of a subscription can be re-delivered to that subscription alone
//! ([`Webhooks::redeliver`], `POST /v1/webhooks/{id}/redrive`): the record as first
//! delivered (same `webhook-id` and body, so receivers dedupe), signed with the current
//! secrets and sent with the current headers through the same breaker and bulkhead, with a
//! new attempt history; once it settled it is marked redriven on `weft.webhooks.dlq.redriven`
//! like any DLQ redrive. Nothing is re-published to the subscription's topic.

pub mod api;
pub mod sign;
pub mod store;

/// Records a worker reads per partition and round (one pooled read, then the batch is
/// delivered and the position stored).
const WORKER_READ: usize = 1000;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use weft_resilience::{BreakerConfig, BulkheadConfig, RetryPolicy};
use weft_store::Store;

use crate::Gateway;
use crate::kafka::{Kafka, Record};
use crate::position::{Filter, Format, Positions, record_json};

pub use store::{Attempt, Spec};

/// The topic failed deliveries go to, with the SDK's `weft-dlq-*` envelope headers.
pub const DLQ_TOPIC: &str = "weft.webhooks.dlq";

/// The header naming the subscription on its dead letters (after the envelope).
pub const WEBHOOK_ID_HEADER: &str = "weft-webhook-id";

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// A delivery succeeds on a 2xx within this.
    pub timeout: Duration,
    /// Attempts per record before the DLQ.
    pub max_attempts: u32,
    /// First retry delay; doubled each attempt (capped at `backoff_max`), ±20 % jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Consecutive failures that open a target's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit waits before one trial request.
    pub breaker_cooldown: Duration,
    /// Requests in flight per target.
    pub bulkhead: usize,
    /// A target failing without success for this long is disabled.
    pub disable_after: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(5),
            bulkhead: 16,
            disable_after: Duration::from_secs(24 * 3600),
        }
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The webhook subsystem.
pub(crate) struct Webhooks {
    pub(crate) store: Store,
    /// Delivery attempts, group-committed.
    attempts: store::AttemptLog,
    config: WebhookConfig,
    kafka: Arc<Kafka>,
    client: HttpClient,
    /// Running workers: id → stop switch.
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Each subscription's target (breaker, bulkhead, secrets), shared by its worker and
    /// its redrives.
    targets: Mutex<HashMap<String, Arc<Target>>>,
    /// Subscriptions created after start: the manager starts their workers.
    new_tx: mpsc::UnboundedSender<String>,
    new_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Deliveries that got a 2xx (for figures).
    pub(crate) delivered: AtomicU64,
}

impl Webhooks {
    pub(crate) async fn open(
        store: Store,
        config: WebhookConfig,
        kafka: Arc<Kafka>,
    ) -> crate::Result<Webhooks> {
        store.migrate("gateway-webhooks", store::MIGRATIONS).await?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        let (new_tx, new_rx) = mpsc::unbounded_channel();
        Ok(Webhooks {
            attempts: store::AttemptLog::start(store.clone()),
            store,
            client: Client::builder(TokioExecutor::new()).build(connector),
            config,
            kafka,
            running: Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
            new_tx,
            new_rx: Mutex::new(Some(new_rx)),
            delivered: AtomicU64::new(0),
        })
    }

    /// Starts the manager (which starts a worker per enabled subscription).
    pub(crate) fn start(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(mut new_rx) = self.new_rx.lock().ok().and_then(|mut r| r.take()) else {
            return Vec::new();
        };
        let me = Arc::clone(self);
        let mut stop = shutdown.clone();
        vec![tokio::spawn(async move {
            match store::all(&me.store).await {
                Ok(rows) => {
                    for row in rows.into_iter().filter(|r| r.enabled) {
                        me.spawn_worker(row.id, shutdown.clone());
                    }
                }
                Err(e) => warn!(error = %e, "cannot load webhook subscriptions"),
            }
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    id = new_rx.recv() => match id {
                        Some(id) => me.spawn_worker(id, shutdown.clone()),
                        None => break,
                    },
                }
            }
            let stops: Vec<_> = me
                .running
                .lock()
                .map(|mut r| r.drain().map(|(_, s)| s).collect())
                .unwrap_or_default();
            for s in stops {
                let _ = s.send(true);
            }
        })]
    }

    /// Starts (or restarts) the worker of `id`.
    pub(crate) fn notify(&self, id: &str) {
        let _ = self.new_tx.send(id.to_owned());
    }

    /// Stops the worker of `id` if it runs (the subscription is going away).
    pub(crate) fn stop(&self, id: &str) {
        if let Some(s) = self.running.lock().ok().and_then(|mut r| r.remove(id)) {
            let _ = s.send(true);
        }
        if let Ok(mut t) = self.targets.lock() {
            t.remove(id);
        }
    }

    /// The target of subscription `row`, with the row's secrets.
    fn target(&self, row: &store::Row1) -> Arc<Target> {
        let fresh = || {
            Arc::new(Target {
                id: row.id.clone(),
                spec: row.spec.clone(),
                secrets: Mutex::new(row.secrets.clone()),
                bulkhead: bulkhead_for(&row.id, &self.config),
                breaker: breaker_for(&row.id, &self.config),
                failing_since: Mutex::new(None),
                rate: Mutex::new(Instant::now()),
            })
        };
        let target = match self.targets.lock() {
            Ok(mut map) => Arc::clone(map.entry(row.id.clone()).or_insert_with(fresh)),
            Err(_) => fresh(),
        };
        if let Ok(mut s) = target.secrets.lock() {
            s.clone_from(&row.secrets);
        }
        target
    }

    /// Re-delivers `items`, dead letters of subscription `row`, one after the other in the
    /// background (each as [`Webhooks::deliver_one`] does: retries, and the DLQ again after
    /// the last attempt), and marks each once it settled. A record not settled (the
    /// subscription got deleted or disabled meanwhile) stays unmarked, to be redriven
    /// again. Each item's DLQ position leaves `gw`'s delivering set when done with.
    pub(crate) fn redeliver(
        self: &Arc<Self>,
        gw: Gateway,
        row: &store::Row1,
        items: Vec<Redelivery>,
    ) {
        let me = Arc::clone(self);
        let target = self.target(row);
        tokio::spawn(async move {
            let markers = weft_resilience::dlq::TopicNaming::default().redriven_topic(DLQ_TOPIC);
            for item in items {
                let out = &item.out;
                // Deleted or disabled meanwhile: what is left stays unmarked. Secrets may
                // have been rotated.
                let live = match store::get(&me.store, &target.id).await {
                    Ok(Some(row)) if row.enabled => {
                        if let Ok(mut s) = target.secrets.lock() {
                            *s = row.secrets;
                        }
                        true
                    }
                    _ => false,
                };
                if live && me.deliver_one(&target, &item.record).await {
                    match crate::dlq::mark(&me.kafka.producer, &markers, out, -1, -1).await {
                        Ok(()) => info!(
                            webhook = target.id,
                            dlq_partition = out.partition,
                            dlq_offset = out.offset,
                            "webhook dead letter redriven"
                        ),
                        Err(e) => {
                            warn!(webhook = target.id, error = %e, "webhook redrive not marked")
                        }
                    }
                } else {
                    warn!(
                        webhook = target.id,
                        dlq_partition = out.partition,
                        dlq_offset = out.offset,
                        "webhook deleted or disabled during a redrive; the dead letter stays unmarked"
                    );
                }
                if let Ok(mut d) = gw.0.redrives.delivering.lock() {
                    d.remove(&(out.dlq_topic.clone(), out.partition, out.offset));
                }
            }
        });
    }

    fn spawn_worker(self: &Arc<Self>, id: String, mut shutdown: watch::Receiver<bool>) {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        if let Ok(mut r) = self.running.lock()
            && let Some(old) = r.insert(id.clone(), stop_tx)
        {
            let _ = old.send(true);
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let work = me.worker(&id);
            tokio::select! {
                r = work => if let Err(e) = r {
                    warn!(webhook = id, error = %e, "webhook worker stopped");
                },
                _ = stop_rx.changed() => {},
                _ = shutdown.changed() => {},
            }
        });
    }

    async fn worker(self: &Arc<Self>, id: &str) -> Result<(), String> {
        let Some(row) = store::get(&self.store, id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        if !row.enabled {
            return Ok(());
        }
        info!(
            webhook = id,
            topic = row.spec.topic,
            url = row.spec.url,
            "webhook worker started"
        );
        let filter = Filter::parse(
            None,
            row.spec.filter_key.as_deref(),
            row.spec.filter_headers.as_deref(),
        )?;
        let target = self.target(&row);
        let mut position = row.position.clone();
        let topic = row.spec.topic.clone();
        loop {
            // Secrets may have been rotated through the API.
            if let Ok(Some(fresh)) = store::get(&self.store, id).await {
                if !fresh.enabled {
                    return Ok(());
                }
                if let Ok(mut s) = target.secrets.lock() {
                    *s = fresh.secrets;
                }
            }
            let mut batch: Vec<Record> = Vec::new();
            let partitions: Vec<i32> = position.keys().copied().collect();
            for p in partitions {
                let next = position.get(&p).copied().unwrap_or(0);
                let (low, high) = self
                    .kafka
                    .watermarks(&topic, p)
                    .await
                    .map_err(|e| e.to_string())?;
                let from = next.max(low);
                if from >= high {
                    position.insert(p, from);
                    continue;
                }
                let read = self
                    .kafka
                    .read(
                        &topic,
                        p,
                        from,
                        Some(high),
                        WORKER_READ,
                        Duration::from_secs(5),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                position.insert(p, read.next.max(from));
                batch.extend(read.records);
            }
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let wanted: Vec<Record> = batch.into_iter().filter(|r| filter.matches(r)).collect();
            if !self.deliver_batch(&target, wanted).await {
                return Ok(()); // disabled
            }
            store::set_position(&self.store, id, &position)
                .await
                .map_err(|e| e.to_string())?;
        }
    }

    /// Delivers a batch; false when the target got disabled meanwhile.
    async fn deliver_batch(self: &Arc<Self>, target: &Arc<Target>, records: Vec<Record>) -> bool {
        // Groups that must go in order: per key, or every record alone.
        let mut groups: BTreeMap<Vec<u8>, Vec<Record>> = BTreeMap::new();
        let mut singles = Vec::new();
        for r in records {
            if target.spec.ordering == "key" {
                groups
                    .entry(r.key.as_deref().map(<[u8]>::to_vec).unwrap_or_default())
                    .or_default()
                    .push(r);
            } else {
                singles.push(vec![r]);
            }
        }
        let lanes: Vec<Vec<Record>> = groups.into_values().chain(singles).collect();
        let mut tasks = Vec::with_capacity(lanes.len());
        for lane in lanes {
            let me = Arc::clone(self);
            let target = Arc::clone(target);
            tasks.push(tokio::spawn(async move {
                for r in lane {
                    if !me.deliver_one(&target, &r).await {
                        return false;
                    }
                }
                true
            }));
        }
        let mut ok = true;
        for t in tasks {
            ok &= t.await.unwrap_or(false);
        }
        ok
    }

    /// Delivers one record with retries; false when the target got disabled.
    async fn deliver_one(&self, target: &Target, r: &Record) -> bool {
        let topic = &target.spec.topic;
        let message_id = format!("{topic}-{}-{}", r.partition, r.offset);
        let body = serde_json::json!({
            "type": "record",
            "record": record_json(topic, r, Format::Auto),
        })
        .to_string();
        let mut attempt: u32 = 0;
        let mut first_failure: Option<i64> = None;
        let mut delays = retry_policy(&self.config).schedule();
        loop {
            attempt += 1;
            let permit = target.wait_breaker().await;
            target.wait_rate().await;
            let outcome = self.send(target, &message_id, &body).await;
            permit.record(!outcome.0);
            let now = weft_store::now_ms();
            let (success, status, detail, latency) = outcome;
            let last = !success && attempt >= self.config.max_attempts;
            let row = Attempt {
                message_id: message_id.clone(),
                attempt: i64::from(attempt),
                at_ms: now,
                status: i64::from(status),
                latency_ms: latency,
                outcome: if success {
                    "success"
                } else if last {
                    "dlq"
                } else {
                    "failure"
                }
                .into(),
                detail,
            };
            // Only a failure uses the row again (its detail, the disabled record).
            let kept = (!success).then(|| row.clone());
            if let Err(e) = self.attempts.record(&target.id, row).await {
                warn!(webhook = target.id, error = %e, "cannot record a delivery attempt");
            }
            let Some(row) = kept else {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                target.on_result(true);
                return true;
            };
            first_failure.get_or_insert(now);
            let failing_since = target.on_result(false);
            if failing_since.elapsed() >= self.config.disable_after {
                let reason = format!(
                    "failing without success for {:?}; last: {}",
                    self.config.disable_after, row.detail
                );
                warn!(webhook = target.id, reason, "webhook disabled");
                let _ = store::set_enabled(&self.store, &target.id, false, Some(&reason)).await;
                let _ = self
                    .attempts
                    .record(
                        &target.id,
                        Attempt {
                            outcome: "disabled".into(),
                            detail: reason,
                            ..row
                        },
                    )
                    .await;
                return false;
            }
            if last {
                self.to_dlq(
                    target,
                    r,
                    attempt,
                    &row.detail,
                    first_failure.unwrap_or(now),
                )
                .await;
                return true;
            }
            tokio::time::sleep(delays.next().unwrap_or(self.config.backoff_max)).await;
        }
    }

    /// One POST: (2xx?, status, detail, latency ms).
    async fn send(
        &self,
        target: &Target,
        message_id: &str,
        body: &str,
    ) -> (bool, u16, String, i64) {
        let _permit = match target.bulkhead.acquire().await {
            Ok(p) => p,
            Err(full) => return (false, 0, full.to_string(), 0),
        };
        let timestamp = weft_store::now_ms() / 1000;
        let secrets = target.secrets.lock().map(|s| s.clone()).unwrap_or_default();
        let signature = sign::signature(&secrets, message_id, timestamp, body.as_bytes());
        let mut req = hyper::Request::post(&target.spec.url)
            .header("content-type", "application/json")
            .header("user-agent", "weft-gateway")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        for (k, v) in &target.spec.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = match req.body(Full::new(Bytes::from(body.to_owned()))) {
            Ok(r) => r,
            Err(e) => return (false, 0, format!("bad request: {e}"), 0),
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.config.timeout, async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, body))
        })
        .await;
        let latency = started.elapsed().as_millis() as i64;
        match result {
            Err(_) => (
                false,
                0,
                format!("timed out after {:?}", self.config.timeout),
                latency,
            ),
            Ok(Err(e)) => (false, 0, format!("request failed: {e}"), latency),
            Ok(Ok((status, body))) => {
                let snippet: String =
                    String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
                // Redirects are failures: a webhook URL must answer itself.
                ((200..300).contains(&status), status, snippet, latency)
            }
        }
    }

    /// The record with its original key, value and headers plus the SDK's DLQ envelope
    /// (`weft_resilience::dlq`, source `webhook`) and `weft-webhook-id`.
    async fn to_dlq(
        &self,
        target: &Target,
        r: &Record,
        attempts: u32,
        reason: &str,
        first_failure: i64,
    ) {
        use weft_resilience::dlq::{DeadLetter, Header as DlqHeader};
        let original: Vec<DlqHeader> = r
            .headers
            .iter()
            .map(|(k, v)| DlqHeader {
                key: k.clone(),
                value: v.as_ref().map(|b| b.to_vec()),
            })
            .collect();
        let mut letter = DeadLetter::builder(target.spec.topic.clone(), r.partition, r.offset)
            .source("webhook")
            .error(weft_resilience::ErrorClass::Retryable, reason.to_owned())
            .attempts(attempts)
            .failures(first_failure, weft_store::now_ms());
        if let Some(ts) = r.timestamp {
            letter = letter.timestamp(ts);
        }
        let mut all = letter.build().to_headers(&original);
        all.push(DlqHeader::new(WEBHOOK_ID_HEADER, target.id.clone()));
        let mut headers = OwnedHeaders::new_with_capacity(all.len());
        for h in &all {
            headers = headers.insert(Header {
                key: &h.key,
                value: h.value.as_deref(),
            });
        }
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(DLQ_TOPIC).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_ref());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_ref());
        }
        if let Err((e, _)) = self.kafka.producer.send(rec, Duration::from_secs(10)).await {
            warn!(webhook = target.id, error = %e, "cannot write to the webhook DLQ");
        }
    }
}

/// A dead letter to re-deliver: the record as it was first delivered, and its redrive
/// (position on the DLQ, marker).
pub(crate) struct Redelivery {
    pub(crate) record: Record,
    pub(crate) out: weft_resilience::dlq::Republish,
}

impl Redelivery {
    /// The dead letter `r` (headers `headers`, envelope `letter`) of `DLQ_TOPIC` going to
    /// subscription `id` at `at` (ms).
    pub(crate) fn new(
        r: &Record,
        headers: &[weft_resilience::dlq::Header],
        letter: &weft_resilience::dlq::DeadLetter,
        id: &str,
        at: i64,
    ) -> Redelivery {
        let mut original = weft_resilience::dlq::without_envelope(headers);
        // `to_dlq` appends the subscription's id after the envelope.
        if original.last().is_some_and(|h| h.key == WEBHOOK_ID_HEADER) {
            original.pop();
        }
        Redelivery {
            record: Record {
                partition: letter.original_partition,
                offset: letter.original_offset,
                timestamp: letter.original_timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: original
                    .into_iter()
                    .map(|h| (h.key, h.value.map(Bytes::from)))
                    .collect(),
                rendered: Default::default(),
            },
            out: weft_resilience::dlq::Republish::new(
                DLQ_TOPIC,
                &crate::dlq::view(r, headers),
                format!("webhook:{id}"),
                at,
            ),
        }
    }
}

/// The retry schedule of one delivery: exponential from `backoff_base`, doubled per
/// attempt up to `backoff_max`, full jitter (AWS "Exponential Backoff And Jitter").
fn retry_policy(config: &WebhookConfig) -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_delay(config.backoff_base)
        .with_multiplier(2.0)
        .with_max_delay(config.backoff_max)
        .with_max_attempts(config.max_attempts.max(1))
        .with_max_elapsed(Duration::from_secs(365 * 24 * 3600))
}

/// A target's bulkhead: `bulkhead` requests in flight; the others wait their turn (the
/// queue is bounded by the records of one read batch, far below its limit).
fn bulkhead_for(id: &str, config: &WebhookConfig) -> weft_resilience::Bulkhead {
    let mut c = BulkheadConfig::new(format!("webhook:{id}"));
    c.max_concurrent = config.bulkhead.max(1);
    c.max_queue = 100_000;
    c.max_wait = None;
    weft_resilience::Bulkhead::new(c)
}

/// A target's breaker: a window of `breaker_failures` calls that all failed opens it (=
/// that many consecutive failures), one probe after `breaker_cooldown`.
fn breaker_for(id: &str, config: &WebhookConfig) -> weft_resilience::Breaker {
    let n = config.breaker_failures.max(1);
    let mut c = BreakerConfig::new(format!("webhook:{id}"));
    c.failure_rate_threshold = 1.0;
    c.window_size = n;
    c.minimum_calls = n;
    c.wait_in_open = config.breaker_cooldown;
    c.permitted_calls_in_half_open = 1;
    // Slowness is judged by the delivery timeout (a timed-out call is a failure).
    c.slow_call_duration = config.timeout.saturating_mul(2);
    weft_resilience::Breaker::new(c)
}

struct Target {
    id: String,
    spec: Spec,
    secrets: Mutex<Vec<String>>,
    bulkhead: weft_resilience::Bulkhead,
    breaker: weft_resilience::Breaker,
    /// First failure since the last success.
    failing_since: Mutex<Option<Instant>>,
    /// Earliest time of the next request under the rate limit.
    rate: Mutex<Instant>,
}

impl Target {
    /// Waits until the breaker admits a call (open: until it probes again; half-open with
    /// the probe taken: briefly, then asks again).
    async fn wait_breaker(&self) -> weft_resilience::breaker::Permit {
        loop {
            match self.breaker.try_acquire() {
                Ok(permit) => return permit,
                Err(open) => {
                    let wait = open
                        .retry_after
                        .unwrap_or(Duration::from_millis(20))
                        .max(Duration::from_millis(1));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn wait_rate(&self) {
        let Some(per_sec) = self.spec.rate_limit.filter(|r| *r > 0) else {
            return;
        };
        let slot = {
            let Ok(mut next) = self.rate.lock() else {
                return;
            };
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + Duration::from_secs(1) / per_sec;
            slot
        };
        tokio::time::sleep_until(tokio::time::Instant::from_std(slot)).await;
    }

    /// Returns since when the target has been failing without a success (now on success).
    fn on_result(&self, success: bool) -> Instant {
        let now = Instant::now();
        let Ok(mut since) = self.failing_since.lock() else {
            return now;
        };
        if success {
            *since = None;
            return now;
        }
        *since.get_or_insert(now)
    }
}

pub(crate) fn routes() -> Router<Gateway> {
    api::routes()
}

/// The position a new subscription starts from.
pub(crate) async fn start_position(
    kafka: &Kafka,
    topic: &str,
    earliest: bool,
) -> Result<Positions, crate::ApiError> {
    let mut p = Positions::new();
    for info in kafka.partitions(topic).await? {
        let (low, high) = kafka.watermarks(topic, info.partition).await?;
        p.insert(info.partition, if earliest { low } else { high });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use weft_resilience::BreakerState;

    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_failures_only() {
        let config = WebhookConfig {
            breaker_failures: 3,
            ..WebhookConfig::default()
        };
        let b = breaker_for("wh_x", &config);
        let call = |failure: bool| {
            b.try_acquire().expect("closed").record(failure);
        };
        // Failures interrupted by a success never open it.
        for failure in [true, true, false, true, true] {
            call(failure);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        call(true);
        assert_eq!(b.state(), BreakerState::Open);
        let open = b.try_acquire().expect_err("open");
        assert!(
            open.retry_after
                .is_some_and(|d| d <= config.breaker_cooldown)
        );
    }

    #[test]
    fn retries_are_bounded_and_capped() {
        let config = WebhookConfig {
            max_attempts: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            ..WebhookConfig::default()
        };
        let delays: Vec<Duration> = retry_policy(&config).schedule().collect();
        assert_eq!(delays.len(), 4, "one delay between each of 5 attempts");
        assert!(
            delays.iter().all(|d| *d <= config.backoff_max),
            "{delays:?}"
        );
    }
}
