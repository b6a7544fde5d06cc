// Problems found driving the app in a real window (WebKitGTK under Xvfb): each test is named
// for the behaviour that was missing.
import { afterEach, describe, expect, it } from "vitest";
import css from "./styles.css?raw";
import type { SessionInfo, VoicemailMessage } from "./bindings";
import { partyLabel } from "./address";
import { connectedCall, setup, type Harness } from "./test-helpers";

let h: Harness | undefined;
afterEach(() => {
  h?.dispose();
  h = undefined;
  document.head.innerHTML = "";
});

/** The demo switchboard's directory and domain, as the desktop app has them. */
const hookflashSession = (): SessionInfo => ({
  user: "me",
  displayName: "Me",
  domain: "hookflash.local",
  server: "demo",
  connectionState: "Connected",
  mailbox: true,
  directory: [
    { user: "ada", displayName: "Ada Lovelace", role: "talker" },
    { user: "echo", displayName: "Echo Test", role: "echo" },
    { user: "bob", displayName: "Bob Busy", role: "busy" },
    { user: "nora", displayName: "Nora Noanswer", role: "noAnswer" },
    { user: "theo", displayName: "Theo Transfer", role: "transferrer" },
    { user: "vera", displayName: "Vera's Voicemail", role: "voicemail" },
  ],
});

const message = (id: string): VoicemailMessage => ({ id, caller: "sip:nora@hookflash.local", created: 1_700_000_000, durationMs: 4_000, heard: false });

/** Theo calls us, then transfers us to Ada (we are the transferee). */
function transferredByTheo(x: Harness, transferorName: string | null): void {
  for (const e of connectedCall("c1", "sip:theo@hookflash.local", "incoming")) x.emit(e);
  x.emit({
    event: "transferRequested",
    callId: "c1",
    transferId: "t1",
    target: "sip:ada@hookflash.local",
    transferor: { identifier: "sip:theo@hookflash.local", displayName: transferorName },
    autoAccepted: true,
  });
  x.emit({ event: "transferAccepted", callId: "c1", transferId: "t1", targetCall: "c2" });
  for (const e of connectedCall("c2", "sip:ada@hookflash.local")) x.emit(e);
  x.emit({ event: "callStateChanged", callId: "c1", oldState: "Connected", state: "Disconnected", callEndReason: { code: 200, subCode: 1010 } });
  x.emit({ event: "callsUpdated", added: [], removed: ["c1"] });
}

describe("voicemail list follows messageWaiting", () => {
  it("reloads the open voicemail list when a messageWaiting event arrives", async () => {
    h = await setup((f) => (f.sessionInfo = hookflashSession()));
    await h.click("nav-voicemail");
    expect(h.$$("voicemail-message").length, "the mailbox starts empty").toBe(0);
    const loadsBefore = h.fake.calls.filter((c) => c.name === "voicemail").length;
    expect(loadsBefore, "opening the view loads the list, as before").toBe(1);
    h.fake.messages = [message("m1")];
    h.emit({ event: "messageWaiting", account: "me", newMessages: 1, oldMessages: 0 });
    await h.flush();
    expect(h.$("voicemail-badge").textContent, "the nav badge counts the new message").toBe("1");
    expect(h.fake.calls.filter((c) => c.name === "voicemail").length, "messageWaiting asks commands.voicemail() again").toBe(loadsBefore + 1);
    expect(h.$$("voicemail-message").map((m) => m.dataset.id), "the list shows the message that just arrived, not 'No messages'").toEqual(["m1"]);
  });

  it("does not load the voicemail list on messageWaiting while another view is shown", async () => {
    h = await setup((f) => (f.sessionInfo = hookflashSession()));
    h.emit({ event: "messageWaiting", account: "me", newMessages: 1, oldMessages: 0 });
    await h.flush();
    expect(h.fake.calls.filter((c) => c.name === "voicemail").length, "the list is loaded when its view opens, not in the background").toBe(0);
  });
});

describe("system language", () => {
  it("follows Settings.systemLanguage for the 'system' preference, and <html lang> with it", async () => {
    h = await setup((f) => {
      f.settingsValue = { ...f.settingsValue, preferences: { language: "system", theme: "system", ringOnlyTarget: false }, systemLanguage: "ko" };
    });
    await h.flush();
    expect(navigator.language.startsWith("ko"), "the web view's navigator.language is not Korean here").toBe(false);
    expect(document.documentElement.lang, "<html lang> follows the system language from the backend").toBe("ko");
    expect(h.$("nav-settings").textContent, "the UI is in the process locale's language (Korean)").toContain("설정");
  });

  it("falls back to navigator.language only when systemLanguage is 'system' or missing", async () => {
    h = await setup((f) => {
      f.settingsValue = { ...f.settingsValue, preferences: { language: "system", theme: "system", ringOnlyTarget: false }, systemLanguage: "system" };
    });
    await h.flush();
    expect(document.documentElement.lang, "without a system language, navigator.language (en in jsdom) decides").toBe("en");
  });

  it("lets an explicit language preference win over the system language", async () => {
    h = await setup((f) => {
      f.settingsValue = { ...f.settingsValue, preferences: { language: "zh", theme: "system", ringOnlyTarget: false }, systemLanguage: "ko" };
    });
    await h.flush();
    expect(document.documentElement.lang, "a chosen language is not overridden by the system's").toBe("zh-Hans");
  });
});

describe("a call we were transferred into says who transferred us", () => {
  it("shows 'Transferred by Theo Transfer' on the new call and in its history entry", async () => {
    h = await setup((f) => (f.sessionInfo = hookflashSession()));
    transferredByTheo(h, "Theo Transfer");
    await h.flush();
    const items = h.$$("call-item");
    expect(items.map((i) => i.dataset.callId), "the call to Ada took the original call's place").toEqual(["c2"]);
    expect(h.$("call-party").textContent, "the new call is with Ada, by her directory name").toBe("Ada Lovelace");
    expect(h.$("call-transferred-by").textContent?.trim(), "the call item says who transferred us").toBe("Transferred by Theo Transfer");
    h.emit({ event: "callStateChanged", callId: "c2", oldState: "Connected", state: "Disconnected", callEndReason: { code: 200, subCode: 1001 } });
    h.emit({ event: "callsUpdated", added: [], removed: ["c2"] });
    await h.flush();
    const entry = h.fake.storedHistory.find((e) => e.id === "c2");
    expect(entry?.transferredBy, "the history entry keeps the transferor").toBe("Theo Transfer");
    await h.click("nav-history");
    const titles = h.$$("history-title").map((x) => x.textContent);
    expect(titles, "history reads 'Ada Lovelace, transferred by Theo Transfer'").toContain("Ada Lovelace, transferred by Theo Transfer");
  });

  it("names the transferor from its address when the REFER gave no display name", async () => {
    h = await setup((f) => (f.sessionInfo = hookflashSession()));
    transferredByTheo(h, null);
    await h.flush();
    expect(h.$("call-transferred-by").textContent?.trim(), "the directory names the transferor's address").toBe("Transferred by Theo Transfer");
  });

  it("keeps the transferor when the new call is announced after transferAccepted", async () => {
    h = await setup((f) => (f.sessionInfo = hookflashSession()));
    for (const e of connectedCall("c1", "sip:someone@elsewhere.example", "incoming")) h.emit(e);
    h.emit({
      event: "transferRequested",
      callId: "c1",
      transferId: "t1",
      target: "sip:ada@hookflash.local",
      transferor: { identifier: "sip:someone@elsewhere.example", displayName: null },
      autoAccepted: true,
    });
    h.emit({ event: "transferAccepted", callId: "c1", transferId: "t1", targetCall: "c2" });
    await h.flush();
    expect(h.$$("call-transferred-by").length, "nothing to say before the new call exists").toBe(0);
    for (const e of connectedCall("c2", "sip:ada@hookflash.local")) h.emit(e);
    await h.flush();
    expect(h.$("call-transferred-by").textContent?.trim(), "outside the directory the identifier is used").toBe("Transferred by someone@elsewhere.example");
  });

  it("translates 'Transferred by' into Korean and Chinese", async () => {
    for (const [language, expected] of [
      ["ko", "Theo Transfer님이 돌려준 전화"],
      ["zh", "由 Theo Transfer 转接"],
    ] as const) {
      h = await setup((f) => {
        f.sessionInfo = hookflashSession();
        f.settingsValue = { ...f.settingsValue, preferences: { language, theme: "system", ringOnlyTarget: false } };
      });
      transferredByTheo(h, "Theo Transfer");
      await h.flush();
      expect(h.$("call-transferred-by").textContent?.trim(), `the transferred-by line is translated (${language})`).toBe(expected);
      h.dispose();
      h = undefined;
    }
  });
});

describe("forwarding rules form", () => {
  it("lays out every rule as the same grid row: label | seconds | mode | target", async () => {
    h = await setup((f) => {
      f.sessionInfo = hookflashSession();
      f.rules = { always: null, busy: { to: "voicemail" }, noAnswer: { after: 20, to: "ada" } };
    });
    await h.click("nav-voicemail");
    const rows = Array.from(document.querySelectorAll<HTMLElement>(".rules .rule-row"));
    expect(rows.map((r) => r.dataset.rule), "one row per rule").toEqual(["always", "busy", "noAnswer"]);
    for (const r of rows) {
      expect(
        Array.from(r.children).map((c) => c.classList[c.classList.length - 1]),
        `the ${r.dataset.rule} row has the four cells in the same order, so the columns line up`,
      ).toEqual(["rule-label", "rule-after", "rule-mode", "rule-to"]);
    }
    expect(h.$("rule-noAnswer-after").closest(".rule-after"), "the seconds field has its own column").not.toBeNull();
    expect((h.$("rule-noAnswer-to") as HTMLInputElement).hidden, "a rule to a person shows its target").toBe(false);
    expect((h.$("rule-always-to") as HTMLInputElement).hidden, "an Off rule hides the target field").toBe(true);
    expect((h.$("rule-busy-to") as HTMLInputElement).hidden, "a Voicemail rule hides the target field").toBe(true);
    const mode = h.$("rule-always-mode") as HTMLSelectElement;
    mode.value = "person";
    mode.dispatchEvent(new Event("change", { bubbles: true }));
    expect((h.$("rule-always-to") as HTMLInputElement).hidden, "choosing 'To a person' shows the target field").toBe(false);
    mode.value = "off";
    mode.dispatchEvent(new Event("change", { bubbles: true }));
    expect((h.$("rule-always-to") as HTMLInputElement).hidden, "back to Off hides it again").toBe(true);
  });

  it("gives the three rule rows the same fixed column template in the stylesheet", () => {
    const rule = /\.rule-row\s*\{([^}]*)\}/.exec(css)?.[1] ?? "";
    const columns = /grid-template-columns:\s*([^;]+);/.exec(rule)?.[1]?.trim().split(/\s+(?![^(]*\))/) ?? [];
    expect(columns.length, "four columns: label, seconds, mode, target").toBe(4);
    expect(columns.slice(0, 3).every((c) => !/\bauto\b|fr\b/.test(c)), "the first three columns have bounded widths, so rows line up").toBe(true);
    expect(/:has\(/.test(rule) || /\.rule-row:not/.test(css), "no per-row variant of the template (it broke the alignment)").toBe(false);
  });
});

describe("calls view fits the window", () => {
  it("scrolls the directory list and the call list inside their columns", async () => {
    const style = document.createElement("style");
    style.textContent = css;
    document.head.append(style);
    h = await setup((f) => (f.sessionInfo = hookflashSession()));
    const list = h.$("directory");
    const leftColumn = list.closest(".column") as HTMLElement;
    const rightColumn = h.$("call-list").closest(".column") as HTMLElement;
    const directoryCard = list.closest(".directory") as HTMLElement;
    expect(h.$$("call-contact-vera").length, "Vera, the last contact, is rendered").toBe(1);
    expect(getComputedStyle(list).overflowY, "the directory list scrolls on its own").toBe("auto");
    expect(getComputedStyle(directoryCard).flexGrow, "the directory card takes the height left under the dial pad").toBe("1");
    expect(getComputedStyle(leftColumn).overflowY, "the left column scrolls inside the window when even the dial pad does not fit").toBe("auto");
    expect(getComputedStyle(rightColumn).overflowY, "the call list column scrolls inside the window too").toBe("auto");
    expect(getComputedStyle(h.$("call-button").closest(".dialer") as HTMLElement).flexShrink, "the dial pad keeps its size").toBe("0");
    const layout = list.closest(".calls-layout") as HTMLElement;
    expect(getComputedStyle(layout).height, "the layout is as tall as the window's main area, no taller").toBe("100%");
  });
});

describe("directory names for demo addresses", () => {
  it("names sip:ada@hookflash.local from the directory, also when the session's domain is spelled otherwise", () => {
    const session = hookflashSession();
    expect(partyLabel("sip:ada@hookflash.local", session), "same domain").toBe("Ada Lovelace");
    expect(partyLabel("sip:ada@hookflash.local", { ...session, domain: "127.0.0.1" }), "the user part finds the contact").toBe("Ada Lovelace");
    expect(partyLabel("sip:ada@hookflash.local", session, "ada"), "the directory name wins over a bare display name").toBe("Ada Lovelace");
    expect(partyLabel("sip:zed@elsewhere.example", session, "Zed"), "outside the directory the display name is used").toBe("Zed");
  });

  it("uses the directory name in the incoming panel, the transfer dialog's status texts and history", async () => {
    h = await setup((f) => (f.sessionInfo = hookflashSession()));
    h.emit({ event: "callsUpdated", added: [{ id: "in1", direction: "incoming", remote: "sip:ada@hookflash.local" }], removed: [] });
    h.emit({ event: "incomingCall", callId: "in1", callerInfo: { identifier: "sip:ada@hookflash.local", displayName: "ada" }, called: "sip:me@hookflash.local" });
    h.emit({ event: "callStateChanged", callId: "in1", oldState: "None", state: "Ringing" });
    await h.flush();
    expect(h.$("incoming-caller").textContent, "the incoming panel shows the directory name").toBe("Ada Lovelace");
    h.emit({ event: "callStateChanged", callId: "in1", oldState: "Ringing", state: "Connected" });
    await h.flush();

    // Transfer to a person typed as a full address; the core reports the state before the
    // command's answer arrives.
    h.fake.onExecute = (c) => {
      if (c.command === "transfer") h?.emit({ event: "transferStateChanged", callId: "in1", transferId: "tr1", state: "Transferring" });
      return c.command === "transfer" ? { status: "ok", data: "tr1" } : undefined;
    };
    await h.click("call-transfer");
    h.type("transfer-target-input", "sip:nora@hookflash.local");
    await h.click("transfer-submit");
    expect(h.$("transfer-status").textContent, "the transfer status names the target from the directory").toContain("Nora Noanswer");
    expect(h.$("transfer-status").textContent, "never a placeholder or the raw address").not.toMatch(/\?|sip:/);
    h.emit({ event: "transferStateChanged", callId: "in1", transferId: "tr1", state: "Transferred" });
    await h.flush();
    expect(h.$("transfer-status").textContent, "the final status too").toContain("Nora Noanswer");
    h.emit({ event: "callStateChanged", callId: "in1", oldState: "Connected", state: "Disconnected", callEndReason: { code: 200, subCode: 1010 } });
    h.emit({ event: "callsUpdated", added: [], removed: ["in1"] });
    await h.flush();
    h.key("Escape");
    await h.click("nav-history");
    expect(h.$("history-title").textContent, "history names both parties from the directory").toBe("Ada Lovelace → Nora Noanswer, transferred by you");
  });

  it("names the consulted party from the directory while calling it", async () => {
    h = await setup((f) => (f.sessionInfo = hookflashSession()));
    for (const e of connectedCall("c1", "sip:theo@hookflash.local", "incoming")) h.emit(e);
    await h.flush();
    await h.click("call-transfer");
    await h.click("transfer-mode-call");
    h.type("transfer-consult-input", "ada");
    await h.click("transfer-consult-start");
    expect(h.$("transfer-dialog").textContent, "the consult status names Ada by her directory name").toContain("Calling Ada Lovelace");
  });

  it("names history entries saved with a bare user name from the directory", async () => {
    h = await setup((f) => {
      f.sessionInfo = hookflashSession();
      f.storedHistory = [
        { id: "h1", direction: "outgoing", party: "sip:ada@hookflash.local", partyName: "ada", started: 1_700_000_000, durationMs: 0, outcome: "answered", transferredTo: null, transferredBy: null },
      ];
    });
    await h.click("nav-history");
    expect(h.$("history-title").textContent, "the directory's displayName, not the kept user name").toBe("Ada Lovelace");
  });
});
