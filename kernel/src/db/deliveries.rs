//! Queries of the `subscriptions` and `deliveries` tables: the durable half of the event bus.
//!
//! A durable subscription is a row that outlives the process whose plugin made it. An event it
//! matches is queued as a delivery row in the transaction that records the change causing the
//! event, by whichever process makes the change; the runner takes rows in id order, hands each
//! to the live handler and deletes it once the handler succeeded. A row whose handler did not
//! finish (a failure, a killed process) is delivered again with the same id.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::Store;
use crate::error::Result;
use crate::model::outbox::{Announcement, Queued};
use crate::model::permission::Pattern;

/// Deliveries kept waiting per subscription at most: past it, new events are not queued for
/// that subscription (the emitter is not refused; the refusal is audited).
pub(crate) const MAX_PENDING: i64 = 100_000;

/// One waiting delivery.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryRow {
    pub(crate) id: i64,
    pub(crate) topic: String,
    pub(crate) payload: String,
    pub(crate) source: String,
    pub(crate) depth: u32,
    pub(crate) attempts: u32,
}

/// A durable subscription and how many deliveries wait for it (`ready`: due now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionRow {
    pub(crate) plugin: String,
    pub(crate) name: String,
    pub(crate) pattern: String,
    pub(crate) pending: i64,
}

/// Queue `ev` for every durable subscription it matches, inside the caller's transaction.
pub(crate) fn queue(c: &Connection, ev: &Announcement<'_>) -> rusqlite::Result<Queued> {
    let subs: Vec<(String, String, String, i64)> = c
        .prepare_cached("SELECT plugin, name, pattern, pending FROM subscriptions")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Queued::default();
    for (plugin, name, pattern, pending) in subs {
        let matches = pattern.parse::<Pattern>().is_ok_and(|p| p.matches(ev.topic));
        if !matches {
            continue;
        }
        if pending >= MAX_PENDING {
            out.full.push((plugin, name));
            continue;
        }
        c.prepare_cached("INSERT INTO deliveries(plugin, name, topic, payload, source, depth, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
            .execute(params![plugin, name, ev.topic, ev.payload, ev.source, ev.depth, ev.now])?;
        c.prepare_cached("UPDATE subscriptions SET pending = pending + 1 WHERE plugin=?1 AND name=?2")?.execute(params![plugin, name])?;
        out.queued += 1;
    }
    Ok(out)
}

impl Store {
    /// Record (or keep) `plugin`'s durable subscription `name` to `pattern`. The deliveries
    /// already waiting for it stay.
    pub(crate) fn subscribe_durably(&self, plugin: &str, name: &str, pattern: &str, now: i64) -> Result<()> {
        let c = self.lock();
        c.prepare_cached("INSERT INTO subscriptions(plugin, name, pattern, since) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(plugin, name) DO UPDATE SET pattern=excluded.pattern")
            .and_then(|mut st| st.execute(params![plugin, name, pattern, now]))
            .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// End `plugin`'s durable subscriptions, all of them or those not named in `keep`, with the
    /// deliveries waiting for them; returns how many deliveries went with them.
    pub(crate) fn end_subscriptions(&self, plugin: &str, keep: Option<&[String]>) -> Result<usize> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        let names: Vec<String> = tx
            .prepare_cached("SELECT name FROM subscriptions WHERE plugin=?1")
            .and_then(|mut st| st.query_map([plugin], |r| r.get(0))?.collect())
            .map_err(|e| self.map_err(e))?;
        let mut dropped = 0;
        for name in names.iter().filter(|n| !keep.is_some_and(|k| k.contains(n))) {
            dropped += tx.execute("DELETE FROM deliveries WHERE plugin=?1 AND name=?2", params![plugin, name]).map_err(|e| self.map_err(e))?;
            tx.execute("DELETE FROM subscriptions WHERE plugin=?1 AND name=?2", params![plugin, name]).map_err(|e| self.map_err(e))?;
        }
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(dropped)
    }

    /// End `plugin`'s durable subscription `name` with the deliveries waiting for it; returns
    /// how many went with it.
    pub(crate) fn end_subscription(&self, plugin: &str, name: &str) -> Result<usize> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        let dropped = tx.execute("DELETE FROM deliveries WHERE plugin=?1 AND name=?2", params![plugin, name]).map_err(|e| self.map_err(e))?;
        tx.execute("DELETE FROM subscriptions WHERE plugin=?1 AND name=?2", params![plugin, name]).map_err(|e| self.map_err(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(dropped)
    }

    /// Queue `ev` for the durable subscriptions it matches, in a transaction of its own (an
    /// event no stored change caused).
    pub(crate) fn queue_event(&self, ev: &Announcement<'_>) -> Result<Queued> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        let queued = queue(&tx, ev).map_err(|e| self.map_err(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(queued)
    }

    /// Up to `limit` deliveries of `plugin`'s subscription `name` due at `now`, oldest first.
    pub(crate) fn due_deliveries(&self, plugin: &str, name: &str, now: i64, limit: usize) -> Result<Vec<DeliveryRow>> {
        let c = self.lock();
        c.prepare_cached("SELECT id, topic, payload, source, depth, attempts FROM deliveries WHERE plugin=?1 AND name=?2 AND next_at<=?3 ORDER BY id LIMIT ?4")
            .and_then(|mut st| {
                st.query_map(params![plugin, name, now, limit as i64], |r| {
                    Ok(DeliveryRow { id: r.get(0)?, topic: r.get(1)?, payload: r.get(2)?, source: r.get(3)?, depth: r.get(4)?, attempts: r.get(5)? })
                })?
                .collect()
            })
            .map_err(|e| self.map_err(e))
    }

    /// Delivery `id` of `plugin`'s subscription `name` is done: it goes.
    pub(crate) fn delivered(&self, plugin: &str, name: &str, id: i64) -> Result<()> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        let gone = tx.prepare_cached("DELETE FROM deliveries WHERE id=?1").and_then(|mut st| st.execute([id])).map_err(|e| self.map_err(e))?;
        if gone > 0 {
            tx.prepare_cached("UPDATE subscriptions SET pending = MAX(pending - 1, 0) WHERE plugin=?1 AND name=?2")
                .and_then(|mut st| st.execute(params![plugin, name]))
                .map_err(|e| self.map_err(e))?;
        }
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// Delivery `id` failed: tried again from `next_at`.
    pub(crate) fn delivery_failed(&self, id: i64, next_at: i64, error: &str) -> Result<()> {
        let c = self.lock();
        c.prepare_cached("UPDATE deliveries SET attempts = attempts + 1, next_at=?2, last_error=?3 WHERE id=?1")
            .and_then(|mut st| st.execute(params![id, next_at, error]))
            .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// Every durable subscription, with the deliveries waiting for it.
    pub(crate) fn subscriptions(&self) -> Result<Vec<SubscriptionRow>> {
        let c = self.lock();
        c.prepare_cached("SELECT plugin, name, pattern, pending FROM subscriptions ORDER BY plugin, name")
            .and_then(|mut st| st.query_map([], |r| Ok(SubscriptionRow { plugin: r.get(0)?, name: r.get(1)?, pattern: r.get(2)?, pending: r.get(3)? }))?.collect())
            .map_err(|e| self.map_err(e))
    }

    /// Whether any delivery of `plugin`'s subscription `name` is due at `now`.
    pub(crate) fn has_due(&self, plugin: &str, name: &str, now: i64) -> Result<bool> {
        let c = self.lock();
        c.prepare_cached("SELECT 1 FROM deliveries WHERE plugin=?1 AND name=?2 AND next_at<=?3 LIMIT 1")
            .and_then(|mut st| st.query_row(params![plugin, name, now], |_| Ok(())).optional())
            .map(|r| r.is_some())
            .map_err(|e| self.map_err(e))
    }
}
