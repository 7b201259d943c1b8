// @ts-check
/** @param {import("../../objectos").Context} ctx */
export function onEnable(ctx) {
  ctx.services.register("greeter", {
    greet: ({ name }, { caller }) => {
      const count = (ctx.storage.get("count") ?? 0) + 1;
      ctx.storage.set("count", count);
      ctx.events.emit("greeter.greeted", { name, count });
      ctx.log.info(`greeted ${name} for ${caller}`, { count });
      return { text: `Hello, ${name}!`, count };
    },
  });
}
