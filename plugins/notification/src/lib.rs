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
pub(crate) const RETRY_HANDLER: &str = "deliver";
pub(crate) const SENT: &str = "sent:";
pub(crate) const INAPP: &str = "inapp:";
pub(crate) const MAX_TEXT: usize = 16 << 10;

/// Register the plugin with a kernel (before `start`).
pub fn register(kernel: &Kernel) -> Result<()> {
    kernel.register_builtin_with_files(MANIFEST, Arc::new(NotificationPlugin), TRANSLATIONS)
}

pub(crate) fn err(message: impl Into<String>) -> KernelError {
    KernelError::service(SERVICE, message)
}

mod inbox;
mod message;
mod service;

pub use inbox::*;
pub use message::*;
pub use service::*;

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
        let inner = Arc::new(Inner { ctx: ctx.clone(), jobs: jobs.clone(), channels: Mutex::default(), templates: Mutex::default(), seq: AtomicU64::new(0), changes, retain, backoff_ms });
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

pub(crate) type Channels = HashMap<String, (String, Arc<dyn Channel>)>;

pub(crate) struct Inner {
    ctx: PluginContext,
    jobs: Arc<Jobs>,
    channels: Mutex<Channels>,
    templates: Mutex<HashMap<(String, String), Template>>,
    seq: AtomicU64,
    changes: watch::Sender<u64>,
    retain: usize,
    backoff_ms: u64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

pub(crate) struct InAppChannel {
    inner: std::sync::Weak<Inner>,
}

#[async_trait]
impl Channel for InAppChannel {
    async fn deliver(&self, message: &Message) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let inner = self.inner.upgrade().ok_or("the notification plugin is not enabled")?;
        let cap = message.from_package.then(|| objectos_kernel::runtime::meter::Held::InboxItems.limit(&inner.ctx.package_quotas()) as usize);
        let item = InboxItem { message: message.clone(), read: false };
        inner.ctx.storage().set(&format!("{INAPP}{}", message.id), serde_json::to_value(&item)?)?;
        inner.trim_inbox(&message.plugin, cap)?;
        inner.changed();
        Ok(())
    }
}

pub(crate) struct LogChannel {
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
