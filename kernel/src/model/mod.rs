//! The kernel's data model: pure data and rules, no I/O.
//!
//! Manifests and their checks, the permission vocabulary and its matcher, dependency
//! resolution, the lifecycle rules, audit records and their chain, log lines, and the views
//! hosts show. Nothing here touches the database, the clock aside, or plugin code; everything
//! above (`db`, `runtime`, `context`, `host`) builds on it.

pub mod audit;
pub mod id;
pub mod lifecycle;
pub mod log;
pub mod manifest;
pub mod outbox;
pub mod permission;
pub mod problems;
pub mod quota;
pub mod range;
pub mod reach;
pub mod resolve;
pub mod schema;
pub mod text;
pub mod views;
