import { useEffect, useMemo, useState } from "react";
import { Background, Controls, MarkerType, MiniMap, Position, ReactFlow, type Edge, type Node } from "@xyflow/react";
import dagre from "@dagrejs/dagre";
import type { Graph, PluginInfo, State } from "../bindings";
import { asCommandError, call, commands } from "../api";
import type { Route } from "../route";
import { Empty, ErrorBanner, PluginSelect } from "./common";

const NODE_W = 210;
const NODE_H = 58;

export const STATE_COLORS: Record<State | "missing", string> = {
  enabled: "#2e9d58",
  disabled: "#8a8f98",
  loaded: "#3b7dd8",
  installed: "#b0854a",
  error: "#d64545",
  missing: "#d64545",
};

/** The part of the graph connected to `id`: what it needs, transitively, and what needs it. */
export function neighbourhood(g: Graph, id: string): Graph {
  const keep = new Set([id]);
  for (const forward of [true, false]) {
    const todo = [id];
    while (todo.length) {
      const cur = todo.pop()!;
      for (const e of g.edges) {
        const [from, to] = forward ? [e.from, e.to] : [e.to, e.from];
        if (from === cur && !keep.has(to)) {
          keep.add(to);
          todo.push(to);
        }
      }
    }
  }
  return { ...g, nodes: g.nodes.filter((n) => keep.has(n.id)), edges: g.edges.filter((e) => keep.has(e.from) && keep.has(e.to)) };
}

/** Lay the graph out left-to-right with dagre (dependencies on the right of their users). */
export function layout(g: Graph): { nodes: Node[]; edges: Edge[] } {
  const d = new dagre.graphlib.Graph();
  d.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 90 });
  d.setDefaultEdgeLabel(() => ({}));
  const known = new Set(g.nodes.map((n) => n.id));
  const missing = [...new Set(g.edges.filter((e) => !known.has(e.to) && !e.optional).map((e) => e.to))];
  for (const n of g.nodes) d.setNode(n.id, { width: NODE_W, height: NODE_H });
  for (const m of missing) d.setNode(m, { width: NODE_W, height: NODE_H });
  const edges = g.edges.filter((e) => known.has(e.to) || missing.includes(e.to));
  for (const e of edges) d.setEdge(e.from, e.to);
  dagre.layout(d);
  const nodes: Node[] = [
    ...g.nodes.map((n) => ({
      id: n.id,
      position: { x: d.node(n.id).x - NODE_W / 2, y: d.node(n.id).y - NODE_H / 2 },
      data: { label: `${n.name}\n${n.id} · ${n.version} · ${n.state}` },
      className: `gnode gnode-${n.state}`,
      sourcePosition: Position.Right,
      targetPosition: Position.Left,
      width: NODE_W,
      height: NODE_H,
      style: { width: NODE_W, height: NODE_H, borderColor: STATE_COLORS[n.state] },
    })),
    ...missing.map((m) => ({
      id: m,
      position: { x: d.node(m).x - NODE_W / 2, y: d.node(m).y - NODE_H / 2 },
      data: { label: `${m}\nnot installed` },
      className: "gnode gnode-missing",
      sourcePosition: Position.Right,
      targetPosition: Position.Left,
      width: NODE_W,
      height: NODE_H,
      style: { width: NODE_W, height: NODE_H, borderColor: STATE_COLORS.missing },
    })),
  ];
  const rf: Edge[] = edges.map((e) => {
    const bad = !e.satisfied || e.inCycle;
    return {
      id: `${e.from}->${e.to}`,
      source: e.from,
      target: e.to,
      label: e.inCycle ? `${e.range} · cycle` : !e.satisfied ? `${e.range} · unsatisfied` : e.range,
      animated: bad,
      className: bad ? "gedge-bad" : e.optional ? "gedge-optional" : "gedge",
      style: bad ? { stroke: STATE_COLORS.error, strokeWidth: 2 } : e.optional ? { strokeDasharray: "6 4" } : undefined,
      markerEnd: { type: MarkerType.ArrowClosed, color: bad ? STATE_COLORS.error : undefined },
    };
  });
  return { nodes, edges: rf };
}

export function GraphView({ plugins, navigate }: { plugins: PluginInfo[] | null; navigate: (r: Route) => void }) {
  const [graph, setGraph] = useState<Graph | null>(null);
  const [error, setError] = useState<ReturnType<typeof asCommandError> | null>(null);
  const [focus, setFocus] = useState("");
  useEffect(() => {
    call(commands.dependencyGraph()).then(setGraph).catch((e) => setError(asCommandError(e)));
  }, [plugins]);
  const laid = useMemo(() => (graph ? layout(focus && graph.nodes.some((n) => n.id === focus) ? neighbourhood(graph, focus) : graph) : null), [graph, focus]);
  const big = (laid?.nodes.length ?? 0) > 40;
  const errors = graph ? Object.entries(graph.errors) : [];
  return (
    <div className="graph-view">
      <header className="pane-head">
        <h1>Dependency graph</h1>
        <label className="row">
          <span className="muted">Focus on</span>
          <PluginSelect ids={(graph?.nodes ?? []).map((n) => n.id)} value={focus} onChange={setFocus} />
        </label>
        <div className="legend" aria-label="Legend">
          {(["enabled", "loaded", "disabled", "installed", "error"] as const).map((s) => (
            <span key={s}>
              <i style={{ background: STATE_COLORS[s] }} /> {s}
            </span>
          ))}
          <span>
            <i className="dash" /> optional
          </span>
          <span>
            <i style={{ background: STATE_COLORS.error }} /> unsatisfied / cycle
          </span>
        </div>
      </header>
      {error && <ErrorBanner error={error} />}
      {errors.length > 0 && (
        <div className="banner warn graph-errors" role="status">
          <div className="banner-body">
            {errors.map(([id, e]) => (
              <div key={id}>
                <strong className="mono">{id}</strong>: {describe(e)}
              </div>
            ))}
          </div>
        </div>
      )}
      {laid && laid.nodes.length === 0 ? (
        <Empty title="Nothing installed yet" />
      ) : laid ? (
        <div className="flow" data-testid="graph">
          <ReactFlow
            key={focus}
            nodes={laid.nodes}
            edges={laid.edges}
            fitView
            fitViewOptions={{ maxZoom: 1.1, minZoom: big ? 0.55 : 0.1, padding: 0.2 }}
            minZoom={0.1}
            nodesDraggable={false}
            nodesConnectable={false}
            onNodeClick={(_, n) => plugins?.some((p) => p.manifest.id === n.id) && navigate({ view: "plugins", id: n.id })}
            proOptions={{ hideAttribution: true }}
          >
            <Background />
            <Controls showInteractive={false} />
            {laid.nodes.length > 20 && <MiniMap pannable zoomable nodeColor={(n) => String(n.style?.borderColor ?? STATE_COLORS.installed)} nodeStrokeWidth={3} maskColor="rgb(128 128 128 / 0.25)" style={{ background: "var(--panel-2)" }} />}
          </ReactFlow>
        </div>
      ) : (
        <div className="loading">Laying out…</div>
      )}
    </div>
  );
}

function describe(e: Graph["errors"][string]): string {
  switch (e.kind) {
    case "cycle":
      return `dependency cycle ${e.cycle.join(" → ")}`;
    case "selfDependency":
      return "depends on itself";
    case "missing":
      return `needs ${e.chain[e.chain.length - 1]?.requires ?? "?"}, which is not installed (${e.chain.map((l) => `${l.plugin} requires ${l.requires} ${l.range}`).join(", ")})`;
    case "mismatch":
      return `${e.chain.map((l) => `${l.plugin} requires ${l.requires} ${l.range}`).join(", ")}, but ${e.installed} is installed`;
    case "engine":
      return `${e.plugin} ${e.version} needs ObjectOS ${e.range}; this is ${e.kernel}`;
  }
}
