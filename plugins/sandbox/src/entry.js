// The host's entry module for a JavaScript package: it gives the author's hooks a `ctx` like
// a built-in plugin's and adapts them to the objectos:plugin@0.1.0 world's exports. The host
// puts the author's module in for the string __SPEC__ and its path for __MAIN__ (each as a JSON
// string literal) and snapshots both at install (plugins/sandbox/src/js.rs).
import * as plugin from "__SPEC__";
const MAIN = "__MAIN__";
import storage from "objectos:plugin/storage@0.1.0";
import events from "objectos:plugin/events@0.1.0";
import services from "objectos:plugin/services@0.1.0";
import log from "objectos:plugin/log@0.1.0";
import config from "objectos:plugin/config@0.1.0";
import http from "objectos:plugin/http@0.1.0";
import files from "objectos:plugin/files@0.1.0";

// A misspelt hook would never run: refuse it when the package is built (at install, and by
// `objectos manifest check`).
const HOOKS = ["onInstall", "onLoad", "onEnable", "onDisable", "onUnload", "onUninstall", "onUpgrade"];
for (const name of Object.keys(plugin)) {
  const near = HOOKS.find((h) => h.toLowerCase() === name.toLowerCase());
  if (HOOKS.includes(name) || !(near || /^on[A-Z]/.test(name))) continue;
  throw new Error(`${MAIN} exports ${name}, which is not a hook: ${near ? `did you mean ${near}?` : `the hooks are ${HOOKS.join(", ")}`}`);
}

class HostError extends Error {
  constructor(e) {
    super(e && typeof e === "object" && "message" in e ? e.message : String(e));
    this.name = "HostError";
    this.code = e && typeof e === "object" && "code" in e ? e.code : "failed";
  }
}
// A host call's error arrives as an Error whose `payload` is the WIT `host-error` record.
const host = (f) => (...args) => {
  try {
    return f(...args);
  } catch (e) {
    const p = e && typeof e === "object" && "payload" in e ? e.payload : e;
    if (p && typeof p === "object" && "code" in p) throw new HostError(p);
    throw e instanceof Error ? e : new HostError(e);
  }
};
const text = (value) => JSON.stringify(value === undefined ? null : value);
const parsed = (t) => (t === null || t === undefined ? undefined : JSON.parse(t));
const handlers = new Map();
const provided = new Map();
const line = (level) => (message, fields) =>
  log.write(level, String(message), fields === undefined ? "" : JSON.stringify(fields));

// A web request: `body` is text, `json` a value sent as JSON (with its content type).
const request = (method, url, options) => {
  const o = options ?? {};
  const headers = Object.entries(o.headers ?? {}).map(([k, v]) => [String(k), String(v)]);
  let body = o.body === undefined || o.body === null ? null : String(o.body);
  if (o.json !== undefined) {
    body = JSON.stringify(o.json);
    if (!headers.some(([k]) => k.toLowerCase() === "content-type")) headers.push(["content-type", "application/json"]);
  }
  const r = http.send({ method: String(method), url: String(url), headers, body });
  return Object.freeze({
    status: r.status,
    ok: r.status >= 200 && r.status < 300,
    url: r.url,
    headers: Object.freeze(Object.fromEntries(r.headers)),
    body: r.body,
    json: () => JSON.parse(r.body),
  });
};
const verb = (method) => host((url, options) => request(method, url, options));

const ctx = Object.freeze({
  storage: Object.freeze({
    get: host((key) => parsed(storage.get(key))),
    set: host((key, value) => storage.set(key, text(value))),
    delete: host((key) => storage.delete(key)),
    scan: host((prefix) => storage.scan(prefix ?? "").map(([k, v]) => [k, JSON.parse(v)])),
    swap: host((key, expected, value) =>
      storage.swap(key, expected === undefined ? null : text(expected), value === undefined ? null : text(value))),
  }),
  events: Object.freeze({
    emit: host((topic, payload) => events.emit(topic, text(payload ?? {}))),
    on: host((pattern, handler) => {
      if (typeof handler !== "function") throw new TypeError("events.on needs a handler function");
      const id = events.subscribe(pattern);
      handlers.set(id, handler);
      return id;
    }),
    off: host((id) => {
      handlers.delete(id);
      return events.unsubscribe(id);
    }),
  }),
  services: Object.freeze({
    call: host((name, method, args) => parsed(services.call(name, method, text(args ?? {})))),
    register: host((name, impl) => {
      if (!impl || typeof impl !== "object") throw new TypeError("services.register needs an object of methods");
      services.register(name);
      provided.set(name, impl);
    }),
    unregister: host((name) => {
      provided.delete(name);
      services.unregister(name);
    }),
  }),
  log: Object.freeze({
    trace: line("trace"),
    debug: line("debug"),
    info: line("info"),
    warn: line("warn"),
    error: line("error"),
  }),
  config: () => JSON.parse(config.get()),
  http: Object.freeze({
    request: host((o) => request(o?.method ?? "GET", o?.url, o)),
    get: verb("GET"),
    post: verb("POST"),
    put: verb("PUT"),
    patch: verb("PATCH"),
    delete: verb("DELETE"),
  }),
  files: Object.freeze({
    folders: () => files.folders().map((f) => ({ path: f.path, writable: f.writable })),
    read: host((path) => files.read(String(path))),
    write: host((path, text) => files.write(String(path), String(text))),
    list: host((path) => files.entries(String(path)).map((e) => ({ name: e.name, directory: e.directory, size: Number(e.size) }))),
    createFolder: host((path) => files.createFolder(String(path))),
    remove: host((path) => files.remove(String(path))),
  }),
});

const describe = (e) => (e instanceof Error ? (e.stack ? `${e.name}: ${e.message}\n${e.stack}` : `${e.name}: ${e.message}`) : String(e));
const run = (f) => {
  let out;
  try {
    out = f();
  } catch (e) {
    throw describe(e);
  }
  if (out && typeof out.then === "function") {
    throw "returned a Promise: hooks, handlers and service methods must be synchronous in objectos:plugin@0.1 (every host call is synchronous, so there is nothing to await)";
  }
  return out;
};
const hook = (name) => (...args) => {
  const f = plugin[name];
  if (typeof f === "function") run(() => f(ctx, ...args));
};

export const guest = {
  install: hook("onInstall"),
  load: hook("onLoad"),
  enable: hook("onEnable"),
  disable: hook("onDisable"),
  unload: hook("onUnload"),
  uninstall: hook("onUninstall"),
  upgrade: hook("onUpgrade"),
  handleEvent(event) {
    const handler = handlers.get(event.subscription);
    if (!handler) return;
    run(() => handler({ topic: event.topic, payload: JSON.parse(event.payload), source: event.source }, ctx));
  },
  call(name, method, args, caller) {
    const impl = provided.get(name);
    if (!impl) throw `this plugin does not provide \`${name}\``;
    const f = impl[method];
    if (typeof f !== "function" || !Object.prototype.hasOwnProperty.call(impl, method)) {
      throw `service \`${name}\` has no method \`${method}\` (it has: ${Object.keys(impl).filter((k) => typeof impl[k] === "function").join(", ")})`;
    }
    const out = run(() => f.call(impl, JSON.parse(args), { caller }));
    return text(out);
  },
};
