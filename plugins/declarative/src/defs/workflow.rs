//! A workflow file: states, transitions with guards, and what entering and leaving them does.

use super::*;

/// A transition out of a state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// The event that fires it.
    pub event: String,
    /// The state it leads to.
    pub to: String,
    /// A condition over the record's fields, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    #[serde(skip)]
    pub(crate) guard_expr: Option<Expr>,
}

/// A state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateDef {
    /// Name.
    pub name: String,
    /// Run on entering.
    pub entry: Vec<Action>,
    /// Run on leaving.
    pub exit: Vec<Action>,
    /// Ways out.
    pub transitions: Vec<Transition>,
}

/// A state machine over one field of a record type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowDef {
    /// Name.
    pub name: String,
    /// The record type.
    pub object: String,
    /// The field holding the state.
    pub field: String,
    /// The state of new records.
    pub initial: String,
    /// States, in file order.
    pub states: Vec<StateDef>,
}

impl WorkflowDef {
    /// Parse and check `workflows/<name>.*` (the object is checked by [`check_package`]).
    pub fn parse(v: &Value, file: &str, expected_name: &str) -> Result<WorkflowDef, Vec<Problem>> {
        Self::parse_as(v, file, expected_name, Mode::Check)
    }

    /// Like [`Self::parse`], as strictly as `mode` says.
    pub fn parse_as(v: &Value, file: &str, expected_name: &str, mode: Mode) -> Result<WorkflowDef, Vec<Problem>> {
        let mut r = Report::with(file, mode);
        let def = workflow_def(&mut r, v, expected_name);
        r.finish(def)
    }

    /// A state by name.
    pub fn state(&self, name: &str) -> Option<&StateDef> {
        self.states.iter().find(|s| s.name == name)
    }
}

pub(crate) fn workflow_def(r: &mut Report, v: &Value, expected_name: &str) -> Option<WorkflowDef> {
    let m = r.object("$", Some(v), keys::WORKFLOW, true)?;
    r.label("$.label", m.get("label"));
    let name = r.name("$.name", m.get("name"));
    if let Some(n) = &name {
        if n != expected_name {
            r.err("$.name", format!("is `{n}` but the file declares `{expected_name}`"));
        }
    }
    let object = r.name("$.object", m.get("object"));
    let field = r.name("$.field", m.get("field"));
    let initial = r.name("$.initial", m.get("initial"));
    let states_v = match m.get("states") {
        Some(Value::Object(s)) if !s.is_empty() => s,
        Some(Value::Object(_)) | None | Some(Value::Null) => {
            r.err("$.states", "needs at least one state");
            return None;
        }
        Some(other) => {
            r.err("$.states", format!("must be a mapping of state names, not {}", type_name(other)));
            return None;
        }
    };
    if states_v.len() > MAX_STATES {
        r.err("$.states", format!("has {} states; a workflow has at most {MAX_STATES}", states_v.len()));
        return None;
    }
    let mut states = Vec::new();
    for (sname, sv) in states_v {
        let path = format!("$.states.{sname}");
        if !is_name(sname) {
            r.err(&path, format!("`{sname}` {NAME_RULE}"));
            continue;
        }
        let empty = Value::Object(Map::new());
        let sv = if sv.is_null() { &empty } else { sv };
        let Some(s) = r.object(&path, Some(sv), keys::STATE, true) else { continue };
        r.label(&format!("{path}.label"), s.get("label"));
        let is_final = r.flag(&format!("{path}.final"), s.get("final"), Mode::Load);
        if is_final && s.get("transitions").and_then(Value::as_array).is_some_and(|t| !t.is_empty()) {
            r.lint(&format!("{path}.final"), format!("{sname} is final but has transitions out"));
        }
        let entry = actions(r, &format!("{path}.entry"), s.get("entry"));
        let exit = actions(r, &format!("{path}.exit"), s.get("exit"));
        let mut transitions = Vec::new();
        let mut seen = BTreeSet::new();
        match s.get("transitions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.len() > MAX_TRANSITIONS => {
                r.err(&format!("{path}.transitions"), format!("has {} transitions; a state has at most {MAX_TRANSITIONS}", items.len()));
            }
            Some(Value::Array(items)) => {
                for (i, t) in items.iter().enumerate() {
                    let tp = format!("{path}.transitions[{i}]");
                    let Some(t) = r.object(&tp, Some(t), keys::TRANSITION, true) else { continue };
                    let event = r.name(&format!("{tp}.event"), t.get("event"));
                    let to = r.name(&format!("{tp}.to"), t.get("to"));
                    let guard_expr = r.expr(&format!("{tp}.guard"), t.get("guard"));
                    if let Some(e) = &event {
                        if !seen.insert(e.clone()) {
                            r.err(&format!("{tp}.event"), format!("`{e}` already leaves {sname}; one event leads to one state"));
                        }
                    }
                    if let (Some(event), Some(to)) = (event, to) {
                        transitions.push(Transition { event, to, guard: t.get("guard").and_then(Value::as_str).map(String::from), guard_expr });
                    }
                }
            }
            Some(other) => r.err(&format!("{path}.transitions"), format!("must be a list of {{event, to, guard}}, not {}", type_name(other))),
        }
        states.push(StateDef { name: sname.clone(), entry, exit, transitions });
    }
    let names: BTreeSet<&str> = states.iter().map(|s| s.name.as_str()).collect();
    if let Some(i) = &initial {
        if !names.contains(i.as_str()) {
            r.err("$.initial", format!("`{i}` is not one of the states ({}){}", names.iter().copied().collect::<Vec<_>>().join(", "), objectos_kernel::util::did_you_mean(i, names.iter().copied())));
        }
    }
    for s in &states {
        for (i, t) in s.transitions.iter().enumerate() {
            if !names.contains(t.to.as_str()) {
                r.err(&format!("$.states.{}.transitions[{i}].to", s.name), format!("`{}` is not a state of this workflow{}", t.to, objectos_kernel::util::did_you_mean(&t.to, names.iter().copied())));
            }
        }
    }
    if let Some(i) = &initial {
        if names.contains(i.as_str()) {
            // One walk over the states and their transitions: linear in the workflow's size.
            let by_name: std::collections::HashMap<&str, &StateDef> = states.iter().map(|s| (s.name.as_str(), s)).collect();
            let mut reached: BTreeSet<&str> = BTreeSet::from([i.as_str()]);
            let mut queue = VecDeque::from([i.as_str()]);
            while let Some(cur) = queue.pop_front() {
                for t in by_name.get(cur).into_iter().flat_map(|s| &s.transitions) {
                    if names.contains(t.to.as_str()) && reached.insert(t.to.as_str()) {
                        queue.push_back(t.to.as_str());
                    }
                }
            }
            for s in &states {
                if !reached.contains(s.name.as_str()) {
                    r.err(&format!("$.states.{}", s.name), format!("cannot be reached from the initial state `{i}`"));
                }
            }
        }
    }
    Some(WorkflowDef { name: name?, object: object?, field: field?, initial: initial?, states })
}
