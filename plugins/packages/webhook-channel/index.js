// @ts-check
// A notification channel in the ObjectOS sandbox: the notification service hands each notice
// sent to the `com.acme.webhook` channel to this plugin's service, which posts it to the webhook URL
// in the settings. The URL's host must be one the admin approved; anything else is refused
// before a connection is made, and the delivery fails (and is retried) with that reason.

/** @typedef {import("../../../sdk/objectos").Context} Context */
/** @typedef {{ id: string, plugin: string, title: string, body: string, level: string, createdAt: number, data?: unknown }} Message */

const SERVICE = "webhook.channel";
const CHANNEL = "com.acme.webhook"; // a channel is named after its plugin
const ICON = { info: "ℹ️", success: "✅", warning: "⚠️", error: "⛔" };

/**
 * What the chat receives for `message`, in the format the settings name.
 * @param {Message} message
 * @param {string} format
 */
export function payload(message, format) {
  const icon = /** @type {Record<string, string>} */ (ICON)[message.level] ?? "";
  const text = `${icon ? `${icon} ` : ""}*${message.title}*${message.body ? `\n${message.body}` : ""}`;
  if (format === "content") return { content: text.replace(/\*/g, "**") };
  if (format === "full") return { id: message.id, from: message.plugin, level: message.level, title: message.title, body: message.body, at: new Date(message.createdAt).toISOString(), data: message.data ?? null };
  return { text };
}

/** @param {Context} ctx */
export function onEnable(ctx) {
  ctx.services.register(SERVICE, {
    /** @param {Message} message */
    deliver: (message) => {
      const c = ctx.config();
      const url = String(c.url ?? "");
      if (!url) throw new Error("no webhook URL is set in the plugin's settings");
      /** @type {{ [name: string]: string }} */
      const headers = {};
      if (typeof c.token === "string" && c.token !== "") headers.authorization = `Bearer ${c.token}`;
      const r = ctx.http.post(url, { json: payload(message, String(c.format ?? "text")), headers });
      if (!r.ok) throw new Error(`the webhook answered ${r.status}: ${r.body.slice(0, 200)}`);
      ctx.log.debug(`posted "${message.title}"`, { status: r.status });
      return null;
    },
  });
  ctx.services.call("notification", "registerChannel", { name: CHANNEL, service: SERVICE });
}
