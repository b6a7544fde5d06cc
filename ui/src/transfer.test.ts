import { afterEach, describe, expect, it } from "vitest";
import { connectedCall, last, setup, type Harness } from "./test-helpers";
import { transferFailureKey } from "./transfer-text";

let h: Harness;
afterEach(() => h.dispose());

async function withCall(h: Harness, id = "c1", remote = "sip:alice@demo.hookflash") {
  for (const e of connectedCall(id, remote, "incoming")) h.emit(e);
  await h.flush();
}

describe("transfer dialog", () => {
  it("transfers to a person with ring-only, and says Transferred only on the Transferred state", async () => {
    h = await setup();
    await withCall(h);
    await h.click("call-transfer");
    expect(h.$$("transfer-dialog").length, "the transfer button opens the dialog").toBe(1);
    h.type("transfer-target-input", "carol");
    (h.$("transfer-ring-only") as HTMLInputElement).click();
    await h.click("transfer-submit");
    const sent = h.fake.executed.find((c) => c.command === "transfer");
    expect(sent, "a blind transfer goes to the typed person with ring-only set").toEqual({
      command: "transfer",
      callId: "c1",
      targetParticipant: "carol",
      disableForwardingAndUnanswered: true,
    });
    const transferId = "transfer-1";
    expect(h.$("transfer-status").dataset.state, "after the command the transfer is in progress, not done").toBe("Transferring");
    expect(h.$("transfer-status").textContent, "progress names the target").toContain("Transferring to Carol");
    h.emit({ event: "transferStateChanged", callId: "c1", transferId, state: "Transferring" });
    await h.flush();
    expect(h.$("transfer-status").dataset.state, "Transferring events do not claim success").toBe("Transferring");
    h.emit({ event: "transferStateChanged", callId: "c1", transferId, state: "Transferred" });
    await h.flush();
    expect(h.$("transfer-status").dataset.state, "the Transferred state is shown as done").toBe("Transferred");
    expect(h.$("transfer-status").textContent, "and says where the call went").toContain("Transferred to Carol");
    expect(h.$("live-region").textContent, "screen readers hear the outcome").toContain("Transferred to Carol");
  });

  it("defaults ring-only from the preference", async () => {
    h = await setup((f) => (f.settingsValue.preferences.ringOnlyTarget = true));
    await withCall(h);
    await h.click("call-transfer");
    expect((h.$("transfer-ring-only") as HTMLInputElement).checked, "preferences.ringOnlyTarget is the default").toBe(true);
  });

  it("shows a failure in words with the SIP code and keeps the original call", async () => {
    h = await setup();
    await withCall(h);
    await h.click("call-transfer");
    h.type("transfer-target-input", "bob");
    await h.click("transfer-submit");
    h.emit({ event: "transferStateChanged", callId: "c1", transferId: "transfer-1", state: "Failed", error: { code: 486, subCode: 2001 } });
    await h.flush();
    expect(h.$("transfer-status").dataset.state, "a failed transfer is shown as Failed").toBe("Failed");
    expect(h.$("transfer-error").textContent, "the reason is in words, with the code").toContain("Bob is busy (486)");
    expect(h.$$("call-item").map((x) => x.dataset.callId), "the original call stays to continue").toEqual(["c1"]);
  });

  it("offers to resume the held original call after a failed transfer", async () => {
    h = await setup();
    await withCall(h);
    h.emit({ event: "callStateChanged", callId: "c1", oldState: "Connected", state: "LocalHold" });
    await h.flush();
    await h.click("call-transfer");
    h.type("transfer-target-input", "carol");
    await h.click("transfer-submit");
    h.emit({ event: "transferStateChanged", callId: "c1", transferId: "transfer-1", state: "Failed", error: { code: 408, subCode: 2003 } });
    await h.flush();
    expect(h.$("transfer-error").textContent, "a transfer timeout reads as timed out").toContain("timed out (408)");
    await h.click("transfer-resume");
    expect(last(h.fake.executed), "resume brings the held call back").toEqual({ command: "resume", callId: "c1" });
  });

  it("shows a refused command's error code and keeps the dialog open", async () => {
    h = await setup((f) => {
      f.onExecute = (c) => (c.command === "transfer" ? { status: "error", error: { code: "target.invalid", message: "bad" } } : undefined);
    });
    await withCall(h);
    await h.click("call-transfer");
    h.type("transfer-target-input", "%%%");
    await h.click("transfer-submit");
    expect(h.$("transfer-error").textContent, "the API error is shown in words with its code").toContain("not a valid name, number or address (target.invalid)");
    expect(h.$$("transfer-status").length, "no progress is shown for a transfer that never started").toBe(0);
  });

  it("transfers into another call (attended)", async () => {
    h = await setup();
    await withCall(h, "c1", "sip:alice@demo.hookflash");
    for (const e of connectedCall("c2", "sip:carol@demo.hookflash")) h.emit(e);
    await h.flush();
    h.app.controller.openTransfer("c1");
    await h.flush();
    await h.click("transfer-mode-call");
    const options = h.$$("transfer-call-option");
    expect(options.map((o) => o.dataset.callId), "my other calls are offered").toEqual(["c2"]);
    await h.click("transfer-submit");
    expect(last(h.fake.executed), "the transfer names the other call").toEqual({ command: "transfer", callId: "c1", targetCallId: "c2" });
  });

  it("consults first when there is no other call, then completes the transfer", async () => {
    h = await setup();
    await withCall(h);
    await h.click("call-transfer");
    await h.click("transfer-mode-call");
    expect(h.$$("transfer-call-option").length, "no other call to offer").toBe(0);
    h.type("transfer-consult-input", "carol");
    await h.click("transfer-consult-start");
    const cmds = h.fake.executed.slice(-2);
    expect(cmds, "the first call is held, then the consult call starts").toEqual([
      { command: "hold", callId: "c1" },
      { command: "startCall", target: "carol" },
    ]);
    const consultId = "call-1";
    expect((h.$("transfer-complete") as HTMLButtonElement).disabled, "complete waits for the consult call to connect").toBe(true);
    for (const e of connectedCall(consultId, "sip:carol@demo.hookflash")) h.emit(e);
    await h.flush();
    expect((h.$("transfer-complete") as HTMLButtonElement).disabled, "once connected the transfer can complete").toBe(false);
    await h.click("transfer-complete");
    expect(last(h.fake.executed), "complete transfers into the consult call").toEqual({ command: "transfer", callId: "c1", targetCallId: consultId });
  });

  it("transfers to someone's voicemail", async () => {
    h = await setup();
    await withCall(h);
    await h.click("call-transfer");
    await h.click("transfer-mode-voicemail");
    h.type("transfer-target-input", "carol");
    await h.click("transfer-submit");
    expect(last(h.fake.executed), "the voicemail target is sent").toEqual({ command: "transfer", callId: "c1", targetParticipantVoicemail: "carol" });
    expect(h.$("transfer-status").textContent, "the progress names the mailbox").toContain("Carol's voicemail");
  });

  it("asks the transferee for consent and answers with acceptTransfer", async () => {
    h = await setup();
    await withCall(h, "c1", "sip:dave@demo.hookflash");
    h.emit({
      event: "transferRequested",
      callId: "c1",
      transferId: "t9",
      target: "sip:carol@demo.hookflash",
      transferor: { identifier: "sip:dave@demo.hookflash", displayName: "Dave" },
      autoAccepted: false,
    });
    await h.flush();
    expect(h.$("transfer-consent").textContent, "the request says who and where").toContain("Dave wants to transfer you to Carol");
    await h.click("transfer-consent-accept");
    expect(last(h.fake.executed), "accepting answers the request").toEqual({ command: "acceptTransfer", callId: "c1", transferId: "t9" });
    expect(h.$$("transfer-consent").length, "the question goes away once answered").toBe(0);
  });

  it("closes with Esc", async () => {
    h = await setup();
    await withCall(h);
    await h.click("call-transfer");
    h.key("Escape");
    await h.flush();
    expect(h.$$("transfer-dialog").length, "Esc closes the transfer dialog").toBe(0);
  });
});

describe("transfer failure reasons", () => {
  it.each([
    [486, 2001, "transfer.fail.busy"],
    [600, 2001, "transfer.fail.busy"],
    [480, 2001, "transfer.fail.noAnswer"],
    [487, 2002, "transfer.fail.noAnswer"],
    [408, 2001, "transfer.fail.noAnswer"],
    [408, 2003, "transfer.fail.timedOut"],
    [404, 2001, "transfer.fail.unknown"],
    [484, 2001, "transfer.fail.unknown"],
    [604, 2001, "transfer.fail.unknown"],
    [403, 2000, "transfer.fail.refused"],
    [603, 2000, "transfer.fail.refused"],
    [500, 2001, "transfer.fail.generic"],
  ] as const)("code %i sub-code %i reads as %s", (code, subCode, key) => {
    expect(transferFailureKey({ code, subCode }), `SIP ${code} (sub-code ${subCode}) must map to ${key}`).toBe(key);
  });
});
