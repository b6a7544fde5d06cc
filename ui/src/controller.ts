// Side effects: turns user intentions into backend commands and their results into actions.

import type { Backend, Result } from "./backend";
import type { AccountInput, ApiError, Command, CoreEvent, ForwardingRules, Preferences, SessionInfo } from "./bindings";
import { partyLabel } from "./address";
import { errorKey } from "./error-codes";
import { translator, type Translator } from "./i18n";
import {
  activeCall,
  callLabel,
  findCall,
  isEstablished,
  uiLocale,
  visibleCalls,
  type State,
  type Store,
  type TransferMode,
  type View,
} from "./store";
import { text } from "./text";

export const DTMF_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"] as const;

export function apiErrorText(e: ApiError) {
  return text("notice.error", { message: text(errorKey(e.code)), code: e.code });
}

/** Reads a file as base64 (no data: prefix). */
export function fileToBase64(file: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onerror = () => reject(r.error ?? new Error("read failed"));
    r.onload = () => {
      const url = String(r.result);
      resolve(url.slice(url.indexOf(",") + 1));
    };
    r.readAsDataURL(file);
  });
}

export class Controller {
  private meterOn = false;

  constructor(
    private readonly store: Store,
    private readonly backend: Backend,
    private readonly now: () => number,
  ) {}

  get state(): State {
    return this.store.state;
  }

  get t(): Translator {
    return translator(uiLocale(this.state));
  }

  private fail(e: ApiError): void {
    this.store.dispatch({ type: "notice", notice: apiErrorText(e) });
  }

  private ok<T>(r: Result<T, ApiError>): r is { status: "ok"; data: T } {
    if (r.status === "error") this.fail(r.error);
    return r.status === "ok";
  }

  /** Runs a core command; failures become a notice. Returns the id, or undefined on failure. */
  async exec(command: Command, quiet = false): Promise<string | null | undefined> {
    const r = await this.backend.commands.execute(command);
    if (r.status === "error") {
      if (!quiet) this.fail(r.error);
      return undefined;
    }
    return r.data;
  }

  // ---- navigation and start-up ----

  async start(): Promise<void> {
    const both = Promise.all([this.backend.commands.session(), this.backend.commands.settings()]);
    // The history does not wait for the session (which waits for the sign-in).
    const history = this.loadHistory();
    const [session, settings] = await both;
    this.store.dispatch({ type: "settings", settings });
    if (session.status === "ok") this.store.dispatch({ type: "session", session: session.data });
    // A session that came meanwhile (Use demo, sessionChanged) wins over a failed start.
    else if (!this.state.session) this.signInFailed(session.error);
    await history;
  }

  private async loadHistory(): Promise<void> {
    try {
      const entries = await this.backend.commands.history();
      this.store.dispatch({ type: "historyLoaded", entries });
    } catch {
      // No history yet or unreadable: start empty.
    }
  }

  /** Sign-in could not start (an unknown server, a refused credential): say so and open Settings. */
  private signInFailed(e: ApiError): void {
    this.store.dispatch({
      type: "notice",
      notice: text("notice.signInFailed", { reason: text(errorKey(e.code)), message: e.message, code: e.code }),
    });
    this.navigate("settings");
  }

  /** `sessionChanged`: another account, the demo, or a sign-in elsewhere replaced the session. */
  async sessionChanged(session: SessionInfo): Promise<void> {
    this.store.dispatch({ type: "sessionChanged", session, at: this.now() });
    this.store.dispatch({ type: "settings", settings: await this.backend.commands.settings() });
    if (this.state.view === "voicemail" && session.mailbox) await this.loadVoicemail();
  }

  /** Keeps the call history on the Rust side; a failed save is not worth a notice each call. */
  async saveHistory(entries: State["history"]): Promise<void> {
    try {
      await this.backend.commands.saveHistory(entries);
    } catch {
      // The next change saves the whole list again.
    }
  }

  /** A core event from the backend: into the store, then whatever it calls for. */
  coreEvent(event: CoreEvent): void {
    this.store.dispatch({ type: "core", event, at: this.now() });
    // A new (or heard elsewhere) message: the list on screen was loaded when the view opened.
    if (event.event === "messageWaiting" && this.state.view === "voicemail" && this.state.session?.mailbox) {
      void this.refreshMessages();
    }
  }

  navigate(view: View): void {
    this.store.dispatch({ type: "navigate", view });
    if (view === "voicemail" && this.state.session?.mailbox) void this.loadVoicemail();
    if (view === "settings") {
      void this.exec({ command: "getMicrophones" }, true);
      void this.exec({ command: "getSpeakers" }, true);
      void this.exec({ command: "getAudioProcessing" }, true);
    }
    this.syncMeter();
  }

  /** Keep the microphone level meter running while a call is connected or Settings is open. */
  syncMeter(): void {
    const want = this.state.view === "settings" || visibleCalls(this.state).some((c) => c.state === "Connected");
    if (want === this.meterOn) return;
    this.meterOn = want;
    void this.exec({ command: want ? "startMicrophoneLevelMeter" : "stopMicrophoneLevelMeter" }, true);
  }

  dismissNotice(): void {
    this.store.dispatch({ type: "notice", notice: null });
  }

  // ---- dialling ----

  setCompletionState(completion: State["completion"]): void {
    this.store.dispatch({ type: "completion", completion });
  }

  setAddress(value: string): void {
    this.store.dispatch({ type: "address", value });
  }

  async call(target?: string): Promise<void> {
    const to = (target ?? this.state.address).trim();
    if (!to) return;
    const id = await this.exec({ command: "startCall", target: to });
    if (id === undefined) return;
    if (target === undefined) this.setAddress("");
    if (id) this.store.dispatch({ type: "focusCall", callId: id });
  }

  /** A dial-pad key: tones into the connected call, else a character in the address field. */
  pressKey(key: string): void {
    const call = activeCall(this.state);
    if (call && call.state === "Connected") {
      void this.dtmf(call.id, key);
      return;
    }
    this.setAddress(this.state.address + key);
    void this.exec({ command: "playKeyTone", tones: key }, true);
  }

  /** DTMF into a call; the core plays the local key tone itself. */
  async dtmf(callId: string, key: string): Promise<void> {
    await this.exec({ command: "sendDtmf", callId, tones: key });
  }

  // ---- call controls ----

  focusCall(callId: string): void {
    if (this.state.focusedCallId !== callId) this.store.dispatch({ type: "focusCall", callId });
  }

  accept(callId: string): Promise<unknown> {
    this.store.dispatch({ type: "focusCall", callId });
    return this.exec({ command: "accept", callId });
  }

  decline(callId: string): Promise<unknown> {
    return this.exec({ command: "reject", callId });
  }

  hangUp(callId: string): Promise<unknown> {
    return this.exec({ command: "hangUp", callId });
  }

  toggleMute(callId: string): Promise<unknown> {
    const c = findCall(this.state, callId);
    if (!c) return Promise.resolve();
    return this.exec({ command: c.muted ? "unmute" : "mute", callId });
  }

  toggleHold(callId: string): Promise<unknown> {
    const c = findCall(this.state, callId);
    if (!c) return Promise.resolve();
    return this.exec({ command: c.state === "LocalHold" ? "resume" : "hold", callId });
  }

  toggleKeypad(callId: string): void {
    this.store.dispatch({ type: "keypad", callId: this.state.keypadCallId === callId ? null : callId });
  }

  // ---- transfer ----

  openTransfer(callId?: string): void {
    const c = callId ? findCall(this.state, callId) : activeCall(this.state);
    if (!c || !isEstablished(c) || this.state.transfer) return;
    this.store.dispatch({ type: "transferOpen", callId: c.id });
  }

  closeTransfer(): void {
    this.store.dispatch({ type: "transferClose" });
  }

  editTransfer(patch: Partial<NonNullable<State["transfer"]>>): void {
    this.store.dispatch({ type: "transferEdit", patch });
  }

  setTransferMode(mode: TransferMode): void {
    this.editTransfer({ mode, apiError: null, missingTarget: false });
  }

  private async runTransfer(command: Command & { command: "transfer" }, label: string): Promise<void> {
    this.editTransfer({ busy: true, apiError: null, missingTarget: false });
    const r = await this.backend.commands.execute(command);
    if (r.status === "error") {
      this.editTransfer({ busy: false, apiError: r.error });
      return;
    }
    this.store.dispatch({ type: "transferStarted", transferId: r.data ?? `transfer:${command.callId}`, callId: command.callId, target: label });
  }

  async submitTransfer(): Promise<void> {
    const d = this.state.transfer;
    if (!d || d.busy) return;
    const s = this.state;
    if (d.mode === "call") {
      const targetCallId = d.consultCallId ?? d.selectedCallId;
      const other = findCall(s, targetCallId);
      if (!targetCallId || !other) {
        this.editTransfer({ missingTarget: true });
        return;
      }
      await this.runTransfer({ command: "transfer", callId: d.callId, targetCallId }, callLabel(s, other));
      return;
    }
    const target = d.target.trim();
    if (!target) {
      this.editTransfer({ missingTarget: true });
      return;
    }
    const name = partyLabel(target, s.session);
    if (d.mode === "voicemail") {
      await this.runTransfer(
        { command: "transfer", callId: d.callId, targetParticipantVoicemail: target },
        this.t("transfer.voicemailOf", { name }),
      );
    } else {
      await this.runTransfer(
        { command: "transfer", callId: d.callId, targetParticipant: target, disableForwardingAndUnanswered: d.ringOnly },
        name,
      );
    }
  }

  /** Attended transfer without another call: hold this one and call the target first. */
  async startConsult(): Promise<void> {
    const d = this.state.transfer;
    if (!d || d.busy) return;
    const target = d.consultTarget.trim();
    if (!target) {
      this.editTransfer({ missingTarget: true });
      return;
    }
    this.editTransfer({ busy: true, apiError: null, missingTarget: false });
    const original = findCall(this.state, d.callId);
    if (original && original.state !== "LocalHold") {
      const held = await this.backend.commands.execute({ command: "hold", callId: d.callId });
      if (held.status === "error") {
        this.editTransfer({ busy: false, apiError: held.error });
        return;
      }
    }
    const r = await this.backend.commands.execute({ command: "startCall", target });
    if (r.status === "error") {
      this.editTransfer({ busy: false, apiError: r.error });
      void this.exec({ command: "resume", callId: d.callId }, true);
      return;
    }
    this.editTransfer({ busy: false, consultCallId: r.data });
  }

  completeTransfer(): Promise<void> {
    return this.submitTransfer();
  }

  resume(callId: string): Promise<unknown> {
    return this.exec({ command: "resume", callId });
  }

  async consent(transferId: string, accept: boolean): Promise<void> {
    const c = this.state.consents.find((x) => x.transferId === transferId);
    if (!c) return;
    this.store.dispatch({ type: "consentDone", transferId });
    await this.exec({ command: accept ? "acceptTransfer" : "rejectTransfer", callId: c.callId, transferId });
  }

  // ---- history ----

  clearHistory(): void {
    this.store.dispatch({ type: "clearHistory" });
  }

  // ---- voicemail ----

  async loadVoicemail(): Promise<void> {
    const [m, rules] = await Promise.all([this.backend.commands.voicemail(), this.backend.commands.forwardingRules()]);
    if (this.ok(m)) this.store.dispatch({ type: "voicemail", messages: m.data });
    if (this.ok(rules)) this.store.dispatch({ type: "rules", rules: rules.data });
  }

  async playVoicemail(id: string): Promise<void> {
    if (this.state.playing === id) {
      this.store.dispatch({ type: "playing", id: null });
      this.ok(await this.backend.commands.stopPlayback());
      return;
    }
    this.store.dispatch({ type: "playing", id });
    if (!this.ok(await this.backend.commands.playVoicemail(id))) this.store.dispatch({ type: "playing", id: null });
  }

  async markHeard(id: string): Promise<void> {
    if (this.ok(await this.backend.commands.markVoicemailHeard(id))) await this.refreshMessages();
  }

  async deleteVoicemail(id: string): Promise<void> {
    if (this.ok(await this.backend.commands.deleteVoicemail(id))) await this.refreshMessages();
  }

  private async refreshMessages(): Promise<void> {
    const m = await this.backend.commands.voicemail();
    if (this.ok(m)) this.store.dispatch({ type: "voicemail", messages: m.data });
  }

  async uploadGreeting(file: Blob): Promise<void> {
    const b64 = await fileToBase64(file);
    if (this.ok(await this.backend.commands.uploadGreeting(b64)))
      this.store.dispatch({ type: "notice", notice: text("voicemail.greetingUploaded") });
  }

  async resetGreeting(): Promise<void> {
    if (this.ok(await this.backend.commands.resetGreeting()))
      this.store.dispatch({ type: "notice", notice: text("voicemail.greetingWasReset") });
  }

  async saveRules(rules: ForwardingRules): Promise<void> {
    const r = await this.backend.commands.setForwardingRules(rules);
    if (this.ok(r)) {
      this.store.dispatch({ type: "rules", rules: r.data });
      this.store.dispatch({ type: "notice", notice: text("voicemail.rulesSaved") });
    }
  }

  // ---- settings ----

  async savePreferences(patch: Partial<Preferences>): Promise<void> {
    const current = this.state.settings?.preferences ?? { language: "system", theme: "system", ringOnlyTarget: false };
    const preferences = { ...current, ...patch };
    this.store.dispatch({ type: "preferences", preferences });
    this.ok(await this.backend.commands.savePreferences(preferences));
  }

  async saveAccount(account: AccountInput): Promise<boolean> {
    const r = await this.backend.commands.saveAccount(account);
    if (!this.ok(r)) return false;
    this.store.dispatch({ type: "session", session: r.data });
    this.store.dispatch({ type: "settings", settings: await this.backend.commands.settings() });
    this.store.dispatch({ type: "notice", notice: text("settings.accountSaved") });
    return true;
  }

  async useDemo(): Promise<void> {
    const r = await this.backend.commands.useDemo();
    if (!this.ok(r)) return;
    this.store.dispatch({ type: "session", session: r.data });
    this.store.dispatch({ type: "settings", settings: await this.backend.commands.settings() });
  }

  async saveRingtone(file: File): Promise<void> {
    const b64 = await fileToBase64(file);
    if (this.ok(await this.backend.commands.saveRingtone(file.name, b64)))
      this.store.dispatch({ type: "notice", notice: text("settings.ringtoneSaved") });
  }
}
