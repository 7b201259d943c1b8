import { useEffect, useRef, useState } from "react";
import type { Action, CommandError, FailureKind, LastError, PluginInfo } from "../bindings";
import { asCommandError, call, commands, formatTime } from "../api";
import type { Route } from "../route";
import { Confirm, StateBadge } from "./common";
import { Declares } from "./Declares";
import { PermissionReview } from "./PermissionReview";
import { PluginSettings } from "./PluginSettings";
import { PluginUse } from "./PluginUse";

const ACTIONS: { action: Action; label: string }[] = [
  { action: "load", label: "Load" },
  { action: "enable", label: "Enable" },
  { action: "disable", label: "Disable" },
  { action: "unload", label: "Unload" },
  { action: "uninstall", label: "Uninstall" },
];

export function PluginDetail({
  info,
  plugins,
  focus,
  navigate,
  onError,
}: {
  info: PluginInfo;
  plugins: PluginInfo[];
  focus?: "permissions";
  navigate: (r: Route) => void;
  onError: (e: CommandError | null) => void;
}) {
  const m = info.manifest;
  const [busy, setBusy] = useState<Action | null>(null);
  const [cascade, setCascade] = useState<string[] | null>(null);
  const [confirmUninstall, setConfirmUninstall] = useState(false);
  const [deleteRecords, setDeleteRecords] = useState(false);
  const permsRef = useRef<HTMLDivElement>(null);
  const stateOf = (id: string) => plugins.find((p) => p.manifest.id === id)?.state;

  useEffect(() => {
    if (focus === "permissions") permsRef.current?.scrollIntoView({ behavior: "smooth", block: "start" });
  }, [focus]);

  async function run(action: Action, opts: { cascade?: boolean; deleteRecords?: boolean } = {}) {
    setBusy(action);
    onError(null);
    try {
      const withDeps = action === "enable";
      const after = await call(commands.pluginAction(m.id, action, withDeps, opts.cascade ?? false, opts.deleteRecords ?? false));
      // Uninstalled: there is nothing left to show here.
      if (after === null) navigate({ view: "plugins" });
    } catch (e) {
      const err = asCommandError(e);
      if (err.kind === "dependentsEnabled") setCascade(err.dependents);
      else {
        onError(err);
        if (err.kind === "permissionsPending") {
          navigate({ view: "plugins", id: err.plugin, focus: "permissions" });
          permsRef.current?.scrollIntoView({ behavior: "smooth" });
        }
      }
    } finally {
      setBusy(null);
    }
  }

  return (
    <article className="detail">
      <header className="detail-head">
        <div>
          <h1>
            {m.name} <span className="muted mono">{m.version}</span>
          </h1>
          <div className="muted mono">{m.id}</div>
        </div>
        <StateBadge state={info.state} />
      </header>
      {m.description && <p className="description">{m.description}</p>}

      <div className="actions" role="group" aria-label="Lifecycle">
        {ACTIONS.map(({ action, label }) => {
          const legal = info.actions.includes(action);
          return (
            <button
              key={action}
              className={action === "enable" ? "primary" : action === "uninstall" ? "danger" : ""}
              disabled={!legal || busy !== null}
              title={legal ? undefined : `Not possible while ${info.state}`}
              onClick={() => (action === "uninstall" ? setConfirmUninstall(true) : run(action))}
              data-action={action}
            >
              {busy === action ? `${label}…` : label}
            </button>
          );
        })}
        <button className="link" onClick={() => navigate({ view: "logs", plugin: m.id })}>
          Logs
        </button>
        <button className="link" onClick={() => navigate({ view: "audit", plugin: m.id })}>
          Audit
        </button>
      </div>

      {info.state === "error" && info.lastError && (
        <div className="banner error" role="alert" data-failure={info.lastError.kind ?? "failed"}>
          <div className="banner-body">
            <strong>{failureTitle(info.lastError)}</strong>
            <div className="banner-message mono">{info.lastError.message}</div>
            <div className="muted">
              {formatTime(info.lastError.at)} · {failureHint(info.lastError.kind ?? "failed")}
            </div>
          </div>
        </div>
      )}
      {info.authorChange && (
        <div className="banner warn" role="alert" data-author-change>
          <div className="banner-body">
            <strong>The author changed in version {info.authorChange.version}</strong>
            <div className="banner-message">
              This version is published by <strong>{info.authorChange.to ?? "nobody named"}</strong>, not{" "}
              <strong>{info.authorChange.from ?? "nobody named"}</strong>, under the same id. Nothing granted before carries over: review its
              permissions and approve them to accept the new author and enable it.
            </div>
          </div>
        </div>
      )}
      {info.resolveError && (
        <div className="banner warn" role="status">
          <div className="banner-body">
            <strong>Dependencies not satisfied</strong>
            <div className="banner-message">{info.resolveError}</div>
          </div>
        </div>
      )}

      <dl className="facts">
        <dt>Kind</dt>
        <dd>{info.kind === "builtin" ? "Built-in" : info.code ? "Package with code" : "Package"}</dd>
        {info.code && (
          <>
            <dt>Code</dt>
            <dd>
              <span className="mono">{info.code.main}</span> <span className="muted">({info.code.language}, sandboxed)</span>
            </dd>
          </>
        )}
        {m.author && (
          <>
            <dt>Author</dt>
            <dd>{m.author}</dd>
          </>
        )}
        {m.license && (
          <>
            <dt>License</dt>
            <dd>{m.license}</dd>
          </>
        )}
        {m.engines.objectos && (
          <>
            <dt>Needs ObjectOS</dt>
            <dd className="mono">{m.engines.objectos}</dd>
          </>
        )}
        <dt>Installed</dt>
        <dd>{formatTime(info.installedAt)}</dd>
        {info.services.length > 0 && (
          <>
            <dt>Services now</dt>
            <dd className="mono">{info.services.join(", ")}</dd>
          </>
        )}
      </dl>

      <div className="columns">
        <section>
          <h2>Requires</h2>
          {info.dependencies.length === 0 ? (
            <p className="muted">Nothing.</p>
          ) : (
            <ul className="deps">
              {info.dependencies.map((d) => (
                <li key={d.id} className={d.satisfied ? "" : "unsatisfied"}>
                  <button className="link mono" onClick={() => navigate({ view: "plugins", id: d.id })} disabled={!d.installed}>
                    {d.id}
                  </button>{" "}
                  <span className="mono">{d.range}</span>
                  {d.optional && <span className="muted"> optional</span>}
                  <span className="muted"> → {d.installed ? `${d.installed} ` : "not installed"}</span>
                  {d.state && <StateBadge state={d.state} />}
                  {!d.satisfied && <strong className="danger-text"> unsatisfied</strong>}
                </li>
              ))}
            </ul>
          )}
        </section>
        <section>
          <h2>Required by</h2>
          {info.dependents.length === 0 ? (
            <p className="muted">Nothing depends on it.</p>
          ) : (
            <ul className="deps">
              {info.dependents.map((d) => (
                <li key={d}>
                  <button className="link mono" onClick={() => navigate({ view: "plugins", id: d })}>
                    {d}
                  </button>{" "}
                  {stateOf(d) && <StateBadge state={stateOf(d)!} />}
                </li>
              ))}
            </ul>
          )}
        </section>
        <section>
          <h2>Provides</h2>
          {(["services", "events", "objects", "workflows", "automations", "translations"] as const).every((k) => m.provides[k].length === 0) ? (
            <p className="muted">Nothing declared.</p>
          ) : (
            <dl className="provides">
              {(["services", "events", "objects", "workflows", "automations", "translations"] as const)
                .filter((k) => m.provides[k].length > 0)
                .map((k) => (
                  <div key={k}>
                    <dt>{k}</dt>
                    <dd className="mono">{m.provides[k].join(", ")}</dd>
                  </div>
                ))}
            </dl>
          )}
        </section>
      </div>

      <Declares info={info} />

      <PluginSettings key={`settings-${m.id}`} id={m.id} onError={onError} />

      {info.code && <PluginUse key={`use-${m.id}`} id={m.id} code={info.code} />}

      <div ref={permsRef} className={focus === "permissions" && info.pending.length > 0 ? "focus-ring" : ""}>
        <PermissionReview info={info} onError={onError} />
      </div>

      {cascade && (
        <Confirm
          title={`Disable ${m.name} and its dependents?`}
          dependents={cascade}
          confirmLabel={`Disable ${cascade.length + 1} plugins`}
          testId="cascade"
          onCancel={() => setCascade(null)}
          onConfirm={() => {
            setCascade(null);
            run("disable", { cascade: true });
          }}
        >
          These enabled plugins depend on {m.id}. They will be disabled first, dependents of dependents first:
        </Confirm>
      )}
      {confirmUninstall && (
        <Confirm
          title={`Uninstall ${m.name}?`}
          confirmLabel="Uninstall"
          testId="uninstall"
          onCancel={() => setConfirmUninstall(false)}
          onConfirm={() => {
            setConfirmUninstall(false);
            run("uninstall", { deleteRecords });
          }}
        >
          <p>Its settings, grants and files are removed. Its logs and audit records stay.</p>
          {m.provides.objects.length > 0 && (
            <fieldset className="choice" aria-label="Its records">
              <legend>Its records ({m.provides.objects.join(", ")})</legend>
              <label>
                <input type="radio" name="records" checked={!deleteRecords} onChange={() => setDeleteRecords(false)} /> Keep them, for a reinstall of {m.id}{" "}
                <span className="muted">(no other package ever gets them)</span>
              </label>
              <label>
                <input type="radio" name="records" checked={deleteRecords} onChange={() => setDeleteRecords(true)} data-delete-records /> Delete them with it
              </label>
            </fieldset>
          )}
        </Confirm>
      )}
    </article>
  );
}

/** What stopped a plugin, in a few words, from its failure's kind. */
export function failureTitle(e: LastError): string {
  switch (e.kind) {
    case "quarantined":
      return "Stopped because its code kept failing";
    case "unresolved":
      return "Its dependencies are not met";
    case "missingBuiltin":
      return "Not part of this build";
    case "timedOut":
      return e.hook ? `${e.hook} did not finish in time` : "Did not finish in time";
    case "panicked":
      return e.hook ? `${e.hook} crashed` : "Crashed";
    default:
      return e.hook ? `${e.hook} failed` : "Not startable";
  }
}

/** What the admin can do about it. */
export function failureHint(kind: FailureKind): string {
  switch (kind) {
    case "quarantined":
      return "It stays stopped until you enable it again.";
    case "unresolved":
      return "Install or enable what it depends on, then load it again.";
    case "missingBuiltin":
      return "Use a build of ObjectOS that includes it, or leave it stopped.";
    default:
      return "Load it again to retry.";
  }
}
