// What the records views share: a record as the UI holds it, and a value as text.

export type Row = Record<string, unknown>;

/** The value of a field as a person reads it in a table. */
export function shown(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}
