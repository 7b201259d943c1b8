//! Version ranges in npm's grammar and meaning, as plugin manifests in this ecosystem (the
//! JavaScript plugin hosts ObjectOS packages come from, editors' and dashboards' plugins) are
//! written: `^1.2`, `~1.2.3`, `>=1.0.0 <2.0.0`, `1.2.x || 2.x`, `1.0.0 - 2.0.0`, and a bare
//! version meaning exactly that version. node-semver's prerelease rule holds: `1.3.0-beta.1`
//! satisfies a range only through a comparator on `1.3.0` with a prerelease.
//!
//! Where Cargo's grammar differs: a comma between comparators (`>=1.0, <2.0`) is read as npm's
//! space (both mean "and"), so manifests written for earlier versions keep their meaning; a
//! bare version is exact (Cargo read `1.0.0` as `^1.0.0`).

use std::fmt;

use serde::Serialize;

impl schemars::JsonSchema for VersionRange {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "VersionRange".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A version range in npm's grammar: ^1.2, ~1.2.3, >=1.0.0 <2.0.0, 1.2.x || 2.x, 1.0.0 - 2.0.0, *. A bare version means exactly that version.",
            "minLength": 1,
            "examples": ["^0.1", ">=1.0.0 <2.0.0"],
        })
    }
}

/// A parsed range, shown as written.
#[derive(Debug, Clone)]
pub struct VersionRange {
    text: String,
    range: nodejs_semver::Range,
}

impl VersionRange {
    /// Parse `text`, or say why it is not a range.
    pub fn parse(text: &str) -> Result<VersionRange, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("an empty range; write \"*\" for any version".into());
        }
        if trimmed.len() > 256 {
            return Err(format!("a range of {} characters; at most 256", trimmed.len()));
        }
        // Cargo's comma-separated comparators mean what npm's space-separated ones do.
        let npm = trimmed.split(',').map(str::trim).collect::<Vec<_>>().join(" ");
        let range = nodejs_semver::Range::parse(&npm).map_err(|e| e.to_string())?;
        Ok(VersionRange { text: trimmed.to_string(), range })
    }

    /// Whether `version` satisfies the range.
    pub fn matches(&self, version: &semver::Version) -> bool {
        nodejs_semver::Version::parse(version.to_string()).is_ok_and(|v| self.range.satisfies(&v))
    }

    /// The range as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for VersionRange {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for VersionRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(range: &str, version: &str) -> bool {
        VersionRange::parse(range).unwrap().matches(&semver::Version::parse(version).unwrap())
    }

    #[test]
    fn npm_grammar_and_meaning() {
        // Forms Cargo's grammar refused.
        assert!(ok(">=1.0.0 <2.0.0", "1.9.3") && !ok(">=1.0.0 <2.0.0", "2.0.0"));
        assert!(ok("1.2.x || 2.x", "2.7.0") && ok("1.2.x || 2.x", "1.2.9") && !ok("1.2.x || 2.x", "1.3.0"));
        assert!(ok("1.0.0 - 2.0.0", "2.0.0") && !ok("1.0.0 - 2.0.0", "2.0.1"));
        assert!(ok("~>3.2", "3.2.5") && !ok("~>3.2", "3.3.0"));
        // A bare version is exactly that version (Cargo: ^1.0.0).
        assert!(ok("1.0.0", "1.0.0") && !ok("1.0.0", "1.0.1"));
        // The common forms mean what they meant.
        assert!(ok("^0.1", "0.1.4") && !ok("^0.1", "0.2.0"));
        assert!(ok("^1.2", "1.9.0") && !ok("^1.2", "2.0.0"));
        assert!(ok(">=0.1.0, <1.0.0", "0.9.9") && !ok(">=0.1.0, <1.0.0", "1.0.0"), "Cargo's comma reads as npm's space");
        assert!(ok("*", "3.1.4"));
        // Prereleases only through a comparator on the same version.
        assert!(!ok("^1.2.0", "1.3.0-beta.1"));
        assert!(ok(">=1.3.0-beta.0", "1.3.0-beta.1"));
    }

    #[test]
    fn bad_ranges_say_why() {
        assert!(VersionRange::parse("").unwrap_err().contains("\"*\""));
        assert!(VersionRange::parse("^1.x.y").is_err());
        assert!(VersionRange::parse("lots").is_err());
        assert_eq!(VersionRange::parse(" ^1.2 ").unwrap().to_string(), "^1.2");
    }
}
