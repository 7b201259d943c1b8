//! Log lines as data: severity, a stored line, and the filter for reading them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Diagnostic.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// Every level, least severe first: the one ranking (a filter "at or above" is a suffix).
    pub const ALL: [Level; 5] = [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error];

    /// The levels at or above this one.
    pub fn and_above(self) -> impl Iterator<Item = Level> {
        Level::ALL.into_iter().filter(move |l| *l >= self)
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            other => return Err(format!("unknown log level `{other}` (trace, debug, info, warn, error)")),
        })
    }
}

impl From<&tracing::Level> for Level {
    fn from(l: &tracing::Level) -> Self {
        match *l {
            tracing::Level::TRACE => Level::Trace,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::INFO => Level::Info,
            tracing::Level::WARN => Level::Warn,
            _ => Level::Error,
        }
    }
}

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct LogRecord {
    /// Row id (0 until stored).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub ts: i64,
    /// The plugin (or `kernel`).
    pub plugin: String,
    /// Severity.
    pub level: Level,
    /// The `tracing` target or logger name.
    pub target: String,
    /// The message.
    pub message: String,
    /// Structured fields.
    pub fields: Value,
}

/// Filter for log queries.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this plugin.
    pub plugin: Option<String>,
    /// Only lines at or above this level.
    pub min_level: Option<Level>,
    /// Only lines whose message contains this text (case-insensitive).
    pub search: Option<String>,
    /// Only lines after this id (tailing).
    pub after_id: Option<i64>,
    /// The newest N, returned oldest first.
    pub limit: Option<u32>,
}

