//! `com.objectos.notification`: notifications through channels, offered as the
//! `notification` service.
//!
//! - **Channels** deliver a rendered [`Message`]. Two are built in: `in-app` (stored, read or
//!   unread, shown by the console's notification centre) and `log` (a line in this plugin's
//!   log). Another plugin adds one with [`Notifications::register_channel`]; it goes away
//!   when that plugin stops being enabled.
//! - **Templates** ([`Notifications::define_template`]) hold a title and a body with
//!   `{{variable}}` placeholders (dotted paths into the variables object); a missing
//!   variable is an error naming it, never an empty hole.
//! - **Delivery**: [`Notifications::send`] tries every channel at once and reports each
//!   result. A failed delivery is retried through the jobs service (3 more attempts with
//!   exponential backoff from `retryBackoffMs`, 2 s by default); the stored record ([`Notifications::get`]) shows each
//!   channel's final state.
//! - The in-app inbox is a separate service, `notification.inbox`, for the console host (or a
//!   plugin an admin explicitly grants `services.use:notification.inbox`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use objectos_jobs::{JobSpec, Jobs, Retry};
use objectos_kernel::serde_json::{self, json, Value};
use objectos_kernel::util::now_ms;
use objectos_kernel::{HookResult, Kernel, KernelError, Plugin, PluginContext, Result, async_trait};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The plugin's id.
pub const ID: &str = "com.objectos.notification";
/// The service name.
pub const SERVICE: &str = "notification";
/// The inbox service name.
pub const INBOX: &str = "notification.inbox";
/// The embedded manifest.
pub const MANIFEST: &str = include_str!("../plugin.json");
/// The plugin's translations (English and Simplified Chinese).
pub const TRANSLATIONS: &[(&str, &str)] = &[("translations/en.json", include_str!("../translations/en.json")), ("translations/zh-CN.json", include_str!("../translations/zh-CN.json"))];
/// The built-in in-app channel.
pub const IN_APP: &str = "in-app";

/// Is `name` a channel's name: 1 to 64 characters of a-z, 0-9, '.', '_' or '-'?
pub fn is_channel_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}
/// The built-in log channel.
pub const LOG: &str = "log";
/// How long one delivery may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts in all for a failing channel: the first, then retries through jobs.
pub const DELIVERY_ATTEMPTS: u32 = 4;
const RETRY_HANDLER: &str = "deliver";
const SENT: &str = "sent:";
const INAPP: &str = "inapp:";
const MAX_TEXT: usize = 16 << 10;

/// Register the plugin with a kernel (before `start`).
pub fn register(kernel: &Kernel) -> Result<()> {
    kernel.register_builtin_with_files(MANIFEST, Arc::new(NotificationPlugin), TRANSLATIONS)
}

fn err(message: impl Into<String>) -> KernelError {
    KernelError::service(SERVICE, message)
}

// ---- messages, templates, channels -----------------------------------------------------------

/// How much a notification matters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// For information.
    #[default]
    Info,
    /// Something went well.
    Success,
    /// Needs attention.
    Warning,
    /// Something failed.
    Error,
}

/// A rendered notification, as channels receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Unique id (sorts by creation).
    pub id: String,
    /// The sending plugin.
    pub plugin: String,
    /// One line.
    pub title: String,
    /// Plain text.
    pub body: String,
    /// How much it matters.
    pub level: Level,
    /// Who it is for, when the channel addresses someone (an email address, a user name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Extra data for channels (a link, a record id).
    #[serde(default)]
    pub data: Value,
    /// Created (ms).
    pub created_at: i64,
    /// Sent by a package (decided at send): in the inbox it keeps at most its `inboxItems`
    /// quota and is the first to make room, so an admin's notices are never pushed out by it.
    #[serde(default)]
    pub from_package: bool,
}

/// What a plugin asks to send.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// Channel names; empty means `in-app`.
    #[serde(default)]
    pub channels: Vec<String>,
    /// A template of the sender's, rendered with `vars`.
    #[serde(default)]
    pub template: Option<String>,
    /// The title, when no template is used (placeholders are rendered too).
    #[serde(default)]
    pub title: Option<String>,
    /// The body, when no template is used.
    #[serde(default)]
    pub body: Option<String>,
    /// Values for `{{placeholders}}`.
    #[serde(default)]
    pub vars: Value,
    /// How much it matters.
    #[serde(default)]
    pub level: Level,
    /// Who it is for.
    #[serde(default)]
    pub recipient: Option<String>,
    /// Extra data for channels.
    #[serde(default)]
    pub data: Value,
}

impl Notice {
    /// A notice with this title and body for the in-app channel.
    pub fn new(title: &str, body: &str) -> Self {
        Notice { title: Some(title.into()), body: Some(body.into()), ..Default::default() }
    }
    /// Render the caller's template `name` with `vars`.
    pub fn template(name: &str, vars: Value) -> Self {
        Notice { template: Some(name.into()), vars, ..Default::default() }
    }
    /// Send through these channels.
    pub fn via(mut self, channels: &[&str]) -> Self {
        self.channels = channels.iter().map(|c| c.to_string()).collect();
        self
    }
    /// With this level.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }
}

/// A title and body with `{{variable}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The title.
    pub title: String,
    /// The body.
    pub body: String,
}

/// Replace every `{{ path }}` in `text` with the value at `path` in `vars` (dotted, object
/// keys or array indexes). Strings are inserted as they are, other values as JSON.
pub fn render(text: &str, vars: &Value) -> std::result::Result<String, String> {
    objectos_kernel::model::text::render_placeholders(text, |path| objectos_kernel::model::text::lookup_path(vars, path).ok_or_else(|| format!("variable `{path}` is not given")))
}

/// A way to deliver messages. Implement it to add a channel (email, chat, SMS...).
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// Deliver one message; an error is retried through the jobs service.
    async fn deliver(&self, message: &Message) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// The channel took it.
    Delivered,
    /// It failed; a retry is queued.
    Retrying,
    /// It failed for good.
    Failed,
}

/// One channel's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Last change (ms).
    pub at: i64,
}

/// A sent notification and its deliveries, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    /// The message.
    pub message: Message,
    /// Per channel.
    pub deliveries: BTreeMap<String, Delivery>,
}

/// An in-app notification in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxItem {
    /// The message.
    #[serde(flatten)]
    pub message: Message,
    /// Read by the admin.
    pub read: bool,
}

// ---- the plugin ------------------------------------------------------------------------------

/// The plugin's code.
#[derive(Default)]
pub struct NotificationPlugin;

#[async_trait]
impl Plugin for NotificationPlugin {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        let retain = ctx.config_u64("retain", 1_000, u64::MAX)? as usize;
        let backoff_ms = ctx.config_u64("retryBackoffMs", 2_000, u64::MAX)?;
        let jobs = ctx.services().get::<Jobs>(objectos_jobs::SERVICE)?;
        let (changes, _) = watch::channel(0u64);
        let inner = Arc::new(Inner { ctx: ctx.clone(), jobs: jobs.clone(), channels: Mutex::default(), templates: Mutex::default(), seq: AtomicU64::new(0), changes, retain, backoff_ms, rates: Mutex::default() });
        {
            let mut channels = inner.channels();
            channels.insert(IN_APP.into(), (ID.into(), Arc::new(InAppChannel { inner: Arc::downgrade(&inner) }) as Arc<dyn Channel>));
            channels.insert(LOG.into(), (ID.into(), Arc::new(LogChannel { ctx: ctx.clone() }) as Arc<dyn Channel>));
        }
        let retry = Arc::downgrade(&inner);
        jobs.handle(ctx, RETRY_HANDLER, move |run| {
            let inner = retry.clone();
            async move {
                let inner = inner.upgrade().ok_or("the notification plugin is not enabled")?;
                inner.retry(run).await
            }
        })?;
        let weak = Arc::downgrade(&inner);
        ctx.events().on_plugin_stopped(move |plugin, _| {
            if let Some(inner) = weak.upgrade().filter(|_| plugin != ID) {
                inner.channels().retain(|_, (owner, _)| owner != plugin);
                inner.templates().retain(|(owner, _), _| owner != plugin);
            }
            Ok(())
        })?;
        // A plugin the kernel stopped because its code kept failing: the admin hears of it.
        let tell = Arc::downgrade(&inner);
        ctx.events().on_async("plugin.quarantined", move |e| {
            let inner = tell.clone();
            async move {
                let Some(inner) = inner.upgrade() else { return Ok(()) };
                let plugin = e.payload.get("plugin").and_then(Value::as_str).unwrap_or("a plugin").to_string();
                let reason = e.payload.get("reason").and_then(Value::as_str).unwrap_or_default().to_string();
                let notice = Notice { title: Some(format!("{plugin} was stopped")), body: Some(format!("{reason}\n\nIt stays stopped until you enable it again.")), level: Level::Error, ..Default::default() };
                Notifications { inner: inner.clone() }.send(&inner.ctx.clone(), notice).await.map(drop).map_err(Into::into)
            }
        })?;
        let notifications = Arc::new(Notifications { inner: inner.clone() });
        ctx.services().register_arc(SERVICE, notifications.clone())?;
        ctx.services().expose(SERVICE, notifications)?;
        ctx.services().register(INBOX, Inbox { inner })?;
        Ok(())
    }
}

type Channels = HashMap<String, (String, Arc<dyn Channel>)>;

struct Inner {
    ctx: PluginContext,
    jobs: Arc<Jobs>,
    channels: Mutex<Channels>,
    templates: Mutex<HashMap<(String, String), Template>>,
    seq: AtomicU64,
    changes: watch::Sender<u64>,
    retain: usize,
    backoff_ms: u64,
    /// Each package's sends in the current minute.
    rates: Mutex<HashMap<String, std::sync::Arc<objectos_kernel::model::quota::Window>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn channels(&self) -> MutexGuard<'_, Channels> {
        lock(&self.channels)
    }
    fn templates(&self) -> MutexGuard<'_, HashMap<(String, String), Template>> {
        lock(&self.templates)
    }

    async fn deliver(&self, channel: &str, message: &Message) -> std::result::Result<(), String> {
        let target = self.channels().get(channel).map(|(_, c)| c.clone());
        let Some(target) = target else { return Err(format!("no channel named `{channel}` is registered now")) };
        match tokio::time::timeout(DELIVERY_TIMEOUT, futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(target.deliver(message)))).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(_)) => Err(format!("channel `{channel}` panicked")),
            Err(_) => Err(format!("channel `{channel}` did not answer within {} s", DELIVERY_TIMEOUT.as_secs())),
        }
    }

    fn record(&self, id: &str) -> Result<Option<Sent>> {
        Ok(self.ctx.storage().get(&format!("{SENT}{id}"))?.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Update one channel's delivery in the stored record (compare-and-set, retried).
    fn update_delivery(&self, id: &str, channel: &str, delivery: Delivery) -> Result<()> {
        let key = format!("{SENT}{id}");
        for _ in 0..5 {
            let Some(old) = self.ctx.storage().get(&key)? else { return Ok(()) };
            let mut sent: Sent = serde_json::from_value(old.clone()).map_err(|e| KernelError::Corrupt(format!("{ID}: {key}: {e}")))?;
            sent.deliveries.insert(channel.into(), delivery.clone());
            let new = serde_json::to_value(&sent).map_err(|e| err(e.to_string()))?;
            if self.ctx.storage().swap(&key, Some(&old), Some(new))? {
                return Ok(());
            }
        }
        Err(err(format!("the record of notification {id} kept changing")))
    }

    async fn retry(&self, run: objectos_jobs::JobRun) -> objectos_jobs::JobResult {
        let channel = run.payload["channel"].as_str().ok_or("the retry job has no channel")?.to_string();
        let id = run.payload["id"].as_str().ok_or("the retry job has no notification id")?.to_string();
        let Some(sent) = self.record(&id)? else { return Ok(()) }; // trimmed meanwhile: nothing to do
        let attempts = run.attempt + 1; // the first attempt was made by send
        let result = self.deliver(&channel, &sent.message).await;
        let (status, error) = match &result {
            Ok(()) => (DeliveryStatus::Delivered, None),
            Err(e) if attempts >= DELIVERY_ATTEMPTS => (DeliveryStatus::Failed, Some(e.clone())),
            Err(e) => (DeliveryStatus::Retrying, Some(e.clone())),
        };
        self.update_delivery(&id, &channel, Delivery { status, attempts, error, at: now_ms() })?;
        if status == DeliveryStatus::Failed {
            self.ctx.logger().warn(format!("notification {id} could not be delivered through `{channel}` after {attempts} attempts"));
        }
        result.map_err(Into::into)
    }

    fn trim(&self, prefix: &str) -> Result<()> {
        let keys: Vec<String> = self.ctx.storage().scan(prefix)?.into_iter().map(|(k, _)| k).collect();
        if keys.len() > self.retain {
            for k in &keys[..keys.len() - self.retain] {
                self.ctx.storage().delete(k)?;
            }
        }
        Ok(())
    }

    /// Keep the inbox within `retain`: a package's own oldest items make room for its new ones
    /// past its cap, and when the inbox is full, packages' items go before anyone else's.
    fn trim_inbox(&self, sender: &str, cap: Option<usize>) -> Result<()> {
        let storage = self.ctx.storage();
        let items: Vec<(String, InboxItem)> = storage.scan(INAPP)?.into_iter().filter_map(|(k, v)| Some((k, serde_json::from_value(v).ok()?))).collect();
        let mut gone = std::collections::BTreeSet::new();
        if let Some(cap) = cap {
            let own: Vec<&String> = items.iter().filter(|(_, i)| i.message.plugin == sender).map(|(k, _)| k).collect();
            gone.extend(own.iter().take(own.len().saturating_sub(cap)).map(|k| (*k).clone()));
        }
        let left = items.len() - gone.len();
        if left > self.retain {
            // Oldest first (keys sort by creation), packages' items before the others.
            let mut order: Vec<&(String, InboxItem)> = items.iter().filter(|(k, _)| !gone.contains(k)).collect();
            order.sort_by_key(|(k, i)| (!i.message.from_package, k.clone()));
            gone.extend(order.iter().take(left - self.retain).map(|(k, _)| k.clone()));
        }
        for k in gone {
            storage.delete(&k)?;
        }
        Ok(())
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }
}

struct InAppChannel {
    inner: std::sync::Weak<Inner>,
}

#[async_trait]
impl Channel for InAppChannel {
    async fn deliver(&self, message: &Message) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let inner = self.inner.upgrade().ok_or("the notification plugin is not enabled")?;
        let cap = message.from_package.then(|| inner.ctx.package_quotas().inbox_items as usize);
        let item = InboxItem { message: message.clone(), read: false };
        inner.ctx.storage().set(&format!("{INAPP}{}", message.id), serde_json::to_value(&item)?)?;
        inner.trim_inbox(&message.plugin, cap)?;
        inner.changed();
        Ok(())
    }
}

struct LogChannel {
    ctx: PluginContext,
}

#[async_trait]
impl Channel for LogChannel {
    async fn deliver(&self, m: &Message) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let level = match m.level {
            Level::Info | Level::Success => objectos_kernel::model::log::Level::Info,
            Level::Warning => objectos_kernel::model::log::Level::Warn,
            Level::Error => objectos_kernel::model::log::Level::Error,
        };
        self.ctx.logger().log(level, format!("[{}] {}: {}", m.plugin, m.title, m.body), json!({ "notification": m.id, "recipient": m.recipient }));
        Ok(())
    }
}

// ---- the services ----------------------------------------------------------------------------

/// A channel a plugin's code provides as one of its own services: each message is handed to
/// that service's `deliver` method (as JSON); an error it returns is a failed delivery,
/// retried like any other.
struct ServiceChannel {
    owner: PluginContext,
    service: String,
}

#[async_trait]
impl Channel for ServiceChannel {
    async fn deliver(&self, message: &Message) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (owner, service, message) = (self.owner.clone(), self.service.clone(), serde_json::to_value(message)?);
        // The service is the plugin's code, which blocks the thread calling it.
        tokio::task::spawn_blocking(move || owner.services().call_own(&service, "deliver", message)).await??;
        Ok(())
    }
}

/// `notification` for code in the sandbox: `send` with a [`Notice`] (`{title, body,
/// channels?, level?, vars?}` or `{template, vars}`), answering `{id, deliveries}`; `get
/// {id}`, one of the caller's sent notifications; `registerChannel {name, service}`, a
/// channel named `<caller id>` or `<caller id>.<name>` delivered by `deliver(message)` of a
/// service the caller provides; `channels`.
impl objectos_kernel::plugin::JsonService for Notifications {
    fn call(&self, caller: &PluginContext, method: &str, args: Value) -> Result<Value> {
        match method {
            "registerChannel" => {
                let name = objectos_kernel::plugin::str_arg(SERVICE, method, &args, "name")?;
                let service = objectos_kernel::plugin::str_arg(SERVICE, method, &args, "service")?;
                // A channel named by code is named after its plugin, like its topics: no
                // package can take `email` or another package's channel and read the notices
                // sent to it.
                let id = caller.id();
                if name != id && !name.strip_prefix(id).is_some_and(|rest| rest.starts_with('.')) {
                    return Err(err(format!("registerChannel: a channel of {id} is named `{id}` or `{id}.<name>`, not `{name}`")));
                }
                if !caller.services().provides(service) {
                    return Err(err(format!("registerChannel: `{service}` is not a service {} provides; register it first (its `deliver` method receives each message)", caller.id())));
                }
                self.register_channel(caller, name, Arc::new(ServiceChannel { owner: caller.clone(), service: service.to_string() }))?;
                Ok(Value::Null)
            }
            "channels" => Ok(json!(self.channels())),
            "send" => {
                let notice: Notice = serde_json::from_value(args).map_err(|e| err(format!("send: not a notice ({e}); send {{\"title\": ..., \"body\": ...}}")))?;
                let report = objectos_kernel::util::block_on(SERVICE, self.send(caller, notice))??;
                serde_json::to_value(report).map_err(|e| err(e.to_string()))
            }
            "get" => {
                let id = objectos_kernel::plugin::str_arg(SERVICE, method, &args, "id")?;
                Ok(serde_json::to_value(self.get(caller, id)?).unwrap_or(Value::Null))
            }
            _ => Err(objectos_kernel::plugin::no_method(SERVICE, method, &["send", "get", "registerChannel", "channels"])),
        }
    }
}

/// What [`Notifications::send`] reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendReport {
    /// The notification's id.
    pub id: String,
    /// Per channel.
    pub deliveries: BTreeMap<String, Delivery>,
}

/// The `notification` service.
pub struct Notifications {
    inner: Arc<Inner>,
}

impl Notifications {
    /// Offer a channel named `name` (1 to 64 characters of a-z, 0-9, '.', '_', '-'). It goes
    /// when the caller stops being enabled.
    pub fn register_channel(&self, caller: &PluginContext, name: &str, channel: Arc<dyn Channel>) -> Result<()> {
        if !is_channel_name(name) {
            return Err(err(format!("channel name {name:?} must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'")));
        }
        let mut channels = self.inner.channels();
        if let Some((owner, _)) = channels.get(name) {
            if owner != caller.id() {
                return Err(err(format!("channel `{name}` is already offered by {owner}")));
            }
        }
        channels.insert(name.into(), (caller.id().into(), channel));
        Ok(())
    }

    /// The channels registered now, sorted.
    pub fn channels(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.channels().keys().cloned().collect();
        names.sort();
        names
    }

    /// Define (or replace) the caller's template `name`. Placeholders are checked when used.
    pub fn define_template(&self, caller: &PluginContext, name: &str, template: Template) -> Result<()> {
        if name.is_empty() || name.len() > 128 {
            return Err(err("template names are 1 to 128 characters"));
        }
        self.inner.templates().insert((caller.id().into(), name.into()), template);
        Ok(())
    }

    /// Render and send `notice` through its channels; failed channels are retried through
    /// the jobs service.
    pub async fn send(&self, caller: &PluginContext, notice: Notice) -> Result<SendReport> {
        let inner = &self.inner;
        let (title, body) = match (&notice.template, &notice.title) {
            (Some(name), _) => {
                let t = inner.templates().get(&(caller.id().to_string(), name.clone())).cloned();
                let t = t.ok_or_else(|| err(format!("{} has no template named `{name}`", caller.id())))?;
                (t.title, t.body)
            }
            (None, Some(title)) => (title.clone(), notice.body.clone().unwrap_or_default()),
            (None, None) => return Err(err("a notification needs a `template` or a `title`")),
        };
        if let Some(q) = caller.quotas() {
            let window = lock(&inner.rates).entry(caller.id().to_string()).or_default().clone();
            if let (objectos_kernel::model::quota::Use::Refused { first }, _) = window.hit(now_ms(), 60_000, q.notifications_per_minute) {
                return Err(caller.over_quota("a notification".into(), format!("the package's quota is {} notifications a minute", q.notifications_per_minute), first));
            }
        }
        let place = notice.template.as_deref().map_or_else(|| "the notification".to_string(), |t| format!("template `{t}`"));
        let title = render(&title, &notice.vars).map_err(|e| err(format!("{place}, title: {e}")))?;
        let body = render(&body, &notice.vars).map_err(|e| err(format!("{place}, body: {e}")))?;
        if title.trim().is_empty() || title.len() > 1024 || body.len() > MAX_TEXT {
            return Err(err(format!("the title must be 1 to 1024 bytes and the body at most {MAX_TEXT}")));
        }
        let channels = if notice.channels.is_empty() { vec![IN_APP.to_string()] } else { notice.channels.clone() };
        {
            let known = inner.channels();
            if let Some(missing) = channels.iter().find(|c| !known.contains_key(c.as_str())) {
                let mut names: Vec<&String> = known.keys().collect();
                names.sort();
                return Err(err(format!("no channel named `{missing}`; the channels are {}", names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))));
            }
        }
        let now = now_ms();
        // Fixed widths, so ids sort by creation (the inbox lists newest first by id).
        let id = format!("{now:013}-{:08}-{:010}", std::process::id(), inner.seq.fetch_add(1, Relaxed));
        let message = Message { id: id.clone(), plugin: caller.id().into(), title, body, level: notice.level, recipient: notice.recipient, data: notice.data, created_at: now, from_package: caller.quotas().is_some() };
        let mut sent = Sent { message: message.clone(), deliveries: BTreeMap::new() };
        let results = futures::future::join_all(channels.iter().map(|c| inner.deliver(c, &message))).await;
        for (channel, result) in channels.iter().zip(results) {
            let d = match result {
                Ok(()) => Delivery { status: DeliveryStatus::Delivered, attempts: 1, error: None, at: now_ms() },
                Err(e) => {
                    inner.ctx.logger().warn(format!("notification {id} through `{channel}` failed, will retry: {e}"));
                    Delivery { status: DeliveryStatus::Retrying, attempts: 1, error: Some(e), at: now_ms() }
                }
            };
            sent.deliveries.insert(channel.clone(), d);
        }
        inner.ctx.storage().set(&format!("{SENT}{id}"), serde_json::to_value(&sent).map_err(|e| err(e.to_string()))?)?;
        inner.trim(SENT)?;
        for (channel, d) in &sent.deliveries {
            if d.status == DeliveryStatus::Retrying {
                let retry = Retry { attempts: DELIVERY_ATTEMPTS - 1, backoff_ms: inner.backoff_ms, max_backoff_ms: 60_000 };
                let spec = JobSpec::new(RETRY_HANDLER, json!({ "id": id, "channel": channel })).delay(Duration::from_millis(retry.backoff_ms)).retry(retry);
                inner.jobs.enqueue(&inner.ctx, spec)?;
            }
        }
        // The sender audits what it sent (channels and title, never the body).
        let _ = caller.audit("notification.sent", json!({ "id": id, "title": sent.message.title, "channels": channels }));
        let _ = inner.ctx.events().emit("notification.sent", json!({ "id": id, "plugin": caller.id(), "channels": channels }));
        Ok(SendReport { id, deliveries: sent.deliveries })
    }

    /// One of the caller's sent notifications with its deliveries.
    pub fn get(&self, caller: &PluginContext, id: &str) -> Result<Option<Sent>> {
        Ok(self.inner.record(id)?.filter(|s| s.message.plugin == caller.id()))
    }
}

/// The `notification.inbox` service: the in-app notifications, for the console.
pub struct Inbox {
    inner: Arc<Inner>,
}

impl Inbox {
    /// The newest `limit` items, newest first (only unread ones when asked).
    pub fn list(&self, limit: usize, unread_only: bool) -> Result<Vec<InboxItem>> {
        let mut items: Vec<InboxItem> = self.inner.ctx.storage().scan(INAPP)?.into_iter().filter_map(|(_, v)| serde_json::from_value(v).ok()).collect();
        items.retain(|i: &InboxItem| !unread_only || !i.read);
        items.reverse();
        items.truncate(limit);
        Ok(items)
    }

    /// How many are unread.
    pub fn unread(&self) -> Result<usize> {
        Ok(self.inner.ctx.storage().scan(INAPP)?.iter().filter(|(_, v)| v.get("read") == Some(&Value::Bool(false))).count())
    }

    /// Mark one item read (`Some(id)`) or all of them (`None`); returns how many changed.
    pub fn mark_read(&self, id: Option<&str>) -> Result<usize> {
        let storage = self.inner.ctx.storage();
        let rows = match id {
            Some(id) => {
                let key = format!("{INAPP}{id}");
                let v = storage.get(&key)?.ok_or_else(|| err(format!("no notification {id:?} in the inbox")))?;
                vec![(key, v)]
            }
            None => storage.scan(INAPP)?,
        };
        let mut changed = 0;
        for (key, old) in rows {
            if old.get("read") == Some(&Value::Bool(false)) {
                let mut new = old.clone();
                new["read"] = Value::Bool(true);
                if storage.swap(&key, Some(&old), Some(new))? {
                    changed += 1;
                }
            }
        }
        if changed > 0 {
            self.inner.changed();
            let _ = self.inner.ctx.events().emit("notification.read", json!({ "id": id, "count": changed }));
        }
        Ok(changed)
    }

    /// A receiver that changes whenever the inbox does (a new item, an item read).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}
