//! `/v1/webhooks`: subscriptions, secret rotation, enable, delivery attempts, redrive of
//! dead letters to the one subscription.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use weft_store::sqlx;

use super::store::{self, Attempt, Row1, Spec};
use super::{DLQ_TOPIC, Redelivery, sign, start_position};
use crate::Gateway;
use crate::dlq::{DlqSelection, RedriveResponse, Redriven, Skipped};
use crate::position::Filter;
use crate::problem::{ApiError, Problem};

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/webhooks", post(create).get(list))
        .route("/webhooks/{id}", get(get_one).delete(delete))
        .route("/webhooks/{id}/secrets", post(rotate))
        .route("/webhooks/{id}/enable", post(enable))
        .route("/webhooks/{id}/attempts", get(attempts))
        .route("/webhooks/{id}/redrive", post(redrive))
}

/// A new subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub topic: String,
    /// `http://…` target.
    pub url: String,
    /// `whsec_<base64>`; generated (and returned once) when absent.
    pub secret: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub filter_key: Option<String>,
    /// `name:value,…`
    pub filter_headers: Option<String>,
    /// `key` (default) or `none`.
    pub ordering: Option<String>,
    /// Deliveries per second at most.
    pub rate_limit: Option<u32>,
    /// `latest` (default) or `earliest`.
    pub start: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    #[serde(flatten)]
    pub spec: Spec,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_ms: i64,
    /// Next offset per partition.
    pub position: BTreeMap<i32, i64>,
    /// Only in the answer to a create or a rotation that generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn view(r: Row1, secret: Option<String>) -> Webhook {
    Webhook {
        id: r.id,
        spec: r.spec,
        enabled: r.enabled,
        disabled_reason: r.disabled_reason,
        created_ms: r.created_ms,
        position: r.position,
        secret,
    }
}

fn store_err(e: sqlx::Error) -> ApiError {
    ApiError::Internal(format!("state store: {e}"))
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn new_id() -> String {
    let mut b = [0u8; 6];
    sign::fill_random(&mut b);
    let r: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "wh_{:x}{r}{:x}",
        weft_store::now_ms(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a subscription.
#[utoipa::path(post, path = "/v1/webhooks", request_body = CreateWebhook,
    responses((status = 201, body = Webhook), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create(
    State(gw): State<Gateway>,
    body: Result<Json<CreateWebhook>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    let Json(c) = body.map_err(|e| ApiError::Unprocessable {
        message: format!("invalid webhook: {}", e.body_text()),
        details: None,
    })?;
    let unprocessable = |m: String| ApiError::Unprocessable {
        message: m,
        details: None,
    };
    let uri: hyper::Uri = c
        .url
        .parse()
        .map_err(|e| unprocessable(format!("url {:?}: {e}", c.url)))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(unprocessable(format!(
            "url {:?}: only http://host… targets are supported (no TLS client yet)",
            c.url
        )));
    }
    let ordering = c.ordering.unwrap_or_else(|| "key".into());
    if ordering != "key" && ordering != "none" {
        return Err(unprocessable(format!(
            "ordering {ordering:?} is none of key, none"
        )));
    }
    Filter::parse(None, c.filter_key.as_deref(), c.filter_headers.as_deref())
        .map_err(unprocessable)?;
    let (secret, generated) = match c.secret {
        Some(s) => {
            sign::secret_key(&s).map_err(unprocessable)?;
            (s, None)
        }
        None => {
            let s = sign::new_secret();
            (s.clone(), Some(s))
        }
    };
    for (k, v) in &c.headers {
        if axum::http::HeaderName::try_from(k.as_str()).is_err()
            || axum::http::HeaderValue::try_from(v.as_str()).is_err()
            || k.to_ascii_lowercase().starts_with("webhook-")
        {
            return Err(unprocessable(format!("header {k:?} is not allowed")));
        }
    }
    let earliest = match c.start.as_deref() {
        None | Some("latest") => false,
        Some("earliest") => true,
        Some(o) => {
            return Err(unprocessable(format!(
                "start {o:?} is none of latest, earliest"
            )));
        }
    };
    let position = start_position(&gw.0.kafka, &c.topic, earliest).await?;
    let row = Row1 {
        id: new_id(),
        spec: Spec {
            topic: c.topic,
            url: c.url,
            headers: c.headers,
            filter_key: c.filter_key,
            filter_headers: c.filter_headers,
            ordering,
            rate_limit: c.rate_limit,
        },
        secrets: vec![secret],
        position,
        enabled: true,
        disabled_reason: None,
        created_ms: weft_store::now_ms(),
    };
    store::insert(&gw.0.webhooks.store, &row)
        .await
        .map_err(store_err)?;
    gw.0.webhooks.notify(&row.id);
    Ok((StatusCode::CREATED, Json(view(row, generated))))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// Lists subscriptions.
#[utoipa::path(get, path = "/v1/webhooks", responses((status = 200, body = WebhookList)))]
pub(crate) async fn list(State(gw): State<Gateway>) -> Result<Json<WebhookList>, ApiError> {
    let rows = store::all(&gw.0.webhooks.store).await.map_err(store_err)?;
    Ok(Json(WebhookList {
        webhooks: rows.into_iter().map(|r| view(r, None)).collect(),
    }))
}

async fn find(gw: &Gateway, id: &str) -> Result<Row1, ApiError> {
    store::get(&gw.0.webhooks.store, id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::NotFound(format!("webhook {id:?} does not exist")))
}

/// One subscription.
#[utoipa::path(get, path = "/v1/webhooks/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(view(find(&gw, &id).await?, None)))
}

/// Deletes a subscription (its worker stops).
#[utoipa::path(delete, path = "/v1/webhooks/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn delete(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    gw.0.webhooks.stop(&id);
    if store::delete(&gw.0.webhooks.store, &id)
        .await
        .map_err(store_err)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("webhook {id:?} does not exist")))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret (`whsec_<base64>`); generated when absent.
    pub secret: Option<String>,
}

/// Rotates the secret: the new one signs alongside the previous one (two signatures) until
/// the next rotation drops the older.
#[utoipa::path(post, path = "/v1/webhooks/{id}/secrets", params(("id" = String, Path)),
    request_body = RotateSecret,
    responses((status = 200, body = Webhook), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn rotate(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Json(r): Json<RotateSecret>,
) -> Result<Json<Webhook>, ApiError> {
    let row = find(&gw, &id).await?;
    let (secret, generated) = match r.secret {
        Some(s) => {
            sign::secret_key(&s).map_err(|m| ApiError::Unprocessable {
                message: m,
                details: None,
            })?;
            (s, None)
        }
        None => {
            let s = sign::new_secret();
            (s.clone(), Some(s))
        }
    };
    let mut secrets = vec![row.secrets.last().cloned().unwrap_or_default(), secret];
    secrets.retain(|s| !s.is_empty());
    store::set_secrets(&gw.0.webhooks.store, &id, &secrets)
        .await
        .map_err(store_err)?;
    let mut row = find(&gw, &id).await?;
    row.secrets = secrets;
    Ok(Json(view(row, generated)))
}

/// Re-enables a disabled subscription.
#[utoipa::path(post, path = "/v1/webhooks/{id}/enable", params(("id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 404, body = Problem)))]
pub(crate) async fn enable(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    find(&gw, &id).await?;
    store::set_enabled(&gw.0.webhooks.store, &id, true, None)
        .await
        .map_err(store_err)?;
    gw.0.webhooks.notify(&id);
    Ok(Json(view(find(&gw, &id).await?, None)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptsQuery {
    /// Most recent first; default 100, at most 1000.
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<Attempt>,
}

/// Delivery attempts, most recent first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/attempts", params(("id" = String, Path), AttemptsQuery),
    responses((status = 200, body = AttemptList), (status = 404, body = Problem)))]
pub(crate) async fn attempts(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Query(q): Query<AttemptsQuery>,
) -> Result<Json<AttemptList>, ApiError> {
    find(&gw, &id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let attempts = store::attempts(&gw.0.webhooks.store, &id, limit)
        .await
        .map_err(store_err)?;
    Ok(Json(AttemptList { attempts }))
}

/// Which dead letters of this subscription to re-deliver to it.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RedriveWebhook {
    /// Which records of `weft.webhooks.dlq` (`webhook_id`, if given, must be this one).
    #[serde(flatten)]
    pub select: DlqSelection,
    /// Only report what would be re-delivered.
    #[serde(default)]
    pub dry_run: bool,
    /// Anything else: refused.
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: BTreeMap<String, Value>,
}

/// Re-delivers this subscription's dead letters (from `weft.webhooks.dlq`) to it alone, in
/// the background: each record as first delivered (same `webhook-id` and body), signed
/// with the current secrets, with the current headers and a new attempt history (see
/// `…/attempts`); after the last failed attempt it is dead-lettered again. Nothing is
/// re-published to the topic, so its other readers see nothing twice. Each record is
/// marked on `weft.webhooks.dlq.redriven` once its delivery settled and is then never
/// redriven again (here, by `/v1/dlq/…/redrive` or `weft dlq redrive`); until then it is
/// skipped as `already_redriven` too. 202 with the records taken; 200 for a dry run.
#[utoipa::path(post, path = "/v1/webhooks/{id}/redrive", operation_id = "redrive_webhook",
    params(("id" = String, Path)), request_body = RedriveWebhook,
    responses((status = 202, body = RedriveResponse), (status = 200, body = RedriveResponse),
        (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 502, body = Problem)))]
pub(crate) async fn redrive(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    body: Result<Json<RedriveWebhook>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<RedriveResponse>), ApiError> {
    let mut req = crate::consumers::json_body(body)?;
    crate::dlq::refuse_unknown(&req.unknown)?;
    if let Some(other) = req.select.webhook_id.as_ref().filter(|w| **w != id) {
        return Err(ApiError::Unprocessable {
            message: format!("webhook_id {other:?} is not this webhook ({id:?})"),
            details: None,
        });
    }
    req.select.webhook_id = Some(id.clone());
    let row = find(&gw, &id).await?;
    if !row.enabled {
        return Err(ApiError::Conflict(format!(
            "webhook {id:?} is disabled ({}); enable it before redriving to it",
            row.disabled_reason.as_deref().unwrap_or("no reason given")
        )));
    }
    let _turn = gw.0.redrives.turn().await?;
    let (records, plan) = crate::dlq::plan(&gw, DLQ_TOPIC, &req.select, None).await?;
    let mut skipped: Vec<Skipped> = plan
        .skipped
        .iter()
        .map(|(i, skip)| Skipped::new(&records[*i].0, skip, "not a webhook dead letter"))
        .collect();
    let at = weft_store::now_ms();
    let mut items = Vec::new();
    for (i, original_topic) in plan.redrive {
        let (r, headers) = &records[i];
        // `decide` found the envelope readable (no `to`), so this parses.
        let letter = weft_resilience::dlq::DeadLetter::parse(headers);
        match letter {
            Ok(l) if original_topic == row.spec.topic => {
                items.push(Redelivery::new(r, headers, &l, &id, at));
            }
            Ok(_) | Err(_) => skipped.push(Skipped {
                partition: r.partition,
                offset: r.offset,
                reason: format!(
                    "dead-lettered from topic {original_topic:?}, not this webhook's {:?}",
                    row.spec.topic
                ),
            }),
        }
    }
    let redriven = items
        .iter()
        .map(|item| Redriven::planned(item.out.partition, item.out.offset, item.out.target.clone()))
        .collect();
    let answer = |dry_run| RedriveResponse {
        dry_run,
        redriven,
        skipped,
    };
    if req.dry_run {
        return Ok((StatusCode::OK, Json(answer(true))));
    }
    if !items.is_empty() {
        let markers = weft_resilience::dlq::TopicNaming::default().redriven_topic(DLQ_TOPIC);
        crate::dlq::ensure_marker_topic(gw.0.kafka.bootstrap(), &markers).await?;
        if let Ok(mut d) = gw.0.redrives.delivering.lock() {
            d.extend(
                items
                    .iter()
                    .map(|it| (it.out.dlq_topic.clone(), it.out.partition, it.out.offset)),
            );
        }
        tracing::info!(webhook = id, records = items.len(), "webhook redrive");
        gw.0.webhooks.redeliver(gw.clone(), &row, items);
    }
    Ok((StatusCode::ACCEPTED, Json(answer(false))))
}
