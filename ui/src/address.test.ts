import { describe, expect, it } from "vitest";
import { completions, shortAddress } from "./address";
import { demoSession } from "./fake-backend";
import type { HistoryEntry } from "./history";
import { afterEach } from "vitest";
import { last, setup, type Harness } from "./test-helpers";

const dir = demoSession().directory;
const hist: HistoryEntry[] = [
  { id: "1", direction: "outgoing", party: "sip:carla@other.example", partyName: null, started: 1, durationMs: 0, outcome: "answered", transferredTo: null, transferredBy: null },
  { id: "2", direction: "incoming", party: "tel:+15551234", partyName: null, started: 0, durationMs: 0, outcome: "missed", transferredTo: null, transferredBy: null },
];

let h: Harness | undefined;
afterEach(() => h?.dispose());

describe("address completion", () => {
  it("suggests directory contacts by user or display name, then recent parties", () => {
    const s = completions("car", dir, hist, "demo.hookflash");
    expect(s.map((x) => x.value), "directory first, then history, no duplicates").toEqual(["carol", "carla@other.example"]);
    expect(s[0]?.label, "the display name is shown").toBe("Carol");
  });

  it("matches numbers from history and nothing for an empty query", () => {
    expect(completions("+1555", dir, hist).map((x) => x.value), "numbers from history complete").toEqual(["+15551234"]);
    expect(completions("  ", dir, hist), "no suggestions before typing").toEqual([]);
  });

  it("shortens addresses in our domain to the user name", () => {
    expect(shortAddress("sip:alice@demo.hookflash", "demo.hookflash"), "same domain").toBe("alice");
    expect(shortAddress("\"Bob\" <sip:bob@x.org;transport=tcp>", "demo"), "other domain keeps it").toBe("bob@x.org");
    expect(shortAddress("tel:+15551234"), "tel numbers").toBe("+15551234");
  });

  it("lets the user pick a suggestion with the arrow keys and Enter", async () => {
    h = await setup();
    h.type("address-input", "ec");
    await h.flush();
    const input = h.$("address-input");
    expect(h.$$("completion-option").map((o) => o.dataset.value), "the listbox shows the match").toEqual(["echo"]);
    h.key("ArrowDown", {}, input);
    h.key("Enter", {}, input);
    await h.flush();
    expect((input as HTMLInputElement).value, "Enter on a highlighted suggestion fills it in").toBe("echo");
    expect(h.fake.executed.length, "choosing a suggestion does not call yet").toBe(0);
    h.key("Enter", {}, input);
    await h.flush();
    expect(last(h.fake.executed), "a second Enter calls").toEqual({ command: "startCall", target: "echo" });
  });
});
