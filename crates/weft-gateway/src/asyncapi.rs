//! AsyncAPI 3.0 at `/asyncapi.json`, generated live from the cluster's topics and the
//! registry's `<topic>-value` schemas: per topic an SSE, a WebSocket and a Kafka channel,
//! one message with the payload schema, `receive` operations, and the security schemes.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::Gateway;
use crate::problem::ApiError;

pub(crate) fn routes() -> Router<Gateway> {
    Router::new().route("/asyncapi.json", get(document))
}

/// A channel/message key: AsyncAPI keys must match `^[A-Za-z0-9_\-]+$`.
fn key(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn payload_of(gw: &Gateway, topic: &str) -> Value {
    let record = json!({
        "type": "object",
        "properties": {
            "topic": {"type": "string"}, "partition": {"type": "integer"},
            "offset": {"type": "integer"}, "timestamp": {"type": ["integer", "null"]},
            "key": {}, "value": {}, "headers": {"type": "object"}
        },
        "required": ["topic", "partition", "offset", "value"]
    });
    let Some(registry) = &gw.0.registry else {
        return record;
    };
    let Ok((200, latest)) = registry
        .get_json(&format!("/subjects/{topic}-value/versions/latest"))
        .await
    else {
        return record;
    };
    let schema_type = latest["schemaType"].as_str().unwrap_or("AVRO");
    let text = latest["schema"].as_str().unwrap_or("");
    let value_schema = match schema_type {
        "JSON" => serde_json::from_str::<Value>(text).unwrap_or(json!({})),
        // Avro/Protobuf payloads are shown by the gateway as base64 of the wire format;
        // the schema is linked by subject and id.
        _ => json!({"description": format!("{schema_type} schema id {} (subject {topic}-value)",
                     latest["id"])}),
    };
    let mut r = record;
    r["properties"]["value"] = value_schema;
    r["x-weft-schema-id"] = latest["id"].clone();
    r
}

/// The AsyncAPI 3.0 document.
pub(crate) async fn document(State(gw): State<Gateway>) -> Result<Json<Value>, ApiError> {
    let topics = gw.0.kafka.topics(false).await?;
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for (topic, _) in &topics {
        let k = key(topic);
        let payload = payload_of(&gw, topic).await;
        messages.insert(
            k.clone(),
            json!({"name": k, "title": format!("record of {topic}"), "contentType": "application/json",
                   "payload": payload}),
        );
        let msg_ref = json!({"$ref": format!("#/components/messages/{k}")});
        for (suffix, server, address, bindings) in [
            (
                "sse",
                "http",
                format!("/v1/topics/{topic}/events"),
                json!({"http": {"method": "GET"}}),
            ),
            (
                "ws",
                "ws",
                format!("/v1/topics/{topic}/ws"),
                json!({"ws": {"method": "GET"}}),
            ),
            (
                "kafka",
                "kafka",
                topic.clone(),
                json!({"kafka": {"topic": topic}}),
            ),
        ] {
            let ch = format!("{k}_{suffix}");
            channels.insert(
                ch.clone(),
                json!({
                    "address": address,
                    "servers": [{"$ref": format!("#/servers/{server}")}],
                    "messages": {k.clone(): msg_ref.clone()},
                    "bindings": bindings,
                }),
            );
            operations.insert(
                format!("receive_{ch}"),
                json!({
                    "action": "receive",
                    "channel": {"$ref": format!("#/channels/{ch}")},
                    "messages": [{"$ref": format!("#/channels/{ch}/messages/{k}")}],
                }),
            );
        }
    }
    Ok(Json(json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Weft streams",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Live streams of the cluster's topics over SSE, WebSocket and Kafka."
        },
        "defaultContentType": "application/json",
        "servers": {
            "http": {"host": "localhost:8080", "protocol": "http",
                     "security": [{"$ref": "#/components/securitySchemes/principal"}]},
            "ws": {"host": "localhost:8080", "protocol": "ws",
                   "security": [{"$ref": "#/components/securitySchemes/principal"}]},
            "kafka": {"host": gw.0.kafka.bootstrap(), "protocol": "kafka"}
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "securitySchemes": {
                "principal": {"type": "httpApiKey", "name": "x-weft-principal", "in": "header",
                              "description": "unauthenticated principal name (authentication is a later issue)"}
            }
        }
    })))
}
