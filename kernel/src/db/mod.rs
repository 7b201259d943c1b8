//! The one owner of the database: opening it, its pragmas and migrations; the queries per
//! table (`plugins`, `storage`, `read`) and the batching writer (`writer`) live beside this.
//!
//! One connection per kernel, behind a mutex, for short synchronous statements; a writer
//! thread that batches appends (audit records, log lines) into one transaction each; WAL
//! journal with `synchronous=NORMAL` (survives a process crash; a power loss may lose the
//! last transactions); `busy_timeout` so two processes on one data directory wait for each
//! other instead of failing, and `PRAGMA data_version` to notice the other's writes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode};

use crate::error::{KernelError, Result};

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
    // 2: an upgrade by another author, waiting for the admin to approve it again.
    "ALTER TABLE plugins ADD COLUMN author_change TEXT;",
    // 3: secret settings (API tokens), apart from the configuration, which is shown.
    "CREATE TABLE plugin_secrets(plugin TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(plugin, key));",
    // 4: what a grant's folder was when it was approved (`dev:inode`); failures of a plugin's
    // code, counted across processes; the digests of compiled code this host made.
    "ALTER TABLE grants ADD COLUMN folder TEXT;
    CREATE TABLE code_failures(plugin TEXT NOT NULL, at INTEGER NOT NULL, message TEXT NOT NULL);
    CREATE INDEX code_failures_by_plugin ON code_failures(plugin, at);
    CREATE TABLE artifacts(key TEXT PRIMARY KEY, digest TEXT NOT NULL, plugin TEXT NOT NULL, made_at INTEGER NOT NULL) WITHOUT ROWID;",
    // 5: one storage budget per package: each row says whom it is charged to (NULL: the plugin
    // whose row it is; an engine charges a package's records to the package), and the running
    // total per owner is kept with every write.
    "ALTER TABLE storage ADD COLUMN charged TEXT;
    CREATE TABLE storage_usage(owner TEXT PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO storage_usage(owner, bytes) SELECT plugin, SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))) FROM storage GROUP BY plugin;",
    // 6: the runner lease: which process runs plugins on this data directory, until when.
    // `machine` says where the pid means something (the host's name, boot and pid namespace).
    "CREATE TABLE runner(id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, machine TEXT NOT NULL, what TEXT NOT NULL, since INTEGER NOT NULL, until INTEGER NOT NULL, address TEXT);",
    // 7: durable event delivery. A plugin's durable subscriptions outlive its process; an
    // event one of them matches is queued for it in the transaction of the change that caused
    // it, and the runner delivers it (at least once; the row's id is the delivery id).
    "CREATE TABLE subscriptions(plugin TEXT NOT NULL, name TEXT NOT NULL, pattern TEXT NOT NULL, pending INTEGER NOT NULL DEFAULT 0, since INTEGER NOT NULL, PRIMARY KEY(plugin, name)) WITHOUT ROWID;
    CREATE TABLE deliveries(id INTEGER PRIMARY KEY AUTOINCREMENT, plugin TEXT NOT NULL, name TEXT NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL, source TEXT NOT NULL, depth INTEGER NOT NULL, created INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0, last_error TEXT);
    CREATE INDEX deliveries_by_subscription ON deliveries(plugin, name, id);
    CREATE INDEX deliveries_due ON deliveries(plugin, name, next_at, id);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Log lines kept per plugin; older ones are trimmed as new ones arrive.
pub const LOG_RETENTION: i64 = 10_000;


pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
    data_version: Mutex<i64>,
}

impl Store {
    /// Open (creating if needed) `data_dir/objectos.db`, or a private in-memory database.
    pub(crate) fn open(data_dir: Option<&Path>, max_bytes: Option<u64>) -> Result<Store> {
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
        if let Some(bytes) = max_bytes {
            store.limit_size(bytes)?;
        }
        store.changed_externally();
        Ok(store)
    }

    pub(crate) fn busy_path(&self) -> PathBuf {
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

    /// Cap the database at `bytes` (SQLite's `max_page_count`; it never goes below the pages in
    /// use). Writes past it fail with SQLITE_FULL, as on a full disk.
    fn limit_size(&self, bytes: u64) -> Result<()> {
        let c = self.lock();
        let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(|e| self.map_err(e))?;
        let pages = (bytes / page.max(1) as u64).max(1);
        c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())).map_err(|e| self.map_err(e))?;
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

    pub(crate) fn conn_handle(&self) -> Arc<Mutex<Connection>> {
        self.conn.clone()
    }
}


pub(crate) fn map_sqlite(e: rusqlite::Error, path: &Path) -> KernelError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            KernelError::Busy { path: path.parent().map(Path::to_path_buf).unwrap_or_else(|| path.to_path_buf()) }
        }
        _ => KernelError::Database(e),
    }
}


mod deliveries;
mod plugins;
mod read;
mod runner;
mod storage;
mod writer;

pub(crate) use deliveries::MAX_PENDING;
pub(crate) use plugins::PluginRow;
pub(crate) use writer::Writer;
pub(crate) use writer::WriterInner;
