//! The grammar of the declarative files, as types: the JSON Schemas editors use
//! (`objectos schema object|workflow|automation`, `docs/schema/`) are generated from these.
//! [`crate::defs`] reads the same grammar by hand, to report every problem with its place and
//! the likely name. It takes its keys and values from [`keys`], and tests hold the generated
//! schemas to the same ones and give both the same inputs (each sample, and files that both
//! must refuse or both accept); the parser checks more than a schema can say (names that
//! exist, states that can be reached, `min` not above `max`).
//!
//! These types are never deserialized into: they exist to be described.

#![allow(dead_code)] // fields are read by the schema generator only

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde_json::Value;

/// The keys and values each part of a file may have, which the parser checks against.
pub mod keys {
    /// A record type file.
    pub const OBJECT: &[&str] = &["$schema", "name", "label", "fields"];
    /// Keys every field may have.
    pub const FIELD: &[&str] = &["type", "label", "required", "default"];
    /// The field types, each with the keys it adds.
    pub const FIELD_TYPES: &[(&str, &[&str])] = &[("text", &["maxLength"]), ("number", &["min", "max"]), ("boolean", &[]), ("date", &[]), ("enum", &["values"]), ("reference", &["object"])];
    /// Names the data service keeps; no field may take them.
    pub const RESERVED_FIELDS: &[&str] = &["id", "created_at", "updated_at"];
    /// A workflow file.
    pub const WORKFLOW: &[&str] = &["$schema", "name", "label", "object", "field", "initial", "states"];
    /// A workflow's state.
    pub const STATE: &[&str] = &["label", "entry", "exit", "transitions", "final"];
    /// A transition.
    pub const TRANSITION: &[&str] = &["event", "to", "guard"];
    /// An automation file.
    pub const AUTOMATION: &[&str] = &["$schema", "name", "label", "when", "if", "do"];
    /// What starts an automation (exactly one).
    pub const TRIGGERS: &[&str] = &["event", "record", "schedule"];
    /// A record trigger.
    pub const RECORD_TRIGGER: &[&str] = &["object", "on"];
    /// What a record trigger fires on.
    pub const RECORD_CHANGES: &[&str] = &["created", "updated"];
    /// The actions (a mapping with one of these keys).
    pub const ACTIONS: &[&str] = &["set", "emit", "notify", "enqueue"];
    /// An `emit` action written out.
    pub const EMIT: &[&str] = &["topic", "data"];
    /// A `notify` action.
    pub const NOTIFY: &[&str] = &["title", "body", "level", "channels"];
    /// A notification's levels.
    pub const LEVELS: &[&str] = &["info", "success", "warning", "error"];
    /// An `enqueue` action.
    pub const ENQUEUE: &[&str] = &["emit", "delay"];
}

/// The schema of each file kind, by the name `objectos schema` knows it by.
pub const NAMES: [&str; 3] = ["object", "workflow", "automation"];

/// The JSON Schema (draft 07) of the file kind `name` (see [`NAMES`]). An optional key may be
/// `null`, as YAML reads `label:` with nothing after it, and the parser reads it as absent.
pub fn schema(name: &str) -> Option<Value> {
    fn of<T: JsonSchema>() -> Value {
        schemars::generate::SchemaSettings::draft07().into_generator().into_root_schema_for::<T>().to_value()
    }
    match name {
        "object" => Some(of::<ObjectFile>()),
        "workflow" => Some(of::<WorkflowFile>()),
        "automation" => Some(of::<AutomationFile>()),
        _ => None,
    }
}

const NAME: &str = "^[a-z][a-z0-9_-]{0,63}$";
const TOPIC: &str = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$";

/// A name: 1-64 characters of a-z, 0-9, `_` or `-`, starting with a letter.
#[derive(JsonSchema)]
#[schemars(extend("pattern" = NAME))]
struct Name(String);

/// A topic an action may emit: dot-separated names of letters, digits, `_` or `-`, at most
/// 256 characters; not `kernel.*` or `plugin.*`, which only the kernel announces.
#[derive(JsonSchema)]
#[schemars(extend("pattern" = TOPIC, "maxLength" = 256, "not" = { "pattern": "^(kernel|plugin)\\." }))]
struct Topic(String);

/// An expression over the record's fields (in guards) or the context (`record`, `payload`,
/// `event`, `changed` in automations): comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`),
/// `in`, `and`, `or`, `not`, parentheses; texts in single or double quotes.
#[derive(JsonSchema)]
#[schemars(extend("minLength" = 1))]
struct Expression(String);

/// A text with `{{name}}` placeholders, filled from the context (`{{record.title}}`).
#[derive(JsonSchema)]
#[schemars(extend("minLength" = 1))]
struct Template(String);

/// A text shown to people (not empty).
#[derive(JsonSchema)]
#[schemars(extend("minLength" = 1))]
struct Text(String);

/// A notification channel's name: 1-64 characters of a-z, 0-9, `.`, `_` or `-`.
#[derive(JsonSchema)]
#[schemars(extend("pattern" = "^[a-z0-9._-]{1,64}$"))]
struct Channel(String);

// ---- objects ---------------------------------------------------------------------------------

/// A record type: `objects/<name>.yml` (or `.yaml`, `.json`).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ObjectOS record type")]
struct ObjectFile {
    /// Where this schema is, for editors (JSON files).
    #[serde(rename = "$schema")]
    schema: Option<String>,
    /// The type's name, as listed in the manifest's `provides.objects`; its full name is
    /// `<package id>/<name>`.
    name: Name,
    /// Shown to people (default: the name).
    label: Option<Text>,
    /// The fields, by name, in the order forms show them: at most 200, none named `id`,
    /// `created_at` or `updated_at` (the data service keeps those).
    #[schemars(extend("minProperties" = 1, "maxProperties" = 200, "propertyNames" = { "pattern": NAME, "not": { "enum": ["id", "created_at", "updated_at"] } }))]
    fields: BTreeMap<String, Field>,
}

/// A field, by its `type`.
#[derive(JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Field {
    /// Text.
    Text {
        /// Shown to people (default: the name, capitalized).
        label: Option<Text>,
        /// Must be set on create.
        required: Option<bool>,
        /// Set on create when not given.
        default: Option<String>,
        /// The longest value, in characters (default 10,000).
        #[serde(rename = "maxLength")]
        #[schemars(range(min = 1))]
        max_length: Option<u64>,
    },
    /// A number.
    Number {
        /// Shown to people (default: the name, capitalized).
        label: Option<Text>,
        /// Must be set on create.
        required: Option<bool>,
        /// Set on create when not given.
        default: Option<f64>,
        /// The smallest value.
        min: Option<f64>,
        /// The largest value.
        max: Option<f64>,
    },
    /// `true` or `false`.
    Boolean {
        /// Shown to people (default: the name, capitalized).
        label: Option<Text>,
        /// Must be set on create.
        required: Option<bool>,
        /// Set on create when not given.
        default: Option<bool>,
    },
    /// A calendar date, `YYYY-MM-DD`.
    Date {
        /// Shown to people (default: the name, capitalized).
        label: Option<Text>,
        /// Must be set on create.
        required: Option<bool>,
        /// Set on create when not given (`YYYY-MM-DD`).
        #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
        default: Option<String>,
    },
    /// One of a list of values (a workflow's state field is one).
    Enum {
        /// Shown to people (default: the name, capitalized).
        label: Option<Text>,
        /// Must be set on create.
        required: Option<bool>,
        /// Set on create when not given: one of the values.
        default: Option<String>,
        /// The values, each once (at most 1,000).
        #[schemars(length(min = 1, max = 1000), extend("uniqueItems" = true))]
        values: Vec<String>,
    },
    /// The id of a record of another type.
    Reference {
        /// Shown to people (default: the name, capitalized).
        label: Option<Text>,
        /// Must be set on create.
        required: Option<bool>,
        /// Set on create when not given: a record id.
        default: Option<String>,
        /// The type referred to: one of this package's (`account`), or a required
        /// dependency's by its full name (`com.acme.crm/opportunity`), which needs
        /// `data.<owner>/<type>.read`.
        #[schemars(regex(pattern = r"^([a-z0-9][a-z0-9._-]{0,127}/)?[a-z][a-z0-9_-]{0,63}$"))]
        object: String,
    },
}

// ---- actions ---------------------------------------------------------------------------------

/// An action: a mapping with one key, `set`, `emit`, `notify` or `enqueue`.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Action {
    /// Set fields of the record: `set: { probability: 50 }` (each value checked against its
    /// field).
    Set(#[schemars(extend("minProperties" = 1))] BTreeMap<String, Value>),
    /// Emit an event: `emit: crm.deal.won`, or with extra payload fields
    /// `emit: { topic: crm.deal.won, data: { ... } }`. The payload carries the record (or the
    /// triggering payload) too. The topic must be in `provides.events` and granted by
    /// `events.emit`.
    Emit(Emit),
    /// Send a notification (needs the notification engine and `services.use:notification`).
    Notify(Notify),
    /// Emit an event later, through the jobs service (retried if it fails).
    Enqueue(Enqueue),
}

/// The topic alone, or the topic with extra payload fields.
#[derive(JsonSchema)]
#[serde(untagged)]
enum Emit {
    Topic(Topic),
    Full(EmitFull),
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct EmitFull {
    /// The topic.
    topic: Topic,
    /// Extra payload fields (not `record`, `object` or `payload`, which the engine fills in).
    #[schemars(extend("propertyNames" = { "not": { "enum": ["record", "object", "payload"] } }))]
    data: Option<BTreeMap<String, Value>>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct Notify {
    /// The title, a template (`Won: {{record.title}}`).
    title: Template,
    /// The body, a template.
    body: Option<Template>,
    /// How it is shown (default info).
    level: Option<Level>,
    /// The channels to deliver it on, instead of the console's inbox (`in-app`, the default),
    /// e.g. `[in-app, com.acme.webhook]`.
    channels: Option<Vec<Channel>>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Level {
    Info,
    Success,
    Warning,
    Error,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct Enqueue {
    /// The topic to emit.
    emit: Topic,
    /// How long to wait first (default 0).
    delay: Option<Delay>,
}

/// A duration: a number and a unit, `ms`, `s`, `m`, `h` or `d` (`30s`, `10m`, `2h`, `1d`; no
/// unit means seconds), or a whole number of seconds.
#[derive(JsonSchema)]
#[serde(untagged)]
enum Delay {
    Text(#[schemars(regex(pattern = r"^\s*[0-9]+\s*(ms|s|m|h|d)?\s*$"))] String),
    Seconds(u64),
}

// ---- workflows -------------------------------------------------------------------------------

/// A workflow: `workflows/<name>.yml`, a state machine over one field of a record type.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ObjectOS workflow")]
struct WorkflowFile {
    /// Where this schema is, for editors (JSON files).
    #[serde(rename = "$schema")]
    schema: Option<String>,
    /// The workflow's name, as listed in the manifest's `provides.workflows`.
    name: Name,
    /// Shown to people.
    label: Option<Text>,
    /// The record type: one of this package's.
    object: Name,
    /// The field holding the state: a text field, or an enum field whose values are the
    /// states. Only the workflow's transitions (and the admin) change it.
    field: Name,
    /// The state new records start in.
    initial: Name,
    /// The states, by name (at most 500). Each must be reachable from the initial one.
    #[schemars(extend("minProperties" = 1, "maxProperties" = 500, "propertyNames" = { "pattern": NAME }))]
    states: BTreeMap<String, Option<State>>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct State {
    /// Shown to people.
    label: Option<Text>,
    /// Actions run on entering it.
    entry: Option<Vec<Action>>,
    /// Actions run on leaving it.
    exit: Option<Vec<Action>>,
    /// The ways out (at most 100); one event leads to one state.
    #[schemars(length(max = 100))]
    transitions: Option<Vec<Transition>>,
    /// Marks a state with no way out (a state without transitions is final too).
    #[serde(rename = "final")]
    is_final: Option<bool>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct Transition {
    /// The event that fires it (a transition call, or its button in the console).
    event: Name,
    /// The state it leads to.
    to: Name,
    /// A condition over the record's fields that must hold (`amount > 0`).
    guard: Option<Expression>,
}

// ---- automations -----------------------------------------------------------------------------

/// An automation: `automations/<name>.yml`, what to do when something happens.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ObjectOS automation")]
struct AutomationFile {
    /// Where this schema is, for editors (JSON files).
    #[serde(rename = "$schema")]
    schema: Option<String>,
    /// The automation's name, as listed in the manifest's `provides.automations`.
    name: Name,
    /// Shown to people.
    label: Option<Text>,
    /// What starts it: exactly one of `event`, `record` or `schedule`.
    when: When,
    /// A condition that must hold for it to act.
    #[serde(rename = "if")]
    condition: Option<Expression>,
    /// What it does, in order.
    #[serde(rename = "do")]
    #[schemars(length(min = 1))]
    actions: Vec<Action>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum When {
    /// An event whose topic matches this pattern (dot-separated names, `*` for one segment,
    /// a trailing `**` for any rest); needs `events.subscribe` covering it.
    Event(#[schemars(extend("not" = { "pattern": "^kernel" }))] String),
    /// A record of one of this package's types created or updated.
    Record(RecordTrigger),
    /// A cron schedule (`0 9 * * 1-5`, seconds optional), through the jobs service.
    Schedule(#[schemars(length(min = 1))] String),
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct RecordTrigger {
    /// The record type: one of this package's.
    object: Name,
    /// `created`, `updated` or both (default both).
    on: Option<OnChanges>,
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum OnChanges {
    One(Change),
    Some(#[schemars(length(min = 1))] Vec<Change>),
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Change {
    Created,
    Updated,
}

#[cfg(test)]
mod tests;
