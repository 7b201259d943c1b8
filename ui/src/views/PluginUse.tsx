import { useEffect, useState } from "react";
import type { CodeInfo, PluginStats, Recent } from "../bindings";
import { call, commands } from "../api";

/** How often the panel asks for fresh figures while it is open. */
const REFRESH_MS = 2000;

const bytes = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const mib = (n: number) => `${Math.round(n / (1 << 20))} MiB`;
const millis = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${n} ms`);

/** A package's code at work: calls, CPU time, memory, web requests by host, denials and traps,
 * with the last ten minutes drawn in 20-second buckets. Refreshes while shown. */
export function PluginUse({ id, code }: { id: string; code: CodeInfo }) {
  const [stats, setStats] = useState<PluginStats | null>(null);
  const [failed, setFailed] = useState<string | null>(null);

  useEffect(() => {
    let alive = true;
    const load = () =>
      call(commands.pluginUsage(id))
        .then((s) => alive && (setStats(s), setFailed(null)))
        .catch((e) => alive && setFailed(e instanceof Error ? e.message : String(e)));
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => {
      alive = false;
      clearInterval(timer);
    };
  }, [id]);

  const c = stats?.code;
  const memoryBound = (code.bounds.memoryMiB ?? 64) * (1 << 20);
  const hosts = Object.entries(c?.requests ?? {});
  return (
    <section className="use" aria-label="Use" data-use>
      <h2>Use</h2>
      {failed && <p className="danger-text">{failed}</p>}
      <dl className="figures">
        <div>
          <dt>Calls</dt>
          <dd>{c?.calls ?? 0}</dd>
        </div>
        <div>
          <dt>CPU time</dt>
          <dd>{millis(c?.cpuMillis ?? 0)}</dd>
        </div>
        <div>
          <dt>Memory</dt>
          <dd title={`peak ${bytes(c?.memoryPeakBytes ?? 0)}`}>
            {bytes(c?.memoryBytes ?? 0)}
            <div className="muted small">of {mib(memoryBound)}</div>
          </dd>
        </div>
        <div>
          <dt>Web requests</dt>
          <dd>{hosts.reduce((n, [, h]) => n + h.requests, 0)}</dd>
        </div>
        <div className={(stats?.permissionDenials ?? 0) > 0 ? "warn-figure" : ""}>
          <dt>Denials</dt>
          <dd>{stats?.permissionDenials ?? 0}</dd>
        </div>
        <div className={(c?.traps ?? 0) > 0 ? "warn-figure" : ""}>
          <dt>Traps</dt>
          <dd>{c?.traps ?? 0}</dd>
        </div>
      </dl>
      <Chart recent={stats?.recent ?? []} />
      {hosts.length > 0 ? (
        <table className="hosts" aria-label="Web requests by host">
          <thead>
            <tr>
              <th>Host</th>
              <th>Requests</th>
              <th>Responses</th>
              <th>No response</th>
              <th>Sent</th>
              <th>Received</th>
            </tr>
          </thead>
          <tbody>
            {hosts.map(([host, h]) => (
              <tr key={host}>
                <td className="mono">{host}</td>
                <td>{h.requests}</td>
                <td className="mono">
                  {Object.entries(h.statuses)
                    .map(([status, n]) => `${status} ×${n}`)
                    .join(", ") || "—"}
                </td>
                <td className={h.failed > 0 ? "danger-text" : ""}>{h.failed}</td>
                <td>{bytes(h.bytesSent)}</td>
                <td>{bytes(h.bytesReceived)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted small">No web requests yet.</p>
      )}
    </section>
  );
}

/** Calls and web requests per 20 seconds over ten minutes; a red mark where something was
 * refused or trapped. */
function Chart({ recent }: { recent: Recent[] }) {
  const width = 600;
  const height = 72;
  const slot = width / Math.max(recent.length, 1);
  const top = Math.max(1, ...recent.map((b) => Math.max(b.calls, b.requests)));
  const y = (n: number) => ((height - 14) * n) / top;
  const total = recent.reduce((n, b) => n + b.calls + b.requests + b.denials + b.traps, 0);
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`Calls and web requests over the last ten minutes: ${total === 0 ? "nothing yet" : `${recent.reduce((n, b) => n + b.calls, 0)} calls, ${recent.reduce((n, b) => n + b.requests, 0)} requests`}`}>
        <line x1={0} x2={width} y1={height - 12} y2={height - 12} className="axis" />
        {recent.map((b, i) => {
          const x = i * slot;
          const title = `${new Date(b.start * 1000).toLocaleTimeString()}: ${b.calls} calls, ${b.requests} requests, ${b.denials} denials, ${b.traps} traps`;
          return (
            <g key={b.start}>
              <title>{title}</title>
              <rect x={x + 1} width={slot / 2 - 1.5} y={height - 12 - y(b.calls)} height={y(b.calls)} className="bar-calls" />
              <rect x={x + slot / 2} width={slot / 2 - 1.5} y={height - 12 - y(b.requests)} height={y(b.requests)} className="bar-requests" />
              {b.denials + b.traps > 0 && <circle cx={x + slot / 2} cy={6} r={3} className="mark-refused" />}
            </g>
          );
        })}
        <text x={0} y={height - 1} className="tick">
          10 min ago
        </text>
        <text x={width} y={height - 1} textAnchor="end" className="tick">
          now
        </text>
      </svg>
      <figcaption className="muted small">
        <span className="key key-calls" /> calls <span className="key key-requests" /> web requests <span className="key key-refused" /> denied or trapped
      </figcaption>
    </figure>
  );
}
