//! Outbox figures against a real database and Kafka-protocol broker:
//!
//! ```text
//! cargo run --release -p weft-outbox --example outbox_bench -- \
//!     <database-url> <bootstrap> <polling|logical> [rows=20000] [rate=1000]
//! ```
//!
//! 1. ceiling: the database's raw insert rate (8 writers, one row per transaction, a table
//!    with the outbox's columns and no relay), then the same through `weft_outbox::insert`;
//! 2. throughput: the relay starts on the backlog of step 1 and drains it: rows per second
//!    from commit to acknowledged-by-the-broker (and deleted from the table);
//! 3. latency: rows inserted at `rate`/s while the relay runs; a consumer measures
//!    receive time minus the row's `created_at` (carried in a header): p50/p99/max.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::Row;
use weft_outbox::{Mode, OutboxConfig, OutboxEvent, SourceConfig, Table};

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> R<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .ok_or("usage: <database-url> <bootstrap> <mode> [rows] [rate]")?;
    let bootstrap = args.get(1).ok_or("missing bootstrap")?.clone();
    let mode = match args.get(2).map(String::as_str) {
        Some("logical") => Mode::Logical,
        _ => Mode::Polling,
    };
    let rows: usize = args.get(3).map_or(Ok(20_000), |s| s.parse())?;
    let rate: u64 = args.get(4).map_or(Ok(1000), |s| s.parse())?;
    let (pool, dialect) = weft_outbox::table::connect(url, 8).await?;
    let table = Table::default();
    weft_outbox::table::apply(&pool, dialect, &table).await?;
    sqlx::query("DELETE FROM weft_outbox")
        .execute(&pool)
        .await?;
    let _ = sqlx::query("DROP TABLE bench_raw").execute(&pool).await;
    let raw_ddl = table.ddl(dialect)[0].replace("weft_outbox", "bench_raw");
    sqlx::raw_sql(&raw_ddl).execute(&pool).await?;
    println!(
        "database {} ({}), mode {mode:?}, {rows} rows",
        weft_outbox::redact(url),
        dialect.as_str()
    );

    // 1. Ceilings.
    let p = |n: usize| dialect.param(n);
    let raw_sql = format!(
        "INSERT INTO bench_raw (id, aggregatetype, aggregateid, type, payload, headers) VALUES ({}, {}, {}, {}, {}, {})",
        if dialect == weft_outbox::Dialect::Postgres {
            "CAST($1 AS UUID)".to_owned()
        } else {
            p(1)
        },
        p(2),
        p(3),
        p(4),
        p(5),
        p(6)
    );
    let payload =
        br#"{"orderId":"o-1","amount":4200,"currency":"EUR","lines":[{"sku":"a","qty":2}]}"#;
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let pool = pool.clone();
        let sql = raw_sql.clone();
        tasks.spawn(async move {
            for i in 0..rows / 8 {
                sqlx::query(&sql)
                    .bind(uuid_v7())
                    .bind("bench")
                    .bind(format!("agg-{}", (w * 7919 + i) % 1000))
                    .bind("BenchEvent")
                    .bind(payload.to_vec())
                    .bind("{}")
                    .execute(&pool)
                    .await?;
            }
            Ok::<_, sqlx::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let raw_rate = rows as f64 / t.elapsed().as_secs_f64();
    println!("raw insert (8 writers, 1 row/tx): {raw_rate:.0} rows/s");

    let t = Instant::now();
    for w in 0..8 {
        let pool = pool.clone();
        tasks.spawn(async move {
            for i in 0..rows / 8 {
                let mut tx = pool.begin().await?;
                let e = OutboxEvent::new(
                    "bench",
                    format!("agg-{}", (w * 7919 + i) % 1000),
                    "BenchEvent",
                    payload.to_vec(),
                );
                weft_outbox::insert(&mut tx, &e)
                    .await
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let outbox_rate = rows as f64 / t.elapsed().as_secs_f64();
    println!("outbox insert (8 writers, 1 row/tx, weft_outbox::insert): {outbox_rate:.0} rows/s");

    // 2. Drain the backlog.
    let mut source = SourceConfig::new("bench", url);
    source.mode = mode;
    source.batch_size = 1000;
    source.poll_interval_ms = 5;
    source.slot = Some("weft_bench_slot".into());
    source
        .headers
        .insert("created_at".into(), "x-created-ms".into());
    let config = OutboxConfig {
        sources: vec![source],
    };
    let outbox = weft_outbox::Outbox::for_config(&config);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(weft_outbox::run(
        config,
        Some(bootstrap.clone()),
        outbox.clone(),
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    let t = Instant::now();
    loop {
        let published = outbox.source("bench").map_or(0, |s| s.published_total);
        if published as usize >= rows - rows % 8 {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            return Err(
                format!("drain stalled at {published}: {:?}", outbox.source("bench")).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drain = (rows - rows % 8) as f64 / t.elapsed().as_secs_f64();
    let how = if mode == Mode::Logical {
        "startup drain of rows older than the slot, polling path"
    } else {
        "backlog"
    };
    println!("relay drain commit→topic ({how}, batch 1000): {drain:.0} rows/s");

    // 2b. Live: 8 writers as fast as they go while the relay follows (in logical mode
    // through the slot, since the startup drain is over).
    let already = outbox.source("bench").map_or(0, |s| s.published_total);
    let t = Instant::now();
    for w in 0..8 {
        let pool = pool.clone();
        tasks.spawn(async move {
            for i in 0..rows / 8 {
                let mut tx = pool.begin().await?;
                let e = OutboxEvent::new(
                    "bench",
                    format!("agg-{}", (w * 7919 + i) % 1000),
                    "BenchEvent",
                    payload.to_vec(),
                );
                weft_outbox::insert(&mut tx, &e)
                    .await
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let inserted = t.elapsed();
    let target = already + (rows - rows % 8) as u64;
    while outbox.source("bench").map_or(0, |s| s.published_total) < target {
        if t.elapsed() > Duration::from_secs(600) {
            return Err("live phase stalled".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all = t.elapsed();
    println!(
        "live (relay running, 8 writers): inserts {:.0} rows/s, commit→topic {:.0} rows/s, last row published {} ms after the last commit",
        (rows - rows % 8) as f64 / inserted.as_secs_f64(),
        (rows - rows % 8) as f64 / all.as_secs_f64(),
        (all - inserted).as_millis()
    );

    // 3. Latency at a steady rate.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "outbox-bench")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("outbox.event.bench", 0, Offset::End)?;
    consumer.assign(&tpl)?;
    let n_latency = (rate * 10) as usize;
    let reader = std::thread::spawn(move || {
        let mut lat: Vec<i64> = Vec::with_capacity(n_latency);
        let deadline = Instant::now() + Duration::from_secs(120);
        while lat.len() < n_latency && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let created = m.headers().and_then(|hs| {
                    hs.iter()
                        .find(|h| h.key == "x-created-ms")
                        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
                });
                if let Some(c) = created {
                    lat.push(now_ms() - c);
                }
            }
        }
        lat
    });
    // Give the consumer time to be positioned at the end before producing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut tick = tokio::time::interval(interval);
    for i in 0..n_latency {
        tick.tick().await;
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await?;
            let e = OutboxEvent::new(
                "bench",
                format!("agg-{}", i % 1000),
                "BenchEvent",
                payload.to_vec(),
            );
            weft_outbox::insert(&mut tx, &e)
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            tx.commit().await
        });
    }
    let mut lat = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| "reader panicked")?;
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(-1)
    };
    println!(
        "latency created_at→consumer at {rate} rows/s ({} samples): p50 {} ms, p99 {} ms, max {} ms",
        lat.len(),
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(-1)
    );
    let _ = stop_tx.send(true);
    relay.await??;
    if mode == Mode::Logical {
        let _ = sqlx::query("SELECT pg_drop_replication_slot('weft_bench_slot')")
            .execute(&pool)
            .await;
    }
    let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM weft_outbox")
        .fetch_one(&pool)
        .await?
        .try_get("n")?;
    println!("rows left in the outbox after the run: {left}");
    Ok(())
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
