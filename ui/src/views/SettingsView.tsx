import { useEffect, useState } from "react";
import type { CommandError, PluginTexts, Settings, UpdateStatus } from "../bindings";
import { asCommandError, call, commands } from "../api";

/** A locale's name in its own language ("English", "中文（中国）"), or the tag itself. */
function nativeName(tag: string): string {
  try {
    return new Intl.DisplayNames([tag], { type: "language" }).of(tag) ?? tag;
  } catch {
    return tag;
  }
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
        </dl>
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
                {nativeName(l)} ({l})
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
