//! The `log` import: lines in the plugin's own log, bounded, with its secrets redacted.

use objectos_kernel::plugin::Level;
use serde_json::Value;

use super::bindings::objectos::plugin::log;
use super::{json, HostState};

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String, fields: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        // A line and its fields are at most 16 KiB each, so a guest cannot store its memory
        // through the log (its lines a minute are also counted against its quota).
        const MAX_LINE: usize = 16 << 10;
        // A secret the plugin was given does not reach the log (which the console shows).
        let fields = match fields.trim() {
            "" => Value::Null,
            t if t.len() > MAX_LINE => Value::String(format!("fields of {} bytes left out: a line's fields are at most {MAX_LINE} bytes", t.len())),
            t => self.ctx.redact_value(json("the log line's fields", t).unwrap_or_else(|e| Value::String(e.message))),
        };
        self.ctx.logger().log(level, objectos_kernel::util::clip(self.ctx.redact(message), MAX_LINE), fields);
    }
}
