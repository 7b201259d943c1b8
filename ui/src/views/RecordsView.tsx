import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { CommandError, ImportReport, RecordField, RecordType } from "../bindings";
import { asCommandError, call, commands, onKernelEvent, onRecordsChanged } from "../api";
import { Empty, Modal } from "./common";
import { RecordForm } from "./RecordForm";
import { type Row, shown } from "./records";

/** Does the record hold `text` in any field? */
function matches(r: Row, text: string): boolean {
  const t = text.trim().toLowerCase();
  return !t || Object.values(r).some((v) => shown(v).toLowerCase().includes(t));
}

/** The records of the package types, as the admin: browse, search, filter, create, edit,
 * delete, and move through the workflow. Every rule of the type applies; grants do not. */
export function RecordsView({ onError }: { onError: (e: CommandError | null) => void }) {
  const [types, setTypes] = useState<RecordType[] | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const load = useCallback(() => {
    call(commands.recordTypes())
      .then((t) => {
        setTypes(t);
        setSelected((s) => (s && t.some((x) => x.name === s) ? s : (t[0]?.name ?? null)));
      })
      .catch((e) => onError(asCommandError(e)));
  }, [onError]);
  useEffect(() => {
    load();
    // Types come and go with packages.
    return onKernelEvent((e) => {
      if (e.type === "stateChanged" || e.type === "externalChange") load();
    });
  }, [load]);

  if (!types) return <div className="loading">Loading record types…</div>;
  if (types.length === 0)
    return (
      <Empty title="No records yet">
        <p>Record types come with packages. Install the sample CRM from Plugins, approve it and enable it to see accounts and opportunities here.</p>
      </Empty>
    );
  const byOwner = new Map<string, RecordType[]>();
  for (const t of types) byOwner.set(t.ownerName, [...(byOwner.get(t.ownerName) ?? []), t]);
  const type = types.find((t) => t.name === selected) ?? types[0];
  return (
    <div className="records">
      <nav className="record-types" aria-label="Record types">
        {[...byOwner.entries()].map(([owner, list]) => (
          <div key={owner} className="type-group">
            <div className="type-owner" title={list[0].owner}>
              {owner}
            </div>
            {list.map((t) => (
              <button key={t.name} className={t.name === type.name ? "nav active" : "nav"} onClick={() => setSelected(t.name)} data-type={t.name}>
                {t.label}
              </button>
            ))}
          </div>
        ))}
      </nav>
      <RecordTable key={type.name} type={type} types={types} onError={onError} />
    </div>
  );
}

function RecordTable({ type, types, onError }: { type: RecordType; types: RecordType[]; onError: (e: CommandError | null) => void }) {
  const [rows, setRows] = useState<Row[] | null>(null);
  const [search, setSearch] = useState("");
  const [filter, setFilter] = useState("");
  const [applied, setApplied] = useState("");
  const [filterError, setFilterError] = useState<string | null>(null);
  const [sort, setSort] = useState<{ field: string; desc: boolean } | null>(null);
  const [open, setOpen] = useState<Row | "new" | null>(null);
  const [report, setReport] = useState<ImportReport | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const load = useCallback(() => {
    call(commands.listRecords(type.name, applied || null, 10_000))
      .then((r) => {
        setRows(r as Row[]);
        setFilterError(null);
      })
      .catch((e) => {
        const err = asCommandError(e);
        if (applied) setFilterError(err.message);
        else onError(err);
        setRows([]);
      });
  }, [type.name, applied, onError]);
  useEffect(() => {
    load();
    // Changes made elsewhere (an automation, a package's code, the objectos command) show up
    // as they happen.
    const stopRecords = onRecordsChanged((changed) => {
      if (changed === null || changed === type.name) load();
    });
    const stopKernel = onKernelEvent((e) => {
      if (e.type === "externalChange") load();
    });
    return () => {
      stopRecords();
      stopKernel();
    };
  }, [load, type.name]);

  const columns = type.fields.slice(0, 6);
  const refLabels = useRefLabels(columns, types, rows);
  const shownRows = useMemo(() => {
    const list = (rows ?? []).filter((r) => matches(r, search));
    if (!sort) return list;
    return [...list].sort((a, b) => {
      const x = a[sort.field];
      const y = b[sort.field];
      const o = typeof x === "number" && typeof y === "number" ? x - y : shown(x).localeCompare(shown(y));
      return sort.desc ? -o : o;
    });
  }, [rows, search, sort]);
  const current = open && open !== "new" ? (rows ?? []).find((r) => r.id === open.id) ?? open : open;

  return (
    <section className="record-main" aria-label={`${type.label} records`}>
      <header className="pane-head">
        <div>
          <h1>{type.label}</h1>
          <div className="muted small mono">{type.name}</div>
        </div>
        <div className="row">
          <button onClick={() => call(commands.importRecords(type.name)).then(setReport).catch((e) => onError(asCommandError(e)))} data-import>
            Import CSV…
          </button>
          <button
            onClick={() =>
              call(commands.exportRecords(type.name))
                .then((done) => done && setNotice(`Exported ${done.records} record(s) to ${done.path}`))
                .catch((e) => onError(asCommandError(e)))
            }
          >
            Export CSV…
          </button>
          <button className="primary" onClick={() => setOpen("new")} data-new-record>
            New {type.label.toLowerCase()}
          </button>
        </div>
      </header>
      {notice && (
        <div className="banner ok" role="status">
          <div className="banner-message">{notice}</div>
          <button onClick={() => setNotice(null)}>Dismiss</button>
        </div>
      )}
      {report && (
        <ImportDialog
          report={report}
          label={type.label.toLowerCase()}
          onDone={(created) => {
            setReport(null);
            if (created !== null) {
              setNotice(`Created ${created} ${type.label.toLowerCase()} record(s) from ${report.file}`);
              load();
            }
          }}
          onError={onError}
        />
      )}
      <div className="filters row">
        <input aria-label="Search records" placeholder="Search" value={search} onChange={(e) => setSearch(e.target.value)} />
        <form
          className="row"
          onSubmit={(e) => {
            e.preventDefault();
            setApplied(filter.trim());
          }}
        >
          <input className="mono" aria-label="Filter expression" placeholder='Filter, e.g. amount > 1000 and stage != "lost"' value={filter} onChange={(e) => setFilter(e.target.value)} size={40} />
          <button type="submit">Apply</button>
        </form>
        {filterError && (
          <span className="pending" role="alert">
            {filterError}
          </span>
        )}
      </div>
      <div className="record-body">
        <div className="record-list">
          {rows === null ? (
            <div className="loading">Loading records…</div>
          ) : shownRows.length === 0 ? (
            <Empty title={rows.length === 0 ? `No ${type.label.toLowerCase()} records` : "No record matches"}>
              {filterError ? <p>The filter cannot be read; fix it above.</p> : rows.length === 0 ? <p>Create one with “New {type.label.toLowerCase()}”, or import a CSV with “Import CSV…”.</p> : <p>Clear the search or the filter.</p>}
            </Empty>
          ) : (
            <table className="records-table">
              <thead>
                <tr>
                  {columns.map((f) => (
                    <th key={f.name} aria-sort={sort?.field === f.name ? (sort.desc ? "descending" : "ascending") : undefined}>
                      <button className="link" onClick={() => setSort((s) => ({ field: f.name, desc: s?.field === f.name ? !s.desc : false }))}>
                        {f.label}
                        {sort?.field === f.name ? (sort.desc ? " ↓" : " ↑") : ""}
                      </button>
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {shownRows.map((r) => (
                  <tr
                    key={String(r.id)}
                    className={current !== "new" && current?.id === r.id ? "selected" : ""}
                    aria-selected={current !== "new" && current?.id === r.id}
                    tabIndex={0}
                    onClick={() => setOpen(r)}
                    onKeyDown={(e) => {
                      if (e.key === "Enter" || e.key === " ") {
                        e.preventDefault();
                        setOpen(r);
                      }
                    }}
                    data-record={String(r.id)}
                  >
                    {columns.map((f) => (
                      <td key={f.name} className={f.kind === "number" ? "num" : ""}>
                        {f.kind === "reference" ? <span title={shown(r[f.name])}>{refLabels.get(shown(r[f.name])) ?? shown(r[f.name])}</span> : shown(r[f.name])}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
        {current && (
          <RecordForm
            // A record changed by a transition, an automation or another process starts a fresh form.
            key={current === "new" ? "new" : `${String(current.id)}@${String(current.updated_at)}`}
            type={type}
            types={types}
            record={current === "new" ? null : current}
            onClose={() => setOpen(null)}
            onSaved={(r) => {
              setOpen(r);
              load();
            }}
            onDeleted={() => {
              setOpen(null);
              load();
            }}
          />
        )}
      </div>
    </section>
  );
}

/** The report of a checked CSV file: what passes, each row that does not with its line, and
 * the admin's go before anything is written. */
function ImportDialog({ report, label, onDone, onError }: { report: ImportReport; label: string; onDone: (created: number | null) => void; onError: (e: CommandError | null) => void }) {
  const [busy, setBusy] = useState(false);
  const done = useRef(false);
  // Closed any way but by importing (another view, Escape): the checked rows are dropped.
  useEffect(
    () => () => {
      if (!done.current) call(commands.cancelImport(report.token)).catch(() => {});
    },
    [report.token],
  );
  const cancel = () => onDone(null);
  return (
    <Modal title={`Import ${label} records`} onClose={cancel}>
      <p className="mono small">{report.file}</p>
      <p>
        {report.valid} row(s) pass every rule of the type
        {report.rejected.length > 0 ? `; ${report.rejected.length} do not, and would be skipped:` : "."}
      </p>
      {report.rejected.length > 0 && (
        <ul className="problems import-report" data-rejected={report.rejected.length}>
          {report.rejected.map((r) => (
            <li key={r.line}>
              <strong>line {r.line}</strong>: {r.problem}
            </li>
          ))}
        </ul>
      )}
      <div className="row end">
        <button onClick={cancel} autoFocus>
          Cancel
        </button>
        <button
          className="primary"
          disabled={busy || report.valid === 0}
          data-commit-import
          onClick={() => {
            setBusy(true);
            done.current = true;
            call(commands.commitImport(report.token))
              .then((r) => {
                if (r.failed.length > 0) onError({ kind: "other", code: "import", message: `${r.failed.length} row(s) could not be created: ${r.failed.map((f) => `line ${f.line}: ${f.problem}`).join("; ")}` });
                onDone(r.created);
              })
              .catch((e) => {
                onError(asCommandError(e));
                onDone(null);
              });
          }}
        >
          {report.rejected.length > 0 ? `Import the ${report.valid} valid row(s)` : `Import ${report.valid} row(s)`}
        </button>
      </div>
    </Modal>
  );
}

/** Labels (the first text field) of the records the table's reference columns point at: one
 * lookup per referenced type, again when the rows change. */
function useRefLabels(columns: RecordField[], types: RecordType[], rows: Row[] | null): Map<string, string> {
  const [labels, setLabels] = useState<Map<string, string>>(new Map());
  const targets = useMemo(() => [...new Set(columns.filter((f) => f.kind === "reference" && f.reference).map((f) => f.reference as string))].join("\n"), [columns]);
  useEffect(() => {
    if (!targets || !rows) return;
    let live = true;
    Promise.all(
      targets.split("\n").map(async (name) => {
        const t = types.find((x) => x.name === name);
        const label = t?.fields.find((f) => f.kind === "text")?.name;
        if (!t || !label) return [] as [string, string][];
        const list = (await call(commands.listRecords(t.name, null, 10_000)).catch(() => [])) as Row[];
        return list.map((r) => [String(r.id), shown(r[label])] as [string, string]);
      }),
    ).then((parts) => live && setLabels(new Map(parts.flat())));
    return () => {
      live = false;
    };
  }, [targets, types, rows]);
  return labels;
}
