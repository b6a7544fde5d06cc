import { afterEach, describe, expect, it } from "vitest";
import { setup, type Harness } from "./test-helpers";

let h: Harness;
afterEach(() => h.dispose());

describe("connection banner", () => {
  it("is quiet while connected", async () => {
    h = await setup();
    expect(h.$("connection-banner").dataset.state, "a connected session shows the subtle state").toBe("connected");
  });

  it("says the connection was lost and is retrying on connectionIssue", async () => {
    h = await setup();
    h.emit({ event: "connectionStateChanged", oldValue: "Connected", newValue: "Disconnected", reason: "connectionIssue" });
    await h.flush();
    const b = h.$("connection-banner");
    expect(b.dataset.state, "connectionIssue means reconnecting").toBe("reconnecting");
    expect(b.textContent, "the user is told we retry").toContain("Connection lost — retrying…");
    h.emit({ event: "connectionStateChanged", oldValue: "Disconnected", newValue: "Connected", reason: "registered" });
    await h.flush();
    expect(h.$("connection-banner").dataset.state, "registration again clears the warning").toBe("connected");
  });

  it("asks to sign in again on invalidToken, with a way to Settings", async () => {
    h = await setup();
    h.emit({ event: "connectionStateChanged", oldValue: "Connected", newValue: "Disconnected", reason: "invalidToken" });
    await h.flush();
    expect(h.$("connection-banner").dataset.state, "invalidToken has its own state").toBe("invalidToken");
    expect(h.$("connection-banner").textContent, "the text says what to do").toContain("Your sign-in is no longer valid — sign in again");
    await h.click("banner-settings");
    expect(h.$("nav-settings").getAttribute("aria-current"), "the button opens Settings").toBe("page");
  });

  it("says the server's certificate is not trusted, with a way to Settings", async () => {
    h = await setup();
    h.emit({ event: "connectionStateChanged", oldValue: "Disconnected", newValue: "Disconnected", reason: "certificateNotTrusted" });
    await h.flush();
    const b = h.$("connection-banner");
    expect(b.dataset.state, "an untrusted certificate is not a lost connection: it has its own state").toBe("certificateNotTrusted");
    expect(b.textContent, "the text names the cause").toContain("The server's certificate is not trusted");
    await h.click("banner-settings");
    expect(h.$("nav-settings").getAttribute("aria-current"), "the button opens Settings, where the address is").toBe("page");
  });

  it("shows disconnected when signed out", async () => {
    h = await setup();
    h.emit({ event: "connectionStateChanged", oldValue: "Connected", newValue: "Disconnected", reason: "signedOut" });
    await h.flush();
    expect(h.$("connection-banner").dataset.state, "signing out is plainly disconnected").toBe("disconnected");
  });

  it("is shown in Korean when the language is Korean", async () => {
    h = await setup((f) => (f.settingsValue.preferences.language = "ko"));
    h.emit({ event: "connectionStateChanged", oldValue: "Connected", newValue: "Disconnected", reason: "connectionIssue" });
    await h.flush();
    expect(h.$("connection-banner").textContent, "banner text comes from the ko catalogue").toContain("연결이 끊겼습니다");
    expect(document.documentElement.lang, "<html lang> follows the language").toBe("ko");
  });
});
