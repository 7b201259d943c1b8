// @ts-check
// GitHub issues, in the ObjectOS sandbox: a job runs on the schedule in the settings, reads the
// repository's issues through GitHub's REST API (the only host this package may reach is the
// one the admin granted), and creates or updates one `issue` record per issue.

/** @typedef {import("../../../sdk/objectos").Context} Context */
/** @typedef {{ number: number, title: string, state: string, html_url: string, updated_at: string, user?: { login?: string }, labels?: { name?: string }[], pull_request?: unknown }} Issue */

const SERVICE = "github.issues";
const PAGES = 10; // 1,000 issues at most per run

/**
 * The settings, checked.
 * @param {Context} ctx
 */
function settings(ctx) {
  const c = ctx.config();
  const repository = String(c.repository ?? "").trim();
  return {
    repository,
    configured: /^[\w.-]+\/[\w.-]+$/.test(repository),
    api: String(c.apiUrl ?? "https://api.github.com").replace(/\/+$/, ""),
    token: typeof c.token === "string" && c.token !== "" ? c.token : null,
    schedule: String(c.schedule ?? "*/15 * * * *"),
  };
}

/**
 * Bring the repository's issues in: one record per issue, found again by its number.
 * @param {Context} ctx
 * @returns {{ created: number, updated: number, repository: string }}
 */
export function sync(ctx) {
  const s = settings(ctx);
  if (!s.configured) throw new Error(`set the repository (owner/name) in the plugin's settings; it is ${JSON.stringify(s.repository)}`);
  /** @type {{ [name: string]: string }} */
  const headers = { accept: "application/vnd.github+json", "x-github-api-version": "2022-11-28" };
  if (s.token) headers.authorization = `Bearer ${s.token}`;
  let created = 0;
  let updated = 0;
  for (let page = 1; page <= PAGES; page++) {
    const r = ctx.http.get(`${s.api}/repos/${s.repository}/issues?state=all&per_page=100&page=${page}`, { headers });
    if (r.status === 401 || r.status === 403) throw new Error(`GitHub refused access (${r.status}): check the access token setting`);
    if (r.status === 404) throw new Error(`GitHub has no repository ${s.repository}, or the token cannot see it`);
    if (!r.ok) throw new Error(`GitHub answered ${r.status}: ${r.body.slice(0, 200)}`);
    /** @type {Issue[]} */
    const issues = r.json();
    for (const issue of issues) {
      if (issue.pull_request) continue; // the issues API lists pull requests too
      const fields = {
        number: issue.number,
        title: String(issue.title).slice(0, 500),
        state: issue.state === "closed" ? "closed" : "open",
        author: String(issue.user?.login ?? "").slice(0, 100),
        labels: (issue.labels ?? []).map((l) => l.name ?? "").join(", ").slice(0, 1000),
        url: String(issue.html_url).slice(0, 500),
        updated: String(issue.updated_at ?? ""),
      };
      const key = `issue:${issue.number}`;
      const id = ctx.storage.get(key);
      if (id && ctx.services.call("data", "get", { object: "issue", id })) {
        ctx.services.call("data", "update", { object: "issue", id, patch: fields });
        updated++;
      } else {
        const record = ctx.services.call("data", "create", { object: "issue", fields });
        ctx.storage.set(key, record.id);
        created++;
      }
    }
    if (issues.length < 100) break;
  }
  ctx.storage.set("lastSync", { at: new Date().toISOString(), created, updated });
  ctx.log.info(`brought in ${s.repository}: ${created} new, ${updated} updated`, { created, updated });
  return { created, updated, repository: s.repository };
}

/** @param {Context} ctx */
export function onEnable(ctx) {
  ctx.services.register(SERVICE, {
    /** Sync now; answers what changed. */
    sync: () => sync(ctx),
    /** The last sync. */
    status: () => ctx.storage.get("lastSync") ?? null,
    /** A scheduled job. */
    run: () => {
      if (!settings(ctx).configured) {
        ctx.log.warn("not syncing: set the repository in the plugin's settings");
        return null;
      }
      sync(ctx);
      return null;
    },
  });
  ctx.services.call("jobs", "handle", { name: "sync", service: SERVICE });
  const { schedule } = settings(ctx);
  ctx.services.call("jobs", "schedule", { name: "sync", cron: schedule, handler: "sync", retry: { attempts: 3, backoffMs: 30000, maxBackoffMs: 300000 } });
  ctx.log.info(`syncing on the schedule ${schedule}`);
}
