//! Catch-up subscriptions: history, then live, on a stream, a category or `$all`, with
//! server-side filters.
//!
//! One loop serves both phases: read the next page after the last delivered position; when a
//! page comes back short the subscription is caught up and waits — woken at once by appends
//! through this process's [`EventStore`] (a `watch` of the committed head), and every
//! `poll_interval` for appends by other processes. Because positions are commit-ordered
//! (see the crate docs), "everything after the last position I delivered" is exactly what is
//! left, so there is no gap and no duplicate at the switch-over from history to live.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::types::{Direction, Filter, RecordedEvent};
use crate::{EventStore, Result};

/// Page size of the history phase.
const PAGE: usize = 512;

/// What a subscription yields.
// Nearly every message is an event; boxing it would cost an allocation per event to save
// space on the one `CaughtUp`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Event(RecordedEvent),
    /// Everything committed when the history was read has been delivered; live from here.
    /// Sent once.
    CaughtUp {
        position: u64,
    },
}

/// A running catch-up subscription; dropping it stops the reader.
pub struct Subscription {
    rx: mpsc::Receiver<Result<Message>>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// The next message; `None` only after an error was delivered.
    pub async fn next(&mut self) -> Option<Result<Message>> {
        self.rx.recv().await
    }

    /// The next event, skipping `CaughtUp`.
    pub async fn next_event(&mut self) -> Option<Result<RecordedEvent>> {
        loop {
            match self.rx.recv().await? {
                Ok(Message::Event(e)) => return Some(Ok(e)),
                Ok(Message::CaughtUp { .. }) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventStore {
    /// Subscribes to the events passing `filter` after global position `after` (0: from the
    /// beginning). Resume after a restart by passing the last position handled.
    pub fn subscribe(&self, filter: Filter, after: u64) -> Subscription {
        let (tx, rx) = mpsc::channel(PAGE);
        let store = self.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = store.run_subscription(filter, after, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Subscription { rx, task }
    }

    async fn run_subscription(
        &self,
        filter: Filter,
        mut after: u64,
        tx: &mpsc::Sender<Result<Message>>,
    ) -> Result<()> {
        let mut head = self.watch_head();
        let mut caught_up = false;
        loop {
            // Mark the head as seen *before* reading: an append that commits during the read
            // wakes the next wait instead of being missed.
            head.borrow_and_update();
            let page = self
                .read_all(after + 1, Direction::Forwards, PAGE, &filter)
                .await?;
            let short = page.len() < PAGE;
            for e in page {
                after = e.position;
                if tx.send(Ok(Message::Event(e))).await.is_err() {
                    return Ok(());
                }
            }
            if !short {
                continue;
            }
            if !caught_up {
                caught_up = true;
                if tx
                    .send(Ok(Message::CaughtUp { position: after }))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return Ok(()) },
                () = tokio::time::sleep(self.inner.options.poll_interval) => {}
                () = tx.closed() => return Ok(()),
            }
        }
    }
}
