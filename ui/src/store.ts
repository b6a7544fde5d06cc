// The one store: a single state object, `apply(state, action)` reducers with no side effects,
// and subscribe/notify for rendering. Side effects (commands) live in controller.ts.

import type {
  ApiError,
  AudioDeviceInfo,
  CallDirection,
  CallEndReason,
  CallerInfo,
  CallState,
  ConnectionReason,
  ConnectionState,
  CoreEvent,
  Preferences,
  ForwardingRules,
  SessionInfo,
  Settings,
  TransferError,
  TransferState,
  VoicemailMessage,
} from "./bindings";
import { partyLabel } from "./address";
import { resolveLocale, type Locale } from "./i18n";
import { addEntry, epochSeconds, HISTORY_LIMIT, outcomeOf, type HistoryEntry } from "./history";
import { text, type Text } from "./text";
import { transferFailureKey } from "./transfer-text";

export type View = "calls" | "history" | "voicemail" | "settings";
export type TransferMode = "person" | "call" | "voicemail";

export interface CallView {
  id: string;
  direction: CallDirection;
  remote: string;
  state: CallState;
  muted: boolean;
  startedAt: number;
  connectedAt: number | null;
  /** The caller's display name (incoming). */
  remoteName: string | null;
  /** Who transferred this call to us. */
  transferor: CallerInfo | null;
  endReason: CallEndReason | null;
  /** This call was taken over by another (transferAccepted / callReplaced); hidden. */
  replacedBy: string | null;
  /** We transferred this call to this party. */
  transferredTo: string | null;
  historyWritten: boolean;
}

export interface TransferRecord {
  id: string;
  callId: string;
  /** Who it goes to, as shown. */
  target: string;
  state: TransferState;
  error: TransferError | null;
}

export interface TransferDialog {
  callId: string;
  /** The party of the call being transferred (kept after the call ends). */
  party: string;
  mode: TransferMode;
  target: string;
  ringOnly: boolean;
  selectedCallId: string | null;
  consultTarget: string;
  consultCallId: string | null;
  transferId: string | null;
  busy: boolean;
  apiError: ApiError | null;
  missingTarget: boolean;
}

export interface Consent {
  callId: string;
  transferId: string;
  target: string;
  transferor: CallerInfo;
}

export interface Announcement extends Text {
  seq: number;
}

export interface State {
  view: View;
  session: SessionInfo | null;
  settings: Settings | null;
  connection: { state: ConnectionState; reason: ConnectionReason | null };
  calls: CallView[];
  pendingReplacements: Record<string, string>;
  /** Who asked us to call someone else, by transfer id (transferRequested, transferee side). */
  transferors: Record<string, CallerInfo>;
  /** The transferor of a transferAccepted whose new call is not known yet, by that call's id. */
  pendingTransferors: Record<string, CallerInfo>;
  incoming: Record<string, { caller: CallerInfo; transferor: CallerInfo | null }>;
  focusedCallId: string | null;
  keypadCallId: string | null;
  address: string;
  completion: { field: string; index: number } | null;
  transfer: TransferDialog | null;
  transfers: Record<string, TransferRecord>;
  consents: Consent[];
  messageWaiting: number;
  dnd: boolean;
  microphones: AudioDeviceInfo[];
  speakers: AudioDeviceInfo[];
  selectedMicrophone: string | null;
  selectedSpeaker: string | null;
  selectedRinger: string | null;
  audioProcessing: { echoCancellation: boolean; noiseSuppression: boolean } | null;
  micLevel: number;
  history: HistoryEntry[];
  voicemail: VoicemailMessage[] | null;
  playing: string | null;
  rules: ForwardingRules | null;
  live: Announcement | null;
  notice: Text | null;
  systemDark: boolean;
  navigatorLanguage: string;
  now: number;
}

export type Action =
  | { type: "core"; event: CoreEvent; at: number }
  | { type: "session"; session: SessionInfo }
  | { type: "sessionChanged"; session: SessionInfo; at: number }
  | { type: "settings"; settings: Settings }
  | { type: "preferences"; preferences: Preferences }
  | { type: "navigate"; view: View }
  | { type: "address"; value: string }
  | { type: "completion"; completion: State["completion"] }
  | { type: "focusCall"; callId: string | null }
  | { type: "keypad"; callId: string | null }
  | { type: "tick"; now: number }
  | { type: "historyLoaded"; entries: HistoryEntry[] }
  | { type: "clearHistory" }
  | { type: "transferOpen"; callId: string }
  | { type: "transferEdit"; patch: Partial<TransferDialog> }
  | { type: "transferClose" }
  | { type: "transferStarted"; transferId: string; callId: string; target: string }
  | { type: "consentDone"; transferId: string }
  | { type: "voicemail"; messages: VoicemailMessage[] }
  | { type: "playing"; id: string | null }
  | { type: "rules"; rules: ForwardingRules }
  | { type: "notice"; notice: Text | null }
  | { type: "systemDark"; dark: boolean };

/** What belongs to one session: its calls, transfers and mailbox; a new session starts these afresh. */
function sessionScoped() {
  return {
    calls: [],
    pendingReplacements: {},
    transferors: {},
    pendingTransferors: {},
    incoming: {},
    focusedCallId: null,
    keypadCallId: null,
    completion: null,
    transfer: null,
    transfers: {},
    consents: [],
    messageWaiting: 0,
    voicemail: null,
    playing: null,
    rules: null,
  } satisfies Partial<State>;
}

export function initialState(init: { now: number; systemDark?: boolean; navigatorLanguage?: string }): State {
  return {
    ...sessionScoped(),
    view: "calls",
    session: null,
    settings: null,
    connection: { state: "Disconnected", reason: null },
    address: "",
    dnd: false,
    microphones: [],
    speakers: [],
    selectedMicrophone: null,
    selectedSpeaker: null,
    selectedRinger: null,
    audioProcessing: null,
    micLevel: 0,
    history: [],
    live: null,
    notice: null,
    systemDark: init.systemDark ?? false,
    navigatorLanguage: init.navigatorLanguage ?? "en",
    now: init.now,
  };
}

// ---- selectors ---------------------------------------------------------------------------

/** The UI locale: the language preference, "system" meaning the backend's system language. */
export function uiLocale(s: State): Locale {
  return resolveLocale(s.settings?.preferences.language ?? "system", s.navigatorLanguage, s.settings?.systemLanguage);
}

export const ESTABLISHED: readonly CallState[] = ["Connected", "LocalHold", "RemoteHold"];
export const isEstablished = (c: CallView): boolean => ESTABLISHED.includes(c.state);
const ENDED: readonly CallState[] = ["Disconnecting", "Disconnected"];

/** The calls shown in the list, in slot order. */
export function visibleCalls(s: State): CallView[] {
  return s.calls.filter((c) => !c.replacedBy);
}

export function findCall(s: State, id: string | null | undefined): CallView | undefined {
  return id ? s.calls.find((c) => c.id === id) : undefined;
}

/** The call keyboard shortcuts act on: the focused one, else a connected one, else any live one. */
export function activeCall(s: State): CallView | undefined {
  const live = visibleCalls(s).filter((c) => !ENDED.includes(c.state));
  return (
    live.find((c) => c.id === s.focusedCallId) ??
    live.find((c) => c.state === "Connected") ??
    live.find(isEstablished) ??
    live[0]
  );
}

export function callLabel(s: State, c: CallView): string {
  return partyLabel(c.remote, s.session, c.remoteName);
}

/** Incoming calls waiting for an answer. */
export function ringingIncoming(s: State): CallView[] {
  return visibleCalls(s).filter((c) => c.direction === "incoming" && s.incoming[c.id] && !ENDED.includes(c.state));
}

// ---- reducers ----------------------------------------------------------------------------

let seq = 0;
function announce(s: State, t: Text): State {
  return { ...s, live: { ...t, seq: ++seq } };
}

function updateCall(s: State, id: string, f: (c: CallView) => CallView): State {
  return { ...s, calls: s.calls.map((c) => (c.id === id ? f(c) : c)) };
}

function newCall(id: string, direction: CallDirection, remote: string, at: number): CallView {
  return {
    id,
    direction,
    remote,
    state: "None",
    muted: false,
    startedAt: at,
    connectedAt: null,
    remoteName: null,
    transferor: null,
    endReason: null,
    replacedBy: null,
    transferredTo: null,
    historyWritten: false,
  };
}

/** How a transferor is named: the directory's name, else its display name, else its address. */
export function transferorLabel(s: State, who: CallerInfo): string {
  return partyLabel(who.identifier, s.session, who.displayName);
}

/** The call `callId` came to us because `who` transferred us (transferee side). */
function setTransferor(s: State, callId: string, who: CallerInfo): State {
  if (!findCall(s, callId)) return { ...s, pendingTransferors: { ...s.pendingTransferors, [callId]: who } };
  return updateCall(s, callId, (c) => ({ ...c, transferor: who }));
}

/** Write the history entry of an ended call (once). */
function finish(s: State, id: string, at: number): State {
  const c = findCall(s, id);
  if (!c || c.historyWritten) return s;
  const entry: HistoryEntry = {
    id: c.id,
    direction: c.direction,
    party: c.remote,
    partyName: s.session || c.remoteName ? partyLabel(c.remote, s.session, c.remoteName) : null,
    started: epochSeconds(c.startedAt),
    durationMs: c.connectedAt === null ? 0 : Math.max(0, at - c.connectedAt),
    outcome: outcomeOf(c.direction, c.connectedAt !== null, c.endReason, c.transferredTo !== null),
    transferredTo: c.transferredTo,
    transferredBy: c.transferor ? transferorLabel(s, c.transferor) : null,
  };
  s = updateCall(s, id, (x) => ({ ...x, historyWritten: true }));
  return { ...s, history: addEntry(s.history, entry) };
}

/** `newId` takes `oldId`'s slot in the list (transferee side, Replaces). */
function replaceCall(s: State, oldId: string, newId: string): State {
  const oldIdx = s.calls.findIndex((c) => c.id === oldId);
  const fresh = findCall(s, newId);
  if (oldIdx < 0) return s;
  if (!fresh) return { ...s, pendingReplacements: { ...s.pendingReplacements, [newId]: oldId } };
  const calls = s.calls.filter((c) => c.id !== newId);
  const idx = calls.findIndex((c) => c.id === oldId);
  const old = calls[idx];
  if (!old) return s;
  calls.splice(idx, 1, { ...old, replacedBy: newId }, fresh);
  const focusedCallId = s.focusedCallId === oldId ? newId : s.focusedCallId;
  const incoming = { ...s.incoming };
  delete incoming[oldId];
  return { ...s, calls, focusedCallId, incoming };
}

function removeCall(s: State, id: string, at: number): State {
  s = finish(s, id, at);
  const incoming = { ...s.incoming };
  delete incoming[id];
  const pendingReplacements = { ...s.pendingReplacements };
  delete pendingReplacements[id];
  const pendingTransferors = { ...s.pendingTransferors };
  delete pendingTransferors[id];
  return {
    ...s,
    calls: s.calls.filter((c) => c.id !== id && c.replacedBy !== id),
    incoming,
    pendingReplacements,
    pendingTransferors,
    consents: s.consents.filter((c) => c.callId !== id),
    focusedCallId: s.focusedCallId === id ? null : s.focusedCallId,
    keypadCallId: s.keypadCallId === id ? null : s.keypadCallId,
  };
}

const ANNOUNCED: readonly CallState[] = ["Ringing", "Connected", "LocalHold", "RemoteHold", "Disconnected"];

export function applyCore(s: State, e: CoreEvent, at: number): State {
  switch (e.event) {
    case "connectionStateChanged":
      return { ...s, connection: { state: e.newValue, reason: e.reason } };
    case "incomingCall": {
      if (!findCall(s, e.callId)) s = { ...s, calls: [...s.calls, newCall(e.callId, "incoming", e.callerInfo.identifier, at)] };
      s = updateCall(s, e.callId, (c) => ({
        ...c,
        direction: "incoming",
        remoteName: e.callerInfo.displayName,
        transferor: e.transferorInfo ?? null,
      }));
      s = { ...s, incoming: { ...s.incoming, [e.callId]: { caller: e.callerInfo, transferor: e.transferorInfo ?? null } } };
      return announce(s, text("live.incoming", { party: partyLabel(e.callerInfo.identifier, s.session, e.callerInfo.displayName) }));
    }
    case "callsUpdated": {
      for (const a of e.added) {
        if (findCall(s, a.id)) {
          s = updateCall(s, a.id, (c) => ({ ...c, direction: a.direction, remote: a.remote }));
        } else {
          s = { ...s, calls: [...s.calls, newCall(a.id, a.direction, a.remote, at)] };
        }
        const who = s.pendingTransferors[a.id];
        if (who) {
          const pendingTransferors = { ...s.pendingTransferors };
          delete pendingTransferors[a.id];
          s = updateCall({ ...s, pendingTransferors }, a.id, (c) => ({ ...c, transferor: who }));
        }
        const old = s.pendingReplacements[a.id];
        if (old) {
          const pendingReplacements = { ...s.pendingReplacements };
          delete pendingReplacements[a.id];
          s = replaceCall({ ...s, pendingReplacements }, old, a.id);
        }
      }
      for (const id of e.removed) s = removeCall(s, id, at);
      return s;
    }
    case "callStateChanged": {
      if (!findCall(s, e.callId)) return s;
      s = updateCall(s, e.callId, (c) => ({
        ...c,
        state: e.state,
        connectedAt: e.state === "Connected" && c.connectedAt === null ? at : c.connectedAt,
        endReason: e.callEndReason ?? c.endReason,
      }));
      if (!["None", "Ringing", "EarlyMedia"].includes(e.state) && s.incoming[e.callId]) {
        const incoming = { ...s.incoming };
        delete incoming[e.callId];
        s = { ...s, incoming };
      }
      if (e.state === "Connected") {
        const focused = findCall(s, s.focusedCallId);
        if (!focused || !isEstablished(focused) || focused.state !== "Connected") s = { ...s, focusedCallId: e.callId };
      }
      if (e.state === "Disconnected") s = finish(s, e.callId, at);
      const call = findCall(s, e.callId);
      if (call && !call.replacedBy && ANNOUNCED.includes(e.state) && e.state !== e.oldState) {
        s = announce(s, text("live.callState", { party: callLabel(s, call), state: text(`state.${e.state}`) }));
      }
      return s;
    }
    case "isMutedChanged":
      return updateCall(s, e.callId, (c) => ({ ...c, muted: e.isMuted }));
    case "transferStateChanged": {
      const prev = s.transfers[e.transferId];
      const call = findCall(s, e.callId);
      const record: TransferRecord = {
        id: e.transferId,
        callId: e.callId,
        target: prev?.target ?? dialogTargetLabel(s, e.callId) ?? "?",
        state: e.state,
        error: e.error ?? null,
      };
      s = { ...s, transfers: { ...s.transfers, [e.transferId]: record } };
      if (e.state === "Transferred" && call) s = updateCall(s, e.callId, (c) => ({ ...c, transferredTo: record.target }));
      return announceTransfer(s, record);
    }
    case "transferRequested": {
      // The transferor is the far end of the call the REFER came on: without a display name
      // of its own, the name that call was shown with.
      const original = findCall(s, e.callId);
      const transferor: CallerInfo = { identifier: e.transferor.identifier, displayName: e.transferor.displayName ?? original?.remoteName ?? null };
      s = { ...s, transferors: { ...s.transferors, [e.transferId]: transferor } };
      const who = transferorLabel(s, transferor);
      const target = partyLabel(e.target, s.session);
      if (!e.autoAccepted) {
        s = {
          ...s,
          consents: [
            ...s.consents.filter((c) => c.transferId !== e.transferId),
            { callId: e.callId, transferId: e.transferId, target: e.target, transferor: e.transferor },
          ],
        };
      }
      return announce(s, text("live.transferRequested", { transferor: who, target }));
    }
    case "transferAccepted": {
      // We were transferred: the new call is "transferred by" whoever asked us.
      const who = s.transferors[e.transferId] ?? (() => {
        const original = findCall(s, e.callId);
        return original ? { identifier: original.remote, displayName: original.remoteName } : undefined;
      })();
      const transferors = { ...s.transferors };
      delete transferors[e.transferId];
      s = { ...s, transferors, consents: s.consents.filter((c) => c.transferId !== e.transferId) };
      if (who) s = setTransferor(s, e.targetCall, who);
      return replaceCall(s, e.callId, e.targetCall);
    }
    case "callReplaced":
      return replaceCall(s, e.callId, e.newCallId);
    case "messageWaiting":
      return { ...s, messageWaiting: e.newMessages };
    case "doNotDisturbChanged":
      return { ...s, dnd: e.enabled };
    case "audioDevices":
      return e.deviceType === "microphone"
        ? { ...s, microphones: e.devices, selectedMicrophone: e.selected ?? s.selectedMicrophone }
        : { ...s, speakers: e.devices, selectedSpeaker: e.selected ?? s.selectedSpeaker };
    case "audioDevicesUpdated": {
      const gone = new Set(e.removed.map((d) => d.id));
      const mics = e.added.filter((d) => d.deviceType === "microphone");
      const spk = e.added.filter((d) => d.deviceType === "speaker");
      return {
        ...s,
        microphones: [...s.microphones.filter((d) => !gone.has(d.id)), ...mics],
        speakers: [...s.speakers.filter((d) => !gone.has(d.id)), ...spk],
      };
    }
    case "selectedMicrophoneChanged":
      return { ...s, selectedMicrophone: e.device.id };
    case "selectedSpeakerChanged":
      return { ...s, selectedSpeaker: e.device.id };
    case "selectedRingerChanged":
      return { ...s, selectedRinger: e.device.id };
    case "audioDeviceError":
      return { ...s, notice: text("notice.error", { message: e.message, code: e.code }) };
    case "microphoneLevelChanged":
      return { ...s, micLevel: e.level ?? 0 };
    case "audioProcessingChanged":
      return { ...s, audioProcessing: { echoCancellation: e.echoCancellation, noiseSuppression: e.noiseSuppression } };
    case "error":
      // Command failures come back in the command's Result; only report the others.
      return e.requestId ? s : { ...s, notice: text("notice.error", { message: e.message, code: e.code }) };
    case "dtmfReceived":
    case "remoteAudioStarted":
    case "commandSucceeded":
      return s;
  }
}

/** Whom the open transfer dialog of `callId` transfers to, as shown (before the command answered). */
function dialogTargetLabel(s: State, callId: string): string | undefined {
  const d = s.transfer;
  if (!d || d.callId !== callId) return undefined;
  if (d.mode === "call") {
    const other = findCall(s, d.consultCallId ?? d.selectedCallId);
    return other ? callLabel(s, other) : undefined;
  }
  if (d.mode === "person" && d.target.trim()) return partyLabel(d.target.trim(), s.session);
  return undefined;
}

/** The status line of a transfer (also the dialog's). */
export function transferStatusText(r: TransferRecord): Text {
  if (r.state === "Failed") {
    return text(transferFailureKey(r.error), { target: r.target, code: r.error?.code ?? "?" });
  }
  if (r.state === "Transferred") return text("transfer.status.Transferred", { target: r.target });
  return text("transfer.status.Transferring", { target: r.target });
}

function announceTransfer(s: State, r: TransferRecord): State {
  if (r.state === "None") return s;
  return announce(s, transferStatusText(r));
}

export function apply(s: State, a: Action): State {
  switch (a.type) {
    case "core":
      return applyCore(s, a.event, a.at);
    case "session":
      return {
        ...s,
        session: a.session,
        connection:
          s.connection.reason === null || s.session?.server !== a.session.server || s.session.user !== a.session.user
            ? { state: a.session.connectionState, reason: null }
            : s.connection,
      };
    case "sessionChanged": {
      // A new session (another account, the demo, or a sign-in elsewhere): the old session's
      // calls ended with it. Whatever of them is not in the history yet is written, then the
      // calls and everything tied to them or to the old mailbox start afresh.
      for (const c of s.calls) s = finish(s, c.id, a.at);
      return {
        ...s,
        ...sessionScoped(),
        session: a.session,
        connection: { state: a.session.connectionState, reason: null },
      };
    }
    case "settings":
      return { ...s, settings: a.settings };
    case "preferences":
      return s.settings ? { ...s, settings: { ...s.settings, preferences: a.preferences } } : s;
    case "navigate":
      return { ...s, view: a.view, completion: null };
    case "address":
      return { ...s, address: a.value };
    case "completion":
      return { ...s, completion: a.completion };
    case "focusCall":
      return { ...s, focusedCallId: a.callId };
    case "keypad":
      return { ...s, keypadCallId: a.callId, focusedCallId: a.callId ?? s.focusedCallId };
    case "tick":
      return { ...s, now: a.now };
    case "historyLoaded": {
      // Entries written before the load finished stay on top.
      const ids = new Set(s.history.map((h) => h.id));
      return { ...s, history: [...s.history, ...a.entries.filter((h) => !ids.has(h.id))].slice(0, HISTORY_LIMIT) };
    }
    case "clearHistory":
      return { ...s, history: [] };
    case "transferOpen": {
      const others = visibleCalls(s).filter((c) => c.id !== a.callId && isEstablished(c));
      return {
        ...s,
        completion: null,
        transfer: {
          callId: a.callId,
          party: (() => {
            const c = findCall(s, a.callId);
            return c ? callLabel(s, c) : "";
          })(),
          mode: "person",
          target: "",
          ringOnly: s.settings?.preferences.ringOnlyTarget ?? false,
          selectedCallId: others.length === 1 ? (others[0]?.id ?? null) : null,
          consultTarget: "",
          consultCallId: null,
          transferId: null,
          busy: false,
          apiError: null,
          missingTarget: false,
        },
      };
    }
    case "transferEdit":
      return s.transfer ? { ...s, transfer: { ...s.transfer, ...a.patch } } : s;
    case "transferClose":
      return { ...s, transfer: null, completion: null };
    case "transferStarted": {
      const prev = s.transfers[a.transferId];
      const record: TransferRecord = {
        id: a.transferId,
        callId: a.callId,
        target: a.target,
        state: prev?.state ?? "Transferring",
        error: prev?.error ?? null,
      };
      s = { ...s, transfers: { ...s.transfers, [a.transferId]: record } };
      if (record.state === "Transferred") s = updateCall(s, a.callId, (c) => ({ ...c, transferredTo: a.target }));
      if (s.transfer && s.transfer.callId === a.callId) s = { ...s, transfer: { ...s.transfer, transferId: a.transferId, busy: false } };
      return prev ? s : announceTransfer(s, record);
    }
    case "consentDone":
      return { ...s, consents: s.consents.filter((c) => c.transferId !== a.transferId) };
    case "voicemail":
      return { ...s, voicemail: a.messages };
    case "playing":
      return { ...s, playing: a.id };
    case "rules":
      return { ...s, rules: a.rules };
    case "notice":
      return { ...s, notice: a.notice };
    case "systemDark":
      return { ...s, systemDark: a.dark };
  }
}

export type Listener = (s: State, prev: State) => void;

export class Store {
  private listeners: Listener[] = [];
  constructor(public state: State) {}

  dispatch(a: Action): void {
    const prev = this.state;
    this.state = apply(prev, a);
    if (this.state !== prev) for (const l of this.listeners) l(this.state, prev);
  }

  subscribe(l: Listener): () => void {
    this.listeners.push(l);
    return () => {
      this.listeners = this.listeners.filter((x) => x !== l);
    };
  }
}
