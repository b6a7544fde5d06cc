import { afterEach, describe, expect, it } from "vitest";
import { demoSession } from "./fake-backend";
import { connectedCall, last, setup, type Harness } from "./test-helpers";

/** The account view's fields for a private authority and a TURN relay, all unset. */
const NO_EXTRAS = { hasTlsCa: false, turnServer: null, turnUser: null, hasTurnPassword: false, relayOnly: false };

let h: Harness;
afterEach(() => h.dispose());

describe("start-up and calls view", () => {
  it("asks for the session and settings and shows the directory with role descriptions", async () => {
    h = await setup();
    expect(h.fake.calls.map((c) => c.name).slice(0, 2).sort(), "start-up reads session and settings").toEqual(["session", "settings"]);
    expect(h.$("contact-carol").textContent, "each contact says what it does").toContain("Never answers; forwards to voicemail");
    await h.click("call-contact-echo");
    expect(last(h.fake.executed), "the contact's Call button calls the user").toEqual({ command: "startCall", target: "echo" });
  });

  it("shows each call's state, party and timer, with accessible controls", async () => {
    h = await setup();
    for (const e of connectedCall("c1", "sip:alice@demo.hookflash")) h.emit(e);
    h.clock.now += 5_000;
    h.app.store.dispatch({ type: "tick", now: h.clock.now });
    await h.flush();
    const item = h.$("call-item");
    expect(item.dataset.state, "data-state carries the CallState").toBe("Connected");
    expect(item.dataset.remote, "data-remote carries the party address").toBe("sip:alice@demo.hookflash");
    expect(h.$("call-party", item).textContent, "the party is named from the directory").toBe("Alice");
    expect(h.$("call-timer", item).textContent, "the timer counts from Connected").toBe("00:05");
    for (const b of Array.from(document.querySelectorAll("button"))) {
      const name = (b.getAttribute("aria-label") ?? b.textContent ?? "").trim();
      expect(name.length > 0, `every button needs an accessible name: ${b.outerHTML.slice(0, 80)}`).toBe(true);
    }
    expect(h.$("live-region").getAttribute("aria-live"), "the live region is polite").toBe("polite");
    expect(h.$("live-region").textContent, "call state changes are announced").toContain("Call with Alice: Connected");
    expect(h.fake.executed.some((c) => c.command === "startMicrophoneLevelMeter"), "the level meter runs while a call is connected").toBe(true);
    h.emit({ event: "microphoneLevelChanged", level: 0.42 });
    await h.flush();
    expect(h.$("level-meter").dataset.level, "the meter shows the level").toBe("0.42");
  });

  it("accepts and declines incoming calls from the panel", async () => {
    h = await setup();
    h.emit({ event: "callsUpdated", added: [{ id: "in1", direction: "incoming", remote: "sip:bob@demo.hookflash" }], removed: [] });
    h.emit({ event: "incomingCall", callId: "in1", callerInfo: { identifier: "sip:bob@demo.hookflash", displayName: null }, called: "sip:me@x" });
    await h.flush();
    expect(h.$("incoming-caller").textContent, "without a display name the directory name is used").toBe("Bob");
    await h.click("incoming-accept");
    expect(last(h.fake.executed), "Accept answers the call").toEqual({ command: "accept", callId: "in1" });
    await h.click("incoming-decline");
    expect(last(h.fake.executed), "Decline rejects it").toEqual({ command: "reject", callId: "in1" });
  });

  it("fills and focuses the address field on a dial request", async () => {
    h = await setup();
    await h.click("nav-history");
    h.fake.dial({ address: "sip:carol@demo.hookflash", call: false });
    await h.flush();
    expect(h.$("nav-calls").getAttribute("aria-current"), "the Calls view opens").toBe("page");
    expect((h.$("address-input") as HTMLInputElement).value, "the address is filled in").toBe("sip:carol@demo.hookflash");
    expect(document.activeElement, "and focused").toBe(h.$("address-input"));
  });

  it("fills the address field at start-up from a link that opened the app", async () => {
    h = await setup((f) => (f.pendingDial = "sip:carol@demo.hookflash"));
    await h.flush();
    expect(h.fake.calls.filter((c) => c.name === "takePendingDial").length, "the pending link is asked for once").toBe(1);
    expect(h.$("nav-calls").getAttribute("aria-current"), "the Calls view is shown").toBe("page");
    expect((h.$("address-input") as HTMLInputElement).value, "the address is filled in as for dialRequested").toBe("sip:carol@demo.hookflash");
    expect(document.activeElement, "and focused").toBe(h.$("address-input"));
    expect(h.fake.executed.some((c) => c.command === "startCall"), "a pending link only fills the field, it does not call").toBe(false);
  });

  it("leaves the address field empty when no link is pending", async () => {
    h = await setup();
    await h.flush();
    expect(h.fake.calls.some((c) => c.name === "takePendingDial"), "start-up asks for a pending link").toBe(true);
    expect((h.$("address-input") as HTMLInputElement).value, "nothing is filled in").toBe("");
  });

  it("says why sign-in could not start and opens Settings, where Use demo recovers", async () => {
    h = await setup((f) => {
      f.settingsValue.account = { server: "nowhere.invalid:5060", domain: "nowhere.invalid", transport: "udp", user: "ann", displayName: null, credential: "password", hasSecret: true, mediaProfiles: ["webrtc", "sdes", "rtp"], ...NO_EXTRAS };
      f.sessionError = { code: "transport.failed", message: 'The server "nowhere.invalid:5060" could not be found: check its name and port.' };
    });
    await h.flush();
    const notice = h.$("notice").textContent ?? "";
    expect(notice, "the notice says sign-in failed, in the user's words").toContain("Could not sign in: The network connection failed");
    expect(notice, "it carries the backend's explanation").toContain("could not be found");
    expect(notice, "and the code").toContain("(transport.failed)");
    expect(h.$("nav-settings").getAttribute("aria-current"), "Settings opens so the account can be fixed").toBe("page");
    expect((h.$("settings-server") as HTMLInputElement).value, "the failing account is there to correct").toBe("nowhere.invalid:5060");
    expect(h.app.store.state.session, "there is no session").toBeNull();
    await h.click("settings-use-demo");
    expect(h.app.store.state.session?.server, "Use demo gives a session").toBe("demo");
    expect(h.$("connection-banner").dataset.state, "and the banner shows it connected").toBe("connected");
  });

  it("replaces the session on sessionChanged and clears the old session's calls", async () => {
    h = await setup();
    for (const e of connectedCall("c1", "sip:alice@demo.hookflash")) h.emit(e);
    await h.flush();
    expect(h.$$("call-item").length, "a call of the demo session is shown").toBe(1);
    h.fake.changeSession({
      ...demoSession(),
      user: "ann",
      displayName: "Ann",
      domain: "example.com",
      server: "remote",
      connectionState: "Disconnected",
      mailbox: false,
      directory: [{ user: "zoe", displayName: "Zoe", role: "talker" }],
    });
    await h.flush();
    const s = h.app.store.state;
    expect(h.$$("call-item").length, "the old session's calls are gone").toBe(0);
    expect(s.session?.user, "the user is the new one").toBe("ann");
    expect(h.$$("contact-alice").length, "the old directory is gone").toBe(0);
    expect(h.$$("contact-zoe").length, "the new directory is shown").toBe(1);
    expect(h.$("connection-banner").dataset.state, "the connection state is the new session's").toBe("disconnected");
    expect(h.fake.storedHistory.map((e) => e.id), "the call that ended with the old session is in the history").toEqual(["c1"]);
    await h.click("nav-voicemail");
    expect(h.$$("voicemail-list").length, "the new session has no mailbox, so no voicemail list").toBe(0);
    expect(h.fake.calls.filter((c) => c.name === "settings").length, "the settings are read again for the new session").toBe(2);
  });

  it("shows the voicemail badge from messageWaiting", async () => {
    h = await setup();
    h.emit({ event: "messageWaiting", account: "me", newMessages: 2, oldMessages: 0 });
    await h.flush();
    expect(h.$("voicemail-badge").textContent, "the badge counts new messages").toBe("2");
  });
});

describe("voicemail and settings", () => {
  it("lists, plays, marks heard and deletes messages; saves forwarding rules", async () => {
    h = await setup((f) => (f.messages = [{ id: "m1", caller: "sip:alice@demo.hookflash", created: 1_700_000_000, durationMs: 12_000, heard: false }]));
    await h.click("nav-voicemail");
    const m = h.$("voicemail-message");
    expect(m.dataset.heard, "a new message is marked new").toBe("false");
    expect(m.textContent, "created is read as seconds since the epoch (14 Nov 2023)").toContain("2023");
    await h.click("voicemail-play");
    expect(last(h.fake.calls), "Play asks the backend to play it").toEqual({ name: "playVoicemail", args: ["m1"] });
    await h.click("voicemail-heard");
    expect(h.$("voicemail-message").dataset.heard, "after marking it heard the list is refreshed").toBe("true");
    (document.querySelector("[data-testid=rule-busy-mode]") as HTMLSelectElement).value = "voicemail";
    const after = document.querySelector("[data-testid=rule-noAnswer-mode]") as HTMLSelectElement;
    after.value = "person";
    (document.querySelector("[data-testid=rule-noAnswer-to]") as HTMLInputElement).value = "carol";
    await h.click("rules-save");
    expect(h.fake.rules, "the rules form is saved as Rules").toEqual({ always: null, busy: { to: "voicemail" }, noAnswer: { after: 20, to: "carol" } });
    await h.click("voicemail-delete");
    expect(h.$$("voicemail-message").length, "a deleted message disappears").toBe(0);
  });

  it("applies language and theme at once and saves them", async () => {
    h = await setup();
    await h.click("nav-settings");
    expect(h.fake.executed.map((c) => c.command), "Settings asks for devices and audio processing").toEqual(
      expect.arrayContaining(["getMicrophones", "getSpeakers", "getAudioProcessing", "startMicrophoneLevelMeter"]),
    );
    const lang = h.$("settings-language") as HTMLSelectElement;
    lang.value = "zh";
    lang.dispatchEvent(new Event("change"));
    await h.flush();
    expect(document.documentElement.lang, "<html lang> switches to Chinese").toBe("zh-Hans");
    expect(h.$("nav-settings").textContent, "the UI is in Chinese").toContain("设置");
    const theme = h.$("settings-theme") as HTMLSelectElement;
    theme.value = "dark";
    theme.dispatchEvent(new Event("change"));
    await h.flush();
    expect(document.documentElement.dataset.theme, "the dark theme applies at once").toBe("dark");
    expect(h.fake.settingsValue.preferences, "preferences are saved").toEqual({ language: "zh", theme: "dark", ringOnlyTarget: false });
  });

  it("never prefills the secret and keeps the stored one when left empty", async () => {
    h = await setup((f) => {
      f.settingsValue.account = { server: "sip.example.com:5060", domain: "example.com", transport: "tcp", user: "ann", displayName: null, credential: "password", hasSecret: true, mediaProfiles: ["webrtc", "sdes", "rtp"], ...NO_EXTRAS };
    });
    await h.click("nav-settings");
    const secret = h.$("settings-secret") as HTMLInputElement;
    expect(secret.value, "the secret is never shown").toBe("");
    expect(secret.placeholder, "but the user sees one is saved").toBe("saved");
    await h.click("settings-save-account");
    const saved = h.fake.calls.find((c) => c.name === "saveAccount")?.args[0];
    expect(saved, "an empty secret is sent as null (keep)").toEqual({ server: "sip.example.com:5060", domain: "example.com", transport: "tcp", user: "ann", displayName: null, secret: null, mediaProfiles: ["webrtc", "sdes", "rtp"], tlsCa: null, turnServer: null, turnUser: null, turnPassword: null, relayOnly: false });
  });

  it("offers TLS and WebSocket transports, shows the saved one and saves the chosen one", async () => {
    h = await setup((f) => {
      f.settingsValue.account = { server: "sip.example.com:5061", domain: "example.com", transport: "tls", user: "ann", displayName: null, credential: "password", hasSecret: true, mediaProfiles: ["webrtc", "sdes", "rtp"], ...NO_EXTRAS };
    });
    await h.click("nav-settings");
    const select = h.$("settings-transport") as HTMLSelectElement;
    expect([...select.options].map((o) => o.value), "every transport the agent speaks is offered").toEqual(["udp", "tcp", "tls", "ws", "wss"]);
    expect(select.value, "the saved TLS account shows TLS, not a fallback to UDP").toBe("tls");
    select.value = "wss";
    await h.click("settings-save-account");
    const saved = h.fake.calls.find((c) => c.name === "saveAccount")?.args[0] as { transport: string };
    expect(saved.transport, "the chosen secure WebSocket is what is saved").toBe("wss");
  });

  it("trusts an authority file the user chooses, and can stop trusting it", async () => {
    h = await setup((f) => {
      f.settingsValue.account = { server: "sip.corp.example:5061", domain: "corp.example", transport: "tls", user: "ann", displayName: null, credential: "password", hasSecret: true, mediaProfiles: ["webrtc", "sdes", "rtp"], ...NO_EXTRAS };
    });
    await h.click("nav-settings");
    expect(h.$("settings-tls-ca-state").textContent, "without one, the field says what it is for").toContain("your organisation's own authority");
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const input = h.$("settings-tls-ca") as HTMLInputElement;
    Object.defineProperty(input, "files", { value: [new File([pem], "corp-ca.pem", { type: "application/x-pem-file" })] });
    await h.click("settings-save-account");
    await h.flush();
    const saved = h.fake.calls.find((c) => c.name === "saveAccount")?.args[0] as { tlsCa: string | null };
    expect(saved.tlsCa, "the file's text goes to the backend, which checks and keeps it").toBe(pem);

    h.dispose();
    h = await setup((f) => {
      f.settingsValue.account = { server: "sip.corp.example:5061", domain: "corp.example", transport: "tls", user: "ann", displayName: null, credential: "password", hasSecret: true, mediaProfiles: ["webrtc", "sdes", "rtp"], ...NO_EXTRAS, hasTlsCa: true };
    });
    await h.click("nav-settings");
    expect(h.$("settings-tls-ca-state").textContent, "a saved authority is said to be trusted").toContain("is trusted");
    await h.click("settings-save-account");
    const kept = h.fake.calls.find((c) => c.name === "saveAccount")?.args[0] as { tlsCa: string | null };
    expect(kept.tlsCa, "saving without choosing a file keeps it (null)").toBeNull();
    (h.$("settings-tls-ca-remove") as HTMLInputElement).checked = true;
    h.fake.calls.length = 0;
    await h.click("settings-save-account");
    const removed = h.fake.calls.find((c) => c.name === "saveAccount")?.args[0] as { tlsCa: string | null };
    expect(removed.tlsCa, "ticking stop-trusting sends an empty text, which removes it").toBe("");
  });

  it("sets a TURN relay, never shows its saved password, and sends relay-only", async () => {
    h = await setup((f) => {
      f.settingsValue.account = { server: "sip.example.com:5060", domain: "example.com", transport: "udp", user: "ann", displayName: null, credential: "password", hasSecret: true, mediaProfiles: ["webrtc", "sdes", "rtp"], ...NO_EXTRAS, turnServer: "turn:turn.example.com:3478", turnUser: "ann-relay", hasTurnPassword: true };
    });
    await h.click("nav-settings");
    expect((h.$("settings-turn-server") as HTMLInputElement).value, "the saved relay is shown").toBe("turn:turn.example.com:3478");
    const password = h.$("settings-turn-password") as HTMLInputElement;
    expect(password.value, "its password is never shown").toBe("");
    expect(password.placeholder, "but the user sees one is saved").toBe("saved");
    (h.$("settings-relay-only") as HTMLInputElement).checked = true;
    await h.click("settings-save-account");
    const saved = h.fake.calls.find((c) => c.name === "saveAccount")?.args[0] as { turnServer: string; turnUser: string; turnPassword: string | null; relayOnly: boolean };
    expect(saved, "relay, its user, the saved password kept (null) and relay-only").toMatchObject({ turnServer: "turn:turn.example.com:3478", turnUser: "ann-relay", turnPassword: null, relayOnly: true });
  });

  it("lets the user choose how call audio travels, and keeps the order most protected first", async () => {
    h = await setup((f) => {
      f.settingsValue.account = { server: "pbx.example.com:5060", domain: "example.com", transport: "udp", user: "ann", displayName: null, credential: "password", hasSecret: true, mediaProfiles: ["webrtc", "rtp"], ...NO_EXTRAS };
    });
    await h.click("nav-settings");
    const box = (p: string) => h.$(`settings-media-${p}`) as HTMLInputElement;
    expect([box("webrtc").checked, box("sdes").checked, box("rtp").checked], "the saved policy is shown").toEqual([true, false, true]);
    box("webrtc").checked = false;
    box("sdes").checked = true;
    await h.click("settings-save-account");
    const saved = h.fake.calls.find((c) => c.name === "saveAccount")?.args[0] as { mediaProfiles: string[] };
    expect(saved.mediaProfiles, "an encrypted desk-phone setup: SRTP first, plain RTP as the fallback").toEqual(["sdes", "rtp"]);
  });
});
