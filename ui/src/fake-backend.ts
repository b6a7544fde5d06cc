// An in-memory Backend for tests: records every call, answers with canned results, and lets
// a test push core events, dial requests and session changes.

import type { Backend, Commands, EventSource, Result } from "./backend";
import type {
  ApiError,
  Command,
  CoreEvent,
  DialRequested,
  ForwardingRules,
  HistoryEntry,
  SessionChanged,
  SessionInfo,
  Settings,
  VoicemailMessage,
} from "./bindings";
import { HISTORY_LIMIT } from "./history";

export type Recorded = { name: keyof Commands; args: unknown[] };

export const demoSession = (): SessionInfo => ({
  user: "me",
  displayName: "Me",
  domain: "demo.hookflash",
  server: "demo",
  connectionState: "Connected",
  mailbox: true,
  directory: [
    { user: "alice", displayName: "Alice", role: "talker" },
    { user: "echo", displayName: "Echo", role: "echo" },
    { user: "bob", displayName: "Bob", role: "busy" },
    { user: "carol", displayName: "Carol", role: "noAnswer" },
    { user: "dave", displayName: "Dave", role: "transferrer" },
    { user: "voicemail", displayName: "Voicemail", role: "voicemail" },
  ],
});

export const demoSettings = (): Settings => ({
  account: null,
  preferences: { language: "en", theme: "system", ringOnlyTarget: false },
  systemLanguage: "en",
});

const ok = <T>(data: T): Result<T, ApiError> => ({ status: "ok", data });

/** Listeners of one event, with a way to push to them. */
class Channel<T> implements EventSource<T> {
  private listeners: ((e: { payload: T }) => void)[] = [];

  listen = (cb: (e: { payload: T }) => void): Promise<() => void> => {
    this.listeners.push(cb);
    return Promise.resolve(() => {
      this.listeners = this.listeners.filter((l) => l !== cb);
    });
  };

  push(payload: T): void {
    for (const l of this.listeners) l({ payload });
  }
}

export class FakeBackend implements Backend {
  calls: Recorded[] = [];
  sessionInfo: SessionInfo = demoSession();
  /** Set to make `session()` fail (sign-in could not start). */
  sessionError: ApiError | null = null;
  settingsValue: Settings = demoSettings();
  messages: VoicemailMessage[] = [];
  rules: ForwardingRules = { always: null, busy: null, noAnswer: null };
  /** The call history as the Rust side keeps it (newest first). */
  storedHistory: HistoryEntry[] = [];
  /** A link the app was started with; `takePendingDial` hands it out once. */
  pendingDial: string | null = null;
  private nextId = 1;
  private core = new Channel<CoreEvent>();
  private dialChannel = new Channel<DialRequested>();
  private sessionChannel = new Channel<SessionChanged>();
  /** Override to answer `execute` differently (return undefined for the default). */
  onExecute: (c: Command) => Result<string | null, ApiError> | undefined = () => undefined;

  /** The commands given to `execute`, in order. */
  get executed(): Command[] {
    return this.calls.filter((c) => c.name === "execute").map((c) => c.args[0] as Command);
  }

  /** Push a core event to the UI. */
  emit(e: CoreEvent): void {
    this.core.push(e);
  }

  dial(d: DialRequested): void {
    this.dialChannel.push(d);
  }

  /** The session was replaced (as after saveAccount/useDemo, or a sign-in elsewhere). */
  changeSession(session: SessionInfo): void {
    this.sessionInfo = session;
    this.sessionError = null;
    this.sessionChannel.push({ session });
  }

  private record<T>(name: keyof Commands, args: unknown[], value: T): Promise<T> {
    this.calls.push({ name, args });
    return Promise.resolve(value);
  }

  commands: Commands = {
    execute: (command: Command) => {
      const custom = this.onExecute(command);
      let answer: Result<string | null, ApiError> = ok(null);
      if (custom) answer = custom;
      else if (command.command === "startCall") answer = ok(`call-${this.nextId++}`);
      else if (command.command === "transfer") answer = ok(`transfer-${this.nextId++}`);
      else if ("callId" in command && command.callId !== undefined) answer = ok(command.callId);
      return this.record("execute", [command], answer);
    },
    session: () =>
      this.record("session", [], this.sessionError ? { status: "error", error: this.sessionError } : ok(this.sessionInfo)),
    takePendingDial: () => {
      const address = this.pendingDial;
      this.pendingDial = null;
      return this.record("takePendingDial", [], address);
    },
    settings: () => this.record("settings", [], this.settingsValue),
    saveAccount: (account) => {
      const session: SessionInfo = { ...this.sessionInfo, server: "remote", user: account.user, domain: account.domain, directory: [] };
      this.changeSession(session);
      return this.record("saveAccount", [account], ok(session));
    },
    useDemo: () => {
      this.changeSession(demoSession());
      return this.record("useDemo", [], ok(demoSession()));
    },
    savePreferences: (p) => {
      this.settingsValue = { ...this.settingsValue, preferences: p };
      return this.record("savePreferences", [p], ok(null));
    },
    history: () => this.record("history", [], this.storedHistory.map((h) => ({ ...h }))),
    saveHistory: (entries) => {
      this.storedHistory = entries.slice(0, HISTORY_LIMIT).map((h) => ({ ...h }));
      return this.record("saveHistory", [entries], ok(null));
    },
    voicemail: () => this.record("voicemail", [], ok(this.messages.map((m) => ({ ...m })))),
    playVoicemail: (id) => this.record("playVoicemail", [id], ok(null)),
    stopPlayback: () => this.record("stopPlayback", [], ok(null)),
    markVoicemailHeard: (id) => {
      this.messages = this.messages.map((m) => (m.id === id ? { ...m, heard: true } : m));
      return this.record("markVoicemailHeard", [id], ok(null));
    },
    deleteVoicemail: (id) => {
      this.messages = this.messages.filter((m) => m.id !== id);
      return this.record("deleteVoicemail", [id], ok(null));
    },
    forwardingRules: () => this.record("forwardingRules", [], ok(this.rules)),
    setForwardingRules: (rules) => {
      this.rules = rules;
      return this.record("setForwardingRules", [rules], ok(rules));
    },
    uploadGreeting: (b64) => this.record("uploadGreeting", [b64], ok(null)),
    saveRingtone: (name, b64) => this.record("saveRingtone", [name, b64], ok(null)),
    resetGreeting: () => this.record("resetGreeting", [], ok(null)),
  };

  events = {
    coreEvent: this.core,
    dialRequested: this.dialChannel,
    sessionChanged: this.sessionChannel,
  };
}
