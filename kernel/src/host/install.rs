//! Install, upgrade and uninstall: built-ins registered by the host, packages from disk.

use super::*;
use crate::model::manifest::{ManifestErrors, Problem};
use crate::model::permission::Pattern;

/// Ids packages may not take: the built-ins'.
pub(super) const RESERVED_ID_PREFIX: &str = "com.objectos.";

impl Kernel {
    /// Register a built-in plugin: its manifest (usually `include_str!("../plugin.json")`) and
    /// its code. Call before [`Kernel::start`].
    pub fn register_builtin(&self, manifest_json: &str, code: Arc<dyn Plugin>) -> Result<()> {
        self.register_builtin_with_files(manifest_json, code, &[])
    }

    /// Like [`Kernel::register_builtin`], with the files its manifest declares (for example
    /// `("translations/en.json", include_str!("../translations/en.json"))`), which are checked
    /// like a package's.
    pub fn register_builtin_with_files(&self, manifest_json: &str, code: Arc<dyn Plugin>, files: &[(&str, &'static str)]) -> Result<()> {
        let manifest = Manifest::parse(manifest_json.as_bytes(), "built-in plugin.json")?;
        let files: BTreeMap<String, &'static str> = files.iter().map(|(p, t)| (p.to_string(), *t)).collect();
        let mut problems = Vec::new();
        for d in manifest.provides.declared().filter(|d| d.kind == DeclaredKind::Translation) {
            let path = d.candidates().next().unwrap_or_default();
            let found = files.get(&path).ok_or_else(|| format!("{path} was not registered with the plugin"));
            if let Err(message) = found.and_then(|t| crate::package::check_translations(t.as_bytes()).map(|_| ()).map_err(|e| format!("{path}: {e}"))) {
                problems.push(crate::model::manifest::Problem { path: d.json_path(), message });
            }
        }
        if !problems.is_empty() {
            return Err(crate::model::manifest::ManifestErrors { file: format!("built-in {} plugin.json", manifest.id), problems }.into());
        }
        let id = manifest.id.clone();
        let mut b = lock(&self.0.builtins);
        if b.contains_key(&id) {
            return Err(KernelError::DuplicateBuiltin { plugin: id });
        }
        if let Some(slot) = lock(&self.0.plugins).get(&id) {
            if slot.kind == PluginKind::Package {
                return Err(KernelError::DuplicateBuiltin { plugin: id });
            }
        }
        b.insert(id, Builtin { manifest: Arc::new(manifest), code, files });
        Ok(())
    }

    /// Install a package from a folder or `.zip`. A newer version of an installed plugin
    /// upgrades it (storage kept, `onUpgrade` runs); the same version is refused; an older one
    /// is refused unless `force`.
    pub async fn install_package(&self, path: &Path, force: bool) -> Result<InstallOutcome> {
        self.recorded(self.install_package_as(self.1.clone(), path, force, false).await)
    }

    /// Replace an installed package with the same version from `path` (an author's edit loop):
    /// grants are kept unless the permissions it asks for changed, and a plugin that was enabled
    /// is enabled again. Refused when that id and version are not installed.
    pub async fn reinstall_package(&self, path: &Path) -> Result<InstallOutcome> {
        self.recorded(self.install_package_as(self.1.clone(), path, false, true).await)
    }

    pub(crate) async fn install_package_as(&self, actor: Actor, path: &Path, force: bool, reinstall: bool) -> Result<InstallOutcome> {
        // Copying, unpacking and checking untrusted input is blocking work: it runs off the
        // async runtime, so a large package does not stall the kernel's other tasks.
        let (src, root, runtime) = (path.to_path_buf(), package::staging_root(&self.0.packages_dir), self.0.config.runtime.clone());
        let installed: Vec<crate::model::manifest::Manifest> = lock(&self.0.plugins).values().map(|s| s.manifest().as_ref().clone()).collect();
        let (staged, problems) = tokio::task::spawn_blocking(move || {
            let staged = package::stage(&src, &root)?;
            let problems = runtime.check(&staged.manifest, &staged.dir, &installed);
            Ok::<_, KernelError>((staged, problems))
        })
        .await
        .map_err(|e| KernelError::Package { path: path.to_path_buf(), message: format!("checking the package failed: {e}") })??;
        if !problems.is_empty() {
            return Err(crate::model::manifest::ManifestErrors { file: path.join("plugin.json").display().to_string(), problems }.into());
        }
        // The staging folder goes when `staged` is dropped, whatever happens here.
        self.install_staged(actor, &staged, force, reinstall).await
    }

    pub(super) async fn install_staged(&self, actor: Actor, staged: &package::Staged, force: bool, reinstall: bool) -> Result<InstallOutcome> {
        // One install at a time: the name checks below must still hold when the plugin is
        // recorded (two packages claiming one namespace at once would both pass them).
        let _one = self.0.installing.lock().await;
        let m = Arc::new(staged.manifest.clone());
        if lock(&self.0.builtins).contains_key(&m.id) {
            return Err(KernelError::DuplicateBuiltin { plugin: m.id.clone() });
        }
        self.check_package_names(&m, &staged.source)?;
        let existing = lock(&self.0.plugins).get(&m.id).map(|s| (s.manifest().version.clone(), s.kind));
        if reinstall && existing.as_ref().map(|(v, _)| v) != Some(&m.version) {
            let installed = existing.as_ref().map_or("nothing".to_string(), |(v, _)| format!("version {v}"));
            return Err(KernelError::Package { path: staged.source.clone().into(), message: format!("--reinstall replaces the installed version of {} with the same version; {installed} is installed, and this is {}", m.id, m.version) });
        }
        if let Some((installed, _)) = &existing {
            if *installed == m.version && !reinstall {
                return Err(KernelError::AlreadyInstalled { plugin: m.id.clone(), version: installed.to_string() });
            }
            if m.version < *installed && !force {
                return Err(KernelError::Downgrade { plugin: m.id.clone(), installed: installed.to_string(), offered: m.version.to_string() });
            }
        }
        // A reinstall goes beside the files it replaces, which stay until the swap is done.
        let folder = if reinstall { format!("{}-r{}", m.version, now_ms()) } else { m.version.to_string() };
        let dest = self.0.packages_dir.join(&m.id).join(folder);
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| KernelError::io(&dest, e))?;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| KernelError::io(parent, e))?;
        }
        std::fs::rename(&staged.dir, &dest).map_err(|e| KernelError::io(&dest, e))?;
        let code = match self.0.config.runtime.instantiate(&m, &dest) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dest);
                return Err(e);
            }
        };
        let outcome = match existing {
            None => self.install_new(actor, m.clone(), PluginKind::Package, code, Some(dest.clone())).await,
            Some(_) => self.replace(actor, m.clone(), code, Some(dest.clone()), force).await,
        };
        if outcome.is_err() {
            let _ = std::fs::remove_dir_all(&dest);
        }
        outcome
    }

    /// What a package may call itself: not an id under `com.objectos.` (the built-ins'), only
    /// topics in namespaces no other plugin owns ([`Pattern::claims_collide`]; the kernel
    /// owns `kernel.*` and `plugin.*`), and only service names no other plugin declares. Every
    /// problem is reported, with its path.
    fn check_package_names(&self, m: &Manifest, source: &str) -> Result<()> {
        let mut problems = Vec::new();
        if m.id.starts_with(RESERVED_ID_PREFIX) || Some(m.id.as_str()) == RESERVED_ID_PREFIX.strip_suffix('.') {
            problems.push(Problem { path: "id".into(), message: format!("ids under `{RESERVED_ID_PREFIX}` are reserved for ObjectOS's built-in plugins") });
        }
        let mut claims: Vec<(String, Pattern)> = ["kernel.**", "plugin.**"].iter().filter_map(|p| Some(("the kernel".to_string(), p.parse().ok()?))).collect();
        // Service names have one owner too: a built-in's (registered or installed) or another
        // package's; `kernel` is the kernel's.
        let mut services: BTreeMap<String, String> = BTreeMap::from([("kernel".to_string(), crate::runtime::registry::KERNEL_OWNER.to_string())]);
        {
            let plugins = lock(&self.0.plugins);
            let builtins = lock(&self.0.builtins);
            let others = plugins.iter().map(|(id, s)| (id.clone(), s.manifest().clone())).chain(builtins.iter().map(|(id, b)| (id.clone(), b.manifest.clone())));
            for (id, manifest) in others.filter(|(id, _)| *id != m.id) {
                claims.extend(manifest.provides.events.iter().filter_map(|e| Some((id.clone(), e.parse().ok()?))));
                for s in &manifest.provides.services {
                    services.entry(s.clone()).or_insert_with(|| id.clone());
                }
            }
        }
        for (i, name) in m.provides.services.iter().enumerate() {
            if let Some(owner) = services.get(name) {
                problems.push(Problem { path: format!("provides.services[{i}]"), message: format!("service `{name}` is {owner}'s; a service name has one owner, so choose another") });
            }
        }
        for (i, text) in m.provides.events.iter().enumerate() {
            let path = format!("provides.events[{i}]");
            let Ok(pattern) = text.parse::<Pattern>() else { continue };
            if pattern.literal_prefix().is_empty() {
                problems.push(Problem { path, message: format!("`{text}` must start with a namespace of the package's own, e.g. `acme.invoice.*`") });
            } else if let Some((owner, owned)) = claims.iter().find(|(_, c)| c.claims_collide(&pattern)) {
                problems.push(Problem { path, message: format!("`{text}` is in a namespace {owner} owns (`{owned}`); a topic namespace has one owner, so choose another") });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestErrors { file: source.to_string(), problems }.into())
        }
    }

    pub(super) async fn install_new(&self, actor: Actor, m: Arc<Manifest>, kind: PluginKind, code: Arc<dyn Plugin>, dir: Option<PathBuf>) -> Result<InstallOutcome> {
        let id = m.id.clone();
        let mut done = self.install_many(actor, vec![(m, code, dir)], kind, None).await?;
        done.pop().map(|(_, r)| r).unwrap_or(Err(KernelError::NotFound { plugin: id }))
    }

    /// Record new plugins in one transaction (granting each everything it requests when
    /// `grant_by` is given), then announce each and run its `onInstall`. A failed hook puts
    /// that plugin in ERROR and does not stop the others.
    pub(super) async fn install_many(
        &self,
        actor: Actor,
        new: Vec<NewPlugin>,
        kind: PluginKind,
        grant_by: Option<&Actor>,
    ) -> Result<Vec<(String, Result<InstallOutcome>)>> {
        let now = now_ms();
        let rows: Vec<(PluginRow, Vec<String>)> = new
            .iter()
            .map(|(m, _, dir)| {
                let row = PluginRow {
                    id: m.id.clone(),
                    version: m.version.to_string(),
                    kind: kind.as_str().into(),
                    manifest: m.to_json(),
                    state: State::Installed,
                    desired: State::Installed,
                    last_error: None,
                    package_dir: dir.as_ref().map(|d| d.display().to_string()),
                    new_permissions: Vec::new(),
                    author_change: None,
                    installed_at: now,
                    updated_at: now,
                };
                let wanted = if grant_by.is_some() { m.all_permissions().map(|(p, _)| p.to_string()).collect() } else { Vec::new() };
                (row, wanted)
            })
            .collect();
        let grants = self.0.core.store.insert_plugins(&rows, &grant_by.map(Actor::to_string).unwrap_or_default())?;
        let mut installed = Vec::with_capacity(new.len());
        for (((m, code, _), (row, _)), grants) in new.into_iter().zip(&rows).zip(grants) {
            let mut slot = self.new_slot(m.clone(), kind, code.clone(), row, grants, &[])?;
            // A package under an id someone else published is held before any of its code runs.
            if kind == PluginKind::Package {
                slot.author_change = self.former_author_change(&m)?;
            }
            let held = slot.author_change.is_some();
            installed.push((m, code, slot.ctx.clone()));
            lock(&self.0.plugins).insert(slot);
            if held {
                self.persist_slot(&installed.last().map(|(m, _, _)| m.id.clone()).unwrap_or_default())?;
            }
        }
        let mut out = Vec::with_capacity(installed.len());
        for (m, code, ctx) in installed {
            self.announce(&actor, &m.id, None, Some(State::Installed), AuditAction::PluginInstalled, json!({ "version": m.version.to_string(), "kind": kind.as_str() }));
            if let Some(by) = grant_by {
                let granted = lock(&ctx.0.shared.granted).clone();
                if !granted.is_empty() {
                    self.0.core.writer.audit(&actor, Some(&m.id), AuditAction::PermissionGranted, json!({ "permissions": granted, "by": by.to_string() }));
                    self.0.core.notices.send(KernelEvent::PermissionsChanged { plugin: m.id.clone() });
                }
            }
            if let Err((kind, message)) = self.run_hook(&m.id, &code, &ctx, Hook::Install, None).await {
                if let Err(e) = self.set_error(&m.id, Some(Hook::Install), kind, message) {
                    out.push((m.id.clone(), Err(e)));
                    continue;
                }
            }
            let state = lock(&self.0.plugins).get(&m.id).map(|s| s.state).unwrap_or(State::Installed);
            let outcome = self.pending(&m.id).map(|pending| InstallOutcome { id: m.id.clone(), version: m.version.to_string(), upgraded_from: None, pending, state });
            out.push((m.id.clone(), outcome));
        }
        Ok(out)
    }

    /// Replace an installed plugin's manifest and code (upgrade, or forced downgrade).
    pub(super) async fn replace(&self, actor: Actor, m: Arc<Manifest>, code: Arc<dyn Plugin>, dir: Option<PathBuf>, _force: bool) -> Result<InstallOutcome> {
        let id = m.id.clone();
        let recorded = lock(&self.0.plugins).get(&id).map(|s| s.state).ok_or_else(|| KernelError::NotFound { plugin: id.clone() })?;
        // Before `start` has restored anything, a recorded ENABLED is the last process's state:
        // nothing runs here to disable; `start` enables the new version afterwards.
        let was = if self.0.running.load(Ordering::Relaxed) { recorded } else { State::Installed };
        if was == State::Enabled {
            let dependents = self.enabled_dependents(&id);
            if !dependents.is_empty() {
                return Err(KernelError::DependentsEnabled { plugin: id, dependents });
            }
        }
        let _g = self.gate(&id).await?;
        if was == State::Enabled {
            self.step(&actor, &id, Action::Disable).await?;
        }
        let (old_manifest, old_dir, new_permissions, author_change) = {
            let mut plugins = lock(&self.0.plugins);
            let slot = plugins.get_mut(&id).ok_or_else(|| KernelError::NotFound { plugin: id.clone() })?;
            // Another author under the same id is another publisher: nothing it is granted
            // carries over, and it stays disabled until an admin approves it again.
            let author_change = (slot.kind == PluginKind::Package && slot.manifest().author != m.author)
                .then(|| AuthorChange { from: slot.manifest().author.clone(), to: m.author.clone(), version: m.version.to_string() });
            let before: BTreeSet<String> = if author_change.is_some() { BTreeSet::new() } else { slot.manifest().all_permissions().map(|(p, _)| p.to_string()).collect() };
            slot.new_permissions = m.all_permissions().map(|(p, _)| p.to_string()).filter(|p| !before.contains(p)).collect();
            if author_change.is_some() {
                slot.author_change = author_change.clone();
            }
            slot.code = code.clone();
            let old_dir = std::mem::replace(&mut slot.package_dir, dir.clone());
            let new_permissions = slot.new_permissions.clone();
            let old = plugins.set_manifest(&id, m.clone()).ok_or_else(|| KernelError::NotFound { plugin: id.clone() })?;
            (old, old_dir, new_permissions, author_change)
        };
        self.persist_slot(&id)?;
        if old_dir != dir {
            if let Some(d) = old_dir {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        // Grants of permissions the new version no longer requests are dropped (all of them
        // when the author changed).
        let requested: BTreeSet<String> = m.all_permissions().map(|(p, _)| p.to_string()).collect();
        let stale: Vec<String> =
            self.0.core.store.grants(&id)?.into_iter().map(|g| g.permission).filter(|p| author_change.is_some() || !requested.contains(p)).collect();
        if !stale.is_empty() {
            self.0.core.store.revoke(&id, &stale)?;
            if author_change.is_some() {
                self.0.core.writer.audit(&Actor::System, Some(&id), AuditAction::PermissionRevoked, json!({ "permissions": stale, "reason": "the author changed" }));
            }
        }
        // Nor do the secrets an admin gave the former author's code.
        if author_change.is_some() {
            let secrets: Vec<String> = self.0.core.store.secrets(&id)?.into_iter().map(|(k, _)| k).collect();
            for key in &secrets {
                self.0.core.store.set_secret(&id, key, None)?;
            }
            if !secrets.is_empty() {
                self.0.core.writer.audit(&Actor::System, Some(&id), AuditAction::PluginConfigured, json!({ "secrets": secrets, "reason": "removed: the author changed" }));
            }
        }
        self.refresh_grants(&id)?;
        let from = old_manifest.version.clone();
        let to = m.version.clone();
        let action = match to.cmp(&from) {
            std::cmp::Ordering::Less => AuditAction::PluginDowngraded,
            std::cmp::Ordering::Equal => AuditAction::PluginReinstalled,
            std::cmp::Ordering::Greater => AuditAction::PluginUpgraded,
        };
        let mut details = json!({ "from": from.to_string(), "to": to.to_string(), "newPermissions": new_permissions });
        if let Some(c) = &author_change {
            details["authorChanged"] = json!({ "from": c.from, "to": c.to });
        }
        self.0.core.writer.audit(&actor, Some(&id), action, details);
        self.0.core.notices.send(KernelEvent::PermissionsChanged { plugin: id.clone() });
        self.0.core.emit_kernel("plugin.upgraded", json!({ "plugin": id, "from": from.to_string(), "to": to.to_string() }));
        let ctx = self.context(&id)?;
        if let Err((kind, message)) = self.run_hook(&id, &code, &ctx, Hook::Upgrade, Some((from.clone(), to.clone()))).await {
            self.set_error(&id, Some(Hook::Upgrade), kind, message)?;
        } else if was == State::Enabled {
            // Chrome's rule: a version asking for more than was granted waits for approval.
            // (check_enable covers both enabled dependencies and pending permissions.)
            if self.check_resolves(&id).is_ok() && self.check_enable(&id).is_ok() {
                // A new version that fails to enable is installed all the same, in ERROR with
                // its reason, and retried at the next start like the version before it.
                if self.step(&actor, &id, Action::Enable).await.is_err() {
                    self.update(&id, |s| s.desired = State::Enabled)?;
                }
            } else {
                self.update(&id, |s| s.desired = State::Enabled)?;
            }
        }
        let state = lock(&self.0.plugins).get(&id).map(|s| s.state).unwrap_or(State::Installed);
        Ok(InstallOutcome { id: id.clone(), version: to.to_string(), upgraded_from: Some(from.to_string()), pending: self.pending(&id)?, state })
    }

    /// Uninstall a package: `onUninstall`, then its record, storage, grants and files are
    /// removed (its logs and audit records stay). The records of its types are kept for a
    /// reinstall of the same id (see [`Kernel::uninstall_with`]).
    pub async fn uninstall(&self, id: &str) -> Result<()> {
        self.uninstall_with(id, Uninstall::default()).await
    }

    /// Uninstall a package, choosing what happens to the records of its types: kept (for a
    /// reinstall of the same id; no other id ever gets them) or deleted with it.
    pub async fn uninstall_with(&self, id: &str, how: Uninstall) -> Result<()> {
        self.recorded(self.uninstall_as(self.1.clone(), id, how).await)
    }

    pub(crate) async fn uninstall_as(&self, actor: Actor, id: &str, how: Uninstall) -> Result<()> {
        let _g = self.gate(id).await?;
        let (state, kind, code, ctx, dir, version, author) = {
            let plugins = lock(&self.0.plugins);
            let s = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
            (s.state, s.kind, s.code.clone(), s.ctx.clone(), s.package_dir.clone(), s.manifest().version.to_string(), s.manifest().author.clone())
        };
        if kind == PluginKind::Builtin {
            return Err(KernelError::BuiltinUninstall { plugin: id.into() });
        }
        if !state.allows(Action::Uninstall) {
            return Err(KernelError::IllegalTransition { plugin: id.into(), state, action: Action::Uninstall });
        }
        if matches!(state, State::Loaded | State::Disabled) {
            let _ = self.run_hook(id, &code, &ctx, Hook::Unload, None).await;
        }
        let hook_error = self.run_hook(id, &code, &ctx, Hook::Uninstall, None).await.err().map(|(_, message)| message);
        self.drop_runtime(id);
        // Whatever the plugin's context is still held by (a call under way in its code) holds
        // no grant from here on.
        if let Some(s) = lock(&self.0.plugins).get(id) {
            s.shared.grants.store(Arc::new(crate::model::permission::GrantSet::default()));
            s.shared.grants_generation.fetch_add(1, Ordering::Release);
        }
        self.0.core.storage.clear(id)?;
        self.end_subscriptions(id, false);
        self.0.core.store.delete_plugin(id)?;
        // Who published it, so that a later install of this id by someone else is approved
        // again like an upgrade by another author (its kept records are at stake; with them
        // deleted, nothing is).
        if how.keep_records {
            self.0.core.store.set_setting(&former_author_key(id), &serde_json::to_string(&author).unwrap_or_default())?;
        } else {
            self.0.core.store.delete_setting(&former_author_key(id))?;
        }
        lock(&self.0.plugins).remove(id);
        if let Some(d) = dir {
            let _ = std::fs::remove_dir_all(&d);
            if let Some(parent) = d.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        // The engines read `keepRecords` from the `plugin.uninstalled` event.
        self.announce(&actor, id, Some(state), None, AuditAction::PluginUninstalled, json!({ "version": version, "hookError": hook_error, "keepRecords": how.keep_records }));
        Ok(())
    }

    /// For a package installed under an id someone else published before (and uninstalled),
    /// the change of author, to be approved like an upgrade's.
    pub(super) fn former_author_change(&self, m: &Manifest) -> Result<Option<AuthorChange>> {
        let Some(text) = self.0.core.store.setting(&former_author_key(&m.id))? else { return Ok(None) };
        let former: Option<String> = serde_json::from_str(&text).unwrap_or(None);
        Ok((former != m.author).then(|| AuthorChange { from: former, to: m.author.clone(), version: m.version.to_string() }))
    }
}

fn former_author_key(id: &str) -> String {
    format!("former_author.{id}")
}

/// What an uninstall does with a package's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uninstall {
    /// Keep the records of its types for a reinstall of the same id (else delete them).
    pub keep_records: bool,
}

impl Default for Uninstall {
    fn default() -> Self {
        Uninstall { keep_records: true }
    }
}
