//! Lifecycle changes asked for by a process that runs no plugins while another one does (the
//! runner, see `runner`): checked here as the change itself would be, recorded as the plugins'
//! desired state, and carried out by the runner, which follows the data directory.

use super::*;

/// What became of a plugin asked to change (see [`Kernel::await_requested`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The plugin.
    pub plugin: String,
    /// Its state as the runner recorded it last.
    pub state: State,
    /// Whether the runner carried the request out (its state is the one asked for).
    pub done: bool,
    /// Why not, when the runner tried and it failed (the plugin's last error).
    pub error: Option<String>,
}

/// Plugins asked to change, and when (see [`Kernel::request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The plugins, in the order the runner goes through them.
    pub plugins: Vec<String>,
    /// When it was asked (ms).
    pub at: i64,
}

impl Kernel {
    /// Ask the runner to bring `id` to `desired`: enabled (with what it depends on, when
    /// `related`), loaded, or disabled or unloaded (`Installed`; with the plugins enabled on
    /// top of it, when `related`). Refused here, as the change
    /// itself would be, when it cannot be done (a permission pending, a dependency not asked
    /// to run, dependents still running). Returns the plugins asked for; each request is
    /// audited as `plugin.requested`.
    pub fn request(&self, id: &str, desired: State, related: bool) -> Result<Request> {
        let at = now_ms();
        self.require(id)?;
        let order = match desired {
            State::Enabled => self.enable_request(id, related)?,
            State::Loaded => {
                self.check_resolves(id)?;
                self.stop_request(id, State::Loaded, false)?
            }
            State::Disabled | State::Installed => self.stop_request(id, desired, related)?,
            State::Error => return Err(KernelError::IllegalTransition { plugin: id.into(), state: self.plugin_state(id), action: Action::Load }),
        };
        for p in &order {
            self.0.core.store.set_desired(p, desired)?;
            if desired == State::Enabled && self.plugin_state(p) == State::Error {
                // Tried again: the runner sees the error gone and enables it anew.
                self.0.core.store.clear_last_error(p)?;
            }
            if let Some(s) = lock(&self.0.plugins).get_mut(p) {
                s.desired = desired;
            }
            self.0.core.writer.audit(&self.1, Some(p), AuditAction::PluginRequested, json!({ "desired": desired, "runner": self.runner().ok().flatten().map(|r| r.what) }));
        }
        self.0.core.writer.confirm()?;
        Ok(Request { plugins: order, at })
    }

    fn plugin_state(&self, id: &str) -> State {
        lock(&self.0.plugins).get(id).map_or(State::Installed, |s| s.state)
    }

    fn enable_request(&self, id: &str, with_deps: bool) -> Result<Vec<String>> {
        let order = if with_deps { resolve::resolve(&self.manifests(), id)? } else { vec![id.to_string()] };
        for p in &order {
            self.check_resolves(p)?;
            self.check_approved(p)?;
        }
        if !with_deps {
            let plugins = lock(&self.0.plugins);
            let deps = plugins.get(id).map(|s| s.manifest().dependencies.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
            for dep in deps {
                let (state, desired) = plugins.get(&dep).map_or((State::Installed, State::Installed), |d| (d.state, d.desired));
                if desired != State::Enabled {
                    return Err(KernelError::DependencyNotEnabled { plugin: id.into(), dependency: dep, state });
                }
            }
        }
        let plugins = lock(&self.0.plugins);
        Ok(order.into_iter().filter(|p| plugins.get(p).is_some_and(|s| s.desired != State::Enabled || s.state != State::Enabled)).collect())
    }

    /// A request to bring `id` down to `desired` (disabled, loaded or installed): the plugins
    /// enabled on top of it are disabled first (`cascade`), or refuse it.
    fn stop_request(&self, id: &str, desired: State, cascade: bool) -> Result<Vec<String>> {
        let set = self.manifests();
        let plugins = lock(&self.0.plugins);
        let running = |p: &String| plugins.get(p).is_some_and(|s| s.desired == State::Enabled || s.state == State::Enabled);
        let dependents: Vec<String> = if desired == State::Loaded { Vec::new() } else { resolve::dependents(&set, id).into_iter().filter(running).collect() };
        if !dependents.is_empty() && !cascade {
            return Err(KernelError::DependentsEnabled { plugin: id.into(), dependents });
        }
        let (order, _) = resolve::resolve_all(&set);
        let mut out: Vec<String> = order.into_iter().rev().filter(|p| dependents.contains(p)).collect();
        if plugins.get(id).is_some_and(|s| s.desired != desired || s.state != desired) {
            out.push(id.to_string());
        }
        Ok(out)
    }

    /// Wait, at most `limit`, until the runner has carried out `request` (each plugin's
    /// recorded state is its desired state) or failed at it (an error since the request);
    /// what became of each.
    pub async fn await_requested(&self, request: &Request, limit: Duration) -> Result<Vec<Requested>> {
        let deadline = Instant::now() + limit;
        loop {
            let mut out = Vec::with_capacity(request.plugins.len());
            for id in &request.plugins {
                let Some((state, desired, error)) = self.0.core.store.recorded_state(id)? else { continue };
                let state: State = state.parse().unwrap_or(State::Error);
                let desired: State = desired.parse().unwrap_or(State::Error);
                let last = error.and_then(|e| serde_json::from_str::<LastError>(&e).ok()).filter(|e| e.at >= request.at);
                let error = if state == State::Error { last.map(|e| e.message) } else { None };
                out.push(Requested { plugin: id.clone(), state, done: state == desired, error });
            }
            if out.iter().all(|r| r.done || r.error.is_some()) || Instant::now() >= deadline {
                return Ok(out);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
