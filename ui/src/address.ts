// Addresses: how a party is shown, and address completion from the directory and history.

import type { Contact, SessionInfo } from "./bindings";
import type { HistoryEntry } from "./history";

/** `sip:alice@demo` → `alice` (same domain) or `alice@other`; `tel:+1555` → `+1555`. */
export function shortAddress(address: string, domain?: string | null): string {
  let a = address.trim();
  const angle = /<([^>]+)>/.exec(a);
  if (angle?.[1]) a = angle[1];
  a = a.replace(/^(sips?|tel|callto):/i, "");
  a = a.split(";")[0] ?? a;
  const at = a.indexOf("@");
  if (at > 0 && domain) {
    const host = a.slice(at + 1).split(":")[0]?.toLowerCase();
    if (host === domain.toLowerCase()) return a.slice(0, at);
  }
  return a;
}

export function userOf(address: string): string {
  const s = shortAddress(address);
  const at = s.indexOf("@");
  return at > 0 ? s.slice(0, at) : s;
}

/**
 * The directory contact an address names: by its short form (`ada`, `ada@other`), else by its
 * user part (`sip:ada@hookflash.local` → `ada`; the directory is the demo switchboard's, one
 * domain, so the user part is enough even when the session's domain is spelled otherwise).
 */
export function directoryContact(address: string, session: SessionInfo | null): Contact | undefined {
  const directory = session?.directory ?? [];
  if (!directory.length || !address.trim()) return undefined;
  const short = shortAddress(address, session?.domain).toLowerCase();
  const user = userOf(address).toLowerCase();
  return directory.find((c) => c.user.toLowerCase() === short) ?? directory.find((c) => c.user.toLowerCase() === user);
}

/**
 * The name to show for an address: the directory's display name (it names its contacts),
 * else the given display name, else the short address.
 */
export function partyLabel(address: string, session: SessionInfo | null, displayName?: string | null): string {
  const contact = directoryContact(address, session);
  if (contact) return contact.displayName;
  if (displayName) return displayName;
  return shortAddress(address, session?.domain);
}

export interface Suggestion {
  /** What goes into the field. */
  value: string;
  /** The name shown. */
  label: string;
  /** Secondary line (the address). */
  detail: string;
}

/**
 * Suggestions for what was typed: directory contacts whose user or display name starts with
 * it (or any word of the display name does), then recent history parties; no duplicates,
 * at most `limit`. Nothing for an empty query or an exact single match.
 */
export function completions(
  query: string,
  directory: Contact[],
  history: HistoryEntry[],
  domain?: string | null,
  limit = 6,
): Suggestion[] {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  const out: Suggestion[] = [];
  const seen = new Set<string>();
  const push = (s: Suggestion) => {
    const k = s.value.toLowerCase();
    if (seen.has(k) || out.length >= limit) return;
    seen.add(k);
    out.push(s);
  };
  const matches = (value: string, label: string) => {
    const v = value.toLowerCase();
    const l = label.toLowerCase();
    return v.startsWith(q) || l.startsWith(q) || l.split(/\s+/).some((w) => w.startsWith(q)) || (q.length > 2 && v.includes(q));
  };
  for (const c of directory) if (matches(c.user, c.displayName)) push({ value: c.user, label: c.displayName, detail: c.user });
  for (const h of history) {
    const value = shortAddress(h.party, domain);
    const label = h.partyName ?? value;
    if (matches(value, label)) push({ value, label, detail: value });
  }
  if (out.length === 1 && out[0]?.value.toLowerCase() === q) return [];
  return out;
}
