//! # ObjectOS kernel
//!
//! A minimal core that loads everything else as plugins. Each plugin has a manifest
//! (`plugin.json`), a lifecycle driven by the kernel, and a [`PluginContext`] with a service
//! registry, an event bus, its own storage and its own log. Every context call is checked
//! against the permissions an admin granted; refusals and everything that matters go to a
//! tamper-evident audit trail. State lives in one SQLite database in a data directory.
//!
//! ```no_run
//! use std::sync::Arc;
//! use objectos_kernel::{Kernel, KernelConfig, Plugin, PluginContext, HookResult};
//!
//! struct Hello;
//! #[async_trait::async_trait]
//! impl Plugin for Hello {
//!     async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
//!         ctx.logger().info("hello");
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> objectos_kernel::Result<()> {
//! let kernel = Kernel::open(KernelConfig::new("/tmp/objectos-demo"))?;
//! kernel.register_builtin(r#"{"id":"com.example.hello","name":"Hello","version":"1.0.0"}"#, Arc::new(Hello))?;
//! kernel.start().await?;
//! kernel.enable("com.example.hello", false).await?;
//! # Ok(()) }
//! ```

mod audit;
mod bus;
mod context;
mod error;
mod kernel;
mod kernel_event;
mod lifecycle;
mod logging;
mod manifest;
mod package;
mod permission;
mod plugin;
mod registry;
mod resolve;
mod storage;
mod store;
mod telemetry;
mod text;
mod util;

pub use audit::{to_csv as audit_to_csv, Actor, AuditDetail, AuditQuery, AuditRecord, Verification};
pub use bus::{EmitReport, Event, HandlerError, SubscriptionId};
pub use context::{Events, PluginContext, ServiceHandle, Services, Storage, MAX_KEY_LEN};
pub use error::{KernelError, Result};
pub use kernel::{
    BuiltinPolicy, DependencyStatus, Graph, GraphEdge, GraphNode, GrantRequest, InstallOutcome, Kernel, KernelConfig,
    LastError, PermissionStatus, PluginActivity, PluginInfo, PluginKind, StartReport, StorageKind,
};
pub use kernel_event::KernelEvent;
pub use lifecycle::{Action, Hook, State};
pub use logging::{Level, LogRecord, PluginLogLayer, PluginLogger};
pub use manifest::{validate_id, validate_locale, Engines, MAX_ID_LEN, MAX_MANIFEST_BYTES, Manifest, ManifestErrors, Problem, Provides};
pub use package::{check_package, check_package_with, check_translations, PLURAL_CATEGORIES, MAX_ENTRIES, MAX_FILE_BYTES, MAX_TOTAL_BYTES};
pub use permission::{GrantSet, Pattern, Permission, Risk};
pub use plugin::{DeclarativeRuntime, HookResult, PackageRuntime, Plugin};
pub use registry::ServiceInfo;
pub use resolve::{dependents, kernel_version, resolve, resolve_all, Link, ManifestSet, ResolveError};
pub use storage::{MemoryStorage, StorageBackend};
pub use store::{GrantRow, LogQuery, LOG_RETENTION, SCHEMA_VERSION};
pub use telemetry::{HookStats, PluginStats};
pub use text::{lookup_path, render_placeholders};

// Re-exported so plugin crates use the same versions as the kernel.
pub use async_trait::async_trait;
pub use semver;
pub use serde_json;
