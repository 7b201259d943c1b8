//! Per-plugin key/value storage of JSON values. Every call names the plugin; the plugin-facing
//! facade (`PluginContext::storage()`, above this module) binds it, so a plugin cannot reach another's keys.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::db::{Store, Writer};
use crate::error::Result;
use crate::model::log::{Level, LogRecord};
use crate::util::now_ms;

pub use crate::model::outbox::{Announcement, Queued};
pub use crate::model::quota::{budget_reason, over_budget, Charge, Written};

/// A storage backend. Calls are synchronous and short (a SQLite transaction in WAL mode, or
/// a hash-map operation). Each row is charged to an owner, whose running total
/// ([`StorageBackend::usage`]) changes with every write, in the same transaction: checking a
/// limit costs the same whatever is stored.
pub trait StorageBackend: Send + Sync + 'static {
    /// Read a value.
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Value>>;
    /// Write a value, charged to `charge.owner` (never [`Written::Stale`]).
    fn set(&self, plugin: &str, key: &str, value: Value, charge: Charge<'_>) -> Result<Written>;
    /// Delete; true when the key existed.
    fn delete(&self, plugin: &str, key: &str) -> Result<bool>;
    /// Does the key exist?
    fn has(&self, plugin: &str, key: &str) -> Result<bool>;
    /// All keys, sorted.
    fn keys(&self, plugin: &str) -> Result<Vec<String>>;
    /// Delete every key; returns how many.
    fn clear(&self, plugin: &str) -> Result<usize>;
    /// Every key starting with `prefix` with its value, sorted by key.
    fn scan(&self, plugin: &str, prefix: &str) -> Result<Vec<(String, Value)>>;
    /// Atomically replace `key`'s value with `new` (None deletes it), charged to
    /// `charge.owner`, if it is now `expected` (None: absent). Atomic across processes for the
    /// SQLite backend.
    fn swap(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<Value>, charge: Charge<'_>) -> Result<Written>;
    /// [`StorageBackend::swap`] that also queues `event` (the change's announcement) for the
    /// durable subscriptions it matches, in the same transaction when the backend has them.
    /// `None` for the queue means the backend did not queue it: the kernel then queues it
    /// right after a write that was done.
    fn swap_announcing(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<Value>, charge: Charge<'_>, event: &Announcement<'_>) -> Result<(Written, Option<Queued>)> {
        let _ = event;
        Ok((self.swap(plugin, key, expected, new, charge)?, None))
    }
    /// Bytes charged to `owner` (keys and values as JSON text): its own keys, and what
    /// engines keep for it.
    fn usage(&self, owner: &str) -> Result<u64>;
    /// Charge `plugin`'s rows under `prefix` that are charged to `plugin` itself to the owner
    /// `owner_of` names for each key (rows kept before charges existed); returns how many.
    fn recharge(&self, plugin: &str, prefix: &str, owner_of: &dyn Fn(&str) -> Option<String>) -> Result<usize>;
}

/// The bytes a row takes: its key and its value as JSON text.
fn size(key: &str, value: &Value) -> u64 {
    (key.len() + value.to_string().len()) as u64
}

/// In-memory backend for tests and benchmarks: one map per plugin (not shared key prefixes).
#[derive(Default)]
pub struct MemoryStorage {
    inner: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    /// Plugin -> key -> (value, owner charged when not the plugin).
    plugins: FxHashMap<String, FxHashMap<String, (Value, Option<String>)>>,
    usage: FxHashMap<String, u64>,
}

impl Memory {
    fn add(&mut self, owner: &str, delta: i64) {
        let n = self.usage.entry(owner.to_string()).or_default();
        *n = n.saturating_add_signed(delta);
    }

    /// The write `set` and `swap` share (see [`StorageBackend::swap`]).
    fn write(&mut self, plugin: &str, key: &str, expected: Option<Option<&Value>>, new: Option<Value>, charge: Charge<'_>) -> Written {
        let current = self.plugins.get(plugin).and_then(|p| p.get(key)).cloned();
        if let Some(expected) = expected {
            if current.as_ref().map(|(v, _)| v) != expected {
                return Written::Stale;
            }
        }
        if expected.is_none() && current.is_none() && new.is_none() {
            return Written::Stale;
        }
        let old = current.map(|(v, o)| (size(key, &v), o.unwrap_or_else(|| plugin.to_string())));
        if let (Some(v), Some(limit)) = (&new, charge.limit) {
            let used = self.usage.get(charge.owner).copied().unwrap_or(0);
            let freed = old.as_ref().filter(|(_, o)| o == charge.owner).map_or(0, |(n, _)| *n);
            if over_budget(used, freed, size(key, v), limit) {
                return Written::OverLimit { used };
            }
        }
        if let Some((n, owner)) = &old {
            self.add(owner, -(*n as i64));
        }
        let map = self.plugins.entry(plugin.to_string()).or_default();
        match new {
            Some(v) => {
                let n = size(key, &v);
                map.insert(key.to_string(), (v, (charge.owner != plugin).then(|| charge.owner.to_string())));
                self.add(charge.owner, n as i64);
            }
            None => {
                map.remove(key);
            }
        }
        Written::Done
    }
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Memory) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl StorageBackend for MemoryStorage {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Value>> {
        Ok(self.with(|m| m.plugins.get(plugin).and_then(|p| p.get(key)).map(|(v, _)| v.clone())))
    }
    fn set(&self, plugin: &str, key: &str, value: Value, charge: Charge<'_>) -> Result<Written> {
        Ok(self.with(|m| m.write(plugin, key, None, Some(value), charge)))
    }
    fn delete(&self, plugin: &str, key: &str) -> Result<bool> {
        Ok(self.with(|m| m.write(plugin, key, None, None, Charge { owner: plugin, limit: None })) == Written::Done)
    }
    fn has(&self, plugin: &str, key: &str) -> Result<bool> {
        Ok(self.with(|m| m.plugins.get(plugin).is_some_and(|p| p.contains_key(key))))
    }
    fn keys(&self, plugin: &str) -> Result<Vec<String>> {
        let mut keys: Vec<String> = self.with(|m| m.plugins.get(plugin).map(|p| p.keys().cloned().collect()).unwrap_or_default());
        keys.sort();
        Ok(keys)
    }
    fn clear(&self, plugin: &str) -> Result<usize> {
        Ok(self.with(|m| {
            let Some(rows) = m.plugins.remove(plugin) else { return 0 };
            for (k, (v, owner)) in &rows {
                m.add(owner.as_deref().unwrap_or(plugin), -(size(k, v) as i64));
            }
            rows.len()
        }))
    }
    fn scan(&self, plugin: &str, prefix: &str) -> Result<Vec<(String, Value)>> {
        let mut rows: Vec<(String, Value)> = self.with(|m| {
            m.plugins.get(plugin).map(|p| p.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, (v, _))| (k.clone(), v.clone())).collect()).unwrap_or_default()
        });
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }
    fn usage(&self, owner: &str) -> Result<u64> {
        Ok(self.with(|m| m.usage.get(owner).copied().unwrap_or(0)))
    }
    fn swap(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<Value>, charge: Charge<'_>) -> Result<Written> {
        Ok(self.with(|m| m.write(plugin, key, Some(expected), new, charge)))
    }
    fn recharge(&self, plugin: &str, prefix: &str, owner_of: &dyn Fn(&str) -> Option<String>) -> Result<usize> {
        Ok(self.with(|m| {
            let mut moved = Vec::new();
            if let Some(rows) = m.plugins.get_mut(plugin) {
                for (k, (v, owner)) in rows.iter_mut().filter(|(k, (_, o))| o.is_none() && k.starts_with(prefix)) {
                    if let Some(o) = owner_of(k).filter(|o| o != plugin) {
                        moved.push((size(k, v), o.clone()));
                        *owner = Some(o);
                    }
                }
            }
            for (n, o) in &moved {
                m.add(plugin, -(*n as i64));
                m.add(o, *n as i64);
            }
            moved.len()
        }))
    }
}

/// The SQLite backend: the `storage` table of the kernel's database.
pub(crate) struct SqliteStorage {
    pub(crate) store: Arc<Store>,
    /// To report rows a scan skips.
    pub(crate) writer: Writer,
}

impl StorageBackend for SqliteStorage {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Value>> {
        self.store.storage_get(plugin, key)
    }
    fn set(&self, plugin: &str, key: &str, value: Value, charge: Charge<'_>) -> Result<Written> {
        self.store.storage_set(plugin, key, &value, charge)
    }
    fn delete(&self, plugin: &str, key: &str) -> Result<bool> {
        self.store.storage_delete(plugin, key)
    }
    fn has(&self, plugin: &str, key: &str) -> Result<bool> {
        self.store.storage_has(plugin, key)
    }
    fn keys(&self, plugin: &str) -> Result<Vec<String>> {
        self.store.storage_keys(plugin)
    }
    fn clear(&self, plugin: &str) -> Result<usize> {
        self.store.storage_clear(plugin)
    }
    /// A row that cannot be read (written by an older version without the kernel's bounds, or
    /// edited by hand) is skipped and reported in the plugin's log, so one bad value cannot stop
    /// a plugin that scans at start.
    fn scan(&self, plugin: &str, prefix: &str) -> Result<Vec<(String, Value)>> {
        let (rows, unreadable) = self.store.storage_scan(plugin, prefix)?;
        for (key, reason) in unreadable {
            self.writer.log(LogRecord {
                id: 0,
                ts: now_ms(),
                plugin: plugin.into(),
                level: Level::Warn,
                target: "objectos::storage".into(),
                message: format!("storage key `{key}` cannot be read ({reason}); skipped. Delete it, or restore it from a backup"),
                fields: serde_json::json!({ "key": key }),
            });
        }
        Ok(rows)
    }
    fn swap(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<Value>, charge: Charge<'_>) -> Result<Written> {
        Ok(self.store.storage_swap(plugin, key, expected, new.as_ref(), charge, None)?.0)
    }
    fn swap_announcing(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<Value>, charge: Charge<'_>, event: &Announcement<'_>) -> Result<(Written, Option<Queued>)> {
        let (written, queued) = self.store.storage_swap(plugin, key, expected, new.as_ref(), charge, Some(event))?;
        Ok((written, Some(queued)))
    }
    fn usage(&self, owner: &str) -> Result<u64> {
        self.store.storage_usage(owner)
    }
    fn recharge(&self, plugin: &str, prefix: &str, owner_of: &dyn Fn(&str) -> Option<String>) -> Result<usize> {
        self.store.storage_recharge(plugin, prefix, owner_of)
    }
}
