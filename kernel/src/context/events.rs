//! What a plugin reaches of the event bus: emit on its own topics, subscribe where granted.

use super::*;

/// An event checked and counted, not yet emitted (see [`Events::prepare`]).
#[derive(Debug)]
pub struct Prepared {
    pub(crate) topic: String,
    pub(crate) payload: Value,
    pub(crate) depth: u32,
}

impl Prepared {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// Event bus facade (see [`PluginContext::events`]).
pub struct Events<'a>(pub(super) &'a PluginContext);

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

    /// A durable subscription named `name` (unique among this plugin's) to `pattern`: every
    /// matching event a plugin or the host emits, in this process or another on the data
    /// directory, is queued for it in the transaction of the change that caused it, and the
    /// runner hands it to `handler` at least once, with a [`Delivery`] id that stays the same
    /// when it is delivered again (the handler failed, or the runner was killed before it
    /// finished). The subscription outlives this process: events wait for the plugin while no
    /// runner is up. It ends with [`Events::off`], when the plugin is disabled or uninstalled,
    /// and when an enable of the plugin no longer makes it. The kernel's own events
    /// (`plugin.*`, `kernel.*`) reach it directly, without an id. Needs `events.subscribe:<p>`.
    pub fn on_durable<F, Fut>(&self, name: &str, pattern: &str, handler: F) -> Result<SubscriptionId>
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.durable(self.0, name, pattern, Box::new(move |d| handler(d).boxed()))
    }

    /// [`Events::on_durable`] for an engine that subscribes on behalf of `owner` (a package
    /// whose automations it runs): checked against this plugin's grants, named
    /// `<this plugin's id>/<name>` (so it cannot replace one of `owner`'s own), and `owner`'s
    /// subscription otherwise (it ends with `owner`, and its failures are `owner`'s).
    pub fn on_durable_for<F, Fut>(&self, owner: &PluginContext, name: &str, pattern: &str, handler: F) -> Result<SubscriptionId>
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        // Under this plugin's id (`<engine>/<name>`): never one of the owner's own names.
        let name = format!("{}/{name}", self.0.id());
        self.durable(owner, &name, pattern, Box::new(move |d| handler(d).boxed()))
    }

    fn durable(&self, owner: &PluginContext, name: &str, pattern: &str, handler: Box<crate::runtime::bus::DurableFn>) -> Result<SubscriptionId> {
        if name.is_empty() || name.len() > MAX_AUDITED_NAME || name.chars().any(char::is_control) {
            return Err(KernelError::InvalidName { name: crate::util::clip(name.to_string(), 64), reason: format!("a subscription's name is 1 to {MAX_AUDITED_NAME} bytes without control characters") });
        }
        let p = self.check_subscribe(pattern)?;
        let core = &owner.0.core;
        core.store.subscribe_durably(owner.id(), name, pattern, crate::util::now_ms())?;
        core.outbox.changed();
        let id = core.bus.subscribe(owner.0.shared.id.clone(), owner.0.shared.counters.clone(), p, Handler::Durable(name.into(), handler), false);
        // Deliveries that waited for it may go now.
        core.outbox.wake.notify_one();
        Ok(id)
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

    /// Remove one of this plugin's subscriptions; false when it was not there. A durable one
    /// ends with the deliveries waiting for it, in the runner, unless it is shutting down (its
    /// events wait for the next runner).
    pub fn off(&self, id: SubscriptionId) -> bool {
        let ctx = self.0;
        match ctx.0.core.bus.unsubscribe(ctx.id(), id) {
            None => false,
            Some(None) => true,
            // Shutting down, or not the runner (which holds the subscriptions that count).
            Some(Some(_)) if ctx.0.core.stopping.load(Relaxed) || !ctx.is_runner() => true,
            Some(Some(name)) => {
                if let Err(e) = ctx.0.core.store.end_subscription(ctx.id(), &name) {
                    ctx.logger().warn(format!("could not end the durable subscription `{name}`: {e}"));
                }
                ctx.0.core.outbox.changed();
                true
            }
        }
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
        self.0.charge(crate::runtime::meter::Rate::EventsPerSecond, || format!("event `{topic}`"))
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
        let prepared = self.prepare(topic, payload, depth)?;
        let core = &self.0 .0.core;
        core.queue(topic, &self.0 .0.shared.id, &prepared.payload, prepared.depth)?;
        Ok(self.publish(prepared))
    }

    /// Emit and wait for every handler, async ones included (durable subscriptions: until
    /// their deliveries are queued).
    pub async fn emit_async(&self, topic: &str, payload: Value) -> Result<EmitReport> {
        let Prepared { topic, payload, depth } = self.prepare(topic, payload, 0)?;
        let core = &self.0 .0.core;
        core.queue(&topic, &self.0 .0.shared.id, &payload, depth)?;
        let report = core.bus.emit_async(&topic, &self.0 .0.shared.id, payload, depth).await;
        self.audit_emit(&topic, report);
        Ok(report)
    }

    /// Check and count an event this plugin will emit once a change it is about to store is
    /// stored ([`Storage::swap_announcing`] queues it for durable subscriptions with the
    /// change), then [`Events::publish`] it. At least `depth` deep, as
    /// [`Events::emit_in_chain`].
    pub fn prepare(&self, topic: &str, payload: Value, depth: u32) -> Result<Prepared> {
        let depth = self.depth(topic, depth)?;
        self.check_emit(topic, &payload)?;
        Ok(Prepared { topic: topic.to_string(), payload, depth })
    }

    /// Deliver a prepared event to the handlers that hear it as it is emitted (durable
    /// subscriptions have it queued already).
    pub fn publish(&self, prepared: Prepared) -> EmitReport {
        let Prepared { topic, payload, depth } = prepared;
        let report = self.0 .0.core.bus.emit(&topic, &self.0 .0.shared.id, payload, depth);
        self.audit_emit(&topic, report);
        report
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
