//! What network and file permissions reach: the hosts a `network.connect` grant covers, which
//! addresses a request may end up at, and the folder an `fs.read`/`fs.write` grant names.
//!
//! The kernel only compiles and matches these; the sandboxed runtime enforces them (its
//! HTTP client asks [`crate::PluginContext::require_connect`] before any connection and
//! checks every address a name resolves to with [`is_public`]; its file system is opened
//! only at the granted folders).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Component, PathBuf};
use std::str::FromStr;

/// The host of a request, as the plugin named it: a DNS name (lowercase, without a trailing
/// dot) or an IP address literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// Read the host part of a URL (`api.example.com`, `127.0.0.1`, `[::1]`).
    pub fn parse(text: &str) -> Result<Host, String> {
        let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
        if let Some(v6) = inner {
            return v6.parse::<Ipv6Addr>().map(|ip| Host::Ip(IpAddr::V6(ip))).map_err(|_| format!("`{text}` is not an IPv6 address"));
        }
        if let Ok(ip) = text.parse::<Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(ip)));
        }
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        valid_name(&name, false)?;
        Ok(Host::Name(name))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The hosts one `network.connect` grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this name.
    Name(String),
    /// `*.<suffix>`: one more label in front of the suffix (`*.example.com` covers
    /// `api.example.com`, not `example.com` nor `a.b.example.com`).
    OneLabel(String),
    /// Exactly this address, written literally in the grant: the only way a request may
    /// reach a loopback, private or link-local address.
    Ip(IpAddr),
}

/// The target of a `network.connect` grant: `host`, `*.domain` or an IP literal, with an
/// optional port. Without a port it covers the web's standard ports, 443 and 80.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetTarget {
    host: HostPattern,
    port: Option<u16>,
}

/// The ports a grant without a port covers.
pub const DEFAULT_PORTS: [u16; 2] = [443, 80];

impl NetTarget {
    /// Whether a request to `host` on `port` is covered. A name grant never covers an IP
    /// literal, nor an IP grant a name.
    pub fn covers(&self, host: &Host, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        };
        port_ok
            && match (&self.host, host) {
                (HostPattern::Name(g), Host::Name(h)) => g == h,
                (HostPattern::OneLabel(suffix), Host::Name(h)) => {
                    h.strip_suffix(suffix.as_str()).and_then(|l| l.strip_suffix('.')).is_some_and(|label| !label.is_empty() && !label.contains('.'))
                }
                (HostPattern::Ip(g), Host::Ip(h)) => g == h,
                _ => false,
            }
    }

    /// What the review shows: "api.example.com on ports 443 and 80".
    pub fn describe(&self) -> String {
        let host = match &self.host {
            HostPattern::Name(n) => n.clone(),
            HostPattern::OneLabel(s) => format!("any host directly under {s}"),
            HostPattern::Ip(IpAddr::V6(ip)) => format!("the address [{ip}]"),
            HostPattern::Ip(ip) => format!("the address {ip}"),
        };
        match self.port {
            Some(p) => format!("{host} on port {p}"),
            None => format!("{host} on ports 443 (https) and 80 (http)"),
        }
    }
}

impl FromStr for NetTarget {
    type Err = String;

    fn from_str(t: &str) -> Result<Self, String> {
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (v6, after) = rest.split_once(']').ok_or_else(|| format!("`{t}` opens `[` for an IPv6 address but does not close it"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| format!("`{t}`: a port follows `]` after a `:`"))?),
            };
            (format!("[{v6}]"), port)
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (t.to_string(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|n| *n != 0).ok_or_else(|| format!("`{p}` is not a port number (1-65535)"))?),
        };
        let pattern = if let Some(suffix) = host.strip_prefix("*.") {
            let suffix = suffix.to_ascii_lowercase();
            valid_name(&suffix, true).map_err(|e| format!("`{t}`: {e}"))?;
            HostPattern::OneLabel(suffix)
        } else {
            match Host::parse(&host).map_err(|e| format!("`{t}` is not a host (a name like api.example.com, `*.example.com`, or an IP address): {e}"))? {
                Host::Name(n) => HostPattern::Name(n),
                Host::Ip(ip) => HostPattern::Ip(ip),
            }
        };
        Ok(NetTarget { host: pattern, port })
    }
}

/// A DNS name: labels of letters, digits and `-`, at most 253 bytes. `suffix` asks for at
/// least two labels (a wildcard over a whole top-level domain is refused).
fn valid_name(name: &str, suffix: bool) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("`{name}` is not a host name"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || label.starts_with('-') || label.ends_with('-') {
            return Err(format!("`{name}` is not a host name (labels of letters, digits and `-`; `*` only as `*.domain`)"));
        }
    }
    if suffix && !name.contains('.') {
        return Err(format!("`*.{name}` would cover a whole top-level domain; name a domain such as `*.example.com`"));
    }
    Ok(())
}

/// Check a folder's spelling without expanding it (a manifest is read the same whatever the
/// environment): absolute or under `~`, without `..`.
pub fn folder_syntax(raw: &str) -> Result<(), String> {
    let rest = if raw == "~" { "" } else { raw.strip_prefix("~/").unwrap_or(raw) };
    if raw.starts_with("~/") && rest.starts_with('/') {
        return Err(format!("`{raw}` would leave the home folder (`~//x` is `/x`); write `/x` if that is meant"));
    }
    if !raw.starts_with('~') && !std::path::Path::new(raw).is_absolute() || raw.starts_with('~') && raw != "~" && !raw.starts_with("~/") {
        return Err(format!("`{raw}` is not an absolute folder; write it from the root (`/srv/exports`) or the home folder (`~/invoices`)"));
    }
    if std::path::Path::new(rest).components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("`{raw}` contains `..`; name the folder itself"));
    }
    Ok(())
}

/// Whether `ip` is an address on the public internet: not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast, broadcast, documentation or reserved, including
/// IPv4 addresses wrapped in IPv6 (mapped, NAT64, 6to4). A name that resolves to anything
/// else is refused unless a grant names the address literally, so that a grant for a public
/// name cannot be pointed at the local network by its DNS.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
            }
            if s[0] == 0x2002 {
                return public_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
            }
            // Local-use NAT64 (64:ff9b:1::/48), SIIT (::ffff:0:x:x/96), Teredo (2001::/32,
            // whose embedded address is obscured) and discard-only (100::/64): not public.
            if (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) || (s[0..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0) || (s[0] == 0x2001 && s[1] == 0) || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) {
                return false;
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || o[0] == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space (CGNAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast (deprecated)
        || o[0] >= 240) // reserved
}

/// The folder an `fs.read`/`fs.write` grant names, as an absolute path: `~` and `~/…` are
/// the home folder of the user running ObjectOS. A relative path or one with `..` is refused
/// (the admin must see exactly which folder is meant).
pub fn folder(raw: &str) -> Result<PathBuf, String> {
    folder_syntax(raw)?;
    let home = || std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let path = if raw == "~" {
        home().ok_or_else(|| format!("`{raw}` names the home folder, but HOME is not set"))?
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home().ok_or_else(|| format!("`{raw}` starts at the home folder, but HOME is not set"))?.join(rest)
    } else {
        PathBuf::from(raw)
    };
    // `a/./b` and `a//b/` name `a/b`.
    Ok(path.components().filter(|c| !matches!(c, Component::CurDir)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NetTarget {
        s.parse().unwrap()
    }
    fn h(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    #[test]
    fn grants_cover_exact_hosts_one_label_and_ports() {
        assert!(t("api.github.com").covers(&h("api.github.com"), 443));
        assert!(t("api.github.com").covers(&h("API.GitHub.com."), 80));
        assert!(!t("api.github.com").covers(&h("api.github.com"), 8443));
        assert!(!t("api.github.com").covers(&h("github.com"), 443));
        assert!(!t("api.github.com").covers(&h("evil-api.github.com"), 443));
        assert!(t("api.github.com:8443").covers(&h("api.github.com"), 8443));
        assert!(!t("api.github.com:8443").covers(&h("api.github.com"), 443));
        assert!(t("*.example.com").covers(&h("hooks.example.com"), 443));
        assert!(!t("*.example.com").covers(&h("example.com"), 443));
        assert!(!t("*.example.com").covers(&h("a.b.example.com"), 443));
        assert!(!t("*.example.com").covers(&h("notexample.com"), 443));
        assert!(t("127.0.0.1:8080").covers(&h("127.0.0.1"), 8080));
        assert!(!t("localhost:8080").covers(&h("127.0.0.1"), 8080));
        assert!(!t("127.0.0.1:8080").covers(&h("localhost"), 8080));
        assert!(t("[::1]:9000").covers(&h("[::1]"), 9000));
        assert!(t("[::1]").covers(&h("[::1]"), 443));
    }

    #[test]
    fn malformed_targets_say_what_is_wrong() {
        for (bad, says) in [
            ("*.com", "top-level"),
            ("a*.example.com", "not a host"),
            ("example.com:0", "port"),
            ("example.com:http", "port"),
            ("[::1", "does not close"),
            ("[::1]8080", "after a `:`"),
            ("-bad.example.com", "not a host"),
            ("*.*.example.com", "*.*.example.com"),
        ] {
            let e = bad.parse::<NetTarget>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "::1", "::", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::", "64:ff9b:1::1", "::ffff:0:a00:1", "2001::1", "100::1", "192.88.99.1", "255.255.255.255", "224.0.0.1"] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "140.82.112.5", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn folders_are_absolute_and_expanded() {
        assert_eq!(folder("/srv/exports/").unwrap(), PathBuf::from("/srv/exports"));
        assert_eq!(folder("/srv/./exports").unwrap(), PathBuf::from("/srv/exports"));
        assert!(folder("exports").unwrap_err().contains("absolute"));
        assert!(folder("/srv/../etc").unwrap_err().contains(".."));
        assert!(folder("~//etc").unwrap_err().contains("home folder"));
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            assert_eq!(folder("~/invoices").unwrap(), PathBuf::from(home).join("invoices"));
        }
    }
}
