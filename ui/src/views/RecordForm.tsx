import { useEffect, useState } from "react";
import type { AuditRecord, HistoryStep, RecordField, RecordType, Value } from "../bindings";
import { asCommandError, call, commands, formatTime } from "../api";
import { Confirm } from "./common";
import { type Row, shown } from "./records";

/** The form a type's fields make, with each problem beside its field. */
export function RecordForm({
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
