//! `com.objectos.metrics`: the first built-in plugin. It reads every plugin's activity
//! counters (events, hook durations, storage operations, denials) through the kernel's
//! public `inspect` call and offers a `metrics` service that renders them in the Prometheus
//! text exposition format.
//!
//! ```no_run
//! # async fn run(kernel: objectos_kernel::Kernel) -> objectos_kernel::Result<()> {
//! objectos_metrics::register(&kernel)?;
//! kernel.start().await?;
//! kernel.enable(objectos_metrics::ID, false).await?;
//! let text = kernel.service::<objectos_metrics::Metrics>("metrics")?.render()?;
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use objectos_kernel::{HookResult, Kernel, Plugin, PluginContext, Result, async_trait};
use objectos_kernel::model::lifecycle::State;
use objectos_kernel::runtime::telemetry::PluginActivity;

/// The plugin's id.
pub const ID: &str = "com.objectos.metrics";
/// The service name.
pub const SERVICE: &str = "metrics";
/// The embedded manifest.
pub const MANIFEST: &str = include_str!("../plugin.json");
/// The plugin's translations (English and Simplified Chinese).
pub const TRANSLATIONS: &[(&str, &str)] = &[("translations/en.json", include_str!("../translations/en.json")), ("translations/zh-CN.json", include_str!("../translations/zh-CN.json"))];

/// Register the plugin with a kernel (before `start`).
pub fn register(kernel: &Kernel) -> Result<()> {
    kernel.register_builtin_with_files(MANIFEST, Arc::new(MetricsPlugin), TRANSLATIONS)
}

/// The plugin's code.
#[derive(Debug, Default)]
pub struct MetricsPlugin;

#[async_trait]
impl Plugin for MetricsPlugin {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        ctx.services().register(SERVICE, Metrics { ctx: ctx.clone() })?;
        ctx.logger().info("metrics service registered");
        Ok(())
    }
}

/// The `metrics` service.
pub struct Metrics {
    ctx: PluginContext,
}

/// Services named `metrics.<something>` of this type add their own families to the
/// exposition, so that plugins export figures without the metrics plugin knowing them and
/// without depending on it at run time. The closure returns Prometheus text (HELP, TYPE and
/// samples); the metrics plugin reads every such service its `services.use:metrics.*` grant
/// covers.
pub struct MetricSource(Box<dyn Fn() -> String + Send + Sync>);

impl MetricSource {
    /// A source rendering with `collect`.
    pub fn new(collect: impl Fn() -> String + Send + Sync + 'static) -> Self {
        MetricSource(Box::new(collect))
    }

    /// Render now.
    pub fn collect(&self) -> String {
        (self.0)()
    }
}

/// The name prefix of metric source services.
pub const SOURCE_PREFIX: &str = "metrics.";

impl Metrics {
    /// Every plugin's counters.
    pub fn snapshot(&self) -> Result<Vec<PluginActivity>> {
        self.ctx.inspect()
    }

    /// The counters in the Prometheus text exposition format (version 0.0.4), followed by
    /// every metric source's families in service-name order.
    pub fn render(&self) -> Result<String> {
        let mut out = render(&self.snapshot()?);
        let services = self.ctx.services();
        let mut sources: Vec<String> = services.list().into_iter().map(|s| s.name).filter(|n| n.starts_with(SOURCE_PREFIX)).collect();
        sources.sort();
        for name in sources {
            // A source of another type under a metrics.* name is skipped, not fatal.
            if let Ok(source) = services.get::<MetricSource>(&name) {
                out.push_str(&source.collect());
            }
        }
        Ok(out)
    }
}

/// Write one metric family (HELP and TYPE lines, then `samples` as `(labels, value)`).
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Escape a label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Render activity as Prometheus text.
pub fn render(activity: &[PluginActivity]) -> String {
    let mut out = String::new();
    type Get = fn(&PluginActivity) -> u64;
    let counters: [(&str, &str, Get); 7] = [
        ("objectos_plugin_events_emitted_total", "Events the plugin emitted.", |a| a.stats.events_emitted),
        ("objectos_plugin_events_received_total", "Events delivered to the plugin's handlers.", |a| a.stats.events_received),
        ("objectos_plugin_handler_errors_total", "Handler errors and panics of the plugin.", |a| a.stats.handler_errors),
        ("objectos_plugin_storage_reads_total", "Storage reads (get, has, keys) by the plugin.", |a| a.stats.storage_reads),
        ("objectos_plugin_storage_writes_total", "Storage writes (set, delete, clear) by the plugin.", |a| a.stats.storage_writes),
        ("objectos_plugin_service_lookups_total", "Service lookups by the plugin.", |a| a.stats.service_lookups),
        ("objectos_plugin_permission_denials_total", "Calls refused for a missing grant.", |a| a.stats.permission_denials),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for a in activity {
            let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {}", label(&a.id), get(a));
        }
    }
    let _ = writeln!(out, "# HELP objectos_plugin_hook_duration_seconds Time spent in lifecycle hooks.\n# TYPE objectos_plugin_hook_duration_seconds summary");
    for a in activity {
        for (hook, s) in &a.stats.hooks {
            let labels = format!("plugin=\"{}\",hook=\"{}\"", label(&a.id), label(hook));
            let _ = writeln!(out, "objectos_plugin_hook_duration_seconds_sum{{{labels}}} {}", s.total_micros as f64 / 1e6);
            let _ = writeln!(out, "objectos_plugin_hook_duration_seconds_count{{{labels}}} {}", s.count);
        }
    }
    let _ = writeln!(out, "# HELP objectos_plugin_hook_failures_total Hooks that failed, panicked or timed out.\n# TYPE objectos_plugin_hook_failures_total counter");
    for a in activity {
        for (hook, s) in &a.stats.hooks {
            let _ = writeln!(out, "objectos_plugin_hook_failures_total{{plugin=\"{}\",hook=\"{}\"}} {}", label(&a.id), label(hook), s.failures);
        }
    }
    let _ = writeln!(out, "# HELP objectos_plugin_state 1 for the plugin's current lifecycle state.\n# TYPE objectos_plugin_state gauge");
    for a in activity {
        for st in [State::Installed, State::Loaded, State::Enabled, State::Disabled, State::Error] {
            let _ = writeln!(out, "objectos_plugin_state{{plugin=\"{}\",state=\"{}\"}} {}", label(&a.id), st, u8::from(a.state == st));
        }
    }
    out
}
