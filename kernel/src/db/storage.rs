//! Queries of the `storage` table (plugins' key/value storage).

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::Store;
use crate::error::{KernelError, Result};

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

    pub(crate) fn storage_set(&self, plugin: &str, key: &str, value: &Value) -> Result<()> {
        let text = value.to_string();
        let c = self.lock();
        c.prepare_cached("INSERT INTO storage(plugin, key, value) VALUES (?1, ?2, ?3) ON CONFLICT(plugin, key) DO UPDATE SET value=excluded.value")
            .and_then(|mut st| st.execute(params![plugin, key, text]))
            .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    pub(crate) fn storage_delete(&self, plugin: &str, key: &str) -> Result<bool> {
        let c = self.lock();
        let n = c
            .prepare_cached("DELETE FROM storage WHERE plugin=?1 AND key=?2")
            .and_then(|mut st| st.execute(params![plugin, key]))
            .map_err(|e| self.map_err(e))?;
        Ok(n > 0)
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
    pub(crate) fn storage_swap(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<&Value>) -> Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        let current: Option<String> = tx
            .prepare_cached("SELECT value FROM storage WHERE plugin=?1 AND key=?2")
            .and_then(|mut st| st.query_row(params![plugin, key], |r| r.get(0)).optional())
            .map_err(|e| self.map_err(e))?;
        let current: Option<Value> =
            current.map(|t| serde_json::from_str(&t).map_err(|e| KernelError::Corrupt(format!("storage {plugin}/{key}: {e}")))).transpose()?;
        if current.as_ref() != expected {
            return Ok(false);
        }
        match new {
            Some(v) => tx
                .prepare_cached("INSERT INTO storage(plugin, key, value) VALUES (?1, ?2, ?3) ON CONFLICT(plugin, key) DO UPDATE SET value=excluded.value")
                .and_then(|mut st| st.execute(params![plugin, key, v.to_string()])),
            None => tx.prepare_cached("DELETE FROM storage WHERE plugin=?1 AND key=?2").and_then(|mut st| st.execute(params![plugin, key])),
        }
        .map_err(|e| self.map_err(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(true)
    }

    pub(crate) fn storage_usage(&self, plugin: &str) -> Result<u64> {
        let c = self.lock();
        c.prepare_cached("SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0) FROM storage WHERE plugin=?1")
            .and_then(|mut st| st.query_row([plugin], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.map_err(e))
    }

    pub(crate) fn storage_clear(&self, plugin: &str) -> Result<usize> {
        let c = self.lock();
        c.execute("DELETE FROM storage WHERE plugin=?1", [plugin]).map_err(|e| self.map_err(e))
    }

}
