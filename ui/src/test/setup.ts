import { afterEach } from "vitest";
import { cleanup, configure } from "@testing-library/react";
import { clearMocks } from "@tauri-apps/api/mocks";

// jsdom lacks these; the virtualizer and React Flow only need them to exist.
class RO {
  observe() {}
  unobserve() {}
  disconnect() {}
}
(globalThis as unknown as { ResizeObserver: typeof RO }).ResizeObserver ??= RO;
if (!("randomUUID" in globalThis.crypto)) Object.assign(globalThis.crypto, { randomUUID: () => "00000000-0000-4000-8000-000000000000" });

// `findBy…` and `waitFor` give up after 1 s by default. What they wait for (a mocked call's
// answer, a re-render) takes milliseconds, but a slow or busy machine can stretch that; a
// generous deadline costs nothing when the condition holds.
configure({ asyncUtilTimeout: 10_000 });

afterEach(() => {
  cleanup();
  clearMocks();
});
