//! `cargo run --release -p objectos-bench [-- --quick] [--json PATH]`
//!
//! Every figure is compared with another measured in the same run (numbers on shared
//! machines drift; ratios drift less). Rows:
//! - start: 100 plugins in a dependency chain, each registering a service (memory / SQLite);
//! - service lookup: checked context lookup vs the host's unchecked lookup vs a bare map;
//! - event dispatch to 10 subscribers: host emit (no grant check) vs a plugin's checked emit vs
//!   the same with `full` auditing (flushed, rows counted) vs direct calls of 10 closures;
//! - storage: backend call vs checked context call vs `full` auditing, memory and SQLite,
//!   and the latency of one durable SQLite set;
//! - system plugins: cache set/get through the `cache` service vs a mutex-guarded map, and job
//!   throughput end to end (enqueue to completed), memory and SQLite;
//! - sandbox: a JavaScript plugin's first enable (componentize and compile) against one with
//!   its compiled code cached, and a service call and an event round trip into it against
//!   the same work done by a built-in;
//! - records: `objectos records list` on the sample CRM with lead scoring enabled, starting
//!   every plugin (as the command did) against the Records engine alone (as it does now).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)] // a measuring tool: a failed setup aborts the run

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use objectos_kernel::{HookResult, Kernel, KernelConfig, Plugin, PluginContext, async_trait};
use objectos_kernel::host::StorageKind;
use objectos_kernel::model::audit::{AuditDetail, AuditQuery};
use objectos_kernel::model::views::GrantRequest;
use objectos_kernel::runtime::storage::{MemoryStorage, StorageBackend};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::json;

mod delivery;
mod records;
mod sandbox;
use records::*;
use delivery::*;
use sandbox::*;

#[derive(Serialize)]
struct Row {
    group: &'static str,
    name: String,
    ops: u64,
    total_ms: f64,
    ns_per_op: f64,
    /// Ratio to the row's baseline (same group), if any.
    vs: Option<(String, f64)>,
}

struct Table {
    rows: Vec<Row>,
}

impl Table {
    fn add(&mut self, group: &'static str, name: impl Into<String>, ops: u64, took: Duration, baseline: Option<&str>) {
        let ns = took.as_nanos() as f64 / ops as f64;
        let vs = baseline.and_then(|b| self.rows.iter().find(|r| r.group == group && r.name == b).map(|r| (b.to_string(), ns / r.ns_per_op)));
        self.rows.push(Row { group, name: name.into(), ops, total_ms: took.as_secs_f64() * 1e3, ns_per_op: ns, vs });
    }

    fn print(&self) {
        println!("| group | workload | ops | total ms | ns/op | ratio |");
        println!("|---|---|---:|---:|---:|---|");
        let mut groups: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !groups.contains(&r.group) {
                groups.push(r.group);
            }
        }
        let ordered = groups.iter().flat_map(|g| self.rows.iter().filter(move |r| r.group == *g));
        for r in ordered {
            let ratio = r.vs.as_ref().map(|(b, x)| format!("{x:.2}x {b}")).unwrap_or_else(|| "baseline".into());
            println!("| {} | {} | {} | {:.1} | {:.1} | {} |", r.group, r.name, r.ops, r.total_ms, r.ns_per_op, ratio);
        }
    }
}

fn time<R>(f: impl FnOnce() -> R) -> (Duration, R) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// A plugin that registers the service `<prefix><n>` when enabled.
struct Provider(&'static str, usize);

#[async_trait]
impl Plugin for Provider {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        ctx.services().register(&format!("{}{}", self.0, self.1), self.1 as u64)?;
        Ok(())
    }
}

/// A plugin with no hooks.
struct Nop;

#[async_trait]
impl Plugin for Nop {}

const PERMS: &str = r#"["storage.read","storage.write","events.emit:*","events.subscribe:*","services.provide:*","services.use:*"]"#;

fn chain_manifest(i: usize) -> String {
    let deps = if i == 0 { "{}".to_string() } else { format!(r#"{{"p{:03}":"^1"}}"#, i - 1) };
    format!(r#"{{"id":"p{i:03}","name":"P{i}","version":"1.0.0","dependencies":{deps},"permissions":{PERMS}}}"#)
}

/// The rows a first start of `n` plugins writes (per plugin: its row and 6 grants in one
/// transaction, 2 state updates, then 5 audit records and 3 log lines batched as the writer
/// does), replayed with raw rusqlite on a private in-memory database: the floor under the
/// kernel's bookkeeping, without hashing, checks or hooks.
fn sqlite_floor(n: usize) -> rusqlite::Result<Duration> {
    let c = rusqlite::Connection::open_in_memory()?;
    c.execute_batch(
        "CREATE TABLE plugins(id TEXT PRIMARY KEY, manifest TEXT NOT NULL, state TEXT NOT NULL);
         CREATE TABLE grants(plugin TEXT NOT NULL, permission TEXT NOT NULL, PRIMARY KEY(plugin, permission)) WITHOUT ROWID;
         CREATE TABLE audit(id INTEGER PRIMARY KEY, plugin TEXT, action TEXT NOT NULL, details TEXT NOT NULL, hash TEXT NOT NULL);
         CREATE TABLE logs(id INTEGER PRIMARY KEY, plugin TEXT NOT NULL, message TEXT NOT NULL);",
    )?;
    let perms: Vec<String> = serde_json::from_str(PERMS).unwrap_or_default();
    let ids: Vec<String> = (0..n).map(|i| format!("p{i:03}")).collect();
    let t = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let tx = c.unchecked_transaction()?;
        tx.prepare_cached("INSERT INTO plugins VALUES (?1, ?2, 'installed')")?.execute(rusqlite::params![id, chain_manifest(i)])?;
        for p in &perms {
            tx.prepare_cached("INSERT INTO grants VALUES (?1, ?2)")?.execute(rusqlite::params![id, p])?;
        }
        tx.commit()?;
    }
    for state in ["loaded", "enabled"] {
        for id in &ids {
            c.prepare_cached("UPDATE plugins SET state=?2 WHERE id=?1")?.execute(rusqlite::params![id, state])?;
        }
    }
    let tx = c.unchecked_transaction()?;
    for id in &ids {
        for a in ["plugin.installed", "permission.granted", "plugin.loaded", "plugin.enabled", "service.registered"] {
            tx.prepare_cached("INSERT INTO audit(plugin, action, details, hash) VALUES (?1, ?2, '{}', ?3)")?.execute(rusqlite::params![id, a, "0".repeat(64)])?;
        }
        for m in ["installed", "loaded", "enabled"] {
            tx.prepare_cached("INSERT INTO logs(plugin, message) VALUES (?1, ?2)")?.execute(rusqlite::params![id, m])?;
        }
    }
    tx.commit()?;
    Ok(t.elapsed())
}

/// Fresh kernels started per start row; the median counts.
const STARTS: usize = 5;

/// The run that took the median time, with its kernel.
fn median(mut runs: Vec<(Kernel, Duration)>) -> (Kernel, Duration) {
    runs.sort_by_key(|(_, d)| *d);
    runs.swap_remove(runs.len() / 2)
}

async fn chain_kernel(config: KernelConfig, n: usize) -> anyhow::Result<(Kernel, Duration)> {
    let k = Kernel::open(config)?;
    for i in 0..n {
        k.register_builtin(&chain_manifest(i), Arc::new(Provider("svc", i)))?;
    }
    let t = Instant::now();
    k.start().await?;
    let started = t.elapsed();
    k.enable(&format!("p{:03}", n - 1), true).await?;
    let took = t.elapsed();
    if std::env::var_os("OBJECTOS_BENCH_DEBUG").is_some() {
        eprintln!("start(): {started:?}, enable chain: {:?}", took - started);
    }
    Ok((k, took))
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    // The records rows open data directories as the hosts do, which componentize JavaScript in
    // a child process of this program.
    if let Some(code) = objectos_builtins::componentize_child_main() {
        return Ok(code);
    }
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(run())?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json_path = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned();
    let scale = if quick { 10 } else { 1 };
    let mut t = Table { rows: Vec::new() };

    // ---- start: the median of five fresh kernels (the JavaScript harness does the same)
    let mut runs = Vec::new();
    for _ in 0..STARTS {
        runs.push(chain_kernel(KernelConfig::in_memory(), 100).await?);
    }
    let (mem, took) = median(runs);
    t.add("start", "100-plugin chain, memory", 100, took, None);
    let mut runs = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..STARTS {
        let dir = tempfile::tempdir()?;
        runs.push(chain_kernel(KernelConfig::new(dir.path()).storage(StorageKind::Sqlite), 100).await?);
        dirs.push(dir);
    }
    let (_disk, took) = median(runs);
    t.add("start", "100-plugin chain, SQLite data dir", 100, took, Some("100-plugin chain, memory"));
    let mut floors: Vec<Duration> = (0..STARTS).map(|_| sqlite_floor(100)).collect::<Result<_, _>>()?;
    floors.sort();
    t.add("start", "floor: the rows a 100-plugin start writes, raw rusqlite in memory", 100, floors[STARTS / 2], Some("100-plugin chain, memory"));

    if !quick {
        let (_dag, took) = dag_kernel(1000).await?;
        t.add("start", "1,000-plugin random DAG, memory", 1000, took, Some("100-plugin chain, memory"));
    }

    // ---- scale
    let n_res = 10_000 / scale;
    let set: objectos_kernel::model::resolve::ManifestSet = (0..n_res)
        .map(|i| {
            let m = objectos_kernel::model::manifest::Manifest::parse(dag_manifest(i, 7).as_bytes(), "bench").expect("bench manifest");
            (m.id.clone(), Arc::new(m))
        })
        .collect();
    let (d, (order, errors)) = time(|| objectos_kernel::model::resolve::resolve_all(&set));
    assert!(errors.is_empty() && order.len() == n_res, "the DAG resolves");
    t.add("scale", format!("resolve {n_res} plugins (random DAG)"), n_res as u64, d, None);
    let n_svc = 100_000 / scale;
    let reg = mem.context("p000")?;
    let (d, _) = time(|| for i in 0..n_svc { reg.services().register(&format!("bulk{i}"), i as u64).ok(); });
    t.add("scale", format!("register {n_svc} services"), n_svc as u64, d, None);

    // ---- service lookup
    let n = 1_000_000 / scale as u64;
    let names: Vec<String> = (0..100).map(|i| format!("svc{i}")).collect();
    let mut floor: FxHashMap<String, Arc<u64>> = FxHashMap::default();
    let mut std_floor: std::collections::HashMap<String, Arc<u64>> = Default::default();
    for (i, nm) in names.iter().enumerate() {
        floor.insert(nm.clone(), Arc::new(i as u64));
        std_floor.insert(nm.clone(), Arc::new(i as u64));
    }
    let (d, _) = time(|| for i in 0..n { black_box(std_floor.get(&names[(i % 100) as usize]).cloned()); });
    t.add("lookup", "floor: std HashMap get + Arc clone", n, d, None);
    let (d, _) = time(|| for i in 0..n { black_box(floor.get(&names[(i % 100) as usize]).cloned()); });
    t.add("lookup", "floor: FxHashMap get + Arc clone", n, d, Some("floor: std HashMap get + Arc clone"));
    let (d, _) = time(|| for i in 0..n { black_box(mem.service::<u64>(&names[(i % 100) as usize]).ok()); });
    t.add("lookup", "host lookup (no grant check)", n, d, Some("floor: std HashMap get + Arc clone"));
    let ctx = mem.context("p099")?;
    let (d, _) = time(|| for i in 0..n { black_box(ctx.services().get::<u64>(&names[(i % 100) as usize]).ok()); });
    t.add("lookup", "plugin lookup (grant checked)", n, d, Some("host lookup (no grant check)"));
    let handles: Vec<objectos_kernel::plugin::ServiceHandle<u64>> = names.iter().map(|nm| ctx.services().handle::<u64>(nm)).collect::<Result<_, _>>()?;
    let (d, _) = time(|| for i in 0..n { black_box(handles[(i % 100) as usize].get().ok()); });
    t.add("lookup", "plugin typed handle get (grant checked)", n, d, Some("floor: std HashMap get + Arc clone"));
    let mut handles = handles;
    let (d, _) = time(|| for i in 0..n { black_box(handles[(i % 100) as usize].get_ref().ok()); });
    t.add("lookup", "plugin typed handle get_ref (grant checked, borrowed)", n, d, Some("floor: std HashMap get + Arc clone"));

    // ---- event dispatch
    let n = 100_000 / scale as u64;
    let count = Arc::new(AtomicUsize::new(0));
    for i in 0..10 {
        let c = count.clone();
        mem.context(&format!("p{i:03}"))?.events().on("bench.tick", move |_| { c.fetch_add(1, Ordering::Relaxed); Ok(()) })?;
    }
    let closures: Vec<Box<dyn Fn(&serde_json::Value) + Send + Sync>> =
        (0..10).map(|_| { let c = count.clone(); Box::new(move |_: &serde_json::Value| { c.fetch_add(1, Ordering::Relaxed); }) as Box<dyn Fn(&serde_json::Value) + Send + Sync> }).collect();
    let payload = json!({ "n": 1 });
    let (d, _) = time(|| for _ in 0..n { for f in &closures { f(black_box(&payload)); } });
    t.add("dispatch", "floor: 10 direct closure calls", n, d, None);
    // What every emit row below also does per event: build the payload, share it, drop it.
    let (d, _) = time(|| for _ in 0..n { let p = Arc::new(json!({ "n": 1 })); for f in &closures { f(black_box(&p)); } });
    t.add("dispatch", "floor: build the payload + 10 direct closure calls", n, d, Some("floor: 10 direct closure calls"));
    let (d, _) = time(|| for _ in 0..n { black_box(mem.emit("bench.tick", json!({ "n": 1 })).ok()); });
    t.add("dispatch", "host emit to 10 (no grant check)", n, d, Some("floor: build the payload + 10 direct closure calls"));
    let emitter = mem.context("p050")?;
    let (d, _) = time(|| for _ in 0..n { black_box(emitter.events().emit("bench.tick", json!({ "n": 1 })).ok()); });
    t.add("dispatch", "plugin emit to 10 (grant checked)", n, d, Some("host emit to 10 (no grant check)"));
    let before = count.load(Ordering::Relaxed);
    let e2 = emitter.clone();
    let (d, _) = time(|| std::thread::scope(|s| { s.spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { for _ in 0..n { black_box(e2.events().emit_async("bench.tick", json!({ "n": 1 })).await.ok()); } });
    }); }));
    t.add("dispatch", "plugin emit_async to 10, awaited", n, d, Some("plugin emit to 10 (grant checked)"));
    assert_eq!(count.load(Ordering::Relaxed) - before, 10 * n as usize, "every event delivered");
    mem.set_audit_detail(AuditDetail::Full)?;
    let audit_before = mem.audit(&AuditQuery { action: Some("event.emitted".into()), ..Default::default() })?.len();
    let (d, _) = time(|| {
        for _ in 0..n { black_box(emitter.events().emit("bench.tick", json!({ "n": 1 })).ok()); }
        mem.flush();
    });
    t.add("dispatch", "plugin emit to 10, full audit (flushed)", n, d, Some("plugin emit to 10 (grant checked)"));
    let rows = mem.audit(&AuditQuery { action: Some("event.emitted".into()), ..Default::default() })?.len() - audit_before;
    assert_eq!(rows as u64, n, "no audit record lost");
    mem.set_audit_detail(AuditDetail::Lifecycle)?;

    // ---- storage
    let n = 100_000 / scale as u64;
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
    let backend = MemoryStorage::new();
    let value = json!({ "name": "Ada", "n": 1 });
    let charge = objectos_kernel::runtime::storage::Charge { owner: "p", limit: None };
    let (d, _) = time(|| for k in &keys { backend.set("p", k, value.clone(), charge).ok(); });
    t.add("storage", "memory backend set (no check, value cloned)", n, d, None);
    let sctx = mem.context("p010")?;
    let (d, _) = time(|| for k in &keys { sctx.storage().set(k, value.clone()).ok(); });
    t.add("storage", "memory set via context (checked)", n, d, Some("memory backend set (no check, value cloned)"));
    let (d, _) = time(|| for k in &keys { black_box(sctx.storage().get(k).ok()); });
    t.add("storage", "memory get via context (checked)", n, d, Some("memory backend set (no check, value cloned)"));
    mem.set_audit_detail(AuditDetail::Full)?;
    let (d, _) = time(|| { for k in &keys { sctx.storage().set(k, value.clone()).ok(); } mem.flush(); });
    t.add("storage", "memory set, full audit (flushed)", n, d, Some("memory set via context (checked)"));
    mem.set_audit_detail(AuditDetail::Lifecycle)?;
    let dctx = _disk.context("p010")?;
    let sn = n / 10;
    let (d, _) = time(|| for k in keys.iter().take(sn as usize) { dctx.storage().set(k, value.clone()).ok(); });
    t.add("storage", "SQLite set via context (each durable)", sn, d, Some("memory set via context (checked)"));
    let (d, _) = time(|| for k in keys.iter().take(sn as usize) { black_box(dctx.storage().get(k).ok()); });
    t.add("storage", "SQLite get via context", sn, d, Some("memory get via context (checked)"));
    let mut lat: Vec<Duration> = (0..1000).map(|i| { let t0 = Instant::now(); dctx.storage().set(&format!("lat{i}"), value.clone()).ok(); t0.elapsed() }).collect();
    lat.sort();
    println!("Durable SQLite set latency (WAL, synchronous=NORMAL): p50 {:?}, p99 {:?}\n", lat[500], lat[990]);

    storage_quota(&mut t, scale).await?;
    system_plugins(&mut t, scale).await?;
    sandbox(&mut t, scale).await?;
    js_compare(&mut t, scale);
    records_list(&mut t, scale).await?;
    delivery(&mut t, scale).await?;
    let rss = peak_rss_kib();
    let serve_rss = serve_idle_rss().await?;
    t.print();
    match serve_rss {
        Some(kib) => println!("\n`objectos serve` idle with the sample packages and metrics enabled: {:.1} MiB resident", kib as f64 / 1024.0),
        None => println!("\n`objectos serve` idle: not measured (build the release `objectos` binary beside this one)"),
    }
    match rss {
        Some(kib) => println!("\nPeak RSS of this process (kernels with 100 plugins enabled, plus the workloads above): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("\nPeak RSS: not available on this platform"),
    }
    if let Some(p) = json_path {
        std::fs::write(&p, serde_json::to_string_pretty(&t.rows)?)?;
        eprintln!("wrote {p}");
    }
    Ok(())
}

/// A package's storage write, its quota checked, with few and with many keys held: the
/// running total makes the check cost the same (it once summed every row of the package).
async fn storage_quota(t: &mut Table, scale: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let k = Kernel::open(KernelConfig::new(dir.path().join("data")).storage(StorageKind::Sqlite))?;
    k.start().await?;
    let pkg = dir.path().join("packrat");
    std::fs::create_dir_all(&pkg)?;
    std::fs::write(pkg.join("plugin.json"), r#"{"id":"bench.packrat","name":"Packrat","version":"1.0.0","permissions":["storage.read","storage.write"]}"#)?;
    let id = k.install_package(&pkg, false).await?.id;
    k.grant(&id, GrantRequest::All)?;
    k.enable(&id, false).await?;
    let ctx = k.context(&id)?;
    let value = json!({ "name": "Ada", "n": 1 });
    let many = 100_000 / scale;
    let mut held = 0;
    let mut rows = Vec::new();
    for target in [1_000, many] {
        while held < target {
            ctx.storage().set(&format!("fill-{held}"), value.clone())?;
            held += 1;
        }
        let (d, _) = time(|| for i in 0..1_000 { ctx.storage().set(&format!("fill-{i}"), value.clone()).ok(); });
        rows.push((target, d));
    }
    for (i, (target, d)) in rows.into_iter().enumerate() {
        let name = format!("SQLite set by a package, quota checked, {}k keys held", target / 1_000);
        let first = "SQLite set by a package, quota checked, 1k keys held";
        t.add("storage", name, 1_000, d, (i > 0).then_some(first));
    }
    k.shutdown().await;
    Ok(())
}

/// Cache get/set through the service and job throughput, end to end.
async fn system_plugins(t: &mut Table, scale: usize) -> anyhow::Result<()> {
    // Floor: a mutex-guarded map with the same key layout the cache uses.
    let n = 100_000 / scale as u64;
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
    let value = json!({ "name": "Ada", "n": 1 });
    let map: std::sync::Mutex<FxHashMap<String, serde_json::Value>> = Default::default();
    let (d, _) = time(|| for k in &keys { map.lock().unwrap().insert(format!("p\0{k}"), value.clone()); });
    t.add("cache", "floor: Mutex<FxHashMap> insert", n, d, None);
    let (d, _) = time(|| for k in &keys { black_box(map.lock().unwrap().get(&format!("p\0{k}")).cloned()); });
    t.add("cache", "floor: Mutex<FxHashMap> get + clone", n, d, None);

    let mut jobs_rows = Vec::new();
    for (label, config, count) in [("memory", KernelConfig::in_memory(), 5_000 / scale), ("SQLite data dir", KernelConfig::new(tempfile::tempdir()?.keep()).storage(StorageKind::Sqlite), 1_000 / scale)] {
        let k = Kernel::open(config)?;
        objectos_cache::register(&k)?;
        objectos_jobs::register(&k)?;
        let deps = format!(r#"{{"{}":"^0.1","{}":"^0.1"}}"#, objectos_cache::ID, objectos_jobs::ID);
        k.register_builtin(&format!(r#"{{"id":"b.user","name":"B","version":"1.0.0","dependencies":{deps},"permissions":["services.use:cache","services.use:jobs"]}}"#), Arc::new(Nop))?;
        k.start().await?;
        k.set_config(objectos_jobs::ID, json!({ "concurrency": 8 }))?;
        k.enable("b.user", true).await?;
        let ctx = k.context("b.user")?;
        if label == "memory" {
            let cache = ctx.services().get::<objectos_cache::Cache>(objectos_cache::SERVICE)?;
            let (d, _) = time(|| for k in &keys { cache.set(&ctx, k, value.clone(), None).ok(); });
            t.add("cache", "cache service set (namespaced, LRU, size counted)", n, d, Some("floor: Mutex<FxHashMap> insert"));
            let (d, _) = time(|| for k in &keys { black_box(cache.get(&ctx, k)); });
            t.add("cache", "cache service get", n, d, Some("floor: Mutex<FxHashMap> get + clone"));
        }
        let jobs = ctx.services().get::<objectos_jobs::Jobs>(objectos_jobs::SERVICE)?;
        let done = Arc::new(AtomicUsize::new(0));
        let c = done.clone();
        jobs.handle(&ctx, "work", move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        })?;
        let start = Instant::now();
        for i in 0..count {
            jobs.enqueue(&ctx, objectos_jobs::JobSpec::new("work", json!({ "i": i })))?;
        }
        while done.load(Ordering::Relaxed) < count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = start.elapsed();
        jobs_rows.push((label, count, took));
        k.shutdown().await;
    }
    for (label, count, took) in jobs_rows {
        let baseline = (label != "memory").then_some("jobs end to end, memory (8 at a time)");
        t.add("jobs", format!("jobs end to end, {label} (8 at a time)"), count as u64, took, baseline);
        println!("Job throughput, {label}: {:.0} jobs/s (enqueue, claim, run, complete; {count} jobs)", count as f64 / took.as_secs_f64());
    }
    println!();
    Ok(())
}

/// A pseudo-random DAG: plugin i depends on up to `fan` earlier plugins (deterministic).
fn dag_manifest(i: usize, fan: usize) -> String {
    let mut seed = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut deps = Vec::new();
    for _ in 0..fan.min(i) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let d = (seed % i as u64) as usize;
        let dep = format!("\"d{d:05}\":\"^1\"");
        if !deps.contains(&dep) {
            deps.push(dep);
        }
    }
    format!(r#"{{"id":"d{i:05}","name":"D{i}","version":"1.0.0","dependencies":{{{}}},"permissions":{PERMS}}}"#, deps.join(","))
}

async fn dag_kernel(n: usize) -> anyhow::Result<(Kernel, Duration)> {
    let k = Kernel::open(KernelConfig::in_memory())?;
    for i in 0..n {
        k.register_builtin(&dag_manifest(i, 3), Arc::new(Provider("dag", i)))?;
    }
    let t = Instant::now();
    k.start().await?;
    for i in 0..n {
        k.enable(&format!("d{i:05}"), false).await?;
    }
    Ok((k, t.elapsed()))
}

/// Peak resident set size (VmHWM) from /proc, in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
