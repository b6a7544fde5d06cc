import { describe, expect, it } from "vitest";
import type { CoreEvent } from "./bindings";
import { apply, initialState, ringingIncoming, visibleCalls, type State } from "./store";
import { demoSession } from "./fake-backend";

const start = (): State => apply(initialState({ now: 0 }), { type: "session", session: demoSession() });
const run = (s: State, events: CoreEvent[], at = 1000): State =>
  events.reduce((acc, event, i) => apply(acc, { type: "core", event, at: at + i }), s);

describe("call state reducer", () => {
  it("lists several calls at once with their state and direction", () => {
    const s = run(start(), [
      { event: "callsUpdated", added: [{ id: "a", direction: "outgoing", remote: "sip:alice@demo.hookflash" }], removed: [] },
      { event: "callStateChanged", callId: "a", oldState: "None", state: "Connected" },
      { event: "callsUpdated", added: [{ id: "b", direction: "incoming", remote: "sip:bob@demo.hookflash" }], removed: [] },
      { event: "callStateChanged", callId: "b", oldState: "None", state: "Ringing" },
    ]);
    const calls = visibleCalls(s);
    expect(calls.map((c) => c.id), "both calls are listed, in the order they came").toEqual(["a", "b"]);
    expect(calls[0]?.state, "the first call's state follows callStateChanged").toBe("Connected");
    expect(calls[1]?.direction, "the direction comes from callsUpdated").toBe("incoming");
    expect(calls[0]?.connectedAt, "the timer starts when the call becomes Connected").not.toBeNull();
  });

  it("shows an incoming call in the incoming panel until it is answered", () => {
    let s = run(start(), [
      { event: "callsUpdated", added: [{ id: "c", direction: "incoming", remote: "sip:alice@demo.hookflash" }], removed: [] },
      {
        event: "incomingCall",
        callId: "c",
        callerInfo: { identifier: "sip:alice@demo.hookflash", displayName: "Alice" },
        transferorInfo: { identifier: "sip:bob@demo.hookflash", displayName: "Bob" },
        called: "sip:me@127.0.0.1",
      },
      { event: "callStateChanged", callId: "c", oldState: "None", state: "Ringing" },
    ]);
    expect(ringingIncoming(s).map((c) => c.id), "a ringing incoming call is offered in the panel").toEqual(["c"]);
    expect(s.incoming.c?.transferor?.displayName, "the transferor is kept for 'transferred by'").toBe("Bob");
    s = run(s, [{ event: "callStateChanged", callId: "c", oldState: "Ringing", state: "Connected" }]);
    expect(ringingIncoming(s), "once answered the call leaves the incoming panel").toEqual([]);
  });

  it("puts the transferred-to call in the slot of the original call (transferAccepted)", () => {
    let s = run(start(), [
      { event: "callsUpdated", added: [{ id: "x", direction: "outgoing", remote: "sip:alice@demo.hookflash" }], removed: [] },
      { event: "callsUpdated", added: [{ id: "orig", direction: "incoming", remote: "sip:dave@demo.hookflash" }], removed: [] },
      { event: "callStateChanged", callId: "orig", oldState: "None", state: "Connected" },
      { event: "callsUpdated", added: [{ id: "y", direction: "outgoing", remote: "sip:echo@demo.hookflash" }], removed: [] },
    ]);
    // The new call may arrive before or after transferAccepted: here it arrives after.
    s = run(s, [
      { event: "transferAccepted", callId: "orig", transferId: "t1", targetCall: "new" },
      { event: "callsUpdated", added: [{ id: "new", direction: "outgoing", remote: "sip:carol@demo.hookflash" }], removed: [] },
    ]);
    expect(visibleCalls(s).map((c) => c.id), "the new call takes the original's place, not the end of the list").toEqual(["x", "new", "y"]);
    s = run(s, [{ event: "callsUpdated", added: [], removed: ["orig"] }]);
    expect(visibleCalls(s).map((c) => c.id), "the original ending does not remove its replacement").toEqual(["x", "new", "y"]);
  });

  it("puts the replacing call in the same slot when the new call is already known (callReplaced)", () => {
    const s = run(start(), [
      { event: "callsUpdated", added: [{ id: "old", direction: "incoming", remote: "sip:alice@demo.hookflash" }], removed: [] },
      { event: "callsUpdated", added: [{ id: "other", direction: "outgoing", remote: "sip:bob@demo.hookflash" }], removed: [] },
      { event: "callsUpdated", added: [{ id: "rep", direction: "incoming", remote: "sip:carol@demo.hookflash" }], removed: [] },
      { event: "callReplaced", callId: "old", newCallId: "rep" },
    ]);
    expect(visibleCalls(s).map((c) => c.id), "the replacing call moves into the old slot").toEqual(["rep", "other"]);
  });

  it("counts new voicemail from messageWaiting and tracks do not disturb", () => {
    const s = run(start(), [
      { event: "messageWaiting", account: "me", newMessages: 3, oldMessages: 1 },
      { event: "doNotDisturbChanged", enabled: true },
    ]);
    expect(s.messageWaiting, "the badge shows the new (unheard) messages").toBe(3);
    expect(s.dnd, "doNotDisturbChanged is reflected").toBe(true);
  });
});
