//! Compile-time check: the futures users spawn (projectors, appends, groups, scavenging)
//! are `Send`. sqlx's executors easily make a future fail the higher-ranked `Send` check,
//! which only shows when someone calls `tokio::spawn` on it.

use weft_eventstore::projection::{Projection, Projector};
use weft_eventstore::{EventStore, RecordedEvent};
use weft_store::Tx;
struct P;
impl Projection for P {
    fn name(&self) -> &str {
        "p"
    }
    fn table(&self) -> &str {
        "p"
    }
    fn create_sql(&self, t: &str) -> String {
        t.into()
    }
    async fn apply(
        &mut self,
        _e: &RecordedEvent,
        _tx: &mut Tx,
        _t: &str,
    ) -> weft_eventstore::Result<()> {
        Ok(())
    }
}
fn is_send<T: Send>(_: T) {}
/// Never run: it only has to compile.
#[allow(dead_code)]
async fn spawnable(es: EventStore) {
    let p = Projector::new(es.clone(), P);
    is_send(async move { p.ensure().await });
    let mut p = Projector::new(es.clone(), P);
    is_send(async move { p.step().await });
    let mut p = Projector::new(es.clone(), P);
    is_send(async move { p.rebuild().await });
    let mut p = Projector::new(es.clone(), P);
    is_send(async move { p.run_until_caught_up().await });
    let e2 = es.clone();
    is_send(async move {
        e2.declare_type(weft_eventstore::TypeDeclaration {
            event_type: "T".into(),
            visibility: Default::default(),
            json_schema: None,
            registry: None,
            schema_ref: None,
            public: None,
        })
        .await
    });
    let e2 = es.clone();
    is_send(async move {
        e2.append("a-1", weft_eventstore::ExpectedVersion::Any, vec![])
            .await
    });
    let e2 = es.clone();
    is_send(async move { e2.connect_group("g").await });
    let e2 = es.clone();
    is_send(async move {
        e2.delete_stream("a-1", weft_eventstore::ExpectedVersion::Any, true)
            .await
    });
    let e2 = es.clone();
    is_send(async move { e2.set_stream_metadata("a-1", Default::default()).await });
    is_send(async move { es.scavenge(1).await });
}

#[test]
fn store_futures_can_be_spawned() {
    // The assertion is `spawnable` compiling.
}
