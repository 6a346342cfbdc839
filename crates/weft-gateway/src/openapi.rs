//! OpenAPI 3.1 generated from the handlers' annotations (utoipa) at `/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

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
        crate::webhooks::api::redrive,
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
    components(schemas(crate::problem::Problem)),
    modifiers(&ProblemBodies)
)]
pub struct ApiDoc;

/// Makes the document say what the gateway sends on errors: every problem body is
/// `application/problem+json`, and every operation may answer 400 (a path, query or body
/// that does not parse, which axum rejects before the handler) and, with a request body,
/// 413 (over `max_body_bytes`) and 415 (not JSON).
struct ProblemBodies;

impl Modify for ProblemBodies {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        for item in api.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let mut defaults = vec![("400", "the path, query or body does not parse")];
                if op.request_body.is_some() {
                    defaults.push(("413", "the body is over the size limit"));
                    defaults.push(("415", "the body is not JSON"));
                }
                for (status, description) in defaults {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(description)
                                    .content("application/problem+json", problem())
                                    .build(),
                            )
                        });
                }
                for response in op.responses.responses.values_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let is_problem = response.content.get("application/json").is_some_and(|c| {
                        matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
                    });
                    if is_problem && let Some(c) = response.content.shift_remove("application/json")
                    {
                        response
                            .content
                            .insert("application/problem+json".to_owned(), c);
                    }
                }
            }
        }
    }
}

pub(crate) fn routes() -> Router<Gateway> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
