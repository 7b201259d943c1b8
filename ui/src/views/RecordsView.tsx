import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { AuditRecord, CommandError, HistoryStep, ImportReport, RecordField, RecordType, Value } from "../bindings";
import { asCommandError, call, commands, formatTime, onKernelEvent } from "../api";
import { Confirm, Empty, Modal } from "./common";

type Row = Record<string, unknown>;

/** The value of a field as a person reads it in a table. */
function shown(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}

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
    // Changes made elsewhere (the objectos command, an automation) show up as they happen.
    return onKernelEvent((e) => {
      if (e.type === "audit" && e.action.startsWith("data.") && (e.details as { object?: string })?.object === type.name) load();
      if (e.type === "externalChange") load();
    });
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

/** A record's way through its workflow, newest first. */
function History({ type, id }: { type: string; id: string }) {
  const [steps, setSteps] = useState<HistoryStep[] | null>(null);
  useEffect(() => {
    call(commands.recordHistory(type, id))
      .then(setSteps)
      .catch(() => setSteps([]));
  }, [type, id]);
  if (!steps || steps.length === 0) return null;
  return (
    <section className="record-history" aria-label="History">
      <h3>History</h3>
      <ol reversed>
        {[...steps].reverse().map((s, i) => (
          <li key={i}>
            <span className="mono">{s.event}</span>: {s.from} → {s.to} <span className="muted small">by {s.by}, {formatTime(s.at)}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}

/** Who wrote or moved this record, from the audit trail (the owner's newest records). */
function RecordAudit({ type, id }: { type: RecordType; id: string }) {
  const [rows, setRows] = useState<AuditRecord[] | null>(null);
  useEffect(() => {
    call(commands.queryAudit(type.owner, null, null, null, 2_000))
      .then((all) => setRows(all.filter((r) => (r.details as { object?: string; id?: string })?.object === type.name && (r.details as { id?: string })?.id === id)))
      .catch(() => setRows([]));
  }, [type, id]);
  if (!rows || rows.length === 0) return null;
  return (
    <section className="record-history" aria-label="Audit">
      <h3>Audit</h3>
      <ol reversed>
        {[...rows].reverse().map((r) => (
          <li key={r.id}>
            <span className="mono">{r.action}</span> by {r.actor}{" "}
            <span className="muted small">
              {formatTime(r.ts)}
              {Array.isArray((r.details as { fields?: string[] }).fields) && ` · ${(r.details as { fields: string[] }).fields.join(", ")}`}
            </span>
          </li>
        ))}
      </ol>
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

/** The form a type's fields make, with each problem beside its field. */
function RecordForm({
  type,
  types,
  record,
  onClose,
  onSaved,
  onDeleted,
}: {
  type: RecordType;
  types: RecordType[];
  record: Row | null;
  onClose: () => void;
  onSaved: (r: Row) => void;
  onDeleted: () => void;
}) {
  const [draft, setDraft] = useState<Row>(() => (record ? { ...record } : Object.fromEntries(type.fields.filter((f) => f.default !== null && f.default !== undefined).map((f) => [f.name, f.default]))));
  const [problems, setProblems] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [warnings, setWarnings] = useState<string[]>([]);
  const wf = type.workflow;
  const state = record && wf ? shown(record[wf.field]) || wf.initial : null;
  const allowed = wf && state ? wf.transitions.filter((t) => t.from === state) : [];
  // An event fires on the record as stored: unsaved edits must be saved first.
  const dirty = record !== null && type.fields.some((f) => (draft[f.name] ?? null) !== (record[f.name] ?? null) && String(draft[f.name] ?? "") !== String(record[f.name] ?? ""));

  function fail(e: unknown) {
    const err = asCommandError(e);
    if (err.kind === "manifest") {
      setProblems(Object.fromEntries(err.problems.map((p) => [p.path.replace(/^\$\./, ""), p.message])));
      setError(null);
    } else {
      setProblems({});
      setError(err.message);
    }
  }

  async function save() {
    setBusy(true);
    try {
      const fields: Row = {};
      const bad: Record<string, string> = {};
      for (const f of type.fields) {
        if (wf && f.name === wf.field) continue; // the workflow moves it
        let v = draft[f.name];
        if (f.kind === "number" && typeof v === "string") {
          const t = v.trim();
          v = t === "" ? "" : Number(t);
          if (typeof v === "number" && !Number.isFinite(v)) bad[f.name] = `\`${t}\` is not a number`;
        }
        if (record === null && (v === undefined || v === "")) continue; // defaults apply
        if (record !== null && (v ?? null) === (record[f.name] ?? null)) continue;
        fields[f.name] = v === "" ? null : v;
      }
      if (Object.keys(bad).length > 0) {
        setProblems(bad);
        return;
      }
      const saved = (await call(commands.saveRecord(type.name, record ? String(record.id) : null, fields as unknown as Value))) as Row;
      setProblems({});
      setError(null);
      onSaved(saved);
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  }

  async function fire(event: string) {
    if (!record) return;
    setBusy(true);
    try {
      const after = await call(commands.transitionRecord(type.name, String(record.id), event));
      setError(null);
      setWarnings(after.warnings);
      onSaved(after.record as Row);
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  }

  return (
    <aside className="record-form" aria-label={record ? `${type.label} ${shown(record.id)}` : `New ${type.label.toLowerCase()}`}>
      <header className="row">
        <h2>{record ? (shown(record[type.fields.find((f) => f.kind === "text")?.name ?? "id"]) || shown(record.id)) : `New ${type.label.toLowerCase()}`}</h2>
        <button className="link" onClick={onClose} aria-label="Close">
          Close
        </button>
      </header>
      {wf && state && (
        <div className="workflow-bar">
          <span>
            {wf.field}: <span className="badge accent">{state}</span>
          </span>
          {allowed.map((t) => (
            <button
              key={t.event}
              onClick={() => fire(t.event)}
              disabled={busy || dirty}
              title={dirty ? "Save your changes first" : t.guard ? `only if ${t.guard}` : undefined}
              data-event={t.event}
            >
              {t.event} → {t.to}
            </button>
          ))}
          {allowed.length === 0 && <span className="muted">a final state</span>}
        </div>
      )}
      {error && (
        <div className="banner error" role="alert">
          <div className="banner-message">{error}</div>
        </div>
      )}
      {warnings.length > 0 && (
        <div className="banner warn" role="status">
          <div className="banner-message">
            The transition stands, but an entry action failed (see the package&apos;s log): {warnings.join("; ")}
          </div>
        </div>
      )}
      <div className="form-fields">
        {type.fields
          .filter((f) => !(wf && f.name === wf.field))
          .map((f) => (
            <FieldInput key={f.name} field={f} types={types} value={draft[f.name]} problem={problems[f.name]} onChange={(v) => setDraft({ ...draft, [f.name]: v })} />
          ))}
      </div>
      <div className="row end">
        {record && (
          <button className="danger" onClick={() => setConfirmDelete(true)} disabled={busy}>
            Delete
          </button>
        )}
        <button className="primary" onClick={save} disabled={busy} data-save-record>
          {record ? "Save" : "Create"}
        </button>
      </div>
      {record && wf && <History type={type.name} id={String(record.id)} />}
      {record && <RecordAudit type={type} id={String(record.id)} />}
      {confirmDelete && record && (
        <Confirm
          title={`Delete this ${type.label.toLowerCase()}?`}
          confirmLabel="Delete"
          onCancel={() => setConfirmDelete(false)}
          onConfirm={() => {
            setConfirmDelete(false);
            call(commands.deleteRecord(type.name, String(record.id)))
              .then(onDeleted)
              .catch(fail);
          }}
        >
          It is removed for good; the audit trail keeps that you deleted it.
        </Confirm>
      )}
    </aside>
  );
}

function FieldInput({ field, types, value, problem, onChange }: { field: RecordField; types: RecordType[]; value: unknown; problem?: string; onChange: (v: unknown) => void }) {
  const id = `field-${field.name}`;
  const common = { id, "aria-invalid": !!problem, "aria-required": field.required, "aria-describedby": problem ? `${id}-problem` : undefined, "data-field": field.name };
  let input: React.ReactNode;
  switch (field.kind) {
    case "number":
      input = (
        <input
          {...common}
          type="number"
          min={field.min ?? undefined}
          max={field.max ?? undefined}
          value={value === null || value === undefined ? "" : String(value)}
          onChange={(e) => onChange(e.target.value)}
        />
      );
      break;
    case "boolean":
      input = <input {...common} type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} />;
      break;
    case "date":
      input = <input {...common} type="date" value={shown(value)} onChange={(e) => onChange(e.target.value)} />;
      break;
    case "enum":
      input = (
        <select {...common} value={shown(value)} onChange={(e) => onChange(e.target.value)}>
          <option value="">{field.required ? "Choose…" : "—"}</option>
          {field.values.map((v) => (
            <option key={v} value={v}>
              {v}
            </option>
          ))}
        </select>
      );
      break;
    case "reference":
      input = <ReferencePicker common={common} type={types.find((t) => t.name === field.reference)} value={shown(value)} onChange={onChange} />;
      break;
    default:
      input = <input {...common} maxLength={field.maxLength ?? undefined} value={shown(value)} onChange={(e) => onChange(e.target.value)} />;
  }
  return (
    <div className={problem ? "form-field invalid" : "form-field"}>
      <label htmlFor={id}>
        {field.label}
        {field.required && <span className="required" title="required"> *</span>}
      </label>
      {input}
      {problem ? (
        <div className="problem" id={`${id}-problem`} role="alert">
          {problem}
        </div>
      ) : (
        field.detail && <div className="muted small">{field.detail}</div>
      )}
    </div>
  );
}

/** Choose a record of the referenced type, by its first text field. */
function ReferencePicker({ common, type, value, onChange }: { common: Record<string, unknown>; type?: RecordType; value: string; onChange: (v: unknown) => void }) {
  const [options, setOptions] = useState<Row[]>([]);
  useEffect(() => {
    if (!type) return;
    call(commands.listRecords(type.name, null, 1_000))
      .then((r) => setOptions(r as Row[]))
      .catch(() => setOptions([]));
  }, [type]);
  const label = type?.fields.find((f) => f.kind === "text")?.name;
  return (
    <select {...common} value={value} onChange={(e) => onChange(e.target.value)}>
      <option value="">—</option>
      {options.map((o) => (
        <option key={String(o.id)} value={String(o.id)}>
          {label ? shown(o[label]) || String(o.id) : String(o.id)}
        </option>
      ))}
    </select>
  );
}
