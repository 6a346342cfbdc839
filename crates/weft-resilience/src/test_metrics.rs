//! A `metrics` recorder for tests: keeps counters and gauges by `name{label=value,…}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};

#[derive(Debug, Default, Clone)]
pub(crate) struct TestRecorder {
    values: Arc<Mutex<BTreeMap<String, f64>>>,
}

struct Cell {
    values: Arc<Mutex<BTreeMap<String, f64>>>,
    key: String,
}

impl Cell {
    fn update(&self, f: impl FnOnce(&mut f64)) {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        f(values.entry(self.key.clone()).or_insert(0.0));
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.update(|v| *v += value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|v| *v = value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.update(|v| *v += value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| *v -= value);
    }
    fn set(&self, value: f64) {
        self.update(|v| *v = value);
    }
}

impl TestRecorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Cell {
            values: self.values.clone(),
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
        })
    }

    /// The value of `name{labels}` (labels in emission order), if recorded.
    pub(crate) fn get(&self, key: &str) -> Option<f64> {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.get(key).copied()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}
