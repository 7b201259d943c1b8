import { useEffect, useMemo, useState } from "react";
import { MarkerType, Position, ReactFlow, type Edge, type Node } from "@xyflow/react";
import dagre from "@dagrejs/dagre";
import type { DefinitionsView, PluginInfo, WorkflowView } from "../bindings";
import { asCommandError, call, commands } from "../api";
import { ErrorBanner } from "./common";
import type { CommandError } from "../bindings";

const STATE_W = 140;
const STATE_H = 50;

/** Lay a workflow's states out left to right; the initial state is marked, final ones double-bordered. */
export function stateDiagram(w: WorkflowView): { nodes: Node[]; edges: Edge[] } {
  const d = new dagre.graphlib.Graph({ multigraph: true });
  d.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 70 });
  d.setDefaultEdgeLabel(() => ({}));
  for (const s of w.states) d.setNode(s.name, { width: STATE_W, height: STATE_H });
  w.transitions.forEach((t, i) => d.setEdge(t.from, t.to, {}, String(i)));
  dagre.layout(d);
  const leaving = new Set(w.transitions.map((t) => t.from));
  const nodes: Node[] = w.states.map((s) => {
    const p = d.node(s.name);
    const classes = ["wstate", s.name === w.initial ? "wstate-initial" : "", leaving.has(s.name) ? "" : "wstate-final"].filter(Boolean).join(" ");
    const entry = s.entry.length ? `\n${s.entry.join("; ")}` : "";
    return {
      id: s.name,
      position: { x: p.x - STATE_W / 2, y: p.y - STATE_H / 2 },
      data: { label: `${s.name === w.initial ? "▶ " : ""}${s.name}${entry}` },
      className: classes,
      sourcePosition: Position.Right,
      targetPosition: Position.Left,
      width: STATE_W,
      draggable: false,
      connectable: false,
    };
  });
  const edges: Edge[] = w.transitions.map((t, i) => ({
    id: `${t.from}-${t.event}-${i}`,
    source: t.from,
    target: t.to,
    label: t.guard ? `${t.event} ⚑` : t.event,
    markerEnd: { type: MarkerType.ArrowClosed },
    className: t.guard ? "wedge-guarded" : "wedge",
  }));
  return { nodes, edges };
}

function Diagram({ w }: { w: WorkflowView }) {
  const { nodes, edges } = useMemo(() => stateDiagram(w), [w]);
  return (
    <div className="state-diagram" data-workflow={w.name}>
      <ReactFlow nodes={nodes} edges={edges} fitView proOptions={{ hideAttribution: true }} nodesDraggable={false} nodesConnectable={false} elementsSelectable={false} zoomOnScroll={false} panOnScroll={false} />
    </div>
  );
}

/** A package's record types, workflows (as state diagrams) and automations. */
export function Declares({ info }: { info: PluginInfo }) {
  const p = info.manifest.provides;
  const declares = info.kind === "package" && p.objects.length + p.workflows.length + p.automations.length > 0;
  const [defs, setDefs] = useState<DefinitionsView | null>(null);
  const [error, setError] = useState<CommandError | null>(null);
  const id = info.manifest.id;
  const version = info.manifest.version;
  useEffect(() => {
    if (!declares) return;
    let live = true;
    call(commands.packageDefinitions(id))
      .then((d) => live && (setDefs(d), setError(null)))
      .catch((e) => live && setError(asCommandError(e)));
    return () => {
      live = false;
    };
  }, [declares, id, version]);
  if (!declares) return null;
  if (error) return <ErrorBanner error={error} />;
  if (!defs) return <div className="loading">Reading its record types…</div>;
  const guarded = (w: WorkflowView) => w.transitions.filter((t) => t.guard);
  return (
    <section className="declares" aria-label="Declares">
      {defs.workflows.map((w) => (
        <div key={w.name}>
          <h2>
            Workflow <span className="mono">{w.name}</span>{" "}
            <span className="muted small">
              on {w.object}.{w.field}, starts in {w.initial}
            </span>
          </h2>
          <Diagram w={w} />
          {guarded(w).length > 0 && (
            <ul className="guards" aria-label="Guards">
              {guarded(w).map((t) => (
                <li key={`${t.from}-${t.event}`}>
                  ⚑ <span className="mono">{t.event}</span> from {t.from} only if <code>{t.guard}</code>
                </li>
              ))}
            </ul>
          )}
        </div>
      ))}
      {defs.automations.length > 0 && (
        <>
          <h2>Automations</h2>
          <ul className="automations">
            {defs.automations.map((a) => (
              <li key={a.name} data-automation={a.name}>
                <strong className="mono">{a.name}</strong>: when <span className="mono">{a.trigger}</span>
                {a.condition && (
                  <>
                    {" "}
                    if <code>{a.condition}</code>
                  </>
                )}
                , {a.actions.join("; ")}
              </li>
            ))}
          </ul>
        </>
      )}
      {defs.objects.length > 0 && (
        <>
          <h2>Record types</h2>
          <div className="objects">
            {defs.objects.map((o) => (
              <table key={o.name} className="fields" data-object={o.name}>
                <caption>
                  {o.label} <span className="muted mono">{o.name}</span>
                </caption>
                <tbody>
                  {o.fields.map((f) => (
                    <tr key={f.name}>
                      <td>
                        {f.label}
                        {f.required && <span className="req" title="required"> *</span>}
                        <div className="muted mono small">{f.name}</div>
                      </td>
                      <td className="mono">{f.kind}</td>
                      <td className="muted small">{f.detail}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ))}
          </div>
        </>
      )}
    </section>
  );
}
