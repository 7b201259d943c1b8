//! What hosts read: plugin views, the graph, logs, audit records, and the settings.

use super::*;

impl Kernel {
    /// Every installed plugin, sorted by id.
    pub fn plugins(&self) -> Result<Vec<PluginInfo>> {
        let ids: Vec<String> = lock(&self.0.plugins).keys().cloned().collect();
        ids.iter().map(|id| self.plugin(id)).collect()
    }

    /// One plugin.
    pub fn plugin(&self, id: &str) -> Result<PluginInfo> {
        let grants = self.0.core.store.grants(id)?;
        let mut plugins = lock(&self.0.plugins);
        let set = plugins.manifests();
        let resolve_error = plugins.resolve_errors().get(id).map(|e| e.to_string());
        let slot = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        let m = &slot.manifest();
        let permissions: Vec<PermissionStatus> = m
            .all_permissions()
            .map(|(p, required)| {
                let text = p.to_string();
                PermissionStatus {
                    grant: grants.iter().find(|g| g.permission == text).cloned(),
                    new: slot.new_permissions.contains(&text),
                    permission: text,
                    required,
                    risk: p.risk(),
                    description: p.describe(),
                    enforced: p.enforced(slot.kind == PluginKind::Package),
                    owners: crate::model::views::owners(p, &set, id),
                    excludes: crate::model::views::excluded_host_folders(p, &self.0.core.host_folders),
                }
            })
            .collect();
        let pending = permissions.iter().filter(|p| p.required && p.grant.is_none()).map(|p| p.permission.clone()).collect();
        let dependencies = m
            .all_dependencies()
            .map(|(dep, range, optional)| {
                let other = plugins.get(dep);
                DependencyStatus {
                    id: dep.clone(),
                    range: range.to_string(),
                    optional,
                    installed: other.map(|o| o.manifest().version.to_string()),
                    state: other.map(|o| o.state),
                    satisfied: other.map_or(optional, |o| range.matches(&o.manifest().version)),
                }
            })
            .collect();
        let services = self.0.core.registry.list().into_iter().filter(|s| s.owner == id).map(|s| s.name).collect();
        Ok(PluginInfo {
            manifest: Manifest::clone(m),
            kind: slot.kind,
            state: slot.state,
            desired: slot.desired,
            last_error: slot.last_error.clone(),
            permissions,
            pending,
            author_change: slot.author_change.clone(),
            code: self.0.config.runtime.code(m),
            dependencies,
            dependents: resolve::dependents(&set, id),
            resolve_error,
            services,
            actions: slot.state.offered(slot.kind == PluginKind::Builtin),
            package_dir: slot.package_dir.as_ref().map(|p| p.display().to_string()),
            installed_at: slot.installed_at,
            updated_at: slot.updated_at,
        })
    }

    /// The dependency graph.
    pub fn graph(&self) -> Graph {
        let set = self.manifests();
        let (order, errors) = resolve::resolve_all(&set);
        let cycle_edges: BTreeSet<(String, String)> = errors
            .values()
            .filter_map(|e| match e {
                ResolveError::Cycle { cycle } => Some(cycle.windows(2).map(|w| (w[0].clone(), w[1].clone())).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        let plugins = lock(&self.0.plugins);
        let nodes = plugins
            .values()
            .map(|s| GraphNode { id: s.manifest().id.clone(), name: s.manifest().name.clone(), version: s.manifest().version.to_string(), state: s.state, kind: s.kind })
            .collect();
        let mut edges = Vec::new();
        for s in plugins.values() {
            for (dep, range, optional) in s.manifest().all_dependencies() {
                let target = plugins.get(dep);
                edges.push(GraphEdge {
                    from: s.manifest().id.clone(),
                    to: dep.clone(),
                    range: range.to_string(),
                    optional,
                    satisfied: target.map_or(optional, |t| range.matches(&t.manifest().version)),
                    in_cycle: cycle_edges.contains(&(s.manifest().id.clone(), dep.clone())),
                });
            }
        }
        Graph { nodes, edges, order, errors }
    }

    /// Registered services.
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.0.core.registry.list()
    }

    /// A service, looked up by the host (trusted; no grant check).
    pub fn service<T: std::any::Any + Send + Sync>(&self, name: &str) -> Result<Arc<T>> {
        self.0.core.registry.get(name)
    }

    /// A plugin's context, for the host and tests. Its calls are checked like the plugin's own.
    pub fn context(&self, id: &str) -> Result<PluginContext> {
        lock(&self.0.plugins).get(id).map(|s| s.ctx.clone()).ok_or_else(|| KernelError::NotFound { plugin: id.into() })
    }

    /// A file a plugin's manifest declares (`translations/<locale>.json`, or an object or
    /// workflow file), as text: from the binary for a built-in, from its folder for a package.
    /// `None` when the plugin does not declare that path.
    pub fn declared_file(&self, id: &str, path: &str) -> Result<Option<String>> {
        let (manifest, dir) = {
            let plugins = lock(&self.0.plugins);
            let slot = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.to_string() })?;
            (slot.manifest().clone(), slot.package_dir.clone())
        };
        if !manifest.provides.declares(path) {
            return Ok(None);
        }
        if let Some(text) = lock(&self.0.builtins).get(id).and_then(|b| b.files.get(path).copied()) {
            return Ok(Some(text.to_string()));
        }
        let Some(dir) = dir else { return Ok(None) };
        let file = dir.join(path);
        match std::fs::read_to_string(&file) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KernelError::io(file, e)),
        }
    }

    /// Counters and state of every plugin.
    pub fn activity(&self) -> Vec<PluginActivity> {
        lock(&self.0.plugins)
            .values()
            .map(|s| PluginActivity { id: s.manifest().id.clone(), state: s.state, stats: s.shared.counters.snapshot() })
            .collect()
    }

    /// The activity counters of one plugin, with its code's use and the last ten minutes.
    pub fn stats(&self, id: &str) -> Result<crate::runtime::telemetry::PluginStats> {
        lock(&self.0.plugins).get(id).map(|s| s.shared.counters.snapshot()).ok_or_else(|| KernelError::NotFound { plugin: id.into() })
    }

    /// Stored log lines.
    pub fn logs(&self, q: &LogQuery) -> Result<Vec<LogRecord>> {
        self.0.core.writer.flush();
        self.0.core.store.logs(q)
    }

    /// Stored audit records.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.0.core.writer.flush();
        self.0.core.store.audit(q)
    }

    /// Verify the audit chain.
    pub fn verify_audit(&self) -> Result<Verification> {
        self.0.core.writer.flush();
        self.0.core.store.verify_audit()
    }

    /// Remove audit records before `keep_from_id`, appending an `audit.trimmed` checkpoint.
    pub fn trim_audit(&self, keep_from_id: i64) -> Result<i64> {
        self.0.core.writer.flush();
        self.0.core.writer.trim_audit(&self.1, keep_from_id)
    }

    /// Audit detail level.
    pub fn audit_detail(&self) -> AuditDetail {
        self.0.core.writer.detail()
    }

    /// Set the audit detail level (persisted).
    pub fn set_audit_detail(&self, d: AuditDetail) -> Result<()> {
        let text = if d == AuditDetail::Full { "full" } else { "lifecycle" };
        self.0.core.store.set_setting("audit.detail", text)?;
        self.0.core.writer.set_detail(d);
        self.0.core.writer.audit(&self.1, None, AuditAction::SettingsChanged, json!({ "auditDetail": text }));
        self.0.core.writer.confirm()
    }

    /// Append an audit record of something this handle's actor did through a service (an
    /// admin creating a record with `objectos records create`...): `action` is a dotted name
    /// outside the kernel's own namespaces, `plugin` what it concerns.
    pub fn record_action(&self, action: &str, plugin: Option<&str>, details: Value) -> Result<()> {
        crate::model::permission::validate_name(action).map_err(|reason| KernelError::InvalidName { name: action.into(), reason })?;
        let typed = AuditAction::plugin(action).map_err(|reason| KernelError::InvalidName { name: action.into(), reason })?;
        self.0.core.writer.audit(&self.1, plugin, typed, details);
        Ok(())
    }

    /// The quotas packages run under.
    pub fn quotas(&self) -> crate::model::quota::Quotas {
        **self.0.core.quotas.load()
    }

    /// Change the quotas packages run under; they apply at once.
    pub fn set_quotas(&self, q: crate::model::quota::Quotas) -> Result<()> {
        q.check().map_err(|reason| KernelError::InvalidName { name: "quotas".into(), reason })?;
        let text = serde_json::to_string(&q).unwrap_or_default();
        self.0.core.store.set_setting("quotas", &text)?;
        self.0.core.quotas.store(Arc::new(q));
        self.0.core.writer.audit(&self.1, None, AuditAction::SettingsChanged, json!({ "quotas": q }));
        self.0.core.writer.confirm()
    }

    /// Built-in trust policy.
    pub fn builtin_policy(&self) -> Result<BuiltinPolicy> {
        Ok(match self.0.core.store.setting("builtin.policy")?.as_deref() {
            Some("ask") => BuiltinPolicy::Ask,
            _ => BuiltinPolicy::Grant,
        })
    }

    /// Set the built-in trust policy (applies to built-ins installed from now on).
    pub fn set_builtin_policy(&self, p: BuiltinPolicy) -> Result<()> {
        let text = if p == BuiltinPolicy::Ask { "ask" } else { "grant" };
        self.0.core.store.set_setting("builtin.policy", text)?;
        self.0.core.writer.audit(&self.1, None, AuditAction::SettingsChanged, json!({ "builtinPolicy": text }));
        self.0.core.writer.confirm()
    }

    /// Set a plugin's configuration object (read by the plugin through its context). The
    /// settings its manifest declares are checked against their types; a secret one is set
    /// with [`Kernel::set_settings`], never here.
    pub fn set_config(&self, id: &str, config: Value) -> Result<()> {
        self.require(id)?;
        let Value::Object(map) = &config else {
            return Err(KernelError::InvalidName { name: "config".into(), reason: "plugin configuration must be a JSON object".into() });
        };
        let declared = self.declared_settings(id)?;
        for (key, value) in map {
            let Some(s) = declared.get(key) else { continue };
            let refuse = |reason: String| KernelError::Setting { plugin: id.into(), key: key.clone(), reason };
            if s.secret {
                return Err(refuse("is a secret: set it as a setting (the console's Settings, or `objectos plugins set --secret`), never in the configuration, which is shown".into()));
            }
            s.kind.check(value).map_err(refuse)?;
        }
        self.0.core.store.set_config(id, &config)?;
        self.0.core.writer.audit(&self.1, Some(id), AuditAction::PluginConfigured, json!({ "keys": config.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()) }));
        self.0.core.writer.confirm()
    }

    fn declared_settings(&self, id: &str) -> Result<crate::model::manifest::Settings> {
        let plugins = lock(&self.0.plugins);
        let slot = plugins.get(id).ok_or_else(|| KernelError::NotFound { plugin: id.into() })?;
        Ok(slot.manifest().settings.clone())
    }

    /// The settings `id` declares, with what is set; for a secret only whether it is set.
    pub fn settings(&self, id: &str) -> Result<Vec<crate::model::views::SettingStatus>> {
        let declared = self.declared_settings(id)?;
        let config = self.0.core.store.config(id)?;
        let secrets: BTreeSet<String> = if declared.any_secret() { self.0.core.store.secrets(id)?.into_iter().map(|(k, _)| k).collect() } else { BTreeSet::new() };
        Ok(declared
            .iter()
            .map(|(key, setting)| {
                let (value, set) = if setting.secret { (None, secrets.contains(key)) } else { (config.get(key).cloned(), config.get(key).is_some()) };
                crate::model::views::SettingStatus { key: key.clone(), setting: setting.clone(), value, set }
            })
            .collect())
    }

    /// Set settings `id` declares: each value is checked against its type, and `null`
    /// unsets one (its default applies). A secret is stored apart from the configuration and
    /// is never returned, logged or audited: the audit record names the keys changed. All or
    /// nothing: one bad value changes none. Returns the keys changed.
    pub fn set_settings(&self, id: &str, values: serde_json::Map<String, Value>) -> Result<Vec<String>> {
        let declared = self.declared_settings(id)?;
        for (key, value) in &values {
            let refuse = |reason: String| KernelError::Setting { plugin: id.into(), key: key.clone(), reason };
            let Some(s) = declared.get(key) else {
                let known: Vec<&str> = declared.iter().map(|(k, _)| k.as_str()).collect();
                return Err(refuse(if known.is_empty() { format!("{id} declares no settings") } else { format!("{id} declares no such setting; it has: {}", known.join(", ")) }));
            };
            if !value.is_null() {
                s.kind.check(value).map_err(refuse)?;
                if s.secret && value.as_str().is_some_and(str::is_empty) {
                    return Err(refuse("an empty secret: to remove it, unset it".into()));
                }
            }
        }
        let mut config = match self.0.core.store.config(id)? {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let (mut changed, mut secrets) = (Vec::new(), Vec::new());
        for (key, value) in values {
            if declared.get(&key).is_some_and(|s| s.secret) {
                self.0.core.store.set_secret(id, &key, value.as_str())?;
                secrets.push(key.clone());
            } else if value.is_null() {
                config.remove(&key);
            } else {
                config.insert(key.clone(), value);
            }
            changed.push(key);
        }
        self.0.core.store.set_config(id, &Value::Object(config))?;
        self.0.core.writer.audit(&self.1, Some(id), AuditAction::PluginConfigured, json!({ "keys": changed, "secrets": secrets }));
        self.0.core.writer.confirm()?;
        Ok(changed)
    }

}
