// Our own harness for @objectstack/core (LiteKernel and ObjectKernel), run by
// `objectos-bench` with Node in the same invocation as the Rust rows. It prints one JSON line.
// usage: node harness.mjs <lite|object> <core module path> <scale>
const [kind, corePath, scaleArg] = process.argv.slice(2);
const core = await import(corePath);
const scale = Number(scaleArg || 1);
const now = () => Number(process.hrtime.bigint()) / 1e6;

function makeKernel() {
  const logger = { level: "fatal" };
  return kind === "lite" ? new core.LiteKernel({ logger }) : new core.ObjectKernel({ logger, skipSystemValidation: true });
}

// 1. Start: 100 registered plugins in a dependency chain, each registering a service:
// `bootstrap()` (resolve, init, start) is timed, as `start()` + `enable` are on the Rust side.
// Five fresh kernels in turn; the median counts (the Rust side does the same).
async function startChain() {
  const contexts = [];
  const k = makeKernel();
  for (let i = 0; i < 100; i++) {
    const name = `p${String(i).padStart(3, "0")}`;
    const plugin = {
      name,
      version: "1.0.0",
      dependencies: i === 0 ? [] : [`p${String(i - 1).padStart(3, "0")}`],
      init(ctx) {
        ctx.registerService(`svc${i}`, { n: i });
        contexts[i] = ctx;
      },
    };
    await k.use(plugin);
  }
  const t0 = now();
  await k.bootstrap();
  return { k, contexts, ms: now() - t0 };
}
const starts = [];
let k, contexts;
for (let r = 0; r < 5; r++) {
  if (k) await k.shutdown?.();
  const s = await startChain();
  starts.push(s.ms);
  ({ k, contexts } = s);
}
const startMs = starts.sort((a, b) => a - b)[2];

// 2. Service lookup: 1,000,000 lookups by name across the 100 services.
const names = Array.from({ length: 100 }, (_, i) => `svc${i}`);
const n = 1_000_000 / scale;
let sink = 0;
const t1 = now();
for (let i = 0; i < n; i++) sink += k.getService(names[i % 100]).n;
const lookupMs = now() - t1;

// 3. Event dispatch: 100,000 events to 10 subscribers (hooks are the bus; trigger is awaited).
const ctx = contexts[50];
let delivered = 0;
for (let i = 0; i < 10; i++) contexts[i].hook("bench.tick", () => { delivered++; });
const m = 100_000 / scale;
const t2 = now();
for (let i = 0; i < m; i++) await ctx.trigger("bench.tick", { n: 1 });
const dispatchMs = now() - t2;
if (delivered !== 10 * m) throw new Error(`delivered ${delivered}, expected ${10 * m}`);

await k.shutdown?.();
console.log(JSON.stringify({ kind, startMs, lookupMs, lookups: n, dispatchMs, events: m, sink }));
