//! The `services` import: calls to other plugins' services, and the services the guest provides.

use std::sync::Arc;

use super::bindings::objectos::plugin::services;
use super::bindings::objectos::plugin::types::{ErrorCode, HostError};
use super::{host_error, json, short, HostState, MAX_SERVICES};

impl services::Host for HostState {
    fn call(&mut self, name: String, method: String, args: String) -> Result<String, HostError> {
        let args = json(&format!("the arguments of `{name}.{method}`"), &args)?;
        let (result, on_guests) = crate::guest::waiting_on_guests(|| self.ctx.services().call(&name, &method, args));
        self.clock.waiting += on_guests;
        Ok(result.map_err(host_error)?.to_string())
    }

    fn register(&mut self, name: String) -> Result<(), HostError> {
        short("a service name", &name)?;
        if self.services.len() >= MAX_SERVICES && !self.services.contains(&name) {
            let e = self.ctx.over_limit(format!("service `{name}`"), format!("a plugin provides at most {MAX_SERVICES} services"));
            return Err(host_error(e));
        }
        let Some(guest) = self.guest.upgrade() else { return Err(HostError { code: ErrorCode::Failed, message: "the plugin is stopping".into() }) };
        let face = Arc::new(crate::guest::Provided { guest: Arc::downgrade(&guest), name: name.clone() });
        self.ctx.services().register_arc(&name, face.clone()).map_err(host_error)?;
        self.ctx.services().expose(&name, face).map_err(host_error)?;
        self.services.insert(name);
        Ok(())
    }

    fn unregister(&mut self, name: String) -> Result<(), HostError> {
        self.ctx.services().unregister(&name).map_err(host_error)?;
        self.services.remove(&name);
        Ok(())
    }
}
