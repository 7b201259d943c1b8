import { describe, expect, it } from "vitest";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { mockIPC } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import { App } from "./App";
import { plugin } from "./test/fixtures";
import { breakable, PermissionReview } from "./views/PermissionReview";
import { PluginDetail } from "./views/PluginDetail";
import { layout } from "./views/GraphView";
import { matchesLog } from "./views/LogsView";
import { localeLabel, SettingsView, usableLocale } from "./views/SettingsView";
import { RecordsView } from "./views/RecordsView";

const crm = plugin("com.acme.crm", {
  pending: ["storage.write"],
  permissions: [
    { permission: "storage.write", required: true, risk: "low", description: "Save, change and delete its own data", enforced: true, grant: null, new: true, owners: [], excludes: [] },
    { permission: "events.subscribe:crm.opportunity.*", required: true, risk: "low", description: "Receive events matching crm.opportunity.*", enforced: true, grant: null, new: false, owners: [{ id: "com.acme.crm", name: "CRM" }, { id: "com.acme.deals", name: "Deals" }], excludes: [] },
    { permission: "network.connect:api.example.com", required: false, risk: "high", description: "Send web requests to api.example.com on ports 443 (https) and 80 (http)", enforced: true, grant: null, new: false, owners: [], excludes: [] },
  ],
});

describe("plugins view", () => {
  it("lists plugins with state and pending permissions, and filters by search", async () => {
    mockIPC(
      (cmd) => {
        if (cmd === "list_plugins") return [plugin("com.objectos.metrics", { kind: "builtin", state: "enabled" }), crm];
        if (cmd === "list_samples") return [];
        if (cmd === "report_ready") return 12;
        return null;
      },
      { shouldMockEvents: true },
    );
    render(<App />);
    await screen.findByText("com.acme.crm · 1.0.0");
    expect(screen.getByText("1 to review")).toBeTruthy();
    expect(screen.getAllByText("enabled").length).toBeGreaterThan(0);
    fireEvent.change(screen.getByLabelText("Search plugins"), { target: { value: "metrics" } });
    await waitFor(() => expect(screen.queryByText("com.acme.crm · 1.0.0")).toBeNull());
  });

  it("shows a typed error from the kernel instead of crashing", async () => {
    mockIPC((cmd) => {
      if (cmd === "list_plugins") throw { kind: "other", code: "busy", message: "data directory /x is busy" };
      return [];
    });
    render(<App />);
    expect(await screen.findByText("data directory /x is busy")).toBeTruthy();
  });
});

describe("permission review", () => {
  it("approves everything with one call and marks the widened set", async () => {
    const calls: [string, unknown][] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return crm;
    });
    render(<PermissionReview info={crm} onError={() => {}} />);
    expect(screen.getByText("new in this version")).toBeTruthy();
    expect(screen.getByText(/Enforced by the sandbox/)).toBeTruthy();
    // Whose topics a grant reaches: its own, and the other owner by name.
    expect(document.querySelector("[data-owners='com.acme.crm com.acme.deals']")?.textContent).toBe("Reaches its own and Deals (com.acme.deals)’s.");
    fireEvent.click(screen.getByText("Approve all"));
    await waitFor(() => expect(calls).toContainEqual(["grant_permissions", { id: "com.acme.crm", permissions: null }]));
  });

  it("approves only the selected permissions", async () => {
    const calls: [string, unknown][] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return crm;
    });
    render(<PermissionReview info={crm} onError={() => {}} />);
    fireEvent.click(screen.getByLabelText("Select storage.write"));
    fireEvent.click(screen.getByText("Approve selected"));
    await waitFor(() => expect(calls).toContainEqual(["grant_permissions", { id: "com.acme.crm", permissions: ["storage.write"] }]));
  });
});

describe("a long permission", () => {
  it("may wrap after its separators, and reads the same", () => {
    const { container } = render(<code>{breakable("network.connect:api.payments.example.com:443")}</code>);
    expect(container.textContent).toBe("network.connect:api.payments.example.com:443");
    expect(container.querySelectorAll("wbr")).toHaveLength(6);
    expect(container.innerHTML).toContain("connect:<wbr>api.");
  });
});

describe("records", () => {
  const opportunity = {
    name: "com.acme.crm/opportunity",
    label: "Opportunity",
    owner: "com.acme.crm",
    ownerName: "Small CRM",
    fields: [
      { name: "title", label: "Title", kind: "text", required: true, values: [], min: null, max: null, maxLength: 200, reference: null, default: null, detail: "up to 200 characters" },
      { name: "amount", label: "Amount", kind: "number", required: false, values: [], min: 0, max: null, maxLength: null, reference: null, default: 0, detail: "0 or more" },
      { name: "stage", label: "Stage", kind: "enum", required: false, values: ["prospect", "won"], min: null, max: null, maxLength: null, reference: null, default: null, detail: "prospect, won" },
    ],
    workflow: { name: "opportunity", field: "stage", initial: "prospect", transitions: [{ from: "prospect", to: "won", event: "win", guard: "amount > 0" }] },
  };

  it("lists a type's records, shows each problem beside its field, and moves a record through its workflow", async () => {
    const calls: [string, unknown][] = [];
    mockIPC(
      (cmd, args) => {
        calls.push([cmd, args]);
        if (cmd === "record_types") return [opportunity];
        if (cmd === "list_records") return [{ id: "r1", title: "Shop fit-out", amount: 0, stage: "prospect" }];
        if (cmd === "save_record") throw { kind: "manifest", message: "invalid record", file: "x", problems: [{ path: "$.title", message: "Title is required" }] };
        if (cmd === "transition_record") throw { kind: "other", code: "workflow", message: "`win` is refused: its condition `amount > 0` does not hold for this record" };
        return null;
      },
      { shouldMockEvents: true },
    );
    render(<RecordsView onError={() => {}} />);
    expect(await screen.findByText("Small CRM")).toBeTruthy();
    fireEvent.click(await screen.findByText("Shop fit-out"));
    const title = screen.getByLabelText(/Title/) as HTMLInputElement;
    expect(title.value).toBe("Shop fit-out");
    fireEvent.change(title, { target: { value: "" } });
    fireEvent.click(screen.getByText("Save"));
    expect(await screen.findByText("Title is required")).toBeTruthy();
    await waitFor(() => expect(calls).toContainEqual(["save_record", { recordType: "com.acme.crm/opportunity", id: "r1", fields: { title: null } }]));
    // With unsaved edits, an event (which fires on the stored record) waits for a save.
    expect((screen.getByText("win → won") as HTMLButtonElement).disabled).toBe(true);
    fireEvent.change(title, { target: { value: "Shop fit-out" } });
    fireEvent.click(screen.getByText("win → won"));
    expect(await screen.findByText(/its condition `amount > 0` does not hold/)).toBeTruthy();
  });

  it("re-reads a type's records when the console is told they changed, and only that type's", async () => {
    let lists = 0;
    mockIPC(
      (cmd) => {
        if (cmd === "record_types") return [opportunity];
        if (cmd === "list_records") {
          lists += 1;
          return [{ id: "r1", title: lists > 1 ? "Shop fit-out, signed" : "Shop fit-out", amount: 0, stage: "prospect" }];
        }
        return null;
      },
      { shouldMockEvents: true },
    );
    render(<RecordsView onError={() => {}} />);
    expect(await screen.findByText("Shop fit-out")).toBeTruthy();
    await emit("records-changed", { recordType: "com.acme.contacts/person" });
    await emit("kernel-notices", [{ type: "audit", id: 9, ts: 0, actor: "admin", plugin: "com.acme.crm", action: "data.updated", details: { object: "com.acme.crm/opportunity" }, hash: "", prev: "" }]);
    expect(lists).toBe(1);
    await emit("records-changed", { recordType: "com.acme.crm/opportunity" });
    expect(await screen.findByText("Shop fit-out, signed")).toBeTruthy();
    expect(lists).toBe(2);
  });

  it("reports each bad CSV row with its line before anything is written", async () => {
    const calls: [string, unknown][] = [];
    mockIPC(
      (cmd, args) => {
        calls.push([cmd, args]);
        if (cmd === "record_types") return [opportunity];
        if (cmd === "list_records") return [];
        if (cmd === "import_records") return { token: "t1", file: "/home/me/deals.csv", valid: 2, rejected: [{ line: 3, problem: "amount: `lots` is not a number" }] };
        if (cmd === "commit_import") return { created: 2, failed: [] };
        return null;
      },
      { shouldMockEvents: true },
    );
    render(<RecordsView onError={() => {}} />);
    fireEvent.click(await screen.findByText("Import CSV…"));
    expect(await screen.findByText(/`lots` is not a number/)).toBeTruthy();
    expect(screen.getByText("line 3")).toBeTruthy();
    expect(calls.some(([c]) => c === "commit_import")).toBe(false);
    fireEvent.click(screen.getByText("Import the 2 valid row(s)"));
    expect(await screen.findByText(/Created 2 opportunity record\(s\) from \/home\/me\/deals.csv/)).toBeTruthy();
    expect(calls).toContainEqual(["commit_import", { token: "t1" }]);
  });

  it("says how to get records when there are no types", async () => {
    mockIPC(() => [], { shouldMockEvents: true });
    render(<RecordsView onError={() => {}} />);
    expect(await screen.findByText(/Install the sample CRM/)).toBeTruthy();
  });
});

describe("quotas", () => {
  it("shows the quotas packages run under and saves a change", async () => {
    const quotas = { storageBytes: 52428800, queuedJobs: 1000, eventsPerSecond: 200, notificationsPerMinute: 30, inboxItems: 200, logLinesPerMinute: 1200 };
    const settings = { dataDir: "/data", auditDetail: "lifecycle", builtinPolicy: "grant", quotas, appVersion: "0.1.0", kernelVersion: "0.1.0", runner: null, runnerIsThisConsole: true };
    const calls: [string, unknown][] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return settings;
    });
    render(<SettingsView onError={() => {}} locale="en" onLocale={() => {}} texts={null} />);
    const jobs = (await screen.findByLabelText("Queued jobs")) as HTMLInputElement;
    expect(jobs.value).toBe("1000");
    const save = screen.getByText("Save quotas") as HTMLButtonElement;
    expect(save.disabled).toBe(true);
    fireEvent.change(jobs, { target: { value: "0" } });
    expect(screen.getByText(/a whole number of at least 1/)).toBeTruthy();
    fireEvent.change(jobs, { target: { value: "50" } });
    fireEvent.click(save);
    await waitFor(() => expect(calls).toContainEqual(["set_quotas", { quotas: { ...quotas, queuedJobs: 50 } }]));
  });
});

describe("the runner", () => {
  const quotas = { storageBytes: 52428800, queuedJobs: 1000, eventsPerSecond: 200, notificationsPerMinute: 30, inboxItems: 200, logLinesPerMinute: 1200 };
  const base = { dataDir: "/data", auditDetail: "lifecycle", builtinPolicy: "grant", quotas, appVersion: "0.1.0", kernelVersion: "0.1.0" };

  it("says when this console runs the plugins", async () => {
    mockIPC(() => ({ ...base, runner: { pid: 10, host: "shop", what: "ObjectOS Console", since: 0, until: 1 }, runnerIsThisConsole: true }));
    render(<SettingsView onError={() => {}} locale="en" onLocale={() => {}} texts={null} />);
    await waitFor(() => expect(document.querySelector("[data-setting=runner]")?.textContent).toBe("this console"));
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("says the console is attached when a service runs them", async () => {
    mockIPC(() => ({ ...base, runner: { pid: 4242, host: "shop", what: "objectos serve", since: 0, until: 1 }, runnerIsThisConsole: false }));
    render(<SettingsView onError={() => {}} locale="en" onLocale={() => {}} texts={null} />);
    await waitFor(() => expect(document.querySelector("[data-setting=runner]")?.textContent).toContain("objectos serve (process 4242 on shop)"));
    expect(screen.getByRole("status").textContent).toContain("attached to objectos serve (process 4242)");
    expect(screen.queryByRole("alert")).toBeNull();
  });
});

describe("an attached console", () => {
  const quotas = { storageBytes: 52428800, queuedJobs: 1000, eventsPerSecond: 200, notificationsPerMinute: 30, inboxItems: 200, logLinesPerMinute: 1200 };
  const settings = (runner: unknown) => ({ dataDir: "/data", auditDetail: "lifecycle", builtinPolicy: "grant", quotas, appVersion: "0.1.0", kernelVersion: "0.1.0", runner, runnerIsThisConsole: false });

  it("names the service it is attached to, and says when it stopped", async () => {
    let runner: unknown = { pid: 4242, host: "shop", what: "objectos serve", since: 0, until: 1 };
    mockIPC(
      (cmd) => {
        if (cmd === "get_settings") return settings(runner);
        if (cmd === "list_plugins") return [crm];
        return [];
      },
      { shouldMockEvents: true },
    );
    render(<App />);
    await waitFor(() => expect(document.querySelector("[data-attached]")?.textContent).toContain("Attached to objectos serve (process 4242)"));
    runner = null;
    await emit("kernel-notices", [{ type: "externalChange" }]);
    await waitFor(() => expect(document.querySelector("[data-runner-gone]")?.textContent).toContain("Nothing runs the plugins now"));
  });
});

describe("an upgrade by another author", () => {
  it("says whose version it is and that nothing carried over", () => {
    mockIPC(() => null);
    const tool = plugin("t.tool", { authorChange: { from: "Acme", to: "Mallory", version: "1.1.0" }, state: "disabled" });
    render(<PluginDetail info={tool} plugins={[tool]} navigate={() => {}} onError={() => {}} />);
    expect(screen.getByText("The author changed in version 1.1.0")).toBeTruthy();
    expect(document.querySelector("[data-author-change]")?.textContent).toContain("published by Mallory, not Acme");
  });
});

describe("a package with code", () => {
  it("shows its sandbox bounds in the review, and a quarantine as a stop with its reason", () => {
    mockIPC(() => null);
    const code = { main: "index.js", language: "JavaScript", stackKib: 1024, bounds: { memoryMiB: 32, hookMs: 1000, callMs: 250, tableElements: 20000, instances: 32 } };
    const lastError = { kind: "quarantined" as const, hook: null, message: "quarantined: its code failed 5 times within 10 minutes; the last failure: t.x exceeded its 250 ms time budget", at: 0 };
    const leads = plugin("com.acme.leads", { code, state: "error", lastError });
    render(<PluginDetail info={leads} plugins={[leads]} navigate={() => {}} onError={() => {}} />);
    const box = document.querySelector("[data-code]")!.textContent!;
    expect(box).toContain("Runs code in the sandbox: index.js (JavaScript)");
    expect(box).toContain("32 MiB memory");
    expect(box).toContain("1 s per lifecycle step");
    expect(box).toContain("250 ms per event or service call");
    expect(screen.getByText("Stopped because its code kept failing")).toBeTruthy();
    expect(screen.getByText("It stays stopped until you enable it again.", { exact: false })).toBeTruthy();
  });
});

describe("a file grant over ObjectOS's own folder", () => {
  it("says the data folder inside it stays out of reach", () => {
    mockIPC(() => null);
    const backup = plugin("com.acme.backup", {
      permissions: [
        { permission: "fs.write:~", required: true, risk: "high", description: "Create, change and delete files in /home/ada", enforced: true, grant: null, new: false, owners: [], excludes: ["/home/ada/.local/share/objectos"] },
        { permission: "fs.read:/srv/exports", required: false, risk: "medium", description: "Read files in /srv/exports", enforced: true, grant: null, new: false, owners: [], excludes: [] },
      ],
    });
    render(<PluginDetail info={backup} plugins={[backup]} navigate={() => {}} onError={() => {}} />);
    const notes = document.querySelectorAll("[data-excludes]");
    expect(notes.length).toBe(1);
    expect(notes[0].textContent).toContain("ObjectOS's own data stays out of reach");
    expect(notes[0].textContent).toContain("/home/ada/.local/share/objectos");
  });
});

describe("a plugin in error", () => {
  it("is worded by its failure's kind, not by its message", () => {
    mockIPC(() => null);
    // A message that reads like a quarantine, on a hook that timed out: the kind decides.
    const lastError = { kind: "timedOut" as const, hook: "onEnable", message: "quarantined: not really", at: 0 };
    const p = plugin("t.slow", { state: "error", lastError });
    render(<PluginDetail info={p} plugins={[p]} navigate={() => {}} onError={() => {}} />);
    expect(screen.getByText("onEnable did not finish in time")).toBeTruthy();
    expect(screen.getByText("Load it again to retry.", { exact: false })).toBeTruthy();
    expect(screen.queryByText("Stopped because its code kept failing")).toBeNull();
    expect(document.querySelector("[data-failure]")?.getAttribute("data-failure")).toBe("timedOut");
  });
});

describe("the language selector", () => {
  it("reads a C or POSIX machine locale as English, the default, and names other languages", () => {
    for (const tag of ["C", "POSIX", "C.UTF-8", "", null]) expect(usableLocale(tag)).toBe("en");
    expect(usableLocale("zh-CN")).toBe("zh-CN");
    expect(usableLocale("de")).toBe("de");
    expect(localeLabel("en")).toBe("English (default)");
    expect(localeLabel("zh-CN")).toContain("(zh-CN)");
    expect(localeLabel("zh-CN")).not.toBe("zh-CN (zh-CN)");
  });
});

describe("graph layout", () => {
  it("draws missing dependencies and cycles as errors", () => {
    const { nodes, edges } = layout({
      nodes: [
        { id: "a", name: "A", version: "1.0.0", state: "enabled", kind: "package" },
        { id: "b", name: "B", version: "1.0.0", state: "error", kind: "package" },
      ],
      edges: [
        { from: "a", to: "b", range: "^1", optional: false, satisfied: true, inCycle: true },
        { from: "b", to: "a", range: "^1", optional: false, satisfied: true, inCycle: true },
        { from: "a", to: "gone", range: "^2", optional: false, satisfied: false, inCycle: false },
      ],
      order: [],
      errors: {},
    });
    expect(nodes.map((n) => n.id).sort()).toEqual(["a", "b", "gone"]);
    expect(edges.find((e) => e.target === "gone")!.label).toBe("^2 · unsatisfied");
    expect(edges.filter((e) => e.animated)).toHaveLength(3);
  });
});

describe("stalled writes", () => {
  it("says so while the kernel cannot write, and clears when writes resume", async () => {
    mockIPC(
      (cmd) => {
        if (cmd === "list_plugins") return [crm];
        return [];
      },
      { shouldMockEvents: true },
    );
    render(<App />);
    await screen.findByText("com.acme.crm · 1.0.0");
    await emit("kernel-notices", [{ type: "writesStalled", path: "/data/objectos.db", reason: "database or disk is full", busy: false, waiting: 12 }]);
    expect(await screen.findByText("Audit records and logs cannot be written")).toBeTruthy();
    expect(screen.getByText(/database or disk is full/)).toBeTruthy();
    expect(screen.getByText(/12 records are kept in memory/)).toBeTruthy();
    await emit("kernel-notices", [{ type: "writesResumed" }]);
    await waitFor(() => expect(screen.queryByText("Audit records and logs cannot be written")).toBeNull());
    await emit("kernel-notices", [{ type: "writesStalled", path: "/data/objectos.db", reason: "database is locked", busy: true, waiting: null }]);
    expect(await screen.findByText("Waiting for another ObjectOS process")).toBeTruthy();
  });
});

describe("log filter", () => {
  it("matches plugin, level and text", () => {
    const l = { id: 1, ts: 0, plugin: "p", level: "warn", target: "p", message: "Disk almost full", fields: null } as const;
    expect(matchesLog(l, "", "info", "")).toBe(true);
    expect(matchesLog(l, "q", "info", "")).toBe(false);
    expect(matchesLog(l, "p", "error", "")).toBe(false);
    expect(matchesLog(l, "p", "debug", "disk")).toBe(true);
  });
});

describe("uninstalling", () => {
  it("goes back to the plugin list once the plugin is gone, without an error", async () => {
    const calls: [string, unknown][] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return cmd === "plugin_action" ? null : [];
    });
    const routes: unknown[] = [];
    const errors: unknown[] = [];
    render(<PluginDetail info={crm} plugins={[crm]} navigate={(r) => routes.push(r)} onError={(e) => e && errors.push(e)} />);
    fireEvent.click(screen.getByRole("button", { name: "Uninstall" }));
    fireEvent.click(document.querySelector('[data-confirm="uninstall"]')!);
    await waitFor(() => expect(routes).toEqual([{ view: "plugins" }]));
    expect(calls).toContainEqual(["plugin_action", { id: "com.acme.crm", action: "uninstall", withDeps: false, cascade: false, deleteRecords: false }]);
    expect(errors).toEqual([]);
  });

  it("stays on the plugin after another action", async () => {
    const calls: string[] = [];
    mockIPC((cmd) => {
      calls.push(cmd);
      return cmd === "plugin_action" ? { ...crm, state: "loaded" } : [];
    });
    const routes: unknown[] = [];
    render(<PluginDetail info={crm} plugins={[crm]} navigate={(r) => routes.push(r)} onError={() => {}} />);
    fireEvent.click(screen.getByRole("button", { name: "Load" }));
    expect(screen.getByRole("button", { name: "Load…" })).toBeTruthy();
    await screen.findByRole("button", { name: "Load" });
    expect(calls).toContain("plugin_action");
    expect(routes).toEqual([]);
  });
});

describe("revoking a required permission with dependents", () => {
  it("asks to cascade and revokes with cascade on confirmation", async () => {
    const granted = plugin("com.acme.contacts", {
      state: "enabled",
      permissions: [
        { permission: "storage.write", required: true, risk: "low", description: "Save", enforced: true, grant: { permission: "storage.write", grantedBy: "admin", grantedAt: 1 }, new: false, owners: [], excludes: [] },
      ],
    });
    const calls: [string, unknown][] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      const a = args as { cascade?: boolean };
      if (cmd === "revoke_permissions" && !a.cascade) throw { kind: "dependentsEnabled", message: "deps", plugin: "com.acme.contacts", dependents: ["com.acme.crm"] };
      return granted;
    });
    render(<PermissionReview info={granted} onError={() => {}} />);
    fireEvent.click(screen.getByLabelText("Select storage.write"));
    fireEvent.click(screen.getByText("Revoke selected"));
    expect(await screen.findByText("com.acme.crm")).toBeTruthy();
    fireEvent.click(screen.getByText("Revoke and disable 2 plugins"));
    await waitFor(() => expect(calls).toContainEqual(["revoke_permissions", { id: "com.acme.contacts", permissions: ["storage.write"], cascade: true }]));
  });
});

describe("notification centre and translations", () => {
  const inbox = {
    available: true,
    unread: 1,
    items: [
      { id: "n2", plugin: "com.acme.crm", title: "Deal won", body: "Acme signed.", level: "success", createdAt: 1_700_000_000_000, read: false },
      { id: "n1", plugin: "com.acme.crm", title: "Old news", body: "", level: "info", createdAt: 1_600_000_000_000, read: true },
    ],
  };

  it("shows the unread badge, lists notifications and marks them read", async () => {
    const calls: [string, unknown][] = [];
    mockIPC(
      (cmd, args) => {
        calls.push([cmd, args]);
        if (cmd === "list_plugins") return [crm];
        if (cmd === "inbox") return inbox;
        if (cmd === "mark_notifications_read") return 1;
        if (cmd === "plugin_texts") return { available: true, locales: ["en"], texts: {} };
        return [];
      },
      { shouldMockEvents: true },
    );
    render(<App />);
    await waitFor(() => expect(document.querySelector("[data-unread='1']")).toBeTruthy());
    fireEvent.click(screen.getByText("Notifications"));
    expect(await screen.findByText("Deal won")).toBeTruthy();
    expect(screen.getByText("1 unread")).toBeTruthy();
    expect(screen.getAllByText(/CRM ·/).length).toBe(2);
    fireEvent.click(screen.getByText("Mark read"));
    await waitFor(() => expect(calls).toContainEqual(["mark_notifications_read", { id: "n2" }]));
    fireEvent.click(screen.getByText("Mark all read"));
    await waitFor(() => expect(calls).toContainEqual(["mark_notifications_read", { id: null }]));
  });

  it("says how to turn notifications on when the plugin is off", async () => {
    mockIPC(
      (cmd) => {
        if (cmd === "list_plugins") return [crm];
        if (cmd === "inbox") return { available: false, unread: 0, items: [] };
        if (cmd === "plugin_texts") return { available: false, locales: [], texts: {} };
        return [];
      },
      { shouldMockEvents: true },
    );
    render(<App />);
    fireEvent.click(await screen.findByText("Notifications"));
    expect(await screen.findByText("Notifications are off")).toBeTruthy();
  });

  it("shows plugin names in the chosen locale where translated", async () => {
    localStorage.setItem("objectos.locale", "zh-CN");
    const asked: unknown[] = [];
    mockIPC(
      (cmd, args) => {
        if (cmd === "list_plugins") return [crm, plugin("com.acme.other")];
        if (cmd === "plugin_texts") {
          asked.push(args);
          return { available: true, locales: ["en", "zh-CN"], texts: { "com.acme.crm": { name: "客户关系", description: null } } };
        }
        if (cmd === "inbox") return inbox;
        return [];
      },
      { shouldMockEvents: true },
    );
    render(<App />);
    expect(await screen.findByText("客户关系")).toBeTruthy();
    expect(screen.getByText("OTHER")).toBeTruthy();
    expect(asked).toContainEqual({ locale: "zh-CN" });
    localStorage.removeItem("objectos.locale");
  });
});

describe("a package's declarations", () => {
  it("lays a workflow out as a state diagram with the initial and final states marked", async () => {
    const { stateDiagram } = await import("./views/Declares");
    const { nodes, edges } = stateDiagram({
      name: "opportunity",
      object: "opportunity",
      field: "stage",
      initial: "prospect",
      states: [
        { name: "prospect", entry: [], exit: [] },
        { name: "won", entry: ["set probability = 100"], exit: [] },
      ],
      transitions: [{ from: "prospect", to: "won", event: "win", guard: "amount > 0" }],
    });
    expect(nodes.find((n) => n.id === "prospect")!.className).toContain("wstate-initial");
    expect(nodes.find((n) => n.id === "won")!.className).toContain("wstate-final");
    expect(String(nodes.find((n) => n.id === "won")!.data.label)).toContain("set probability = 100");
    expect(edges[0].label).toBe("win ⚑");
  });
});

describe("plugin settings and use", () => {
  const settings = [
    { key: "repo", type: "string", title: "Repository", default: "acme/shop", value: null, set: false },
    { key: "token", type: "string", title: "API token", secret: true, required: true, value: null, set: true },
  ];

  it("sends only what changed, keeps a secret write-only, and removes it on request", async () => {
    const sent: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === "plugin_settings") return settings;
      if (cmd === "set_plugin_settings") {
        sent.push((args as { values: unknown }).values);
        return settings;
      }
      return null;
    });
    const { PluginSettings } = await import("./views/PluginSettings");
    render(<PluginSettings id="com.acme.github" onError={() => {}} />);
    const token = (await screen.findByLabelText(/API token/)) as HTMLInputElement;
    expect(token.type).toBe("password");
    expect(token.value).toBe("");
    expect(screen.getByText(/Secret set; it is never shown again/)).toBeTruthy();
    expect((screen.getByLabelText("Repository") as HTMLInputElement).placeholder).toBe("Default: acme/shop");
    fireEvent.change(token, { target: { value: "ghp_new" } });
    fireEvent.click(screen.getByText("Save settings"));
    await waitFor(() => expect(sent).toEqual([{ token: "ghp_new" }]));
    fireEvent.click(screen.getByText("Remove"));
    await waitFor(() => expect(sent[1]).toEqual({ token: null }));
  });

  it("shows the code's calls, memory, requests by host and a chart of recent minutes", async () => {
    const now = Math.floor(Date.now() / 20000) * 20;
    const recent = Array.from({ length: 30 }, (_, i) => ({ start: now - (29 - i) * 20, calls: i === 29 ? 4 : 0, cpuMicros: 0, requests: i === 29 ? 2 : 0, denials: i === 29 ? 1 : 0, traps: 0 }));
    mockIPC((cmd) => {
      if (cmd === "plugin_usage")
        return {
          eventsEmitted: 0, eventsReceived: 0, handlerErrors: 0, storageReads: 0, storageWrites: 0, serviceLookups: 0, permissionDenials: 1, hooks: {},
          code: { calls: 4, cpuMillis: 12, traps: 0, memoryBytes: 3 << 20, memoryPeakBytes: 4 << 20, requests: { "api.github.com:443": { requests: 2, failed: 0, statuses: { 200: 2 }, bytesSent: 0, bytesReceived: 2048 } } },
          recent,
        };
      return null;
    });
    const { PluginUse } = await import("./views/PluginUse");
    render(<PluginUse id="com.acme.github" code={{ main: "index.js", language: "JavaScript", bounds: { memoryMiB: 32 }, stackKib: 1024 }} />);
    expect(await screen.findByText("api.github.com:443")).toBeTruthy();
    expect(screen.getByText("200 ×2")).toBeTruthy();
    expect(screen.getByText("3.0 MiB")).toBeTruthy();
    expect(screen.getByText("of 32 MiB")).toBeTruthy();
    expect(screen.getByRole("img").getAttribute("aria-label")).toContain("4 calls, 2 requests");
  });
});
