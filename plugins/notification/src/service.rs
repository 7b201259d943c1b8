//! The `notification` service: channels, templates and sending, for the calling plugin.

use super::*;

/// A channel a plugin's code provides as one of its own services: each message is handed to
/// that service's `deliver` method (as JSON); an error it returns is a failed delivery,
/// retried like any other.
pub(crate) struct ServiceChannel {
    pub(crate) owner: PluginContext,
    pub(crate) service: String,
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
    pub(crate) inner: Arc<Inner>,
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
        caller.charge(objectos_kernel::runtime::meter::Rate::NotificationsPerMinute, || "a notification".into())?;
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
