import { afterEach, describe, expect, it } from "vitest";
import { connectedCall, last, setup, type Harness } from "./test-helpers";

let h: Harness;
afterEach(() => h.dispose());

describe("keyboard shortcuts", () => {
  it("Enter in the address field calls it", async () => {
    h = await setup();
    h.type("address-input", "alice");
    h.key("Enter", {}, h.$("address-input"));
    await h.flush();
    expect(last(h.fake.executed), "Enter starts the call").toEqual({ command: "startCall", target: "alice" });
    expect((h.$("address-input") as HTMLInputElement).value, "the field is cleared after calling").toBe("");
  });

  it("digits outside a call type into the address field with key tones", async () => {
    h = await setup();
    h.key("5");
    h.key("#");
    await h.flush();
    expect((h.$("address-input") as HTMLInputElement).value, "typed digits fill the field").toBe("5#");
    expect(h.fake.executed, "each key plays its tone, no DTMF without a call").toEqual([
      { command: "playKeyTone", tones: "5" },
      { command: "playKeyTone", tones: "#" },
    ]);
  });

  it("digits in a connected call go out as DTMF", async () => {
    h = await setup();
    for (const e of connectedCall("c1", "sip:alice@demo.hookflash")) h.emit(e);
    await h.flush();
    h.key("7");
    await h.flush();
    expect(h.fake.executed.some((c) => c.command === "sendDtmf" && c.tones === "7" && c.callId === "c1"), "the digit is sent to the call").toBe(true);
    await h.click("dialpad-key-star");
    expect(last(h.fake.executed), "the dial pad also sends tones during a call").toEqual({ command: "sendDtmf", callId: "c1", tones: "*" });
    expect(h.fake.executed.some((c) => c.command === "playKeyTone"), "the core plays the key tone with DTMF; the UI does not ask again").toBe(false);
  });

  it("Ctrl+M mutes, Ctrl+H holds and resumes the active call", async () => {
    h = await setup();
    for (const e of connectedCall("c1", "sip:alice@demo.hookflash")) h.emit(e);
    await h.flush();
    h.key("m", { ctrlKey: true });
    await h.flush();
    expect(last(h.fake.executed), "Ctrl+M mutes").toEqual({ command: "mute", callId: "c1" });
    h.emit({ event: "isMutedChanged", callId: "c1", isMuted: true });
    h.key("m", { ctrlKey: true });
    await h.flush();
    expect(last(h.fake.executed), "Ctrl+M again unmutes").toEqual({ command: "unmute", callId: "c1" });
    h.key("h", { ctrlKey: true });
    await h.flush();
    expect(last(h.fake.executed), "Ctrl+H holds").toEqual({ command: "hold", callId: "c1" });
    h.emit({ event: "callStateChanged", callId: "c1", oldState: "Connected", state: "LocalHold" });
    h.key("h", { ctrlKey: true });
    await h.flush();
    expect(last(h.fake.executed), "Ctrl+H again resumes").toEqual({ command: "resume", callId: "c1" });
  });

  it("Ctrl+T opens the transfer dialog for the focused call and Esc closes it", async () => {
    h = await setup();
    for (const e of connectedCall("c1", "sip:alice@demo.hookflash")) h.emit(e);
    for (const e of connectedCall("c2", "sip:bob@demo.hookflash")) h.emit(e);
    await h.flush();
    h.$$("call-item")[0]?.click();
    await h.flush();
    h.key("t", { ctrlKey: true });
    await h.flush();
    expect(h.$$("transfer-dialog").length, "Ctrl+T opens the dialog").toBe(1);
    expect(h.app.store.state.transfer?.callId, "for the call the user focused").toBe("c1");
    expect(document.activeElement?.closest("[data-testid=transfer-dialog]"), "focus moves into the dialog").not.toBeNull();
    h.key("Escape");
    await h.flush();
    expect(h.$$("transfer-dialog").length, "Esc closes it").toBe(0);
  });

  it("does not steal digits typed into a text field", async () => {
    h = await setup();
    for (const e of connectedCall("c1", "sip:alice@demo.hookflash")) h.emit(e);
    await h.flush();
    h.key("3", {}, h.$("address-input"));
    await h.flush();
    expect(h.fake.executed.some((c) => c.command === "sendDtmf"), "typing in a field is not DTMF").toBe(false);
  });
});
