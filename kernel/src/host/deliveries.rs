//! The runner's delivery loop: queued events go to the durable subscriptions live in this
//! process, each subscription's in id order, one at a time; a delivery leaves the queue only
//! once its handler succeeded, so a killed runner's unfinished ones are delivered again, with
//! the same id, by the next.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use super::*;
use crate::runtime::bus::{Delivery, Event};

/// Deliveries taken from the queue at a time, per subscription.
const BATCH: usize = 64;
/// How often the loop looks for deliveries other processes queued (this process's own wake
/// it at once).
const POLL: Duration = Duration::from_millis(200);
/// The longest a handler may take over one delivery before it counts as failed (and the
/// delivery is tried again later).
const HANDLER_LIMIT: Duration = Duration::from_secs(120);
/// The longest wait before a failed delivery is tried again (it doubles from one second).
const MOST_BACKOFF_MS: i64 = 10 * 60 * 1000;

/// When a delivery that failed `attempts` times is tried again, from `now`.
fn retry_at(now: i64, attempts: u32) -> i64 {
    now + (1000i64 << attempts.min(20)).min(MOST_BACKOFF_MS)
}

/// What the delivery loop shares with whoever waits for it to settle.
#[derive(Default)]
pub(super) struct Busy(AtomicUsize);

/// A worker at work, for [`Busy`].
struct Working(Arc<Busy>);

impl Working {
    fn start(busy: &Arc<Busy>) -> Working {
        busy.0.fetch_add(1, SeqCst);
        Working(busy.clone())
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, SeqCst);
    }
}

impl Kernel {
    /// Run the delivery loop until the returned task is aborted (the runner lease ends).
    pub(super) fn deliver_queued(&self) -> tokio::task::JoinHandle<()> {
        let core = self.0.core.clone();
        let busy = self.0.delivering.clone();
        tokio::spawn(async move {
            let mut workers: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
            let mut running: BTreeSet<(Arc<str>, Arc<str>)> = BTreeSet::new();
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(Arc<str>, Arc<str>)>();
            loop {
                while let Ok(key) = done_rx.try_recv() {
                    running.remove(&key);
                }
                while workers.try_join_next().is_some() {}
                let now = now_ms();
                for key in core.bus.durable_keys() {
                    if running.contains(&key) || !core.store.has_due(&key.0, &key.1, now).unwrap_or(false) {
                        continue;
                    }
                    running.insert(key.clone());
                    // Counted down when the worker ends, or is dropped unrun with the loop.
                    let working = Working::start(&busy);
                    let (core, done) = (core.clone(), done_tx.clone());
                    workers.spawn(async move {
                        let _working = working;
                        drain(&core, &key.0, &key.1).await;
                        let _ = done.send(key);
                    });
                }
                tokio::select! {
                    () = core.outbox.wake.notified() => {}
                    // A subscription's worker ended: look again at once, more may have come.
                    Some(key) = done_rx.recv() => {
                        running.remove(&key);
                    }
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        })
    }

    /// Wait until the deliveries due now for the subscriptions live in this process are done,
    /// at most `limit` (those that failed wait for their retry); true when they are. For a
    /// short-lived runner (an `objectos` command) that made a change, so the handlers it
    /// triggered run before it exits.
    pub async fn settle_deliveries(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let core = &self.0.core;
            let now = now_ms();
            let due = core.bus.durable_keys().iter().any(|(o, n)| core.store.has_due(o, n, now).unwrap_or(false));
            if !due && self.0.delivering.0.load(SeqCst) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            core.outbox.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Deliver what is due for `owner`'s subscription `name` until nothing is.
async fn drain(core: &Core, owner: &Arc<str>, name: &Arc<str>) {
    loop {
        let rows = match core.store.due_deliveries(owner, name, now_ms(), BATCH) {
            Ok(rows) if !rows.is_empty() => rows,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!("could not read the deliveries for {owner}'s subscription `{name}`: {e}");
                return;
            }
        };
        for row in rows {
            let payload = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
            let event = Event { topic: row.topic.as_str().into(), payload: Arc::new(payload), source: row.source.as_str().into(), depth: row.depth };
            let delivery = Delivery { id: Some(row.id), attempt: row.attempts + 1, event };
            let done = match core.bus.deliver(owner, name, delivery, HANDLER_LIMIT).await {
                // The subscription ended here (its plugin stopped): its deliveries wait.
                None => return,
                Some(Ok(())) => core.store.delivered(owner, name, row.id),
                Some(Err(message)) => core.store.delivery_failed(row.id, retry_at(now_ms(), row.attempts), &crate::util::clip(message, 4096)),
            };
            if let Err(e) = done {
                tracing::warn!("could not record delivery {} to {owner}: {e}", row.id);
                return;
            }
        }
    }
}
