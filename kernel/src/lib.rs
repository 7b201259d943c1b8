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

//! ## Where things are
//!
//! The modules depend on each other in one direction, from data to the host:
//! [`model`] (pure data and rules) ← `db` (the one owner of the database) ← [`runtime`] (bus,
//! registry, log, storage) ← [`context`] (every check a plugin's call goes through) ←
//! [`host`] (the [`Kernel`] handle). [`plugin`] gathers what a plugin author needs, and
//! [`package`] reads untrusted packages from disk.

pub mod context;
mod db;
pub mod error;
pub mod host;
pub mod model;
pub mod notices;
pub mod package;
pub mod plugin;
pub mod runtime;
pub mod util;

pub use error::{KernelError, Result};
pub use host::{Kernel, KernelConfig};
pub use plugin::{HookResult, Plugin, PluginContext};

// Re-exported so plugin crates use the same versions as the kernel.
pub use async_trait::async_trait;
pub use semver;
pub use serde_json;
