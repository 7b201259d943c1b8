//! The batching writer: one thread that appends audit records and log lines.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde_json::Value;

use super::{map_sqlite, Store, LOG_RETENTION};
use crate::error::{KernelError, Result};
use crate::model::audit::{self, Actor, AuditAction, AuditDetail, AuditRecord, NewAudit, GENESIS};
use crate::model::log::LogRecord;
use crate::notices::{KernelEvent, Notices};
use crate::util::now_ms;

/// Records queued for the writer before emitters wait (back-pressure, never loss).
const WRITER_QUEUE: usize = 16_384;
/// Records written per transaction at most.
const WRITER_BATCH: usize = 4_096;
/// How long the writer lets records gather after the first one before committing them (a
/// flush, a trim or a full batch ends the wait at once): a burst becomes one transaction.
const COALESCE: Duration = Duration::from_micros(500);

enum Msg {
    Audit(NewAudit),
    Log(LogRecord),
    Trim { actor: Actor, keep_from_id: i64, done: mpsc::Sender<Result<i64>> },
    Flush(mpsc::Sender<std::result::Result<(), String>>),
}

/// Handle to the writer thread. Cloning is cheap.
#[derive(Clone)]
pub(crate) struct Writer(Arc<WriterInner>);

/// The queue between the kernel's threads and the writer: a bounded FIFO under one lock.
///
/// Senders push without waking the writer unless it sleeps with nothing to do, or the message
/// ends a batch (flush, trim, a full batch): a burst of records costs one wake-up and one
/// transaction, not one of each per record.
struct Queue {
    state: Mutex<QueueState>,
    /// The writer waits here for messages.
    ready: Condvar,
    /// Senders wait here for room while the queue is full.
    room: Condvar,
}

struct QueueState {
    msgs: VecDeque<Msg>,
    /// The writer sleeps with an empty queue: the next message wakes it.
    idle: bool,
    /// A flush or trim is queued: the writer commits without waiting for more.
    urgent: bool,
    /// Every `Writer` is gone: the writer thread ends once the queue is empty.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `msg`, waiting while the queue is full (back-pressure, never loss).
    fn push(&self, msg: Msg) {
        let urgent = matches!(msg, Msg::Flush(_) | Msg::Trim { .. });
        let mut q = self.lock();
        while q.msgs.len() >= WRITER_QUEUE && !q.closed {
            q = self.room.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.closed {
            // The writer is gone: a flush's or trim's answer channel drops, so its caller
            // hears `ShutDown` instead of waiting forever.
            return;
        }
        q.msgs.push_back(msg);
        q.urgent |= urgent;
        let wake = q.idle || q.urgent || q.msgs.len() >= WRITER_BATCH;
        if wake {
            q.idle = false;
            drop(q);
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
        self.room.notify_all();
    }

    /// The writer thread ends: nothing queued will be taken any more.
    fn abandon(&self) {
        let left = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.msgs)
        };
        self.room.notify_all();
        drop(left);
    }

    /// Move up to `WRITER_BATCH` messages into `batch`: sleep until one comes (or `timeout`,
    /// while failed records wait to be tried again), then let more gather for `COALESCE`.
    /// Returns false once the queue is closed and empty.
    fn take(&self, batch: &mut Vec<Msg>, timeout: Option<Duration>) -> bool {
        let mut q = self.lock();
        let deadline = timeout.map(|t| Instant::now() + t);
        while q.msgs.is_empty() && !q.closed {
            q.idle = true;
            q = match deadline {
                None => self.ready.wait(q).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    self.ready.wait_timeout(q, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
        q.idle = false;
        if q.msgs.is_empty() {
            return !q.closed;
        }
        let gather = Instant::now() + COALESCE;
        while !q.urgent && !q.closed && q.msgs.len() < WRITER_BATCH {
            let left = gather.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = self.ready.wait_timeout(q, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        // Take through the first flush or trim, so it is answered after what came before it.
        while batch.len() < WRITER_BATCH {
            let Some(m) = q.msgs.pop_front() else { break };
            let ends = matches!(m, Msg::Flush(_) | Msg::Trim { .. });
            batch.push(m);
            if ends {
                break;
            }
        }
        q.urgent = q.msgs.iter().any(|m| matches!(m, Msg::Flush(_) | Msg::Trim { .. }));
        drop(q);
        self.room.notify_all();
        true
    }
}

pub(crate) struct WriterInner {
    queue: Arc<Queue>,
    detail: AtomicU8,
    closed: AtomicBool,
    /// Why the last write failed, while records wait to be written again (None: healthy).
    fault: Mutex<Option<String>>,
    path: PathBuf,
}

impl Writer {
    pub(crate) fn start(store: &Store, notices: Notices) -> (Writer, std::thread::JoinHandle<()>) {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState { msgs: VecDeque::new(), idle: false, urgent: false, closed: false }),
            ready: Condvar::new(),
            room: Condvar::new(),
        });
        let rx = queue.clone();
        let conn = store.conn_handle();
        let path = store.busy_path();
        let inner = Arc::new(WriterInner { queue, detail: AtomicU8::new(0), closed: AtomicBool::new(false), fault: Mutex::new(None), path: path.clone() });
        let shared = Arc::downgrade(&inner);
        let handle = std::thread::Builder::new()
            .name("objectos-writer".into())
            .spawn(move || WriterLoop { rx, conn, path, notices, shared, tip: None, pending: Vec::new(), stalled: None }.run())
            .unwrap_or_else(|e| panic!("cannot start the database writer thread: {e}"));
        (Writer(inner), handle)
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

    /// Queue an audit record. Blocks only while the queue is full (back-pressure).
    pub(crate) fn audit(&self, actor: &Actor, plugin: Option<&str>, action: AuditAction, details: Value) {
        self.send(Msg::Audit(NewAudit { ts: now_ms(), actor: actor.clone(), plugin: plugin.map(str::to_string), action, details }));
    }

    pub(crate) fn log(&self, rec: LogRecord) {
        self.send(Msg::Log(rec));
    }

    fn send(&self, msg: Msg) {
        if self.0.closed.load(Ordering::Relaxed) {
            return;
        }
        self.0.queue.push(msg);
    }

    /// Wait until everything queued before this call is committed (or, while writes fail,
    /// until the writer has tried once more).
    pub(crate) fn flush(&self) {
        let _ = self.confirm();
    }

    /// Like [`Writer::flush`], but an error when what was queued could not be written: the
    /// records are kept and written once the database accepts writes again, and the caller
    /// reports that its action is not recorded yet. A busy database (another process writing)
    /// is waited for, without a cap.
    pub(crate) fn confirm(&self) -> Result<()> {
        let unwritable = |reason: String| KernelError::AuditUnwritable { path: self.0.path.clone(), reason };
        if let Some(reason) = self.fault() {
            // Do not queue behind records that cannot be written: say so at once.
            return Err(unwritable(reason));
        }
        let (tx, rx) = mpsc::channel();
        self.0.queue.push(Msg::Flush(tx));
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(unwritable(reason)),
            Err(_) => Err(KernelError::ShutDown),
        }
    }

    /// Why writes fail now, if they do.
    pub(crate) fn fault(&self) -> Option<String> {
        self.0.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Trim audit records before `keep_from_id`, appending a checkpoint. Returns rows removed.
    pub(crate) fn trim_audit(&self, actor: &Actor, keep_from_id: i64) -> Result<i64> {
        let (tx, rx) = mpsc::channel();
        self.0.queue.push(Msg::Trim { actor: actor.clone(), keep_from_id, done: tx });
        rx.recv().map_err(|_| KernelError::ShutDown)?
    }

    pub(crate) fn close(&self) {
        self.flush();
        self.0.closed.store(true, Ordering::Relaxed);
    }
}

impl Drop for WriterInner {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// A link of the audit chain: a record's id and hash.
type Link = (i64, String);

/// An audit record made ready before the connection is locked: its details serialized and,
/// if the writer knows the chain's last link, its id and hash. Hashing outside the lock keeps
/// the kernel's own statements from waiting behind it.
struct Sealed {
    actor: String,
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
            let actor = a.actor.to_string();
            let details = a.details.to_string();
            let link = prev.as_mut().map(|p| {
                let id = p.0 + 1;
                let hash = audit::record_hash(id, a.ts, &actor, a.plugin.as_deref(), a.action.as_str(), &details, &p.1);
                *p = (id, hash.clone());
                (id, hash)
            });
            Some(Sealed { actor, details, link })
        })
        .collect()
}

/// Most records kept in memory while writes fail; beyond it the writer stops taking more, so
/// senders wait (back-pressure) instead of the process growing without bound.
const MAX_PENDING: usize = 4 * WRITER_QUEUE;
/// Waits between attempts while writes fail: from the first to the last, doubling.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const LAST_BACKOFF: Duration = Duration::from_secs(2);
/// How long writes may fail before hosts are told they are stalled.
const STALL_NOTICE: Duration = Duration::from_secs(1);

/// Why a batch was not written.
enum Failure {
    /// Another process holds the database past the busy timeout: wait, it will pass.
    Busy(String),
    /// Disk full, I/O error, read-only database...: the records wait, and actions that need
    /// them are told.
    Fault(String),
}

/// The writer thread's state.
struct WriterLoop {
    rx: Arc<Queue>,
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    notices: Notices,
    shared: Weak<WriterInner>,
    /// The chain's last link as this writer committed it (None: read it from the database).
    tip: Option<Link>,
    /// Records taken from the queue and not committed yet, in order. Never dropped: a failed
    /// batch is tried again, with backoff, until it commits.
    pending: Vec<Msg>,
    /// Since when, and whether hosts were told, writes have been failing.
    stalled: Option<(std::time::Instant, bool)>,
}

impl Drop for WriterLoop {
    fn drop(&mut self) {
        self.rx.abandon();
    }
}

impl WriterLoop {
    fn run(mut self) {
        let mut batch: Vec<Msg> = Vec::with_capacity(WRITER_BATCH);
        let mut backoff = FIRST_BACKOFF;
        let mut waiting_flushes: Vec<mpsc::Sender<std::result::Result<(), String>>> = Vec::new();
        loop {
            // With records waiting after a failure, wake up to try again; else sleep until a
            // message comes. Stop taking messages while too many wait (back-pressure).
            if self.pending.len() < MAX_PENDING {
                let retry = (!self.pending.is_empty()).then_some(backoff);
                if !self.rx.take(&mut batch, retry) {
                    if self.pending.is_empty() {
                        return;
                    }
                    std::thread::sleep(backoff);
                }
            } else {
                std::thread::sleep(backoff);
            }
            let mut trims = Vec::new();
            for m in batch.drain(..) {
                match m {
                    Msg::Flush(done) => waiting_flushes.push(done),
                    Msg::Trim { actor, keep_from_id, done } => trims.push((actor, keep_from_id, done)),
                    other => self.pending.push(other),
                }
            }
            let failure = self.write_pending();
            match &failure {
                None => backoff = FIRST_BACKOFF,
                Some(_) => backoff = (backoff * 2).min(LAST_BACKOFF),
            }
            self.report(failure.as_ref());
            for (actor, keep_from_id, done) in trims {
                let r = match &failure {
                    None => self.trim(&actor, keep_from_id),
                    Some(Failure::Busy(reason) | Failure::Fault(reason)) => {
                        Err(KernelError::AuditUnwritable { path: self.path.clone(), reason: reason.clone() })
                    }
                };
                let _ = done.send(r);
            }
            // A flush is answered once what came before it is written; while the database is
            // busy it waits (that passes), while writes fail it is told why.
            match &failure {
                None => waiting_flushes.drain(..).for_each(|f| drop(f.send(Ok(())))),
                Some(Failure::Fault(reason)) => waiting_flushes.drain(..).for_each(|f| drop(f.send(Err(reason.clone())))),
                Some(Failure::Busy(_)) => {}
            }
        }
    }

    /// Try to commit every pending record in one transaction.
    fn write_pending(&mut self) -> Option<Failure> {
        if self.pending.is_empty() {
            return None;
        }
        let sealed = seal(&self.pending, self.tip.as_ref());
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let listened = self.notices.listened();
        match write_batch(&mut c, &self.pending, &sealed, self.tip.as_ref(), listened) {
            Ok((written, last)) => {
                drop(c);
                if last.is_some() {
                    self.tip = last;
                }
                self.pending.clear();
                for ev in written {
                    self.notices.send(ev);
                }
                None
            }
            Err(e) => {
                drop(c);
                self.tip = None;
                let busy = matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
                let reason = format!("{e}");
                Some(if busy { Failure::Busy(reason) } else { Failure::Fault(reason) })
            }
        }
    }

    /// Keep the shared fault and the hosts' stall notices true after an attempt.
    fn report(&mut self, failure: Option<&Failure>) {
        let fault = match failure {
            Some(Failure::Fault(reason)) => Some(reason.clone()),
            _ => None,
        };
        if let Some(shared) = self.shared.upgrade() {
            *shared.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
        }
        match (failure, &mut self.stalled) {
            (None, Some((_, told))) => {
                if *told {
                    self.notices.send(KernelEvent::WritesResumed);
                }
                self.stalled = None;
            }
            (None, None) => {}
            (Some(f), stalled) => {
                let (since, told) = stalled.get_or_insert((std::time::Instant::now(), false));
                if !*told && (since.elapsed() >= STALL_NOTICE || matches!(f, Failure::Fault(_))) {
                    *told = true;
                    let (reason, busy) = match f {
                        Failure::Busy(r) => (r.clone(), true),
                        Failure::Fault(r) => (r.clone(), false),
                    };
                    self.notices.send(KernelEvent::WritesStalled { path: self.path.display().to_string(), reason, busy, waiting: self.pending.len() });
                }
            }
        }
    }

    fn trim(&mut self, actor: &Actor, keep_from_id: i64) -> Result<i64> {
        self.tip = None;
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let r = trim(&mut c, actor, keep_from_id).map_err(|e| map_sqlite(e, &self.path));
        drop(c);
        if let Ok((_, Some(rec))) = &r {
            self.notices.send(KernelEvent::Audit(rec.clone()));
        }
        r.map(|(n, _)| n)
    }
}

fn last_link(tx: &Connection) -> rusqlite::Result<Link> {
    Ok(tx
        .query_row("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS.to_string())))
}

/// Append `a` after `prev` (then the new last link). `hash` is its hash if already computed
/// from this same `prev`. Returns the stored record when `notice` asks for one (someone
/// listens), so an unread notice costs no copy of the details.
fn insert_audit(tx: &Connection, prev: &mut Link, a: &NewAudit, actor: &str, details: &str, hash: Option<String>, notice: bool) -> rusqlite::Result<Option<AuditRecord>> {
    let id = prev.0 + 1;
    let action = a.action.as_str();
    let hash = hash.unwrap_or_else(|| audit::record_hash(id, a.ts, actor, a.plugin.as_deref(), action, details, &prev.1));
    tx.prepare_cached("INSERT INTO audit(id, ts, actor, plugin, action, details, prev_hash, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?
        .execute(params![id, a.ts, actor, a.plugin, action, details, prev.1, hash])?;
    let rec = notice.then(|| AuditRecord {
        id,
        ts: a.ts,
        actor: actor.to_string(),
        plugin: a.plugin.clone(),
        action: action.to_string(),
        details: a.details.clone(),
        prev_hash: prev.1.clone(),
        hash: hash.clone(),
    });
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
    listened: bool,
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
                    if let Some(rec) = insert_audit(&tx, p, a, &sealed.actor, &sealed.details, hash, listened)? {
                        out.push(KernelEvent::Audit(rec));
                    }
                }
            }
            (Msg::Log(l), _) => {
                let fields = if l.fields.is_null() { None } else { Some(l.fields.to_string()) };
                tx.prepare_cached("INSERT INTO logs(ts, plugin, level, target, message, fields) VALUES (?1,?2,?3,?4,?5,?6)")?
                    .execute(params![l.ts, l.plugin, l.level.as_str(), l.target, l.message, fields])?;
                log_plugins.insert(l.plugin.as_str());
                if listened {
                    let mut rec = l.clone();
                    rec.id = tx.last_insert_rowid();
                    out.push(KernelEvent::Log(rec));
                }
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

fn trim(c: &mut Connection, actor: &Actor, keep_from_id: i64) -> rusqlite::Result<(i64, Option<AuditRecord>)> {
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
        actor: actor.clone(),
        plugin: None,
        action: AuditAction::AuditTrimmed,
        details: serde_json::json!({ "trimmedUpTo": first_id - 1, "removed": removed, "firstKeptId": first_id, "firstKeptPrevHash": first_prev }),
    };
    let rec = insert_audit(&tx, &mut prev, &record, &actor.to_string(), &record.details.to_string(), None, true)?;
    tx.commit()?;
    Ok((removed, rec))
}

