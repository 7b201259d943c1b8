//! Per-plugin key/value storage of JSON values. Every call names the plugin; the plugin-facing
//! facade (`PluginContext::storage()`, above this module) binds it, so a plugin cannot reach another's keys.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::db::{Store, Writer};
use crate::error::Result;
use crate::model::log::{Level, LogRecord};
use crate::util::now_ms;

/// A storage backend. Calls are synchronous and short (a SQLite statement in WAL mode, or a
/// hash-map operation).
pub trait StorageBackend: Send + Sync + 'static {
    /// Read a value.
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Value>>;
    /// Write a value.
    fn set(&self, plugin: &str, key: &str, value: Value) -> Result<()>;
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
    /// Atomically replace `key`'s value with `new` (None deletes it) if it is now `expected`
    /// (None: absent); true when it did. Atomic across processes for the SQLite backend.
    fn swap(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<Value>) -> Result<bool>;
    /// Bytes the plugin's keys and values take (as JSON text), for its storage quota.
    fn usage(&self, plugin: &str) -> Result<u64>;
}

/// In-memory backend for tests and benchmarks: one map per plugin (not shared key prefixes).
#[derive(Default)]
pub struct MemoryStorage {
    plugins: Mutex<FxHashMap<String, FxHashMap<String, Value>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut FxHashMap<String, FxHashMap<String, Value>>) -> R) -> R {
        f(&mut self.plugins.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl StorageBackend for MemoryStorage {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Value>> {
        Ok(self.with(|m| m.get(plugin).and_then(|p| p.get(key)).cloned()))
    }
    fn set(&self, plugin: &str, key: &str, value: Value) -> Result<()> {
        self.with(|m| {
            let map = match m.get_mut(plugin) {
                Some(map) => map,
                None => m.entry(plugin.to_string()).or_default(),
            };
            match map.get_mut(key) {
                Some(slot) => *slot = value,
                None => {
                    map.insert(key.to_string(), value);
                }
            }
        });
        Ok(())
    }
    fn delete(&self, plugin: &str, key: &str) -> Result<bool> {
        Ok(self.with(|m| m.get_mut(plugin).is_some_and(|p| p.remove(key).is_some())))
    }
    fn has(&self, plugin: &str, key: &str) -> Result<bool> {
        Ok(self.with(|m| m.get(plugin).is_some_and(|p| p.contains_key(key))))
    }
    fn keys(&self, plugin: &str) -> Result<Vec<String>> {
        let mut keys: Vec<String> = self.with(|m| m.get(plugin).map(|p| p.keys().cloned().collect()).unwrap_or_default());
        keys.sort();
        Ok(keys)
    }
    fn clear(&self, plugin: &str) -> Result<usize> {
        Ok(self.with(|m| m.remove(plugin).map_or(0, |p| p.len())))
    }
    fn scan(&self, plugin: &str, prefix: &str) -> Result<Vec<(String, Value)>> {
        let mut rows: Vec<(String, Value)> = self.with(|m| {
            m.get(plugin).map(|p| p.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
        });
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }
    fn usage(&self, plugin: &str) -> Result<u64> {
        Ok(self.with(|m| m.get(plugin).map_or(0, |p| p.iter().map(|(k, v)| (k.len() + v.to_string().len()) as u64).sum())))
    }
    fn swap(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<Value>) -> Result<bool> {
        Ok(self.with(|m| {
            let map = m.entry(plugin.to_string()).or_default();
            if map.get(key) != expected {
                return false;
            }
            match new {
                Some(v) => {
                    map.insert(key.to_string(), v);
                }
                None => {
                    map.remove(key);
                }
            }
            true
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
    fn set(&self, plugin: &str, key: &str, value: Value) -> Result<()> {
        self.store.storage_set(plugin, key, &value)
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
    fn swap(&self, plugin: &str, key: &str, expected: Option<&Value>, new: Option<Value>) -> Result<bool> {
        self.store.storage_swap(plugin, key, expected, new.as_ref())
    }
    fn usage(&self, plugin: &str) -> Result<u64> {
        self.store.storage_usage(plugin)
    }
}
