// A guest that makes the web requests and file calls its service is asked for, and answers
// with what happened (a host error's code and message, or the result).
const attempt = (f) => {
  try {
    return { ok: f() ?? null };
  } catch (e) {
    return { code: e.code ?? "thrown", message: e.message };
  }
};

export function onEnable(ctx) {
  ctx.services.register("reach", {
    request: (a) =>
      attempt(() => {
        const r = ctx.http.request(a);
        return { status: r.status, body: r.body.length > 200 ? `${r.body.length} bytes` : r.body, url: r.url, type: r.headers["content-type"] ?? null };
      }),
    folders: () => ctx.files.folders(),
    read: (a) => attempt(() => ctx.files.read(a.path)),
    write: (a) => attempt(() => ctx.files.write(a.path, a.text)),
    list: (a) => attempt(() => ctx.files.list(a.path)),
    createFolder: (a) => attempt(() => ctx.files.createFolder(a.path)),
    remove: (a) => attempt(() => ctx.files.remove(a.path)),
    config: () => ctx.config(),
    fail: () => {
      throw new Error(`the API refused token ${ctx.config().token}`);
    },
    tell: () => {
      const c = ctx.config();
      ctx.log.info(`using token ${c.token}`, { token: c.token, repo: c.repo });
      return attempt(() => ctx.http.get(c.url, { headers: { authorization: `Bearer ${c.token}` } }).status);
    },
  });
}
