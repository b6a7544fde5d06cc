// Call history: entries made from ended calls, kept newest first, at most 200.

import type { CallDirection, CallEndReason, CallOutcome, HistoryEntry } from "./bindings";
import type { Translator } from "./i18n";

/** One call in the history (kept by the Rust side: `commands.history` / `saveHistory`). */
export type { HistoryEntry };

export const HISTORY_LIMIT = 200;

export type Outcome = CallOutcome;

/** Sub-codes of `callEndReason` (hookflash_core::call::sub_code). */
export const SubCode = {
  REMOTE_STATUS: 0,
  LOCAL_HANGUP: 1000,
  REMOTE_HANGUP: 1001,
  LOCAL_CANCEL: 1002,
  REMOTE_CANCEL: 1003,
  LOCAL_REJECT: 1004,
  TIMEOUT: 1005,
  MEDIA_FAILED: 1006,
  TRANSPORT_FAILED: 1007,
  REPLACED: 1008,
  AGENT_SHUTDOWN: 1009,
  TRANSFERRED: 1010,
  LOCAL_BUSY: 1011,
} as const;

export function outcomeOf(
  direction: CallDirection,
  connected: boolean,
  reason: CallEndReason | null,
  transferred: boolean,
): Outcome {
  if (transferred || reason?.subCode === SubCode.TRANSFERRED) return "transferred";
  if (connected) return "answered";
  if (direction === "incoming") return reason?.subCode === SubCode.LOCAL_REJECT ? "declined" : "missed";
  if (reason?.subCode === SubCode.LOCAL_CANCEL) return "cancelled";
  if (reason && (reason.code === 486 || reason.code === 600)) return "busy";
  return "failed";
}

/** Seconds since the epoch (`HistoryEntry.started`) from a clock in milliseconds. */
export function epochSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

export function addEntry(list: HistoryEntry[], entry: HistoryEntry): HistoryEntry[] {
  return [entry, ...list.filter((e) => e.id !== entry.id)].slice(0, HISTORY_LIMIT);
}

/**
 * The main line of an entry: the party, with who transferred it where. `label` names an
 * address (given the name kept with it), so directory contacts show their directory name.
 */
export function historyTitle(t: Translator, e: HistoryEntry, label: (address: string, name: string | null) => string): string {
  const party = label(e.party, e.partyName);
  if (e.transferredTo) return t("history.transferredByYou", { party, target: e.transferredTo });
  if (e.transferredBy) return t("history.transferredBy", { party, transferor: e.transferredBy });
  return party;
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}
