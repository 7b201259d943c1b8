import { useEffect, useMemo, useRef, useState } from "react";
import type { CommandError, PackageSource, PluginInfo, Sample, State } from "../bindings";
import { asCommandError, call, commands } from "../api";
import type { Route } from "../route";
import { Empty, StateBadge } from "./common";
import { PluginDetail } from "./PluginDetail";

const STATES: (State | "all" | "pending")[] = ["all", "enabled", "disabled", "loaded", "installed", "error", "pending"];

export function PluginsView({
  plugins,
  route,
  navigate,
  onError,
}: {
  plugins: PluginInfo[] | null;
  route: Extract<Route, { view: "plugins" }>;
  navigate: (r: Route) => void;
  onError: (e: CommandError | null) => void;
}) {
  const [query, setQuery] = useState("");
  const [filter, setFilter] = useState<(typeof STATES)[number]>("all");
  const [samples, setSamples] = useState<Sample[]>([]);
  const [busy, setBusy] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const listRef = useRef<HTMLDivElement>(null);

  useEffect(() => {
    call(commands.listSamples()).then(setSamples).catch(() => setSamples([]));
  }, [plugins]);

  const shown = useMemo(() => {
    const q = query.trim().toLowerCase();
    return (plugins ?? []).filter((p) => {
      if (filter === "pending" ? p.pending.length === 0 : filter !== "all" && p.state !== filter) return false;
      if (!q) return true;
      return [p.manifest.id, p.manifest.name, p.manifest.description].some((s) => s.toLowerCase().includes(q));
    });
  }, [plugins, query, filter]);

  const selected = plugins?.find((p) => p.manifest.id === route.id) ?? null;

  /** Install from the native dialog (a folder or a .zip, chosen there, never named here) or a sample. */
  async function install(source: PackageSource) {
    setBusy(source.kind === "sample" ? source.id : source.kind);
    onError(null);
    setNotice(null);
    try {
      const out = await call(commands.installPackage(source, false));
      if (!out) return; // the dialog was closed
      setNotice(
        out.upgradedFrom
          ? `Upgraded ${out.id} from ${out.upgradedFrom} to ${out.version}.`
          : `Installed ${out.id} ${out.version}.` + (out.pending.length ? ` Review its ${out.pending.length} permission request(s) below.` : ""),
      );
      navigate({ view: "plugins", id: out.id, focus: out.pending.length ? "permissions" : undefined });
    } catch (e) {
      onError(asCommandError(e));
    } finally {
      setBusy(null);
    }
  }


  function onListKey(e: React.KeyboardEvent) {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    e.preventDefault();
    const idx = shown.findIndex((p) => p.manifest.id === route.id);
    const next = shown[Math.max(0, Math.min(shown.length - 1, idx + (e.key === "ArrowDown" ? 1 : -1)))];
    if (next) {
      navigate({ view: "plugins", id: next.manifest.id });
      listRef.current?.querySelector<HTMLButtonElement>(`[data-id="${CSS.escape(next.manifest.id)}"]`)?.focus();
    }
  }

  const notInstalledSamples = samples.filter((s) => !s.installed);

  return (
    <div className="split">
      <section className="list-pane" aria-label="Installed plugins">
        <header className="pane-head">
          <h1>Plugins</h1>
          <div className="row">
            <button onClick={() => install({ kind: "folder" })} disabled={!!busy}>
              Install folder…
            </button>
            <button onClick={() => install({ kind: "archive" })} disabled={!!busy}>
              Install .zip…
            </button>
          </div>
        </header>
        <div className="filters">
          <input type="search" placeholder="Search name, id, description" aria-label="Search plugins" value={query} onChange={(e) => setQuery(e.target.value)} />
          <select aria-label="Filter by state" value={filter} onChange={(e) => setFilter(e.target.value as typeof filter)}>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s === "all" ? "All states" : s === "pending" ? "Awaiting approval" : s}
              </option>
            ))}
          </select>
        </div>
        {notice && (
          <div className="banner ok" role="status">
            {notice}
          </div>
        )}
        {plugins === null ? (
          <div className="loading">Loading plugins…</div>
        ) : shown.length === 0 ? (
          <Empty title={plugins.length === 0 ? "No plugins installed" : "No plugin matches"}>
            {plugins.length === 0 ? <p>Install a package, or try one of the samples below.</p> : <p>Clear the search or choose another state.</p>}
          </Empty>
        ) : (
          <div className="plugin-list" role="listbox" aria-label="Plugins" ref={listRef} onKeyDown={onListKey}>
            {shown.map((p) => (
              <button
                key={p.manifest.id}
                role="option"
                aria-selected={p.manifest.id === route.id}
                data-id={p.manifest.id}
                className={p.manifest.id === route.id ? "plugin-row selected" : "plugin-row"}
                onClick={() => navigate({ view: "plugins", id: p.manifest.id })}
              >
                <div className="plugin-row-main">
                  <span className="plugin-name">{p.manifest.name}</span>
                  <span className="muted mono">
                    {p.manifest.id} · {p.manifest.version}
                  </span>
                </div>
                <div className="plugin-row-tags">
                  <span className="kind">{p.kind === "builtin" ? "built-in" : "package"}</span>
                  {p.pending.length > 0 && <span className="badge warn">{p.pending.length} to review</span>}
                  <StateBadge state={p.state} />
                </div>
              </button>
            ))}
          </div>
        )}
        {notInstalledSamples.length > 0 && (
          <div className="samples" aria-label="Sample packages">
            <h2>Sample packages</h2>
            <p className="muted">Shipped with ObjectOS so you can try install → review → approve → enable.</p>
            {notInstalledSamples.map((s) => (
              <div className="sample" key={s.path}>
                <div>
                  <strong>{s.name}</strong> <span className="muted mono">{s.version}</span>
                  <div className="muted">{s.description}</div>
                </div>
                <button onClick={() => install({ kind: "sample", id: s.id })} disabled={!!busy} data-sample={s.id}>
                  {busy === s.id ? "Installing…" : "Install"}
                </button>
              </div>
            ))}
          </div>
        )}
      </section>
      <section className="detail-pane" aria-label="Plugin detail">
        {selected ? (
          <PluginDetail key={selected.manifest.id} info={selected} plugins={plugins ?? []} focus={route.focus} navigate={navigate} onError={onError} />
        ) : (
          <Empty title="Select a plugin">
            <p>Its manifest, dependencies, permissions and lifecycle actions appear here.</p>
          </Empty>
        )}
      </section>
    </div>
  );
}
