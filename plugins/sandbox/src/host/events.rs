//! The `events` import: emit, and subscriptions whose events the guest's `handle-event` gets.

use super::bindings::objectos::plugin::events;
use super::bindings::objectos::plugin::types::HostError;
use super::{host_error, json, short, HostState, MAX_SUBSCRIPTIONS};

impl events::Host for HostState {
    fn emit(&mut self, topic: String, payload: String) -> Result<u32, HostError> {
        short("a topic", &topic)?;
        let payload = json(&format!("the payload of `{topic}`"), &payload)?;
        let report = self.ctx.events().emit(&topic, payload).map_err(host_error)?;
        Ok(report.delivered as u32)
    }

    fn subscribe(&mut self, pattern: String) -> Result<u64, HostError> {
        short("a pattern", &pattern)?;
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            let e = self.ctx.over_limit(format!("subscription to `{pattern}`"), format!("a plugin holds at most {MAX_SUBSCRIPTIONS} subscriptions at a time"));
            return Err(host_error(e));
        }
        let id = self.next_subscription;
        let guest = self.guest.clone();
        // Durable, named by its pattern: what the guest subscribes to when enabled is queued
        // for it by every process, and delivered by the runner at least once.
        let sub = self
            .ctx
            .events()
            .on_durable(&pattern, &pattern, move |delivery| {
                let guest = guest.clone();
                async move {
                    match guest.upgrade() {
                        Some(g) => g.event(id, delivery.event).await.map_err(Into::into),
                        None => Err("the plugin's code was replaced while the event waited; it is delivered again".into()),
                    }
                }
            })
            .map_err(host_error)?;
        self.next_subscription += 1;
        self.subscriptions.insert(id, sub);
        Ok(id)
    }

    fn unsubscribe(&mut self, id: u64) -> bool {
        match self.subscriptions.remove(&id) {
            Some(sub) => self.ctx.events().off(sub),
            None => false,
        }
    }
}
