//! Per-plugin logs at run time: the logger handed to plugins, and a `tracing` layer that routes events
//! recorded inside a plugin's span (`plugin = <id>`) to that plugin's log.
//!
//! Records go to the database through the batching writer (bounded retention per plugin) and
//! to live subscribers as [`crate::KernelEvent::Log`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::db::Writer;
use crate::model::log::{Level, LogRecord};
use crate::util::now_ms;

/// A plugin's logger: every line lands in that plugin's log, and in `tracing`. A package's
/// lines are metered (its `logLinesPerMinute` quota): beyond it they are dropped, and the first
/// line of the next minute says how many were.
#[derive(Clone)]
pub struct PluginLogger {
    plugin: Arc<str>,
    writer: Writer,
    meter: Arc<crate::runtime::meter::Meter>,
}

/// The `tracing` target used for lines written through [`PluginLogger`]; the layer skips it
/// because those lines are stored directly.
pub(crate) const LOGGER_TARGET: &str = "objectos::plugin";

impl PluginLogger {
    pub(crate) fn new(plugin: Arc<str>, writer: Writer, meter: Arc<crate::runtime::meter::Meter>) -> Self {
        PluginLogger { plugin, writer, meter }
    }

    /// Log a line with structured fields.
    pub fn log(&self, level: Level, message: impl Into<String>, fields: Value) {
        use crate::runtime::meter::Rate;
        let charged = self.meter.hit(Rate::LogLinesPerMinute);
        if let Some(n) = charged.refused_before {
            self.write(Level::Warn, format!("{n} log lines were dropped in the last minute: this package's quota is {}", Rate::LogLinesPerMinute.describe(charged.limit)), Value::Null);
        }
        if charged.outcome != crate::model::quota::Use::Allowed {
            return;
        }
        self.write(level, message.into(), fields);
    }

    fn write(&self, level: Level, message: String, fields: Value) {
        match level {
            Level::Trace => tracing::trace!(target: LOGGER_TARGET, plugin = %self.plugin, "{message}"),
            Level::Debug => tracing::debug!(target: LOGGER_TARGET, plugin = %self.plugin, "{message}"),
            Level::Info => tracing::info!(target: LOGGER_TARGET, plugin = %self.plugin, "{message}"),
            Level::Warn => tracing::warn!(target: LOGGER_TARGET, plugin = %self.plugin, "{message}"),
            Level::Error => tracing::error!(target: LOGGER_TARGET, plugin = %self.plugin, "{message}"),
        }
        self.writer.log(LogRecord {
            id: 0,
            ts: now_ms(),
            plugin: self.plugin.to_string(),
            level,
            target: self.plugin.to_string(),
            message,
            fields,
        });
    }

    /// Debug line.
    pub fn debug(&self, message: impl Into<String>) {
        self.log(Level::Debug, message, Value::Null);
    }
    /// Info line.
    pub fn info(&self, message: impl Into<String>) {
        self.log(Level::Info, message, Value::Null);
    }
    /// Warning line.
    pub fn warn(&self, message: impl Into<String>) {
        self.log(Level::Warn, message, Value::Null);
    }
    /// Error line.
    pub fn error(&self, message: impl Into<String>) {
        self.log(Level::Error, message, Value::Null);
    }
}

/// Kernels alive in this process, so the (process-global) layer can find the right one.
fn sinks() -> &'static Mutex<HashMap<u64, Weak<crate::db::WriterInner>>> {
    static SINKS: OnceLock<Mutex<HashMap<u64, Weak<crate::db::WriterInner>>>> = OnceLock::new();
    SINKS.get_or_init(Default::default)
}

pub(crate) fn register_sink(kernel_id: u64, writer: &Writer) {
    if let Ok(mut s) = sinks().lock() {
        s.retain(|_, w| w.strong_count() > 0);
        s.insert(kernel_id, writer.downgrade());
    }
}

/// Span fields the layer remembers.
struct PluginSpan {
    plugin: String,
    kernel: u64,
}

#[derive(Default)]
struct SpanVisitor {
    plugin: Option<String>,
    kernel: Option<u64>,
}

impl Visit for SpanVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "plugin" {
            self.plugin = Some(value.to_string());
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "kernel" {
            self.kernel = Some(value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "plugin" {
            self.plugin = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

#[derive(Default)]
struct EventVisitor {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for EventVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.insert(field.name().to_string(), Value::String(value.to_string()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().to_string(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields.insert(field.name().to_string(), Value::String(format!("{value:?}")));
        }
    }
}

/// A `tracing` layer that stores events recorded inside a plugin span (`plugin`, `kernel`
/// fields, as the kernel opens around every hook and handler) in that plugin's log.
///
/// Install it once per process (the CLI and the console do); kernels find their records
/// by the span's `kernel` field.
#[derive(Debug, Default, Clone, Copy)]
pub struct PluginLogLayer;

impl PluginLogLayer {
    /// The layer with the filter hosts install it with: debug and above, but only warnings
    /// from the compiler and runtime crates under the sandbox (Cranelift logs every step at
    /// trace and debug; passed to a plugin's log they would flood it, and checking each one
    /// costs more than compiling).
    pub fn filtered<S>() -> tracing_subscriber::filter::Filtered<PluginLogLayer, tracing_subscriber::filter::Targets, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        use tracing::level_filters::LevelFilter;
        let quiet = ["cranelift", "regalloc2", "wasmtime", "wasmparser", "wasm_encoder", "wit_component", "wit_parser", "wasmtime_wizer", "componentize_qjs"];
        let targets = quiet.iter().fold(tracing_subscriber::filter::Targets::new().with_default(LevelFilter::DEBUG), |t, c| t.with_target(*c, LevelFilter::WARN));
        PluginLogLayer.with_filter(targets)
    }
}

impl<S> Layer<S> for PluginLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut v = SpanVisitor::default();
        attrs.record(&mut v);
        if let (Some(plugin), Some(kernel)) = (v.plugin, v.kernel) {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(PluginSpan { plugin, kernel });
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() == LOGGER_TARGET {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else { return };
        let mut found = None;
        for span in scope {
            if let Some(p) = span.extensions().get::<PluginSpan>() {
                found = Some((p.plugin.clone(), p.kernel));
                break;
            }
        }
        let Some((plugin, kernel)) = found else { return };
        let writer = sinks().lock().ok().and_then(|s| s.get(&kernel).and_then(Weak::upgrade));
        let Some(writer) = writer else { return };
        let mut v = EventVisitor::default();
        event.record(&mut v);
        let meta = event.metadata();
        Writer::from_inner(writer).log(LogRecord {
            id: 0,
            ts: now_ms(),
            plugin,
            level: meta.level().into(),
            target: meta.target().to_string(),
            message: v.message,
            fields: if v.fields.is_empty() { Value::Null } else { Value::Object(v.fields) },
        });
    }
}
