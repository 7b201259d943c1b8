//! The service registry: named, typed, owned services.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::error::{KernelError, Result};

/// A service's face for JSON callers, as the registry keeps it: the context's
/// `Arc<dyn JsonService>` (a trait of the layer above, over `PluginContext`), held without the
/// registry knowing its type, as typed services are.
pub(crate) type JsonFace = Arc<dyn Any + Send + Sync>;

struct Entry {
    owner: Arc<str>,
    type_name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
    /// The face it offers JSON callers (sandboxed code), if any.
    json: Option<JsonFace>,
}

/// A registered service, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    /// Service name.
    pub name: String,
    /// The plugin that registered it.
    pub owner: String,
    /// The Rust type behind it.
    pub type_name: String,
}

#[derive(Default)]
pub(crate) struct Registry {
    map: RwLock<FxHashMap<Arc<str>, Entry>>,
    /// Bumped by every change, so typed handles know when to look again.
    generation: AtomicU64,
    /// Who owns each declared service name: the installed plugin whose manifest lists it in
    /// `provides.services` (a built-in's claim wins over a package's), and `kernel`, the
    /// kernel's own. Kept by the slot table on every change of the installed manifests.
    claims: RwLock<FxHashMap<Arc<str>, Arc<str>>>,
}

/// Who owns the service name `kernel` (the kernel's management calls).
pub(crate) const KERNEL_OWNER: &str = "the kernel";

impl Registry {
    /// Replace the claims with those of `manifests` (each with whether it is a built-in).
    pub(crate) fn set_claims<'a>(&self, manifests: impl Iterator<Item = (&'a crate::model::manifest::Manifest, bool)>) {
        let mut claims: FxHashMap<Arc<str>, Arc<str>> = FxHashMap::default();
        let mut builtin_claims = Vec::new();
        for (m, builtin) in manifests {
            let owner: Arc<str> = m.id.as_str().into();
            for s in &m.provides.services {
                if builtin {
                    builtin_claims.push((Arc::<str>::from(s.as_str()), owner.clone()));
                } else {
                    claims.entry(s.as_str().into()).or_insert_with(|| owner.clone());
                }
            }
        }
        claims.extend(builtin_claims);
        claims.insert("kernel".into(), KERNEL_OWNER.into());
        *self.claims.write().unwrap_or_else(|p| p.into_inner()) = claims;
    }

    /// The plugin whose manifest claims service `name`, if any.
    pub(crate) fn claimant(&self, name: &str) -> Option<Arc<str>> {
        self.claims.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn register<T: Any + Send + Sync>(&self, owner: &Arc<str>, name: &str, value: Arc<T>) -> Result<()> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get(name) {
            return Err(KernelError::ServiceExists { name: name.to_string(), owner: e.owner.to_string() });
        }
        map.insert(name.into(), Entry { owner: owner.clone(), type_name: std::any::type_name::<T>(), value, json: None });
        self.changed();
        Ok(())
    }

    pub(crate) fn get<T: Any + Send + Sync>(&self, name: &str) -> Result<Arc<T>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let e = map.get(name).ok_or_else(|| KernelError::ServiceNotFound { name: name.to_string() })?;
        e.value.clone().downcast::<T>().map_err(|_| KernelError::ServiceType {
            name: name.to_string(),
            expected: std::any::type_name::<T>().to_string(),
            actual: e.type_name.to_string(),
        })
    }

    /// Offer `face` to JSON callers of `owner`'s service `name`.
    pub(crate) fn expose(&self, owner: &str, name: &str, face: JsonFace) -> Result<()> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(name) {
            None => Err(KernelError::ServiceNotFound { name: name.to_string() }),
            Some(e) if &*e.owner != owner => Err(KernelError::ServiceExists { name: name.to_string(), owner: e.owner.to_string() }),
            Some(e) => {
                e.json = Some(face);
                Ok(())
            }
        }
    }

    /// The JSON face of service `name`.
    pub(crate) fn json(&self, name: &str) -> Result<JsonFace> {
        self.json_with_owner(name).map(|(_, face)| face)
    }

    /// The JSON face of service `name` with who provides it, read together.
    pub(crate) fn json_with_owner(&self, name: &str) -> Result<(String, JsonFace)> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let e = map.get(name).ok_or_else(|| KernelError::ServiceNotFound { name: crate::util::clip(name.to_string(), crate::util::MAX_AUDITED_NAME) })?;
        let face = e.json.clone().ok_or_else(|| KernelError::service(name, format!("{} provides it for Rust callers only; it takes no JSON calls", e.owner)))?;
        Ok((e.owner.to_string(), face))
    }

    /// Who provides service `name`, if anyone.
    pub(crate) fn owner(&self, name: &str) -> Option<String> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(name).map(|e| e.owner.to_string())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.map.read().unwrap_or_else(|p| p.into_inner()).contains_key(name)
    }

    pub(crate) fn list(&self) -> Vec<ServiceInfo> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<ServiceInfo> = map
            .iter()
            .map(|(k, e)| ServiceInfo { name: k.to_string(), owner: e.owner.to_string(), type_name: e.type_name.to_string() })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Remove `name` if `owner` owns it.
    pub(crate) fn unregister(&self, owner: &str, name: &str) -> Result<()> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        match map.get(name) {
            None => Err(KernelError::ServiceNotFound { name: name.to_string() }),
            Some(e) if &*e.owner != owner => Err(KernelError::ServiceExists { name: name.to_string(), owner: e.owner.to_string() }),
            Some(_) => {
                map.remove(name);
                self.changed();
                Ok(())
            }
        }
    }

    /// Remove every service `owner` registered; returns their names.
    pub(crate) fn remove_owner(&self, owner: &str) -> Vec<String> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let names: Vec<Arc<str>> = map.iter().filter(|(_, e)| &*e.owner == owner).map(|(k, _)| k.clone()).collect();
        for n in &names {
            map.remove(n);
        }
        if !names.is_empty() {
            self.changed();
        }
        names.iter().map(|n| n.to_string()).collect()
    }

    pub(crate) fn clear(&self) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.changed();
    }
}
