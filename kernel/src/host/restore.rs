//! Start-up, following another process, and shutdown.

use super::*;

impl Kernel {
    /// Install new built-ins, then restore every plugin's desired state in dependency order.
    /// One plugin's failure is recorded on it and does not stop the others.
    pub async fn start(&self) -> Result<StartReport> {
        // A kernel that runs plugins delivers their queued events, unless another process
        // does: it takes the runner lease when no one holds it (a host decides before, with
        // `take_runner`, when it should run nothing while another process does).
        self.take_runner_if_free();
        self.0.core.stopping.store(false, Ordering::Relaxed);
        let mut report = self.sync_builtins().await?;
        self.restore(&mut report).await;
        self.recorded(Ok(report))
    }

    /// Record new built-ins (running `onInstall`, applying the trust policy) and upgrade
    /// changed ones, without starting anything. Read-only tools call this instead of
    /// [`Kernel::start`] so that built-ins show up in listings.
    pub async fn sync_builtins(&self) -> Result<StartReport> {
        let mut report = StartReport::default();
        let builtins: Vec<(String, Arc<Manifest>, Arc<dyn Plugin>)> =
            lock(&self.0.builtins).iter().map(|(k, b)| (k.clone(), b.manifest.clone(), b.code.clone())).collect();
        let policy = self.builtin_policy()?;
        let mut fresh = Vec::new();
        for (id, manifest, code) in builtins {
            let existing = lock(&self.0.plugins).get(&id).map(|s| s.manifest().clone());
            match existing {
                None => fresh.push((manifest, code, None)),
                Some(old) => {
                    if old.version != manifest.version || *old != *manifest {
                        if let Err(e) = self.replace(Actor::System, manifest.clone(), code, None, true).await {
                            report.failed.push((id.clone(), e.to_string()));
                        }
                        if policy == BuiltinPolicy::Grant {
                            self.grant_as(Actor::System, &Actor::Policy, &id, GrantRequest::All)?;
                        }
                    }
                }
            }
        }
        // New built-ins are recorded, with the policy's grants, in one transaction.
        if !fresh.is_empty() {
            let ids: Vec<String> = fresh.iter().map(|(m, _, _)| m.id.clone()).collect();
            let grant_by = (policy == BuiltinPolicy::Grant).then_some(&Actor::Policy);
            match self.install_many(Actor::System, fresh, PluginKind::Builtin, grant_by).await {
                Ok(done) => report.failed.extend(done.into_iter().filter_map(|(id, r)| r.err().map(|e| (id, e.to_string())))),
                Err(e) => report.failed.extend(ids.into_iter().map(|id| (id, e.to_string()))),
            }
        }
        // Built-ins recorded in the database get this build's code.
        let registered: Vec<(String, Arc<dyn Plugin>)> = lock(&self.0.builtins).iter().map(|(k, b)| (k.clone(), b.code.clone())).collect();
        for (id, code) in registered {
            if let Some(slot) = lock(&self.0.plugins).get_mut(&id) {
                slot.code = code;
            }
        }
        Ok(report)
    }

    pub(super) async fn restore(&self, report: &mut StartReport) {
        // What a quiet start brought up goes: the start below brings every plugin up afresh,
        // recorded as usual.
        let quiet: Vec<String> = lock(&self.0.core.quiet).iter().cloned().collect();
        for id in &quiet {
            self.drop_runtime(id);
        }
        lock(&self.0.core.quiet).clear();
        self.0.running.store(true, Ordering::Relaxed);
        // Nothing runs yet in this process: every plugin starts from INSTALLED, except those in
        // ERROR, whose error stays visible until retried. Built-ins missing from this build fail.
        {
            let registered: BTreeSet<String> = lock(&self.0.builtins).keys().cloned().collect();
            let mut plugins = lock(&self.0.plugins);
            for (id, slot) in plugins.iter_mut() {
                if slot.kind == PluginKind::Builtin && !registered.contains(id) {
                    slot.state = State::Error;
                    slot.last_error = Some(LastError { kind: FailureKind::MissingBuiltin, hook: None, message: format!("{id} is a built-in plugin that this build of ObjectOS does not include"), at: now_ms() });
                } else if slot.state != State::Error || slot.desired != State::Installed {
                    slot.state = State::Installed;
                }
            }
        }
        let (order, errors) = resolve::resolve_all(&self.manifests());
        for (id, err) in &errors {
            let desired = lock(&self.0.plugins).get(id).map(|s| s.desired);
            if matches!(desired, Some(State::Enabled | State::Loaded | State::Disabled)) {
                if let Err(e) = self.set_error(id, None, FailureKind::Unresolved, err.to_string()) {
                    report.failed.push((id.clone(), e.to_string()));
                }
                report.failed.push((id.clone(), err.to_string()));
            }
        }
        for id in order {
            let Some((desired, state)) = lock(&self.0.plugins).get(&id).map(|s| (s.desired, s.state)) else { continue };
            if state == State::Error && desired == State::Installed {
                continue;
            }
            let r = match desired {
                State::Enabled => self.enable_as(Actor::System, &id, false).await,
                State::Loaded => self.transition(Actor::System, &id, Action::Load).await,
                State::Disabled => self.restore_disabled(&id).await,
                State::Installed | State::Error => Ok(()),
            };
            match r {
                Ok(()) if desired == State::Enabled => report.enabled.push(id),
                Ok(()) => {}
                Err(e) => report.failed.push((id, e.to_string())),
            }
        }
        self.0.core.writer.audit(&Actor::System, None, AuditAction::KernelStarted, json!({ "enabled": report.enabled.len(), "failed": report.failed.len() }));
        self.0.core.emit_kernel("kernel.started", json!({ "enabled": report.enabled, "failed": report.failed.len() }));
    }

    /// Bring `ids` up in this process, with what they depend on, for a command that reads
    /// through the services they offer, without a lifecycle change: only plugins an admin
    /// wants enabled (and whose dependencies are wanted enabled) come up, their load and enable
    /// hooks run under the usual timeout, and nothing is recorded: no state written, no audit
    /// record, no lifecycle log line, no bus event. Returns the ones that run now. A hook that
    /// fails is logged to the plugin's log and returned; the plugin's state is left as it was.
    /// For a process that changes no lifecycle state: it ends with [`Kernel::flush`], not
    /// [`Kernel::shutdown`].
    pub async fn start_quietly(&self, ids: &[&str]) -> Result<Vec<String>> {
        let set = self.manifests();
        let mut order: Vec<String> = Vec::new();
        for id in ids {
            let Ok(needed) = resolve::resolve(&set, id) else { continue };
            let wanted = |dep: &String| lock(&self.0.plugins).get(dep).is_some_and(|s| s.desired == State::Enabled && s.state != State::Error);
            if !needed.iter().all(wanted) {
                continue;
            }
            for dep in needed {
                if !order.contains(&dep) {
                    order.push(dep);
                }
            }
        }
        // Until `start`, a plugin's state is the one recorded, and nothing runs in this process.
        let running = self.0.running.load(Ordering::Relaxed);
        let mut started = Vec::new();
        for id in order {
            let _g = self.gate(&id).await?;
            let Some((state, code, ctx)) = lock(&self.0.plugins).get(&id).map(|s| (s.state, s.code.clone(), s.ctx.clone())) else { continue };
            if (running && state == State::Enabled) || lock(&self.0.core.quiet).contains(&id) {
                started.push(id);
                continue;
            }
            self.check_resolves(&id)?;
            self.check_enable(&id)?;
            lock(&self.0.core.quiet).insert(id.clone());
            for hook in [Hook::Load, Hook::Enable] {
                if let Err((_, message)) = self.run_hook(&id, &code, &ctx, hook, None).await {
                    self.drop_runtime(&id);
                    lock(&self.0.core.quiet).remove(&id);
                    return Err(KernelError::Hook { plugin: id, hook: hook.as_str().into(), message });
                }
            }
            if let Some(slot) = lock(&self.0.plugins).get_mut(&id) {
                slot.state = State::Enabled;
            }
            started.push(id);
        }
        Ok(started)
    }

    /// Whether [`Kernel::start`] has run: plugins run in this process as their state says.
    pub fn started(&self) -> bool {
        self.0.running.load(Ordering::Relaxed)
    }

    /// The installed plugins in an order that puts each after what it depends on (those whose
    /// dependencies cannot be satisfied are left out).
    pub fn load_order(&self) -> Vec<String> {
        resolve::resolve_all(&self.manifests()).0
    }

    pub(super) async fn restore_disabled(&self, id: &str) -> Result<()> {
        self.transition(Actor::System, id, Action::Load).await?;
        self.end_subscriptions(id, false);
        self.update(id, |s| {
            s.state = State::Disabled;
            s.desired = State::Disabled;
        })
    }

    /// Apply what another process (the `objectos` command, say) changed in the data directory:
    /// plugins installed or removed there, grants, upgrades, and desired states, which this
    /// process then runs. A kernel that runs nothing (not started: the runner is another
    /// process) takes each plugin's recorded state as it is instead. Call it when
    /// [`Kernel::changed_externally`] says so.
    pub async fn sync_external(&self) -> Result<()> {
        let runs = self.started();
        // Quotas another process set (`objectos settings quotas`) apply here too.
        self.0.core.quotas.store(Arc::new(crate::model::quota::Quotas::from_setting(self.0.core.store.setting("quotas")?.as_deref())));
        let rows = self.0.core.store.plugins()?;
        let ids: BTreeSet<String> = rows.iter().map(|r| r.id.clone()).collect();
        let gone: Vec<String> = lock(&self.0.plugins).keys().filter(|k| !ids.contains(*k)).cloned().collect();
        for id in gone {
            self.drop_runtime(&id);
            let from = lock(&self.0.plugins).remove(&id).map(|s| s.state);
            self.0.core.notices.send(KernelEvent::StateChanged { plugin: id, from, to: None });
        }
        let mut follow: Vec<(String, State, State)> = Vec::new();
        for row in rows {
            let known = lock(&self.0.plugins).get(&row.id).map(|s| (s.desired, s.state, s.manifest().clone(), s.kind));
            let package_dir = row.package_dir.as_ref().map(PathBuf::from);
            match known {
                None => {
                    let mut slot = self.slot_from_row(&row)?;
                    if runs {
                        slot.state = State::Installed;
                    }
                    let to = slot.state;
                    lock(&self.0.plugins).insert(slot);
                    self.0.core.notices.send(KernelEvent::StateChanged { plugin: row.id.clone(), from: None, to: Some(to) });
                    if runs && row.desired == State::Enabled {
                        follow.push((row.id.clone(), row.desired, State::Installed));
                    }
                }
                Some((desired, state, old, kind)) => {
                    let manifest = Arc::new(Self::parse_row_manifest(&row)?);
                    self.refresh_grants(&row.id)?;
                    if *old != *manifest && kind == PluginKind::Package {
                        if let Some(dir) = &package_dir {
                            let code = self.0.config.runtime.instantiate(&manifest, dir)?;
                            let mut plugins = lock(&self.0.plugins);
                            if let Some(s) = plugins.get_mut(&row.id) {
                                s.code = code;
                                s.package_dir = package_dir.clone();
                                s.new_permissions = row.new_permissions.clone();
                                s.author_change = row.author_change.as_deref().and_then(|t| serde_json::from_str(t).ok());
                            }
                            plugins.set_manifest(&row.id, manifest.clone());
                        }
                    }
                    // An approval (or a new author's hold) another process recorded.
                    if let Some(s) = lock(&self.0.plugins).get_mut(&row.id) {
                        s.author_change = row.author_change.as_deref().and_then(|t| serde_json::from_str(t).ok());
                    }
                    self.0.core.notices.send(KernelEvent::PermissionsChanged { plugin: row.id.clone() });
                    if !runs {
                        self.take_recorded(&row);
                        continue;
                    }
                    // A new desired state, or an enable asked again of a plugin that failed
                    // (the request clears its last error).
                    let retry = row.desired == State::Enabled && state == State::Error && row.last_error.is_none();
                    if row.desired != desired || retry {
                        follow.push((row.id.clone(), row.desired, state));
                    }
                }
            }
        }
        // The lifecycle changes asked for: what stops goes first, dependents before what they
        // depend on; then what starts, dependencies first.
        let order = self.load_order();
        let rank = |id: &str| order.iter().position(|o| o == id).unwrap_or(usize::MAX);
        let (mut ups, mut downs): (Vec<_>, Vec<_>) = follow.into_iter().partition(|(_, desired, state)| *desired == State::Enabled || (*desired, *state) == (State::Loaded, State::Installed));
        downs.sort_by_key(|(id, ..)| std::cmp::Reverse(rank(id)));
        ups.sort_by_key(|(id, ..)| rank(id));
        for (id, desired, state) in downs.into_iter().chain(ups) {
            if let Err(e) = self.follow_desired(&id, desired, state).await {
                tracing::warn!(plugin = %id, "could not follow the change made by another process: {e}");
            }
        }
        self.0.core.store.changed_externally();
        Ok(())
    }

    /// Take `row`'s recorded state, desired state and last error as this kernel's own (the
    /// process that runs the plugins recorded them), saying so when the state changed.
    fn take_recorded(&self, row: &crate::db::PluginRow) {
        let from = {
            let mut plugins = lock(&self.0.plugins);
            let Some(s) = plugins.get_mut(&row.id) else { return };
            let from = s.state;
            s.state = row.state;
            s.desired = row.desired;
            s.last_error = row.last_error.as_deref().and_then(|e| serde_json::from_str(e).ok());
            from
        };
        if from != row.state {
            self.0.core.notices.send(KernelEvent::StateChanged { plugin: row.id.clone(), from: Some(from), to: Some(row.state) });
        }
    }

    /// Bring `id`, in `state` here, to the `desired` state another process recorded.
    async fn follow_desired(&self, id: &str, desired: State, state: State) -> Result<()> {
        if desired != State::Enabled {
            // Asked not to run: whatever state it is in, its subscriptions end.
            self.end_subscriptions(id, false);
        }
        match (desired, state) {
            (State::Enabled, _) => match self.enable_as(Actor::System, id, false).await {
                // A hook's failure is recorded as the plugin's error already; a refusal (a
                // dependency not running, a permission pending) is recorded here, so the one
                // who asked reads why, and the same request is not tried at every change.
                Err(e) if !matches!(e, KernelError::Hook { .. }) => {
                    let _ = self.set_error(id, None, FailureKind::Failed, e.to_string());
                    Err(e)
                }
                r => r,
            },
            (State::Disabled | State::Installed | State::Loaded, State::Enabled) => {
                self.transition(Actor::System, id, Action::Disable).await?;
                if desired == State::Installed {
                    self.transition(Actor::System, id, Action::Unload).await?;
                }
                Ok(())
            }
            (State::Installed, State::Loaded | State::Disabled) => self.transition(Actor::System, id, Action::Unload).await,
            (State::Loaded, State::Installed) => self.transition(Actor::System, id, Action::Load).await,
            _ => Ok(()),
        }
    }

    /// Stop every running plugin (disable and unload hooks, in reverse dependency order)
    /// without changing the states recorded for the next start, then flush the writer.
    pub async fn shutdown(&self) {
        if !self.started() {
            // Nothing runs here (the recorded states are another process's): nothing to stop.
            self.0.core.writer.flush();
            return;
        }
        self.0.core.stopping.store(true, Ordering::Relaxed);
        let (order, _) = resolve::resolve_all(&self.manifests());
        for id in order.iter().rev() {
            let Some((state, code, ctx)) = lock(&self.0.plugins).get(id).map(|s| (s.state, s.code.clone(), s.ctx.clone())) else { continue };
            if state == State::Enabled {
                let _ = self.run_hook(id, &code, &ctx, Hook::Disable, None).await;
                self.drop_runtime(id);
            }
            if matches!(state, State::Enabled | State::Disabled | State::Loaded) {
                let _ = self.run_hook(id, &code, &ctx, Hook::Unload, None).await;
            }
        }
        self.0.core.registry.clear();
        lock(&self.0.own_lease).take();
        self.0.core.writer.flush();
    }
}
