//! The one quota meter: what each package takes of what every plugin shares, counted in one
//! place per package. The kernel charges it (events, log lines, storage) and so do the engines
//! that keep things for packages (notifications, queued jobs, inbox items), through the
//! package's context; a built-in plugin is not metered. The limits are the admin's quotas,
//! read at every charge, so a change applies at once.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::model::quota::{Quotas, Use, Window};
use crate::util::now_ms;

/// A quota on how often a package does something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// `eventsPerSecond`: events it emits, and those engines emit because of it.
    EventsPerSecond,
    /// `notificationsPerMinute`: notifications it sends.
    NotificationsPerMinute,
    /// `logLinesPerMinute`: lines it writes to its log.
    LogLinesPerMinute,
}

impl Rate {
    fn index(self) -> usize {
        self as usize
    }

    fn window_ms(self) -> i64 {
        match self {
            Rate::EventsPerSecond => 1_000,
            Rate::NotificationsPerMinute | Rate::LogLinesPerMinute => 60_000,
        }
    }

    /// Its limit in `q`.
    pub fn limit(self, q: &Quotas) -> u64 {
        match self {
            Rate::EventsPerSecond => q.events_per_second,
            Rate::NotificationsPerMinute => q.notifications_per_minute,
            Rate::LogLinesPerMinute => q.log_lines_per_minute,
        }
    }

    /// Its limit in words: "200 events a second".
    pub fn describe(self, limit: u64) -> String {
        match self {
            Rate::EventsPerSecond => format!("{limit} events a second"),
            Rate::NotificationsPerMinute => format!("{limit} notifications a minute"),
            Rate::LogLinesPerMinute => format!("{limit} lines a minute"),
        }
    }
}

/// A quota on how much a package holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// `queuedJobs`: jobs waiting or running for it.
    QueuedJobs,
    /// `inboxItems`: its notifications kept in the inbox.
    InboxItems,
    /// `storageBytes`: its own keys and the records of its types.
    StorageBytes,
}

impl Held {
    /// Its limit in `q`.
    pub fn limit(self, q: &Quotas) -> u64 {
        match self {
            Held::QueuedJobs => q.queued_jobs,
            Held::InboxItems => q.inbox_items,
            Held::StorageBytes => q.storage_bytes,
        }
    }
}

/// What a charge of a rate found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    /// Allowed, or refused (the first refusal of a window is the one to audit).
    pub outcome: Use,
    /// The limit it was counted against.
    pub limit: u64,
    /// When a window closed with refusals in it: how many.
    pub refused_before: Option<u64>,
}

/// One plugin's meter.
pub struct Meter {
    quotas: Arc<ArcSwap<Quotas>>,
    metered: bool,
    windows: [Window; 3],
}

impl Meter {
    /// The meter of a plugin that is `metered` (a package), under the admin's `quotas`.
    pub(crate) fn new(quotas: Arc<ArcSwap<Quotas>>, metered: bool) -> Meter {
        Meter { quotas, metered, windows: Default::default() }
    }

    /// Whether this plugin is metered (a package; a built-in is not).
    pub fn metered(&self) -> bool {
        self.metered
    }

    /// The quotas packages run under now.
    pub fn quotas(&self) -> Quotas {
        **self.quotas.load()
    }

    /// Count one use of `rate`: always allowed for a plugin that is not metered.
    pub fn hit(&self, rate: Rate) -> Charged {
        let limit = rate.limit(&self.quotas.load());
        if !self.metered {
            return Charged { outcome: Use::Allowed, limit, refused_before: None };
        }
        let (outcome, refused_before) = self.windows[rate.index()].hit(now_ms(), rate.window_ms(), limit);
        Charged { outcome, limit, refused_before }
    }

    /// The most of `held` this plugin may hold (`None`: not metered).
    pub fn limit(&self, held: Held) -> Option<u64> {
        self.metered.then(|| held.limit(&self.quotas.load()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_is_counted_per_rate_and_a_builtin_is_not() {
        let quotas = Arc::new(ArcSwap::from_pointee(Quotas { events_per_second: 2, notifications_per_minute: 1, ..Quotas::default() }));
        let package = Meter::new(quotas.clone(), true);
        let outcomes: Vec<Use> = (0..3).map(|_| package.hit(Rate::EventsPerSecond).outcome).collect();
        assert_eq!(outcomes, [Use::Allowed, Use::Allowed, Use::Refused { first: true }]);
        // Each rate has its own window.
        assert_eq!(package.hit(Rate::NotificationsPerMinute).outcome, Use::Allowed);
        assert_eq!(package.hit(Rate::NotificationsPerMinute).outcome, Use::Refused { first: true });
        assert_eq!(package.limit(Held::InboxItems), Some(Quotas::default().inbox_items));
        // The admin's change applies at the next charge.
        quotas.store(Arc::new(Quotas { inbox_items: 3, ..Quotas::default() }));
        assert_eq!(package.limit(Held::InboxItems), Some(3));
        let builtin = Meter::new(quotas, false);
        assert!((0..1_000).all(|_| builtin.hit(Rate::EventsPerSecond).outcome == Use::Allowed));
        assert_eq!(builtin.limit(Held::StorageBytes), None);
    }
}
