import { useState, type ReactNode } from "react";
import type { CodeInfo, CommandError, Owner, PluginInfo } from "../bindings";
import { asCommandError, call, commands, formatTime } from "../api";
import { Confirm, RiskBadge } from "./common";

/** What a package's code may use besides its permissions: the sandbox's bounds. */
function CodeBounds({ code }: { code: CodeInfo }) {
  const b = code.bounds;
  const ms = (n?: number | null) => (n == null ? "—" : n >= 1000 && n % 1000 === 0 ? `${n / 1000} s` : `${n} ms`);
  return (
    <div className="code-bounds" data-code>
      <div>
        <strong>Runs code in the sandbox:</strong> <code>{code.main}</code> <span className="muted">({code.language})</span>
      </div>
      <p className="muted small">
        It can reach only what the permissions below allow: no other hosts or folders, no environment, no other programs. Every call it
        makes is checked, and each refusal is audited.
      </p>
      <ul className="bound-list">
        <li>
          <span className="bound-value">{b.memoryMiB ?? "—"} MiB</span> memory
        </li>
        <li>
          <span className="bound-value">{ms(b.hookMs)}</span> per lifecycle step
        </li>
        <li>
          <span className="bound-value">{ms(b.callMs)}</span> per event or service call
        </li>
        <li>
          <span className="bound-value">{code.stackKib} KiB</span> stack
        </li>
      </ul>
      <p className="muted small">A call over a bound fails alone; five failures in ten minutes stop the plugin and notify you.</p>
    </div>
  );
}

export function PermissionReview({ info, onError }: { info: PluginInfo; onError: (e: CommandError | null) => void }) {
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState<string | null>(null);
  const [cascade, setCascade] = useState<{ permissions: string[]; dependents: string[] } | null>(null);
  const perms = info.permissions;
  const pendingAll = perms.filter((p) => !p.grant);
  const toggle = (p: string) =>
    setSelected((s) => {
      const n = new Set(s);
      if (n.has(p)) n.delete(p);
      else n.add(p);
      return n;
    });

  async function act(f: () => Promise<unknown>, done: string, revoking?: string[]) {
    setBusy(true);
    onError(null);
    try {
      await f();
      setSelected(new Set());
      setNote(done);
    } catch (e) {
      const err = asCommandError(e);
      if (err.kind === "dependentsEnabled" && revoking) setCascade({ permissions: revoking, dependents: err.dependents });
      else onError(err);
    } finally {
      setBusy(false);
    }
  }

  const id = info.manifest.id;
  const chosen = [...selected];
  const chosenGranted = chosen.filter((p) => perms.find((x) => x.permission === p)?.grant);
  const chosenPending = chosen.filter((p) => !perms.find((x) => x.permission === p)?.grant);

  return (
    <section className="permissions" aria-label="Permissions">
      <div className="section-head">
        <h2>Permissions</h2>
        {info.pending.length > 0 ? (
          <span className="badge warn">{info.pending.length} required awaiting approval</span>
        ) : perms.length > 0 ? (
          <span className="badge ok">All required permissions granted</span>
        ) : null}
      </div>
      {info.code && <CodeBounds code={info.code} />}
      {perms.length === 0 ? (
        <p className="muted">This plugin asks for no permissions.</p>
      ) : (
        <>
          <table className="perm-table">
            <thead>
              <tr>
                <th aria-label="Select" />
                <th>Permission</th>
                <th>What it allows</th>
                <th>Risk</th>
                <th>Status</th>
              </tr>
            </thead>
            <tbody>
              {perms.map((p) => (
                <tr key={p.permission} className={p.new ? "new" : ""}>
                  <td>
                    <input type="checkbox" aria-label={`Select ${p.permission}`} checked={selected.has(p.permission)} onChange={() => toggle(p.permission)} />
                  </td>
                  <td>
                    <code>{breakable(p.permission)}</code>
                    <div className="muted small">
                      {p.required ? "required" : "optional"}
                      {p.new && <strong className="new-tag"> new in this version</strong>}
                    </div>
                  </td>
                  <td>
                    {p.description}
                    {p.owners.length > 0 && <Owners of={p.owners} self={id} />}
                    {!p.enforced && <div className="muted small">Declared, not enforced: built-in code runs in the host process.</div>}
                    {p.enforced && reachesOut(p.permission) && <div className="enforced small">Enforced by the sandbox: nothing else is reachable.</div>}
                    {p.excludes.length > 0 && (
                      <div className="enforced small" data-excludes>
                        ObjectOS's own data stays out of reach: {p.excludes.map((f, i) => <span key={f}>{i > 0 && ", "}<code>{breakable(f)}</code></span>)}
                      </div>
                    )}
                  </td>
                  <td>
                    <RiskBadge risk={p.risk} />
                  </td>
                  <td>
                    {p.grant ? (
                      <span className="granted" title={formatTime(p.grant.grantedAt)}>
                        Granted by {p.grant.grantedBy}
                      </span>
                    ) : (
                      <span className="pending">Pending</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="row">
            <button className="primary" disabled={busy || pendingAll.length === 0} onClick={() => act(() => call(commands.grantPermissions(id, null)), `Approved everything ${info.manifest.name} asks for.`)} data-perm="approve-all">
              Approve all
            </button>
            <button disabled={busy || chosenPending.length === 0} onClick={() => act(() => call(commands.grantPermissions(id, chosenPending)), `Approved ${chosenPending.length} permission(s).`)}>
              Approve selected
            </button>
            <button
              disabled={busy || chosenPending.length === 0}
              onClick={() => {
                setSelected(new Set());
                setNote(`Denied: ${chosenPending.join(", ")}. ${info.manifest.name} stays ${info.state}${chosenPending.some((p) => info.pending.includes(p)) ? " and cannot be enabled without them" : ""}.`);
              }}
            >
              Deny selected
            </button>
            <button className="danger" disabled={busy || chosenGranted.length === 0} onClick={() => act(() => call(commands.revokePermissions(id, chosenGranted, false)), `Revoked ${chosenGranted.length} permission(s).`, chosenGranted)}>
              Revoke selected
            </button>
          </div>
          {note && (
            <p className="muted" role="status">
              {note}
            </p>
          )}
        </>
      )}
      {cascade && (
        <Confirm
          title={`Revoke and disable ${info.manifest.name}?`}
          dependents={cascade.dependents}
          confirmLabel={`Revoke and disable ${cascade.dependents.length + 1} plugins`}
          onCancel={() => setCascade(null)}
          onConfirm={() => {
            const perms = cascade.permissions;
            setCascade(null);
            act(() => call(commands.revokePermissions(id, perms, true)), `Revoked ${perms.length} permission(s); ${info.manifest.name} and its dependents are disabled.`);
          }}
        >
          {info.manifest.name} needs {cascade.permissions.join(", ")} to run, so it will be disabled. These enabled plugins depend on it and will be disabled first:
        </Confirm>
      )}
    </section>
  );
}

/** Whose topics, services or records a permission reaches: "its own", or the owners by name. */
function Owners({ of, self }: { of: Owner[]; self: string }) {
  const others = of.filter((o) => o.id !== self);
  const own = others.length < of.length;
  return (
    <div className="muted small" data-owners={of.map((o) => o.id).join(" ")}>
      {own && others.length === 0 && "Its own."}
      {others.length > 0 && (
        <>
          Reaches {own ? "its own and " : ""}
          {others.map((o, i) => (
            <span key={o.id}>
              {i > 0 && (i === others.length - 1 ? " and " : ", ")}
              <strong>{o.name}</strong> <span title={o.id}>({o.id})</span>
            </span>
          ))}
          ’s.
        </>
      )}
    </div>
  );
}

/** Network and file permissions: the ones whose exact reach the review spells out. */
/** A permission with places to wrap after its separators (`.`, `:`, `/`), so a long grant
 * breaks between names, not inside one. */
export function breakable(text: string): ReactNode[] {
  // Each part is a name and the separator after it (no lookbehind: older WebKit lacks it).
  const parts = text.match(/[^.:/]*[.:/]|[^.:/]+/g) ?? [];
  return parts.flatMap((part, i) => (i ? [<wbr key={i} />, part] : [part]));
}

function reachesOut(permission: string): boolean {
  return permission.startsWith("network.connect:") || permission.startsWith("fs.read:") || permission.startsWith("fs.write:");
}
