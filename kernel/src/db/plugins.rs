//! Queries of the `plugins`, `grants`, `plugin_config` and `settings` tables.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::Store;
use crate::error::{KernelError, Result};
use crate::model::lifecycle::State;
use crate::model::views::GrantRow;
use crate::util::now_ms;

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
    /// An upgrade changed the author and the admin has not approved it again (JSON of
    /// [`crate::model::views::AuthorChange`]).
    pub(crate) author_change: Option<String>,
    pub(crate) installed_at: i64,
    pub(crate) updated_at: i64,
}

impl Store {
    // ---- plugins -------------------------------------------------------------------------

    pub(crate) fn plugins(&self) -> Result<Vec<PluginRow>> {
        let c = self.lock();
        let mut st = c
            .prepare_cached("SELECT id, kind, manifest, state, desired, last_error, package_dir, installed_at, updated_at, new_permissions, version, author_change FROM plugins ORDER BY id")
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
                    r.get::<_, Option<String>>(11)?,
                ))
            })
            .map_err(|e| self.map_err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, manifest, state, desired, last_error, package_dir, installed_at, updated_at, newp, version, author_change) = row.map_err(|e| self.map_err(e))?;
            let new_permissions = newp.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
            let state = state.parse().map_err(|e| KernelError::Corrupt(format!("plugins.state of {id}: {e}")))?;
            let desired = desired.parse().map_err(|e| KernelError::Corrupt(format!("plugins.desired of {id}: {e}")))?;
            out.push(PluginRow { id, version, kind, manifest, state, desired, last_error, package_dir, new_permissions, author_change, installed_at, updated_at });
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

    /// Ask for `id` to be in `desired`, leaving its state (another process's) as it is.
    pub(crate) fn set_desired(&self, id: &str, desired: State) -> Result<()> {
        let c = self.lock();
        c.prepare_cached("UPDATE plugins SET desired=?2, updated_at=?3 WHERE id=?1")
            .and_then(|mut st| st.execute(params![id, desired.as_str(), now_ms()]))
            .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// Forget `id`'s last error: an admin asked for it to be tried again.
    pub(crate) fn clear_last_error(&self, id: &str) -> Result<()> {
        let c = self.lock();
        c.prepare_cached("UPDATE plugins SET last_error=NULL, updated_at=?2 WHERE id=?1")
            .and_then(|mut st| st.execute(params![id, now_ms()]))
            .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// `id`'s recorded state, desired state and last error (JSON), as its row says now.
    pub(crate) fn recorded_state(&self, id: &str) -> Result<Option<(String, String, Option<String>)>> {
        let c = self.lock();
        c.prepare_cached("SELECT state, desired, last_error FROM plugins WHERE id=?1")
            .and_then(|mut st| st.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
            .map_err(|e| self.map_err(e))
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
            "DELETE FROM plugin_secrets WHERE plugin=?1",
            "DELETE FROM deliveries WHERE plugin=?1",
            "DELETE FROM subscriptions WHERE plugin=?1",
        ] {
            tx.execute(sql, [id]).map_err(|e| self.map_err(e))?;
        }
        tx.commit().map_err(|e| self.map_err(e))
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

    /// Record what the folder of file grant `permission` is now (`dev:inode`).
    pub(crate) fn set_folder_identity(&self, plugin: &str, permission: &str, identity: &str) -> Result<()> {
        let c = self.lock();
        c.execute("UPDATE grants SET folder=?3 WHERE plugin=?1 AND permission=?2", params![plugin, permission, identity]).map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// The recorded folder identities of `plugin`'s file grants, by permission.
    pub(crate) fn folder_identities(&self, plugin: &str) -> Result<Vec<(String, String)>> {
        let c = self.lock();
        let mut st = c.prepare_cached("SELECT permission, folder FROM grants WHERE plugin=?1 AND folder IS NOT NULL").map_err(|e| self.map_err(e))?;
        let rows = st.query_map([plugin], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|r| r.collect()).map_err(|e| self.map_err(e))?;
        Ok(rows)
    }

    /// File grants approved before identities were recorded: (plugin, permission).
    pub(crate) fn unidentified_folders(&self) -> Result<Vec<(String, String)>> {
        let c = self.lock();
        let mut st = c.prepare("SELECT plugin, permission FROM grants WHERE folder IS NULL AND (permission LIKE 'fs.read:%' OR permission LIKE 'fs.write:%')").map_err(|e| self.map_err(e))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|r| r.collect()).map_err(|e| self.map_err(e))?;
        Ok(rows)
    }

    /// Record a failure of `plugin`'s code at `at` and forget those before `since`; returns
    /// how many are recorded since `since` (in every process on this database).
    pub(crate) fn count_failure(&self, plugin: &str, at: i64, since: i64, message: &str) -> Result<u64> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.map_err(e))?;
        tx.execute("DELETE FROM code_failures WHERE plugin=?1 AND at<?2", params![plugin, since]).map_err(|e| self.map_err(e))?;
        tx.execute("INSERT INTO code_failures(plugin, at, message) VALUES (?1, ?2, ?3)", params![plugin, at, message]).map_err(|e| self.map_err(e))?;
        let n: i64 = tx.query_row("SELECT count(*) FROM code_failures WHERE plugin=?1 AND at>=?2", params![plugin, since], |r| r.get(0)).map_err(|e| self.map_err(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(n.max(0) as u64)
    }

    /// Forget `plugin`'s recorded failures (it was quarantined for them, or removed).
    pub(crate) fn clear_failures(&self, plugin: &str) -> Result<()> {
        let c = self.lock();
        c.execute("DELETE FROM code_failures WHERE plugin=?1", [plugin]).map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// The digest recorded for compiled artifact `key`.
    pub(crate) fn artifact(&self, key: &str) -> Result<Option<String>> {
        let c = self.lock();
        c.query_row("SELECT digest FROM artifacts WHERE key=?1", [key], |r| r.get(0)).optional().map_err(|e| self.map_err(e))
    }

    /// Record that this host made artifact `key` with `digest` (for `plugin`).
    pub(crate) fn record_artifact(&self, key: &str, digest: &str, plugin: &str) -> Result<()> {
        let c = self.lock();
        c.execute("INSERT OR REPLACE INTO artifacts(key, digest, plugin, made_at) VALUES (?1, ?2, ?3, ?4)", params![key, digest, plugin, now_ms()]).map_err(|e| self.map_err(e))?;
        Ok(())
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

    /// A plugin's secret settings, by key.
    pub(crate) fn secrets(&self, plugin: &str) -> Result<Vec<(String, String)>> {
        let c = self.lock();
        let mut q = c.prepare_cached("SELECT key, value FROM plugin_secrets WHERE plugin=?1 ORDER BY key").map_err(|e| self.map_err(e))?;
        let rows = q.query_map([plugin], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.map_err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.map_err(e))
    }

    /// Set (or, with `None`, delete) a plugin's secret setting `key`.
    pub(crate) fn set_secret(&self, plugin: &str, key: &str, value: Option<&str>) -> Result<()> {
        let c = self.lock();
        match value {
            Some(v) => c.execute(
                "INSERT INTO plugin_secrets(plugin, key, value) VALUES (?1, ?2, ?3) ON CONFLICT(plugin, key) DO UPDATE SET value=excluded.value",
                params![plugin, key, v],
            ),
            None => c.execute("DELETE FROM plugin_secrets WHERE plugin=?1 AND key=?2", params![plugin, key]),
        }
        .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    pub(crate) fn setting(&self, key: &str) -> Result<Option<String>> {
        let c = self.lock();
        c.query_row("SELECT value FROM settings WHERE key=?1", [key], |r| r.get(0)).optional().map_err(|e| self.map_err(e))
    }

    pub(crate) fn delete_setting(&self, key: &str) -> Result<()> {
        let c = self.lock();
        c.execute("DELETE FROM settings WHERE key=?1", [key]).map_err(|e| self.map_err(e))?;
        Ok(())
    }

    pub(crate) fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let c = self.lock();
        c.execute("INSERT INTO settings(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value", params![key, value])
            .map_err(|e| self.map_err(e))?;
        Ok(())
    }

}

fn upsert_plugin(c: &Connection, row: &PluginRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO plugins(id, version, kind, manifest, state, desired, last_error, package_dir, installed_at, updated_at, new_permissions, author_change)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(id) DO UPDATE SET version=excluded.version, kind=excluded.kind, manifest=excluded.manifest,
           state=excluded.state, desired=excluded.desired, last_error=excluded.last_error,
           package_dir=excluded.package_dir, updated_at=excluded.updated_at, new_permissions=excluded.new_permissions,
           author_change=excluded.author_change",
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
        serde_json::to_string(&row.new_permissions).unwrap_or_default(),
        row.author_change,
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

