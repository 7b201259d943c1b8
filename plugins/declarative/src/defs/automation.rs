//! An automation file: what starts it (an event, a record change, a schedule), its condition
//! and its actions.

use super::*;

/// What starts an automation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// An event whose topic matches the pattern.
    Event(String),
    /// A record of `object` created or updated.
    Record {
        /// The record type.
        object: String,
        /// `created`, `updated` or both.
        on: Vec<String>,
    },
    /// A cron schedule (through the jobs service).
    Schedule(String),
}

/// An automation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutomationDef {
    /// Name.
    pub name: String,
    /// What starts it.
    pub when: Trigger,
    /// The condition, as written.
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip)]
    pub(crate) condition_expr: Option<Expr>,
    /// What it does.
    #[serde(rename = "do")]
    pub actions: Vec<Action>,
}

impl AutomationDef {
    /// Parse and check `automations/<name>.*`.
    pub fn parse(v: &Value, file: &str, expected_name: &str) -> Result<AutomationDef, Vec<Problem>> {
        Self::parse_as(v, file, expected_name, Mode::Check)
    }

    /// Like [`Self::parse`], as strictly as `mode` says.
    pub fn parse_as(v: &Value, file: &str, expected_name: &str, mode: Mode) -> Result<AutomationDef, Vec<Problem>> {
        let mut r = Report::with(file, mode);
        let def = automation_def(&mut r, v, expected_name);
        r.finish(def)
    }

    /// Does the condition hold for `ctx` (no condition: yes)?
    pub fn holds(&self, ctx: &Value) -> Result<bool, crate::expr::ExprError> {
        self.condition_expr.as_ref().map_or(Ok(true), |e| e.test(ctx))
    }
}

pub(crate) fn automation_def(r: &mut Report, v: &Value, expected_name: &str) -> Option<AutomationDef> {
    let m = r.object("$", Some(v), keys::AUTOMATION, true)?;
    r.label("$.label", m.get("label"));
    let name = r.name("$.name", m.get("name"));
    if let Some(n) = &name {
        if n != expected_name {
            r.err("$.name", format!("is `{n}` but the file declares `{expected_name}`"));
        }
    }
    let when = r.object("$.when", m.get("when"), keys::TRIGGERS, true);
    let trigger = when.and_then(|w| {
        if w.len() != 1 {
            r.err("$.when", "needs exactly one of event, record or schedule");
            return None;
        }
        if let Some(t) = w.get("event") {
            let t = r.string("$.when.event", Some(t), true)?;
            if t.parse::<objectos_kernel::model::permission::Pattern>().is_err() || t.starts_with("kernel") {
                r.err("$.when.event", format!("`{t}` is not a topic pattern (dot-separated names, `*` for one segment, a trailing `**`)"));
                return None;
            }
            return Some(Trigger::Event(t));
        }
        if let Some(rec) = w.get("record") {
            let o = r.object("$.when.record", Some(rec), keys::RECORD_TRIGGER, true)?;
            let object = r.name("$.when.record.object", o.get("object"))?;
            let on: Vec<String> = match o.get("on") {
                None | Some(Value::Null) => vec!["created".into(), "updated".into()],
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => {
                    if !a.iter().all(Value::is_string) {
                        r.lint("$.when.record.on", "lists something that is not created or updated");
                    }
                    a.iter().filter_map(|x| x.as_str().map(String::from)).collect()
                }
                Some(_) => Vec::new(),
            };
            if on.is_empty() || on.iter().any(|x| !keys::RECORD_CHANGES.contains(&x.as_str())) {
                r.err("$.when.record.on", "must be created, updated or both");
                return None;
            }
            return Some(Trigger::Record { object, on });
        }
        let s = r.string("$.when.schedule", w.get("schedule"), true)?;
        Some(Trigger::Schedule(s))
    });
    let condition_expr = r.expr("$.if", m.get("if"));
    let acts = actions(r, "$.do", m.get("do"));
    match m.get("do") {
        None => r.err("$.do", "needs at least one action"),
        Some(Value::Null) => r.lint("$.do", "needs at least one action"),
        Some(Value::Array(a)) if a.is_empty() => r.lint("$.do", "needs at least one action"),
        Some(_) => {}
    }
    Some(AutomationDef { name: name?, when: trigger?, condition: m.get("if").and_then(Value::as_str).map(String::from), condition_expr, actions: acts })
}
