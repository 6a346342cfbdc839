//! Broker metrics recorded by a real broker: a test recorder is installed globally (this
//! binary holds only this test), a client produces and fetches over the wire, and the
//! request counters, latency histograms, per-topic traffic, connection gauge and partition
//! gauges are checked.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestBroker;
use common::raw::{Raw, creatable};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use weft_log::batch::{self, BuildOptions, Record};

/// What the recorder saw, by `name{label=value,…}`. A snapshot drains the recorder, so
/// `total` sums the reads (counters, the inc/dec gauges, histogram observation counts) and
/// `last` keeps the latest read (a `set` gauge shows its value in the read after a refresh).
struct Values {
    snapshotter: Snapshotter,
    total: BTreeMap<String, f64>,
    last: BTreeMap<String, f64>,
}

impl Values {
    fn read(&mut self) {
        self.last.clear();
        for (k, _, _, v) in self.snapshotter.snapshot().into_vec() {
            let key = k.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let n = match v {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(x) => x.0,
                DebugValue::Histogram(xs) => xs.len() as f64,
            };
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            *self.total.entry(name.clone()).or_default() += n;
            self.last.insert(name, n);
        }
    }
}

/// Polls until `key` has `want` (a bound against hangs, not a performance threshold): in the
/// sum of all reads, or with `latest`, in the latest read.
fn wait_for_in(values: &mut Values, key: &str, want: f64, latest: bool) {
    let start = Instant::now();
    loop {
        values.read();
        let m = if latest { &values.last } else { &values.total };
        if m.get(key) == Some(&want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{key} = {:?}, want {want}; all: {m:#?}",
            m.get(key),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(values: &mut Values, key: &str, want: f64) {
    wait_for_in(values, key, want, false);
}

#[test]
fn a_broker_records_requests_traffic_and_positions() {
    let rec = DebuggingRecorder::new();
    let mut values = Values {
        snapshotter: rec.snapshotter(),
        total: BTreeMap::new(),
        last: BTreeMap::new(),
    };
    metrics::set_global_recorder(rec).expect("first recorder");
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    let r: CreateTopicsResponse = c.request(
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![creatable("m", &[])])
            .with_timeout_ms(5000),
    );
    assert_eq!(r.topics[0].error_code, 0);
    wait_for(&mut values, "weft_broker_connections_active{}", 1.0);

    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            offset: i,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from_static(b"0123456789")),
            headers: vec![],
        })
        .collect();
    let batch = Bytes::from(batch::build(BuildOptions::default(), &records).expect("build"));
    let batch_len = batch.len() as f64;
    let p: ProduceResponse = c.request(
        9,
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("m")))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch)),
                    ]),
            ]),
    );
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
    let f: FetchResponse = c.request(
        12,
        &FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("m")))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(1)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]),
    );
    assert_eq!(f.responses[0].partitions[0].error_code, 0);

    for (key, want) in [
        (
            "weft_broker_requests_total{api=CreateTopics,version=7,error=none}",
            1.0,
        ),
        (
            "weft_broker_requests_total{api=Produce,version=9,error=none}",
            1.0,
        ),
        (
            "weft_broker_requests_total{api=Fetch,version=12,error=none}",
            1.0,
        ),
        ("weft_broker_bytes_in_total{topic=m}", batch_len),
        ("weft_broker_records_in_total{topic=m}", 3.0),
        // The one batch is sent whole; offsets 1 and 2 are past the fetch offset.
        ("weft_broker_bytes_out_total{topic=m}", batch_len),
        ("weft_broker_records_out_total{topic=m}", 2.0),
        ("weft_broker_produce_purgatory_size{}", 0.0),
        // Partition gauges, refreshed every 10 s.
        (
            "weft_broker_partition_log_end_offset{topic=m,partition=0}",
            3.0,
        ),
        (
            "weft_broker_partition_log_start_offset{topic=m,partition=0}",
            0.0,
        ),
        (
            "weft_broker_partition_log_size_bytes{topic=m,partition=0}",
            batch_len,
        ),
    ] {
        // The partition gauges are set (not counted): their value is in the latest read.
        let latest = key.starts_with("weft_broker_partition_");
        wait_for_in(&mut values, key, want, latest);
    }
    // Latencies: one observation per answered request (the writer records after sending).
    for api in ["Produce", "Fetch"] {
        for h in [
            "weft_broker_request_processing_seconds",
            "weft_broker_request_queue_seconds",
            "weft_broker_response_send_seconds",
        ] {
            wait_for(&mut values, &format!("{h}{{api={api}}}"), 1.0);
        }
    }
    // An unknown API key closes the connection and is counted as such.
    let mut frame = c.frame(12, &FetchRequest::default());
    frame[4..6].copy_from_slice(&999i16.to_be_bytes());
    assert!(c.send_raw(&frame));
    c.assert_closed("unknown api key");
    wait_for(
        &mut values,
        "weft_broker_requests_total{api=unknown,version=12,error=closed}",
        1.0,
    );
    wait_for(&mut values, "weft_broker_connections_active{}", 0.0);
    values.read();
    assert!(
        values
            .total
            .get("weft_log_fsync_seconds{}")
            .is_some_and(|n| *n >= 1.0),
        "acks=-1 under the default durability fsyncs"
    );
}
