//! What is sent: a notice as a plugin asks for it, the message channels receive, templates,
//! channels, and the records of deliveries and the inbox.

use super::*;

/// How much a notification matters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// For information.
    #[default]
    Info,
    /// Something went well.
    Success,
    /// Needs attention.
    Warning,
    /// Something failed.
    Error,
}

/// A rendered notification, as channels receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Unique id (sorts by creation).
    pub id: String,
    /// The sending plugin.
    pub plugin: String,
    /// One line.
    pub title: String,
    /// Plain text.
    pub body: String,
    /// How much it matters.
    pub level: Level,
    /// Who it is for, when the channel addresses someone (an email address, a user name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Extra data for channels (a link, a record id).
    #[serde(default)]
    pub data: Value,
    /// Created (ms).
    pub created_at: i64,
    /// Sent by a package (decided at send): in the inbox it keeps at most its `inboxItems`
    /// quota and is the first to make room, so an admin's notices are never pushed out by it.
    #[serde(default)]
    pub from_package: bool,
}

/// What a plugin asks to send.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// Channel names; empty means `in-app`.
    #[serde(default)]
    pub channels: Vec<String>,
    /// A template of the sender's, rendered with `vars`.
    #[serde(default)]
    pub template: Option<String>,
    /// The title, when no template is used (placeholders are rendered too).
    #[serde(default)]
    pub title: Option<String>,
    /// The body, when no template is used.
    #[serde(default)]
    pub body: Option<String>,
    /// Values for `{{placeholders}}`.
    #[serde(default)]
    pub vars: Value,
    /// How much it matters.
    #[serde(default)]
    pub level: Level,
    /// Who it is for.
    #[serde(default)]
    pub recipient: Option<String>,
    /// Extra data for channels.
    #[serde(default)]
    pub data: Value,
}

impl Notice {
    /// A notice with this title and body for the in-app channel.
    pub fn new(title: &str, body: &str) -> Self {
        Notice { title: Some(title.into()), body: Some(body.into()), ..Default::default() }
    }
    /// Render the caller's template `name` with `vars`.
    pub fn template(name: &str, vars: Value) -> Self {
        Notice { template: Some(name.into()), vars, ..Default::default() }
    }
    /// Send through these channels.
    pub fn via(mut self, channels: &[&str]) -> Self {
        self.channels = channels.iter().map(|c| c.to_string()).collect();
        self
    }
    /// With this level.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }
}

/// A title and body with `{{variable}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The title.
    pub title: String,
    /// The body.
    pub body: String,
}

/// Replace every `{{ path }}` in `text` with the value at `path` in `vars` (dotted, object
/// keys or array indexes). Strings are inserted as they are, other values as JSON.
pub fn render(text: &str, vars: &Value) -> std::result::Result<String, String> {
    objectos_kernel::model::text::render_placeholders(text, |path| objectos_kernel::model::text::lookup_path(vars, path).ok_or_else(|| format!("variable `{path}` is not given")))
}

/// A way to deliver messages. Implement it to add a channel (email, chat, SMS...).
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// Deliver one message; an error is retried through the jobs service.
    async fn deliver(&self, message: &Message) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// The channel took it.
    Delivered,
    /// It failed; a retry is queued.
    Retrying,
    /// It failed for good.
    Failed,
}

/// One channel's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Last change (ms).
    pub at: i64,
}

/// A sent notification and its deliveries, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    /// The message.
    pub message: Message,
    /// Per channel.
    pub deliveries: BTreeMap<String, Delivery>,
}

/// An in-app notification in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxItem {
    /// The message.
    #[serde(flatten)]
    pub message: Message,
    /// Read by the admin.
    pub read: bool,
}
