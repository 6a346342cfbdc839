//! The payment side of an order → payment pair (see `order_service.rs`).
//!
//! Consumes `orders` as an idempotent, transactional consumer: the payment row and the
//! dedup mark for the order event commit in one SQLite transaction, so a redelivered event
//! (a crash before the offset commit, a rewind) never charges twice. It then publishes the
//! outcome on `payments`; the correlation and causation ids come from the order event being
//! handled, without passing them. An order with a non-positive amount is a permanent failure:
//! it goes to `orders.dlq` with the dead-letter envelope (inspect it with `weft dlq`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft_client::dedup::Dedup;
use weft_client::{
    Consumer, ConsumerConfig, HandlerError, Message, Producer, ProducerConfig, Record,
};
use weft_store::{Store, Tx, sqlx};

#[derive(Serialize, Deserialize, Debug)]
struct OrderPlaced {
    order_id: String,
    amount_cents: i64,
}

#[derive(Serialize, Deserialize, Debug)]
struct PaymentResult {
    order_id: String,
    status: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("WEFT_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let store = Store::open_sqlite(std::path::Path::new("payments.db")).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS payments (order_id TEXT PRIMARY KEY, amount_cents BIGINT NOT NULL)",
    )
    .execute(store.pool())
    .await?;
    // Marks are kept for a week: longer than any redelivery we expect (DLQ redrives included).
    let dedup = Dedup::new(store, "payment-service", Duration::from_secs(7 * 24 * 3600)).await?;
    let producer = Producer::new(&ProducerConfig::new(&bootstrap))?;

    let consumer = Consumer::new(ConsumerConfig::new(
        &bootstrap,
        "payment-service",
        &["orders"],
    ))?;
    let shutdown = consumer.shutdown_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.shutdown();
    });
    let handler = dedup.transactional(move |m: Message, mut tx: Tx| {
        let producer = producer.clone();
        async move {
            let order: OrderPlaced = m.json().map_err(HandlerError::permanent)?;
            if order.amount_cents <= 0 {
                return Err(HandlerError::permanent(format!(
                    "order {} has amount {}",
                    order.order_id, order.amount_cents
                )));
            }
            sqlx::query("INSERT INTO payments (order_id, amount_cents) VALUES ($1, $2)")
                .bind(&order.order_id)
                .bind(order.amount_cents)
                .execute(&mut *tx)
                .await?;
            // Published before the transaction commits: if the commit fails, the event is
            // redelivered and the result published again (downstream dedups by message id
            // of the *order*, carried as causation id).
            let result = PaymentResult {
                order_id: order.order_id.clone(),
                status: "paid".into(),
            };
            producer
                .send(
                    Record::new("payments")
                        .key(order.order_id)
                        .json(&result)
                        .map_err(HandlerError::permanent)?,
                )
                .await
                .map_err(HandlerError::retryable)?;
            Ok(tx)
        }
    });
    consumer.run(handler).await?;
    Ok(())
}
