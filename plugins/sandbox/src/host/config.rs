//! The `config` import: the plugin's configuration, as JSON text.

use super::bindings::objectos::plugin::config;
use super::HostState;

impl config::Host for HostState {
    fn get(&mut self) -> String {
        self.ctx.config().to_string()
    }
}
