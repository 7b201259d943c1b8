//! The one module that opens the database.
//!
//! One connection per kernel, behind a mutex, for short synchronous statements; a writer
//! thread that batches appends (audit records, log lines) into one transaction each; WAL
//! journal with `synchronous=NORMAL` (survives a process crash; a power loss may lose the
//! last transactions); `busy_timeout` so two processes on one data directory wait for each
//! other instead of failing, and `PRAGMA data_version` to notice the other's writes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::audit::{self, AuditDetail, AuditQuery, AuditRecord, NewAudit, Verification, Verifier, GENESIS};
use crate::error::{KernelError, Result};
use crate::kernel_event::KernelEvent;
use crate::lifecycle::State;
use crate::logging::{Level, LogRecord};
use crate::util::now_ms;

/// Schema migrations, in order; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: everything the kernel keeps.
    "CREATE TABLE plugins(
        id TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        manifest TEXT NOT NULL,
        state TEXT NOT NULL,
        desired TEXT NOT NULL,
        last_error TEXT,
        package_dir TEXT,
        new_permissions TEXT,
        installed_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE storage(
        plugin TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY(plugin, key)
    ) WITHOUT ROWID;
    CREATE TABLE grants(
        plugin TEXT NOT NULL,
        permission TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        granted_at INTEGER NOT NULL,
        PRIMARY KEY(plugin, permission)
    ) WITHOUT ROWID;
    CREATE TABLE plugin_config(plugin TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE logs(
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        plugin TEXT NOT NULL,
        level TEXT NOT NULL,
        target TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT
    );
    CREATE INDEX logs_by_plugin ON logs(plugin, id);
    CREATE TABLE audit(
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        plugin TEXT,
        action TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_by_plugin ON audit(plugin, id);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Log lines kept per plugin; older ones are trimmed as new ones arrive.
pub const LOG_RETENTION: i64 = 10_000;

/// Records queued for the writer before emitters wait (back-pressure, never loss).
const WRITER_QUEUE: usize = 16_384;
/// Records written per transaction at most.
const WRITER_BATCH: usize = 4_096;
/// How long the writer waits for the next record before committing what it has.
const COALESCE: Duration = Duration::from_micros(500);

/// A plugin row.
#[derive(Debug, Clone)]
pub(crate) struct PluginRow {
    pub(crate) id: String,
    pub(crate) version: String,
    pub(crate) kind: String,
    pub(crate) manifest: String,
    pub(crate) state: State,
    pub(crate) desired: State,
    pub(crate) last_error: Option<String>,
    pub(crate) package_dir: Option<String>,
    pub(crate) new_permissions: Vec<String>,
    pub(crate) installed_at: i64,
    pub(crate) updated_at: i64,
}

/// A stored grant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct GrantRow {
    /// The permission text.
    pub permission: String,
    /// `admin`, `system:policy`, ...
    pub granted_by: String,
    /// When (ms since epoch).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub granted_at: i64,
}

/// Filter for log queries.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this plugin.
    pub plugin: Option<String>,
    /// Only lines at or above this level.
    pub min_level: Option<Level>,
    /// Only lines whose message contains this text (case-insensitive).
    pub search: Option<String>,
    /// Only lines after this id (tailing).
    pub after_id: Option<i64>,
    /// The newest N, returned oldest first.
    pub limit: Option<u32>,
}

pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
    data_version: Mutex<i64>,
}

fn level_rank(l: &str) -> u8 {
    match l {
        "trace" => 0,
        "debug" => 1,
        "info" => 2,
        "warn" => 3,
        _ => 4,
    }
}

impl Store {
    /// Open (creating if needed) `data_dir/objectos.db`, or a private in-memory database.
    pub(crate) fn open(data_dir: Option<&Path>) -> Result<Store> {
        let (conn, path) = match data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| KernelError::io(dir, e))?;
                let path = dir.join("objectos.db");
                (Connection::open(&path)?, Some(path))
            }
            None => (Connection::open_in_memory()?, None),
        };
        let store = Store { conn: Arc::new(Mutex::new(conn)), path, data_version: Mutex::new(0) };
        store.configure()?;
        store.migrate()?;
        store.changed_externally();
        Ok(store)
    }

    fn busy_path(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| PathBuf::from(":memory:"))
    }

    pub(crate) fn map_err(&self, e: rusqlite::Error) -> KernelError {
        map_sqlite(e, &self.busy_path())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable (SQLite rolls back
        // an unfinished transaction), so a poisoned lock is recovered, not propagated.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn configure(&self) -> Result<()> {
        let c = self.lock();
        c.busy_timeout(Duration::from_secs(5)).map_err(|e| self.map_err(e))?;
        if self.path.is_some() {
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).map_err(|e| self.map_err(e))?;
        }
        c.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;").map_err(|e| self.map_err(e))?;
        // Plans must not depend on bound values. Without this, SQLite (built with STAT4)
        // recompiles every cached statement that has `ORDER BY` next to a `col = ?` each
        // time it is bound to a new value (about 50k instructions per call; it was a third
        // of a first start's instructions).
        c.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(|e| self.map_err(e))?;
        // Every statement the kernel caches fits (rusqlite keeps 16 by default; more are
        // evicted and compiled again).
        c.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    fn migrate(&self) -> Result<()> {
        let mut c = self.lock();
        let found: u32 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.map_err(e))?;
        if found > SCHEMA_VERSION {
            return Err(KernelError::SchemaTooNew { path: self.busy_path(), found, supported: SCHEMA_VERSION });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        // Re-read inside the write lock: another process may have migrated meanwhile.
        let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.map_err(e))?;
        for sql in MIGRATIONS.iter().skip(found as usize) {
            tx.execute_batch(sql).map_err(|e| self.map_err(e))?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(|e| self.map_err(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// True when another connection committed since the last call.
    pub(crate) fn changed_externally(&self) -> bool {
        let c = self.lock();
        let v: i64 = c.query_row("PRAGMA data_version", [], |r| r.get(0)).unwrap_or(0);
        let mut last = self.data_version.lock().unwrap_or_else(|p| p.into_inner());
        let changed = *last != 0 && *last != v;
        *last = v;
        changed
    }

    // ---- plugins -------------------------------------------------------------------------

    pub(crate) fn plugins(&self) -> Result<Vec<PluginRow>> {
        let c = self.lock();
        let mut st = c
            .prepare_cached("SELECT id, kind, manifest, state, desired, last_error, package_dir, installed_at, updated_at, new_permissions, version FROM plugins ORDER BY id")
            .map_err(|e| self.map_err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, String>(10)?,
                ))
            })
            .map_err(|e| self.map_err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, manifest, state, desired, last_error, package_dir, installed_at, updated_at, newp, version) = row.map_err(|e| self.map_err(e))?;
            let new_permissions = newp.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
            let state = state.parse().map_err(|e| KernelError::Corrupt(format!("plugins.state of {id}: {e}")))?;
            let desired = desired.parse().map_err(|e| KernelError::Corrupt(format!("plugins.desired of {id}: {e}")))?;
            out.push(PluginRow { id, version, kind, manifest, state, desired, last_error, package_dir, new_permissions, installed_at, updated_at });
        }
        Ok(out)
    }

    pub(crate) fn upsert_plugin(&self, row: &PluginRow) -> Result<()> {
        let c = self.lock();
        upsert_plugin(&c, row).map_err(|e| self.map_err(e))
    }

    /// Record new plugins, each granted exactly the permissions paired with it (grants left
    /// by an earlier install of the same id are dropped), in one transaction: a first start
    /// records every built-in at once. Returns each plugin's grants.
    pub(crate) fn insert_plugins(&self, new: &[(PluginRow, Vec<String>)], by: &str) -> Result<Vec<Vec<GrantRow>>> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.map_err(e))?;
        let now = now_ms();
        let mut out = Vec::with_capacity(new.len());
        for (row, permissions) in new {
            upsert_plugin(&tx, row).map_err(|e| self.map_err(e))?;
            tx.prepare_cached("DELETE FROM grants WHERE plugin=?1").and_then(|mut st| st.execute([&row.id])).map_err(|e| self.map_err(e))?;
            let mut granted: Vec<String> = permissions.clone();
            granted.sort();
            granted.dedup();
            insert_grants(&tx, &row.id, &granted, by, now).map_err(|e| self.map_err(e))?;
            out.push(granted.into_iter().map(|permission| GrantRow { permission, granted_by: by.into(), granted_at: now }).collect());
        }
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(out)
    }

    pub(crate) fn set_state(&self, id: &str, state: State, desired: State, last_error: Option<&str>) -> Result<()> {
        let c = self.lock();
        c.prepare_cached("UPDATE plugins SET state=?2, desired=?3, last_error=?4, updated_at=?5 WHERE id=?1")
            .and_then(|mut st| st.execute(params![id, state.as_str(), desired.as_str(), last_error, now_ms()]))
            .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// Remove a plugin and everything it owns except its logs and audit records.
    pub(crate) fn delete_plugin(&self, id: &str) -> Result<()> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.map_err(e))?;
        for sql in [
            "DELETE FROM plugins WHERE id=?1",
            "DELETE FROM storage WHERE plugin=?1",
            "DELETE FROM grants WHERE plugin=?1",
            "DELETE FROM plugin_config WHERE plugin=?1",
        ] {
            tx.execute(sql, [id]).map_err(|e| self.map_err(e))?;
        }
        tx.commit().map_err(|e| self.map_err(e))
    }

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

    pub(crate) fn storage_scan(&self, plugin: &str, prefix: &str) -> Result<Vec<(String, Value)>> {
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
        rows.into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, t)| {
                let v = serde_json::from_str(&t).map_err(|e| KernelError::Corrupt(format!("storage {plugin}/{k}: {e}")))?;
                Ok((k, v))
            })
            .collect()
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

    pub(crate) fn storage_clear(&self, plugin: &str) -> Result<usize> {
        let c = self.lock();
        c.execute("DELETE FROM storage WHERE plugin=?1", [plugin]).map_err(|e| self.map_err(e))
    }

    // ---- grants, config, settings ----------------------------------------------------------

    pub(crate) fn grants(&self, plugin: &str) -> Result<Vec<GrantRow>> {
        let c = self.lock();
        grants(&c, plugin).map_err(|e| self.map_err(e))
    }

    /// Grant `permissions` (those already granted keep their record); returns those added.
    pub(crate) fn grant(&self, plugin: &str, permissions: &[String], by: &str) -> Result<Vec<String>> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.map_err(e))?;
        let added = insert_grants(&tx, plugin, permissions, by, now_ms()).map_err(|e| self.map_err(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(added)
    }

    pub(crate) fn revoke(&self, plugin: &str, permissions: &[String]) -> Result<Vec<String>> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.map_err(e))?;
        let mut removed = Vec::new();
        for p in permissions {
            if tx.execute("DELETE FROM grants WHERE plugin=?1 AND permission=?2", params![plugin, p]).map_err(|e| self.map_err(e))? > 0 {
                removed.push(p.clone());
            }
        }
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(removed)
    }

    pub(crate) fn config(&self, plugin: &str) -> Result<Value> {
        let c = self.lock();
        let text: Option<String> = c
            .query_row("SELECT value FROM plugin_config WHERE plugin=?1", [plugin], |r| r.get(0))
            .optional()
            .map_err(|e| self.map_err(e))?;
        match text {
            None => Ok(Value::Object(Default::default())),
            Some(t) => serde_json::from_str(&t).map_err(|e| KernelError::Corrupt(format!("config of {plugin}: {e}"))),
        }
    }

    pub(crate) fn set_config(&self, plugin: &str, value: &Value) -> Result<()> {
        let c = self.lock();
        c.execute(
            "INSERT INTO plugin_config(plugin, value) VALUES (?1, ?2) ON CONFLICT(plugin) DO UPDATE SET value=excluded.value",
            params![plugin, value.to_string()],
        )
        .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    pub(crate) fn setting(&self, key: &str) -> Result<Option<String>> {
        let c = self.lock();
        c.query_row("SELECT value FROM settings WHERE key=?1", [key], |r| r.get(0)).optional().map_err(|e| self.map_err(e))
    }

    pub(crate) fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let c = self.lock();
        c.execute("INSERT INTO settings(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value", params![key, value])
            .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    // ---- logs ----------------------------------------------------------------------------

    pub(crate) fn logs(&self, q: &LogQuery) -> Result<Vec<LogRecord>> {
        let c = self.lock();
        let min = q.min_level.map(|l| level_rank(l.as_str())).unwrap_or(0);
        let search = q.search.as_deref().map(|s| format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        let mut st = c
            .prepare_cached(
                "SELECT id, ts, plugin, level, target, message, fields FROM logs
                 WHERE (?1 IS NULL OR plugin = ?1) AND id > ?2
                   AND (CASE level WHEN 'trace' THEN 0 WHEN 'debug' THEN 1 WHEN 'info' THEN 2 WHEN 'warn' THEN 3 ELSE 4 END) >= ?3
                   AND (?4 IS NULL OR message LIKE ?4 ESCAPE '\\')
                 ORDER BY id DESC LIMIT ?5",
            )
            .map_err(|e| self.map_err(e))?;
        let limit = q.limit.map(i64::from).unwrap_or(-1);
        let mut rows: Vec<LogRecord> = st
            .query_map(params![q.plugin, q.after_id.unwrap_or(0), min, search, limit], |r| {
                let level: String = r.get(3)?;
                let fields: Option<String> = r.get(6)?;
                Ok(LogRecord {
                    id: r.get(0)?,
                    ts: r.get(1)?,
                    plugin: r.get(2)?,
                    level: level.parse().unwrap_or(Level::Info),
                    target: r.get(4)?,
                    message: r.get(5)?,
                    fields: fields.and_then(|f| serde_json::from_str(&f).ok()).unwrap_or(Value::Null),
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.map_err(e))?;
        rows.reverse();
        Ok(rows)
    }

    // ---- audit ---------------------------------------------------------------------------

    pub(crate) fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let c = self.lock();
        let action_prefix = q.action.as_ref().filter(|a| a.ends_with('.')).map(|a| format!("{}%", a.replace('%', "")));
        let action_exact = q.action.as_ref().filter(|a| !a.ends_with('.'));
        let mut st = c
            .prepare_cached(
                "SELECT id, ts, actor, plugin, action, details, prev_hash, hash FROM audit
                 WHERE (?1 IS NULL OR plugin = ?1) AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR action LIKE ?3)
                   AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR ts >= ?5) AND id > ?6
                 ORDER BY id DESC LIMIT ?7",
            )
            .map_err(|e| self.map_err(e))?;
        let limit = q.limit.map(i64::from).unwrap_or(-1);
        let mut rows: Vec<AuditRecord> = st
            .query_map(params![q.plugin, action_exact, action_prefix, q.actor, q.since, q.after_id.unwrap_or(0), limit], audit_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.map_err(e))?;
        rows.reverse();
        Ok(rows)
    }

    /// Walk the whole chain.
    pub(crate) fn verify_audit(&self) -> Result<Verification> {
        let c = self.lock();
        let anchor = trim_anchor(&c).map_err(|e| self.map_err(e))?;
        let mut v = Verifier::new(anchor);
        let mut st = c
            .prepare("SELECT id, ts, actor, plugin, action, details, prev_hash, hash FROM audit ORDER BY id")
            .map_err(|e| self.map_err(e))?;
        let mut rows = st.query([]).map_err(|e| self.map_err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.map_err(e))? {
            let rec = audit_row(row).map_err(|e| self.map_err(e))?;
            let text: String = row.get(5).map_err(|e| self.map_err(e))?;
            if let Err(broken) = v.check(&rec, &text) {
                return Ok(broken);
            }
        }
        Ok(v.finish())
    }

    pub(crate) fn conn_handle(&self) -> Arc<Mutex<Connection>> {
        self.conn.clone()
    }
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    let details: String = r.get(5)?;
    Ok(AuditRecord {
        id: r.get(0)?,
        ts: r.get(1)?,
        actor: r.get(2)?,
        plugin: r.get(3)?,
        action: r.get(4)?,
        details: serde_json::from_str(&details).unwrap_or(Value::String(details)),
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

/// From the newest trim checkpoint: the first kept id and the hash it must link to.
fn trim_anchor(c: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    let details: Option<String> = c
        .query_row("SELECT details FROM audit WHERE action='audit.trimmed' ORDER BY id DESC LIMIT 1", [], |r| r.get(0))
        .optional()?;
    Ok(details.and_then(|d| {
        let v: Value = serde_json::from_str(&d).ok()?;
        Some((v.get("firstKeptId")?.as_i64()?, v.get("firstKeptPrevHash")?.as_str()?.to_string()))
    }))
}

pub(crate) fn map_sqlite(e: rusqlite::Error, path: &Path) -> KernelError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            KernelError::Busy { path: path.parent().map(Path::to_path_buf).unwrap_or_else(|| path.to_path_buf()) }
        }
        _ => KernelError::Database(e),
    }
}

// ---- the batching writer ---------------------------------------------------------------

enum Msg {
    Audit(NewAudit),
    Log(LogRecord),
    Trim { keep_from_id: i64, done: mpsc::Sender<Result<i64>> },
    Flush(mpsc::Sender<()>),
}

/// Handle to the writer thread. Cloning is cheap.
#[derive(Clone)]
pub(crate) struct Writer(Arc<WriterInner>);

pub(crate) struct WriterInner {
    tx: SyncSender<Msg>,
    detail: AtomicU8,
    closed: AtomicBool,
    pub(crate) events: broadcast::Sender<KernelEvent>,
}

impl Writer {
    pub(crate) fn start(store: &Store, events: broadcast::Sender<KernelEvent>) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::sync_channel(WRITER_QUEUE);
        let conn = store.conn_handle();
        let path = store.busy_path();
        let ev = events.clone();
        let handle = std::thread::Builder::new()
            .name("objectos-writer".into())
            .spawn(move || writer_loop(rx, conn, path, ev))
            .unwrap_or_else(|e| panic!("cannot start the database writer thread: {e}"));
        (Writer(Arc::new(WriterInner { tx, detail: AtomicU8::new(0), closed: AtomicBool::new(false), events })), handle)
    }

    pub(crate) fn from_inner(inner: Arc<WriterInner>) -> Writer {
        Writer(inner)
    }

    pub(crate) fn downgrade(&self) -> Weak<WriterInner> {
        Arc::downgrade(&self.0)
    }

    pub(crate) fn set_detail(&self, d: AuditDetail) {
        self.0.detail.store(if d == AuditDetail::Full { 1 } else { 0 }, Ordering::Relaxed);
    }

    pub(crate) fn detail(&self) -> AuditDetail {
        if self.0.detail.load(Ordering::Relaxed) == 1 { AuditDetail::Full } else { AuditDetail::Lifecycle }
    }

    pub(crate) fn full(&self) -> bool {
        self.0.detail.load(Ordering::Relaxed) == 1
    }

    pub(crate) fn events(&self) -> &broadcast::Sender<KernelEvent> {
        &self.0.events
    }

    /// Queue an audit record. Blocks only while the queue is full (back-pressure).
    pub(crate) fn audit(&self, actor: &str, plugin: Option<&str>, action: &str, details: Value) {
        self.send(Msg::Audit(NewAudit { ts: now_ms(), actor: actor.to_string(), plugin: plugin.map(str::to_string), action: action.to_string(), details }));
    }

    pub(crate) fn log(&self, rec: LogRecord) {
        self.send(Msg::Log(rec));
    }

    fn send(&self, msg: Msg) {
        if self.0.closed.load(Ordering::Relaxed) {
            return;
        }
        // `send` on a full sync_channel waits for room: back-pressure instead of loss.
        let _ = self.0.tx.send(msg);
    }

    /// Wait until everything queued before this call is committed.
    pub(crate) fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.0.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Trim audit records before `keep_from_id`, appending a checkpoint. Returns rows removed.
    pub(crate) fn trim_audit(&self, keep_from_id: i64) -> Result<i64> {
        let (tx, rx) = mpsc::channel();
        self.0.tx.send(Msg::Trim { keep_from_id, done: tx }).map_err(|_| KernelError::ShutDown)?;
        rx.recv().map_err(|_| KernelError::ShutDown)?
    }

    pub(crate) fn close(&self) {
        self.flush();
        self.0.closed.store(true, Ordering::Relaxed);
    }
}

fn upsert_plugin(c: &Connection, row: &PluginRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO plugins(id, version, kind, manifest, state, desired, last_error, package_dir, installed_at, updated_at, new_permissions)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT(id) DO UPDATE SET version=excluded.version, kind=excluded.kind, manifest=excluded.manifest,
           state=excluded.state, desired=excluded.desired, last_error=excluded.last_error,
           package_dir=excluded.package_dir, updated_at=excluded.updated_at, new_permissions=excluded.new_permissions",
    )?
    .execute(params![
        row.id,
        row.version,
        row.kind,
        row.manifest,
        row.state.as_str(),
        row.desired.as_str(),
        row.last_error,
        row.package_dir,
        row.installed_at,
        row.updated_at,
        serde_json::to_string(&row.new_permissions).unwrap_or_default()
    ])?;
    Ok(())
}

fn grants(c: &Connection, plugin: &str) -> rusqlite::Result<Vec<GrantRow>> {
    let mut st = c.prepare_cached("SELECT permission, granted_by, granted_at FROM grants WHERE plugin=?1 ORDER BY permission")?;
    let rows = st.query_map([plugin], |r| Ok(GrantRow { permission: r.get(0)?, granted_by: r.get(1)?, granted_at: r.get(2)? }))?;
    rows.collect()
}

fn insert_grants(c: &Connection, plugin: &str, permissions: &[String], by: &str, now: i64) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare_cached("INSERT OR IGNORE INTO grants(plugin, permission, granted_by, granted_at) VALUES (?1, ?2, ?3, ?4)")?;
    let mut added = Vec::new();
    for p in permissions {
        if st.execute(params![plugin, p, by, now])? > 0 {
            added.push(p.clone());
        }
    }
    Ok(added)
}

/// A link of the audit chain: a record's id and hash.
type Link = (i64, String);

/// An audit record made ready before the connection is locked: its details serialized and,
/// if the writer knows the chain's last link, its id and hash. Hashing outside the lock keeps
/// the kernel's own statements from waiting behind it.
struct Sealed {
    details: String,
    link: Option<Link>,
}

/// Serialize and (from `tip`, the last link the writer committed) chain every audit record of
/// the batch. Another process may append meanwhile: `write_batch` then recomputes.
fn seal(msgs: &[Msg], tip: Option<&Link>) -> Vec<Option<Sealed>> {
    let mut prev = tip.cloned();
    msgs.iter()
        .map(|m| {
            let Msg::Audit(a) = m else { return None };
            let details = a.details.to_string();
            let link = prev.as_mut().map(|p| {
                let id = p.0 + 1;
                let hash = audit::record_hash(id, a.ts, &a.actor, a.plugin.as_deref(), &a.action, &details, &p.1);
                *p = (id, hash.clone());
                (id, hash)
            });
            Some(Sealed { details, link })
        })
        .collect()
}

fn writer_loop(rx: Receiver<Msg>, conn: Arc<Mutex<Connection>>, path: PathBuf, events: broadcast::Sender<KernelEvent>) {
    let mut batch: Vec<Msg> = Vec::with_capacity(WRITER_BATCH);
    // The chain's last link as this writer committed it (None: read it from the database).
    let mut tip: Option<Link> = None;
    loop {
        match rx.recv_timeout(Duration::from_secs(3600)) {
            Ok(m) => batch.push(m),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Coalesce: keep taking records while they keep coming (each within COALESCE of the
        // last), so a burst becomes a few transactions instead of one per record and the
        // writer does not contend for the connection after every message. A flush or trim
        // request ends the batch at once.
        while batch.len() < WRITER_BATCH && !matches!(batch.last(), Some(Msg::Flush(_) | Msg::Trim { .. })) {
            match rx.recv_timeout(COALESCE) {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        let mut trims = Vec::new();
        let mut appends = Vec::new();
        for m in batch.drain(..) {
            match m {
                Msg::Flush(done) => flushes.push(done),
                Msg::Trim { keep_from_id, done } => trims.push((keep_from_id, done)),
                other => appends.push(other),
            }
        }
        // A busy database (another process mid-write past the busy timeout) is retried:
        // records are never dropped.
        let sealed = seal(&appends, tip.as_ref());
        let mut attempt = 0;
        loop {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            match write_batch(&mut c, &appends, &sealed, tip.as_ref()) {
                Ok((written, last)) => {
                    drop(c);
                    if last.is_some() {
                        tip = last;
                    }
                    for ev in written {
                        let _ = events.send(ev);
                    }
                    break;
                }
                Err(e) => {
                    drop(c);
                    tip = None;
                    attempt += 1;
                    let busy = matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
                    if !busy || attempt > 20 {
                        eprintln!("objectos: could not write {} audit/log record(s) to {}: {e}", appends.len(), path.display());
                        break;
                    }
                }
            }
        }
        for (keep_from_id, done) in trims {
            tip = None;
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            let r = trim(&mut c, keep_from_id).map_err(|e| map_sqlite(e, &path));
            drop(c);
            if let Ok((_, Some(rec))) = &r {
                let _ = events.send(KernelEvent::Audit(rec.clone()));
            }
            let _ = done.send(r.map(|(n, _)| n));
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

fn last_link(tx: &Connection) -> rusqlite::Result<Link> {
    Ok(tx
        .query_row("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS.to_string())))
}

/// Append `a` after `prev` (then the new last link). `hash` is its hash if already computed
/// from this same `prev`.
fn insert_audit(tx: &Connection, prev: &mut Link, a: &NewAudit, details: &str, hash: Option<String>) -> rusqlite::Result<AuditRecord> {
    let id = prev.0 + 1;
    let hash = hash.unwrap_or_else(|| audit::record_hash(id, a.ts, &a.actor, a.plugin.as_deref(), &a.action, details, &prev.1));
    tx.prepare_cached("INSERT INTO audit(id, ts, actor, plugin, action, details, prev_hash, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?
        .execute(params![id, a.ts, a.actor, a.plugin, a.action, details, prev.1, hash])?;
    let rec = AuditRecord {
        id,
        ts: a.ts,
        actor: a.actor.clone(),
        plugin: a.plugin.clone(),
        action: a.action.clone(),
        details: a.details.clone(),
        prev_hash: std::mem::take(&mut prev.1),
        hash: hash.clone(),
    };
    *prev = (id, hash);
    Ok(rec)
}

/// Write one batch in one transaction. `sealed` pairs with `msgs` (see [`seal`], made from
/// `tip`); its hashes are used only if the chain still ends at `tip`. Returns the events to
/// publish and the chain's new last link, if the batch appended any audit record.
fn write_batch(
    c: &mut Connection,
    msgs: &[Msg],
    sealed: &[Option<Sealed>],
    tip: Option<&Link>,
) -> rusqlite::Result<(Vec<KernelEvent>, Option<Link>)> {
    if msgs.is_empty() {
        return Ok((Vec::new(), None));
    }
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(msgs.len());
    let mut prev: Option<Link> = None;
    let mut use_sealed = false;
    let mut log_plugins = BTreeSet::new();
    for (m, sealed) in msgs.iter().zip(sealed) {
        match (m, sealed) {
            (Msg::Audit(a), Some(sealed)) => {
                if prev.is_none() {
                    let last = last_link(&tx)?;
                    use_sealed = tip == Some(&last);
                    prev = Some(last);
                }
                if let Some(p) = prev.as_mut() {
                    let hash = sealed.link.as_ref().filter(|_| use_sealed).map(|(id, h)| {
                        debug_assert_eq!(*id, p.0 + 1);
                        h.clone()
                    });
                    out.push(KernelEvent::Audit(insert_audit(&tx, p, a, &sealed.details, hash)?));
                }
            }
            (Msg::Log(l), _) => {
                let fields = if l.fields.is_null() { None } else { Some(l.fields.to_string()) };
                tx.prepare_cached("INSERT INTO logs(ts, plugin, level, target, message, fields) VALUES (?1,?2,?3,?4,?5,?6)")?
                    .execute(params![l.ts, l.plugin, l.level.as_str(), l.target, l.message, fields])?;
                let mut rec = l.clone();
                rec.id = tx.last_insert_rowid();
                log_plugins.insert(l.plugin.as_str());
                out.push(KernelEvent::Log(rec));
            }
            _ => {}
        }
    }
    for p in log_plugins {
        tx.prepare_cached(
            "DELETE FROM logs WHERE plugin=?1 AND id <= (SELECT id FROM logs WHERE plugin=?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![p, LOG_RETENTION])?;
    }
    tx.commit()?;
    Ok((out, prev))
}

fn trim(c: &mut Connection, keep_from_id: i64) -> rusqlite::Result<(i64, Option<AuditRecord>)> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut prev = last_link(&tx)?;
    // Never trim the newest record: the checkpoint must link to something kept.
    let keep = keep_from_id.min(prev.0);
    let first: Option<(i64, String)> = tx
        .query_row("SELECT id, prev_hash FROM audit WHERE id >= ?1 ORDER BY id LIMIT 1", [keep], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((first_id, first_prev)) = first else {
        return Ok((0, None));
    };
    let removed = tx.execute("DELETE FROM audit WHERE id < ?1", [first_id])? as i64;
    if removed == 0 {
        return Ok((0, None));
    }
    let record = NewAudit {
        ts: now_ms(),
        actor: "admin".into(),
        plugin: None,
        action: "audit.trimmed".into(),
        details: serde_json::json!({ "trimmedUpTo": first_id - 1, "removed": removed, "firstKeptId": first_id, "firstKeptPrevHash": first_prev }),
    };
    let rec = insert_audit(&tx, &mut prev, &record, &record.details.to_string(), None)?;
    tx.commit()?;
    Ok((removed, Some(rec)))
}
