// @ts-check
// Lead scoring, in the ObjectOS sandbox. Every hook gets `ctx`: storage, events, services,
// log and config, each call checked against the permissions an admin approved. (The types
// come from the author's kit in this repository's sdk/ folder.)

/** @typedef {import("../../../sdk/objectos").Context} Context */
/** @typedef {{ id?: string, name?: string, company?: string, email?: string, source?: string, employees?: number, budget?: number }} Lead */
/** @typedef {{ score: number, grade: "hot" | "warm" | "cold" }} Score */

/** @type {Record<string, number>} */
const POINTS_BY_SOURCE = { referral: 30, event: 20, website: 15, cold: 5 };
const FREE_MAIL = /@(gmail|googlemail|yahoo|hotmail|outlook|live|icloud|gmx|web)\./i;

/**
 * A lead's score (0 to 100) and grade, from the fields a small business usually knows.
 * @param {Lead} lead
 * @returns {Score}
 */
export function score(lead) {
  let points = POINTS_BY_SOURCE[lead.source ?? ""] ?? 0;
  const employees = Number(lead.employees ?? 0);
  points += employees >= 250 ? 30 : employees >= 50 ? 20 : employees >= 10 ? 10 : 0;
  const budget = Number(lead.budget ?? 0);
  points += budget >= 50000 ? 30 : budget >= 10000 ? 20 : budget >= 1000 ? 10 : 0;
  if (typeof lead.email === "string" && lead.email.includes("@") && !FREE_MAIL.test(lead.email)) points += 10;
  const total = Math.min(100, points);
  return { score: total, grade: total >= 70 ? "hot" : total >= 40 ? "warm" : "cold" };
}

/** @param {Context} ctx */
export function onEnable(ctx) {
  const hotAt = Number(ctx.config().hotAt ?? 70);

  ctx.events.on("data.com.acme.leads.lead.created", (event) => {
    /** @type {Lead | null} */
    // Data events carry ids only: the record is read through the data service.
    const lead = ctx.services.call("data", "get", { object: "lead", id: /** @type {any} */ (event.payload).id });
    if (!lead) return;
    const result = score(lead);
    ctx.services.call("data", "update", { object: "lead", id: lead.id, patch: result });
    ctx.storage.set("scored", (ctx.storage.get("scored") ?? 0) + 1);
    ctx.log.info(`scored ${lead.name}: ${result.score} (${result.grade})`, { lead: lead.id, ...result });
    ctx.events.emit("leads.scored", { id: lead.id, ...result });
    if (result.score >= hotAt) tellTheTeam(ctx, lead, result);
  });

  // Other plugins score leads of their own: services.call("leads.score", "score", {...}).
  ctx.services.register("leads.score", {
    score: (/** @type {Lead} */ lead) => score(lead),
  });

  ctx.log.info("lead scoring is on", { hotAt, scoredSoFar: ctx.storage.get("scored") ?? 0 });
}

/**
 * @param {Context} ctx
 * @param {Lead} lead
 * @param {Score} result
 */
function tellTheTeam(ctx, lead, result) {
  try {
    ctx.services.call("notification", "send", {
      title: `Hot lead: ${lead.name}`,
      body: `${lead.company ?? "A new lead"} scored ${result.score}. Call them soon.`,
      level: "info",
    });
  } catch (/** @type {any} */ e) {
    // The optional permission was not approved (or the notification plugin is off): the
    // score is written all the same.
    ctx.log.debug(`no notification: ${e.message}`, { code: e.code });
  }
}
