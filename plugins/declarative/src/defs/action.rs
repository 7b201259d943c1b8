//! What automations and workflow states do: set a field, emit, notify, enqueue, each checked
//! where it is written.

use super::*;

/// What a workflow state or an automation does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set fields of the record.
    Set(Map<String, Value>),
    /// Emit an event (payload: the record or the triggering payload, plus `data`).
    Emit {
        /// The topic.
        topic: String,
        /// Extra payload fields.
        data: Map<String, Value>,
    },
    /// Send a notification (title and body are templates over the context).
    Notify {
        /// Title template.
        title: String,
        /// Body template.
        body: String,
        /// info, success, warning or error.
        level: String,
        /// Channels (default in-app).
        channels: Vec<String>,
    },
    /// Emit an event later, through the jobs service (retried if it fails).
    Enqueue {
        /// The topic to emit.
        topic: String,
        /// Delay in milliseconds.
        delay_ms: u64,
    },
}

pub(crate) fn duration_ms(s: &str) -> Option<u64> {
    let (num, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub(crate) fn topic_ok(t: &str) -> bool {
    !t.is_empty() && t.len() <= 256 && t.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

pub(crate) fn actions(r: &mut Report, path: &str, v: Option<&Value>) -> Vec<Action> {
    let items = match v {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            r.err(path, format!("must be a list of actions, not {}", type_name(other)));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(m) = item.as_object().filter(|m| m.len() == 1) else {
            r.err(&p, format!("an action is a mapping with one key: {}", keys::ACTIONS.join(", ")));
            continue;
        };
        let Some((kind, body)) = m.iter().next() else { continue };
        let p = format!("{p}.{kind}");
        match kind.as_str() {
            "set" => match body.as_object() {
                Some(fields) if !fields.is_empty() => out.push(Action::Set(fields.clone())),
                _ => r.err(&p, "lists the fields to set, e.g. `set: { probability: 50 }`"),
            },
            "emit" => {
                let (topic, data) = match body {
                    Value::String(t) => (Some(t.clone()), Map::new()),
                    Value::Object(_) => {
                        let Some(o) = r.keys(&p, body, keys::EMIT) else { continue };
                        let data = match o.get("data") {
                            None | Some(Value::Null) => Map::new(),
                            Some(Value::Object(d)) => d.clone(),
                            Some(other) => {
                                r.lint(&format!("{p}.data"), format!("must be a mapping of payload fields, not {}", type_name(other)));
                                Map::new()
                            }
                        };
                        (r.string(&format!("{p}.topic"), o.get("topic"), true), data)
                    }
                    _ => (None, Map::new()),
                };
                for key in data.keys().filter(|k| RESERVED_EMIT_KEYS.contains(&k.as_str())) {
                    r.err(&format!("{p}.data.{key}"), format!("`{key}` is filled in by the engine (the record and the triggering payload); choose another name"));
                }
                match topic {
                    Some(t) if topic_ok(&t) && !t.starts_with("kernel.") && !t.starts_with("plugin.") => out.push(Action::Emit { topic: t, data }),
                    Some(t) => r.err(&p, format!("`{t}` is not a topic an action may emit (dot-separated names; not kernel.* or plugin.*)")),
                    None if !body.is_object() => r.err(&p, "needs a topic: `emit: crm.deal.won` or `emit: { topic: ..., data: {...} }`"),
                    None => {}
                }
            }
            "notify" => {
                let Some(o) = r.object(&p, Some(body), keys::NOTIFY, true) else { continue };
                let title = r.string(&format!("{p}.title"), o.get("title"), true);
                let text = r.string(&format!("{p}.body"), o.get("body"), false).unwrap_or_default();
                let level = r.string(&format!("{p}.level"), o.get("level"), false).unwrap_or_else(|| "info".into());
                if !keys::LEVELS.contains(&level.as_str()) {
                    r.err(&format!("{p}.level"), format!("`{level}` is not a level; levels: {}{}", keys::LEVELS.join(", "), objectos_kernel::util::did_you_mean(&level, keys::LEVELS.iter().copied())));
                }
                // Kept as written: a name no channel has fails the delivery, as it always did.
                let channels: Vec<String> = o.get("channels").and_then(Value::as_array).map(|a| a.iter().filter_map(|c| c.as_str().map(String::from)).collect()).unwrap_or_default();
                let named = match o.get("channels") {
                    None | Some(Value::Null) => true,
                    Some(Value::Array(a)) => a.iter().all(|c| c.as_str().is_some_and(objectos_notification::is_channel_name)),
                    Some(_) => false,
                };
                if !named {
                    r.lint(&format!("{p}.channels"), "must be a list of channel names (1-64 characters of a-z, 0-9, `.`, `_` or `-`)");
                }
                for (field, t) in [("title", title.as_deref().unwrap_or_default()), ("body", text.as_str())] {
                    if let Err(e) = objectos_kernel::model::text::render_placeholders(t, |_| Ok(String::new())) {
                        r.err(&format!("{p}.{field}"), e);
                    }
                }
                if let Some(title) = title {
                    out.push(Action::Notify { title, body: text, level, channels });
                }
            }
            "enqueue" => {
                let Some(o) = r.object(&p, Some(body), keys::ENQUEUE, true) else { continue };
                let topic = r.string(&format!("{p}.emit"), o.get("emit"), true);
                let delay = match o.get("delay") {
                    None | Some(Value::Null) => Some(0),
                    Some(Value::String(s)) => duration_ms(s),
                    Some(Value::Number(n)) => n.as_u64().and_then(|s| s.checked_mul(1000)),
                    Some(_) => None,
                };
                if delay.is_none() {
                    r.err(&format!("{p}.delay"), "must be a duration like 30s, 10m, 2h or 1d");
                }
                match topic {
                    Some(t) if topic_ok(&t) && !t.starts_with("kernel.") && !t.starts_with("plugin.") => out.push(Action::Enqueue { topic: t, delay_ms: delay.unwrap_or(0) }),
                    Some(t) => r.err(&format!("{p}.emit"), format!("`{t}` is not a topic an action may emit")),
                    None => {}
                }
            }
            other => r.err(&p, format!("`{other}` is not an action; actions: {}{}", keys::ACTIONS.join(", "), objectos_kernel::util::did_you_mean(other, keys::ACTIONS.iter().copied()))),
        }
    }
    out
}
