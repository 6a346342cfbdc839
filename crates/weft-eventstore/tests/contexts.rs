//! Bounded contexts: a private domain event is published only through its declared mapping,
//! into the transactional outbox in the append's own transaction.

mod common;

use common::{BACKENDS, open};
use serde_json::{Value, json};
use weft_eventstore::{
    EventData, EventMetadata, ExpectedVersion, FieldMapping, PublicMapping, SchemaRef,
    TypeDeclaration, Visibility,
};
use weft_store::sqlx::{self, Row};

#[tokio::test]
async fn private_fields_never_reach_the_outbox() {
    for backend in BACKENDS {
        let (_db, es) = open(backend).await;
        es.declare_type(TypeDeclaration {
            event_type: "OrderPlaced".into(),
            visibility: Visibility::Private,
            json_schema: None,
            registry: None,
            schema_ref: None,
            public: Some(PublicMapping {
                public_type: "OrderSubmitted".into(),
                subject: "orders.public-value".into(),
                fields: vec![
                    FieldMapping {
                        from: "/order_id".into(),
                        to: "id".into(),
                    },
                    FieldMapping {
                        from: "/totals/gross".into(),
                        to: "amount".into(),
                    },
                ],
                computed: vec![weft_eventstore::ComputedField {
                    to: "amount_cents".into(),
                    compute: weft_eventstore::Compute::Multiply {
                        from: "/totals/gross".into(),
                        factor: 100.0,
                    },
                }],
                include_source: true,
            }),
        })
        .await
        .expect("declare private");
        es.declare_type(TypeDeclaration {
            event_type: "OrderShipped".into(),
            visibility: Visibility::Public,
            json_schema: None,
            registry: None,
            schema_ref: Some(SchemaRef {
                subject: "orders.shipped-value".into(),
                version: 1,
            }),
            public: None,
        })
        .await
        .expect("declare public");
        let placed = EventData::new(
            "OrderPlaced",
            json!({"order_id": "42", "totals": {"gross": 99, "margin": 31},
                   "card_number": "4111111111111111"}),
        )
        .with_metadata(EventMetadata {
            correlation_id: Some("corr-1".into()),
            ..EventMetadata::default()
        });
        es.append(
            "order-42",
            ExpectedVersion::NoStream,
            vec![
                placed,
                EventData::new("OrderNoted", json!({"note": "internal"})),
            ],
        )
        .await
        .expect("append");
        // A refused append publishes nothing.
        assert!(
            es.append(
                "order-42",
                ExpectedVersion::NoStream,
                vec![EventData::new(
                    "OrderPlaced",
                    json!({"order_id": "x", "card_number": "1"})
                )]
            )
            .await
            .is_err()
        );
        es.append(
            "order-42",
            ExpectedVersion::Exact(1),
            vec![EventData::new(
                "OrderShipped",
                json!({"order_id": "42", "carrier": "dhl"}),
            )],
        )
        .await
        .expect("append public");

        let rows = sqlx::query(
            "SELECT aggregatetype, aggregateid, type, payload, headers FROM weft_outbox ORDER BY seq",
        )
        .fetch_all(es.store().pool())
        .await
        .expect("outbox rows");
        assert_eq!(
            rows.len(),
            2,
            "{backend:?}: the private-only event is not published"
        );
        let row = |i: usize| {
            let r = &rows[i];
            let payload: Vec<u8> = r.try_get("payload").expect("payload");
            let headers: String = r.try_get("headers").expect("headers");
            (
                r.try_get::<String, _>("aggregatetype").expect("t"),
                r.try_get::<String, _>("aggregateid").expect("id"),
                r.try_get::<String, _>("type").expect("type"),
                serde_json::from_slice::<Value>(&payload).expect("json payload"),
                serde_json::from_str::<Value>(&headers).expect("json headers"),
            )
        };
        let (agg, id, ty, payload, headers) = row(0);
        assert_eq!(
            (agg.as_str(), id.as_str(), ty.as_str()),
            ("order", "42", "OrderSubmitted")
        );
        assert_eq!(
            payload,
            json!({"id": "42", "amount": 99, "amount_cents": 9900, "source_stream": "order-42",
                   "source_revision": 0, "source_position": 1}),
            "only mapped fields cross"
        );
        let text = payload.to_string();
        assert!(!text.contains("4111") && !text.contains("margin"), "{text}");
        assert_eq!(headers["weft-schema-subject"], "orders.public-value");
        assert!(headers.to_string().contains("corr-1"), "{headers}");
        let (_, _, ty, payload, headers) = row(1);
        assert_eq!(ty, "OrderShipped");
        assert_eq!(payload["carrier"], "dhl");
        assert_eq!(headers["weft-schema-subject"], "orders.shipped-value");
    }
}
