import { afterEach, describe, expect, it } from "vitest";
import { connectedCall, setup, type Harness } from "./test-helpers";
import { addEntry, HISTORY_LIMIT, outcomeOf, type HistoryEntry } from "./history";

let h: Harness;
afterEach(() => h?.dispose());

const entry = (i: number): HistoryEntry => ({
  id: `h${i}`,
  direction: "outgoing",
  party: "sip:alice@demo.hookflash",
  partyName: "Alice",
  started: i,
  durationMs: 0,
  outcome: "answered",
  transferredTo: null,
  transferredBy: null,
});

describe("call history", () => {
  it("records an answered call with its duration and persists it", async () => {
    h = await setup();
    const startedMs = h.clock.now;
    for (const e of connectedCall("c1", "sip:alice@demo.hookflash")) h.emit(e);
    h.clock.now += 65_000;
    h.emit({ event: "callStateChanged", callId: "c1", oldState: "Connected", state: "Disconnected", callEndReason: { code: 200, subCode: 1000 } });
    h.emit({ event: "callsUpdated", added: [], removed: ["c1"] });
    await h.flush();
    expect(h.fake.storedHistory.length, "the entry is saved through commands.saveHistory").toBe(1);
    const e = h.fake.storedHistory[0];
    expect(e?.started, "started is in seconds since the epoch").toBe(startedMs / 1000);
    expect(e?.outcome, "a connected call is answered").toBe("answered");
    expect(e?.durationMs, "talk time counts from Connected").toBe(65_000);
    await h.click("nav-history");
    expect(h.$$("history-item").length, "the History view lists it").toBe(1);
    expect(h.$("history-item").textContent, "with the party's name and duration").toMatch(/Alice[\s\S]*01:05/);
    expect(h.$("history-item").textContent, "and the date it started (14 Nov 2023)").toContain("2023");
  });

  it("shows a call we transferred as 'Alice → Carol, transferred by you'", async () => {
    h = await setup();
    for (const e of connectedCall("c1", "sip:alice@demo.hookflash", "incoming")) h.emit(e);
    await h.flush();
    await h.click("call-transfer");
    h.type("transfer-target-input", "carol");
    await h.click("transfer-submit");
    h.emit({ event: "transferStateChanged", callId: "c1", transferId: "transfer-1", state: "Transferred" });
    h.emit({ event: "callStateChanged", callId: "c1", oldState: "Connected", state: "Disconnected", callEndReason: { code: 200, subCode: 1010 } });
    h.emit({ event: "callsUpdated", added: [], removed: ["c1"] });
    await h.flush();
    h.key("Escape");
    await h.click("nav-history");
    expect(h.$("history-item").dataset.outcome, "the outcome is transferred").toBe("transferred");
    expect(h.$("history-title").textContent, "the title says who went where and who did it").toBe("Alice → Carol, transferred by you");
  });

  it("shows a call we received by transfer as 'Alice, transferred by Bob'", async () => {
    h = await setup();
    h.emit({ event: "callsUpdated", added: [{ id: "c2", direction: "incoming", remote: "sip:alice@demo.hookflash" }], removed: [] });
    h.emit({
      event: "incomingCall",
      callId: "c2",
      callerInfo: { identifier: "sip:alice@demo.hookflash", displayName: "Alice" },
      transferorInfo: { identifier: "sip:bob@demo.hookflash", displayName: "Bob" },
      called: "sip:me@demo.hookflash",
    });
    h.emit({ event: "callStateChanged", callId: "c2", oldState: "None", state: "Ringing" });
    await h.flush();
    expect(h.$("incoming-caller").textContent, "the incoming panel names the transferor").toBe("Alice, transferred by Bob");
    expect(h.$$("incoming-transferor").length, "the transferor has its own element").toBe(1);
    h.emit({ event: "callStateChanged", callId: "c2", oldState: "Ringing", state: "Disconnected", callEndReason: { code: 487, subCode: 1003 } });
    h.emit({ event: "callsUpdated", added: [], removed: ["c2"] });
    await h.flush();
    await h.click("nav-history");
    expect(h.$("history-title").textContent, "history keeps who transferred the call").toBe("Alice, transferred by Bob");
    expect(h.$("history-item").dataset.outcome, "an unanswered incoming call is missed").toBe("missed");
  });

  it("keeps only the last 200 entries, newest first", () => {
    let list: HistoryEntry[] = [];
    for (let i = 0; i < HISTORY_LIMIT + 25; i++) list = addEntry(list, entry(i));
    expect(list.length, "history is capped").toBe(HISTORY_LIMIT);
    expect(list[0]?.id, "the newest entry is first").toBe(`h${HISTORY_LIMIT + 24}`);
  });

  it("loads the history from commands.history at start-up", async () => {
    h = await setup((f) => (f.storedHistory = [{ ...entry(1), started: 1_700_000_000 }, { ...entry(2), id: "h2", partyName: "Bob" }]));
    await h.flush();
    expect(h.fake.calls.filter((c) => c.name === "history").length, "the history is read once").toBe(1);
    await h.click("nav-history");
    expect(h.$$("history-item").map((e) => e.dataset.id), "entries saved earlier are shown in their order").toEqual(["h1", "h2"]);
    expect(h.$$("history-item")[0]?.textContent, "started is read as seconds (14 Nov 2023)").toContain("2023");
  });

  it("saves the whole list, newest first, through commands.saveHistory when a call ends", async () => {
    h = await setup((f) => (f.storedHistory = [entry(1)]));
    await h.flush();
    for (const e of connectedCall("c9", "sip:bob@demo.hookflash")) h.emit(e);
    h.emit({ event: "callStateChanged", callId: "c9", oldState: "Connected", state: "Disconnected", callEndReason: { code: 200, subCode: 1001 } });
    await h.flush();
    const saved = h.fake.calls.filter((c) => c.name === "saveHistory");
    expect(saved.length > 0, "the history is saved").toBe(true);
    expect((saved[saved.length - 1]?.args[0] as HistoryEntry[]).map((e) => e.id), "the new call comes first, the loaded ones stay").toEqual(["c9", "h1"]);
    await h.click("nav-history");
    await h.click("history-clear");
    expect(h.fake.storedHistory, "clearing the history saves an empty list").toEqual([]);
  });

  it("names outcomes from the end reason", () => {
    expect(outcomeOf("outgoing", false, { code: 486, subCode: 0 }, false), "486 on our call is busy").toBe("busy");
    expect(outcomeOf("incoming", false, { code: 603, subCode: 1004 }, false), "we rejected: declined").toBe("declined");
    expect(outcomeOf("outgoing", false, { code: 487, subCode: 1002 }, false), "we cancelled").toBe("cancelled");
    expect(outcomeOf("outgoing", false, { code: 404, subCode: 0 }, false), "other failures").toBe("failed");
  });
});
