//! `com.objectos.cache`: a shared in-memory cache offered as the `cache` service.
//!
//! - Every call names its caller's [`PluginContext`]; keys live in that plugin's namespace,
//!   so one plugin can neither read nor evict another's entries by name.
//! - Entries may carry a time to live. An expired entry is never returned: `get` checks the
//!   deadline, and expired entries are dropped when met.
//! - The cache is bounded in bytes (an estimate: key plus the value's JSON length plus a
//!   fixed per-entry overhead) and in entries; past either bound the least recently used
//!   entries are evicted, whichever plugin they belong to.
//! - Hit, miss, eviction and expiry counters are exported through the metrics plugin (the
//!   `metrics.cache` source service) and by [`Cache::stats`].
//!
//! Configuration (`objectos settings` / the console): `{"maxBytes": 67108864, "maxEntries": 100000}`.
//!
//! ```no_run
//! # fn run(ctx: objectos_kernel::PluginContext) -> objectos_kernel::Result<()> {
//! use objectos_kernel::serde_json;
//! use std::time::Duration;
//! let cache = ctx.services().get::<objectos_cache::Cache>("cache")?;
//! cache.set(&ctx, "rates:EUR", serde_json::json!(1.08), Some(Duration::from_secs(60)))?;
//! assert_eq!(cache.get(&ctx, "rates:EUR"), Some(serde_json::json!(1.08)));
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use objectos_kernel::serde_json::{self, Value};
use objectos_kernel::{HookResult, Kernel, KernelError, Plugin, PluginContext, Result, async_trait};
use objectos_metrics::{family, label, MetricSource};

/// The plugin's id.
pub const ID: &str = "com.objectos.cache";
/// The service name.
pub const SERVICE: &str = "cache";
/// The embedded manifest.
pub const MANIFEST: &str = include_str!("../plugin.json");
/// The plugin's translations (English and Simplified Chinese).
pub const TRANSLATIONS: &[(&str, &str)] = &[("translations/en.json", include_str!("../translations/en.json")), ("translations/zh-CN.json", include_str!("../translations/zh-CN.json"))];
/// Default memory bound.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;
/// Default entry bound.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// The longest key.
pub const MAX_KEY_LEN: usize = 512;
/// Bytes counted per entry on top of its key and value.
const ENTRY_OVERHEAD: usize = 96;

/// Register the plugin with a kernel (before `start`).
pub fn register(kernel: &Kernel) -> Result<()> {
    kernel.register_builtin_with_files(MANIFEST, Arc::new(CachePlugin), TRANSLATIONS)
}

/// The plugin's code. The cache itself lives from enable to disable.
#[derive(Default)]
pub struct CachePlugin;

#[async_trait]
impl Plugin for CachePlugin {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        let bound = |key: &str, default: usize| ctx.config_u64(key, default as u64, u64::MAX).map(|n| n as usize);
        let cache = Arc::new(Cache::new(bound("maxBytes", DEFAULT_MAX_BYTES)?, bound("maxEntries", DEFAULT_MAX_ENTRIES)?));
        ctx.services().register_arc(SERVICE, cache.clone())?;
        ctx.services().expose(SERVICE, cache.clone())?;
        let source = cache.clone();
        ctx.services().register("metrics.cache", MetricSource::new(move || source.render_metrics()))?;
        let on_uninstall = cache.clone();
        ctx.events().on("plugin.uninstalled", move |e| {
            if let Some(id) = e.payload.get("plugin").and_then(Value::as_str) {
                on_uninstall.clear_namespace(id);
            }
            Ok(())
        })?;
        ctx.logger().info(format!("cache ready: at most {} bytes in {} entries", cache.max_bytes, cache.max_entries));
        Ok(())
    }
}

struct Entry {
    value: Value,
    expires: Option<Instant>,
    size: usize,
}

struct Lru {
    entries: LruCache<String, Entry>,
    bytes: usize,
}

/// Counters since the cache was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Gets that found a live entry.
    pub hits: u64,
    /// Gets that found nothing or an expired entry.
    pub misses: u64,
    /// Entries evicted to stay within the bounds.
    pub evictions: u64,
    /// Entries dropped because their time to live ran out.
    pub expirations: u64,
    /// Entries now held (some may have expired and not been met yet).
    pub entries: u64,
    /// Estimated bytes now held.
    pub bytes: u64,
    /// The memory bound.
    pub max_bytes: u64,
}

/// The `cache` service.
pub struct Cache {
    lru: Mutex<Lru>,
    max_bytes: usize,
    max_entries: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

fn slot(ns: &str, key: &str) -> String {
    // Keys have no control characters, so NUL cannot occur in either part.
    let mut s = String::with_capacity(ns.len() + 1 + key.len());
    s.push_str(ns);
    s.push('\0');
    s.push_str(key);
    s
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(KernelError::InvalidName { name: key.chars().take(64).collect(), reason: format!("cache keys are 1 to {MAX_KEY_LEN} bytes without control characters") });
    }
    Ok(())
}

impl Cache {
    /// An empty cache with these bounds.
    pub fn new(max_bytes: usize, max_entries: usize) -> Self {
        Cache {
            lru: Mutex::new(Lru { entries: LruCache::unbounded(), bytes: 0 }),
            max_bytes,
            max_entries: max_entries.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller's live value for `key`, marking it recently used.
    pub fn get(&self, caller: &PluginContext, key: &str) -> Option<Value> {
        let slot = slot(caller.id(), key);
        let now = Instant::now();
        let mut lru = self.lock();
        let expired = match lru.entries.get(&slot) {
            None => {
                drop(lru);
                self.misses.fetch_add(1, Relaxed);
                return None;
            }
            Some(e) if e.expires.is_some_and(|t| t <= now) => true,
            Some(e) => {
                let v = e.value.clone();
                drop(lru);
                self.hits.fetch_add(1, Relaxed);
                return Some(v);
            }
        };
        if expired {
            if let Some(e) = lru.entries.pop(&slot) {
                lru.bytes -= e.size;
            }
            drop(lru);
            self.expirations.fetch_add(1, Relaxed);
        }
        self.misses.fetch_add(1, Relaxed);
        None
    }

    /// Store `value` under the caller's `key`, replacing any entry, living for `ttl` when
    /// given. Fails when the key is malformed or the entry alone exceeds the memory bound.
    pub fn set(&self, caller: &PluginContext, key: &str, value: Value, ttl: Option<Duration>) -> Result<()> {
        check_key(key)?;
        let slot = slot(caller.id(), key);
        let size = slot.len() + serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0) + ENTRY_OVERHEAD;
        if size > self.max_bytes {
            return Err(KernelError::service(SERVICE, format!("entry {key:?} of {} is {size} bytes, more than the whole cache may hold ({} bytes)", caller.id(), self.max_bytes)));
        }
        let expires = ttl.map(|d| Instant::now() + d);
        let mut lru = self.lock();
        if let Some(old) = lru.entries.put(slot, Entry { value, expires, size }) {
            lru.bytes -= old.size;
        }
        lru.bytes += size;
        let mut evicted = 0;
        while lru.bytes > self.max_bytes || lru.entries.len() > self.max_entries {
            match lru.entries.pop_lru() {
                Some((_, e)) => {
                    lru.bytes -= e.size;
                    evicted += 1;
                }
                None => break,
            }
        }
        drop(lru);
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Relaxed);
        }
        Ok(())
    }

    /// Remove the caller's `key`; true when a live entry was there.
    pub fn delete(&self, caller: &PluginContext, key: &str) -> bool {
        let slot = slot(caller.id(), key);
        let mut lru = self.lock();
        match lru.entries.pop(&slot) {
            Some(e) => {
                lru.bytes -= e.size;
                e.expires.is_none_or(|t| t > Instant::now())
            }
            None => false,
        }
    }

    /// Remove every entry of the caller; returns how many there were.
    pub fn clear(&self, caller: &PluginContext) -> usize {
        self.clear_namespace(caller.id())
    }

    fn clear_namespace(&self, ns: &str) -> usize {
        let prefix = slot(ns, "");
        let mut lru = self.lock();
        let doomed: Vec<String> = lru.entries.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
        for k in &doomed {
            if let Some(e) = lru.entries.pop(k) {
                lru.bytes -= e.size;
            }
        }
        doomed.len()
    }

    /// The counters and current size.
    pub fn stats(&self) -> CacheStats {
        let (entries, bytes) = {
            let lru = self.lock();
            (lru.entries.len() as u64, lru.bytes as u64)
        };
        CacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            expirations: self.expirations.load(Relaxed),
            entries,
            bytes,
            max_bytes: self.max_bytes as u64,
        }
    }

    fn render_metrics(&self) -> String {
        let s = self.stats();
        let mut out = String::new();
        let plugin = format!("plugin=\"{}\"", label(ID));
        let one = |v: u64| vec![(plugin.clone(), v as f64)];
        family(&mut out, "objectos_cache_hits_total", "counter", "Cache gets that found a live entry.", &one(s.hits));
        family(&mut out, "objectos_cache_misses_total", "counter", "Cache gets that found nothing or an expired entry.", &one(s.misses));
        family(&mut out, "objectos_cache_evictions_total", "counter", "Cache entries evicted to stay within the memory or entry bound.", &one(s.evictions));
        family(&mut out, "objectos_cache_expirations_total", "counter", "Cache entries dropped when their time to live ran out.", &one(s.expirations));
        family(&mut out, "objectos_cache_entries", "gauge", "Cache entries held.", &one(s.entries));
        family(&mut out, "objectos_cache_bytes", "gauge", "Estimated bytes held by the cache.", &one(s.bytes));
        family(&mut out, "objectos_cache_max_bytes", "gauge", "The cache's memory bound.", &one(s.max_bytes));
        out
    }
}

/// `cache` for code in the sandbox: `get {key}` (the value or null), `set {key, value,
/// ttlMs?}`, `delete {key}`; each caller has its own keys.
impl objectos_kernel::plugin::JsonService for Cache {
    fn call(&self, caller: &PluginContext, method: &str, args: Value) -> Result<Value> {
        use objectos_kernel::plugin::{no_method, str_arg};
        let key = || str_arg(SERVICE, method, &args, "key");
        match method {
            "get" => Ok(self.get(caller, key()?).unwrap_or(Value::Null)),
            "set" => {
                let ttl = args.get("ttlMs").and_then(Value::as_u64).map(Duration::from_millis);
                self.set(caller, key()?, args.get("value").cloned().unwrap_or(Value::Null), ttl)?;
                Ok(Value::Null)
            }
            "delete" => Ok(Value::Bool(self.delete(caller, key()?))),
            _ => Err(no_method(SERVICE, method, &["get", "set", "delete"])),
        }
    }
}
