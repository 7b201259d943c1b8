//! A process running jobs is killed with SIGKILL while jobs are queued, delayed and running;
//! a new process on the same data directory finishes every one of them, each exactly once.
//!
//! The child processes are this test binary itself, re-run with `--exact worker` and the
//! data directory in an environment variable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use objectos_jobs::{Job, JobSpec, Jobs, Outcome, Retry, Status, ID};
use objectos_kernel::serde_json::{self, json};
use objectos_kernel::{Kernel, KernelConfig, PluginContext};
use objectos_kernel::host::StorageKind;
use objectos_tests::{manifest, Probe};

const DIR_ENV: &str = "OBJECTOS_JOBS_CRASH_DIR";
const PHASE_ENV: &str = "OBJECTOS_JOBS_CRASH_PHASE";
const SLOW: usize = 2;
const QUICK: usize = 4;
const DELAYED: usize = 3;

fn trace(dir: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("trace.log")).unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap(); // one append per line
}

/// The child: a kernel with the jobs plugin and a worker plugin whose handler traces each
/// attempt; a slow job's first attempt never ends.
#[test]
fn worker() {
    let (Ok(dir), Ok(phase)) = (std::env::var(DIR_ENV), std::env::var(PHASE_ENV)) else { return };
    let dir = PathBuf::from(dir);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let k = Kernel::open(KernelConfig::new(&dir).storage(StorageKind::Sqlite)).unwrap();
        objectos_jobs::register(&k).unwrap();
        let traced = dir.clone();
        let worker = Probe {
            enable: Some(Arc::new(move |ctx: &PluginContext| {
                let jobs = ctx.services().get::<Jobs>("jobs")?;
                let dir = traced.clone();
                jobs.handle(ctx, "work", move |run| {
                    let dir = dir.clone();
                    async move {
                        trace(&dir, &format!("start {} {}", run.id, run.attempt));
                        if run.payload["slow"] == json!(true) && run.attempt == 1 {
                            std::future::pending::<()>().await;
                        }
                        trace(&dir, &format!("done {} {}", run.id, run.attempt));
                        Ok(())
                    }
                })?;
                Ok(())
            })),
            ..Default::default()
        };
        k.register_builtin(&manifest("t.worker", "1.0.0", &[(ID, "^0.1")], &["services.use:jobs"]), Arc::new(worker)).unwrap();
        k.start().await.unwrap();
        if phase == "first" {
            k.set_config(ID, json!({"concurrency": 2, "leaseMs": 1000, "pollMs": 100})).unwrap();
            k.enable("t.worker", true).await.unwrap();
            let ctx = k.context("t.worker").unwrap();
            let jobs = ctx.services().get::<Jobs>("jobs").unwrap();
            let mut ids = Vec::new();
            let spec = |slow: bool| JobSpec::new("work", json!({"slow": slow})).retry(Retry::none());
            for _ in 0..SLOW {
                ids.push(jobs.enqueue(&ctx, spec(true)).unwrap());
            }
            for _ in 0..QUICK {
                ids.push(jobs.enqueue(&ctx, spec(false)).unwrap());
            }
            for _ in 0..DELAYED {
                ids.push(jobs.enqueue(&ctx, spec(false).delay(Duration::from_millis(300))).unwrap());
            }
            std::fs::write(dir.join("ids.json"), serde_json::to_vec(&ids).unwrap()).unwrap();
            std::future::pending::<()>().await; // until killed
        } else {
            let ctx = k.context("t.worker").unwrap();
            let jobs = ctx.services().get::<Jobs>("jobs").unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let list = jobs.list(&ctx).unwrap();
                if list.iter().all(|j| j.status.is_terminal()) {
                    std::fs::write(dir.join("result.json"), serde_json::to_vec(&list).unwrap()).unwrap();
                    break;
                }
                assert!(Instant::now() < deadline, "jobs did not finish: {list:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
}

fn spawn(dir: &Path, phase: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, dir)
        .env(PHASE_ENV, phase)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait until `cond` holds, failing after `secs` seconds.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("trace.log")).unwrap_or_default().lines().map(String::from).collect()
}

#[test]
fn a_killed_process_loses_no_job_and_completes_each_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = spawn(dir.path(), "first");
    wait_for(60, "both slow jobs to start", || dir.path().join("ids.json").exists() && lines(dir.path()).iter().filter(|l| l.starts_with("start")).count() >= SLOW);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let ids: Vec<String> = serde_json::from_slice(&std::fs::read(dir.path().join("ids.json")).unwrap()).unwrap();
    let before = lines(dir.path());
    assert!(before.iter().all(|l| l.starts_with("start")), "nothing had finished when killed: {before:?}");

    let mut second = spawn(dir.path(), "second");
    wait_for(90, "the second process to finish", || second.try_wait().unwrap().is_some());
    assert!(second.wait().unwrap().success(), "the second process failed");
    let jobs: Vec<Job> = serde_json::from_slice(&std::fs::read(dir.path().join("result.json")).unwrap()).unwrap();

    let listed: BTreeSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<BTreeSet<_>>(), "no job lost, none invented");
    let trace = lines(dir.path());
    let mut done: BTreeMap<&str, usize> = BTreeMap::new();
    let mut started: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for l in &trace {
        let mut parts = l.split(' ');
        let (what, id, attempt) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap().parse::<u32>().unwrap());
        match what {
            "done" => *done.entry(id).or_default() += 1,
            _ => started.entry(id).or_default().push(attempt),
        }
    }
    for (i, job) in jobs.iter().enumerate() {
        let slow = ids[..SLOW].contains(&job.id);
        assert_eq!(job.status, Status::Completed, "{job:?}");
        assert_eq!(done.get(job.id.as_str()), Some(&1), "job {} completed exactly once: {trace:?}", job.id);
        let outcomes: Vec<Outcome> = job.history.iter().map(|a| a.outcome).collect();
        if slow {
            assert_eq!(outcomes, [Outcome::Interrupted, Outcome::Completed], "job {i}");
            assert_eq!(started[job.id.as_str()], [1, 2], "the interrupted attempt is retried once");
            assert_eq!(job.interruptions, 1);
        } else {
            assert_eq!(outcomes, [Outcome::Completed], "job {i}");
            assert_eq!(started[job.id.as_str()], [1]);
        }
    }
}
