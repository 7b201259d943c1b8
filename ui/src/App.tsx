import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { CommandError, InboxView, KernelEvent, PluginInfo, PluginTexts, RunnerInfo } from "./bindings";
import { asCommandError, call, commands, onInboxChanged, onKernelEvent } from "./api";
import { NotificationsView } from "./views/NotificationsView";
import { PluginsView } from "./views/PluginsView";
import { GraphView } from "./views/GraphView";
import { RecordsView } from "./views/RecordsView";
import { LogsView } from "./views/LogsView";
import { AuditView } from "./views/AuditView";
import { SettingsView, usableLocale } from "./views/SettingsView";
import { ErrorBanner } from "./views/common";

import type { Route } from "./route";

const NAV: { view: Route["view"]; label: string; key: string }[] = [
  { view: "plugins", label: "Plugins", key: "1" },
  { view: "records", label: "Records", key: "2" },
  { view: "graph", label: "Dependency graph", key: "3" },
  { view: "logs", label: "Logs", key: "4" },
  { view: "audit", label: "Audit trail", key: "5" },
  { view: "notifications", label: "Notifications", key: "6" },
  { view: "settings", label: "Settings", key: "7" },
];

const LOCALE_KEY = "objectos.locale";

/** The admin's language for plugin names and descriptions, kept on this machine. */
function useLocale(): [string, (l: string) => void] {
  const [locale, setLocale] = useState(() => usableLocale(localStorage.getItem(LOCALE_KEY) ?? navigator.language));
  const choose = useCallback((l: string) => {
    localStorage.setItem(LOCALE_KEY, l);
    setLocale(l);
  }, []);
  return [locale, choose];
}

/** Translated plugin names and descriptions, re-read when plugins come and go. */
function usePluginTexts(locale: string) {
  const [texts, setTexts] = useState<PluginTexts | null>(null);
  useEffect(() => {
    let live = true;
    const load = () =>
      call(commands.pluginTexts(locale))
        .then((t) => live && setTexts(t))
        .catch(() => live && setTexts(null));
    load();
    const stop = onKernelEvent((e) => {
      if (e.type === "stateChanged" || e.type === "externalChange") load();
    });
    return () => {
      live = false;
      stop();
    };
  }, [locale]);
  return texts;
}

/** The notification centre's contents, re-read when the inbox changes. */
function useInbox() {
  const [inbox, setInbox] = useState<InboxView | null>(null);
  useEffect(() => {
    let live = true;
    const load = () =>
      call(commands.inbox(200, false))
        .then((v) => live && setInbox(v))
        .catch(() => live && setInbox({ available: false, unread: 0, items: [] }));
    load();
    const stopInbox = onInboxChanged(load);
    const stopKernel = onKernelEvent((e) => {
      if (e.type === "externalChange") load();
    });
    return () => {
      live = false;
      stopInbox();
      stopKernel();
    };
  }, []);
  return inbox;
}

/** Plugins with their names and descriptions in the chosen locale, where translated. */
function localize(plugins: PluginInfo[] | null, texts: PluginTexts | null): PluginInfo[] | null {
  if (!plugins || !texts?.available || !texts.texts || Object.keys(texts.texts).length === 0) return plugins;
  return plugins.map((p) => {
    const t = texts.texts[p.manifest.id];
    if (!t) return p;
    return { ...p, manifest: { ...p.manifest, name: t.name ?? p.manifest.name, description: t.description ?? p.manifest.description } };
  });
}

type WritesStalled = Extract<KernelEvent, { type: "writesStalled" }>;

/** Whether the kernel says it cannot write audit records and logs now (and why). */
function useWritesStalled() {
  const [stalled, setStalled] = useState<WritesStalled | null>(null);
  useEffect(
    () =>
      onKernelEvent((e) => {
        if (e.type === "writesStalled") setStalled(e);
        if (e.type === "writesResumed") setStalled(null);
      }),
    [],
  );
  return stalled;
}

/** Shown while writes are stalled: a busy database passes, a fault needs the admin. */
function WritesStalledBanner({ stalled }: { stalled: WritesStalled }) {
  const waiting = stalled.waiting ? `${stalled.waiting.toLocaleString()} records are kept in memory and will be written, in order, once it does.` : "";
  return stalled.busy ? (
    <div className="banner warn" role="status" data-writes-stalled="busy">
      <div className="banner-body">
        <strong>Waiting for another ObjectOS process</strong>
        <div className="banner-message">
          Another program holds the database <code>{stalled.path}</code>. Actions wait until it lets go. {waiting}
        </div>
      </div>
    </div>
  ) : (
    <div className="banner error" role="alert" data-writes-stalled="fault">
      <div className="banner-body">
        <strong>Audit records and logs cannot be written</strong>
        <div className="banner-message">
          Writing to <code>{stalled.path}</code> fails: {stalled.reason}. Until it works again, actions fail rather than happen unrecorded. Free disk space
          or fix the file&apos;s permissions; nothing is lost. {waiting}
        </div>
      </div>
    </div>
  );
}

/** Plugins, reloaded whenever the kernel says something changed. */
function usePlugins() {
  const [plugins, setPlugins] = useState<PluginInfo[] | null>(null);
  const [error, setError] = useState<CommandError | null>(null);
  const pending = useRef<number | null>(null);
  const reload = useCallback(() => {
    call(commands.listPlugins())
      .then((p) => {
        setPlugins(p);
        setError(null);
      })
      .catch((e) => setError(asCommandError(e)));
  }, []);
  useEffect(() => {
    reload();
    return onKernelEvent((e) => {
      if (e.type === "log" || e.type === "audit") return;
      if (pending.current !== null) return;
      pending.current = window.setTimeout(() => {
        pending.current = null;
        reload();
      }, 60);
    });
  }, [reload]);
  return { plugins, error, reload };
}

export function App() {
  const [route, setRoute] = useState<Route>({ view: "plugins" });
  const { plugins: raw, error, reload } = usePlugins();
  const [locale, setLocale] = useLocale();
  const texts = usePluginTexts(locale);
  const plugins = useMemo(() => localize(raw, texts), [raw, texts]);
  const inbox = useInbox();
  const pluginName = useCallback((id: string) => plugins?.find((p) => p.manifest.id === id)?.manifest.name ?? id, [plugins]);
  const [problem, setProblem] = useState<CommandError | null>(null);
  const stalled = useWritesStalled();
  const reported = useRef(false);

  useEffect(() => {
    if (plugins && !reported.current) {
      reported.current = true;
      call(commands.reportReady())
        .then((ms) => document.documentElement.setAttribute("data-startup-ms", String(Math.round(ms ?? -1))))
        .catch(() => {});
    }
  }, [plugins]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (!e.altKey) return;
      const item = NAV.find((n) => n.key === e.key);
      if (item) {
        e.preventDefault();
        setRoute({ view: item.view } as Route);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  // Another process (an `objectos serve`) runs the plugins: this console is attached to it,
  // or, once it stopped, nothing runs them. Read again whenever another process wrote.
  const [runner, setRunner] = useState<{ attached: boolean; info: RunnerInfo | null }>({ attached: false, info: null });
  useEffect(() => {
    const read = () =>
      call(commands.getSettings())
        .then((s) => setRunner({ attached: s?.runnerIsThisConsole === false, info: s?.runnerIsThisConsole === false ? (s.runner ?? null) : null }))
        // Kept as it was: one failed read says nothing about the runner.
        .catch(() => {});
    read();
    // A runner killed outright writes nothing: look again every few seconds too.
    const every = window.setInterval(read, 5000);
    const stop = onKernelEvent((e) => {
      if (e.type === "externalChange") read();
    });
    return () => {
      window.clearInterval(every);
      stop();
    };
  }, []);

  const pendingCount = plugins?.filter((p) => p.pending.length > 0).length ?? 0;
  const errorCount = plugins?.filter((p) => p.state === "error").length ?? 0;

  return (
    <div className="shell">
      <nav className="sidebar" aria-label="Views">
        <div className="brand">
          <span className="logo" aria-hidden>◆</span> ObjectOS
        </div>
        {runner.attached && runner.info && (
          <div className="attached" data-attached={runner.info.pid} title={`The plugins run in ${runner.info.what} (process ${runner.info.pid} on ${runner.info.host}); what you do here is carried out there.`}>
            Attached to {runner.info.what} <span className="muted">(process {runner.info.pid})</span>
          </div>
        )}
        {runner.attached && !runner.info && (
          <div className="attached stopped" role="alert" data-runner-gone>
            Nothing runs the plugins now: the service this console was attached to stopped. Start it again, or reopen the console to run them here.
          </div>
        )}
        {NAV.map((n) => (
          <button
            key={n.view}
            className={route.view === n.view ? "nav active" : "nav"}
            aria-current={route.view === n.view ? "page" : undefined}
            onClick={() => setRoute({ view: n.view } as Route)}
            title={`Alt+${n.key}`}
            data-nav={n.view}
          >
            <span>{n.label}</span>
            {n.view === "plugins" && pendingCount > 0 && <span className="badge warn" title="plugins with permissions to review">{pendingCount}</span>}
            {n.view === "plugins" && errorCount > 0 && <span className="badge danger" title="plugins in error">{errorCount}</span>}
            {n.view === "notifications" && (inbox?.unread ?? 0) > 0 && (
              <span className="badge accent" title="unread notifications" data-unread={inbox?.unread}>
                {inbox?.unread}
              </span>
            )}
          </button>
        ))}
        <div className="sidebar-foot">Alt+1…7 switches views</div>
      </nav>
      <main className="content">
        {stalled && <WritesStalledBanner stalled={stalled} />}
        {error && <ErrorBanner error={error} onRetry={reload} />}
        {problem && <ErrorBanner error={problem} onClose={() => setProblem(null)} />}
        {route.view === "plugins" && <PluginsView plugins={plugins} route={route} navigate={setRoute} onError={setProblem} />}
        {route.view === "records" && <RecordsView onError={setProblem} />}
        {route.view === "graph" && <GraphView plugins={plugins} navigate={setRoute} />}
        {route.view === "logs" && <LogsView plugins={plugins} initialPlugin={route.plugin} />}
        {route.view === "audit" && <AuditView plugins={plugins} initialPlugin={route.plugin} onError={setProblem} />}
        {route.view === "notifications" && <NotificationsView inbox={inbox} pluginName={pluginName} navigate={setRoute} onError={setProblem} />}
        {route.view === "settings" && <SettingsView onError={setProblem} locale={locale} onLocale={setLocale} texts={texts} />}
      </main>
    </div>
  );
}
