import type { CommandError, State } from "../bindings";

export function StateBadge({ state }: { state: State }) {
  return <span className={`state state-${state}`}>{state}</span>;
}

export function RiskBadge({ risk }: { risk: "low" | "medium" | "high" }) {
  return <span className={`risk risk-${risk}`}>{risk} risk</span>;
}

export function ErrorBanner({ error, onClose, onRetry, action }: { error: CommandError; onClose?: () => void; onRetry?: () => void; action?: React.ReactNode }) {
  return (
    <div className="banner error" role="alert">
      <div className="banner-body">
        <strong>{titleFor(error)}</strong>
        <div className="banner-message">{error.message}</div>
        {error.kind === "manifest" && (
          <ul className="problems">
            {error.problems.map((p, i) => (
              <li key={i}>
                <code>{p.path}</code> {p.message}
              </li>
            ))}
          </ul>
        )}
      </div>
      <div className="banner-actions">
        {action}
        {onRetry && <button onClick={onRetry}>Retry</button>}
        {onClose && (
          <button onClick={onClose} aria-label="Dismiss">
            Dismiss
          </button>
        )}
      </div>
    </div>
  );
}

function titleFor(e: CommandError): string {
  switch (e.kind) {
    case "dependentsEnabled":
      return "Other plugins depend on this one";
    case "permissionsPending":
      return "Permissions need your approval first";
    case "manifest":
      return `The package is not valid (${e.file})`;
    case "hook":
      return `${e.plugin} failed in ${e.hook}`;
    default:
      return "That did not work";
  }
}

export function Empty({ title, children }: { title: string; children?: React.ReactNode }) {
  return (
    <div className="empty">
      <h3>{title}</h3>
      {children}
    </div>
  );
}

export function Modal({ title, children, onClose }: { title: string; children: React.ReactNode; onClose: () => void }) {
  return (
    <div className="modal-backdrop" onKeyDown={(e) => e.key === "Escape" && onClose()}>
      <div className="modal" role="dialog" aria-modal="true" aria-label={title}>
        <h2>{title}</h2>
        {children}
      </div>
    </div>
  );
}

/** "All plugins" or one of them; used by the log and audit filters. */
export function PluginSelect({ ids, value, onChange }: { ids: string[]; value: string; onChange: (id: string) => void }) {
  return (
    <select aria-label="Plugin" value={value} onChange={(e) => onChange(e.target.value)}>
      <option value="">All plugins</option>
      {ids.map((id) => (
        <option key={id} value={id}>
          {id}
        </option>
      ))}
    </select>
  );
}

/** A confirmation dialog for a destructive action; Cancel has the focus. */
export function Confirm({
  title,
  children,
  dependents,
  confirmLabel,
  onConfirm,
  onCancel,
  testId,
}: {
  title: string;
  children: React.ReactNode;
  dependents?: string[];
  confirmLabel: string;
  onConfirm: () => void;
  onCancel: () => void;
  testId?: string;
}) {
  return (
    <Modal title={title} onClose={onCancel}>
      <div className="confirm-body">{typeof children === "string" ? <p>{children}</p> : children}</div>
      {dependents && (
        <ul className="deps">
          {dependents.map((d) => (
            <li key={d} className="mono">
              {d}
            </li>
          ))}
        </ul>
      )}
      <div className="row end">
        <button onClick={onCancel} autoFocus>
          Cancel
        </button>
        <button className="danger" data-confirm={testId} onClick={onConfirm}>
          {confirmLabel}
        </button>
      </div>
    </Modal>
  );
}
