//! Queries of the `runner` table: the lease that says which process runs plugins on this data
//! directory, and until when.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::Store;
use crate::error::Result;
use crate::model::views::RunnerInfo;

impl Store {
    /// Take the lease for `holder` until `until` (ms): when none is held, when the one held has
    /// run out or its process is `gone`, or when `holder` holds it already. Otherwise the
    /// holder's lease, unchanged. One transaction, so two processes cannot both take it.
    pub(crate) fn take_runner(&self, holder: &str, me: &RunnerInfo, now: i64, gone: &dyn Fn(&RunnerInfo) -> bool) -> Result<std::result::Result<(), RunnerInfo>> {
        let mut c = self.lock();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.map_err(e))?;
        let held: Option<(String, RunnerInfo)> = tx
            .query_row("SELECT holder, pid, host, machine, what, since, until, address FROM runner WHERE id = 1", [], |r| {
                Ok((r.get(0)?, RunnerInfo { pid: r.get(1)?, host: r.get(2)?, machine: r.get(3)?, what: r.get(4)?, since: r.get(5)?, until: r.get(6)?, address: r.get(7)? }))
            })
            .optional()
            .map_err(|e| self.map_err(e))?;
        if let Some((h, info)) = held {
            if h != holder && info.until > now && !gone(&info) {
                return Ok(Err(info));
            }
        }
        tx.execute(
            "INSERT INTO runner(id, holder, pid, host, machine, what, since, until, address) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)
             ON CONFLICT(id) DO UPDATE SET holder=excluded.holder, pid=excluded.pid, host=excluded.host, machine=excluded.machine, what=excluded.what, since=excluded.since, until=excluded.until, address=NULL",
            params![holder, me.pid, me.host, me.machine, me.what, me.since, me.until],
        )
        .map_err(|e| self.map_err(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(Ok(()))
    }

    /// Extend `holder`'s lease to `until`; false when it no longer holds it.
    pub(crate) fn renew_runner(&self, holder: &str, until: i64) -> Result<bool> {
        let c = self.lock();
        let n = c.execute("UPDATE runner SET until = ?2 WHERE id = 1 AND holder = ?1", params![holder, until]).map_err(|e| self.map_err(e))?;
        Ok(n == 1)
    }

    /// Record where `holder` answers (`http://ADDR:PORT`); false when it no longer holds the
    /// lease.
    pub(crate) fn set_runner_address(&self, holder: &str, address: &str) -> Result<bool> {
        let c = self.lock();
        let n = c.execute("UPDATE runner SET address = ?2 WHERE id = 1 AND holder = ?1", params![holder, address]).map_err(|e| self.map_err(e))?;
        Ok(n == 1)
    }

    /// Give `holder`'s lease up (nothing when another holds it).
    pub(crate) fn release_runner(&self, holder: &str) -> Result<()> {
        let c = self.lock();
        c.execute("DELETE FROM runner WHERE id = 1 AND holder = ?1", [holder]).map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// The lease as recorded (it may have run out).
    pub(crate) fn runner(&self) -> Result<Option<RunnerInfo>> {
        let c = self.lock();
        c.query_row("SELECT pid, host, machine, what, since, until, address FROM runner WHERE id = 1", [], |r| {
            Ok(RunnerInfo { pid: r.get(0)?, host: r.get(1)?, machine: r.get(2)?, what: r.get(3)?, since: r.get(4)?, until: r.get(5)?, address: r.get(6)? })
        })
        .optional()
        .map_err(|e| self.map_err(e))
    }
}
