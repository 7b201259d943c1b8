//! An event on its way to the durable subscriptions it matches (see the `deliveries` table).

/// An event to queue for every durable subscription it matches, with the change that caused
/// it when there is one (in the same transaction).
#[derive(Debug, Clone, Copy)]
pub struct Announcement<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The payload, as JSON text.
    pub payload: &'a str,
    /// The emitting plugin.
    pub source: &'a str,
    /// Its depth in a chain of events.
    pub depth: u32,
    /// When (ms).
    pub now: i64,
}

/// What queuing an event did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Deliveries queued.
    pub queued: usize,
    /// Subscriptions (plugin, name) that matched but had too many deliveries waiting already.
    pub full: Vec<(String, String)>,
}
