// A well-behaved guest: storage, events, a service, the log and its configuration.
export function onEnable(ctx) {
  const starts = (ctx.storage.get("starts") ?? 0) + 1;
  ctx.storage.set("starts", starts);
  ctx.log.info("echo enabled", { starts, now: Date.now(), random: Math.random(), iso: new Date().toISOString() });
  ctx.events.on("t.echo.ping", (event) => {
    ctx.storage.set("last", event.payload);
    ctx.events.emit("t.echo.pong", { got: event.payload, depth: 1 });
  });
  ctx.services.register("echo", {
    say: (args, { caller }) => ({ said: args.text, caller, greeting: ctx.config().greeting ?? "hello" }),
  });
}
