//! `objectos serve` as an admin runs it: the real binary on a fresh data directory, stopped by
//! a signal as a service manager stops it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long anything here may take: wide, for a slow machine; the tests wait on conditions.
const DEADLINE: Duration = Duration::from_secs(120);

fn objectos(data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_objectos"));
    c.arg("--data-dir").arg(data);
    c
}

/// A running `serve` and the address it printed (`HOST:PORT`).
struct Served {
    child: Child,
    addr: String,
}

/// A test that fails does not leave its service running.
impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `serve` (with `extra` arguments).
fn serve(data: &std::path::Path, extra: &[&str]) -> Child {
    objectos(data).args(["serve", "--listen", "127.0.0.1:0"]).args(extra).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap()
}

/// Wait for the `listening on http://ADDR` line.
fn listening(mut child: Child) -> Served {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(DEADLINE).expect("serve prints its address");
    let addr = line.strip_prefix("listening on http://").unwrap_or_else(|| panic!("first line: {line}")).to_string();
    Served { child, addr }
}

/// `GET path`: the status and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

/// Wait for the process to exit; its exit code.
fn exited(child: &mut Child) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the process did not exit within {DEADLINE:?}");
}

#[test]
fn serve_runs_until_terminated_and_one_process_runs_a_data_directory() {
    let data = tempfile::tempdir().unwrap();
    assert!(objectos(data.path()).args(["plugins", "enable", "com.objectos.metrics"]).status().unwrap().success());
    let mut served = listening(serve(data.path(), &[]));
    let pid = served.child.id();

    let (status, body) = get(&served.addr, "/health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((health["status"].as_str(), health["pid"].as_u64()), (Some("ok"), Some(u64::from(pid))), "{health}");
    assert!(health["enabled"].as_u64().unwrap() >= 1, "the metrics plugin runs in the service: {health}");
    let (status, metrics) = get(&served.addr, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("objectos_plugin_events_emitted_total"), "{metrics}");
    assert_eq!(get(&served.addr, "/nothing").0, 404);
    // `objectos metrics` reads the service's figures, starting nothing itself.
    let audit_lines = || String::from_utf8_lossy(&objectos(data.path()).args(["--json", "audit", "--limit", "100000"]).output().unwrap().stdout).lines().count();
    let before = audit_lines();
    let out = objectos(data.path()).arg("metrics").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("objectos_plugin_events_emitted_total"));
    assert_eq!(audit_lines(), before, "metrics from the service started nothing here");

    // A second runner on the same data directory is refused, naming the holder.
    let second = objectos(data.path()).args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("is run by `objectos serve` (process {pid} on ")) && err.contains("--standby"), "{err}");
    // Only loopback until the API has accounts.
    let open = objectos(data.path()).args(["serve", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&open.stderr).contains("0.0.0.0:0 is not a loopback address"), "{}", String::from_utf8_lossy(&open.stderr));

    // SIGTERM stops it cleanly, and gives the data directory up.
    signal(&served.child, "-TERM");
    assert_eq!(exited(&mut served.child), Some(0));
    let mut again = listening(serve(data.path(), &[]));
    signal(&again.child, "-INT");
    assert_eq!(exited(&mut again.child), Some(0));
}

#[test]
fn a_standby_takes_over_when_the_runner_is_killed() {
    let data = tempfile::tempdir().unwrap();
    let mut first = listening(serve(data.path(), &[]));
    let standby = serve(data.path(), &["--standby"]);
    signal(&first.child, "-KILL");
    exited(&mut first.child);
    let mut second = listening(standby);
    let (status, body) = get(&second.addr, "/health");
    assert_eq!(status, 200, "{body}");
    signal(&second.child, "-TERM");
    assert_eq!(exited(&mut second.child), Some(0));
}

/// A client that never finishes its request does not hold the stop up, and a request for
/// another host name (DNS rebinding) is refused.
#[test]
fn a_stalled_client_does_not_hold_up_the_stop_and_only_localhost_is_answered() {
    let data = tempfile::tempdir().unwrap();
    let mut served = listening(serve(data.path(), &[]));
    let mut s = std::net::TcpStream::connect(&served.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET /health HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 421"), "{text}");
    let mut stalled = std::net::TcpStream::connect(&served.addr).unwrap();
    write!(stalled, "GET /health HTTP/1.1\r\n").unwrap();
    signal(&served.child, "-TERM");
    assert_eq!(exited(&mut served.child), Some(0));
}

/// `objectos service install` writes a user unit that runs `serve` on this data directory (and
/// says how to run it where systemd's user manager does not run), `status` names the runner,
/// and `uninstall` removes the unit.
#[test]
fn the_service_unit_runs_serve_on_this_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = objectos(data.path()).env("XDG_CONFIG_HOME", config.path()).env("OBJECTOS_SYSTEMCTL", "/nonexistent/systemctl").args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = run(&["service", "install", "--listen", "127.0.0.1:7979"]);
    assert!(said.contains("systemd's user manager is not running here") && said.contains("serve --listen 127.0.0.1:7979"), "{said}");
    let units: Vec<_> = std::fs::read_dir(config.path().join("systemd/user")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(units.len(), 1, "{units:?}");
    let unit = std::fs::read_to_string(&units[0]).unwrap();
    let exec = format!("ExecStart=\"{}\" --data-dir \"{}\" serve --listen 127.0.0.1:7979", env!("CARGO_BIN_EXE_objectos"), data.path().display());
    assert!(unit.contains(&exec) && unit.contains("WantedBy=default.target"), "{unit}");
    // systemd's own check, where it is installed.
    if let Ok(verified) = Command::new("systemd-analyze").arg("verify").arg(&units[0]).output() {
        assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    }

    assert!(run(&["service", "status"]).contains("runner    none"));
    let mut served = listening(serve(data.path(), &[]));
    let status = run(&["service", "status"]);
    assert!(status.contains("(installed)") && status.contains(&format!("runner    objectos serve (process {} on ", served.child.id())), "{status}");
    signal(&served.child, "-TERM");
    assert_eq!(exited(&mut served.child), Some(0));

    assert!(run(&["service", "uninstall"]).starts_with("removed "));
    assert!(!units[0].exists());
    assert!(run(&["service", "status"]).contains("(not installed)"));
}

/// Run `objectos ARGS` on `data`, which must succeed; its stdout.
fn ok(data: &std::path::Path, args: &[&str]) -> String {
    let out = objectos(data).args(args).output().unwrap();
    assert!(out.status.success(), "objectos {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The leads, and how many times the lead-scoring package's handler ran (its log says
/// `scored NAME` once per run).
fn leads(data: &std::path::Path) -> (Vec<serde_json::Value>, usize) {
    let leads: serde_json::Value = serde_json::from_str(&ok(data, &["--json", "records", "list", "lead", "--limit", "10000"])).unwrap();
    let runs = ok(data, &["--json", "logs", "com.acme.leads", "--limit", "100000"]).lines().filter(|l| l.contains("\"scored ")).count();
    (leads.as_array().unwrap().clone(), runs)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every record a command creates reaches a package that subscribes to it, exactly once,
/// whether the command runs the handlers itself (no runner), or a service runs them; and
/// none is lost when the service is killed while it delivers them.
#[test]
fn every_change_reaches_its_subscriber_with_a_service_or_without() {
    const N: usize = 100;
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let leads_package = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages/lead-scoring");
    ok(d, &["plugins", "install", leads_package.to_str().unwrap()]);
    ok(d, &["permissions", "grant", "com.acme.leads", "--all"]);
    ok(d, &["plugins", "enable", "com.acme.leads", "--with-deps"]);

    // No runner: each command runs what its change set off before it exits.
    for i in 0..N {
        ok(d, &["records", "create", "lead", &format!("name=Alone {i}"), "source=referral"]);
    }
    let (list, runs) = leads(d);
    assert_eq!((list.len(), runs), (N, N));
    assert!(list.iter().all(|l| l["grade"].is_string()), "every lead was scored");

    // A service runs the plugins: the commands run none, and it delivers what they queue.
    let mut served = listening(serve(d, &[]));
    for i in 0..N {
        ok(d, &["records", "create", "lead", &format!("name=Served {i}"), "source=referral"]);
    }
    let csv: String = std::iter::once("name,source\n".to_string()).chain((0..N).map(|i| format!("Imported {i},event\n"))).collect();
    let file = d.join("leads.csv");
    std::fs::write(&file, csv).unwrap();
    ok(d, &["records", "import", "lead", file.to_str().unwrap()]);
    wait_for("the service to score every lead", || leads(d).0.iter().all(|l| l["grade"].is_string()));
    signal(&served.child, "-TERM");
    assert_eq!(exited(&mut served.child), Some(0));
    let (list, runs) = leads(d);
    assert_eq!((list.len(), runs), (3 * N, 3 * N), "each change was handled once");

    // Killed while it delivers: a new service delivers the rest; none is lost.
    let mut served = listening(serve(d, &[]));
    let file = d.join("more.csv");
    std::fs::write(&file, std::iter::once("name,source\n".to_string()).chain((0..N).map(|i| format!("Killed {i},event\n"))).collect::<String>()).unwrap();
    ok(d, &["records", "import", "lead", file.to_str().unwrap()]);
    signal(&served.child, "-KILL");
    exited(&mut served.child);
    let mut again = listening(serve(d, &[]));
    wait_for("the new service to score the rest", || leads(d).0.iter().all(|l| l["grade"].is_string()));
    signal(&again.child, "-TERM");
    assert_eq!(exited(&mut again.child), Some(0));
    let (list, runs) = leads(d);
    assert_eq!(list.len(), 4 * N);
    assert!(runs >= 3 * N + N / 2, "the handler ran for the killed service's leads too ({runs} runs)");
}

/// The audit records of `action` whose `title` detail is `title`.
fn sent(data: &std::path::Path, title: &str) -> usize {
    ok(data, &["--json", "audit", "--action", "notification.sent", "--limit", "100000"]).lines().filter(|l| l.contains(&format!("\"title\":\"{title}\""))).count()
}

/// With a service running, commands only record: a workflow moved by a command sets off the
/// package's automation in the service, once, and a plugin enabled by a command runs its
/// schedule there.
#[test]
fn a_service_runs_the_automations_and_schedules_of_changes_made_elsewhere() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let packages = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages");
    for p in ["contacts", "crm"] {
        ok(d, &["plugins", "install", packages.join(p).to_str().unwrap()]);
    }
    ok(d, &["permissions", "grant", "com.acme.contacts", "--all"]);
    ok(d, &["permissions", "grant", "com.acme.crm", "--all"]);
    ok(d, &["plugins", "enable", "com.acme.crm", "--with-deps"]);
    let mut served = listening(serve(d, &[]));

    let account = ok(d, &["records", "create", "account", "name=Acme GmbH"]).trim().to_string();
    let opp = ok(d, &["records", "create", "opportunity", "title=Shop fit-out", "amount=12000", &format!("account={account}")]).trim().to_string();
    for event in ["qualify", "propose", "win"] {
        ok(d, &["records", "transition", "opportunity", &opp, event]);
    }
    assert_eq!(ok(d, &["records", "show", "opportunity", &opp]).lines().find(|l| l.starts_with("stage")).map(|l| l.split_whitespace().last().unwrap().to_string()), Some("won".into()));
    wait_for("the service's automation to tell of the won deal", || sent(d, "Deal won: Shop fit-out") == 1);

    // A package enabled from the command line runs its every-second schedule in the service.
    let tick = d.join("tick");
    ok(d, &["new", "package", tick.to_str().unwrap(), "--id", "com.acme.tick", "--with", "automation"]);
    std::fs::write(tick.join("automations/tick.yml"), "name: tick\nwhen:\n  schedule: \"* * * * * *\"\ndo:\n  - notify:\n      title: Tick\n").unwrap();
    let manifest = std::fs::read_to_string(tick.join("plugin.json")).unwrap().replace("\"notify-done\"", "\"notify-done\", \"tick\"");
    std::fs::write(tick.join("plugin.json"), manifest).unwrap();
    ok(d, &["plugins", "install", tick.to_str().unwrap()]);
    ok(d, &["permissions", "grant", "com.acme.tick", "--all"]);
    let out = ok(d, &["plugins", "enable", "com.acme.tick", "--with-deps"]);
    assert!(out.contains(&format!("Enabled com.acme.tick in objectos serve (process {})", served.child.id())), "{out}");
    wait_for("two ticks from the service", || sent(d, "Tick") >= 2);
    signal(&served.child, "-TERM");
    assert_eq!(exited(&mut served.child), Some(0));
    assert_eq!(sent(d, "Deal won: Shop fit-out"), 1, "the automation ran once");
}

/// `serve` started while an `objectos` command runs the plugins for the moment it lasts waits
/// for the command instead of refusing.
#[test]
fn serve_waits_for_a_command_that_runs_the_plugins() {
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let kernel = objectos_builtins::host::open(data.path()).unwrap();
    let lease = runtime.block_on(async { kernel.take_runner("objectos records create") }).unwrap();
    let mut child = serve(data.path(), &[]);
    // Still waiting for the command, not refused.
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert!(rx.recv_timeout(Duration::from_secs(2)).is_err(), "serve started while the command held the lease");
    assert!(child.try_wait().unwrap().is_none(), "serve gave up instead of waiting");
    drop(lease);
    let line = rx.recv_timeout(DEADLINE).expect("serve starts once the command is done");
    assert!(line.starts_with("listening on http://"), "{line}");
    let mut served = Served { child, addr: String::new() };
    signal(&served.child, "-TERM");
    assert_eq!(exited(&mut served.child), Some(0));
}
