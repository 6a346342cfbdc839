//! OpenAPI 3.1 generated from the handlers' annotations (utoipa) at `/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::Gateway;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Weft gateway",
        description = "REST, SSE, WebSocket and webhooks over Weft's streams"
    ),
    paths(
        crate::rest::list_topics,
        crate::rest::get_topic,
        crate::rest::produce,
        crate::rest::read_records,
        crate::streams::sse_doc,
        crate::streams::ws_doc,
        crate::webhooks::api::create,
        crate::webhooks::api::list,
        crate::webhooks::api::get_one,
        crate::webhooks::api::delete,
        crate::webhooks::api::rotate,
        crate::webhooks::api::enable,
        crate::webhooks::api::attempts,
        crate::consumers::create,
        crate::consumers::delete_instance,
        crate::consumers::subscribe,
        crate::consumers::subscription,
        crate::consumers::unsubscribe,
        crate::consumers::assignments,
        crate::consumers::records,
        crate::consumers::commit,
        crate::consumers::committed,
        crate::dlq::list,
        crate::dlq::redrive,
        crate::versioning::info_v1,
        crate::versioning::info_v2,
        crate::versioning::deprecations,
    ),
    components(schemas(crate::problem::Problem))
)]
pub struct ApiDoc;

pub(crate) fn routes() -> Router<Gateway> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
