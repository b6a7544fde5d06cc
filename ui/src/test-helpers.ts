// Shared test set-up: a mounted app on the fake backend in jsdom.
import { mount, type App } from "./app";
import type { CoreEvent } from "./bindings";
import { FakeBackend } from "./fake-backend";

export interface Harness {
  app: App;
  fake: FakeBackend;
  clock: { now: number };
  emit(e: CoreEvent): void;
  $(testid: string, within?: ParentNode): HTMLElement;
  $$(testid: string, within?: ParentNode): HTMLElement[];
  click(testid: string, within?: ParentNode): Promise<void>;
  type(testid: string, value: string): void;
  key(key: string, init?: KeyboardEventInit, target?: EventTarget): void;
  flush(): Promise<void>;
  dispose(): void;
}

export async function setup(configure?: (fake: FakeBackend) => void): Promise<Harness> {
  const fake = new FakeBackend();
  configure?.(fake);
  document.body.innerHTML = '<div id="app"></div>';
  const root = document.getElementById("app") as HTMLElement;
  const clock = { now: 1_700_000_000_000 };
  const app = mount(root, fake, { now: () => clock.now, tickMs: 0 });
  await app.ready;
  const flush = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
    await new Promise((r) => setTimeout(r, 0));
  };
  const $$ = (id: string, within: ParentNode = document) => Array.from(within.querySelectorAll<HTMLElement>(`[data-testid="${id}"]`));
  const $ = (id: string, within: ParentNode = document) => {
    const el = within.querySelector<HTMLElement>(`[data-testid="${id}"]`);
    if (!el) throw new Error(`no element with data-testid=${id}`);
    return el;
  };
  return {
    app,
    fake,
    clock,
    emit: (e) => fake.emit(e),
    $,
    $$,
    async click(id, within) {
      $(id, within).click();
      await flush();
    },
    type(id, value) {
      const el = $(id) as HTMLInputElement;
      el.value = value;
      el.dispatchEvent(new Event("input", { bubbles: true }));
    },
    key(key, init = {}, target = document.body) {
      target.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true, ...init }));
    },
    flush,
    dispose: () => app.dispose(),
  };
}

/** Core events for a call that goes out and connects. */
export function connectedCall(id: string, remote: string, direction: "incoming" | "outgoing" = "outgoing"): CoreEvent[] {
  return [
    { event: "callsUpdated", added: [{ id, direction, remote }], removed: [] },
    { event: "callStateChanged", callId: id, oldState: "None", state: "Connecting" },
    { event: "callStateChanged", callId: id, oldState: "Connecting", state: "Connected" },
  ];
}

/** The last element (Array.prototype.at is ES2022). */
export function last<T>(xs: readonly T[]): T | undefined {
  return xs[xs.length - 1];
}
