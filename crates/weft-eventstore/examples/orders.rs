//! An order-management service built on the event store.
//!
//! - the write side: an `Order` aggregate (place, add line, pay, ship, cancel) saved through
//!   a `Repository` (expected versions, retries on conflicts, snapshots every 50 events);
//! - the read side: an `order_summaries` table kept by a projection whose writes commit
//!   with its checkpoint;
//! - bounded contexts: `OrderPlaced` is a private domain event (it carries the customer's
//!   address); its public face `OrderSubmitted` carries only the id, customer and total and
//!   is written to the transactional outbox (`weft_outbox`) with the append;
//! - HTTP: `POST /orders`, `POST /orders/{id}/lines`, `POST /orders/{id}/pay|ship|cancel`,
//!   `GET /orders/{id}` (the read model), `GET /orders/{id}/history?until=<ms>` (state as of a
//!   time, rebuilt from events), and the store's own `/v1/streams/...`.
//!
//! ```text
//! cargo run -p weft-eventstore --example orders -- --demo          # scripted run, prints the read model
//! cargo run -p weft-eventstore --example orders -- sqlite:orders.db 127.0.0.1:8090
//! curl -XPOST localhost:8090/orders -d '{"id":"42","customer":"c1","address":"1 Main St"}'
//! curl -XPOST localhost:8090/orders/42/lines -d '{"sku":"A-1","qty":2,"price":10}'
//! curl localhost:8090/orders/42
//! ```

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use weft_eventstore::aggregate::{Aggregate, Repository, RepositoryError};
use weft_eventstore::projection::{Projection, Projector};
use weft_eventstore::{
    EventMetadata, EventStore, FieldMapping, Filter, PublicMapping, RecordedEvent, TypeDeclaration,
    Visibility,
};
use weft_store::sqlx::{self, Row};
use weft_store::{Store, Tx};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Order {
    placed: bool,
    customer: String,
    lines: Vec<Line>,
    status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    sku: String,
    qty: u32,
    price: i64,
}

impl Order {
    fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.price * i64::from(l.qty)).sum()
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum OrderEvent {
    OrderPlaced {
        order_id: String,
        customer: String,
        address: String,
    },
    LineAdded {
        sku: String,
        qty: u32,
        price: i64,
    },
    OrderPaid {
        amount: i64,
    },
    OrderShipped,
    OrderCancelled {
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
enum OrderCommand {
    Place {
        id: String,
        customer: String,
        address: String,
    },
    AddLine {
        sku: String,
        qty: u32,
        price: i64,
    },
    Pay,
    Ship,
    Cancel {
        reason: String,
    },
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Event = OrderEvent;
    type Command = OrderCommand;
    type Error = String;

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { customer, .. } => {
                self.placed = true;
                self.customer = customer.clone();
                self.status = "open".into();
            }
            OrderEvent::LineAdded { sku, qty, price } => self.lines.push(Line {
                sku: sku.clone(),
                qty: *qty,
                price: *price,
            }),
            OrderEvent::OrderPaid { .. } => self.status = "paid".into(),
            OrderEvent::OrderShipped => self.status = "shipped".into(),
            OrderEvent::OrderCancelled { .. } => self.status = "cancelled".into(),
        }
    }

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, String> {
        use OrderCommand as C;
        match (command, self.placed, self.status.as_str()) {
            (
                C::Place {
                    id,
                    customer,
                    address,
                },
                false,
                _,
            ) => Ok(vec![OrderEvent::OrderPlaced {
                order_id: id.clone(),
                customer: customer.clone(),
                address: address.clone(),
            }]),
            (C::Place { .. }, true, _) => Err("order already placed".into()),
            (_, false, _) => Err("no such order".into()),
            (C::AddLine { sku, qty, price }, true, "open") if *qty > 0 && *price >= 0 => {
                Ok(vec![OrderEvent::LineAdded {
                    sku: sku.clone(),
                    qty: *qty,
                    price: *price,
                }])
            }
            (C::AddLine { .. }, true, "open") => Err("qty must be positive".into()),
            (C::Pay, true, "open") if !self.lines.is_empty() => Ok(vec![OrderEvent::OrderPaid {
                amount: self.total(),
            }]),
            (C::Ship, true, "paid") => Ok(vec![OrderEvent::OrderShipped]),
            (C::Cancel { reason }, true, "open" | "paid") => Ok(vec![OrderEvent::OrderCancelled {
                reason: reason.clone(),
            }]),
            (_, true, status) => Err(format!("not allowed while the order is {status}")),
        }
    }
}

/// The read model: one row per order.
struct Summaries;

impl Projection for Summaries {
    fn name(&self) -> &str {
        "order-summaries"
    }
    fn table(&self) -> &str {
        "order_summaries"
    }
    fn filter(&self) -> Filter {
        Filter::category("order")
    }
    fn create_sql(&self, table: &str) -> String {
        format!(
            "CREATE TABLE {table} (order_id TEXT PRIMARY KEY, customer TEXT NOT NULL,
                 status TEXT NOT NULL, lines BIGINT NOT NULL, total BIGINT NOT NULL)"
        )
    }
    async fn apply(
        &mut self,
        e: &RecordedEvent,
        tx: &mut Tx,
        table: &str,
    ) -> weft_eventstore::Result<()> {
        let id = e.stream.trim_start_matches("order-");
        let d = &e.data;
        let (sql, binds): (String, Vec<String>) = match e.event_type.as_str() {
            "OrderPlaced" => (
                format!(
                    "INSERT INTO {table} (order_id, customer, status, lines, total)
                     VALUES ($1, $2, 'open', 0, 0)"
                ),
                vec![id.into(), d["customer"].as_str().unwrap_or("").into()],
            ),
            "LineAdded" => {
                let amount = d["qty"].as_i64().unwrap_or(0) * d["price"].as_i64().unwrap_or(0);
                (
                    format!(
                        "UPDATE {table} SET lines = lines + 1, total = total + {amount}
                         WHERE order_id = $1"
                    ),
                    vec![id.into()],
                )
            }
            "OrderPaid" => (
                format!("UPDATE {table} SET status = 'paid' WHERE order_id = $1"),
                vec![id.into()],
            ),
            "OrderShipped" => (
                format!("UPDATE {table} SET status = 'shipped' WHERE order_id = $1"),
                vec![id.into()],
            ),
            "OrderCancelled" => (
                format!("UPDATE {table} SET status = 'cancelled' WHERE order_id = $1"),
                vec![id.into()],
            ),
            _ => return Ok(()),
        };
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        q.execute(&mut **tx).await?;
        Ok(())
    }
}

#[derive(Clone)]
struct App {
    es: EventStore,
}

fn refused(e: RepositoryError<String>) -> Response {
    let status = match &e {
        RepositoryError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        RepositoryError::Conflict { .. } => StatusCode::CONFLICT,
        RepositoryError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(json!({"message": e.to_string()}))).into_response()
}

async fn execute(app: &App, id: &str, command: OrderCommand) -> Response {
    let mut repo = Repository::<Order>::new(app.es.clone());
    repo.snapshot_every = 50;
    let meta = EventMetadata {
        correlation_id: Some(format!("http-{id}")),
        principal: Some("orders-example".into()),
        ..EventMetadata::default()
    };
    match repo.execute(id, &command, meta).await {
        Ok(w) => (StatusCode::OK, Json(json!({ "written": w }))).into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Deserialize)]
struct PlaceBody {
    id: String,
    customer: String,
    address: String,
}

async fn place(State(app): State<App>, Json(b): Json<PlaceBody>) -> Response {
    let id = b.id.clone();
    execute(
        &app,
        &id,
        OrderCommand::Place {
            id: b.id,
            customer: b.customer,
            address: b.address,
        },
    )
    .await
}

#[derive(Deserialize)]
struct LineBody {
    sku: String,
    qty: u32,
    price: i64,
}

async fn add_line(
    State(app): State<App>,
    Path(id): Path<String>,
    Json(b): Json<LineBody>,
) -> Response {
    execute(
        &app,
        &id,
        OrderCommand::AddLine {
            sku: b.sku,
            qty: b.qty,
            price: b.price,
        },
    )
    .await
}

async fn action(State(app): State<App>, Path((id, action)): Path<(String, String)>) -> Response {
    let command = match action.as_str() {
        "pay" => OrderCommand::Pay,
        "ship" => OrderCommand::Ship,
        "cancel" => OrderCommand::Cancel {
            reason: "customer request".into(),
        },
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    execute(&app, &id, command).await
}

async fn summary(State(app): State<App>, Path(id): Path<String>) -> Response {
    let row = sqlx::query(
        "SELECT customer, status, lines, total FROM order_summaries WHERE order_id = $1",
    )
    .bind(&id)
    .fetch_optional(app.es.store().pool())
    .await;
    match row {
        Ok(Some(r)) => Json(json!({
            "order_id": id,
            "customer": r.try_get::<String, _>("customer").unwrap_or_default(),
            "status": r.try_get::<String, _>("status").unwrap_or_default(),
            "lines": r.try_get::<i64, _>("lines").unwrap_or_default(),
            "total": r.try_get::<i64, _>("total").unwrap_or_default(),
        }))
        .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct Until {
    until: Option<i64>,
    revision: Option<u64>,
}

async fn history(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<Until>,
) -> Response {
    let repo = Repository::<Order>::new(app.es.clone());
    match repo.load_until(&id, q.revision, q.until).await {
        Ok(l) => Json(json!({"revision": l.revision, "state": l.state})).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn setup(url: &str) -> EventStore {
    let store = Store::open(url).await.expect("open the database");
    let es = EventStore::open(store).await.expect("open the event store");
    es.declare_type(TypeDeclaration {
        event_type: "OrderPlaced".into(),
        visibility: Visibility::Private,
        json_schema: Some(json!({
            "type": "object",
            "required": ["order_id", "customer", "address"],
            "properties": {"order_id": {"type": "string", "minLength": 1}}
        })),
        registry: None,
        schema_ref: None,
        public: Some(PublicMapping {
            public_type: "OrderSubmitted".into(),
            subject: "orders.order-submitted-value".into(),
            fields: vec![
                FieldMapping {
                    from: "/order_id".into(),
                    to: "order_id".into(),
                },
                FieldMapping {
                    from: "/customer".into(),
                    to: "customer_id".into(),
                },
            ],
            computed: vec![weft_eventstore::ComputedField {
                to: "source_context".into(),
                compute: weft_eventstore::Compute::Const {
                    value: json!("orders"),
                },
            }],
            include_source: false,
        }),
    })
    .await
    .expect("declare OrderPlaced");
    es
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--demo") {
        let dir = std::env::temp_dir().join(format!("weft-orders-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let es = setup(&weft_store::sqlite_url(&dir.join("orders.db"))).await;
        let app = App { es: es.clone() };
        for (id, cmd) in [
            (
                "1",
                OrderCommand::Place {
                    id: "1".into(),
                    customer: "ada".into(),
                    address: "12 Analytical St".into(),
                },
            ),
            (
                "1",
                OrderCommand::AddLine {
                    sku: "LOOM".into(),
                    qty: 2,
                    price: 450,
                },
            ),
            ("1", OrderCommand::Pay),
            ("1", OrderCommand::Ship),
            (
                "2",
                OrderCommand::Place {
                    id: "2".into(),
                    customer: "grace".into(),
                    address: "1 Cobol Way".into(),
                },
            ),
            ("2", OrderCommand::Ship),
        ] {
            let r = execute(&app, id, cmd).await;
            println!("order {id}: {}", r.status());
        }
        let mut p = Projector::new(es.clone(), Summaries);
        p.run_until_caught_up().await.expect("project");
        for id in ["1", "2"] {
            let r = summary(State(app.clone()), Path(id.into())).await;
            let body = axum::body::to_bytes(r.into_body(), 1 << 16)
                .await
                .expect("body");
            println!("summary {id}: {}", String::from_utf8_lossy(&body));
        }
        let outbox = sqlx::query("SELECT type, payload FROM weft_outbox ORDER BY seq")
            .fetch_all(es.store().pool())
            .await
            .expect("outbox");
        for r in outbox {
            let payload: Vec<u8> = r.try_get("payload").expect("payload");
            println!(
                "outbox: {} {}",
                r.try_get::<String, _>("type").expect("type"),
                String::from_utf8_lossy(&payload)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "sqlite:orders.db".into());
    let listen = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let es = setup(&url).await;
    let projector_es = es.clone();
    tokio::spawn(async move {
        let mut p = Projector::new(projector_es, Summaries);
        loop {
            if let Err(e) = p.run(std::future::pending()).await {
                eprintln!("projection stopped: {e}; restarting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let app = Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(summary))
        .route("/orders/{id}/lines", post(add_line))
        .route("/orders/{id}/history", get(history))
        .route("/orders/{id}/{action}", post(action))
        .with_state(App { es: es.clone() })
        .merge(weft_eventstore::http::router(es));
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("orders service on http://{listen}");
    axum::serve(listener, app).await.expect("serve");
}
