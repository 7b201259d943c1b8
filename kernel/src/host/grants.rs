//! Approving and withdrawing permissions.

use super::*;

impl Kernel {
    /// Recompile `id`'s grants from the database (bumping the generation typed handles check).
    pub(super) fn refresh_grants(&self, id: &str) -> Result<()> {
        let grants = self.0.core.store.grants(id)?;
        let identities = self.0.core.store.folder_identities(id)?;
        if let Some(s) = lock(&self.0.plugins).get(id) {
            s.shared.grants.store(Arc::new(compile_grants(&grants, &identities)));
            s.shared.grants_generation.fetch_add(1, Ordering::Release);
            *lock(&s.shared.granted) = grants.into_iter().map(|g| g.permission).collect();
        }
        Ok(())
    }

    /// Approve permissions a plugin requests.
    pub fn grant(&self, id: &str, request: GrantRequest) -> Result<Vec<String>> {
        self.recorded(self.grant_as(self.1.clone(), &self.1.clone(), id, request))
    }

    pub(crate) fn grant_as(&self, actor: Actor, by: &Actor, id: &str, request: GrantRequest) -> Result<Vec<String>> {
        let manifest = lock(&self.0.plugins).get(id).map(|s| s.manifest().clone()).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        let requested: Vec<String> = manifest.all_permissions().map(|(p, _)| p.to_string()).collect();
        let wanted = match request {
            GrantRequest::All => requested.clone(),
            GrantRequest::Some(list) => {
                let mut out = Vec::new();
                for p in list {
                    let canonical = canonical_permission(&p)?;
                    if !requested.contains(&canonical) {
                        return Err(KernelError::InvalidName { name: canonical, reason: format!("{id} does not request this permission; it requests: {}", requested.join(", ")) });
                    }
                    out.push(canonical);
                }
                out
            }
        };
        let mut folders = Vec::new();
        for p in &wanted {
            if let Some(identity) = check_folder(id, p)? {
                folders.push((p, identity));
            }
        }
        let added = self.0.core.store.grant(id, &wanted, &by.to_string())?;
        // Approving a file grant (again) approves the folder that is there now.
        for (p, identity) in folders {
            self.0.core.store.set_folder_identity(id, p, &identity)?;
        }
        self.refresh_grants(id)?;
        // Grants live in their own table; the plugin's row changes only when this approves
        // permissions an upgrade had marked new.
        let approved_new = {
            let mut plugins = lock(&self.0.plugins);
            plugins.get_mut(id).is_some_and(|s| {
                let before = s.new_permissions.len();
                s.new_permissions.retain(|p| !wanted.contains(p));
                // Approving is the admin accepting the new author too.
                let accepted = s.author_change.take().is_some();
                s.new_permissions.len() != before || accepted
            })
        };
        if !added.is_empty() {
            self.0.core.writer.audit(&actor, Some(id), AuditAction::PermissionGranted, json!({ "permissions": added, "by": by.to_string() }));
            self.0.core.notices.send(KernelEvent::PermissionsChanged { plugin: id.into() });
        }
        if approved_new {
            self.persist_slot(id)?;
        }
        Ok(added)
    }

    pub(super) fn persist_slot(&self, id: &str) -> Result<()> {
        let row = {
            let plugins = lock(&self.0.plugins);
            let Some(s) = plugins.get(id) else { return Ok(()) };
            PluginRow {
                id: id.into(),
                version: s.manifest().version.to_string(),
                kind: s.kind.as_str().into(),
                manifest: s.manifest().to_json(),
                state: s.state,
                desired: s.desired,
                last_error: s.last_error.as_ref().and_then(|e| serde_json::to_string(e).ok()),
                package_dir: s.package_dir.as_ref().map(|d| d.display().to_string()),
                new_permissions: s.new_permissions.clone(),
                author_change: s.author_change.as_ref().and_then(|c| serde_json::to_string(c).ok()),
                installed_at: s.installed_at,
                updated_at: now_ms(),
            }
        };
        self.0.core.store.upsert_plugin(&row)
    }

    /// Withdraw grants. Revoking a required permission of an enabled plugin disables it first
    /// (refused while enabled plugins depend on it, unless `cascade`).
    pub async fn revoke(&self, id: &str, permissions: &[String], cascade: bool) -> Result<Vec<String>> {
        self.recorded(self.revoke_as(self.1.clone(), id, permissions, cascade).await)
    }

    pub(crate) async fn revoke_as(&self, actor: Actor, id: &str, permissions: &[String], cascade: bool) -> Result<Vec<String>> {
        let (manifest, state) = lock(&self.0.plugins).get(id).map(|s| (s.manifest().clone(), s.state)).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        let mut canonical = Vec::new();
        for p in permissions {
            canonical.push(canonical_permission(p)?);
        }
        let required: BTreeSet<String> = manifest.permissions.iter().map(|p| p.to_string()).collect();
        if state == State::Enabled && canonical.iter().any(|p| required.contains(p)) {
            if self.started() {
                self.disable_as(actor.clone(), id, cascade).await?;
            } else {
                // Another process runs it: it is asked to disable it (it follows the grants too).
                self.request(id, State::Disabled, cascade)?;
            }
        }
        let removed = self.0.core.store.revoke(id, &canonical)?;
        self.refresh_grants(id)?;
        if !removed.is_empty() {
            self.0.core.writer.audit(&actor, Some(id), AuditAction::PermissionRevoked, json!({ "permissions": removed }));
            self.0.core.notices.send(KernelEvent::PermissionsChanged { plugin: id.into() });
        }
        Ok(removed)
    }
}

/// A permission as the kernel writes it (so `a.*` and its stored grant compare equal), or
/// why it is not one.
/// Refuse a file grant for a folder that is not there: the plugin could not use it, and the
/// admin should see which folder was meant before approving.
/// For a file grant, the identity of the folder approved ([`crate::model::permission::folder_identity`]).
fn check_folder(id: &str, permission: &str) -> Result<Option<String>> {
    let Some(raw) = permission.strip_prefix("fs.read:").or_else(|| permission.strip_prefix("fs.write:")) else { return Ok(None) };
    let path = crate::model::reach::folder(raw).map_err(|reason| KernelError::GrantRefused { plugin: id.into(), permission: permission.into(), reason })?;
    if !path.is_dir() {
        let reason = if path.exists() { format!("{} is a file, not a folder", path.display()) } else { format!("the folder {} does not exist; create it first, then approve", path.display()) };
        return Err(KernelError::GrantRefused { plugin: id.into(), permission: permission.into(), reason });
    }
    Ok(crate::model::permission::folder_identity(&path))
}

impl Kernel {
    /// Give file grants approved before folder identities were recorded the identity of the
    /// folder there now (once, when the kernel opens).
    pub(super) fn identify_folders(&self) -> Result<()> {
        for (plugin, permission) in self.0.core.store.unidentified_folders()? {
            let raw = permission.split_once(':').map_or("", |(_, f)| f);
            if let Some(identity) = crate::model::reach::folder(raw).ok().and_then(|p| crate::model::permission::folder_identity(&p)) {
                self.0.core.store.set_folder_identity(&plugin, &permission, &identity)?;
            }
        }
        Ok(())
    }
}

pub(super) fn canonical_permission(text: &str) -> Result<String> {
    text.parse::<Permission>().map(|p| p.to_string()).map_err(|reason| KernelError::InvalidName { name: text.into(), reason })
}

pub(super) fn compile_grants(rows: &[GrantRow], identities: &[(String, String)]) -> GrantSet {
    let perms: Vec<Permission> = rows.iter().filter_map(|g| g.permission.parse().ok()).collect();
    GrantSet::new(perms.iter()).with_identities(identities)
}

