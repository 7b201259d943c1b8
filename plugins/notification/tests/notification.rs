//! The notification plugin through the kernel: a second plugin sends with the grant it needs,
//! adds a channel, and is refused without the grant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;

use objectos_kernel::serde_json::json;
use objectos_kernel::{Kernel, KernelError, PluginContext, async_trait};
use objectos_kernel::model::log::LogQuery;
use objectos_notification::{Channel, DeliveryStatus, Inbox, Level, Message, Notice, Notifications, Template, ID};
use objectos_tests::{manifest, memory_kernel, wait_until, Probe};

async fn kernel() -> Kernel {
    let k = memory_kernel();
    objectos_jobs::register(&k).unwrap();
    objectos_notification::register(&k).unwrap();
    k.register_builtin(&manifest("t.user", "1.0.0", &[(ID, "^0.1")], &["services.use:notification"]), Arc::new(Probe::default())).unwrap();
    k.register_builtin(&manifest("t.stranger", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    k.set_config(ID, json!({"retryBackoffMs": 10})).unwrap();
    k.enable("t.user", true).await.unwrap();
    k.enable("t.stranger", true).await.unwrap();
    k
}

fn service(k: &Kernel, id: &str) -> (PluginContext, Arc<Notifications>) {
    let ctx = k.context(id).unwrap();
    let n = ctx.services().get::<Notifications>("notification").unwrap();
    (ctx, n)
}

#[tokio::test]
async fn in_app_and_log_deliveries_reach_the_inbox_and_the_log() {
    let k = kernel().await;
    let (ctx, n) = service(&k, "t.user");
    let inbox = k.service::<Inbox>("notification.inbox").unwrap();
    let changes = inbox.watch();
    n.define_template(&ctx, "invoice-paid", Template { title: "Invoice {{invoice.number}} paid".into(), body: "{{customer}} paid {{invoice.total}} EUR.".into() }).unwrap();
    let report = n
        .send(&ctx, Notice::template("invoice-paid", json!({"customer": "Acme", "invoice": {"number": "2026-17", "total": 120.5}})).via(&["in-app", "log"]).level(Level::Success))
        .await
        .unwrap();
    assert!(report.deliveries.values().all(|d| d.status == DeliveryStatus::Delivered), "{report:?}");
    assert!(changes.has_changed().unwrap(), "the inbox watcher is told");
    let items = inbox.list(10, false).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].message.title, "Invoice 2026-17 paid");
    assert_eq!(items[0].message.body, "Acme paid 120.5 EUR.");
    assert_eq!(items[0].message.plugin, "t.user");
    assert_eq!(inbox.unread().unwrap(), 1);
    n.send(&ctx, Notice::new("Second", "")).await.unwrap();
    assert_eq!(inbox.list(10, false).unwrap()[0].message.title, "Second", "newest first");
    assert_eq!(inbox.mark_read(Some(&report.id)).unwrap(), 1);
    assert_eq!(inbox.unread().unwrap(), 1);
    assert_eq!(inbox.mark_read(None).unwrap(), 1);
    assert_eq!(inbox.unread().unwrap(), 0);
    k.flush();
    let logs = k.logs(&LogQuery { plugin: Some(ID.into()), ..Default::default() }).unwrap();
    assert!(logs.iter().any(|l| l.message == "[t.user] Invoice 2026-17 paid: Acme paid 120.5 EUR."), "{logs:?}");
    let sent = n.get(&ctx, &report.id).unwrap().unwrap();
    assert_eq!(sent.deliveries.len(), 2);
}

#[tokio::test]
async fn bad_notices_are_explained_and_nothing_is_sent() {
    let k = kernel().await;
    let (ctx, n) = service(&k, "t.user");
    n.define_template(&ctx, "t", Template { title: "Hello {{name}}".into(), body: "{{unclosed".into() }).unwrap();
    let cases = [
        (Notice::template("t", json!({})), "template `t`, title: variable `name` is not given"),
        (Notice::template("t", json!({"name": "x"})), "template `t`, body: `{{` at byte 0 is never closed"),
        (Notice::template("missing", json!({})), "t.user has no template named `missing`"),
        (Notice::new("Hi", "").via(&["pager"]), "no channel named `pager`; the channels are in-app, log"),
        (Notice::default(), "needs a `template` or a `title`"),
    ];
    for (notice, want) in cases {
        let e = n.send(&ctx, notice).await.unwrap_err();
        assert!(e.to_string().contains(want), "{e} / {want}");
    }
    let inbox = k.service::<Inbox>("notification.inbox").unwrap();
    assert!(inbox.list(10, false).unwrap().is_empty());
    // Without the grant, the service is refused.
    let stranger = k.context("t.stranger").unwrap();
    let e = stranger.services().get::<Notifications>("notification").err().unwrap();
    assert!(matches!(&e, KernelError::PermissionDenied { permission, .. } if permission == "services.use:notification"), "{e}");
    assert!(stranger.services().get::<Inbox>("notification.inbox").is_err(), "the inbox needs its own grant");
}

/// A channel failing its first `fail` deliveries.
struct Flaky {
    calls: AtomicU32,
    fail: u32,
}

#[async_trait]
impl Channel for Flaky {
    async fn deliver(&self, _: &Message) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let n = self.calls.fetch_add(1, SeqCst) + 1;
        if n <= self.fail {
            return Err(format!("mail server refused (call {n})").into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_plugin_channel_is_retried_through_jobs_and_leaves_with_its_plugin() {
    let k = kernel().await;
    let (ctx, n) = service(&k, "t.user");
    let flaky = Arc::new(Flaky { calls: AtomicU32::new(0), fail: 2 });
    n.register_channel(&ctx, "mail", flaky.clone()).unwrap();
    assert_eq!(n.channels(), ["in-app", "log", "mail"]);
    let report = n.send(&ctx, Notice::new("Hello", "").via(&["mail", "in-app"])).await.unwrap();
    assert_eq!(report.deliveries["mail"].status, DeliveryStatus::Retrying);
    assert_eq!(report.deliveries["in-app"].status, DeliveryStatus::Delivered);
    wait_until(20, "the retried delivery", || n.get(&ctx, &report.id).unwrap().unwrap().deliveries["mail"].status == DeliveryStatus::Delivered).await;
    assert_eq!(n.get(&ctx, &report.id).unwrap().unwrap().deliveries["mail"].attempts, 3);
    assert_eq!(flaky.calls.load(SeqCst), 3);

    // A channel that never works ends as failed after every attempt.
    let dead = Arc::new(Flaky { calls: AtomicU32::new(0), fail: u32::MAX });
    n.register_channel(&ctx, "sms", dead.clone()).unwrap();
    let report = n.send(&ctx, Notice::new("Down", "").via(&["sms"])).await.unwrap();
    wait_until(20, "the delivery to fail", || n.get(&ctx, &report.id).unwrap().unwrap().deliveries["sms"].status == DeliveryStatus::Failed).await;
    let d = &n.get(&ctx, &report.id).unwrap().unwrap().deliveries["sms"];
    assert_eq!(d.attempts, objectos_notification::DELIVERY_ATTEMPTS);
    assert!(d.error.as_deref().unwrap().contains("mail server refused"), "{d:?}");

    k.disable("t.user", false).await.unwrap();
    assert_eq!(n.channels(), ["in-app", "log"], "a disabled plugin's channels go");
}
