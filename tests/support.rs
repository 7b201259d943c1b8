//! Helpers for the integration tests: a scriptable test plugin, manifest builders, and
//! waiting on a condition with a deadline (never a bare sleep).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use objectos_kernel::{HookResult, Kernel, KernelConfig, Plugin, PluginContext, async_trait, semver::Version};

/// A hook body a test supplies.
pub type HookFn = Arc<dyn Fn(&PluginContext) -> HookResult + Send + Sync>;

/// A plugin whose hooks record their calls and run optional closures.
#[derive(Default, Clone)]
pub struct Probe {
    /// `"<id>:<hook>"` in call order, shared between probes of one test.
    pub calls: Arc<Mutex<Vec<String>>>,
    /// Body of onLoad.
    pub load: Option<HookFn>,
    /// Body of onEnable.
    pub enable: Option<HookFn>,
    /// Body of onDisable.
    pub disable: Option<HookFn>,
    /// Body of onInstall.
    pub install: Option<HookFn>,
    /// Makes onEnable sleep this long (for timeout tests).
    pub enable_delay: Option<Duration>,
    /// (from, to) seen by onUpgrade.
    pub upgraded: Arc<Mutex<Option<(Version, Version)>>>,
}

impl Probe {
    /// A probe sharing `calls`.
    pub fn with_calls(calls: &Arc<Mutex<Vec<String>>>) -> Self {
        Probe { calls: calls.clone(), ..Default::default() }
    }

    fn record(&self, ctx: &PluginContext, hook: &str) {
        self.calls.lock().unwrap().push(format!("{}:{hook}", ctx.id()));
    }

    fn run(&self, ctx: &PluginContext, hook: &str, f: &Option<HookFn>) -> HookResult {
        self.record(ctx, hook);
        match f {
            Some(f) => f(ctx),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Plugin for Probe {
    async fn on_install(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onInstall", &self.install)
    }
    async fn on_load(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onLoad", &self.load)
    }
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        if let Some(d) = self.enable_delay {
            tokio::time::sleep(d).await;
        }
        self.run(ctx, "onEnable", &self.enable)
    }
    async fn on_disable(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onDisable", &self.disable)
    }
    async fn on_unload(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onUnload", &None)
    }
    async fn on_uninstall(&self, ctx: &PluginContext) -> HookResult {
        self.run(ctx, "onUninstall", &None)
    }
    async fn on_upgrade(&self, ctx: &PluginContext, from: &Version, to: &Version) -> HookResult {
        *self.upgraded.lock().unwrap() = Some((from.clone(), to.clone()));
        self.run(ctx, "onUpgrade", &None)
    }
}

/// A manifest with the given dependencies and required permissions.
pub fn manifest(id: &str, version: &str, deps: &[(&str, &str)], perms: &[&str]) -> String {
    let deps: serde_json::Map<String, serde_json::Value> = deps.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
    serde_json::json!({ "id": id, "name": id, "version": version, "dependencies": deps, "permissions": perms }).to_string()
}

/// A kernel in memory.
pub fn memory_kernel() -> Kernel {
    Kernel::open(KernelConfig::in_memory()).expect("in-memory kernel")
}

/// Wait until `cond` holds, failing the test after `secs` seconds.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Write a package folder with `plugin.json` and extra files.
pub fn package_dir(root: &std::path::Path, name: &str, manifest: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.json"), manifest).unwrap();
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

/// A request the [`LoopbackServer`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What the [`LoopbackServer`] answers: status, extra headers, body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// An HTTP/1.1 server on 127.0.0.1 for tests of code that makes web requests: each
/// connection is one request, answered by `answer` and closed; every request is recorded.
/// It runs until the test process ends.
pub struct LoopbackServer {
    pub port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl LoopbackServer {
    pub fn start(answer: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> LoopbackServer {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("a loopback port: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => continue,
                });
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((n, v)) = h.split_once(':') {
                        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse::<usize>().ok()).unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let request = Received { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() };
                let (status, extra, body) = answer(&request);
                log.lock().unwrap_or_else(|p| p.into_inner()).push(request);
                let mut head = format!("HTTP/1.1 {status} Answer\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
                for (n, v) in extra {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let mut out = stream;
                let _ = out.write_all(head.as_bytes()).and_then(|_| out.write_all(&body));
            }
        });
        LoopbackServer { port, received }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}
