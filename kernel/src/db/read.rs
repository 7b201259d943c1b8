//! Reading logs and the audit trail, and verifying the chain.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::Store;
use crate::error::Result;
use crate::model::audit::{AuditQuery, AuditRecord, Verification, Verifier};
use crate::model::log::{Level, LogQuery, LogRecord};

impl Store {
    // ---- logs ----------------------------------------------------------------------------

    pub(crate) fn logs(&self, q: &LogQuery) -> Result<Vec<LogRecord>> {
        let c = self.lock();
        // The levels to keep, from `Level`'s own order (the one ranking), as a JSON array.
        let levels = q.min_level.map(|min| serde_json::to_string(&min.and_above().map(Level::as_str).collect::<Vec<_>>()).unwrap_or_default());
        let search = q.search.as_deref().map(|s| format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        let mut st = c
            .prepare_cached(
                "SELECT id, ts, plugin, level, target, message, fields FROM logs
                 WHERE (?1 IS NULL OR plugin = ?1) AND id > ?2
                   AND (?3 IS NULL OR level IN (SELECT value FROM json_each(?3)))
                   AND (?4 IS NULL OR message LIKE ?4 ESCAPE '\\')
                 ORDER BY id DESC LIMIT ?5",
            )
            .map_err(|e| self.map_err(e))?;
        let limit = q.limit.map(i64::from).unwrap_or(-1);
        let mut rows: Vec<LogRecord> = st
            .query_map(params![q.plugin, q.after_id.unwrap_or(0), levels, search, limit], |r| {
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

