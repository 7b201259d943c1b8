// Types of what an ObjectOS JavaScript plugin is given: the `ctx` of every hook, the events
// its handlers receive and the errors host calls throw. The host's contract is
// `plugin.wit` (the objectos:plugin@0.1.0 world); this file describes how JavaScript sees it.
//
// Use it from plain JavaScript with JSDoc, and an editor completes and checks `ctx`:
//
//   // @ts-check
//   /** @param {import("./objectos").Context} ctx */
//   export function onEnable(ctx) { ctx.storage.get("count"); }

/** Any value JSON can carry: what storage, events and services exchange. */
/** (A field that is `undefined` is left out, as `JSON.stringify` does.) */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json | undefined };

/**
 * What a host call throws when it is refused or fails. Every refusal is also an audit
 * record the admin sees.
 */
export interface HostError extends Error {
  name: "HostError";
  code:
    | "permission-denied" // a permission the call needs is not granted (the message names it)
    | "over-limit" // a value too large or too deep, a rate, the storage quota
    | "not-owned" // a topic the package does not declare, a service another plugin owns
    | "not-found" // no such service or record
    | "invalid" // a malformed name, JSON that does not parse
    | "failed"; // the call was made and failed; the message says why
  message: string;
}

/** The plugin's own key/value storage. Keys are 1 to 512 bytes; values at most 1 MiB of JSON. */
export interface Storage {
  /** The value at `key`, or `undefined`. Needs `storage.read`. Say what you stored: `get<number>("count")`. */
  get<T extends Json = any>(key: string): T | undefined;
  /** Write `value` at `key`. Needs `storage.write`. */
  set(key: string, value: Json): void;
  /** Delete `key`; true when it existed. Needs `storage.write`. */
  delete(key: string): boolean;
  /** Every key starting with `prefix`, with its value, sorted by key. Needs `storage.read`. */
  scan<T extends Json = any>(prefix?: string): [string, T][];
  /**
   * Replace `key`'s value with `value` (undefined deletes it) only if it is now `expected`
   * (undefined: absent), atomically; true when it did. Needs both grants.
   */
  swap(key: string, expected: Json | undefined, value: Json | undefined): boolean;
}

/** An event delivered to a handler. */
export interface Event {
  topic: string;
  payload: Json;
  /** The emitting plugin's id, or `kernel`. Set by the host, never by the payload. */
  source: string;
}

export interface Events {
  /**
   * Emit `topic`. Needs `events.emit:<topic>`, and the topic among the manifest's
   * `provides.events`. Returns how many handlers it reached.
   */
  emit(topic: string, payload?: Json): number;
  /**
   * Call `handler` for each event matching `pattern` (`*` one segment, `**` the rest). Needs
   * `events.subscribe:<p>` covering it. At most 64 at a time. Returns an id for `off`.
   */
  on(pattern: string, handler: (event: Event, ctx: Context) => void): number;
  /** End a subscription; false when it was not this plugin's. */
  off(id: number): boolean;
}

/** What a service method is told about its call. */
export interface CallInfo {
  /** The calling plugin's id. */
  caller: string;
}

/** A service's methods: each takes the call's JSON arguments and returns JSON. */
export type ServiceMethods = Record<string, (args: any, call: CallInfo) => Json | void>;

export interface Services {
  /**
   * Call `method` of service `name` with `args`. Needs `services.use:<name>`. The built-ins:
   * `data` (get, list, create, update, delete), `workflow` (transition, allowed, history),
   * `notification` (send, get), `cache` (get, set, delete), `i18n` (t, locales).
   */
  call(name: string, method: string, args?: Json): any;
  /** Provide service `name`; other plugins call its methods. Needs `services.provide:<name>`. */
  register(name: string, methods: ServiceMethods): void;
  /** Stop providing `name`. */
  unregister(name: string): void;
}

type Line = (message: string, fields?: { [key: string]: Json | undefined }) => void;

/** The plugin's log, shown in the console's Logs view and `objectos logs`. */
export interface Log {
  trace: Line;
  debug: Line;
  info: Line;
  warn: Line;
  error: Line;
}

/** What every hook is given. Each call is checked against the permissions an admin approved. */
/** Options of a web request. */
export interface RequestOptions {
  /** Header names and values (`host`, `content-length`, `connection` are the host's). */
  headers?: { [name: string]: string };
  /** The body as text (not for GET or HEAD), at most 1 MiB. */
  body?: string;
  /** A value sent as JSON (sets `content-type: application/json` unless given). */
  json?: unknown;
}

/** A web response; the body is text (at most 4 MiB). */
export interface HttpResponse {
  status: number;
  /** `status` is 2xx. */
  ok: boolean;
  /** The URL that answered, after redirects. */
  url: string;
  /** Header names in lower case. */
  headers: { readonly [name: string]: string };
  body: string;
  /** The body parsed as JSON. */
  json(): any;
}

/**
 * Web requests to hosts a `network.connect` grant covers (checked at every redirect; a name
 * resolving to a private address is refused). Each blocks until the whole response is in
 * (at most 10 s); a refusal throws a {@link HostError}.
 */
export interface Http {
  request(request: RequestOptions & { method?: string; url: string }): HttpResponse;
  get(url: string, options?: RequestOptions): HttpResponse;
  post(url: string, options?: RequestOptions): HttpResponse;
  put(url: string, options?: RequestOptions): HttpResponse;
  patch(url: string, options?: RequestOptions): HttpResponse;
  delete(url: string, options?: RequestOptions): HttpResponse;
}

/** A granted folder. */
export interface Folder {
  path: string;
  /** `fs.write` (else `fs.read` only). */
  writable: boolean;
}

/** What a folder holds. */
export interface Entry {
  name: string;
  directory: boolean;
  /** Bytes (0 for a folder). */
  size: number;
}

/**
 * Text files in the folders `fs.read`/`fs.write` grants name, by absolute path (`..` and
 * symbolic links cannot lead out of a folder). Files are at most 4 MiB.
 */
export interface Files {
  folders(): Folder[];
  read(path: string): string;
  /** Create or replace a file (needs `fs.write` on its folder). */
  write(path: string, text: string): void;
  list(path: string): Entry[];
  createFolder(path: string): void;
  /** Delete a file or an empty folder; false when there was none. */
  remove(path: string): boolean;
}

export interface Context {
  storage: Storage;
  events: Events;
  services: Services;
  log: Log;
  /** The configuration an admin set for this plugin (`{}` when none). */
  config(): { [key: string]: any };
  http: Http;
  files: Files;
}

/**
 * The hooks a plugin's module may export; each is optional and synchronous (host calls are
 * synchronous, so there is nothing to await). A hook that throws fails, and the plugin goes to
 * ERROR with the message.
 */
export interface Hooks {
  onInstall?(ctx: Context): void;
  onLoad?(ctx: Context): void;
  onEnable?(ctx: Context): void;
  onDisable?(ctx: Context): void;
  onUnload?(ctx: Context): void;
  onUninstall?(ctx: Context): void;
  /** A newer version replaced `previous`; storage is kept. */
  onUpgrade?(ctx: Context, previous: string): void;
}
