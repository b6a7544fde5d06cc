// Wires the store, the controller, the views and the backend together.

import { render } from "lit-html";
import type { Backend } from "./backend";
import { Controller } from "./controller";
import { htmlLang, translator } from "./i18n";
import { handleKey, trapFocus } from "./keyboard";
import { initialState, Store, uiLocale, visibleCalls, type State } from "./store";
import { appView } from "./views/app";

export interface AppOptions {
  now?: () => number;
  /** Timer tick interval (ms); 0 disables it (tests). */
  tickMs?: number;
}

export interface App {
  store: Store;
  controller: Controller;
  root: HTMLElement;
  ready: Promise<void>;
  dispose(): void;
}

export function effectiveTheme(s: State): "light" | "dark" {
  const pref = s.settings?.preferences.theme ?? "system";
  if (pref === "light" || pref === "dark") return pref;
  return s.systemDark ? "dark" : "light";
}

export function mount(root: HTMLElement, backend: Backend, opts: AppOptions = {}): App {
  const now = opts.now ?? (() => Date.now());
  const media = typeof window.matchMedia === "function" ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const store = new Store(initialState({ now: now(), systemDark: media?.matches ?? false, navigatorLanguage: navigator.language }));
  const controller = new Controller(store, backend, now);
  const doc = root.ownerDocument;
  const cleanups: (() => void)[] = [];

  const paint = (s: State) => {
    const locale = uiLocale(s);
    const html = doc.documentElement;
    html.lang = htmlLang(locale);
    html.dataset.theme = effectiveTheme(s);
    render(appView(s, controller, translator(locale), htmlLang(locale)), root);
  };

  cleanups.push(
    store.subscribe((s, prev) => {
      paint(s);
      if (s.history !== prev.history) void controller.saveHistory(s.history);
      if (s.calls !== prev.calls || s.view !== prev.view) controller.syncMeter();
      if (s.transfer && !prev.transfer) {
        doc.querySelector<HTMLElement>("[data-testid=transfer-dialog] input, [data-testid=transfer-dialog] button[role=tab]")?.focus();
      }
      if (!s.transfer && prev.transfer) {
        doc.querySelector<HTMLElement>(`[data-testid=call-item][data-call-id="${prev.transfer.callId}"] [data-testid=call-transfer]`)?.focus();
      }
      if (s.transfer && prev.transfer && s.transfer.mode !== prev.transfer.mode) {
        doc.querySelector<HTMLElement>("[data-testid=transfer-dialog] .dialog-body input")?.focus();
      }
    }),
  );
  paint(store.state);

  const onKey = (e: KeyboardEvent) => {
    trapFocus(e, doc);
    handleKey(e, controller);
  };
  doc.addEventListener("keydown", onKey);
  cleanups.push(() => doc.removeEventListener("keydown", onKey));

  if (media) {
    const onScheme = (e: MediaQueryListEvent) => store.dispatch({ type: "systemDark", dark: e.matches });
    media.addEventListener("change", onScheme);
    cleanups.push(() => media.removeEventListener("change", onScheme));
  }

  const tickMs = opts.tickMs ?? 1000;
  if (tickMs > 0) {
    const timer = setInterval(() => {
      if (visibleCalls(store.state).some((c) => c.connectedAt !== null)) store.dispatch({ type: "tick", now: now() });
    }, tickMs);
    cleanups.push(() => clearInterval(timer));
  }

  /** A `sip:`/`tel:`/`callto:` link: fill and focus the address field on the Calls view. */
  const fillAddress = (address: string) => {
    controller.navigate("calls");
    controller.setAddress(address);
    doc.querySelector<HTMLInputElement>("[data-testid=address-input]")?.focus();
  };

  const ready = (async () => {
    const unlistenCore = await backend.events.coreEvent.listen((e) => controller.coreEvent(e.payload));
    const unlistenDial = await backend.events.dialRequested.listen((e) => fillAddress(e.payload.address));
    const unlistenSession = await backend.events.sessionChanged.listen((e) => void controller.sessionChanged(e.payload.session));
    cleanups.push(unlistenCore, unlistenDial, unlistenSession);
    const started = controller.start();
    started.catch(() => undefined); // awaited below; not unhandled meanwhile
    // A link that started the app arrived before anyone listened: the backend kept it.
    const pending = await backend.commands.takePendingDial().catch(() => null);
    if (pending) fillAddress(pending);
    await started;
  })();

  return {
    store,
    controller,
    root,
    ready,
    dispose() {
      for (const f of cleanups.splice(0)) f();
      render(null, root);
    },
  };
}
