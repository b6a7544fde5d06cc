// The seam between the UI and the Rust side: everything goes through a `Backend`, so tests
// can substitute the in-memory fake (fake-backend.ts).

import { commands, events } from "./bindings";
import type { CoreEvent, DialRequested, SessionChanged } from "./bindings";

/** What a command that can fail answers (the shape tauri-specta's `typedError` returns). */
export type Result<T, E> = { status: "ok"; data: T } | { status: "error"; error: E };

export type Commands = typeof commands;

export interface EventSource<T> {
  listen(cb: (e: { payload: T }) => void): Promise<() => void>;
}

export interface Backend {
  /** Every command, the call history (`history`/`saveHistory`) included. */
  commands: Commands;
  events: {
    coreEvent: EventSource<CoreEvent>;
    dialRequested: EventSource<DialRequested>;
    sessionChanged: EventSource<SessionChanged>;
  };
}

export function tauriBackend(): Backend {
  return { commands, events };
}
