import type { PluginInfo } from "../bindings";

export function plugin(id: string, over: Partial<PluginInfo> = {}): PluginInfo {
  return {
    manifest: {
      id,
      name: id.split(".").pop()!.toUpperCase(),
      version: "1.0.0",
      description: `The ${id} plugin`,
      dependencies: {},
      optionalDependencies: {},
      provides: { services: [], events: [], objects: [], workflows: [], automations: [], translations: [] },
      permissions: [],
      optionalPermissions: [],
      engines: {},
    },
    kind: "package",
    state: "installed",
    desired: "installed",
    lastError: null,
    permissions: [],
    pending: [],
    authorChange: null,
    code: null,
    dependencies: [],
    dependents: [],
    resolveError: null,
    services: [],
    actions: ["load", "enable", "uninstall"],
    packageDir: null,
    installedAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    ...over,
  } as PluginInfo;
}
