import { useEffect, useMemo, useRef, useState } from "react";
import type { AuditRecord, CommandError, KernelEvent, PluginInfo, Verification } from "../bindings";
import { asCommandError, call, commands, formatTime, onKernelEvents } from "../api";
import { Empty, PluginSelect } from "./common";
import { VirtualList } from "./VirtualList";

const SINCE: { label: string; ms: number | null }[] = [
  { label: "Any time", ms: null },
  { label: "Last hour", ms: 3600_000 },
  { label: "Last 24 hours", ms: 86400_000 },
  { label: "Last 7 days", ms: 7 * 86400_000 },
];

export function AuditView({ plugins, initialPlugin, onError }: { plugins: PluginInfo[] | null; initialPlugin?: string; onError: (e: CommandError | null) => void }) {
  const [plugin, setPlugin] = useState(initialPlugin ?? "");
  const [action, setAction] = useState("");
  const [actor, setActor] = useState("");
  const [since, setSince] = useState<number | null>(null);
  const [records, setRecords] = useState<AuditRecord[] | null>(null);
  const [verification, setVerification] = useState<Verification | null>(null);
  const [exported, setExported] = useState<string | null>(null);
  const filters = useRef({ plugin, action, actor });
  filters.current = { plugin, action, actor };
  const sinceTs = since === null ? null : Date.now() - since;

  useEffect(() => {
    call(commands.queryAudit(plugin || null, action || null, actor || null, sinceTs, 20000)).then(setRecords).catch((e) => onError(asCommandError(e)));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [plugin, action, actor, since]);

  const verify = () => call(commands.verifyAudit()).then(setVerification).catch((e) => onError(asCommandError(e)));
  useEffect(() => {
    verify();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(
    () =>
      onKernelEvents((batch) => {
        const f = filters.current;
        const fresh = batch.filter(
          (e): e is Extract<KernelEvent, { type: "audit" }> =>
            e.type === "audit" && (!f.plugin || e.plugin === f.plugin) && (!f.actor || e.actor === f.actor) && (!f.action || (f.action.endsWith(".") ? e.action.startsWith(f.action) : e.action === f.action)),
        );
        if (fresh.length) setRecords((rs) => (rs ? rs.concat(fresh) : rs));
      }),
    [],
  );

  async function exportAs(format: "json" | "csv") {
    try {
      // The save dialog opens in the console's backend; only the file chosen there is written.
      const done = await call(commands.exportAudit(format, plugin || null, action || null, actor || null, sinceTs));
      if (done) setExported(`Exported ${done.records} record(s) to ${done.path}`);
    } catch (e) {
      onError(asCommandError(e));
    }
  }

  const ids = useMemo(() => (plugins ?? []).map((p) => p.manifest.id), [plugins]);

  return (
    <div className="stream-view">
      <header className="pane-head">
        <h1>Audit trail</h1>
        <div className="row">
          {verification &&
            (verification.status === "intact" ? (
              <span className="badge ok" title="Every record links to the one before it">
                Chain intact · {verification.records} records
              </span>
            ) : (
              <span className="badge danger" role="alert">
                Chain broken at #{verification.id}: {verification.reason}
              </span>
            ))}
          <button onClick={verify}>Verify</button>
          <button onClick={() => exportAs("json")}>Export JSON…</button>
          <button onClick={() => exportAs("csv")}>Export CSV…</button>
        </div>
      </header>
      <div className="filters">
        <PluginSelect ids={ids} value={plugin} onChange={setPlugin} />
        <input aria-label="Action" placeholder="Action, e.g. plugin. or permission.denied" value={action} onChange={(e) => setAction(e.target.value.trim())} />
        <input aria-label="Actor" placeholder="Actor: admin, system, plugin:<id>" value={actor} onChange={(e) => setActor(e.target.value.trim())} />
        <select aria-label="Time" value={String(since)} onChange={(e) => setSince(e.target.value === "null" ? null : Number(e.target.value))}>
          {SINCE.map((s) => (
            <option key={s.label} value={String(s.ms)}>
              {s.label}
            </option>
          ))}
        </select>
      </div>
      {exported && (
        <div className="banner ok" role="status">
          {exported}
        </div>
      )}
      {records === null ? (
        <div className="loading">Loading audit trail…</div>
      ) : records.length === 0 ? (
        <Empty title="No audit records match">
          <p>Change the filters; new records appear here as they are written.</p>
        </Empty>
      ) : (
        <>
          <div className="audit-head">
            <span>#</span>
            <span>Time</span>
            <span>Actor</span>
            <span>Action</span>
            <span>Plugin</span>
            <span>Details</span>
          </div>
          <VirtualList
            items={records}
            rowHeight={26}
            follow
            label="Audit records"
            render={(r) => (
              <div className={`auditline act-${r.action.split(".")[0]}${r.action === "permission.denied" ? " denied" : ""}`}>
                <span className="mono">{r.id}</span>
                <span>{formatTime(r.ts)}</span>
                <span className="mono">{r.actor}</span>
                <span className="mono">{r.action}</span>
                <span className="mono">{r.plugin ?? "—"}</span>
                <span className="mono details" title={JSON.stringify(r.details)}>
                  {JSON.stringify(r.details)}
                </span>
              </div>
            )}
          />
        </>
      )}
    </div>
  );
}
