//! The jobs plugin through the kernel: a second plugin registers handlers and enqueues jobs
//! with the grants it needs, and is refused without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use objectos_jobs::{JobSpec, Jobs, Outcome, Retry, Status, ID};
use objectos_kernel::serde_json::{json, Value};
use objectos_kernel::{Kernel, KernelError, PluginContext};
use objectos_tests::{manifest, memory_kernel, wait_until, HookFn, Probe};

const USER_PERMS: &[&str] = &["services.use:jobs", "events.subscribe:jobs.*"];

/// A kernel with the jobs plugin and `t.user`, whose onEnable runs `setup`.
async fn kernel_with(config: Option<Value>, setup: HookFn) -> Kernel {
    let k = memory_kernel();
    objectos_jobs::register(&k).unwrap();
    let user = Probe { enable: Some(setup), ..Default::default() };
    k.register_builtin(&manifest("t.user", "1.0.0", &[(ID, "^0.1")], USER_PERMS), Arc::new(user)).unwrap();
    k.register_builtin(&manifest("t.stranger", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    if let Some(c) = config {
        k.set_config(ID, c).unwrap();
    }
    k.enable("t.user", true).await.unwrap();
    k
}

fn jobs(k: &Kernel, id: &str) -> (PluginContext, Arc<Jobs>) {
    let ctx = k.context(id).unwrap();
    let jobs = ctx.services().get::<Jobs>("jobs").unwrap();
    (ctx, jobs)
}

fn status(jobs: &Jobs, ctx: &PluginContext, id: &str) -> Status {
    jobs.get(ctx, id).unwrap().unwrap().status
}

#[tokio::test]
async fn a_job_runs_once_with_its_payload_and_its_events() {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let topics: Arc<Mutex<Vec<String>>> = Arc::default();
    let (s, t) = (seen.clone(), topics.clone());
    let k = kernel_with(
        None,
        Arc::new(move |ctx: &PluginContext| {
            let jobs = ctx.services().get::<Jobs>("jobs")?;
            let s = s.clone();
            jobs.handle(ctx, "greet", move |run| {
                let s = s.clone();
                async move {
                    s.lock().unwrap().push(run.payload);
                    Ok(())
                }
            })?;
            let t = t.clone();
            ctx.events().on("jobs.*", move |e| {
                t.lock().unwrap().push(e.topic.to_string());
                Ok(())
            })?;
            Ok(())
        }),
    )
    .await;
    let (ctx, jobs) = jobs(&k, "t.user");
    let id = jobs.enqueue(&ctx, JobSpec::new("greet", json!({"name": "Ada"}))).unwrap();
    wait_until(10, "the job to complete", || status(&jobs, &ctx, &id) == Status::Completed).await;
    assert_eq!(*seen.lock().unwrap(), [json!({"name": "Ada"})]);
    let job = jobs.get(&ctx, &id).unwrap().unwrap();
    assert_eq!(job.history.len(), 1);
    assert_eq!(job.history[0].outcome, Outcome::Completed);
    wait_until(10, "the completion event", || topics.lock().unwrap().len() == 3).await;
    assert_eq!(*topics.lock().unwrap(), ["jobs.enqueued", "jobs.started", "jobs.completed"]);
    assert_eq!(jobs.stats().completed, 1);
}

#[tokio::test]
async fn a_plugin_without_the_grant_is_refused_and_bad_specs_are_explained() {
    let k = kernel_with(None, Arc::new(|_: &PluginContext| Ok(()))).await;
    let stranger = k.context("t.stranger").unwrap();
    let e = stranger.services().get::<Jobs>("jobs").err().unwrap();
    assert!(matches!(&e, KernelError::PermissionDenied { permission, .. } if permission == "services.use:jobs"), "{e}");
    let (ctx, jobs) = jobs(&k, "t.user");
    let e = jobs.enqueue(&ctx, JobSpec::new("Bad Name", json!(null))).unwrap_err();
    assert!(e.to_string().contains("handler name \"Bad Name\""), "{e}");
    let e = jobs.enqueue(&ctx, JobSpec::new("ok", json!(null)).retry(Retry { attempts: 0, ..Retry::default() })).unwrap_err();
    assert!(e.to_string().contains("retry.attempts is 0"), "{e}");
    let e = jobs.schedule(&ctx, "nightly", "61 * * * *", JobSpec::new("ok", json!(null))).unwrap_err();
    assert!(e.to_string().contains("invalid cron expression \"61 * * * *\""), "{e}");
    // Another plugin's job is invisible and cannot be cancelled.
    let id = jobs.enqueue(&ctx, JobSpec::new("later", json!(null)).delay(Duration::from_secs(3600))).unwrap();
    let other = k.context("t.stranger").unwrap();
    assert!(jobs.get(&other, &id).unwrap().is_none());
    assert!(jobs.cancel(&other, &id).unwrap_err().to_string().contains("has no job"));
}

#[tokio::test]
async fn failures_are_retried_with_backoff_then_fail_and_panics_and_timeouts_are_contained() {
    let k = kernel_with(
        None,
        Arc::new(|ctx: &PluginContext| {
            let jobs = ctx.services().get::<Jobs>("jobs")?;
            jobs.handle(ctx, "flaky", |run| async move { Err(format!("attempt {} failed", run.attempt).into()) })?;
            jobs.handle(ctx, "boom", |_| async move { panic!("handler bug") })?;
            jobs.handle(ctx, "slow", |_| async move {
                std::future::pending::<()>().await;
                Ok(())
            })?;
            Ok(())
        }),
    )
    .await;
    let (ctx, jobs) = jobs(&k, "t.user");
    let retry = Retry { attempts: 3, backoff_ms: 5, max_backoff_ms: 20 };
    let flaky = jobs.enqueue(&ctx, JobSpec::new("flaky", json!(null)).retry(retry)).unwrap();
    let boom = jobs.enqueue(&ctx, JobSpec::new("boom", json!(null)).retry(Retry::none())).unwrap();
    let slow = jobs.enqueue(&ctx, JobSpec::new("slow", json!(null)).retry(Retry::none()).timeout(Duration::from_millis(50))).unwrap();
    for id in [&flaky, &boom, &slow] {
        wait_until(10, "the job to fail", || status(&jobs, &ctx, id) == Status::Failed).await;
    }
    let j = jobs.get(&ctx, &flaky).unwrap().unwrap();
    assert_eq!(j.attempts, 3);
    assert_eq!(j.history.iter().map(|a| a.error.clone().unwrap()).collect::<Vec<_>>(), ["attempt 1 failed", "attempt 2 failed", "attempt 3 failed"]);
    for pair in j.history.windows(2) {
        assert!(pair[1].started_at >= pair[0].ended_at + 5, "backoff respected: {:?}", j.history);
    }
    let b = jobs.get(&ctx, &boom).unwrap().unwrap();
    assert_eq!(b.history[0].outcome, Outcome::Panicked);
    assert!(b.last_error().unwrap().contains("handler bug"));
    assert_eq!(jobs.get(&ctx, &slow).unwrap().unwrap().history[0].outcome, Outcome::TimedOut);
    let s = jobs.stats();
    assert_eq!((s.retried, s.failed), (2, 3), "{s:?}");
    assert_eq!(k.plugin(ID).unwrap().state, objectos_kernel::model::lifecycle::State::Enabled, "the jobs plugin survives");
}

#[tokio::test]
async fn concurrency_is_bounded_and_cancel_stops_queued_and_running_jobs() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (g, r, p) = (gate.clone(), running.clone(), peak.clone());
    let k = kernel_with(
        Some(json!({"concurrency": 2})),
        Arc::new(move |ctx: &PluginContext| {
            let jobs = ctx.services().get::<Jobs>("jobs")?;
            let (g, r, p) = (g.clone(), r.clone(), p.clone());
            jobs.handle(ctx, "work", move |_| {
                let (g, r, p) = (g.clone(), r.clone(), p.clone());
                async move {
                    let now = r.fetch_add(1, SeqCst) + 1;
                    p.fetch_max(now, SeqCst);
                    let permit = g.acquire().await;
                    r.fetch_sub(1, SeqCst);
                    drop(permit);
                    Ok(())
                }
            })?;
            Ok(())
        }),
    )
    .await;
    let (ctx, jobs) = jobs(&k, "t.user");
    let ids: Vec<String> = (0..6).map(|i| jobs.enqueue(&ctx, JobSpec::new("work", json!(i))).unwrap()).collect();
    wait_until(10, "two jobs to run", || running.load(SeqCst) == 2).await;
    // The first two run; cancel one of them and one still queued.
    assert_eq!(status(&jobs, &ctx, &ids[0]), Status::Running);
    jobs.cancel(&ctx, &ids[0]).unwrap();
    jobs.cancel(&ctx, &ids[5]).unwrap();
    assert!(jobs.cancel(&ctx, &ids[5]).unwrap_err().to_string().contains("already cancelled"));
    gate.add_permits(100);
    for id in &ids[1..5] {
        wait_until(10, "the job to complete", || status(&jobs, &ctx, id) == Status::Completed).await;
    }
    assert_eq!(peak.load(SeqCst), 2, "never more than two at once");
    assert_eq!(status(&jobs, &ctx, &ids[0]), Status::Cancelled);
    assert_eq!(jobs.get(&ctx, &ids[0]).unwrap().unwrap().history[0].outcome, Outcome::Cancelled);
    assert_eq!(status(&jobs, &ctx, &ids[5]), Status::Cancelled);
}

#[tokio::test]
async fn a_disabled_plugins_jobs_wait_until_it_is_enabled_again() {
    let done: Arc<Mutex<Vec<String>>> = Arc::default();
    let d = done.clone();
    let k = memory_kernel();
    objectos_jobs::register(&k).unwrap();
    let setup: HookFn = Arc::new(move |ctx: &PluginContext| {
        let jobs = ctx.services().get::<Jobs>("jobs")?;
        let (d, me) = (d.clone(), ctx.id().to_string());
        jobs.handle(ctx, "work", move |run| {
            let (d, me) = (d.clone(), me.clone());
            async move {
                d.lock().unwrap().push(format!("{me}:{}", run.payload));
                Ok(())
            }
        })?;
        Ok(())
    });
    for id in ["t.user", "t.other"] {
        let p = Probe { enable: Some(setup.clone()), ..Default::default() };
        k.register_builtin(&manifest(id, "1.0.0", &[(ID, "^0.1")], USER_PERMS), Arc::new(p)).unwrap();
    }
    k.start().await.unwrap();
    k.enable("t.user", true).await.unwrap();
    k.enable("t.other", true).await.unwrap();
    let (user, jobs) = jobs(&k, "t.user");
    let other = k.context("t.other").unwrap();
    // The job falls due only after the disable below has surely finished (it takes
    // milliseconds; the delay leaves a wide margin on a slow or busy machine). A delay shorter
    // than the disable lets the job run first, which is not what this test is about.
    let due_in = Duration::from_secs(1);
    let waiting = jobs.enqueue(&user, JobSpec::new("work", json!("early")).delay(due_in)).unwrap();
    k.disable("t.user", false).await.unwrap();
    // A later job of another plugin runs: the earlier one of the disabled plugin had its
    // turn and did not run.
    let later = jobs.enqueue(&other, JobSpec::new("work", json!("later")).delay(due_in + Duration::from_millis(250))).unwrap();
    wait_until(30, "the other plugin's job", || status(&jobs, &other, &later) == Status::Completed).await;
    assert_eq!(status(&jobs, &user, &waiting), Status::Queued);
    assert_eq!(*done.lock().unwrap(), ["t.other:\"later\""]);
    k.enable("t.user", false).await.unwrap();
    wait_until(30, "the waiting job", || status(&jobs, &user, &waiting) == Status::Completed).await;
    assert_eq!(done.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_cron_schedule_creates_one_job_per_occurrence() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let k = kernel_with(
        None,
        Arc::new(move |ctx: &PluginContext| {
            let jobs = ctx.services().get::<Jobs>("jobs")?;
            let c = c.clone();
            jobs.handle(ctx, "tick", move |_| {
                c.fetch_add(1, SeqCst);
                async { Ok(()) }
            })?;
            Ok(())
        }),
    )
    .await;
    let (ctx, jobs) = jobs(&k, "t.user");
    let first = jobs.schedule(&ctx, "every-second", "* * * * * *", JobSpec::new("tick", json!(null))).unwrap();
    assert!(first > 0);
    assert_eq!(jobs.schedules(&ctx).unwrap()[0].cron, "* * * * * *");
    // Two occurrences of an every-second schedule take about two seconds: wait far longer.
    wait_until(60, "two occurrences", || count.load(SeqCst) >= 2).await;
    assert!(jobs.unschedule(&ctx, "every-second").unwrap());
    assert!(jobs.schedules(&ctx).unwrap().is_empty());
    let list = jobs.list(&ctx).unwrap();
    let occurrences: Vec<&str> = list.iter().map(|j| j.id.as_str()).collect();
    assert!(occurrences.iter().all(|id| id.starts_with("t.user/every-second@")), "{occurrences:?}");
    let mut unique = occurrences.clone();
    unique.dedup();
    assert_eq!(unique.len(), occurrences.len(), "no occurrence doubled");
}

/// Two processes on one data directory (the console beside a service): only the runner, the
/// one holding the lease, starts jobs and fires schedules; a schedule made in the other runs
/// there, each occurrence once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_runner_runs_schedules_and_jobs() {
    use objectos_kernel::host::StorageKind;
    use objectos_kernel::KernelConfig;
    let dir = tempfile::tempdir().unwrap();
    async fn open(dir: &std::path::Path, count: Arc<AtomicUsize>) -> Kernel {
        let k = Kernel::open(KernelConfig::new(dir).storage(StorageKind::Sqlite)).unwrap();
        objectos_jobs::register(&k).unwrap();
        let setup: HookFn = Arc::new(move |ctx: &PluginContext| {
            let jobs = ctx.services().get::<Jobs>("jobs")?;
            let c = count.clone();
            jobs.handle(ctx, "tick", move |_| {
                c.fetch_add(1, SeqCst);
                async { Ok(()) }
            })?;
            Ok(())
        });
        k.register_builtin(&manifest("t.user", "1.0.0", &[(ID, "^0.1")], USER_PERMS), Arc::new(Probe { enable: Some(setup), ..Default::default() })).unwrap();
        k.start().await.unwrap();
        k.enable("t.user", true).await.unwrap();
        k
    }
    let (in_runner, elsewhere) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let runner = open(dir.path(), in_runner.clone()).await;
    let other = open(dir.path(), elsewhere.clone()).await;
    assert!(runner.is_runner() && !other.is_runner());
    let (ctx, jobs) = jobs(&other, "t.user");
    jobs.schedule(&ctx, "every-second", "* * * * * *", JobSpec::new("tick", json!(null))).unwrap();
    jobs.enqueue(&ctx, JobSpec::new("tick", json!(null))).unwrap();
    wait_until(60, "the job and two occurrences, in the runner", || in_runner.load(SeqCst) >= 3).await;
    assert_eq!(elsewhere.load(SeqCst), 0, "the other process ran none");
    let (ctx, jobs) = self::jobs(&runner, "t.user");
    let list = jobs.list(&ctx).unwrap();
    let mut ids: Vec<&str> = list.iter().map(|j| j.id.as_str()).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "no occurrence doubled");
}
