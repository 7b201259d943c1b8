//! The context handed to each plugin: services, events, storage, logger, config, and (with
//! `kernel.manage` / `kernel.inspect`) the kernel. Every call checks the plugin's grants; a
//! refusal returns [`KernelError::PermissionDenied`] and is audited.

use std::any::Any;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use futures::FutureExt;
use serde_json::Value;

use crate::error::{KernelError, Result};
use crate::model::audit::{Actor, AuditAction};
use crate::model::permission::{validate_name, GrantSet, Pattern};
use crate::runtime::bus::{ambient_depth, EmitReport, Event, Handler, HandlerError, SubscriptionId, MAX_EVENT_DEPTH};
use crate::runtime::log::PluginLogger;
use crate::runtime::registry::ServiceInfo;
use crate::runtime::storage::{Charge, Written};
use crate::runtime::telemetry::Counters;
use crate::runtime::Core;

/// State shared between the kernel and one plugin's context.
pub(crate) struct PluginShared {
    pub(crate) id: Arc<str>,
    /// `plugin:<id>`, the actor of everything this plugin does.
    pub(crate) actor: Actor,
    pub(crate) grants: ArcSwap<GrantSet>,
    /// The granted permissions as written, for pending-permission checks.
    pub(crate) granted: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Bumped after every change of `grants`, so cached checks know to re-check.
    pub(crate) grants_generation: std::sync::atomic::AtomicU64,
    pub(crate) counters: Arc<Counters>,
    /// The topics a package may emit: its `provides.events`. `None` for a built-in (trusted
    /// code; its claims still keep packages out of its namespaces).
    pub(crate) topics: ArcSwap<Option<Vec<Pattern>>>,
    /// A package runs under the quotas; a built-in is not metered.
    pub(crate) metered: bool,
    /// Its emits in the current second.
    pub(crate) emits: crate::model::quota::Window,
    /// Its refusals audited in the current minute (see [`MAX_AUDITED_DENIALS`]).
    pub(crate) denial_audits: crate::model::quota::Window,
    /// The settings its manifest declares.
    pub(crate) settings: ArcSwap<crate::model::manifest::Settings>,
}

/// The topic patterns `manifest` claims, for a package (`None`: a built-in, not restricted).
pub(crate) fn owned_topics(manifest: &crate::model::manifest::Manifest, package: bool) -> Option<Vec<Pattern>> {
    package.then(|| manifest.provides.events.iter().filter_map(|e| e.parse().ok()).collect())
}

pub(crate) struct CtxInner {
    pub(crate) shared: Arc<PluginShared>,
    pub(crate) core: Arc<Core>,
    /// The kernel itself, for `kernel.manage` and `kernel.inspect` holders (see
    /// `host::handle`). Weak, so a context kept by a plugin does not keep the kernel alive;
    /// typed as `Any` so that this module does not depend on the host above it.
    pub(crate) kernel: Weak<dyn Any + Send + Sync>,
    pub(crate) logger: PluginLogger,
}

/// A plugin's handle on the kernel. Cheap to clone; valid for the plugin's whole life.
#[derive(Clone)]
pub struct PluginContext(pub(crate) Arc<CtxInner>);

/// The longest storage key.
pub const MAX_KEY_LEN: usize = 512;
/// The largest storage value, as JSON text.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// The most of a name a plugin passed (a permission, a topic, what was over a limit) that
/// goes into an audit record; the rest is cut.
pub const MAX_AUDITED_NAME: usize = 256;
/// Refusals of one plugin recorded in the audit trail per minute; past it they are counted
/// (the activity counters), and the first one past it is recorded as `limit.exceeded`, so a
/// plugin refused in a loop cannot flood the trail.
pub const MAX_AUDITED_DENIALS: u64 = 60;

/// The largest event payload, as JSON text.
pub const MAX_PAYLOAD_BYTES: usize = 256 << 10;

impl PluginContext {
    /// The plugin's id.
    pub fn id(&self) -> &str {
        &self.0.shared.id
    }

    pub(crate) fn actor(&self) -> &Actor {
        &self.0.shared.actor
    }

    pub(crate) fn deny(&self, permission: String, call: &str) -> KernelError {
        self.0.shared.counters.denied();
        // The name comes from the plugin: what is recorded is bounded, whatever it passed, and
        // holds none of its secrets.
        let permission = crate::util::clip(self.redact(permission), MAX_AUDITED_NAME);
        self.audit_refusal(AuditAction::PermissionDenied, serde_json::json!({ "permission": permission, "call": call }));
        KernelError::PermissionDenied { plugin: self.id().to_string(), permission }
    }

    /// Record a refusal, up to [`MAX_AUDITED_DENIALS`] a minute; the first past it is recorded
    /// as a `limit.exceeded` saying the rest of the minute's are only counted, and when the
    /// minute ends, how many were.
    fn audit_refusal(&self, action: AuditAction, details: Value) {
        let (used, closed) = self.0.shared.denial_audits.hit(crate::util::now_ms(), 60_000, MAX_AUDITED_DENIALS);
        if let Some(n) = closed {
            self.0.core.writer.audit(self.actor(), Some(self.id()), AuditAction::LimitExceeded, serde_json::json!({ "what": "refusals", "reason": format!("{n} more refusals in the last minute were counted, not recorded") }));
        }
        match used {
            crate::model::quota::Use::Allowed => self.0.core.writer.audit(self.actor(), Some(self.id()), action, details),
            crate::model::quota::Use::Refused { first: true } => self.0.core.writer.audit(
                self.actor(),
                Some(self.id()),
                AuditAction::LimitExceeded,
                serde_json::json!({ "what": "refusals", "reason": format!("more than {MAX_AUDITED_DENIALS} refusals in a minute: the rest of this minute's are counted, not recorded") }),
            ),
            crate::model::quota::Use::Refused { first: false } => {}
        }
    }

    /// Refuse `value` when it nests deeper than [`crate::util::MAX_JSON_DEPTH`] or is larger
    /// than `max_bytes`: it could not be read back, or would let one plugin fill the host.
    /// The refusal is audited (`limit.exceeded`).
    pub fn check_value(&self, what: impl FnOnce() -> String, value: &Value, max_bytes: usize) -> Result<()> {
        match crate::util::check_json(value, crate::util::MAX_JSON_DEPTH, max_bytes) {
            Ok(_) => Ok(()),
            Err(bound) => Err(self.over_limit(what(), bound.to_string())),
        }
    }

    /// Refuse a call over a bound or quota: counted, audited (`limit.exceeded`) and returned
    /// as [`KernelError::OverLimit`].
    pub fn over_limit(&self, what: String, reason: String) -> KernelError {
        self.0.shared.counters.denied();
        let (what, reason) = (crate::util::clip(self.redact(what), MAX_AUDITED_NAME), crate::util::clip(reason, MAX_AUDITED_NAME));
        self.audit_refusal(AuditAction::LimitExceeded, serde_json::json!({ "what": what, "reason": reason }));
        KernelError::OverLimit { plugin: self.id().to_string(), what, reason }
    }

    /// The quotas this plugin runs under: the admin's, for a package; `None` for a built-in,
    /// which is not metered. Engines acting for a package check its quotas with this.
    pub fn quotas(&self) -> Option<crate::model::quota::Quotas> {
        self.0.shared.metered.then(|| **self.0.core.quotas.load())
    }

    /// The quotas packages run under now (whoever asks): for an engine bounding what it keeps
    /// for packages after the call that made it (a notification delivered later).
    pub fn package_quotas(&self) -> crate::model::quota::Quotas {
        **self.0.core.quotas.load()
    }

    /// Refuse a use over a rate quota: audited for the first refusal in a window (`first`),
    /// so a package hammering a limit does not flood the audit trail; counted every time.
    pub fn over_quota(&self, what: String, reason: String, first: bool) -> KernelError {
        if first {
            return self.over_limit(what, reason);
        }
        self.0.shared.counters.denied();
        KernelError::OverLimit { plugin: self.id().to_string(), what, reason }
    }

    pub(crate) fn grants(&self) -> arc_swap::Guard<Arc<GrantSet>> {
        self.0.shared.grants.load()
    }

    /// The full name of record type `object` as this plugin names it: `<owner>/<type>` as is,
    /// a bare `<type>` as this plugin's own (`<id>/<type>`). Types belong to the package that
    /// declares them; two packages' `account` are two types.
    pub fn record_type(&self, object: &str) -> String {
        if object.contains('/') {
            object.to_string()
        } else {
            format!("{}/{object}", self.id())
        }
    }

    /// Whether this plugin holds `data.<type>.read` (or, with `write`, `.write`) for the full
    /// type `object`, without asking: for a service deciding what to show (a refusal is not
    /// audited; use [`PluginContext::require_data`] for a call that needs it).
    pub fn holds_data(&self, object: &str, write: bool) -> bool {
        self.grants().may_access_data(object, write, self.id())
    }

    /// Check that this plugin may read (or, with `write`, change) records of the full type
    /// `object` (`data.<type>.read` for its own types, `data.<owner>/<type>.read` for another
    /// package's). A service acting for this plugin calls it; a refusal is audited like any
    /// other, naming `call` and the grant that was missing.
    pub fn require_data(&self, object: &str, write: bool, call: &str) -> Result<()> {
        if self.holds_data(object, write) {
            return Ok(());
        }
        let named = object.strip_prefix(self.id()).and_then(|r| r.strip_prefix('/')).unwrap_or(object);
        Err(self.deny(format!("data.{named}.{}", if write { "write" } else { "read" }), call))
    }

    /// Check that this plugin may send a request to `host` on `port` (a `network.connect`
    /// grant covers them), before anything connects. A refusal is audited, naming the grant
    /// that would allow it. For a name, the runtime must still refuse addresses that are not
    /// [`crate::model::reach::is_public`] (see [`PluginContext::refuse_address`]).
    pub fn require_connect(&self, host: &crate::model::reach::Host, port: u16, call: &str) -> Result<()> {
        if self.grants().may_connect(host, port) {
            return Ok(());
        }
        Err(self.deny(format!("network.connect:{host}:{port}"), call))
    }

    /// Refuse a request to `host` that resolved to `address`, which is not public: audited
    /// like a missing grant, with the address. A private address is reached only by a
    /// request that names it literally, covered by a grant that names it literally.
    pub fn refuse_address(&self, host: &crate::model::reach::Host, address: std::net::SocketAddr, call: &str) -> KernelError {
        let why = format!("{host} resolved to {}, which is not a public address", address.ip());
        let e = self.deny(format!("network.connect:{host}:{}", address.port()), &format!("{call}: {why}"));
        match e {
            KernelError::PermissionDenied { plugin, permission } => KernelError::PermissionDenied {
                plugin,
                permission: format!("{permission} ({why}; a private address is reached only by a URL and a grant that name it literally, such as {})", crate::model::reach::Host::Ip(address.ip())),
            },
            other => other,
        }
    }

    /// Count a web request this plugin's code made to `host` (`name:port`), with its status
    /// when a response came (for the console's use panel).
    pub fn record_request(&self, host: &str, status: Option<u16>, sent: u64, received: u64) {
        self.0.shared.counters.request(host, status, sent, received);
    }

    /// Count a call into this plugin's code: the CPU time it used, whether it trapped or
    /// overran a bound, and the memory its instance holds after it.
    pub fn record_run(&self, cpu: std::time::Duration, trapped: bool, memory_bytes: usize) {
        self.0.shared.counters.code_run(cpu, trapped, memory_bytes);
    }

    /// The folders this plugin was granted (`fs.read`, `fs.write`), as absolute paths.
    pub fn folders(&self) -> Vec<crate::model::permission::Folder> {
        self.grants().folders().to_vec()
    }

    /// Whether this plugin may provide service `name`: no other plugin claims it in its
    /// `provides.services` (the kernel claims `kernel`), and a package claims it itself. A
    /// refusal is audited as `service.refused`.
    fn owns_service(&self, name: &str) -> Result<()> {
        let owner = match self.0.core.registry.claimant(name) {
            Some(owner) if *owner == *self.id() => return Ok(()),
            None if !self.0.shared.metered => return Ok(()),
            other => other.map(|o| o.to_string()),
        };
        self.0.shared.counters.denied();
        let service = crate::util::clip(name.to_string(), MAX_AUDITED_NAME);
        self.audit_refusal(AuditAction::ServiceRefused, serde_json::json!({ "service": service, "owner": owner }));
        Err(KernelError::ServiceNotOwned { plugin: self.id().to_string(), service, owner })
    }

    /// The host's own folders (its data directory and the runtime's cache), as given and as
    /// they resolve: no file call may reach into them, whatever the grant's folder.
    pub fn host_folders(&self) -> Arc<[std::path::PathBuf]> {
        self.0.core.host_folders.clone()
    }

    /// Record a failure of this plugin's code (a handler or a service call that overran a
    /// bound or trapped) and return how many are recorded within `window`, by every process
    /// on this data directory: what decides a quarantine outlives the process that saw it.
    pub fn count_failure(&self, message: &str, window: std::time::Duration) -> Result<u64> {
        let now = crate::util::now_ms();
        let since = now.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        self.0.core.store.count_failure(self.id(), now, since, &crate::util::clip(self.redact(message.to_string()), 1024))
    }

    /// The digest the host recorded for the compiled artifact `key` when it made it.
    pub fn recorded_artifact(&self, key: &str) -> Option<String> {
        self.0.core.store.artifact(key).ok().flatten()
    }

    /// Record that the host made the compiled artifact `key` of this plugin's code, whose
    /// bytes have `digest`; only such an artifact is loaded later.
    pub fn record_artifact(&self, key: &str, digest: &str) -> Result<()> {
        self.0.core.store.record_artifact(key, digest, self.id())
    }

    /// Record (audit trail and log) that a cached artifact of this plugin's code was not
    /// what the host made, and why; the caller compiles it again.
    pub fn artifact_refused(&self, file: &str, reason: &str) {
        self.0.core.writer.audit(&Actor::System, Some(self.id()), AuditAction::ArtifactRefused, serde_json::json!({ "file": file, "reason": reason }));
        self.logger().warn(format!("the cached compiled code {file} was not loaded ({reason}); it was compiled again"));
    }

    /// Refuse a use of a file path no granted folder covers: audited, naming the grant.
    pub fn refuse_path(&self, path: &str, write: bool, call: &str) -> KernelError {
        self.deny(format!("fs.{}:{path}", if write { "write" } else { "read" }), call)
    }

    /// Append a record to the audit trail, with this plugin as the actor: for what a plugin
    /// does that matters (a record written, a state changed). `action` is a dotted name outside
    /// the kernel's own (`plugin.*`, `permission.*`, `service.*`, `kernel.*`, `audit.*`,
    /// `event.*`, `storage.*`); `details` must not hold secrets.
    pub fn audit(&self, action: &str, details: Value) -> Result<()> {
        validate_name(action).map_err(|reason| KernelError::InvalidName { name: action.into(), reason })?;
        let typed = AuditAction::plugin(action).map_err(|reason| KernelError::InvalidName { name: action.into(), reason })?;
        self.0.core.writer.audit(self.actor(), Some(self.id()), typed, details);
        Ok(())
    }

    /// The service registry.
    pub fn services(&self) -> Services<'_> {
        Services(self)
    }

    /// The event bus.
    pub fn events(&self) -> Events<'_> {
        Events(self)
    }

    /// This plugin's own key/value storage.
    pub fn storage(&self) -> Storage<'_> {
        Storage(self)
    }

    /// This plugin's log.
    pub fn logger(&self) -> &PluginLogger {
        &self.0.logger
    }

    /// This plugin's configuration: an object of what an admin set, the defaults of the
    /// settings its manifest declares that are not set, and its secret settings (read now,
    /// from where they are kept apart). Hold secrets no longer than a call needs them.
    pub fn config(&self) -> Value {
        let mut config = self.0.core.store.config(self.id()).unwrap_or_else(|_| Value::Object(Default::default()));
        let settings = self.0.shared.settings.load();
        if let Value::Object(map) = &mut config {
            for (key, s) in settings.iter() {
                if let (false, Some(d)) = (map.contains_key(key), &s.default) {
                    map.insert(key.clone(), d.clone());
                }
            }
            if settings.any_secret() {
                for (key, value) in self.0.core.store.secrets(self.id()).unwrap_or_default() {
                    map.insert(key, Value::String(value));
                }
            }
        }
        config
    }

    /// `text` with each of this plugin's secret values (of 4 bytes or more) replaced by
    /// `[secret <key>]`: for what a plugin's code writes to its log, which the console shows.
    pub fn redact(&self, text: String) -> String {
        if !self.0.shared.settings.load().any_secret() {
            return text;
        }
        redact_with(text, &self.0.core.store.secrets(self.id()).unwrap_or_default())
    }

    /// `value` with [`PluginContext::redact`] applied to every string in it (keys too).
    pub fn redact_value(&self, value: Value) -> Value {
        if !self.0.shared.settings.load().any_secret() {
            return value;
        }
        let secrets = self.0.core.store.secrets(self.id()).unwrap_or_default();
        fn walk(v: Value, secrets: &[(String, String)]) -> Value {
            match v {
                Value::String(s) => Value::String(redact_with(s, secrets)),
                Value::Array(a) => Value::Array(a.into_iter().map(|x| walk(x, secrets)).collect()),
                Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (redact_with(k, secrets), walk(x, secrets))).collect()),
                other => other,
            }
        }
        walk(value, &secrets)
    }

    /// The whole number `key` of this plugin's configuration: `default` when unset, and an error
    /// naming the plugin and the key when it is not an integer from 1 to `max`.
    pub fn config_u64(&self, key: &str, default: u64, max: u64) -> std::result::Result<u64, String> {
        match self.config().get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_u64().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                let want = if max == u64::MAX { "a positive integer".to_string() } else { format!("an integer from 1 to {max}") };
                format!("configuration of {}: `{key}` must be {want}, not {v}", self.id())
            }),
        }
    }
}

/// `text` with each secret value (of 4 bytes or more) replaced by `[secret <key>]`.
fn redact_with(text: String, secrets: &[(String, String)]) -> String {
    let mut out = text;
    for (key, value) in secrets {
        if value.len() >= 4 && out.contains(value.as_str()) {
            out = out.replace(value.as_str(), &format!("[secret {key}]"));
        }
    }
    out
}

/// Service registry facade (see [`PluginContext::services`]).
pub struct Services<'a>(&'a PluginContext);

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
    pub fn expose(&self, name: &str, face: Arc<dyn crate::plugin::JsonService>) -> Result<()> {
        let ctx = self.0;
        ctx.0.core.registry.expose(ctx.id(), name, face)
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
        let face = ctx.0.core.registry.json(name)?;
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
        face.call(ctx, method, args)
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

/// Event bus facade (see [`PluginContext::events`]).
pub struct Events<'a>(&'a PluginContext);

pub(crate) fn reserved(topic: &str) -> bool {
    topic == "kernel" || topic == "plugin" || topic.starts_with("kernel.") || topic.starts_with("plugin.")
}

impl Events<'_> {
    fn check_subscribe(&self, pattern: &str) -> Result<Pattern> {
        let ctx = self.0;
        let p: Pattern = pattern.parse().map_err(|reason| KernelError::InvalidName { name: pattern.into(), reason })?;
        if !ctx.grants().may_subscribe(&p) {
            return Err(ctx.deny(format!("events.subscribe:{pattern}"), "events.on"));
        }
        Ok(p)
    }

    fn add(&self, pattern: &str, handler: Handler, once: bool) -> Result<SubscriptionId> {
        let p = self.check_subscribe(pattern)?;
        let ctx = self.0;
        Ok(ctx.0.core.bus.subscribe(ctx.0.shared.id.clone(), ctx.0.shared.counters.clone(), p, handler, once))
    }

    /// Call `handler` for every event matching `pattern`. Needs `events.subscribe:<p>` with a
    /// granted pattern covering `pattern`.
    pub fn on(&self, pattern: &str, handler: impl Fn(&Event) -> Result<(), HandlerError> + Send + Sync + 'static) -> Result<SubscriptionId> {
        self.add(pattern, Handler::Sync(Box::new(handler)), false)
    }

    /// Like [`Events::on`], with an async handler.
    pub fn on_async<F, Fut>(&self, pattern: &str, handler: F) -> Result<SubscriptionId>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.add(pattern, Handler::Async(Box::new(move |e| handler(e).boxed())), false)
    }

    /// Like [`Events::on`], but only for the first matching event.
    pub fn once(&self, pattern: &str, handler: impl Fn(&Event) -> Result<(), HandlerError> + Send + Sync + 'static) -> Result<SubscriptionId> {
        self.add(pattern, Handler::Sync(Box::new(handler)), true)
    }

    /// Call `f` with a plugin's id whenever that plugin stops running (disabled, unloaded, failed
    /// or uninstalled), for a service to drop what it keeps for it. `uninstalled` tells the
    /// last case apart. Needs `events.subscribe:plugin.*`.
    pub fn on_plugin_stopped(&self, f: impl Fn(&str, bool) -> Result<(), HandlerError> + Send + Sync + 'static) -> Result<SubscriptionId> {
        self.on("plugin.*", move |e| {
            let stopped = matches!(e.topic.as_ref(), "plugin.disabled" | "plugin.unloaded" | "plugin.error" | "plugin.uninstalled");
            match e.payload.get("plugin").and_then(Value::as_str) {
                Some(id) if stopped => f(id, e.topic.as_ref() == "plugin.uninstalled"),
                _ => Ok(()),
            }
        })
    }

    /// Remove one of this plugin's subscriptions; false when it was not there.
    pub fn off(&self, id: SubscriptionId) -> bool {
        self.0 .0.core.bus.unsubscribe(self.0.id(), id)
    }

    /// Whether this plugin may emit `topic` now (the name, the kernel's reserved topics, the
    /// `events.emit` grant and, for a package, that it declares the topic), without emitting: for an engine that will emit it later for
    /// this plugin (a delayed event), so that a refusal shows, and is audited, at once.
    pub fn check(&self, topic: &str) -> Result<()> {
        let ctx = self.0;
        validate_name(topic).map_err(|reason| KernelError::InvalidName { name: topic.into(), reason })?;
        if reserved(topic) {
            return Err(KernelError::ReservedTopic { topic: topic.into() });
        }
        if !ctx.grants().may_emit(topic) {
            return Err(ctx.deny(format!("events.emit:{topic}"), "events.emit"));
        }
        if let Some(owned) = &**ctx.0.shared.topics.load() {
            if !owned.iter().any(|p| p.matches(topic)) {
                let declared: Vec<&str> = owned.iter().map(Pattern::as_str).collect();
                let topic = crate::util::clip(topic.to_string(), MAX_AUDITED_NAME);
                let topic = topic.as_str();
                ctx.0.shared.counters.denied();
                ctx.0.core.writer.audit(ctx.actor(), Some(ctx.id()), AuditAction::TopicRefused, serde_json::json!({ "topic": topic, "declared": declared }));
                return Err(KernelError::TopicNotOwned { plugin: ctx.id().to_string(), topic: topic.into(), declared: declared.join(", ") });
            }
        }
        Ok(())
    }

    /// Count one event against a package's `eventsPerSecond` quota: every emit does, and an
    /// engine does for an event it emits because of this package (a record it wrote).
    pub fn charge(&self, topic: &str) -> Result<()> {
        let ctx = self.0;
        if let Some(q) = ctx.quotas() {
            if let (crate::model::quota::Use::Refused { first }, _) = ctx.0.shared.emits.hit(crate::util::now_ms(), 1_000, q.events_per_second) {
                return Err(ctx.over_quota(format!("event `{topic}`"), format!("the package's quota is {} events a second", q.events_per_second), first));
            }
        }
        Ok(())
    }

    /// Check that this plugin may emit `topic` with `payload`, and count it.
    fn check_emit(&self, topic: &str, payload: &Value) -> Result<()> {
        let ctx = self.0;
        self.check(topic)?;
        ctx.check_value(|| format!("event `{topic}`"), payload, MAX_PAYLOAD_BYTES)?;
        self.charge(topic)?;
        ctx.0.shared.counters.events_emitted.fetch_add(1, Relaxed);
        Ok(())
    }

    fn audit_emit(&self, topic: &str, report: EmitReport) {
        let ctx = self.0;
        if ctx.0.core.writer.full() {
            ctx.0.core.writer.audit(ctx.actor(), Some(ctx.id()), AuditAction::EventEmitted, serde_json::json!({ "topic": topic, "delivered": report.delivered, "failed": report.failed }));
        }
    }

    /// Emit `topic` with `payload`: sync handlers run before this returns, async ones are
    /// started. Needs `events.emit:<topic>`. Emitted while handling an event, it is one deeper
    /// than that event ([`Event::depth`]).
    pub fn emit(&self, topic: &str, payload: Value) -> Result<EmitReport> {
        self.emit_in_chain(topic, payload, 0)
    }

    /// Like [`Events::emit`], for an engine acting on a chain of events `depth` deep that it
    /// tracks itself (an automation run from a job, a record written by an action): the event
    /// is at least `depth` deep. The kernel refuses it past [`MAX_EVENT_DEPTH`].
    pub fn emit_in_chain(&self, topic: &str, payload: Value, depth: u32) -> Result<EmitReport> {
        let depth = self.depth(topic, depth)?;
        self.check_emit(topic, &payload)?;
        let report = self.0 .0.core.bus.emit(topic, &self.0 .0.shared.id, payload, depth);
        self.audit_emit(topic, report);
        Ok(report)
    }

    /// Emit and wait for every handler, async ones included.
    pub async fn emit_async(&self, topic: &str, payload: Value) -> Result<EmitReport> {
        let depth = self.depth(topic, 0)?;
        self.check_emit(topic, &payload)?;
        let report = self.0 .0.core.bus.emit_async(topic, &self.0 .0.shared.id, payload, depth).await;
        self.audit_emit(topic, report);
        Ok(report)
    }

    /// The depth of an event emitted here: one more than the event being handled, at least
    /// `at_least`; refused past [`MAX_EVENT_DEPTH`].
    fn depth(&self, topic: &str, at_least: u32) -> Result<u32> {
        let depth = ambient_depth().map_or(0, |d| d.saturating_add(1)).max(at_least);
        if depth > MAX_EVENT_DEPTH {
            return Err(self.0.over_limit(
                format!("event `{topic}`"),
                format!("it would be event {} in a chain of events each emitted while handling the one before; chains are cut at {MAX_EVENT_DEPTH} (a loop?)", depth + 1),
            ));
        }
        Ok(depth)
    }
}

/// Storage facade (see [`PluginContext::storage`]): this plugin's keys only.
pub struct Storage<'a>(&'a PluginContext);

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(KernelError::InvalidName { name: key.chars().take(64).collect(), reason: format!("storage keys are 1 to {MAX_KEY_LEN} bytes without control characters") });
    }
    Ok(())
}

impl Storage<'_> {
    /// This plugin's own write: charged to it, and for a package within its storage quota.
    fn own_charge(&self) -> Charge<'_> {
        Charge { owner: self.0.id(), limit: self.0.quotas().map(|q| q.storage_bytes) }
    }

    /// What a write did, as this facade answers: refused past the owner's limit (audited as
    /// the writing plugin's `limit.exceeded`).
    fn outcome(&self, key: &str, charge: Charge<'_>, written: Written) -> Result<bool> {
        match written {
            Written::Done => Ok(true),
            Written::Stale => Ok(false),
            Written::OverLimit { used } => {
                let limit = charge.limit.unwrap_or(0);
                if charge.owner == self.0.id() {
                    return Err(self.0.over_limit(format!("storage value `{key}`"), crate::model::quota::budget_reason("the package", used, limit)));
                }
                // An engine's write for a package: the engine refuses its caller (and the
                // caller's refusal is the one audited).
                Err(KernelError::OverLimit { plugin: charge.owner.to_string(), what: format!("storage value `{key}`"), reason: crate::model::quota::budget_reason(charge.owner, used, limit) })
            }
        }
    }

    fn read(&self, call: &str) -> Result<&PluginContext> {
        let ctx = self.0;
        if !ctx.grants().storage_read() {
            return Err(ctx.deny("storage.read".into(), call));
        }
        ctx.0.shared.counters.storage_reads.fetch_add(1, Relaxed);
        Ok(ctx)
    }

    fn write(&self, call: &str, action: AuditAction, key: Option<&str>) -> Result<&PluginContext> {
        let ctx = self.0;
        if !ctx.grants().storage_write() {
            return Err(ctx.deny("storage.write".into(), call));
        }
        ctx.0.shared.counters.storage_writes.fetch_add(1, Relaxed);
        if ctx.0.core.writer.full() {
            ctx.0.core.writer.audit(ctx.actor(), Some(ctx.id()), action, serde_json::json!({ "key": key }));
        }
        Ok(ctx)
    }

    /// Read a value. Needs `storage.read`.
    pub fn get(&self, key: &str) -> Result<Option<Value>> {
        let ctx = self.read("storage.get")?;
        ctx.0.core.storage.get(ctx.id(), key)
    }
    /// Does the key exist? Needs `storage.read`.
    pub fn has(&self, key: &str) -> Result<bool> {
        let ctx = self.read("storage.has")?;
        ctx.0.core.storage.has(ctx.id(), key)
    }
    /// Every key, sorted. Needs `storage.read`.
    pub fn keys(&self) -> Result<Vec<String>> {
        let ctx = self.read("storage.keys")?;
        ctx.0.core.storage.keys(ctx.id())
    }
    /// Write a value. Needs `storage.write`.
    pub fn set(&self, key: &str, value: Value) -> Result<()> {
        check_key(key)?;
        self.0.check_value(|| format!("storage value `{key}`"), &value, MAX_VALUE_BYTES)?;
        let ctx = self.write("storage.set", AuditAction::StorageSet, Some(key))?;
        let charge = self.own_charge();
        let written = ctx.0.core.storage.set(ctx.id(), key, value, charge)?;
        self.outcome(key, charge, written).map(drop)
    }
    /// Delete a key; true when it existed. Needs `storage.write`.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let ctx = self.write("storage.delete", AuditAction::StorageDelete, Some(key))?;
        ctx.0.core.storage.delete(ctx.id(), key)
    }
    /// Every key starting with `prefix`, with its value, sorted by key. Needs `storage.read`.
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, Value)>> {
        let ctx = self.read("storage.scan")?;
        ctx.0.core.storage.scan(ctx.id(), prefix)
    }
    /// Replace `key`'s value with `new` (None deletes it) only if it is now `expected` (None:
    /// absent), atomically, also against other processes on the data directory; true when it
    /// did. The building block for claims and counters. Needs `storage.read` and `storage.write`.
    pub fn swap(&self, key: &str, expected: Option<&Value>, new: Option<Value>) -> Result<bool> {
        check_key(key)?;
        if let Some(v) = &new {
            self.0.check_value(|| format!("storage value `{key}`"), v, MAX_VALUE_BYTES)?;
        }
        self.swap_charged(key, expected, new, self.own_charge())
    }

    /// [`Storage::swap`] for an engine that keeps data for a package (a package's records):
    /// the bytes are charged to `charge.owner`, within `charge.limit`, so the package has one
    /// budget for its own keys and what engines keep for it. A package's own call is charged
    /// to itself, within its quota, whatever it names.
    pub fn swap_charged(&self, key: &str, expected: Option<&Value>, new: Option<Value>, charge: Charge<'_>) -> Result<bool> {
        check_key(key)?;
        if let Some(v) = &new {
            self.0.check_value(|| format!("storage value `{key}`"), v, MAX_VALUE_BYTES)?;
        }
        self.read("storage.swap")?;
        let ctx = self.write("storage.swap", AuditAction::StorageSwap, Some(key))?;
        let charge = if ctx.0.shared.metered { self.own_charge() } else { charge };
        let written = ctx.0.core.storage.swap(ctx.id(), key, expected, new, charge)?;
        self.outcome(key, charge, written)
    }

    /// The bytes of storage charged to `owner` (its own keys and what engines keep for it).
    pub fn usage_of(&self, owner: &str) -> Result<u64> {
        self.0 .0.core.storage.usage(owner)
    }

    /// Charge this plugin's rows under `prefix` that are still charged to itself to the owner
    /// `owner_of` names (rows an engine kept before charges existed); returns how many moved.
    pub fn recharge(&self, prefix: &str, owner_of: &dyn Fn(&str) -> Option<String>) -> Result<usize> {
        let ctx = self.write("storage.recharge", AuditAction::StorageSwap, None)?;
        if ctx.0.shared.metered {
            return Ok(0);
        }
        ctx.0.core.storage.recharge(ctx.id(), prefix, owner_of)
    }
    /// Delete every key; returns how many. Needs `storage.write`.
    pub fn clear(&self) -> Result<usize> {
        let ctx = self.write("storage.clear", AuditAction::StorageClear, None)?;
        ctx.0.core.storage.clear(ctx.id())
    }
}
