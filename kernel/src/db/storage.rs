//! Queries of the `storage` table (plugins' key/value storage).

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::Store;
use crate::model::outbox::{Announcement, Queued};
use crate::error::{KernelError, Result};
use crate::model::quota::{over_budget, Charge, Written};

impl Store {
    // ---- storage -------------------------------------------------------------------------

    pub(crate) fn storage_get(&self, plugin: &str, key: &str) -> Result<Option<Value>> {
        let c = self.lock();
        let text: Option<String> = c
            .prepare_cached("SELECT value FROM storage WHERE plugin=?1 AND key=?2")
            .and_then(|mut st| st.query_row(params![plugin, key], |r| r.get(0)).optional())
            .map_err(|e| self.map_err(e))?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| KernelError::Corrupt(format!("storage {plugin}/{key}: {e}"))))
            .transpose()
    }

    pub(crate) fn storage_set(&self, plugin: &str, key: &str, value: &Value, charge: Charge<'_>) -> Result<Written> {
        Ok(self.storage_write(plugin, key, None, Some(value), charge, None)?.0)
    }

    pub(crate) fn storage_delete(&self, plugin: &str, key: &str) -> Result<bool> {
        let (written, _) = self.storage_write(plugin, key, None, None, Charge { owner: plugin, limit: None }, None)?;
        Ok(written == Written::Done)
    }

    /// Write (or, `new` none, delete) `key` in one immediate transaction: when `expected` is
    /// given, only if the value is now that (`None` inside: absent); when `charge` has a limit,
    /// only if what its owner holds stays within it (a write that shrinks is always let
    /// through). The running totals of the row's old and new owners change with it, and
    /// `event` (the change's announcement) is queued for the durable subscriptions it matches.
    fn storage_write(&self, plugin: &str, key: &str, expected: Option<Option<&Value>>, new: Option<&Value>, charge: Charge<'_>, event: Option<&Announcement<'_>>) -> Result<(Written, Queued)> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        let current: Option<(String, String)> = tx
            .prepare_cached("SELECT value, COALESCE(charged, plugin) FROM storage WHERE plugin=?1 AND key=?2")
            .and_then(|mut st| st.query_row(params![plugin, key], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(|e| self.map_err(e))?;
        if let Some(expected) = expected {
            let now: Option<Value> = current
                .as_ref()
                .map(|(t, _)| serde_json::from_str(t).map_err(|e| KernelError::Corrupt(format!("storage {plugin}/{key}: {e}"))))
                .transpose()?;
            if now.as_ref() != expected {
                return Ok((Written::Stale, Queued::default()));
            }
        }
        if expected.is_none() && current.is_none() && new.is_none() {
            // A delete of nothing.
            return Ok((Written::Stale, Queued::default()));
        }
        let old = current.as_ref().map(|(t, owner)| (size(key, t), owner.as_str()));
        let text = new.map(Value::to_string);
        if let (Some(t), Some(limit)) = (&text, charge.limit) {
            let used = usage(&tx, charge.owner).map_err(|e| self.map_err(e))?;
            let freed = old.filter(|(_, o)| *o == charge.owner).map_or(0, |(n, _)| n);
            if over_budget(used, freed, size(key, t), limit) {
                return Ok((Written::OverLimit { used }, Queued::default()));
            }
        }
        match &text {
            Some(t) => {
                let charged = (charge.owner != plugin).then_some(charge.owner);
                tx.prepare_cached("INSERT INTO storage(plugin, key, value, charged) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(plugin, key) DO UPDATE SET value=excluded.value, charged=excluded.charged")
                    .and_then(|mut st| st.execute(params![plugin, key, t, charged]))
            }
            None => tx.prepare_cached("DELETE FROM storage WHERE plugin=?1 AND key=?2").and_then(|mut st| st.execute(params![plugin, key])),
        }
        .map_err(|e| self.map_err(e))?;
        if let Some((n, owner)) = old {
            add_usage(&tx, owner, -(n as i64)).map_err(|e| self.map_err(e))?;
        }
        if let Some(t) = &text {
            add_usage(&tx, charge.owner, size(key, t) as i64).map_err(|e| self.map_err(e))?;
        }
        let queued = match event {
            Some(ev) => super::deliveries::queue(&tx, ev).map_err(|e| self.map_err(e))?,
            None => Queued::default(),
        };
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok((Written::Done, queued))
    }

    pub(crate) fn storage_has(&self, plugin: &str, key: &str) -> Result<bool> {
        let c = self.lock();
        c.prepare_cached("SELECT 1 FROM storage WHERE plugin=?1 AND key=?2")
            .and_then(|mut st| st.exists(params![plugin, key]))
            .map_err(|e| self.map_err(e))
    }

    pub(crate) fn storage_keys(&self, plugin: &str) -> Result<Vec<String>> {
        let c = self.lock();
        let mut st = c.prepare_cached("SELECT key FROM storage WHERE plugin=?1 ORDER BY key").map_err(|e| self.map_err(e))?;
        let keys = st.query_map([plugin], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(|e| self.map_err(e))?;
        Ok(keys)
    }

    /// Rows of `plugin` whose key starts with `prefix`, sorted by key, and the keys of rows
    /// whose value cannot be read back, with why.
    #[allow(clippy::type_complexity)]
    pub(crate) fn storage_scan(&self, plugin: &str, prefix: &str) -> Result<(Vec<(String, Value)>, Vec<(String, String)>)> {
        let c = self.lock();
        let rows: Vec<(String, String)> = match crate::util::prefix_end(prefix) {
            Some(end) => c
                .prepare_cached("SELECT key, value FROM storage WHERE plugin=?1 AND key>=?2 AND key<?3 ORDER BY key")
                .and_then(|mut st| st.query_map(params![plugin, prefix, end], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()),
            None => c
                .prepare_cached("SELECT key, value FROM storage WHERE plugin=?1 AND key>=?2 ORDER BY key")
                .and_then(|mut st| st.query_map(params![plugin, prefix], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()),
        }
        .map_err(|e| self.map_err(e))?;
        drop(c);
        let mut good = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        for (k, t) in rows.into_iter().filter(|(k, _)| k.starts_with(prefix)) {
            match serde_json::from_str(&t) {
                Ok(v) => good.push((k, v)),
                Err(e) => bad.push((k, e.to_string())),
            }
        }
        Ok((good, bad))
    }

    /// Swap `key`'s value from `expected` (None: absent) to `new` (None: delete) in one
    /// immediate transaction, so two processes cannot both win.
    pub(crate) fn storage_swap(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<&Value>, charge: Charge<'_>, event: Option<&Announcement<'_>>) -> Result<(Written, Queued)> {
        self.storage_write(plugin, key, Some(expected), new, charge, event)
    }

    /// The bytes of storage charged to `owner` (its own keys, and what engines keep for it).
    pub(crate) fn storage_usage(&self, owner: &str) -> Result<u64> {
        let c = self.lock();
        usage(&c, owner).map_err(|e| self.map_err(e))
    }

    /// Charge `plugin`'s rows under `prefix` that are charged to `plugin` itself to the owner
    /// `owner_of` names for each key (rows written before charges existed); returns how many.
    pub(crate) fn storage_recharge(&self, plugin: &str, prefix: &str, owner_of: &dyn Fn(&str) -> Option<String>) -> Result<usize> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        let rows: Vec<(String, i64)> = tx
            .prepare("SELECT key, length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) FROM storage WHERE plugin=?1 AND charged IS NULL AND substr(key, 1, length(?2))=?2")
            .and_then(|mut st| st.query_map(params![plugin, prefix], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(|e| self.map_err(e))?;
        let mut n = 0;
        for (key, bytes) in rows {
            let Some(owner) = owner_of(&key).filter(|o| o != plugin) else { continue };
            tx.execute("UPDATE storage SET charged=?3 WHERE plugin=?1 AND key=?2", params![plugin, key, owner]).map_err(|e| self.map_err(e))?;
            add_usage(&tx, plugin, -bytes).map_err(|e| self.map_err(e))?;
            add_usage(&tx, &owner, bytes).map_err(|e| self.map_err(e))?;
            n += 1;
        }
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(n)
    }

    pub(crate) fn storage_clear(&self, plugin: &str) -> Result<usize> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        let owed: Vec<(String, i64)> = tx
            .prepare("SELECT COALESCE(charged, plugin), SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))) FROM storage WHERE plugin=?1 GROUP BY 1")
            .and_then(|mut st| st.query_map([plugin], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(|e| self.map_err(e))?;
        for (owner, bytes) in owed {
            add_usage(&tx, &owner, -bytes).map_err(|e| self.map_err(e))?;
        }
        let n = tx.execute("DELETE FROM storage WHERE plugin=?1", [plugin]).map_err(|e| self.map_err(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(n)
    }
}

/// The bytes a row takes: its key and its value as stored.
fn size(key: &str, text: &str) -> u64 {
    (key.len() + text.len()) as u64
}

fn usage(c: &rusqlite::Connection, owner: &str) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT bytes FROM storage_usage WHERE owner=?1")?.query_row([owner], |r| r.get::<_, i64>(0)).optional().map(|n| n.unwrap_or(0).max(0) as u64)
}

fn add_usage(c: &rusqlite::Connection, owner: &str, delta: i64) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO storage_usage(owner, bytes) VALUES (?1, MAX(?2, 0)) ON CONFLICT(owner) DO UPDATE SET bytes=MAX(bytes + ?2, 0)")?.execute(params![owner, delta])?;
    Ok(())
}
