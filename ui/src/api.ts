// The UI's only door to Rust: the generated bindings, with results unwrapped into exceptions
// that carry the typed CommandError.
import { commands, events, type CommandError, type KernelEvent, type RecordsChanged } from "./bindings";

export class CommandFailure extends Error {
  constructor(public readonly error: CommandError) {
    super(error.message);
  }
}

type Result<T> = { status: "ok"; data: T } | { status: "error"; error: CommandError };

export async function call<T>(p: Promise<Result<T>>): Promise<T> {
  const r = await p;
  if (r.status === "error") throw new CommandFailure(r.error);
  return r.data;
}

export function asCommandError(e: unknown): CommandError {
  if (e instanceof CommandFailure) return e.error;
  return { kind: "other", code: "ui", message: e instanceof Error ? e.message : String(e) };
}

/** Calls `handler` for each kernel notification (they arrive in batches of up to 50 ms). */
export function onKernelEvent(handler: (e: KernelEvent) => void): () => void {
  return onKernelEvents((batch) => batch.forEach(handler));
}

/** Subscribe through a generated event's `listen`; the returned function unsubscribes, even
 * when called before the subscription is established. */
function subscribe<T>(listen: (cb: (e: { payload: T }) => void) => Promise<() => void>, handler: (payload: T) => void): () => void {
  let stop: (() => void) | undefined;
  let cancelled = false;
  listen((e) => handler(e.payload))
    .then((un) => {
      if (cancelled) un();
      else stop = un;
    })
    .catch(() => {});
  return () => {
    cancelled = true;
    stop?.();
  };
}

/** Calls `handler` once per batch of kernel notifications, oldest first. */
export function onKernelEvents(handler: (batch: KernelEvent[]) => void): () => void {
  return subscribe((cb) => events.kernelNotices.listen(cb), handler);
}

/** Calls `handler` whenever the in-app notification inbox changes. */
export function onInboxChanged(handler: () => void): () => void {
  return subscribe((cb) => events.inboxChanged.listen(cb), () => handler());
}

/** Calls `handler` with a record type whose records changed in the console's process, or with
 * `null` when some changed and which is not known. */
export function onRecordsChanged(handler: (recordType: string | null) => void): () => void {
  return subscribe<RecordsChanged>((cb) => events.recordsChanged.listen(cb), (p) => handler(p.recordType));
}

export { commands };

export function formatTime(ms: number | null): string {
  if (ms === null) return "—";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

export function formatClock(ms: number | null): string {
  return ms === null ? "—" : new Date(ms).toLocaleTimeString();
}
