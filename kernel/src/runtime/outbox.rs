//! The way into the delivery queue: which topics some durable subscription wants, queuing an
//! event for them, and waking the runner's delivery loop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::db::{Store, Writer};
use crate::error::Result;
use crate::model::audit::{Actor, AuditAction};
use crate::model::outbox::{Announcement, Queued};
use crate::model::permission::Pattern;

/// How long this process trusts what it read of the durable subscriptions before reading them
/// again (another process's plugins may have subscribed meanwhile). A change made here is seen
/// at once.
const PATTERNS_FOR: Duration = Duration::from_millis(500);

pub(crate) struct Outbox {
    store: Arc<Store>,
    writer: Writer,
    patterns: Mutex<Option<(Instant, Arc<[Pattern]>)>>,
    /// When a full subscription was last audited, so a backlog is one record a minute.
    full_audited: Mutex<std::collections::HashMap<(String, String), Instant>>,
    /// Told when this process queued something, for its delivery loop.
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

impl Outbox {
    pub(crate) fn new(store: Arc<Store>, writer: Writer) -> Outbox {
        Outbox { store, writer, patterns: Mutex::new(None), full_audited: Mutex::default(), wake: Arc::new(tokio::sync::Notify::new()) }
    }

    /// Forget what was read of the subscriptions (this process changed them).
    pub(crate) fn changed(&self) {
        *self.patterns.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether some durable subscription may want `topic`: when not, nothing is queued and
    /// no transaction is spent. A wrong "yes" costs a query; a "no" is at most
    /// [`PATTERNS_FOR`] old.
    pub(crate) fn wanted(&self, topic: &str) -> bool {
        let mut cached = self.patterns.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cached.as_ref().filter(|(at, _)| at.elapsed() < PATTERNS_FOR).map(|(_, p)| p.clone());
        let patterns = match fresh {
            Some(p) => p,
            None => match self.store.subscriptions() {
                Ok(rows) => {
                    let p: Arc<[Pattern]> = rows.iter().filter_map(|r| r.pattern.parse().ok()).collect();
                    *cached = Some((Instant::now(), p.clone()));
                    p
                }
                // Cannot tell: ask the database with the write.
                Err(_) => return true,
            },
        };
        patterns.iter().any(|p| p.matches(topic))
    }

    /// Queue `event` in a transaction of its own.
    pub(crate) fn queue(&self, event: &Announcement<'_>) -> Result<()> {
        let queued = self.store.queue_event(event)?;
        self.queued(event.topic, &queued);
        Ok(())
    }

    /// What a queue did: the delivery loop is woken, and a subscription that had no room is
    /// audited, once a minute (the event still reached every other).
    pub(crate) fn queued(&self, topic: &str, queued: &Queued) {
        if queued.queued > 0 {
            self.wake.notify_one();
        }
        for (plugin, name) in &queued.full {
            {
                let mut last = self.full_audited.lock().unwrap_or_else(|p| p.into_inner());
                let key = (plugin.clone(), name.clone());
                if last.get(&key).is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
                    continue;
                }
                last.insert(key, Instant::now());
            }
            self.writer.audit(
                &Actor::System,
                Some(plugin),
                AuditAction::LimitExceeded,
                json!({ "what": format!("deliveries for subscription `{name}`"), "reason": format!("`{topic}` was not queued: {} deliveries wait for this subscription already", crate::db::MAX_PENDING) }),
            );
        }
    }
}
