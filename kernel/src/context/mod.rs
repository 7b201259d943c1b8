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
use crate::runtime::bus::{ambient_depth, Delivery, EmitReport, Event, Handler, HandlerError, SubscriptionId, MAX_EVENT_DEPTH};
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
    /// Its quota meter (a built-in's is not metered).
    pub(crate) meter: Arc<crate::runtime::meter::Meter>,
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
pub use crate::util::MAX_AUDITED_NAME;
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

    /// Whether this process is the data directory's runner (it holds the runner lease): only
    /// the runner starts jobs, fires schedules and delivers queued events. An engine that runs
    /// work on its own (a job runner) does so only while this holds.
    pub fn is_runner(&self) -> bool {
        self.0.core.runner.load(Relaxed)
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
        let meter = &self.0.shared.meter;
        meter.metered().then(|| meter.quotas())
    }

    /// This plugin's quota meter, which the kernel and the engines charge what it takes of
    /// what every plugin shares.
    pub fn meter(&self) -> &crate::runtime::meter::Meter {
        &self.0.shared.meter
    }

    /// Charge one use of `rate` to this plugin: refused past its quota (`what` says what was
    /// refused; the first refusal of a window is audited). A built-in is not metered.
    pub fn charge(&self, rate: crate::runtime::meter::Rate, what: impl FnOnce() -> String) -> Result<()> {
        let charged = self.0.shared.meter.hit(rate);
        match charged.outcome {
            crate::model::quota::Use::Allowed => Ok(()),
            crate::model::quota::Use::Refused { first } => Err(self.over_quota(what(), format!("the package's quota is {}", rate.describe(charged.limit)), first)),
        }
    }

    /// Check that this plugin, holding `held_now` of `held`, may take one more: refused (and
    /// audited) at its quota, with `what` and `holds` (its holding, in words) in the reason.
    pub fn make_room(&self, held: crate::runtime::meter::Held, held_now: u64, what: impl FnOnce() -> String, holds: impl FnOnce(u64) -> String) -> Result<()> {
        match self.0.shared.meter.limit(held) {
            Some(limit) if held_now >= limit => Err(self.over_limit(what(), format!("{}; its quota is {limit}", holds(held_now)))),
            _ => Ok(()),
        }
    }

    /// The quotas packages run under now (whoever asks): for an engine bounding what it keeps
    /// for packages after the call that made it (a notification delivered later).
    pub fn package_quotas(&self) -> crate::model::quota::Quotas {
        self.0.shared.meter.quotas()
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
            None if !self.0.shared.meter.metered() => return Ok(()),
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

mod events;
mod services;
mod storage;

pub use events::{Events, Prepared};
pub(crate) use events::reserved;
pub use services::{JsonService, ServiceHandle, Services};
pub use storage::Storage;
