//! The slot table: one record per installed plugin, and the caches derived from it.

use super::grants::compile_grants;
use super::*;

/// One installed plugin as this process knows it. Its manifest is private to this module:
/// it changes only through [`Slots::set_manifest`], which keeps the caches true.
pub(super) struct Slot {
    manifest: Arc<Manifest>,
    pub(super) kind: PluginKind,
    pub(super) state: State,
    pub(super) desired: State,
    pub(super) last_error: Option<LastError>,
    pub(super) package_dir: Option<PathBuf>,
    pub(super) new_permissions: Vec<String>,
    /// An upgrade by another author that the admin has not approved again.
    pub(super) author_change: Option<AuthorChange>,
    pub(super) installed_at: i64,
    pub(super) updated_at: i64,
    pub(super) code: Arc<dyn Plugin>,
    pub(super) shared: Arc<PluginShared>,
    /// Held for the whole of one transition of this plugin.
    pub(super) gate: Arc<tokio::sync::Mutex<()>>,
    pub(super) ctx: PluginContext,
}

impl Slot {
    pub(super) fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }
}

/// A plugin about to be installed: manifest, code, package folder (none for a built-in).
pub(super) type NewPlugin = (Arc<Manifest>, Arc<dyn Plugin>, Option<PathBuf>);

pub(super) struct Builtin {
    pub(super) manifest: Arc<Manifest>,
    pub(super) code: Arc<dyn Plugin>,
    /// Declared files (translations...) embedded in the binary, by relative path.
    pub(super) files: BTreeMap<String, &'static str>,
}

/// The slot table, by id, with what is derived from the manifests: the manifest set and
/// every plugin's resolution error. Both are computed on first use and dropped by every
/// change of the manifests (a plugin added, removed or replaced), so no caller has to
/// remember to invalidate them. Reads go through `Deref` to the map.
#[derive(Default)]
pub(super) struct Slots {
    map: BTreeMap<String, Slot>,
    manifests: Option<Arc<ManifestSet>>,
    /// One linear resolution walk over every plugin, kept until the manifests change (an
    /// action checks resolution several times; a chain of n plugins would otherwise cost n
    /// walks of up to n plugins each).
    resolved: Option<Arc<BTreeMap<String, ResolveError>>>,
    /// The service registry whose name claims this table keeps true (none: a scratch table).
    registry: Option<Arc<crate::runtime::registry::Registry>>,
}

impl std::ops::Deref for Slots {
    type Target = BTreeMap<String, Slot>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl Slots {
    /// An empty table that keeps `registry`'s service name claims.
    pub(super) fn claiming_for(registry: Arc<crate::runtime::registry::Registry>) -> Slots {
        let slots = Slots { registry: Some(registry), ..Slots::default() };
        slots.claim();
        slots
    }

    fn changed(&mut self) {
        self.manifests = None;
        self.resolved = None;
        self.claim();
    }

    fn claim(&self) {
        if let Some(r) = &self.registry {
            r.set_claims(self.map.values().map(|s| (&*s.manifest, s.kind == PluginKind::Builtin)));
        }
    }

    /// Every slot, to change (their manifests aside).
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Slot)> {
        self.map.iter_mut()
    }

    /// A slot to change (its manifest aside).
    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut Slot> {
        self.map.get_mut(id)
    }

    pub(super) fn insert(&mut self, slot: Slot) {
        self.map.insert(slot.manifest.id.clone(), slot);
        self.changed();
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Slot> {
        let slot = self.map.remove(id);
        self.changed();
        slot
    }

    /// Replace `id`'s manifest; returns the old one.
    pub(super) fn set_manifest(&mut self, id: &str, manifest: Arc<Manifest>) -> Option<Arc<Manifest>> {
        let slot = self.map.get_mut(id)?;
        slot.shared.topics.store(Arc::new(crate::context::owned_topics(&manifest, slot.kind == PluginKind::Package)));
        slot.shared.settings.store(Arc::new(manifest.settings.clone()));
        let old = std::mem::replace(&mut slot.manifest, manifest);
        self.changed();
        Some(old)
    }

    /// The installed manifests.
    pub(super) fn manifests(&mut self) -> Arc<ManifestSet> {
        if let Some(set) = &self.manifests {
            return set.clone();
        }
        let set: Arc<ManifestSet> = Arc::new(self.map.iter().map(|(k, s)| (k.clone(), s.manifest.clone())).collect());
        self.manifests = Some(set.clone());
        set
    }

    /// Every installed plugin whose dependencies do not resolve, with why.
    pub(super) fn resolve_errors(&mut self) -> Arc<BTreeMap<String, ResolveError>> {
        if let Some(e) = &self.resolved {
            return e.clone();
        }
        let errors = Arc::new(resolve::resolve_all(&self.manifests()).1);
        self.resolved = Some(errors.clone());
        errors
    }
}

impl Kernel {
    /// Read installed plugins from the database (states as last recorded).
    pub(super) fn load_rows(&self) -> Result<()> {
        let rows = self.0.core.store.plugins()?;
        let mut slots = Slots::claiming_for(self.0.core.registry.clone());
        for row in rows {
            slots.insert(self.slot_from_row(&row)?);
        }
        *lock(&self.0.plugins) = slots;
        Ok(())
    }

    pub(super) fn parse_row_manifest(row: &PluginRow) -> Result<Manifest> {
        Manifest::parse(row.manifest.as_bytes(), &format!("database record of {}", row.id)).map_err(|e| KernelError::Corrupt(e.to_string()))
    }

    /// A slot for a recorded plugin: a package gets its runtime's code, a built-in the
    /// registered code (or a stand-in that fails to load while it is not registered).
    pub(super) fn slot_from_row(&self, row: &PluginRow) -> Result<Slot> {
        let manifest = Self::parse_row_manifest(row)?;
        let kind = if row.kind == "builtin" { PluginKind::Builtin } else { PluginKind::Package };
        let code: Arc<dyn Plugin> = match (kind, &row.package_dir) {
            (PluginKind::Package, Some(dir)) => self.0.config.runtime.instantiate(&manifest, Path::new(dir))?,
            _ => lock(&self.0.builtins).get(&row.id).map(|b| b.code.clone()).unwrap_or_else(|| Arc::new(Missing)),
        };
        let grants = self.0.core.store.grants(&row.id)?;
        let identities = self.0.core.store.folder_identities(&row.id)?;
        self.new_slot(Arc::new(manifest), kind, code, row, grants, &identities)
    }

    pub(super) fn new_slot(&self, manifest: Arc<Manifest>, kind: PluginKind, code: Arc<dyn Plugin>, row: &PluginRow, grants: Vec<GrantRow>, identities: &[(String, String)]) -> Result<Slot> {
        let id: Arc<str> = manifest.id.as_str().into();
        let meter = Arc::new(crate::runtime::meter::Meter::new(self.0.core.quotas.clone(), kind == PluginKind::Package));
        let shared = Arc::new(PluginShared {
            id: id.clone(),
            actor: Actor::Plugin(id.clone()),
            grants: ArcSwap::from_pointee(compile_grants(&grants, identities)),
            granted: Mutex::new(grants.into_iter().map(|g| g.permission).collect()),
            grants_generation: std::sync::atomic::AtomicU64::new(0),
            counters: Arc::new(Counters::default()),
            topics: ArcSwap::from_pointee(crate::context::owned_topics(&manifest, kind == PluginKind::Package)),
            meter: meter.clone(),
            settings: ArcSwap::from_pointee(manifest.settings.clone()),
            denial_audits: Default::default(),
        });
        let ctx = PluginContext(Arc::new(CtxInner {
            shared: shared.clone(),
            core: self.0.core.clone(),
            kernel: Arc::downgrade(&(self.0.clone() as Arc<dyn std::any::Any + Send + Sync>)),
            logger: PluginLogger::new(id, self.0.core.writer.clone(), meter),
        }));
        Ok(Slot {
            manifest,
            kind,
            state: row.state,
            desired: row.desired,
            last_error: row.last_error.as_deref().and_then(|t| serde_json::from_str(t).ok()),
            package_dir: row.package_dir.as_ref().map(PathBuf::from),
            new_permissions: row.new_permissions.clone(),
            author_change: row.author_change.as_deref().and_then(|t| serde_json::from_str(t).ok()),
            installed_at: row.installed_at,
            updated_at: row.updated_at,
            code,
            shared,
            gate: Arc::new(tokio::sync::Mutex::new(())),
            ctx,
        })
    }

    /// The installed manifests.
    pub(super) fn manifests(&self) -> Arc<ManifestSet> {
        lock(&self.0.plugins).manifests()
    }

    /// Whether `id`'s dependencies resolve.
    pub(super) fn check_resolves(&self, id: &str) -> std::result::Result<(), ResolveError> {
        match lock(&self.0.plugins).resolve_errors().get(id) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}


/// Stand-in code for a built-in recorded in the database but not (yet) registered.
pub(super) struct Missing;

#[async_trait::async_trait]
impl Plugin for Missing {
    async fn on_load(&self, ctx: &PluginContext) -> crate::plugin::HookResult {
        Err(format!("{} is a built-in plugin that this build of ObjectOS does not include", ctx.id()).into())
    }
}

