import { useEffect, useMemo, useRef, useState } from "react";
import { LOG_LEVELS, type KernelEvent, type Level, type LogRecord, type PluginInfo } from "../bindings";
import { call, commands, formatClock, onKernelEvents } from "../api";
import { Empty, PluginSelect } from "./common";
import { VirtualList } from "./VirtualList";

/** A level's rank in the kernel's order (least severe first), as the bindings export it. */
const rank = (l: Level) => LOG_LEVELS.indexOf(l);
/** Lines kept in memory; older ones drop off the top. */
export const MAX_LINES = 100_000;

export function matchesLog(l: LogRecord, plugin: string, level: Level, search: string): boolean {
  return (!plugin || l.plugin === plugin) && rank(l.level) >= rank(level) && (!search || l.message.toLowerCase().includes(search.toLowerCase()));
}

export function LogsView({ plugins, initialPlugin }: { plugins: PluginInfo[] | null; initialPlugin?: string }) {
  const [plugin, setPlugin] = useState(initialPlugin ?? "");
  const [level, setLevel] = useState<Level>("debug");
  const [search, setSearch] = useState("");
  const [lines, setLines] = useState<LogRecord[] | null>(null);
  const [paused, setPaused] = useState(false);
  const [held, setHeld] = useState<LogRecord[]>([]);
  const filters = useRef({ plugin, level, search, paused });
  filters.current = { plugin, level, search, paused };

  useEffect(() => {
    let live = true;
    call(commands.queryLogs(plugin || null, level, search || null, null, 5000)).then((l) => live && setLines(l)).catch(() => live && setLines([]));
    setHeld([]);
    return () => {
      live = false;
    };
  }, [plugin, level, search]);

  useEffect(
    () =>
      onKernelEvents((batch) => {
        const f = filters.current;
        const fresh = batch.filter((e): e is Extract<KernelEvent, { type: "log" }> => e.type === "log" && matchesLog(e, f.plugin, f.level, f.search));
        if (fresh.length === 0) return;
        if (f.paused) setHeld((h) => h.concat(fresh));
        else setLines((ls) => (ls ? append(ls, fresh) : ls));
      }),
    [],
  );

  const resume = () => {
    setLines((ls) => (ls ? append(ls, held) : ls));
    setHeld([]);
    setPaused(false);
  };

  const ids = useMemo(() => (plugins ?? []).map((p) => p.manifest.id), [plugins]);

  return (
    <div className="stream-view">
      <header className="pane-head">
        <h1>Logs</h1>
        <div className="filters">
          <PluginSelect ids={ids} value={plugin} onChange={setPlugin} />
          <select aria-label="Minimum level" value={level} onChange={(e) => setLevel(e.target.value as Level)}>
            {LOG_LEVELS.map((l) => (
              <option key={l} value={l}>
                {l} and above
              </option>
            ))}
          </select>
          <input type="search" aria-label="Search messages" placeholder="Search messages" value={search} onChange={(e) => setSearch(e.target.value)} />
          {paused ? (
            <button className="primary" onClick={resume}>
              Resume{held.length ? ` (${held.length} new)` : ""}
            </button>
          ) : (
            <button onClick={() => setPaused(true)}>Pause</button>
          )}
        </div>
      </header>
      {lines === null ? (
        <div className="loading">Loading log…</div>
      ) : lines.length === 0 ? (
        <Empty title="No log lines yet">
          <p>{plugin ? `${plugin} has not logged anything` : "Nothing has been logged"}{search || level !== "trace" ? " that matches these filters" : ""}. New lines appear here as they are written.</p>
        </Empty>
      ) : (
        <>
          <div className="muted small count">{lines.length.toLocaleString()} line(s){paused ? " · paused" : " · live"}</div>
          <VirtualList
            items={lines}
            rowHeight={22}
            follow={!paused}
            label="Log lines"
            render={(l) => (
              <div className={`logline lvl-${l.level}`}>
                <span className="ts">{formatClock(l.ts)}</span>
                <span className="lvl">{l.level}</span>
                <span className="src">{l.plugin}</span>
                <span className="msg">{l.message}</span>
              </div>
            )}
          />
        </>
      )}
    </div>
  );
}

function append(ls: LogRecord[], more: LogRecord[]): LogRecord[] {
  const next = ls.concat(more);
  return next.length > MAX_LINES ? next.slice(next.length - MAX_LINES) : next;
}
