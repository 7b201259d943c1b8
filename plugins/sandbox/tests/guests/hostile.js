// One guest for the hostile corpus: what it does is chosen by its configuration's `mode` (and
// `in`, the hook or handler to misbehave in), so the corpus compiles once.
const mode = (ctx) => ctx.config().mode ?? "none";
const where = (ctx) => ctx.config().in ?? "enable";

function misbehave(ctx, place) {
  if (where(ctx) !== place) return;
  switch (mode(ctx)) {
    case "loop":
      for (;;) {}
    case "memory": {
      // Blocks of 1 MiB, so the bound is reached in milliseconds on any CPU: the refusal is
      // the memory bound's, never the time budget's (filling arrays element by element took
      // millions of steps, a good part of the hook's 300 ms).
      const hoard = [];
      for (;;) hoard.push(new ArrayBuffer(1 << 20));
    }
    case "recursion": {
      const down = (n) => down(n + 1) + 1;
      return down(0);
    }
    case "throw":
      throw new Error("the guest gave up on purpose");
    case "promise":
      return Promise.resolve(1);
  }
}

export function onInstall(ctx) { return misbehave(ctx, "install"); }
export function onLoad(ctx) { return misbehave(ctx, "load"); }
export function onUnload(ctx) { return misbehave(ctx, "unload"); }
export function onDisable(ctx) { return misbehave(ctx, "disable"); }
export function onUninstall(ctx) { return misbehave(ctx, "uninstall"); }

export function onEnable(ctx) {
  ctx.log.info("hostile guest enabled", { mode: mode(ctx), in: where(ctx) });
  const m = mode(ctx);
  if (m === "grants") {
    // Every import without its grant: each must be refused, and the refusal handled here.
    const refused = [];
    const attempt = (what, f) => {
      try { f(); refused.push(`${what}: allowed`); } catch (e) { refused.push(`${what}: ${e.code}`); }
    };
    attempt("storage.get", () => ctx.storage.get("k"));
    attempt("storage.set", () => ctx.storage.set("k", 1));
    attempt("events.emit", () => ctx.events.emit("t.hostile.ping", {}));
    attempt("events.on", () => ctx.events.on("data.**", () => {}));
    attempt("services.call", () => ctx.services.call("data", "list", { object: "x" }));
    attempt("services.register", () => ctx.services.register("hostile", {}));
    attempt("kernel", () => ctx.services.call("kernel", "disable", { plugin: "t.hostile" }));
    // Names long enough to flood the audit trail if they were recorded whole.
    attempt("long-service", () => ctx.services.call("x".repeat(100000), "m", {}));
    attempt("long-method", () => ctx.services.call("data", "m".repeat(100000), {}));
    attempt("long-pattern", () => ctx.events.on("p.".repeat(50000) + "x", () => {}));
    attempt("long-topic", () => ctx.events.emit("t".repeat(100000), {}));
    ctx.log.warn("refusals", { refused });
    return;
  }
  if (m === "squat") {
    // A service name the package does not own (a built-in's), with the grant to provide it.
    ctx.services.register(ctx.config().service, { list: (args, { caller }) => ({ intercepted: args, caller }) });
    return;
  }
  if (m === "foreign-topic") {
    ctx.events.emit("t.victim.ping", {});
    return;
  }
  if (m === "subscribe-forever") {
    for (let i = 0; ; i++) ctx.events.on(`t.hostile.x${i}`, () => {});
  }
  if (m === "huge-return" || m === "service-loop" || m === "handler") {
    ctx.services.register("hostile", {
      // One byte over the host's 1 MiB bound once quoted as JSON: cheap to build on any CPU.
      big: () => "x".repeat((1 << 20) - 1),
      spin: () => { for (;;) {} },
      echo: (args, { caller }) => ({ args, caller }),
      again: () => ctx.services.call("hostile", "echo", {}),
    });
    ctx.events.on("t.hostile.*", (event) => {
      if (event.topic === "t.hostile.bad") for (;;) {}
      ctx.storage.set(`heard.${event.topic}`, event.payload);
    });
    return;
  }
  return misbehave(ctx, "enable");
}
