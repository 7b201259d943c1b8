import { useEffect, useState } from "react";
import type { CommandError, SettingStatus } from "../bindings";
import { asCommandError, call, commands } from "../api";

type Draft = { [key: string]: string | boolean };

const initial = (s: SettingStatus): string | boolean => {
  if (s.secret) return "";
  const v = s.value ?? null;
  if (s.type === "boolean") return v === true || (v === null && s.default === true);
  return v === null ? "" : String(v);
};

/** A plugin's declared settings, editable. A secret is write-only: the form shows whether it
 * is set and takes a new value, and no value ever comes back from the kernel. */
export function PluginSettings({ id, onError }: { id: string; onError: (e: CommandError | null) => void }) {
  const [settings, setSettings] = useState<SettingStatus[] | null>(null);
  const [draft, setDraft] = useState<Draft>({});
  const [saving, setSaving] = useState(false);
  const [saved, setSaved] = useState(false);

  const adopt = (list: SettingStatus[]) => {
    setSettings(list);
    setDraft(Object.fromEntries(list.map((s) => [s.key, initial(s)])));
  };

  useEffect(() => {
    call(commands.pluginSettings(id))
      .then(adopt)
      .catch((e) => onError(asCommandError(e)));
  }, [id, onError]);

  if (!settings || settings.length === 0) return null;

  const changes = (): { [key: string]: unknown } => {
    const out: { [key: string]: unknown } = {};
    for (const s of settings) {
      const d = draft[s.key];
      if (s.secret) {
        if (typeof d === "string" && d !== "") out[s.key] = d;
      } else if (d !== initial(s)) {
        if (s.type === "boolean") out[s.key] = d;
        else if (d === "") out[s.key] = null;
        else if (s.type === "string") out[s.key] = d;
        else out[s.key] = Number(d);
      }
    }
    return out;
  };

  async function save(values: { [key: string]: unknown }) {
    setSaving(true);
    setSaved(false);
    onError(null);
    try {
      adopt(await call(commands.setPluginSettings(id, values as never)));
      setSaved(true);
    } catch (e) {
      onError(asCommandError(e));
    } finally {
      setSaving(false);
    }
  }

  const pending = changes();
  return (
    <section className="settings-form" aria-label="Settings" data-settings>
      <h2>Settings</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          save(pending);
        }}
      >
        {settings.map((s) => {
          const label = s.title ?? s.key;
          const missing = s.required && !s.set && draft[s.key] === "";
          return (
            <div className="setting" key={s.key}>
              <label htmlFor={`setting-${s.key}`}>
                {label} {s.required && <span className="muted small">required</span>}
              </label>
              {s.type === "boolean" ? (
                <input id={`setting-${s.key}`} type="checkbox" checked={draft[s.key] === true} onChange={(e) => setDraft({ ...draft, [s.key]: e.target.checked })} />
              ) : (
                <input
                  id={`setting-${s.key}`}
                  type={s.secret ? "password" : s.type === "string" ? "text" : "number"}
                  step={s.type === "integer" ? 1 : undefined}
                  autoComplete="off"
                  value={String(draft[s.key] ?? "")}
                  placeholder={s.secret ? (s.set ? "Set. Type a new value to replace it" : "Not set") : s.default !== null && s.default !== undefined ? `Default: ${String(s.default)}` : ""}
                  onChange={(e) => setDraft({ ...draft, [s.key]: e.target.value })}
                />
              )}
              {s.secret && (
                <span className={s.set ? "enforced small" : "muted small"} data-secret-state={s.key}>
                  {s.set ? "Secret set; it is never shown again" : "Secret not set"}
                  {s.set && (
                    <button type="button" className="link" onClick={() => save({ [s.key]: null })} disabled={saving}>
                      Remove
                    </button>
                  )}
                </span>
              )}
              {missing && <span className="danger-text small">The plugin needs this.</span>}
              {s.description && <div className="muted small">{s.description}</div>}
            </div>
          );
        })}
        <div className="actions">
          <button className="primary" type="submit" disabled={saving || Object.keys(pending).length === 0}>
            {saving ? "Saving…" : "Save settings"}
          </button>
          {saved && Object.keys(pending).length === 0 && <span className="muted">Saved.</span>}
        </div>
      </form>
    </section>
  );
}
