//! The permission vocabulary, topic/name patterns, and compiled grant sets.
//!
//! A permission is `<domain>.<action>[:<target>]`. Targets of `events.*` and `services.*`
//! are [`Pattern`]s over dot-separated names:
//! - a literal segment matches itself;
//! - `*` matches exactly one segment (`user.*` matches `user.created`, not `user.a.b`);
//! - `**` as the last segment matches one or more segments (`user.**` matches `user.a.b`);
//! - the pattern `*` on its own matches every name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much harm a permission can do, for the review screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum Risk {
    /// Touches only the plugin's own data.
    Low,
    /// Reaches other plugins' traffic or services.
    Medium,
    /// Controls other plugins, the network or the file system.
    High,
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        })
    }
}

/// One parsed permission.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `storage.read`: read the plugin's own storage.
    StorageRead,
    /// `storage.write`: write the plugin's own storage.
    StorageWrite,
    /// `events.emit:<pattern>`.
    EventsEmit(Pattern),
    /// `events.subscribe:<pattern>`.
    EventsSubscribe(Pattern),
    /// `services.provide:<pattern>`.
    ServicesProvide(Pattern),
    /// `services.use:<pattern>`.
    ServicesUse(Pattern),
    /// `kernel.manage`: install, enable, disable and remove other plugins.
    KernelManage,
    /// `kernel.inspect`: read every plugin's activity counters and state.
    KernelInspect,
    /// `network.connect:<host[:port]>`: HTTP(S) requests to that host (see
    /// [`super::reach::NetTarget`]); enforced for package code by the sandbox.
    NetworkConnect(String),
    /// `fs.read:<folder>`: read files in an absolute folder (`~/` is the home folder);
    /// enforced for package code by the sandbox.
    FsRead(String),
    /// `fs.write:<folder>`: create, change and delete files in it.
    FsWrite(String),
    /// `data.<object>.read` / `data.<object>.write`: records of a record type (`*`: all),
    /// enforced by the data service for the calling plugin.
    Data {
        /// The record type, or `*`.
        object: String,
        /// Write (create, update, delete) rather than read.
        write: bool,
    },
}

impl Permission {
    /// Risk level shown to the admin.
    pub fn risk(&self) -> Risk {
        match self {
            Permission::StorageRead | Permission::StorageWrite => Risk::Low,
            Permission::EventsEmit(p) | Permission::ServicesProvide(p) => {
                if p.is_broad() { Risk::Medium } else { Risk::Low }
            }
            Permission::EventsSubscribe(p) | Permission::ServicesUse(p) => {
                if p.is_broad() { Risk::High } else { Risk::Medium }
            }
            Permission::KernelInspect => Risk::Medium,
            Permission::Data { object, write } => match (object.as_str(), write) {
                ("*", _) => Risk::High,
                (_, true) => Risk::Medium,
                (_, false) => Risk::Low,
            },
            Permission::KernelManage
            | Permission::NetworkConnect(_)
            | Permission::FsRead(_)
            | Permission::FsWrite(_) => Risk::High,
        }
    }

    /// A one-line, plain description for the review screen.
    pub fn describe(&self) -> String {
        match self {
            Permission::StorageRead => "Read the data it has saved".into(),
            Permission::StorageWrite => "Save, change and delete its own data".into(),
            Permission::EventsEmit(p) => format!("Announce events {} to other plugins", p.describe("named")),
            Permission::EventsSubscribe(p) => format!("See events {} sent by any plugin", p.describe("named")),
            Permission::ServicesProvide(p) => format!("Offer services {} to other plugins", p.describe("called")),
            Permission::ServicesUse(p) => format!("Use services {} offered by other plugins", p.describe("called")),
            Permission::KernelManage => "Install, enable, disable and remove other plugins".into(),
            Permission::KernelInspect => "See the state, activity counters and declared files of every plugin".into(),
            Permission::NetworkConnect(h) => match h.parse::<super::reach::NetTarget>() {
                Ok(t) => format!("Send web requests to {}", t.describe()),
                Err(_) => format!("Connect to {h} over the network"),
            },
            Permission::FsRead(p) => format!("Read files in {}", shown_folder(p)),
            Permission::FsWrite(p) => format!("Create, change and delete files in {}", shown_folder(p)),
            Permission::Data { object, write } => {
                let what = match object.split_once('/') {
                    _ if object == "*" => "records of every type, whoever owns them".to_string(),
                    Some((owner, short)) => format!("{owner}'s {short} records"),
                    None => format!("its own {object} records"),
                };
                if *write { format!("Create, change and delete {what}") } else { format!("Read {what}") }
            }
        }
    }

    /// Whether the kernel enforces the permission for a plugin of this kind. Network and file
    /// permissions are enforced for packages (whose code runs in the sandbox, which has no
    /// other way out); a built-in is trusted Rust code in the host process, so for it they
    /// are a declaration, not a bound.
    pub fn enforced(&self, package: bool) -> bool {
        package || !matches!(self, Permission::NetworkConnect(_) | Permission::FsRead(_) | Permission::FsWrite(_))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::StorageRead => f.write_str("storage.read"),
            Permission::StorageWrite => f.write_str("storage.write"),
            Permission::EventsEmit(p) => write!(f, "events.emit:{p}"),
            Permission::EventsSubscribe(p) => write!(f, "events.subscribe:{p}"),
            Permission::ServicesProvide(p) => write!(f, "services.provide:{p}"),
            Permission::ServicesUse(p) => write!(f, "services.use:{p}"),
            Permission::KernelManage => f.write_str("kernel.manage"),
            Permission::KernelInspect => f.write_str("kernel.inspect"),
            Permission::NetworkConnect(t) => write!(f, "network.connect:{t}"),
            Permission::FsRead(t) => write!(f, "fs.read:{t}"),
            Permission::FsWrite(t) => write!(f, "fs.write:{t}"),
            Permission::Data { object, write } => write!(f, "data.{object}.{}", if *write { "write" } else { "read" }),
        }
    }
}

const KNOWN: &str = "storage.read, storage.write, events.emit:<topic>, events.subscribe:<topic>, \
services.provide:<name>, services.use:<name>, kernel.manage, kernel.inspect, \
network.connect:<host[:port]>, fs.read:<path>, fs.write:<path>, data.<type>.read, data.<type>.write \
(a type of its own, or <owner id>/<type>)";

impl FromStr for Permission {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("data.").filter(|_| !s.contains(':')) {
            let (object, write) = match (rest.strip_suffix(".read"), rest.strip_suffix(".write")) {
                (Some(o), _) => (o, false),
                (_, Some(o)) => (o, true),
                _ => return Err(format!("`{s}` must end in `.read` or `.write`, e.g. `data.account.read`")),
            };
            let short_ok = |t: &str| !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
            let ok = match object.split_once('/') {
                _ if object == "*" => true,
                Some((owner, short)) => super::id::validate_id(owner).is_ok() && short_ok(short),
                None => short_ok(object),
            };
            if !ok {
                return Err(format!(
                    "`{object}` in `{s}` is not a record type: its own type's name (letters, digits, `_`, `-`), `<owner id>/<type>` for another package's, or `*`"
                ));
            }
            return Ok(Permission::Data { object: object.to_string(), write });
        }
        let (head, target) = match s.split_once(':') {
            Some((h, t)) => (h, Some(t)),
            None => (s, None),
        };
        let no_target = |p: Permission| match target {
            None => Ok(p),
            Some(_) => Err(format!("`{head}` takes no target (remove `:{}`)", target.unwrap_or_default())),
        };
        let pattern = |what: &str| -> Result<Pattern, String> {
            match target {
                None | Some("") => Err(format!("`{head}` needs a target, e.g. `{head}:{what}`")),
                Some(t) => t.parse::<Pattern>(),
            }
        };
        let free = |what: &str| -> Result<String, String> {
            match target {
                None | Some("") => Err(format!("`{head}` needs a target, e.g. `{head}:{what}`")),
                Some(t) if t.chars().any(|c| c.is_control() || c.is_whitespace()) => {
                    Err(format!("target `{t}` contains spaces or control characters"))
                }
                Some(t) => Ok(t.to_string()),
            }
        };
        match head {
            "storage.read" => no_target(Permission::StorageRead),
            "storage.write" => no_target(Permission::StorageWrite),
            "kernel.manage" => no_target(Permission::KernelManage),
            "kernel.inspect" => no_target(Permission::KernelInspect),
            "events.emit" => pattern("crm.lead.*").map(Permission::EventsEmit),
            "events.subscribe" => pattern("user.*").map(Permission::EventsSubscribe),
            "services.provide" => pattern("cache").map(Permission::ServicesProvide),
            "services.use" => pattern("metrics").map(Permission::ServicesUse),
            "network.connect" => {
                let t = free("api.example.com:443")?;
                t.parse::<super::reach::NetTarget>()?;
                Ok(Permission::NetworkConnect(t))
            }
            "fs.read" => free("/srv/exports").and_then(|t| super::reach::folder_syntax(&t).map(|_| Permission::FsRead(t))),
            "fs.write" => free("/srv/exports").and_then(|t| super::reach::folder_syntax(&t).map(|_| Permission::FsWrite(t))),
            _ => {
                const HEADS: [&str; 11] = ["storage.read", "storage.write", "kernel.manage", "kernel.inspect", "events.emit", "events.subscribe", "services.provide", "services.use", "network.connect", "fs.read", "fs.write"];
                Err(format!("unknown permission `{s}`{}; known: {KNOWN}", crate::util::did_you_mean(head, HEADS)))
            }
        }
    }
}

/// A grant's folder as the admin is shown it: absolute, with `~` expanded.
fn shown_folder(raw: &str) -> String {
    super::reach::folder(raw).map(|p| p.display().to_string()).unwrap_or_else(|_| raw.to_string())
}

impl schemars::JsonSchema for Permission {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Permission".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": format!("A permission: {KNOWN}"),
            "pattern": "^(storage\\.(read|write)|kernel\\.(manage|inspect)|events\\.(emit|subscribe):.+|services\\.(provide|use):.+|network\\.connect:.+|fs\\.(read|write):.+|data\\..+\\.(read|write))$",
            "examples": ["storage.read", "services.use:data", "data.ticket.write", "events.emit:tickets.*", "network.connect:api.github.com"],
        })
    }
}

impl Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Seg {
    Lit(Box<str>),
    One,
    Rest,
}

/// A compiled topic or service-name pattern (see the module docs for the syntax).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    text: Box<str>,
    /// Empty means "everything" (the lone `*`).
    segs: Box<[Seg]>,
}

fn valid_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(Pattern { text: s.into(), segs: Box::new([]) });
        }
        if s.is_empty() {
            return Err("a pattern cannot be empty".into());
        }
        if s.len() > 256 {
            return Err("a pattern can be at most 256 characters".into());
        }
        let parts: Vec<&str> = s.split('.').collect();
        let mut segs = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let seg = match *part {
                "" => return Err(format!("`{s}` has an empty segment (two dots, or a dot at an end)")),
                "*" => Seg::One,
                "**" if i + 1 == parts.len() => Seg::Rest,
                "**" => return Err(format!("`{s}`: `**` may only be the last segment")),
                lit if lit.chars().all(valid_segment_char) => Seg::Lit(lit.into()),
                lit => {
                    return Err(format!(
                        "`{s}`: segment `{lit}` may only hold letters, digits, `_`, `-`, or be `*`/`**`"
                    ))
                }
            };
            segs.push(seg);
        }
        Ok(Pattern { text: s.into(), segs: segs.into() })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Pattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for the lone `*`, which matches every name.
    pub fn is_all(&self) -> bool {
        self.segs.is_empty()
    }

    /// True when the pattern has no wildcard.
    pub fn is_literal(&self) -> bool {
        !self.segs.is_empty() && self.segs.iter().all(|s| matches!(s, Seg::Lit(_)))
    }

    fn is_broad(&self) -> bool {
        self.is_all() || matches!(self.segs.first(), Some(Seg::One | Seg::Rest))
    }

    fn describe(&self, verb: &str) -> String {
        if self.is_all() {
            "of every kind".into()
        } else if self.is_literal() {
            format!("{verb} “{}”", self.text)
        } else {
            format!("matching “{}”", self.text)
        }
    }

    /// Does `name` (a concrete dot-separated name) match? Allocation-free.
    pub fn matches(&self, name: &str) -> bool {
        if self.segs.is_empty() {
            return true;
        }
        let mut parts = name.split('.');
        for seg in self.segs.iter() {
            match seg {
                Seg::Rest => return parts.next().is_some(),
                Seg::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Seg::Lit(l) => {
                    if parts.next() != Some(&**l) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// The literal segments before the first wildcard (`crm.deal.*` -> `crm.deal`): the
    /// namespace a `provides.events` pattern claims. Empty for `*`, `*.x` and `**`.
    pub fn literal_prefix(&self) -> Vec<&str> {
        self.segs.iter().map_while(|s| if let Seg::Lit(l) = s { Some(&**l) } else { None }).collect()
    }

    /// Do two topic claims collide: is one's namespace ([`Pattern::literal_prefix`]) the other's
    /// or inside it? A claim without a namespace collides with everything. One owner per
    /// namespace keeps ownership simple to explain: `crm.deal.*` and `crm.lead.*` may belong to
    /// two packages, `crm.*` and `crm.deal.*` may not.
    pub fn claims_collide(&self, other: &Pattern) -> bool {
        let (a, b) = (self.literal_prefix(), other.literal_prefix());
        let n = a.len().min(b.len());
        n == 0 || a[..n] == b[..n]
    }

    /// Does every name matched by `other` also match `self`? Used to check that a
    /// subscription pattern stays inside the granted pattern.
    pub fn covers(&self, other: &Pattern) -> bool {
        if self.segs.is_empty() {
            return true;
        }
        if other.segs.is_empty() {
            return false;
        }
        let mut theirs = other.segs.iter();
        for seg in self.segs.iter() {
            let Some(t) = theirs.next() else { return false };
            match (seg, t) {
                (Seg::Rest, _) => return true,
                (_, Seg::Rest) => return false,
                (Seg::One, _) => {}
                (Seg::Lit(a), Seg::Lit(b)) if a == b => {}
                (Seg::Lit(_), _) => return false,
            }
        }
        theirs.next().is_none()
    }
}

/// Validate a concrete name (topic or service name): dot-separated segments, no wildcards.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    // Fast path (every emit and lookup checks its name): one pass over the bytes; anything
    // unusual takes the slow path below, which says what is wrong.
    if name.len() <= 256 {
        let mut after_dot = true; // at the start, as after a dot: a segment must begin
        let mut ok = true;
        for &c in name.as_bytes() {
            if c == b'.' {
                ok &= !after_dot;
                after_dot = true;
            } else {
                ok &= c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
                after_dot = false;
            }
        }
        if ok && !after_dot {
            return Ok(());
        }
    }
    if name.is_empty() || name.len() > 256 {
        return Err("must be 1 to 256 characters".into());
    }
    for part in name.split('.') {
        if part.is_empty() {
            return Err("has an empty segment (two dots, or a dot at an end)".into());
        }
        if !part.chars().all(valid_segment_char) {
            return Err(format!("segment `{part}` may only hold letters, digits, `_` and `-`"));
        }
    }
    Ok(())
}

/// The grants of one plugin, compiled for cheap checks on every call.
#[derive(Debug, Clone, Default)]
pub struct GrantSet {
    storage_read: bool,
    storage_write: bool,
    kernel_manage: bool,
    kernel_inspect: bool,
    emit: Vec<Pattern>,
    subscribe: Vec<Pattern>,
    provide: Vec<Pattern>,
    use_: Vec<Pattern>,
    data_read: Vec<String>,
    data_write: Vec<String>,
    connect: Vec<super::reach::NetTarget>,
    folders: Vec<Folder>,
}

/// The granted folders without those another covers: a folder inside a writable one, or a
/// read-only folder inside any. What is left cannot be replaced by the plugin itself (its
/// entry lies in a folder the plugin may not change), so opening it by path cannot be turned
/// into a symbolic link leading elsewhere.
fn outermost(folders: Vec<Folder>) -> Vec<Folder> {
    let covered = |f: &Folder| folders.iter().any(|o| o.path != f.path && f.path.starts_with(&o.path) && (o.write || !f.write));
    folders.iter().filter(|f| !covered(f)).cloned().collect()
}

/// A folder a plugin was granted, expanded to an absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub path: std::path::PathBuf,
    /// `fs.write` (else `fs.read` only).
    pub write: bool,
    /// What the folder was when the admin approved it ([`folder_identity`]): a path that now
    /// leads to another folder (replaced, or a link put in its place) is refused. `None` for
    /// a grant recorded without one.
    pub identity: Option<String>,
}

/// The identity of what `path` leads to now (`device:inode`), to tell later whether the
/// same folder is still there; `None` where it cannot be read.
pub fn folder_identity(path: &std::path::Path) -> Option<String> {
    std::fs::metadata(path).ok().and_then(|m| metadata_identity(&m))
}

/// The identity ([`folder_identity`]) of a file or folder whose metadata is `m`.
#[cfg(unix)]
pub fn metadata_identity(m: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    Some(format!("{}:{}", m.dev(), m.ino()))
}

/// The identity ([`folder_identity`]) of a file or folder whose metadata is `m`.
#[cfg(not(unix))]
pub fn metadata_identity(_m: &std::fs::Metadata) -> Option<String> {
    None
}

impl GrantSet {
    /// Compile a set of granted permissions.
    pub fn new<'a>(grants: impl IntoIterator<Item = &'a Permission>) -> Self {
        let mut g = GrantSet::default();
        for p in grants {
            match p {
                Permission::StorageRead => g.storage_read = true,
                Permission::StorageWrite => g.storage_write = true,
                Permission::KernelManage => g.kernel_manage = true,
                Permission::KernelInspect => g.kernel_inspect = true,
                Permission::EventsEmit(p) => g.emit.push(p.clone()),
                Permission::EventsSubscribe(p) => g.subscribe.push(p.clone()),
                Permission::ServicesProvide(p) => g.provide.push(p.clone()),
                Permission::ServicesUse(p) => g.use_.push(p.clone()),
                Permission::Data { object, write: false } => g.data_read.push(object.clone()),
                Permission::Data { object, write: true } => g.data_write.push(object.clone()),
                Permission::NetworkConnect(t) => g.connect.extend(t.parse().ok()),
                Permission::FsRead(f) | Permission::FsWrite(f) => {
                    let write = matches!(p, Permission::FsWrite(_));
                    if let Ok(path) = super::reach::folder(f) {
                        match g.folders.iter_mut().find(|x| x.path == path) {
                            Some(x) => x.write |= write,
                            None => g.folders.push(Folder { path, write, identity: None }),
                        }
                    }
                }
            }
        }
        g.folders = outermost(std::mem::take(&mut g.folders));
        g
    }

    /// Give each folder the identity recorded for a grant of it (`permission`, identity).
    pub fn with_identities(mut self, identities: &[(String, String)]) -> Self {
        for (permission, identity) in identities {
            let Some(raw) = permission.strip_prefix("fs.read:").or_else(|| permission.strip_prefix("fs.write:")) else { continue };
            let Ok(path) = super::reach::folder(raw) else { continue };
            if let Some(f) = self.folders.iter_mut().find(|f| f.path == path) {
                f.identity = Some(identity.clone());
            }
        }
        self
    }

    /// May plugin `me` read (or, with `write`, change) records of `object` (a full type name,
    /// `<owner>/<type>`)? A grant without an owner names one of `me`'s own types.
    pub fn may_access_data(&self, object: &str, write: bool, me: &str) -> bool {
        let list = if write { &self.data_write } else { &self.data_read };
        let own = object.strip_prefix(me).and_then(|rest| rest.strip_prefix('/'));
        list.iter().any(|o| o == "*" || o == object || Some(o.as_str()) == own)
    }

    /// `storage.read` granted?
    pub fn storage_read(&self) -> bool {
        self.storage_read
    }
    /// `storage.write` granted?
    pub fn storage_write(&self) -> bool {
        self.storage_write
    }
    /// `kernel.manage` granted?
    pub fn kernel_manage(&self) -> bool {
        self.kernel_manage
    }
    /// `kernel.inspect` granted?
    pub fn kernel_inspect(&self) -> bool {
        self.kernel_inspect
    }
    /// May emit this concrete topic?
    pub fn may_emit(&self, topic: &str) -> bool {
        self.emit.iter().any(|p| p.matches(topic))
    }
    /// May subscribe with this pattern?
    pub fn may_subscribe(&self, pattern: &Pattern) -> bool {
        self.subscribe.iter().any(|g| g.covers(pattern))
    }
    /// May register a service under this name?
    pub fn may_provide(&self, name: &str) -> bool {
        self.provide.iter().any(|p| p.matches(name))
    }
    /// May use the service with this name?
    pub fn may_use(&self, name: &str) -> bool {
        self.use_.iter().any(|p| p.matches(name))
    }
    /// May send a request to `host` on `port`?
    pub fn may_connect(&self, host: &super::reach::Host, port: u16) -> bool {
        self.connect.iter().any(|t| t.covers(host, port))
    }
    /// The folders granted, each once (`fs.write` where either grant is).
    pub fn folders(&self) -> &[Folder] {
        &self.folders
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_inside_a_writable_one_is_not_opened_on_its_own() {
        let perms: Vec<Permission> = ["fs.write:/srv/exports", "fs.read:/srv/exports/in", "fs.write:/srv/exports/out", "fs.read:/srv/docs", "fs.write:/srv/docs/drafts", "fs.read:/srv/docs/old"].iter().map(|p| p.parse().unwrap()).collect();
        let g = GrantSet::new(&perms);
        let shown: Vec<(String, bool)> = g.folders().iter().map(|f| (f.path.display().to_string(), f.write)).collect();
        // `in` and `out` could be replaced through `exports` by a link out; `old` is read by `docs`.
        // `drafts` stays: its entry lies in `docs`, which the plugin may only read.
        assert_eq!(shown, [("/srv/exports".to_string(), true), ("/srv/docs".to_string(), false), ("/srv/docs/drafts".to_string(), true)]);
    }

    fn p(s: &str) -> Pattern {
        s.parse().unwrap()
    }

    #[test]
    fn topic_claims_collide_when_one_namespace_holds_the_other() {
        let p = |s: &str| s.parse::<Pattern>().unwrap();
        assert_eq!(p("crm.deal.*").literal_prefix(), ["crm", "deal"]);
        assert!(p("crm.*").claims_collide(&p("crm.deal.won")));
        assert!(p("data.**").claims_collide(&p("data.ticket.updated")));
        assert!(!p("crm.deal.*").claims_collide(&p("crm.lead.*")));
        assert!(!p("com.acme.crm.**").claims_collide(&p("com.acme.erp.**")));
        assert!(p("*.won").claims_collide(&p("crm.deal.*")), "a claim without a namespace collides with all");
    }

    #[test]
    fn names_are_checked_segment_by_segment() {
        for ok in ["a", "crm.lead.created", "a-b_c.D9", &"x".repeat(256)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "1 to 256"),
            (".a", "empty segment"),
            ("a.", "empty segment"),
            ("a..b", "empty segment"),
            ("a.b c", "segment `b c`"),
            ("a.é", "segment `é`"),
            ("a*", "segment `a*`"),
        ];
        for (name, why) in bad {
            let e = validate_name(name).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
        }
        assert!(validate_name(&"x".repeat(257)).unwrap_err().contains("1 to 256"));
    }

    #[test]
    fn pattern_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("a.b.c", "a.b.c", true),
            ("a.b.c", "a.b", false),
            ("*", "anything.at.all", true),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*", "a", false),
            ("a.**", "a.b.c", true),
            ("a.**", "a", false),
            ("*.created", "user.created", true),
            ("*.created", "user.deleted", false),
        ];
        for (pat, name, want) in cases {
            assert_eq!(p(pat).matches(name), *want, "{pat} vs {name}");
        }
    }

    #[test]
    fn pattern_coverage() {
        assert!(p("user.*").covers(&p("user.created")));
        assert!(p("user.*").covers(&p("user.*")));
        assert!(!p("user.*").covers(&p("user.**")));
        assert!(p("user.**").covers(&p("user.a.*")));
        assert!(!p("user.*").covers(&p("*")));
        assert!(p("*").covers(&p("*")));
        assert!(!p("user.created").covers(&p("user.*")));
    }

    #[test]
    fn parse_errors_are_plain() {
        for bad in ["storage.read:x", "events.emit", "events.emit:a..b", "bogus.perm", "network.connect:h:0", "fs.read:", "fs.read:exports", "fs.write:/srv/../etc", "network.connect:*.com"] {
            let e = bad.parse::<Permission>().unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert_eq!("events.emit:crm.lead.*".parse::<Permission>().unwrap().to_string(), "events.emit:crm.lead.*");
        for good in ["data.account.read", "data.account.write", "data.*.read", "data.com.acme.crm/account.read"] {
            assert_eq!(good.parse::<Permission>().unwrap().to_string(), good);
        }
        for bad in ["data.account", "data..read", "data.a.b.read", "data.account.delete", "data.com.acme.crm/.read", "data.Bad Id/x.read", "data.a/b/c.read"] {
            assert!(bad.parse::<Permission>().is_err(), "{bad}");
        }
        let g = GrantSet::new(&["data.account.read".parse::<Permission>().unwrap(), "data.com.acme.crm/deal.read".parse().unwrap(), "data.*.write".parse().unwrap()]);
        assert!(g.may_access_data("me/account", false, "me"), "a short name is the grantee's own type");
        assert!(!g.may_access_data("other/account", false, "me"), "not another owner's type of that name");
        assert!(!g.may_access_data("me/contact", false, "me"));
        assert!(g.may_access_data("com.acme.crm/deal", false, "me"));
        assert!(g.may_access_data("other/contact", true, "me"));
    }
}
