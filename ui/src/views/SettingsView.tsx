import { useEffect, useState } from "react";
import type { CommandError, PluginTexts, Quotas, Settings, UpdateStatus } from "../bindings";
import { asCommandError, call, commands, formatTime } from "../api";

/** A locale's name in its own language ("English", "中文（中国）"), or the tag itself. */
function nativeName(tag: string): string {
  try {
    return new Intl.DisplayNames([tag], { type: "language" }).of(tag) ?? tag;
  } catch {
    return tag;
  }
}

/**
 * `tag` when it names a language, else English: a machine whose locale is `C` or `POSIX`
 * (`C.UTF-8`) reports that as its language, which is no language at all.
 */
export function usableLocale(tag: string | null | undefined): string {
  if (!tag) return "en";
  try {
    const [canonical] = Intl.getCanonicalLocales(tag);
    return canonical && /^[a-z]{2,3}(-|$)/i.test(canonical) ? canonical : "en";
  } catch {
    return "en";
  }
}

/** How the language selector shows `tag`: English is the default every plugin falls back to. */
export function localeLabel(tag: string): string {
  return tag === "en" ? "English (default)" : `${nativeName(tag)} (${tag})`;
}

export function SettingsView({
  onError,
  locale,
  onLocale,
  texts,
}: {
  onError: (e: CommandError | null) => void;
  locale: string;
  onLocale: (l: string) => void;
  texts: PluginTexts | null;
}) {
  const [s, setS] = useState<Settings | null>(null);
  const [update, setUpdate] = useState<UpdateStatus | "checking" | null>(null);
  useEffect(() => {
    call(commands.getSettings()).then(setS).catch((e) => onError(asCommandError(e)));
  }, [onError]);
  const apply = (p: Promise<Settings>) => p.then(setS).catch((e) => onError(asCommandError(e)));
  if (!s) return <div className="loading">Loading settings…</div>;
  return (
    <div className="settings">
      <h1>Settings</h1>
      <section>
        <h2>Data</h2>
        <dl className="facts">
          <dt>Data directory</dt>
          <dd className="mono">{s.dataDir}</dd>
          <dt>Plugins run in</dt>
          <dd data-setting="runner">
            {s.runnerIsThisConsole
              ? "this console"
              : s.runner
                ? `${s.runner.what} (process ${s.runner.pid} on ${s.runner.host}), since ${formatTime(s.runner.since)}`
                : "no other process"}
          </dd>
        </dl>
        {!s.runnerIsThisConsole && s.runner && (
          <p className="banner ok" role="status" data-attached>
            This console is attached to {s.runner.what} (process {s.runner.pid}): the plugins, their schedules and jobs run there, and what you enable, disable or change here is carried out there. Records you save here set off their automations there.
          </p>
        )}
        <p className="muted">
          The headless <code>objectos</code> command works on the same directory (<code>objectos --data-dir {s.dataDir} plugins list</code>); its changes show up here.
        </p>
      </section>
      <section>
        <h2>Language</h2>
        <div className="row">
          <label htmlFor="locale">Plugin names and descriptions in</label>
          <select id="locale" value={locale} onChange={(e) => onLocale(e.target.value)} disabled={!texts?.available} data-setting="locale">
            {Array.from(new Set([locale, "en", ...(texts?.locales ?? [])])).map((l) => (
              <option key={l} value={l}>
                {localeLabel(l)}
              </option>
            ))}
          </select>
        </div>
        <p className="muted">
          {texts?.available
            ? "Plugins that ship a translation show it; the others keep their own wording. Regional variants fall back to their language, then to English."
            : "Enable the Translations plugin (com.objectos.i18n) to show plugins in another language."}
        </p>
      </section>
      <section>
        <h2>Audit detail</h2>
        <fieldset>
          <label>
            <input type="radio" name="detail" checked={s.auditDetail === "lifecycle"} onChange={() => apply(call(commands.setAuditDetail("lifecycle")))} /> Lifecycle: installs, state changes, grants, denials, services
          </label>
          <label>
            <input type="radio" name="detail" checked={s.auditDetail === "full"} onChange={() => apply(call(commands.setAuditDetail("full")))} /> Full: also every event emission and storage write
          </label>
        </fieldset>
      </section>
      <QuotasSection quotas={s.quotas} onSave={(q) => apply(call(commands.setQuotas(q)))} />
      <section>
        <h2>Built-in plugins</h2>
        <fieldset>
          <label>
            <input type="radio" name="policy" checked={s.builtinPolicy === "grant"} onChange={() => apply(call(commands.setBuiltinPolicy("grant")))} /> Grant built-in plugins' permissions at first start (recorded as the system policy)
          </label>
          <label>
            <input type="radio" name="policy" checked={s.builtinPolicy === "ask"} onChange={() => apply(call(commands.setBuiltinPolicy("ask")))} /> Ask me, as for packages
          </label>
        </fieldset>
      </section>
      <section>
        <h2>About</h2>
        <dl className="facts">
          <dt>Console</dt>
          <dd>{s.appVersion}</dd>
          <dt>Kernel</dt>
          <dd>{s.kernelVersion}</dd>
        </dl>
        <div className="row">
          <button
            data-check="updates"
            onClick={() => {
              setUpdate("checking");
              call(commands.checkForUpdates())
                .then(setUpdate)
                .catch((e) => setUpdate({ status: "unreachable", message: asCommandError(e).message }));
            }}
            disabled={update === "checking"}
          >
            {update === "checking" ? "Checking…" : "Check for updates"}
          </button>
          {update && update !== "checking" && (
            <span role="status" className={update.status === "unreachable" ? "muted" : ""}>
              {update.status === "upToDate" && `ObjectOS ${update.current} is up to date.`}
              {update.status === "available" && `Version ${update.version} is available (you have ${update.current}).`}
              {update.status === "unreachable" && update.message}
            </span>
          )}
        </div>
      </section>
    </div>
  );
}

const QUOTAS: { key: keyof Quotas; label: string; unit: string }[] = [
  { key: "storageBytes", label: "Storage", unit: "bytes (its own keys and its records)" },
  { key: "queuedJobs", label: "Queued jobs", unit: "waiting or running at once" },
  { key: "eventsPerSecond", label: "Events", unit: "a second" },
  { key: "notificationsPerMinute", label: "Notifications", unit: "a minute" },
  { key: "inboxItems", label: "Notification centre", unit: "items kept per package" },
  { key: "logLinesPerMinute", label: "Log lines", unit: "a minute" },
];

/** Bytes as the nearest KiB or MiB, for reading a quota at a glance. */
function mib(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1).replace(/\.0$/, "")} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

/** What each package may take of what all plugins share; built-in plugins are not metered. */
function QuotasSection({ quotas, onSave }: { quotas: Quotas; onSave: (q: Quotas) => void }) {
  const [draft, setDraft] = useState<Record<string, string>>(() => Object.fromEntries(QUOTAS.map((q) => [q.key, String(quotas[q.key] ?? "")])));
  useEffect(() => setDraft(Object.fromEntries(QUOTAS.map((q) => [q.key, String(quotas[q.key] ?? "")]))), [quotas]);
  const parsed = Object.fromEntries(QUOTAS.map((q) => [q.key, Number(draft[q.key])]));
  const invalid = QUOTAS.filter((q) => !Number.isInteger(parsed[q.key]) || parsed[q.key] < 1).map((q) => q.label);
  const changed = QUOTAS.some((q) => parsed[q.key] !== quotas[q.key]);
  return (
    <section aria-label="Quotas">
      <h2>Quotas for packages</h2>
      <p className="muted">
        What one package may take of what every plugin shares. Past a quota its call is refused and audited (<code>limit.exceeded</code>); an admin&apos;s own
        notifications are never pushed out by a package&apos;s. Built-in plugins are not metered.
      </p>
      <table className="quotas">
        <tbody>
          {QUOTAS.map((q) => (
            <tr key={q.key}>
              <th scope="row">
                <label htmlFor={`quota-${q.key}`}>{q.label}</label>
              </th>
              <td>
                <input
                  id={`quota-${q.key}`}
                  data-quota={q.key}
                  inputMode="numeric"
                  value={draft[q.key]}
                  aria-invalid={invalid.includes(q.label)}
                  onChange={(e) => setDraft({ ...draft, [q.key]: e.target.value.trim() })}
                />
              </td>
              <td className="muted">
                {q.unit}
                {q.key === "storageBytes" && Number.isFinite(parsed[q.key]) && parsed[q.key] >= 1 && ` · ${mib(parsed[q.key])}`}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="row">
        <button className="primary" disabled={!changed || invalid.length > 0} onClick={() => onSave(parsed as unknown as Quotas)}>
          Save quotas
        </button>
        {invalid.length > 0 && <span className="pending">{invalid.join(", ")}: a whole number of at least 1</span>}
      </div>
    </section>
  );
}
