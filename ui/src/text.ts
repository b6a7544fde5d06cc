// Translatable text kept in the state (announcements, notices): rendered in the current
// language at render time, so switching language re-renders them too.

import type { MessageKey, Translator } from "./i18n";

export interface Text {
  key: MessageKey;
  params?: Record<string, string | number | Text>;
}

export function text(key: MessageKey, params?: Record<string, string | number | Text>): Text {
  return params ? { key, params } : { key };
}

export function renderText(t: Translator, x: Text): string {
  if (!x.params) return t(x.key);
  const params: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(x.params)) params[k] = typeof v === "object" ? renderText(t, v) : v;
  return t(x.key, params);
}
