//! The runner lease: one process at a time runs plugins on a data directory. It is a row in the
//! database, taken in one transaction, renewed while its holder lives, and taken over when the
//! holder's lease runs out or its process is gone.

use super::*;

/// How long a lease lasts unless renewed; its holder renews it every third of that, so another
/// process takes over within this long of the holder's death (at once, on the same machine,
/// when the holder's process is gone).
pub const RUNNER_LEASE: Duration = Duration::from_secs(10);

/// The lease this process holds: renewed by a task while it lives, given up when dropped.
pub struct RunnerLease {
    core: Arc<Core>,
    /// This kernel holds a lease (see [`Kernel::start`]); false again when this one goes.
    held: Arc<std::sync::atomic::AtomicBool>,
    holder: String,
    lost: tokio::sync::watch::Receiver<bool>,
    renew: tokio::task::JoinHandle<()>,
    /// The delivery loop: the lease holder delivers the queued events.
    deliver: tokio::task::JoinHandle<()>,
}

impl RunnerLease {
    /// Completes when the lease is lost: another process took it, or this one could not renew
    /// it for [`RUNNER_LEASE`] (so another may have), or its renewing stopped. The holder then
    /// stops running plugins.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            while !*lost.borrow() {
                if lost.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

impl RunnerLease {
    /// Say where this runner answers (`http://ADDR:PORT`), for other processes: `objectos
    /// metrics` reads the runner's figures there.
    pub fn set_address(&self, address: &str) -> Result<()> {
        self.core.store.set_runner_address(&self.holder, address)?;
        Ok(())
    }
}

impl Drop for RunnerLease {
    fn drop(&mut self) {
        self.renew.abort();
        self.deliver.abort();
        if let Err(e) = self.core.store.release_runner(&self.holder) {
            tracing::warn!("could not give up the runner lease: {e}");
        }
        self.held.store(false, Ordering::SeqCst);
    }
}

/// This machine's name, as the lease records it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into())
}

/// Where a pid means something: the host's name, this boot, and this process's pid namespace
/// (a container sharing the host's name has its own).
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|t| t.trim().to_string()).unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    format!("{}|{}|{ns}", host_name(), read("/proc/sys/kernel/random/boot_id"))
}

/// Whether the lease's process is known to be gone: in this very pid namespace of this boot of
/// this machine, with no such process. Anywhere else its lease has to run out.
fn gone(info: &RunnerInfo) -> bool {
    cfg!(target_os = "linux") && !info.machine.ends_with('|') && info.machine == machine() && !Path::new(&format!("/proc/{}", info.pid)).exists()
}

impl Kernel {
    /// Take the runner lease of this data directory for this process (`what` names it, as
    /// `objectos serve`): refused with [`KernelError::RunnerHeld`], naming the holder, while
    /// another live process holds it. Call from within a tokio runtime: a task renews it.
    pub fn take_runner(&self, what: &str) -> Result<RunnerLease> {
        let now = now_ms();
        let holder = format!("{}:{now}:{}", std::process::id(), self.0.core.id);
        let lease_ms = RUNNER_LEASE.as_millis() as i64;
        let me = RunnerInfo { pid: std::process::id(), host: host_name(), machine: machine(), what: what.into(), since: now, until: now + lease_ms, address: None };
        if let Err(holder) = self.0.core.store.take_runner(&holder, &me, now, &gone)? {
            return Err(KernelError::RunnerHeld { path: self.data_dir().map(Path::to_path_buf).unwrap_or_else(|| self.0.core.store.busy_path()), holder });
        }
        let (tx, lost) = tokio::sync::watch::channel(false);
        let store = self.0.core.store.clone();
        let renewing = holder.clone();
        self.0.core.runner.store(true, Ordering::SeqCst);
        let deliver = self.deliver_queued();
        // Once the lease is lost, this process stops being the runner at once: no more
        // deliveries, jobs or schedules here, whatever its host does next.
        let (held, delivering) = (self.0.core.runner.clone(), deliver.abort_handle());
        let tx = move || {
            held.store(false, Ordering::SeqCst);
            delivering.abort();
            let _ = tx.send(true);
        };
        let renew = tokio::spawn(async move {
            let mut tick = tokio::time::interval(RUNNER_LEASE / 3);
            tick.tick().await;
            let mut renewed = now;
            loop {
                tick.tick().await;
                let (store, holder) = (store.clone(), renewing.clone());
                let kept = tokio::task::spawn_blocking(move || store.renew_runner(&holder, now_ms() + lease_ms)).await;
                match kept {
                    Ok(Ok(true)) => renewed = now_ms(),
                    Ok(Ok(false)) => {
                        tracing::error!("the runner lease was taken by another process");
                        tx();
                        return;
                    }
                    Ok(Err(e)) => tracing::warn!("could not renew the runner lease: {e}"),
                    Err(e) => tracing::warn!("could not renew the runner lease: {e}"),
                }
                if now_ms() - renewed >= lease_ms {
                    tracing::error!("the runner lease could not be renewed for {} s, so another process may hold it now", RUNNER_LEASE.as_secs());
                    tx();
                    return;
                }
            }
        });
        Ok(RunnerLease { core: self.0.core.clone(), held: self.0.core.runner.clone(), holder, lost, renew, deliver })
    }

    /// Whether this kernel holds the runner lease (taken with [`Kernel::take_runner`], or by
    /// [`Kernel::start`]).
    pub fn is_runner(&self) -> bool {
        self.0.core.runner.load(Ordering::SeqCst)
    }

    /// Take the lease for the kernel itself, if no process holds it, until it shuts down (see
    /// [`Kernel::start`]).
    pub(super) fn take_runner_if_free(&self) {
        if self.is_runner() {
            return;
        }
        let what = self.0.config.name.clone();
        match self.take_runner(&what) {
            Ok(lease) => *lock(&self.0.own_lease) = Some(lease),
            Err(KernelError::RunnerHeld { holder, .. }) => tracing::info!("{} (process {}) runs the plugins of this data directory: events are delivered there", holder.what, holder.pid),
            Err(e) => tracing::warn!("could not take the runner lease: {e}"),
        }
    }

    /// Every durable event subscription on this data directory, with the events waiting for
    /// it, by plugin and name.
    pub fn durable_subscriptions(&self) -> Result<Vec<crate::model::views::DurableSubscription>> {
        Ok(self
            .0
            .core
            .store
            .subscriptions()?
            .into_iter()
            .map(|r| crate::model::views::DurableSubscription { plugin: r.plugin, name: r.name, pattern: r.pattern, waiting: u32::try_from(r.pending).unwrap_or(u32::MAX) })
            .collect())
    }

    /// Who runs plugins on this data directory now, if anyone (a lease that ran out, or whose
    /// process is gone, is no one's).
    pub fn runner(&self) -> Result<Option<RunnerInfo>> {
        Ok(self.0.core.store.runner()?.filter(|r| r.until > now_ms() && !gone(r)))
    }
}
