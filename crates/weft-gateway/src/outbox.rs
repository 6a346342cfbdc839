//! A live connection's bounded buffer between its engine (the task following the topic)
//! and its writer (the HTTP response body or the WebSocket).
//!
//! At most `cap` outputs wait in it; a full outbox is how the engine learns that its client
//! is slow. An SSE outbox renders each output into the wire format as it is pushed, so an
//! event costs its connection one append to a byte buffer — the event id written straight
//! from the positions, the record's JSON shared by every connection — and the writer takes
//! everything buffered as one chunk. A WebSocket outbox queues the outputs themselves.
//!
//! Either side going away is seen by the other: the writer's end dropped makes
//! [`OutTx::closed`] resolve (`client_gone`); every engine handle dropped ends the writer's
//! reads once the buffer is drained.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use crate::hub::Out;
use crate::kafka::Record;
use crate::position::{Format, Positions, encode};

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `cap` outputs are waiting.
    Full,
    /// The writer is gone.
    Closed,
}

/// SSE: outputs are rendered as they come.
struct Render {
    topic: String,
    format: Format,
}

struct State {
    /// WebSocket: the outputs.
    items: VecDeque<Out>,
    /// SSE: the outputs in the wire format.
    bytes: BytesMut,
    /// Outputs waiting (either form).
    queued: usize,
    /// Engine handles alive.
    senders: usize,
    writer_gone: bool,
    writer: Option<Waker>,
}

struct Shared {
    state: Mutex<State>,
    cap: usize,
    render: Option<Render>,
    /// Room was made, or the writer went away.
    room: Notify,
    /// The writer went away (not woken by every take, as `room` is).
    gone: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves plain data behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The engine's end. Clones count as engines: the writer's reads end once all are dropped.
pub(crate) struct OutTx(Arc<Shared>);

/// The writer's end.
pub(crate) struct OutRx(Arc<Shared>);

/// An outbox of at most `cap` outputs; SSE when `sse` names the topic and format.
pub(crate) fn outbox(cap: usize, sse: Option<(String, Format)>) -> (OutTx, OutRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: BytesMut::new(),
            queued: 0,
            senders: 1,
            writer_gone: false,
            writer: None,
        }),
        cap: cap.max(1),
        render: sse.map(|(topic, format)| Render { topic, format }),
        room: Notify::new(),
        gone: Notify::new(),
    });
    (OutTx(Arc::clone(&shared)), OutRx(shared))
}

/// An SSE buffer bigger than this is not kept once taken (a burst is over).
const KEEP_BYTES: usize = 64 * 1024;

impl Clone for OutTx {
    fn clone(&self) -> OutTx {
        self.0.lock().senders += 1;
        OutTx(Arc::clone(&self.0))
    }
}

impl Drop for OutTx {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.0.lock();
            s.senders -= 1;
            if s.senders == 0 {
                s.writer.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for OutRx {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.writer_gone = true;
        s.items.clear();
        s.bytes = BytesMut::new();
        drop(s);
        self.0.room.notify_waiters();
        self.0.gone.notify_waiters();
    }
}

impl OutTx {
    /// Pushes `out` if there is room.
    pub(crate) fn try_send(&self, out: Out) -> Result<(), Refused> {
        self.push(|s, render| match render {
            Some(r) => crate::streams::write_sse(&mut s.bytes, &r.topic, &out, r.format),
            None => s.items.push_back(out),
        })
    }

    /// Pushes `record` as an event whose id is `positions`: rendered straight into the
    /// buffer for SSE (no id string per event and connection).
    pub(crate) fn try_send_event(
        &self,
        record: &Arc<Record>,
        positions: &Positions,
    ) -> Result<(), Refused> {
        self.push(|s, render| match render {
            Some(r) => {
                crate::streams::write_sse_event(&mut s.bytes, &r.topic, record, positions, r.format)
            }
            None => s.items.push_back(Out::Event {
                record: Arc::clone(record),
                id: encode(positions),
            }),
        })
    }

    fn push(&self, put: impl FnOnce(&mut State, Option<&Render>)) -> Result<(), Refused> {
        let waker = {
            let mut s = self.0.lock();
            if s.writer_gone {
                return Err(Refused::Closed);
            }
            if s.queued >= self.0.cap {
                return Err(Refused::Full);
            }
            put(&mut s, self.0.render.as_ref());
            s.queued += 1;
            s.writer.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Pushes `out`, waiting for room; `Err` once the writer is gone.
    pub(crate) async fn send(&self, out: Out) -> Result<(), Refused> {
        self.wait_room(1).await;
        match self.try_send(out) {
            // The engine is the only pusher: room found stays room.
            Err(Refused::Full) => Err(Refused::Closed),
            r => r,
        }
    }

    /// Free places now.
    pub(crate) fn capacity(&self) -> usize {
        self.0.cap.saturating_sub(self.0.lock().queued)
    }

    pub(crate) fn max_capacity(&self) -> usize {
        self.0.cap
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.0.lock().writer_gone
    }

    /// Resolves once the writer is gone.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.0.gone.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once `n` places are free (at most `cap`) or the writer is gone.
    pub(crate) async fn wait_room(&self, n: usize) {
        let n = n.min(self.0.cap);
        loop {
            let notified = self.0.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.0.lock();
                if s.writer_gone || self.0.cap - s.queued.min(self.0.cap) >= n {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// What [`OutRx::take`] found.
pub(crate) struct Taken {
    /// SSE: everything buffered, in the wire format.
    pub(crate) bytes: Bytes,
    /// Every engine handle is gone: nothing more will come.
    pub(crate) ended: bool,
}

impl OutRx {
    /// Waits until something is buffered or the engine has ended; `true` for the former.
    pub(crate) async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            let mut s = self.0.lock();
            if s.queued > 0 {
                Poll::Ready(true)
            } else if s.senders == 0 {
                Poll::Ready(false)
            } else {
                s.writer = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// SSE: takes everything buffered.
    pub(crate) fn take(&mut self) -> Taken {
        let mut s = self.0.lock();
        let bytes = s.bytes.split().freeze();
        if s.bytes.capacity() > KEEP_BYTES {
            s.bytes = BytesMut::new();
        }
        s.queued = 0;
        let ended = s.senders == 0;
        drop(s);
        self.0.room.notify_waiters();
        Taken { bytes, ended }
    }

    /// WebSocket: the next output, waiting; `None` once the engine has ended and
    /// everything was read.
    pub(crate) async fn recv(&mut self) -> Option<Out> {
        if !self.ready().await {
            return None;
        }
        self.try_recv().ok().flatten()
    }

    /// WebSocket: the next output if one is buffered (`Ok(None)`: none yet); `Err` once
    /// the engine has ended and everything was read.
    pub(crate) fn try_recv(&mut self) -> Result<Option<Out>, ()> {
        let mut s = self.0.lock();
        match s.items.pop_front() {
            Some(out) => {
                s.queued = s.queued.saturating_sub(1);
                drop(s);
                self.0.room.notify_waiters();
                Ok(Some(out))
            }
            None if s.senders == 0 => Err(()),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64) -> Arc<Record> {
        Arc::new(Record {
            partition: 0,
            offset,
            timestamp: Some(1),
            key: None,
            value: Some(Bytes::from_static(b"{\"a\":1}")),
            headers: Vec::new(),
            rendered: Default::default(),
        })
    }

    #[tokio::test]
    async fn bounded_and_each_side_sees_the_other_go() {
        let (tx, mut rx) = outbox(2, Some(("t".into(), Format::Auto)));
        let mut at = Positions::new();
        at.insert(0, 1);
        assert_eq!(tx.try_send_event(&record(0), &at), Ok(()));
        at.insert(0, 2);
        assert_eq!(tx.try_send_event(&record(1), &at), Ok(()));
        assert_eq!(tx.try_send(Out::Heartbeat), Err(Refused::Full));
        assert_eq!(tx.capacity(), 0);
        assert!(rx.ready().await);
        let taken = rx.take();
        let text = String::from_utf8(taken.bytes.to_vec()).expect("utf-8");
        assert!(
            text.starts_with("id: 0:1\nevent: message\ndata: {"),
            "{text}"
        );
        assert!(text.contains("\n\nid: 0:2\nevent: message\n"), "{text}");
        assert!(!taken.ended);
        assert_eq!(tx.capacity(), 2);
        // Room made wakes a waiting engine.
        tx.try_send(Out::Heartbeat).expect("room");
        tx.try_send(Out::Heartbeat).expect("room");
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(Out::Heartbeat).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(&rx.take().bytes[..], b": heartbeat\n\n: heartbeat\n\n");
        assert_eq!(waiting.await.expect("join"), Ok(()));
        // The engine ends: the writer reads what is left, then learns it.
        drop(tx);
        assert!(rx.ready().await);
        let last = rx.take();
        assert_eq!(&last.bytes[..], b": heartbeat\n\n");
        assert!(last.ended);
        assert!(!rx.ready().await);
        // The writer goes: the engine sees it.
        let (tx, rx) = outbox(2, None);
        let gone = tokio::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        drop(rx);
        gone.await.expect("closed resolves");
        assert_eq!(tx.try_send(Out::Heartbeat), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn websocket_outboxes_queue_outputs_in_order() {
        let (tx, mut rx) = outbox(8, None);
        let mut at = Positions::new();
        at.insert(0, 5);
        tx.try_send_event(&record(4), &at).expect("room");
        tx.try_send(Out::Heartbeat).expect("room");
        match rx.recv().await {
            Some(Out::Event { id, record }) => {
                assert_eq!(id, "0:5");
                assert_eq!(record.offset, 4);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(rx.try_recv(), Ok(Some(Out::Heartbeat))));
        assert!(matches!(rx.try_recv(), Ok(None)));
        drop(tx);
        assert!(rx.try_recv().is_err());
        assert!(rx.recv().await.is_none());
    }
}
