//! The sandbox's rows: calls into package code (JavaScript and a native service for the
//! floor), web request checks, and JavaScript against a native engine.

use super::*;

/// A built-in answering `echo.say` with JSON, the same work as the JS guest's service.
pub(crate) struct NativeEcho;

impl objectos_kernel::plugin::JsonService for NativeEcho {
    fn call(&self, caller: &PluginContext, _method: &str, args: serde_json::Value) -> objectos_kernel::Result<serde_json::Value> {
        Ok(json!({ "said": args["text"], "caller": caller.id(), "greeting": "hello" }))
    }
}

#[async_trait]
impl Plugin for NativeEcho {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        let face = Arc::new(NativeEcho);
        ctx.services().register_arc("native.echo", face.clone())?;
        ctx.services().expose("native.echo", face)?;
        // The same handler as the guest's: keep the payload, answer with a pong.
        let c = ctx.clone();
        ctx.events().on("native.ping", move |e| {
            c.storage().set("last", (*e.payload).clone())?;
            c.events().emit("native.pong", json!({ "got": *e.payload }))?;
            Ok(())
        })?;
        Ok(())
    }
}

/// Wait until `count` reaches `n`.
pub(crate) async fn reach(count: &AtomicUsize, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::Relaxed) < n {
        anyhow::ensure!(Instant::now() < deadline, "no answer to event {n} within 30 s");
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Packages with code: the JS echo guest of the sandbox's tests against a built-in doing the
/// same, and its enable with and without its compiled code cached.
pub(crate) async fn sandbox(t: &mut Table, scale: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cache = objectos_sandbox::Cache::at(dir.path().join("cache"));
    let k = Kernel::open(KernelConfig::new(dir.path().join("data")).runtime(Arc::new(objectos_sandbox::Runtime::new(cache))))?;
    k.register_builtin(r#"{"id":"b.native","name":"Native","version":"1.0.0","permissions":["services.provide:native.echo","events.subscribe:native.ping","events.emit:native.pong","storage.read","storage.write"]}"#, Arc::new(NativeEcho))?;
    k.register_builtin(&format!(r#"{{"id":"b.caller","name":"Caller","version":"1.0.0","permissions":{PERMS}}}"#), Arc::new(Nop))?;
    k.start().await?;
    // The round trips below emit thousands of events a second for the package; its quota
    // (200 a second by default) would refuse them, which is a different measurement.
    k.set_quotas(objectos_kernel::model::quota::Quotas { events_per_second: 1_000_000, ..k.quotas() })?;
    k.grant("b.native", objectos_kernel::model::views::GrantRequest::All)?;
    k.enable("b.native", false).await?;
    k.grant("b.caller", objectos_kernel::model::views::GrantRequest::All)?;
    k.enable("b.caller", false).await?;
    let pkg = dir.path().join("echo");
    std::fs::create_dir_all(&pkg)?;
    std::fs::write(pkg.join("index.js"), include_str!("../../plugins/sandbox/tests/guests/echo.js"))?;
    std::fs::write(pkg.join("plugin.json"), r#"{"id":"t.echo","name":"Echo","version":"1.0.0","main":"index.js","provides":{"events":["t.echo.pong"],"services":["echo"]},"permissions":["storage.read","storage.write","events.subscribe:t.echo.ping","events.emit:t.echo.pong","services.provide:echo"]}"#)?;
    // Install checks the code, which componentizes and compiles it into the cache.
    let (first, _) = time_async(k.install_package(&pkg, false)).await;
    k.grant("t.echo", objectos_kernel::model::views::GrantRequest::All)?;
    let (enable, _) = time_async(k.enable("t.echo", false)).await;
    println!("Sandbox: a JS package's install (componentize + compile) took {first:?}; its enable with the compiled code cached {enable:?}");
    t.add("sandbox", "JS package install: componentize + compile (once)", 1, first, None);
    t.add("sandbox", "JS package enable, compiled code cached (load + enable)", 1, enable, Some("JS package install: componentize + compile (once)"));

    let ctx = k.context("b.caller")?;
    let n = 10_000 / scale;
    let (native, guest) = tokio::task::spawn_blocking(move || {
        let (native, _) = time(|| for i in 0..n { black_box(ctx.services().call("native.echo", "say", json!({ "text": i })).unwrap()); });
        let (guest, _) = time(|| for i in 0..n { black_box(ctx.services().call("echo", "say", json!({ "text": i })).unwrap()); });
        (native, guest)
    })
    .await?;
    t.add("sandbox", "service call with JSON, built-in", n as u64, native, None);
    t.add("sandbox", "service call with JSON, into the JS guest", n as u64, guest, Some("service call with JSON, built-in"));

    let ctx = k.context("b.caller")?;
    for (ping, pong, label) in [("native.ping", "native.pong", "built-in"), ("t.echo.ping", "t.echo.pong", "the JS guest")] {
        let heard = Arc::new(AtomicUsize::new(0));
        let h = heard.clone();
        let sub = ctx.events().on(pong, move |_| {
            h.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })?;
        let m = 2_000 / scale;
        let start = Instant::now();
        for i in 0..m {
            ctx.events().emit(ping, json!({ "n": i }))?;
            // One at a time: a round trip, not a queue's throughput.
            reach(&heard, i + 1).await?;
        }
        let baseline = (label != "built-in").then_some("event round trip (handler stores and answers), built-in");
        t.add("sandbox", format!("event round trip (handler stores and answers), {label}"), m as u64, start.elapsed(), baseline);
        ctx.events().off(sub);
    }

    // A granted web request to a loopback server (a new connection each, as the server closes
    // it): from the guest (grant check, resolver check, ureq, JSON both ways) against the
    // same request made natively with ureq.
    let server = objectos_tests::LoopbackServer::start(|_| (200, vec![], b"{\"ok\":true}".to_vec()));
    let fetch = dir.path().join("fetch");
    std::fs::create_dir_all(&fetch)?;
    std::fs::write(fetch.join("index.js"), "export function onEnable(ctx) { ctx.services.register(\"fetch\", { get: (a) => ctx.http.get(a.url).status }); }")?;
    let manifest = json!({ "id": "t.fetch", "name": "Fetch", "version": "1.0.0", "main": "index.js", "provides": { "services": ["fetch"] }, "permissions": ["services.provide:fetch", format!("network.connect:127.0.0.1:{}", server.port)] });
    std::fs::write(fetch.join("plugin.json"), manifest.to_string())?;
    k.install_package(&fetch, false).await?;
    k.grant("t.fetch", objectos_kernel::model::views::GrantRequest::All)?;
    k.enable("t.fetch", false).await?;
    let ctx = k.context("b.caller")?;
    let url = server.url("/ping");
    // Under the plugin's rate limit (120 requests a minute), which would refuse the rest.
    let r = (100 / scale).max(1);
    let (native, guest) = tokio::task::spawn_blocking(move || -> anyhow::Result<(Duration, Duration)> {
        let agent = ureq::Agent::new_with_defaults();
        let (native, out) = time(|| -> anyhow::Result<()> {
            for _ in 0..r {
                black_box(agent.get(&url).call()?.body_mut().read_to_string()?);
            }
            Ok(())
        });
        out?;
        let (guest, out) = time(|| (0..r).map(|_| ctx.services().call("fetch", "get", json!({ "url": url }))).collect::<Result<Vec<_>, _>>());
        anyhow::ensure!(out?.iter().all(|s| s == &json!(200)), "the guest's requests did not all succeed");
        Ok((native, guest))
    })
    .await??;
    t.add("sandbox", "web request to a loopback server, native (ureq)", r as u64, native, None);
    t.add("sandbox", "web request to a loopback server, from the JS guest", r as u64, guest, Some("web request to a loopback server, native (ureq)"));
    k.shutdown().await;
    Ok(())
}

pub(crate) async fn time_async<R>(f: impl std::future::Future<Output = R>) -> (Duration, R) {
    let t = Instant::now();
    let r = f.await;
    (t.elapsed(), r)
}

/// The same workloads on `@objectstack/core` (LiteKernel and ObjectKernel), run by Node in this
/// invocation through our own harness. Skipped, with a note, when Node or the package is absent.
pub(crate) fn js_compare(t: &mut Table, scale: usize) {
    let skip = |why: &str| println!("JavaScript comparison skipped: {why}\n");
    if std::process::Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        return skip("node is not installed");
    }
    let Ok(dir) = tempfile::tempdir() else { return skip("no temporary folder") };
    let installed = std::process::Command::new("npm")
        .args(["install", "--prefix"])
        .arg(dir.path())
        .args(["@objectstack/core@17.4.0", "--no-audit", "--no-fund", "--silent"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !installed {
        return skip("`npm install @objectstack/core@17.4.0` failed (offline?)");
    }
    let harness = dir.path().join("harness.mjs");
    if std::fs::write(&harness, include_str!("../js/harness.mjs")).is_err() {
        return skip("could not write the harness");
    }
    let core = dir.path().join("node_modules/@objectstack/core/dist/index.js");
    for (kind, label) in [("lite", "@objectstack/core LiteKernel"), ("object", "@objectstack/core ObjectKernel")] {
        let out = std::process::Command::new("node").arg(&harness).arg(kind).arg(&core).arg(scale.to_string()).output();
        let parsed = out.ok().filter(|o| o.status.success()).and_then(|o| {
            let line = String::from_utf8_lossy(&o.stdout).lines().last().map(str::to_string)?;
            serde_json::from_str::<serde_json::Value>(&line).ok()
        });
        let Some(v) = parsed else {
            println!("{label}: the harness failed; its rows are missing\n");
            continue;
        };
        let ms = |k: &str| Duration::from_secs_f64(v[k].as_f64().unwrap_or(f64::NAN) / 1e3);
        let count = |k: &str| v[k].as_u64().unwrap_or(1);
        t.add("start", format!("{label}, 100-plugin chain"), 100, ms("startMs"), Some("100-plugin chain, memory"));
        t.add("lookup", format!("{label}, getService"), count("lookups"), ms("lookupMs"), Some("plugin typed handle get_ref (grant checked, borrowed)"));
        t.add("dispatch", format!("{label}, trigger to 10, awaited"), count("events"), ms("dispatchMs"), Some("plugin emit_async to 10, awaited"));
    }
}
