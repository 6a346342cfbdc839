//! The order side of an order → payment pair (see `payment_service.rs`).
//!
//! Places a few orders on `orders` (JSON, keyed by order id so each order's events stay in
//! order), then follows `payments` with the consumer runtime and prints each outcome with
//! its correlation id — the id the order was placed with, carried through the payment
//! service without either service passing it by hand.
//!
//! ```text
//! weft serve &                                   # Kafka on 127.0.0.1:9092
//! weft topic create orders --partitions 3
//! weft topic create orders.dlq --partitions 3
//! weft topic create payments --partitions 3
//! cargo run -p weft-client --example payment_service &
//! cargo run -p weft-client --example order_service
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft_client::context::CORRELATION_ID;
use weft_client::{
    Consumer, ConsumerConfig, HandlerError, Message, Producer, ProducerConfig, Record,
};

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
    let producer = Producer::new(&ProducerConfig::new(&bootstrap))?;
    // Amount 0 is refused by the payment service: it ends in orders.dlq.
    for (i, amount) in [1999, 0, 4250].into_iter().enumerate() {
        let order = OrderPlaced {
            order_id: format!("order-{i}"),
            amount_cents: amount,
        };
        let sent = producer
            .send(
                Record::new("orders")
                    .key(order.order_id.clone())
                    .json(&order)?,
            )
            .await?;
        println!(
            "placed {} (partition {}, offset {}, message id {})",
            order.order_id, sent.partition, sent.offset, sent.message_id
        );
    }

    let consumer = Consumer::new(ConsumerConfig::new(
        &bootstrap,
        "order-service",
        &["payments"],
    ))?;
    let shutdown = consumer.shutdown_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.shutdown();
    });
    consumer
        .run(|m: Message| async move {
            let result: PaymentResult = m.json().map_err(HandlerError::permanent)?;
            println!(
                "{} is {} (correlation {})",
                result.order_id,
                result.status,
                m.header_str(CORRELATION_ID).unwrap_or("-")
            );
            Ok(())
        })
        .await?;
    producer.flush(Duration::from_secs(5)).await?;
    Ok(())
}
