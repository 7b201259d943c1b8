//! What a plugin reaches of services: register its own, look up and call others' (typed, or
//! with JSON through a [`JsonService`]), each checked against its grants.

use super::*;

/// A service other plugins call with JSON: how code in a sandbox (which cannot hold a Rust
/// value) reaches a service. A plugin offers one with [`Services::expose`] beside its
/// typed value, and callers use [`Services::call`]. `caller` is the calling plugin's
/// context: the service checks what the call does against the caller's grants, as its typed
/// methods do.
pub trait JsonService: Send + Sync + 'static {
    /// Run `method` with `args`; a refusal or a bad argument is an error naming it.
    fn call(&self, caller: &PluginContext, method: &str, args: serde_json::Value) -> crate::Result<serde_json::Value>;
}

/// Service registry facade (see [`PluginContext::services`]).
pub struct Services<'a>(pub(super) &'a PluginContext);

impl Services<'_> {
    /// Register `value` as service `name`. Needs `services.provide:<name>`.
    pub fn register<T: Any + Send + Sync>(&self, name: &str, value: T) -> Result<()> {
        self.register_arc(name, Arc::new(value))
    }

    /// Register a shared value as service `name`. Needs `services.provide:<name>`.
    pub fn register_arc<T: Any + Send + Sync>(&self, name: &str, value: Arc<T>) -> Result<()> {
        let ctx = self.0;
        validate_name(name).map_err(|reason| KernelError::InvalidName { name: name.into(), reason })?;
        if !ctx.grants().may_provide(name) {
            return Err(ctx.deny(format!("services.provide:{name}"), "services.register"));
        }
        ctx.owns_service(name)?;
        ctx.0.core.registry.register(&ctx.0.shared.id, name, value)?;
        ctx.0.core.announce_service(ctx.actor(), ctx.id(), name, Some(std::any::type_name::<T>()));
        Ok(())
    }

    /// Look a service up by name and type. Needs `services.use:<name>`.
    pub fn get<T: Any + Send + Sync>(&self, name: &str) -> Result<Arc<T>> {
        let ctx = self.0;
        if !ctx.grants().may_use(name) {
            return Err(ctx.deny(format!("services.use:{name}"), "services.get"));
        }
        ctx.0.shared.counters.service_lookups.fetch_add(1, Relaxed);
        ctx.0.core.registry.get(name)
    }

    /// A typed handle on service `name`, for calls on a hot path: [`ServiceHandle::get`]
    /// answers from a cache while neither the registry nor this plugin's grants changed, and
    /// looks up (and checks `services.use:<name>`) again when either did. Needs
    /// `services.use:<name>` now as well.
    pub fn handle<T: Any + Send + Sync>(&self, name: &str) -> Result<ServiceHandle<T>> {
        let handle = ServiceHandle { ctx: self.0.clone(), name: name.into(), cache: std::sync::RwLock::new(None), uncounted: 0 };
        handle.get()?;
        Ok(handle)
    }

    /// Offer service `name`, which this plugin registered, to JSON callers (code in the
    /// sandbox) through `face`.
    pub fn expose(&self, name: &str, face: Arc<dyn JsonService>) -> Result<()> {
        let ctx = self.0;
        ctx.0.core.registry.expose(ctx.id(), name, Arc::new(face))
    }

    /// Call `method` of service `name` with JSON `args`, as this plugin. Needs
    /// `services.use:<name>`; the service checks the rest against this plugin's grants.
    pub fn call(&self, name: &str, method: &str, args: Value) -> Result<Value> {
        let ctx = self.0;
        validate_name(name).map_err(|reason| KernelError::InvalidName { name: crate::util::clip(name.to_string(), MAX_AUDITED_NAME), reason })?;
        if method.is_empty() || method.len() > 64 || !method.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            return Err(KernelError::InvalidName { name: crate::util::clip(method.to_string(), MAX_AUDITED_NAME), reason: "a method name is 1 to 64 letters, digits, `_` or `-`".into() });
        }
        if !ctx.grants().may_use(name) {
            return Err(ctx.deny(format!("services.use:{name}"), "services.call"));
        }
        ctx.0.shared.counters.service_lookups.fetch_add(1, Relaxed);
        let face = json_face(name, ctx.0.core.registry.json(name)?)?;
        face.call(ctx, method, args)
    }

    /// Call `method` of service `name`, which this plugin itself provides, with JSON `args`:
    /// no `services.use` grant is needed for one's own service. For an engine that calls a
    /// plugin back on its behalf (a notification channel the plugin's code provides). Refused
    /// with [`KernelError::ServiceExists`] when another plugin provides it.
    pub fn call_own(&self, name: &str, method: &str, args: Value) -> Result<Value> {
        let ctx = self.0;
        let (owner, face) = ctx.0.core.registry.json_with_owner(name)?;
        if owner != ctx.id() {
            return Err(KernelError::ServiceExists { name: name.to_string(), owner });
        }
        json_face(name, face)?.call(ctx, method, args)
    }

    /// Whether this plugin itself provides service `name` now.
    pub fn provides(&self, name: &str) -> bool {
        self.0 .0.core.registry.owner(name).as_deref() == Some(self.0.id())
    }

    /// Is a service registered under `name`? Needs `services.use:<name>`.
    pub fn has(&self, name: &str) -> Result<bool> {
        let ctx = self.0;
        if !ctx.grants().may_use(name) {
            return Err(ctx.deny(format!("services.use:{name}"), "services.has"));
        }
        Ok(ctx.0.core.registry.has(name))
    }

    /// The registered services this plugin may use or owns.
    pub fn list(&self) -> Vec<ServiceInfo> {
        let ctx = self.0;
        let g = ctx.grants();
        ctx.0.core.registry.list().into_iter().filter(|s| s.owner == ctx.id() || g.may_use(&s.name)).collect()
    }

    /// Remove a service this plugin registered.
    pub fn unregister(&self, name: &str) -> Result<()> {
        let ctx = self.0;
        ctx.0.core.registry.unregister(ctx.id(), name)?;
        ctx.0.core.announce_service(ctx.actor(), ctx.id(), name, None);
        Ok(())
    }
}

/// A typed, cached service lookup (see [`Services::handle`]). Revoking the grant or
/// replacing the service takes effect on the next `get`.
pub struct ServiceHandle<T> {
    ctx: PluginContext,
    name: Arc<str>,
    cache: std::sync::RwLock<Option<Cached<T>>>,
    /// Lookups `get_ref` answered that are not yet in the plugin's counters.
    uncounted: u64,
}

impl<T> Drop for ServiceHandle<T> {
    fn drop(&mut self) {
        self.ctx.0.shared.counters.service_lookups.fetch_add(std::mem::take(&mut self.uncounted), Relaxed);
    }
}

struct Cached<T> {
    registry: u64,
    grants: u64,
    value: Arc<T>,
}

impl<T: Any + Send + Sync> ServiceHandle<T> {
    /// The service now.
    pub fn get(&self) -> Result<Arc<T>> {
        use std::sync::atomic::Ordering::Acquire;
        let inner = &self.ctx.0;
        // Read both generations before looking up, so a change racing with this call makes
        // the next call look up again.
        let registry = inner.core.registry.generation();
        let grants = inner.shared.grants_generation.load(Acquire);
        if let Some(c) = &*self.cache.read().unwrap_or_else(|p| p.into_inner()) {
            if c.registry == registry && c.grants == grants {
                inner.shared.counters.service_lookups.fetch_add(1, Relaxed);
                return Ok(c.value.clone());
            }
        }
        let value = self.ctx.services().get::<T>(&self.name)?;
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some(Cached { registry, grants, value: value.clone() });
        Ok(value)
    }

    /// The service now, borrowed, for the hottest paths: the same checks as [`Self::get`],
    /// but a hit takes no lock and no reference count (the handle is the caller's alone,
    /// hence `&mut self`). Its lookups reach the plugin's counters when the handle looks up
    /// again or is dropped.
    pub fn get_ref(&mut self) -> Result<&T> {
        use std::sync::atomic::Ordering::Acquire;
        let registry = self.ctx.0.core.registry.generation();
        let grants = self.ctx.0.shared.grants_generation.load(Acquire);
        let fresh = matches!(self.cache.get_mut().unwrap_or_else(|p| p.into_inner()), Some(c) if c.registry == registry && c.grants == grants);
        if !fresh {
            self.ctx.0.shared.counters.service_lookups.fetch_add(std::mem::take(&mut self.uncounted), Relaxed);
            let value = self.ctx.services().get::<T>(&self.name)?;
            let cache = self.cache.get_mut().unwrap_or_else(|p| p.into_inner());
            return Ok(&cache.insert(Cached { registry, grants, value }).value);
        }
        self.uncounted += 1;
        match self.cache.get_mut().unwrap_or_else(|p| p.into_inner()) {
            Some(c) => Ok(&c.value),
            None => Err(KernelError::ServiceNotFound { name: self.name.to_string() }),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The `JsonService` the registry keeps for `name` (see [`Services::expose`]).
fn json_face(name: &str, face: crate::runtime::registry::JsonFace) -> Result<Arc<dyn JsonService>> {
    face.downcast_ref::<Arc<dyn JsonService>>().cloned().ok_or_else(|| KernelError::service(name, "its JSON face is not a JsonService"))
}
