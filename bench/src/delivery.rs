//! The delivery rows: events to a subscriber in this process (the in-memory path) against the
//! same through the delivery queue (queued in the database as they are emitted, handed out by
//! the runner, each deleted once handled), and `objectos serve`'s resident memory when idle
//! with the sample packages enabled.

use super::*;

/// Events a second to a subscriber, in memory and durable, on a data directory.
pub(crate) async fn delivery(t: &mut Table, scale: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let k = Kernel::open(KernelConfig::new(dir.path()))?;
    for id in ["b.emit", "b.sub"] {
        k.register_builtin(&format!(r#"{{"id":"{id}","name":"{id}","version":"1.0.0","permissions":{PERMS}}}"#), Arc::new(Nop))?;
    }
    k.start().await?;
    anyhow::ensure!(k.is_runner(), "the benchmark's kernel must be its data directory's runner");
    for id in ["b.emit", "b.sub"] {
        k.grant(id, objectos_kernel::model::views::GrantRequest::All)?;
        k.enable(id, false).await?;
    }
    let (emit, sub) = (k.context("b.emit")?, k.context("b.sub")?);
    let n = 20_000 / scale;
    let memory = Arc::new(AtomicUsize::new(0));
    let m = memory.clone();
    sub.events().on_async("bench.memory", move |_| {
        m.fetch_add(1, Ordering::Relaxed);
        async { Ok(()) }
    })?;
    let durable = Arc::new(AtomicUsize::new(0));
    let d = durable.clone();
    sub.events().on_durable("bench", "bench.durable", move |_| {
        d.fetch_add(1, Ordering::Relaxed);
        async { Ok(()) }
    })?;
    let mut took = Vec::new();
    for (topic, count) in [("bench.memory", &memory), ("bench.durable", &durable)] {
        let start = Instant::now();
        for i in 0..n {
            emit.events().emit(topic, json!({ "n": i }))?;
        }
        reach(count, n).await?;
        took.push(start.elapsed());
    }
    let base = "event to a subscriber, in memory (handled in this process)";
    t.add("delivery", base, n as u64, took[0], None);
    t.add("delivery", "event to a subscriber, durable (queued with the emit, delivered by the runner)", n as u64, took[1], Some(base));
    println!("Delivery: {:.0} events/s in memory, {:.0} events/s durable", n as f64 / took[0].as_secs_f64(), n as f64 / took[1].as_secs_f64());
    k.shutdown().await;
    Ok(())
}

/// `objectos serve` (the release binary beside this one) on a data directory with the sample
/// packages and the metrics plugin enabled: its resident memory once it has been idle a few
/// seconds. `None` when the binary is not built.
pub(crate) async fn serve_idle_rss() -> anyhow::Result<Option<u64>> {
    let bin = std::env::current_exe()?.with_file_name("objectos");
    if !bin.exists() {
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let k = objectos_builtins::host::open(dir.path())?;
    objectos_builtins::host::start(&k).await?;
    let packages = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages");
    for p in ["contacts", "crm", "invoicing", "lead-scoring"] {
        let out = k.install_package(&packages.join(p), false).await?;
        k.grant(&out.id, objectos_kernel::model::views::GrantRequest::All)?;
        k.enable(&out.id, true).await?;
    }
    k.enable("com.objectos.metrics", true).await?;
    k.shutdown().await;
    drop(k);
    let mut child = std::process::Command::new(&bin)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?), &mut line)?;
    anyhow::ensure!(line.starts_with("listening on "), "serve printed {line:?}");
    // Idle: its plugins started, nothing asked of it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok());
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    Ok(kib)
}
