//! Web requests for sandboxed plugins (the world's `http` import).
//!
//! Every hop of a request is checked before anything connects: the URL's host and port
//! against the plugin's `network.connect` grants ([`PluginContext::require_connect`]), then
//! every address a name resolves to (the client resolves through [`CheckedResolver`]), which
//! must be public unless the request named the address literally. Redirects are followed
//! here, not by the client, so each one is checked the same way, and credentials are not
//! carried to another origin. No proxy from the environment is used: the request goes where
//! the check said.

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use objectos_kernel::model::reach::{self, Host};
use objectos_kernel::{KernelError, PluginContext};
use ureq::http;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::bindings::objectos::plugin::http::{Host as HttpHost, Request, Response};
use super::bindings::objectos::plugin::types::{ErrorCode, HostError};
use super::{host_error, HostState};
use super::fail;
use objectos_kernel::model::quota::{Use, Window};

/// The largest request body.
pub(crate) const MAX_REQUEST_BODY: usize = 1 << 20;
/// The largest response body.
pub(crate) const MAX_RESPONSE_BODY: usize = 4 << 20;
/// Redirects followed for one request.
pub(crate) const MAX_REDIRECTS: usize = 5;
/// Requests one plugin may make in a minute.
pub(crate) const REQUESTS_PER_MINUTE: u32 = 120;
/// How long one request (every hop, the whole body) may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call into the plugin may wait on web requests in all.
pub(crate) const MAX_WAIT_PER_CALL: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 32 << 10;
/// Headers the host sets itself.
const HOST_HEADERS: [&str; 6] = ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te"];
/// The only headers carried to another origin on a redirect: none that could hold a
/// credential (`authorization`, `cookie`, `x-api-key`, `private-token`...).
const CROSS_ORIGIN: [&str; 8] = ["accept", "accept-language", "content-language", "content-type", "user-agent", "cache-control", "if-none-match", "if-modified-since"];
const CALL: &str = "http.send";

/// A name resolved to an address that is not public.
#[derive(Debug)]
struct NotPublic(SocketAddr);

impl std::fmt::Display for NotPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "resolved to {}, which is not a public address", self.0.ip())
    }
}

impl std::error::Error for NotPublic {}

/// The system resolver, refusing any answer that is not a public address for a request that
/// named a host (a literal address was checked against the grants as it is).
#[derive(Debug, Default)]
struct CheckedResolver(DefaultResolver);

impl Resolver for CheckedResolver {
    fn resolve(&self, uri: &http::Uri, config: &ureq::config::Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // A literal address is what the grant named: no lookup (and no lookup thread).
        if let Some(Host::Ip(ip)) = uri.host().and_then(|h| Host::parse(h).ok()) {
            let port = uri.port_u16().or_else(|| uri.scheme().and_then(|s| (s.as_str() == "https").then_some(443).or((s.as_str() == "http").then_some(80))));
            if let Some(port) = port {
                let mut out = self.empty();
                out.push(SocketAddr::new(ip, port));
                return Ok(out);
            }
        }
        let addrs = self.0.resolve(uri, config, timeout)?;
        if let Some(bad) = addrs.iter().find(|a| !reach::is_public(a.ip())) {
            return Err(ureq::Error::Io(io::Error::other(NotPublic(*bad))));
        }
        Ok(addrs)
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .user_agent(concat!("ObjectOS/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        ureq::Agent::with_parts(config, DefaultConnector::default(), CheckedResolver::default())
    })
}

fn denied(e: KernelError) -> HostError {
    host_error(e)
}

/// Where one hop goes, checked against the plugin's grants.
struct Target {
    uri: http::Uri,
    host: Host,
    port: u16,
}

impl Target {
    fn parse(ctx: &PluginContext, text: &str) -> Result<Target, HostError> {
        let invalid = |why: String| fail(ErrorCode::Invalid, format!("`{}` {why}", objectos_kernel::util::clip(text.to_string(), 200)));
        let uri: http::Uri = text.parse().map_err(|e| invalid(format!("is not a URL: {e}")))?;
        let port = match uri.scheme_str() {
            Some("https") => 443,
            Some("http") => 80,
            Some(other) => return Err(invalid(format!("uses `{other}`; only https:// and http:// are supported"))),
            None => return Err(invalid("is not an absolute URL (https://host/path)".into())),
        };
        let authority = uri.authority().ok_or_else(|| invalid("has no host".into()))?;
        if authority.as_str().contains('@') {
            return Err(invalid("carries a user name or password; send credentials in a header".into()));
        }
        let host = Host::parse(authority.host()).map_err(|e| invalid(format!("has no valid host: {e}")))?;
        let port = authority.port_u16().unwrap_or(port);
        ctx.require_connect(&host, port, CALL).map_err(denied)?;
        Ok(Target { uri, host, port })
    }

    /// The URL without its query (which may carry a token), for the audit trail.
    fn shown(&self) -> String {
        format!("{}://{}:{}{}", self.uri.scheme_str().unwrap_or("https"), self.host, self.port, self.uri.path())
    }

    fn same_origin(&self, other: &Target) -> bool {
        self.host == other.host && self.port == other.port && self.uri.scheme() == other.uri.scheme()
    }
}

/// Send `request` for the plugin of `ctx` within `limit` (every hop and the body), counting
/// each hop that reached for a host (each also against the rate).
pub(crate) fn send(ctx: &PluginContext, rate: &Window, request: Request, limit: Duration) -> Result<Response, HostError> {
    let deadline = Instant::now() + limit;
    let mut target = prepare(ctx, rate, &request)?;
    let mut method = request.method.to_ascii_uppercase();
    let mut body = request.body.unwrap_or_default().into_bytes();
    let mut headers = request.headers;
    for hop in 0..=MAX_REDIRECTS {
        if hop > 0 {
            take(ctx, rate)?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(ErrorCode::Failed, format!("{}: timed out after {} s (a request, with its redirects, may take {} s)", request.url, limit.as_secs(), TIMEOUT.as_secs())));
        }
        let host = format!("{}:{}", target.host, target.port);
        let count = |status: Option<u16>, received: usize| ctx.record_request(&host, status, body.len() as u64, received as u64);
        let mut response = match exchange(&target, &method, &headers, &body, left) {
            Ok(r) => r,
            Err(e) => {
                let refused = not_public(&e).is_some();
                if !refused {
                    count(None, 0);
                }
                return Err(transport_error(ctx, &target, e));
            }
        };
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        if let (301 | 302 | 303 | 307 | 308, Some(location)) = (status, location) {
            count(Some(status), 0);
            let next = resolve_location(&target.uri, &location)?;
            let next = Target::parse(ctx, &next).map_err(|mut e| {
                e.message = format!("{} redirected to {next}: {}", target.uri, e.message);
                e
            })?;
            if target.uri.scheme_str() == Some("https") && next.uri.scheme_str() != Some("https") {
                return Err(fail(ErrorCode::Failed, format!("{} redirected to {}, from https to plain http; not followed", target.uri, next.uri)));
            }
            if status == 303 || (matches!(status, 301 | 302) && method == "POST") {
                if method != "HEAD" {
                    method = "GET".into();
                }
                body.clear();
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
            }
            if !target.same_origin(&next) {
                headers.retain(|(n, _)| CROSS_ORIGIN.iter().any(|c| n.eq_ignore_ascii_case(c)));
            }
            target = next;
            continue;
        }
        let bytes = match response.body_mut().with_config().limit(MAX_RESPONSE_BODY as u64).read_to_vec() {
            Ok(b) => b,
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                count(Some(status), MAX_RESPONSE_BODY);
                let e = ctx.over_limit(format!("the response of {}", target.shown()), format!("a response body is at most {} MiB", MAX_RESPONSE_BODY >> 20));
                return Err(host_error(e));
            }
            Err(e) => {
                count(Some(status), 0);
                return Err(transport_error(ctx, &target, e));
            }
        };
        count(Some(status), bytes.len());
        let headers = response.headers().iter().filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string()))).collect();
        return Ok(Response { status, headers, body: String::from_utf8_lossy(&bytes).into_owned(), url: target.uri.to_string() });
    }
    Err(fail(ErrorCode::Failed, format!("{} redirected more than {MAX_REDIRECTS} times", request.url)))
}

/// Count one connection against the plugin's rate.
fn take(ctx: &PluginContext, rate: &Window) -> Result<(), HostError> {
    match rate.hit(objectos_kernel::util::now_ms(), 60_000, u64::from(REQUESTS_PER_MINUTE)).0 {
        Use::Allowed => Ok(()),
        Use::Refused { first } => Err(host_error(ctx.over_quota("web requests".into(), format!("a plugin makes at most {REQUESTS_PER_MINUTE} requests a minute (each redirect counts)"), first))),
    }
}

/// Check what the request asks before anything leaves: rate, method, headers, body, target.
fn prepare(ctx: &PluginContext, rate: &Window, request: &Request) -> Result<Target, HostError> {
    take(ctx, rate)?;
    let method = request.method.to_ascii_uppercase();
    if !["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].contains(&method.as_str()) {
        return Err(fail(ErrorCode::Invalid, format!("`{}` is not a method: use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS", objectos_kernel::util::clip(request.method.clone(), 32))));
    }
    if request.body.is_some() && matches!(method.as_str(), "GET" | "HEAD") {
        return Err(fail(ErrorCode::Invalid, format!("a {method} request has no body")));
    }
    if let Some(b) = &request.body {
        if b.len() > MAX_REQUEST_BODY {
            let e = ctx.over_limit("a request body".into(), format!("a request body is at most {} MiB; this one is {} bytes", MAX_REQUEST_BODY >> 20, b.len()));
            return Err(host_error(e));
        }
    }
    let header_bytes: usize = request.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if request.headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Err(fail(ErrorCode::OverLimit, format!("a request has at most {MAX_HEADERS} headers of {} KiB in all", MAX_HEADER_BYTES >> 10)));
    }
    for (name, value) in &request.headers {
        if HOST_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return Err(fail(ErrorCode::Invalid, format!("the `{name}` header is the host's to set")));
        }
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(value).is_err() {
            return Err(fail(ErrorCode::Invalid, format!("header `{}` is not a valid header name and value", objectos_kernel::util::clip(name.clone(), 64))));
        }
    }
    Target::parse(ctx, &request.url)
}

fn exchange(target: &Target, method: &str, headers: &[(String, String)], body: &[u8], left: Duration) -> Result<http::Response<ureq::Body>, ureq::Error> {
    use ureq::RequestExt;
    let mut builder = http::Request::builder().method(method).uri(target.uri.clone());
    for (n, v) in headers {
        builder = builder.header(n.as_str(), v.as_str());
    }
    if body.is_empty() && matches!(method, "GET" | "HEAD" | "OPTIONS" | "DELETE") {
        builder.body(()).map_err(ureq::Error::Http)?.with_agent(agent()).configure().timeout_global(Some(left)).run()
    } else {
        builder.body(body.to_vec()).map_err(ureq::Error::Http)?.with_agent(agent()).configure().timeout_global(Some(left)).run()
    }
}

/// What a failed exchange tells the guest; a name that resolved to an address that is not
/// public is a refusal (audited), like a missing grant.
fn transport_error(ctx: &PluginContext, target: &Target, e: ureq::Error) -> HostError {
    if let Some(addr) = not_public(&e) {
        return denied(ctx.refuse_address(&target.host, addr, CALL));
    }
    let why = match &e {
        ureq::Error::Timeout(_) => format!("timed out (a request may take {} s)", TIMEOUT.as_secs()),
        ureq::Error::HostNotFound => "the host name does not resolve".into(),
        ureq::Error::ConnectionFailed => "the connection was refused or failed".into(),
        other => other.to_string(),
    };
    fail(ErrorCode::Failed, format!("{} {}: {why}", target.uri.scheme_str().unwrap_or("https").to_uppercase(), target.uri))
}

/// The address the resolver refused, when that is why the exchange failed.
fn not_public(e: &ureq::Error) -> Option<SocketAddr> {
    match e {
        ureq::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<NotPublic>()).map(|n| n.0),
        _ => None,
    }
}

/// The absolute URL a `Location` header points to, from `base`.
fn resolve_location(base: &http::Uri, location: &str) -> Result<String, HostError> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    if location.is_empty() {
        return Err(fail(ErrorCode::Failed, format!("{base} redirected with an empty Location")));
    }
    Ok(format!("{scheme}://{authority}{dir}{location}"))
}

impl HttpHost for HostState {
    fn send(&mut self, request: Request) -> Result<Response, HostError> {
        if self.stopping() {
            return Err(HostError { code: ErrorCode::Failed, message: "the plugin is stopping".into() });
        }
        // Waiting on the network is not the guest's CPU, but it is bounded too: a call may
        // spend at most this long in web requests, so a guest cannot idle on slow servers
        // past every budget.
        let left = MAX_WAIT_PER_CALL.saturating_sub(self.clock.on_network);
        if left.is_zero() {
            let e = self.ctx.over_limit("web requests".into(), format!("one call may wait at most {} s on web requests", MAX_WAIT_PER_CALL.as_secs()));
            return Err(host_error(e));
        }
        let started = Instant::now();
        let out = send(&self.ctx, &self.rate, request, left.min(TIMEOUT));
        let waited = started.elapsed();
        self.clock.waiting += waited;
        self.clock.on_network += waited;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_url_they_came_from() {
        let base: http::Uri = "http://a.example.com:8080/x/y?q=1".parse().unwrap_or_else(|_| unreachable!());
        let r = |l: &str| resolve_location(&base, l).unwrap_or_else(|e| e.message);
        assert_eq!(r("https://b.example.com/z"), "https://b.example.com/z");
        assert_eq!(r("//c.example.com/z"), "http://c.example.com/z");
        assert_eq!(r("/z"), "http://a.example.com:8080/z");
        assert_eq!(r("z?w"), "http://a.example.com:8080/x/z?w");
    }

    #[test]
    fn the_rate_refuses_past_its_limit_and_audits_once() {
        let rate = Window::default();
        let take = || rate.hit(1_000, 60_000, u64::from(REQUESTS_PER_MINUTE)).0;
        for _ in 0..REQUESTS_PER_MINUTE {
            assert_eq!(take(), Use::Allowed);
        }
        assert_eq!(take(), Use::Refused { first: true });
        assert_eq!(take(), Use::Refused { first: false });
    }
}
