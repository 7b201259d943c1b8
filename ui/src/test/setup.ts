import { afterEach } from "vitest";
import { cleanup } from "@testing-library/react";
import { clearMocks } from "@tauri-apps/api/mocks";

// jsdom lacks these; the virtualizer and React Flow only need them to exist.
class RO {
  observe() {}
  unobserve() {}
  disconnect() {}
}
(globalThis as unknown as { ResizeObserver: typeof RO }).ResizeObserver ??= RO;
if (!("randomUUID" in globalThis.crypto)) Object.assign(globalThis.crypto, { randomUUID: () => "00000000-0000-4000-8000-000000000000" });

afterEach(() => {
  cleanup();
  clearMocks();
});
