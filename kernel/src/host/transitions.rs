//! The lifecycle engine: hooks under a timeout, one transition at a time per plugin.

use super::*;

impl Kernel {
    /// A plugin's state changed: its audit record, a line in its own log, the host's notice
    /// and the `plugin.*` bus event.
    pub(super) fn announce(&self, actor: &Actor, id: &str, from: Option<State>, to: Option<State>, action: AuditAction, details: Value) {
        let topic = action.as_str().to_string();
        self.0.core.writer.audit(actor, Some(id), action, details.clone());
        // Lifecycle changes also go to the plugin's own log, so its tail tells its story.
        let what = topic.strip_prefix("plugin.").unwrap_or(&topic);
        self.0.core.writer.log(LogRecord {
            id: 0,
            ts: now_ms(),
            plugin: id.into(),
            level: if to == Some(State::Error) { Level::Error } else { Level::Info },
            target: "objectos::kernel".into(),
            message: match (from, to) {
                (Some(f), Some(t)) if f != t => format!("{what} by {actor} ({f} -> {t})"),
                _ => format!("{what} by {actor}"),
            },
            fields: details.clone(),
        });
        self.0.core.notices.send(KernelEvent::StateChanged { plugin: id.into(), from, to });
        let mut payload = json!({ "plugin": id, "from": from, "to": to });
        if let (Value::Object(p), Value::Object(d)) = (&mut payload, details) {
            p.extend(d);
        }
        self.0.core.emit_kernel(&topic, payload);
    }

    /// Run one hook of `id` in a `hook` span, under `catch_unwind` and the hook timeout;
    /// counts it, and logs a failure to the plugin's log. Returns how long it took.
    pub(super) async fn run_hook(&self, id: &str, code: &Arc<dyn Plugin>, ctx: &PluginContext, hook: Hook, upgrade: Option<(Version, Version)>) -> std::result::Result<Duration, (FailureKind, String)> {
        let span = tracing::info_span!("hook", plugin = %id, kernel = self.0.core.id, hook = hook.as_str());
        let started = Instant::now();
        let fut = async {
            match hook {
                Hook::Install => code.on_install(ctx).await,
                Hook::Load => code.on_load(ctx).await,
                Hook::Enable => code.on_enable(ctx).await,
                Hook::Disable => code.on_disable(ctx).await,
                Hook::Unload => code.on_unload(ctx).await,
                Hook::Uninstall => code.on_uninstall(ctx).await,
                Hook::Upgrade => {
                    let (from, to) = upgrade.clone().unwrap_or((Version::new(0, 0, 0), Version::new(0, 0, 0)));
                    code.on_upgrade(ctx, &from, &to).await
                }
            }
        };
        let mut stack = IN_HOOK.try_with(Clone::clone).unwrap_or_default();
        stack.push(id.to_string());
        let guarded = IN_HOOK.scope(stack, AssertUnwindSafe(fut).catch_unwind()).instrument(span);
        let outcome = tokio::time::timeout(self.0.config.hook_timeout, guarded).await;
        let took = started.elapsed();
        let result = match outcome {
            Ok(Ok(Ok(()))) => Ok(took),
            Ok(Ok(Err(e))) => Err((FailureKind::Failed, e.to_string())),
            Ok(Err(panic)) => Err((FailureKind::Panicked, panic_message(&*panic))),
            Err(_) => Err((FailureKind::TimedOut, format!("did not finish within {:?}", self.0.config.hook_timeout))),
        };
        let counters = lock(&self.0.plugins).get(id).map(|s| s.shared.counters.clone());
        if let Some(c) = counters {
            c.hook(hook, took.as_micros() as u64, result.is_ok());
        }
        if let Err((_, message)) = &result {
            self.0.core.writer.log(LogRecord {
                id: 0,
                ts: now_ms(),
                plugin: id.into(),
                level: Level::Error,
                target: "objectos::kernel".into(),
                message: format!("{hook} failed: {message}"),
                fields: json!({ "hook": hook.as_str() }),
            });
        }
        result
    }

    /// Remove what an active plugin put into the kernel: services and subscriptions.
    pub(super) fn drop_runtime(&self, id: &str) {
        self.0.core.bus.remove_owner(id);
        for name in self.0.core.registry.remove_owner(id) {
            self.0.core.announce_service(&Actor::System, id, &name, None);
        }
    }

    /// End `id`'s durable subscriptions, with the deliveries waiting for them: all of them, or
    /// (`keep_live`) those it does not hold in this process now. Dropped deliveries are said in
    /// its log.
    pub(super) fn end_subscriptions(&self, id: &str, keep_live: bool) {
        let core = &self.0.core;
        // The runner's plugins hold the subscriptions that count: another process that runs a
        // plugin (a test's second kernel) leaves them as they are.
        if !self.is_runner() {
            return;
        }
        let live: Vec<String> = core.bus.durable_keys().into_iter().filter(|(o, _)| &**o == id).map(|(_, n)| n.to_string()).collect();
        let dropped = match core.store.end_subscriptions(id, keep_live.then_some(&live[..])) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("could not end {id}'s durable subscriptions: {e}");
                return;
            }
        };
        core.outbox.changed();
        if dropped > 0 {
            core.writer.log(LogRecord {
                id: 0,
                ts: now_ms(),
                plugin: id.into(),
                level: Level::Warn,
                target: "objectos::kernel".into(),
                message: format!("{dropped} queued events for subscriptions it no longer holds were dropped"),
                fields: json!({ "dropped": dropped }),
            });
        }
    }

    pub(super) fn update(&self, id: &str, f: impl FnOnce(&mut Slot)) -> Result<()> {
        let (state, desired, err) = {
            let mut plugins = lock(&self.0.plugins);
            let slot = plugins.get_mut(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
            f(slot);
            slot.updated_at = now_ms();
            (slot.state, slot.desired, slot.last_error.as_ref().and_then(|e| serde_json::to_string(e).ok()))
        };
        self.0.core.store.set_state(id, state, desired, err.as_deref())
    }

    pub(super) fn set_error(&self, id: &str, hook: Option<Hook>, kind: FailureKind, message: String) -> Result<()> {
        let from = lock(&self.0.plugins).get(id).map(|s| s.state);
        self.update(id, |s| {
            s.state = State::Error;
            s.last_error = Some(LastError { kind, hook: hook.map(|h| h.as_str().to_string()), message: message.clone(), at: now_ms() });
        })?;
        self.announce(&Actor::System, id, from, Some(State::Error), AuditAction::PluginError, json!({ "hook": hook.map(Hook::as_str), "message": message }));
        Ok(())
    }

    /// One transition with the plugin's gate held by the caller.
    pub(super) async fn step(&self, actor: &Actor, id: &str, action: Action) -> Result<()> {
        let (state, code, ctx) = {
            let plugins = lock(&self.0.plugins);
            let s = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
            (s.state, s.code.clone(), s.ctx.clone())
        };
        // Uninstall removes the plugin rather than moving it (see `uninstall_as`).
        let (true, Some(to)) = (state.allows(action), action.target()) else {
            return Err(KernelError::IllegalTransition { plugin: id.into(), state, action });
        };
        let hook = action.hook();
        if matches!(action, Action::Load | Action::Enable) {
            self.check_resolves(id)?;
        }
        if action == Action::Enable {
            self.check_enable(id)?;
        }
        let result = self.run_hook(id, &code, &ctx, hook, None).await;
        if matches!(action, Action::Disable | Action::Unload) || (action == Action::Enable && result.is_err()) {
            self.drop_runtime(id);
        }
        match (action, &result) {
            // Asked to stop: its durable subscriptions end (shutting down keeps them).
            (Action::Disable | Action::Unload, _) => self.end_subscriptions(id, false),
            // Those this enable no longer made end.
            (Action::Enable, Ok(_)) => self.end_subscriptions(id, true),
            _ => {}
        }
        match result {
            Ok(took) => {
                self.update(id, |s| {
                    s.state = to;
                    s.desired = to;
                    s.last_error = None;
                })?;
                self.announce(actor, id, Some(state), Some(to), action.audit_action(), json!({ "durationMs": took.as_secs_f64() * 1000.0 }));
                Ok(())
            }
            Err((kind, message)) => {
                // A disable that failed stays asked for: a restart does not undo it. An enable
                // that was refused does not become the desired state (a plugin that ran before
                // keeps its `enabled` and is retried at the next start; a new one is not).
                if action != Action::Enable {
                    self.update(id, |s| s.desired = to)?;
                }
                self.set_error(id, Some(hook), kind, message.clone())?;
                Err(KernelError::Hook { plugin: id.into(), hook: hook.as_str().into(), message })
            }
        }
    }

    pub(super) fn check_enable(&self, id: &str) -> Result<()> {
        let plugins = lock(&self.0.plugins);
        let slot = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        for dep in slot.manifest().dependencies.keys() {
            let state = plugins.get(dep).map(|d| d.state).unwrap_or(State::Installed);
            if state != State::Enabled {
                return Err(KernelError::DependencyNotEnabled { plugin: id.into(), dependency: dep.clone(), state });
            }
        }
        drop(plugins);
        self.check_approved(id)
    }

    /// What an admin must approve before `id` may run: a new author's version, and every
    /// required permission.
    pub(super) fn check_approved(&self, id: &str) -> Result<()> {
        let change = lock(&self.0.plugins).get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?.author_change.clone();
        if let Some(c) = change {
            return Err(KernelError::AuthorChanged { plugin: id.into(), from: c.from.unwrap_or_else(|| "nobody".into()), to: c.to.unwrap_or_else(|| "nobody".into()) });
        }
        let pending = self.pending(id)?;
        if !pending.is_empty() {
            return Err(KernelError::PermissionsPending { plugin: id.into(), pending });
        }
        Ok(())
    }

    pub(super) fn pending(&self, id: &str) -> Result<Vec<String>> {
        let plugins = lock(&self.0.plugins);
        let slot = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        let granted = lock(&slot.shared.granted);
        Ok(slot.manifest().permissions.iter().map(|p| p.to_string()).filter(|p| !granted.contains(p)).collect())
    }

    pub(super) async fn gate(&self, id: &str) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        if in_hook(id) {
            return Err(KernelError::Reentrant { plugin: id.into() });
        }
        let gate = lock(&self.0.plugins).get(id).map(|s| s.gate.clone()).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        Ok(gate.lock_owned().await)
    }

    pub(super) async fn transition(&self, actor: Actor, id: &str, action: Action) -> Result<()> {
        let _g = self.gate(id).await?;
        self.step(&actor, id, action).await
    }

    /// Load a plugin (INSTALLED or ERROR -> LOADED).
    pub async fn load(&self, id: &str) -> Result<()> {
        self.recorded(self.transition(self.1.clone(), id, Action::Load).await)
    }

    /// Enable a plugin, loading it first when needed. Every dependency must be enabled;
    /// with `with_deps` they are enabled first, in dependency order.
    pub async fn enable(&self, id: &str, with_deps: bool) -> Result<()> {
        self.recorded(self.enable_as(self.1.clone(), id, with_deps).await)
    }

    pub(crate) async fn enable_as(&self, actor: Actor, id: &str, with_deps: bool) -> Result<()> {
        self.require(id)?;
        if with_deps {
            let order = resolve::resolve(&self.manifests(), id)?;
            for dep in order.iter().filter(|d| d.as_str() != id) {
                let state = lock(&self.0.plugins).get(dep).map(|s| s.state);
                if state != Some(State::Enabled) {
                    Box::pin(self.enable_as(actor.clone(), dep, false)).await?;
                }
            }
        }
        let _g = self.gate(id).await?;
        let (state, desired) = lock(&self.0.plugins).get(id).map(|s| (s.state, s.desired)).unwrap_or((State::Installed, State::Installed));
        if state == State::Enabled {
            return Ok(());
        }
        if matches!(state, State::Installed | State::Error) {
            // Check what would block the enable before running onLoad, so a refusal leaves
            // the plugin where it was.
            self.check_resolves(id)?;
            self.check_enable(id)?;
            self.step(&actor, id, Action::Load).await?;
        }
        let r = self.step(&actor, id, Action::Enable).await;
        if r.is_err() {
            // A failed enable leaves the desired state as it was before it (see `step`), also
            // past the load it ran first.
            self.update(id, |s| s.desired = desired)?;
        }
        r
    }

    /// Disable a plugin. Refused while enabled plugins depend on it, unless `cascade`, which
    /// disables them first (dependents of dependents first).
    pub async fn disable(&self, id: &str, cascade: bool) -> Result<()> {
        self.recorded(self.disable_as(self.1.clone(), id, cascade).await)
    }

    pub(crate) async fn disable_as(&self, actor: Actor, id: &str, cascade: bool) -> Result<()> {
        self.require(id)?;
        let dependents = self.enabled_dependents(id);
        if !dependents.is_empty() {
            if !cascade {
                return Err(KernelError::DependentsEnabled { plugin: id.into(), dependents });
            }
            let (order, _) = resolve::resolve_all(&self.manifests());
            for dep in order.iter().rev().filter(|d| dependents.contains(d)) {
                let still = lock(&self.0.plugins).get(dep).map(|s| s.state) == Some(State::Enabled);
                if still {
                    self.transition(actor.clone(), dep, Action::Disable).await?;
                }
            }
        }
        self.transition(actor, id, Action::Disable).await
    }

    /// Stop a plugin whose code keeps failing: disable it (its enabled dependents first) and
    /// unload it, then hold it in ERROR with `reason` as its last error, announced as
    /// `plugin.quarantined` (audit, log, bus event, host notice). It stays stopped across
    /// restarts until an admin enables it again.
    pub(crate) async fn quarantine(&self, id: &str, reason: String) -> Result<()> {
        self.require(id)?;
        let state = lock(&self.0.plugins).get(id).map(|s| s.state);
        if state == Some(State::Enabled) {
            self.disable_as(Actor::System, id, true).await?;
        }
        let state = lock(&self.0.plugins).get(id).map(|s| s.state);
        if matches!(state, Some(State::Disabled | State::Loaded)) {
            self.transition(Actor::System, id, Action::Unload).await?;
        }
        let _g = self.gate(id).await?;
        let from = lock(&self.0.plugins).get(id).map(|s| s.state);
        self.update(id, |s| {
            s.state = State::Error;
            s.desired = State::Installed;
            s.last_error = Some(LastError { kind: FailureKind::Quarantined, hook: None, message: format!("quarantined: {reason}"), at: now_ms() });
        })?;
        self.announce(&Actor::System, id, from, Some(State::Error), AuditAction::PluginQuarantined, json!({ "reason": reason }));
        // The failures are answered: an admin who enables it again starts it afresh.
        self.0.core.store.clear_failures(id)?;
        Ok(())
    }

    pub(super) fn enabled_dependents(&self, id: &str) -> Vec<String> {
        let set = self.manifests();
        let plugins = lock(&self.0.plugins);
        resolve::dependents(&set, id).into_iter().filter(|d| plugins.get(d).map(|s| s.state) == Some(State::Enabled)).collect()
    }

    /// Unload a plugin back to INSTALLED.
    pub async fn unload(&self, id: &str) -> Result<()> {
        self.recorded(self.transition(self.1.clone(), id, Action::Unload).await)
    }
}
