//! Quotas: what one package may take of what every plugin shares.
//!
//! They bound packages (third-party code, declarative today, sandboxed tomorrow); built-in
//! plugins are trusted native code and are not metered. An admin changes the defaults in the
//! console or with `objectos settings quotas`; the kernel and the engines read them on every
//! use, so a change applies at once.

use serde::{Deserialize, Serialize};

/// Per-package limits on shared resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Quotas {
    /// Bytes of storage: the package's own keys, and the records of its types.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub storage_bytes: u64,
    /// Jobs waiting or running for the package at once.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub queued_jobs: u64,
    /// Events the package emits per second.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub events_per_second: u64,
    /// Notifications the package sends per minute.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub notifications_per_minute: u64,
    /// The package's items kept in the console's notification centre (older ones of its own
    /// make room; an admin's and the built-ins' are never pushed out by it).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub inbox_items: u64,
    /// Lines the package writes to its log per minute (beyond, one line says how many were
    /// dropped).
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub log_lines_per_minute: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            storage_bytes: 50 << 20,
            queued_jobs: 1_000,
            events_per_second: 200,
            notifications_per_minute: 30,
            inbox_items: 200,
            log_lines_per_minute: 1_200,
        }
    }
}

impl Quotas {
    /// Each quota with its name, as the settings show them.
    pub fn entries(&self) -> [(&'static str, u64); 6] {
        [
            ("storageBytes", self.storage_bytes),
            ("queuedJobs", self.queued_jobs),
            ("eventsPerSecond", self.events_per_second),
            ("notificationsPerMinute", self.notifications_per_minute),
            ("inboxItems", self.inbox_items),
            ("logLinesPerMinute", self.log_lines_per_minute),
        ]
    }

    /// The quotas as stored in the `quotas` setting: the defaults for what it does not say (a
    /// name another version added is ignored, a missing one takes its default), and for all of
    /// it when it cannot be read.
    pub fn from_setting(text: Option<&str>) -> Quotas {
        text.and_then(|t| serde_json::from_str::<Quotas>(t).ok()).filter(|q| q.check().is_ok()).unwrap_or_default()
    }

    /// Why these quotas cannot be used (each must be at least 1), if so.
    pub fn check(&self) -> Result<(), String> {
        match self.entries().iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(format!("quota `{name}` must be at least 1")),
            None => Ok(()),
        }
    }
}

/// A fixed-window counter: at most `limit` uses per window of `window_ms`.
#[derive(Debug, Default)]
pub struct Window {
    /// Start of the current window (ms) and the uses counted in it.
    state: std::sync::Mutex<(i64, u64, u64)>,
}

/// What a use of a [`Window`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Within the limit.
    Allowed,
    /// Over it; `first` is true for the first refusal of this window (audit that one).
    Refused { first: bool },
}

impl Window {
    /// Count one use at `now_ms`. Returns the outcome and, when a window closed with refusals
    /// in it, how many were refused then.
    pub fn hit(&self, now_ms: i64, window_ms: i64, limit: u64) -> (Use, Option<u64>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = None;
        if now_ms - s.0 >= window_ms {
            if s.2 > 0 {
                closed = Some(s.2);
            }
            // A window starts at its first use, not on the clock's minute.
            *s = (now_ms, 0, 0);
        }
        if s.1 < limit {
            s.1 += 1;
            (Use::Allowed, closed)
        } else {
            s.2 += 1;
            (Use::Refused { first: s.2 == 1 }, closed)
        }
    }
}

// ---- storage: one budget per owner ------------------------------------------------------

/// Whom a write is charged to, and the most its owner may hold then (`None`: not limited).
/// A plugin's own write is charged to itself; an engine that keeps data for a package (its
/// records) charges the package, so one budget holds both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge<'a> {
    /// The plugin the bytes count for.
    pub owner: &'a str,
    /// The most it may hold, in bytes.
    pub limit: Option<u64>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written (or deleted).
    Done,
    /// Not written: the value was not the one expected (or there was nothing to delete).
    Stale,
    /// Not written: its owner would hold more than its limit; it holds `used` bytes now.
    OverLimit {
        /// Bytes charged to the owner now.
        used: u64,
    },
}

/// Whether a write that frees `freed` bytes of its owner's and adds `adds` takes an owner
/// holding `used` past `limit` (a write that shrinks what it holds is always let through).
pub fn over_budget(used: u64, freed: u64, adds: u64, limit: u64) -> bool {
    let after = used.saturating_sub(freed) + adds;
    after > limit && after > used
}

/// Why a write past `who`'s storage budget was refused.
pub fn budget_reason(who: &str, used: u64, limit: u64) -> String {
    format!("{who} uses {used} of its {limit} bytes of storage (its own keys and its records together)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_up_to_its_limit_and_starts_again() {
        let w = Window::default();
        assert_eq!(w.hit(1_000, 1_000, 2).0, Use::Allowed);
        assert_eq!(w.hit(1_100, 1_000, 2).0, Use::Allowed);
        assert_eq!(w.hit(1_200, 1_000, 2).0, Use::Refused { first: true });
        assert_eq!(w.hit(1_300, 1_000, 2).0, Use::Refused { first: false });
        assert_eq!(w.hit(2_000, 1_000, 2), (Use::Allowed, Some(2)), "a new window, reporting the refusals of the last");
    }

    #[test]
    fn quotas_read_partially_and_refuse_zero() {
        let q: Quotas = serde_json::from_str(r#"{"queuedJobs": 5}"#).unwrap();
        assert_eq!((q.queued_jobs, q.events_per_second), (5, Quotas::default().events_per_second));
        assert!(Quotas { inbox_items: 0, ..q }.check().unwrap_err().contains("inboxItems"));
        let later: Quotas = serde_json::from_str(r#"{"queuedJobs": 7, "gpuSeconds": 5}"#).unwrap();
        assert_eq!(later.queued_jobs, 7, "a name from another version is ignored, the rest kept");
        assert_eq!(Quotas::from_setting(Some("not json")), Quotas::default());
    }
}
